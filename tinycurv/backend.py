"""The array backend: NumPy or CuPy behind one name, ``xp``.

Every module of tinycurv does its array math through ``xp``::

    from tinycurv.backend import xp
    z = xp.tanh(a @ w.T)

``xp`` forwards attribute access to the current array module, so ``set_backend`` takes effect
everywhere at once. The backend is chosen at import by ``TINYCURV_BACKEND`` (default
``numpy``); the default dtype is float64, which verification by finite differences needs.

This is the only module that imports NumPy for array math; the host-side helpers that may
(data, checkpoints, plots, …) are listed in ``tinycurv.host_side.HOST_SIDE_MODULES``.
"""

from __future__ import annotations

import contextlib
import os
from types import ModuleType
from typing import Any

import numpy

from tinycurv.host_side import HOST_SIDE_MODULES  # noqa: F401  (re-exported)

BACKENDS = ("numpy", "cupy")
DTYPES = ("float64", "float32")

_module: ModuleType = numpy
_name: str = "numpy"
_dtype: str = "float64"


class BackendError(RuntimeError):
    """The requested backend or dtype cannot be used."""


def _import_cupy() -> ModuleType:
    try:
        import cupy
    except ImportError as err:
        raise BackendError(
            "backend 'cupy' needs CuPy: install it with `pip install -e \".[cuda12]\"` "
            "(or `.[cuda13]`, matching your CUDA driver), or set TINYCURV_BACKEND=numpy"
        ) from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDARuntimeError when no driver is present
        raise BackendError(
            f"backend 'cupy': CuPy is installed but no CUDA GPU is usable ({err}); "
            "set TINYCURV_BACKEND=numpy"
        ) from err
    if count < 1:
        raise BackendError("backend 'cupy': no CUDA GPU found; set TINYCURV_BACKEND=numpy")
    return cupy


def set_backend(name: str) -> ModuleType:
    """Switch the array backend to ``"numpy"`` or ``"cupy"`` and return its module; a
    BackendError for an unknown name, or where CuPy or a GPU is missing (saying what to do)."""
    global _module, _name
    key = str(name).strip().lower()
    if key not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    _module = numpy if key == "numpy" else _import_cupy()
    _name = key
    return _module


def get_backend() -> ModuleType:
    """The current array module (``numpy`` or ``cupy``)."""
    return _module


def backend_name() -> str:
    """The current backend's name, ``"numpy"`` or ``"cupy"``."""
    return _name


def set_default_dtype(dtype: str) -> None:
    """Set the dtype of new parameters and data: ``"float64"`` (default) or ``"float32"``."""
    global _dtype
    try:
        key = numpy.dtype(dtype).name if dtype is not None else "None"
    except TypeError:
        key = str(dtype)
    if key not in DTYPES:
        raise BackendError(f"unknown default dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    _dtype = key


def get_default_dtype() -> str:
    """The default floating dtype's name, ``"float64"`` or ``"float32"``."""
    return _dtype


def asnumpy(x: Any) -> numpy.ndarray:
    """A host (NumPy) copy of a backend array; NumPy arrays and scalars pass through."""
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    return numpy.asarray(x)


def asarray(x: Any, dtype: Any = None) -> Any:
    """``x`` as an array of the current backend (floating data get the default dtype)."""
    if dtype is None:
        arr = _module.asarray(x)
        if arr.dtype.kind == "f" and arr.dtype.name != _dtype:
            arr = arr.astype(_dtype)
        return arr
    return _module.asarray(x, dtype=dtype)


def is_host_array(x: Any) -> bool:
    """Whether ``x`` is a NumPy array (on the host, whatever the backend)."""
    return isinstance(x, numpy.ndarray)


def is_array(x: Any) -> bool:
    """Whether ``x`` is an array of NumPy or of the current backend."""
    return isinstance(x, (numpy.ndarray, _module.ndarray))


def quiet_float_errors() -> Any:
    """A context without NumPy's overflow/invalid/divide warnings (CuPy has none): for work
    that runs to the end on the device and is checked once afterwards."""
    return numpy.errstate(all="ignore") if _name == "numpy" else contextlib.nullcontext()


class _ArrayModule:
    """Forwards ``xp.name`` to the current backend module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_module, name)

    def __repr__(self) -> str:
        return f"<tinycurv backend {_name!r}>"


xp: Any = _ArrayModule()

set_backend(os.environ.get("TINYCURV_BACKEND", "numpy"))

# re-exports (at the bottom: these modules import this one)
from tinycurv.bench.memory import retain_freed_memory  # noqa: E402, F401
from tinycurv.random import SavableGenerator, default_rng, generator_state, restore_generator  # noqa: E402, F401
