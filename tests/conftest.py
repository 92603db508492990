"""Shared test set-up: the chosen backend in float64 for every test; deterministic Hypothesis.

Every test starts with the selected backend and the float64 default dtype (finite differences
need float64) and gets back whatever was set before, so a test that switches either cannot leak.
The backend is NumPy unless chosen otherwise::

    pytest --backend cupy                   # or: TINYCURV_BACKEND=cupy pytest
    pytest --backend numpy                  # the default (the variable unset or "numpy")

Where CuPy or a GPU is missing, ``--backend cupy`` skips every test, saying why. The fixture
``any_backend`` runs a test on each backend (``"numpy"``, ``"cupy"``); its CuPy case skips
where CuPy or a GPU is missing.

Hypothesis runs derandomised (the same examples on every run and machine), without deadlines
(the first call of a primitive may be slow) and with few examples, so the engine suite stays
fast. ``TINYCURV_HYPOTHESIS_PROFILE=thorough`` runs many more examples.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

_ENV_BACKEND = os.environ.get("TINYCURV_BACKEND", "numpy").strip().lower() or "numpy"
_import_error: str | None = None
try:
    from tinycurv import backend
except Exception as err:  # TINYCURV_BACKEND=cupy where CuPy or a GPU is missing (BackendError)
    if _ENV_BACKEND == "numpy":
        raise
    _import_error = f"{type(err).__name__}: {err}"
    os.environ["TINYCURV_BACKEND"] = "numpy"  # import on NumPy; every test will skip
    try:
        from tinycurv import backend
    finally:
        os.environ["TINYCURV_BACKEND"] = _ENV_BACKEND

settings.register_profile(
    "tinycurv",
    derandomize=True,
    deadline=None,
    max_examples=15,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    derandomize=True,
    deadline=None,
    max_examples=300,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("TINYCURV_HYPOTHESIS_PROFILE", "tinycurv"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        default=_ENV_BACKEND,
        help="array backend of every test: numpy or cupy (default: $TINYCURV_BACKEND, else numpy)",
    )


_BACKEND = pytest.StashKey[str]()  # the backend of every test
_UNAVAILABLE = pytest.StashKey[str]()  # why it cannot be used here ("" if it can)


def pytest_configure(config: pytest.Config) -> None:
    """Check the requested backend once; remember why it cannot be used, if it cannot."""
    name = str(config.getoption("--backend")).strip().lower()
    if name not in backend.BACKENDS:
        raise pytest.UsageError(f"--backend must be one of {backend.BACKENDS}, got {name!r}")
    config.stash[_BACKEND] = name
    why = _import_error if name == _ENV_BACKEND and _import_error else _unusable(name)
    config.stash[_UNAVAILABLE] = why or ""


def pytest_report_header(config: pytest.Config) -> str:
    name, why = config.stash.get(_BACKEND, "numpy"), config.stash.get(_UNAVAILABLE, "")
    return f"tinycurv backend: {name}" + (f" (unavailable, every test skips: {why})" if why else "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # `pytest -m exercises`: the graders, the track and the solutions
        if "tutorials/solutions" in item.nodeid or "tutorials/track" in item.nodeid:
            item.add_marker(pytest.mark.exercises)
    why = config.stash.get(_UNAVAILABLE, "")
    if why:
        skip = pytest.mark.skip(
            reason=f"--backend {config.stash[_BACKEND]} requested but unavailable: {why}"
        )
        for item in items:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def float64_backend(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run the test on the selected backend in float64; restore the previous settings after."""
    name, dtype = backend.backend_name(), backend.get_default_dtype()
    backend.set_backend(request.config.stash.get(_BACKEND, "numpy"))
    backend.set_default_dtype("float64")
    try:
        yield
    finally:
        backend.set_backend(name)
        backend.set_default_dtype(dtype)


@functools.cache
def _unusable(name: str) -> str | None:
    """Why backend ``name`` cannot be used here (no CuPy, no GPU), or None if it can."""
    before = backend.backend_name()
    try:
        backend.set_backend(name)
    except backend.BackendError as err:
        return str(err)
    finally:
        backend.set_backend(before)
    return None


@pytest.fixture(params=list(backend.BACKENDS))
def any_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test once per backend (float64), yielding its name; CuPy skips where it is missing."""
    name = request.param
    why = _unusable(name)
    if why:
        pytest.skip(f"backend {name} unavailable: {why}")
    backend.set_backend(name)  # the autouse fixture restores the previous backend after
    backend.set_default_dtype("float64")
    yield name
