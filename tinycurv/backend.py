"""The array backend: NumPy or CuPy behind one name, ``xp``.

Every module of tinycurv does its array math through ``xp``::

    from tinycurv.backend import xp
    z = xp.tanh(a @ w.T)

``xp`` forwards attribute access to the current array module, so switching the backend with
``set_backend`` takes effect everywhere at once. This is the only module that imports NumPy for
array math (a few declared host-side helpers — data loading, checkpoints, plots — use NumPy for
host arrays; they are listed in ``HOST_SIDE_MODULES``).

The backend is chosen at import from the environment variable ``TINYCURV_BACKEND``
(``numpy`` by default); the default floating dtype is float64, because verification by finite
differences needs it.
"""

from __future__ import annotations

import contextlib
import os
from types import ModuleType
from typing import Any

import numpy

BACKENDS = ("numpy", "cupy")
DTYPES = ("float64", "float32")

# The modules allowed to import NumPy, each host-side by design (its docstring says so); every
# other module does its array math through ``xp``. ``tests/test_backend_guard.py`` enforces this
# list; "pkg.*" admits a whole package (its ``__init__`` docstring says so).
HOST_SIDE_MODULES = (
    "tinycurv.backend",  # the backend itself: NumPy is one of the two array modules
    "tinycurv.data",  # loaders and mini-batches return host NumPy arrays
    "tinycurv.checkpoint",  # .npz files: everything is copied to the host first
    "tinycurv.plotting",  # matplotlib on host data
    "tinycurv.cli",  # argument parsing, printing, exit codes
    "tinycurv.compare",  # data, clock, CSV and plots around whole training runs
    "tinycurv.verify",  # seeded host problems for the numerical claims
    "tinycurv.nn.init",  # one host generator gives the same initial weights on every backend
    "tinycurv.curvature.grouped_step",  # GroupedNewton's S-sized cubic solve (SciPy, host)
    "tinycurv.optim.grouped_newton",  # the S-sized summary and curvature-batch indices on host
    "tinycurv.bench.*",  # benchmarks: the clock, device syncs, host data, tables
)

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
    """Switch the array backend to ``"numpy"`` or ``"cupy"`` and return its module.

    Raises
    ------
    BackendError
        For an unknown name, or ``"cupy"`` where CuPy or a GPU is missing (the message says
        what to install or set).
    """
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


def retain_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Ask glibc's malloc to keep freed host memory for reuse (Linux; opt-in, process-wide).

    By default glibc returns large freed blocks to the system (``munmap``, heap trimming), so
    the next NumPy temporary of the same size pays page faults again. The engine's dual
    temporaries are such blocks: at width 400 the HVP of ``tinycurv bench engine`` costs 3.6×
    a gradient by the wall clock but 2.4× in CPU time. Serving blocks up to ``mmap_threshold``
    bytes from the heap and trimming it only above ``trim_threshold`` removes most of that
    (BENCHMARKS.md). The price: the process keeps up to ``trim_threshold`` of freed memory.
    Setting ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` in the environment before
    Python starts does the same.

    Returns
    -------
    bool
        Whether glibc accepted both settings (False on other C libraries and systems).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
    return bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold))) and bool(
        mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))
    )


def quiet_float_errors() -> Any:
    """A context without NumPy's overflow/invalid/divide warnings (CuPy never warns on them).

    For computations that run to the end on the device and are checked once afterwards (the
    check, not a warning, decides what a non-finite value means).
    """
    return numpy.errstate(all="ignore") if _name == "numpy" else contextlib.nullcontext()


def default_rng(seed: Any = None) -> Any:
    """A random generator of the current backend, seeded like ``numpy.random.default_rng``."""
    return _module.random.default_rng(seed)


class SavableGenerator:
    """The backend's random generator, with a state that can be saved and restored on every backend.

    Draws go to ``self.generator = default_rng(seed)`` of the current backend
    (``rng.random(shape)``, ``rng.standard_normal(shape)``, ...).

    On NumPy the saved state is the bit generator's state dict. CuPy keeps its generator's state
    on the GPU and cannot export it, so there every draw is logged instead (method, shape and
    arguments, run-length encoded: one entry per run of identical calls) and ``set_state`` re-seeds
    and replays the log. Either way a resumed run draws exactly the numbers an uninterrupted run
    would have drawn. On CuPy, draws must take plain arguments (shapes, numbers, dtypes), and
    ``set_state`` repeats every draw since the seed (the log stays small, one entry per run of
    identical calls, but the replay's time grows with the number of steps trained).

    Parameters
    ----------
    seed : int, optional
        As for ``numpy.random.default_rng``; None takes fresh entropy from the OS (then saved as
        the entropy that was drawn, so replay still works).
    """

    def __init__(self, seed: Any = None) -> None:
        self.seed = numpy.random.SeedSequence(seed).entropy  # what replays start from
        self.generator = _module.random.default_rng(self.seed)
        self._readable = isinstance(getattr(self.generator.bit_generator, "state", None), dict)
        self._log: list[list[Any]] = []  # [[method, args, kwargs, times], ...] (CuPy only)

    def __getattr__(self, name: str) -> Any:
        draw = getattr(self.__dict__["generator"], name)
        if self.__dict__["_readable"] or not callable(draw) or name.startswith("_"):
            return draw

        def logged(*args: Any, **kwargs: Any) -> Any:
            entry = [name, _plain(args, name), _plain(kwargs, name)]
            if self._log and self._log[-1][:3] == entry:
                self._log[-1][3] += 1
            else:
                self._log.append([*entry, 1])
            return draw(*args, **kwargs)

        return logged

    def get_state(self) -> dict[str, Any]:
        """A state of dicts, lists, strings and numbers (JSON-ready), for ``set_state``."""
        if self._readable:
            return {"kind": "state", "state": self.generator.bit_generator.state}
        return {"kind": "replay", "seed": self.seed, "draws": [list(e) for e in self._log]}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from ``state``, as returned by ``get_state`` on the same backend."""
        kind = state.get("kind")
        if kind == "state" and self._readable:
            self.generator.bit_generator.state = state["state"]
        elif kind == "replay":
            self.seed = state["seed"]
            self.generator = _module.random.default_rng(self.seed)
            self._readable = isinstance(getattr(self.generator.bit_generator, "state", None), dict)
            self._log = []
            for name, args, kwargs, times in state["draws"]:
                for _ in range(int(times)):
                    getattr(self, name)(*args, **kwargs)  # the same draws, results dropped
        elif kind == "state":
            raise BackendError(
                f"this generator state was saved on NumPy; the {_name} generator cannot take "
                "it (save and load on the same backend)"
            )
        else:
            raise ValueError(f"not a SavableGenerator state: kind {kind!r}")


def _plain(value: Any, name: str) -> Any:
    """``value`` as JSON-ready data (tuples become lists, dtypes their names), for the draw log."""
    if isinstance(value, (list, tuple)):
        return [_plain(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, name) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, numpy.integer | numpy.floating):
        return value.item()
    if isinstance(value, type) or isinstance(value, numpy.dtype):
        return numpy.dtype(value).name
    raise TypeError(
        f"SavableGenerator.{name}: argument of type {type(value).__name__} cannot be logged for "
        "replay on this backend; pass shapes, numbers and dtypes only"
    )


def generator_state(rng: Any) -> dict[str, Any] | None:
    """The savable state of ``rng`` (a ``SavableGenerator`` or NumPy generator), else None."""
    if isinstance(rng, SavableGenerator):
        return rng.get_state()
    state = getattr(getattr(rng, "bit_generator", None), "state", None)
    return {"kind": "state", "state": state} if isinstance(state, dict) else None


def restore_generator(rng: Any, state: dict[str, Any]) -> Any:
    """``rng`` continued from ``state`` (from ``generator_state``), restored in place.

    A NumPy state of another bit generator (say MT19937 into a PCG64 generator) gives a new NumPy
    generator of the saved kind instead; the caller keeps the returned generator.
    """
    if "bit_generator" in state:  # a bare NumPy bit-generator state
        state = {"kind": "state", "state": state}
    if isinstance(rng, SavableGenerator):
        rng.set_state(state)
        return rng
    if state.get("kind") != "state":
        raise ValueError(f"cannot restore a {state.get('kind')!r} state into {type(rng).__name__}")
    kind = state["state"]["bit_generator"]
    if type(getattr(rng, "bit_generator", None)).__name__ != kind:
        if rng is not None and not isinstance(rng, numpy.random.Generator):
            raise ValueError(f"the saved {kind} state does not fit {type(rng).__name__}")
        rng = numpy.random.Generator(getattr(numpy.random, kind)())
    rng.bit_generator.state = state["state"]
    return rng


class _ArrayModule:
    """Forwards ``xp.name`` to the current backend module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_module, name)

    def __repr__(self) -> str:
        return f"<tinycurv backend {_name!r}>"


xp: Any = _ArrayModule()

set_backend(os.environ.get("TINYCURV_BACKEND", "numpy"))
