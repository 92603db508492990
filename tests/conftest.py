"""Shared test set-up: float64 on NumPy for every test, and a deterministic Hypothesis profile.

Every test starts with the NumPy backend and the float64 default dtype (finite differences need
float64) and gets back whatever was set before, so a test that switches either cannot leak.

Hypothesis runs derandomised (the same examples on every run and machine), without deadlines
(the first call of a primitive may be slow) and with few examples, so the engine suite stays
fast. ``TINYCURV_HYPOTHESIS_PROFILE=thorough`` runs many more examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tinycurv import backend

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


@pytest.fixture(autouse=True)
def float64_numpy() -> Iterator[None]:
    """Run the test on the NumPy backend in float64; restore the previous settings after."""
    name, dtype = backend.backend_name(), backend.get_default_dtype()
    backend.set_backend("numpy")
    backend.set_default_dtype("float64")
    try:
        yield
    finally:
        backend.set_backend(name)
        backend.set_default_dtype(dtype)
