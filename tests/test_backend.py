"""The backend switch: names, errors with actionable messages, the environment variable, the
default dtype, ``asnumpy``, the forwarding ``xp`` module, and the helpers it re-exports (the
savable generator of ``tinycurv.random``, ``retain_freed_memory`` of ``tinycurv.bench.memory``).

The conftest fixture restores the backend and the default dtype after every test. These tests
are about the switch itself, so each starts from NumPy even under ``--backend cupy``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import backend
from tinycurv.backend import BackendError
from tinycurv.tensor import Tensor


@pytest.fixture(autouse=True)
def _start_on_numpy() -> None:
    tc.set_backend("numpy")


def _cupy_with_gpu() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def test_unknown_backend_names_the_valid_ones():
    with pytest.raises(BackendError) as info:
        tc.set_backend("nope")
    message = str(info.value)
    assert "'nope'" in message and "numpy" in message and "cupy" in message
    assert backend.backend_name() == "numpy"  # a failed switch changes nothing
    assert issubclass(BackendError, RuntimeError)


def test_backend_names_are_case_and_space_insensitive():
    assert tc.set_backend("  NumPy ") is np
    assert backend.backend_name() == "numpy"
    assert tc.get_backend() is np


def test_missing_cupy_says_what_to_install(monkeypatch):
    """Simulate an environment without CuPy (``import cupy`` fails) whatever is installed."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(BackendError) as info:
        tc.set_backend("cupy")
    message = str(info.value)
    assert "pip install" in message and "cuda12" in message and "TINYCURV_BACKEND=numpy" in message
    assert backend.backend_name() == "numpy" and tc.get_backend() is np


@pytest.mark.skipif(_cupy_with_gpu(), reason="CuPy and a GPU are present: the switch succeeds")
def test_cupy_backend_unavailable_here_raises_backend_error():
    with pytest.raises(BackendError, match="cupy"):
        tc.set_backend("cupy")
    assert backend.backend_name() == "numpy"


@pytest.mark.skipif(not _cupy_with_gpu(), reason="needs CuPy and a CUDA GPU")
def test_cupy_backend_switches_xp():  # pragma: no cover - runs on GPU machines only
    import cupy

    assert tc.set_backend("cupy") is cupy
    assert tc.xp.zeros(3).__class__ is cupy.ndarray
    np.testing.assert_array_equal(tc.asnumpy(tc.xp.arange(3.0)), [0.0, 1.0, 2.0])


def _import_in_subprocess(value: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("TINYCURV_BACKEND", None)
    if value is not None:
        env["TINYCURV_BACKEND"] = value
    code = "import tinycurv.backend as b; print(b.backend_name(), b.get_default_dtype())"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_environment_variable_is_read_at_import():
    assert _import_in_subprocess(None).stdout.split() == ["numpy", "float64"]
    assert _import_in_subprocess(" NUMPY").stdout.split() == ["numpy", "float64"]
    bad = _import_in_subprocess("nope")
    assert bad.returncode != 0
    assert "BackendError" in bad.stderr and "unknown backend 'nope'" in bad.stderr


@pytest.mark.skipif(_cupy_with_gpu(), reason="CuPy and a GPU are present: the import succeeds")
def test_environment_variable_cupy_without_cupy_fails_with_advice():
    result = _import_in_subprocess("cupy")
    assert result.returncode != 0 and "BackendError" in result.stderr
    assert "backend 'cupy'" in result.stderr


def test_default_dtype():
    assert tc.get_default_dtype() == "float64"
    tc.set_default_dtype("float32")
    assert tc.get_default_dtype() == "float32"
    assert backend.asarray([1.0, 2.0]).dtype == np.float32
    assert backend.asarray(np.ones(2)).dtype == np.float32  # float data take the default
    assert backend.asarray([1, 2]).dtype.kind == "i"  # integers are left alone
    assert backend.asarray([1.0], dtype="float64").dtype == np.float64  # explicit dtype wins
    assert Tensor([0.5]).dtype == np.float32
    tc.set_default_dtype(np.float64)  # NumPy dtypes are accepted too
    assert tc.get_default_dtype() == "float64"
    for bad in ("float16", "int64", "nope"):
        with pytest.raises(BackendError, match="float64"):
            tc.set_default_dtype(bad)
    assert tc.get_default_dtype() == "float64"


def test_asnumpy():
    a = np.arange(3.0)
    assert isinstance(tc.asnumpy(a), np.ndarray)
    np.testing.assert_array_equal(tc.asnumpy(a), a)
    assert tc.asnumpy(2.5).shape == () and float(tc.asnumpy(2.5)) == 2.5
    np.testing.assert_array_equal(tc.asnumpy([1, 2]), [1, 2])

    class FakeDeviceArray:  # duck-types a CuPy array: asnumpy must call .get()
        __module__ = "cupy._core.core"

        def get(self) -> np.ndarray:
            return np.array([4.0, 5.0])

    np.testing.assert_array_equal(tc.asnumpy(FakeDeviceArray()), [4.0, 5.0])


def test_xp_forwards_to_the_current_module():
    assert tc.xp.exp is np.exp
    assert "numpy" in repr(tc.xp)
    assert backend.is_array(np.ones(2)) and not backend.is_array([1.0])
    r1, r2 = backend.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(r1.standard_normal(4), r2.standard_normal(4))


# -- SavableGenerator: a backend generator whose state survives a checkpoint ----------------------


def _draws(rng):
    """A few draws of the kinds the library makes (sampled targets)."""
    return [tc.asnumpy(rng.random((3, 1))), tc.asnumpy(rng.standard_normal((2, 2)))]


def _assert_same(a, b):
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


def test_savable_generator_draws_the_default_rng_stream():
    rng, ref = backend.SavableGenerator(5), backend.default_rng(5)
    _assert_same(_draws(rng), _draws(ref))


@pytest.mark.parametrize("seed", [7, None])
@pytest.mark.parametrize("path", ["state", "replay"])
def test_savable_generator_resumes_exactly(seed, path):
    """A state taken mid-stream continues the same stream in another generator, on both paths:
    the exact state (NumPy) and the draw log replayed from the seed (CuPy, whose state lives on
    the GPU; forced here on any backend). The state survives JSON, as in a checkpoint."""
    rng = backend.SavableGenerator(seed)
    if path == "replay":
        rng._readable = False  # log the draws and replay them, as on CuPy
    elif not rng._readable:
        pytest.skip("this backend's generator state cannot be read (the replay case covers it)")
    for _ in range(3):
        _draws(rng)
    rng.random(4)
    state = json.loads(json.dumps(rng.get_state()))
    assert state["kind"] == path
    want = _draws(rng)
    other = backend.SavableGenerator(123)
    other.set_state(state)
    _assert_same(_draws(other), want)


def test_savable_generator_log_is_run_length_encoded_and_plain():
    rng = backend.SavableGenerator(0)
    rng._readable = False
    for _ in range(5):
        rng.random((2, 1), dtype=np.float32)
    rng.standard_normal(3)
    assert rng.get_state()["draws"] == [
        ["random", [[2, 1]], {"dtype": "float32"}, 5],
        ["standard_normal", [3], {}, 1],
    ]
    with pytest.raises(TypeError, match="cannot be logged for replay"):
        rng.standard_normal(size=(2,), out=backend.xp.zeros(2))


def test_savable_generator_rejects_foreign_states():
    rng = backend.SavableGenerator(0)
    with pytest.raises(ValueError, match="not a SavableGenerator state"):
        rng.set_state({"kind": "nonsense"})


def test_moved_helpers_are_re_exported_by_the_backend():
    """The generator and its replay live in ``tinycurv.random``, the malloc setting with the
    benchmarks; ``tinycurv.backend`` still offers every one of them (the same objects)."""
    from tinycurv import random
    from tinycurv.bench import memory

    for name in ("SavableGenerator", "generator_state", "restore_generator"):
        assert getattr(backend, name) is getattr(random, name)
    assert backend.retain_freed_memory is memory.retain_freed_memory


def test_the_random_module_imports_on_its_own():
    """``tinycurv.random`` imports the backend, which re-exports from it: no import cycle."""
    env = {k: v for k, v in os.environ.items() if k != "TINYCURV_BACKEND"}  # NumPy
    code = "import tinycurv.random as r; print(r.generator_state(r.SavableGenerator(1))['kind'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["state"]
