"""A CPU stand-in for CuPy: NumPy underneath, CuPy's strictness about host and device on top.

Not CuPy and not fast: it lets the CPU-only CI run the whole suite through the CuPy code paths
(``PYTHONPATH=tinycurv/testing/cupy_stand_in TINYCURV_BACKEND=cupy pytest tests``, a step of
``.ci/run``),
so that a NumPy array meeting a device array, or an implicit device-to-host conversion, fails
there as it would on a GPU. What it models:

* ``cupy.ndarray`` is a wrapper type: implicit conversion to NumPy (``np.asarray``,
  ``np.testing``) raises TypeError, as CuPy does; ``.get()`` is the explicit transfer;
* mixing with ``numpy.ndarray`` in operators, ufuncs and functions raises TypeError (NumPy
  index arrays are accepted, as CuPy converts them);
* NumPy functions on it dispatch (``__array_function__``/``__array_ufunc__``), as in CuPy;
* reductions give 0-d arrays, not NumPy scalars; ``.flags`` has no ``writeable``;
* ``random.default_rng`` draws another stream than NumPy's for the same seed, and its bit
  generator's ``state`` is a method (CuPy's state lives on the GPU and cannot be exported);
* the memory pool counts the bytes of live arrays, and ``cuda.set_allocator`` hooks see each
  allocation;
* every device-to-host transfer (``get``, ``float``/``int``/``bool``, ``item``, ``tolist``) is
  recorded in ``SYNCS`` with the tinycurv line that caused it (``tests/test_backend_syncs.py``).
"""

import contextlib as _contextlib
import weakref as _weakref

import numpy as _np

_used = [0]  # bytes of live arrays owning their data (the memory pool's used_bytes)
_allocator: list = [None]  # set by cuda.set_allocator; called after each allocation


def _free(n):
    _used[0] -= n


SYNCS: list = []  # (kind, stack summary) of every device-to-host transfer, for audits


def _sync(kind):
    import sys
    import traceback

    package = str(getattr(sys.modules.get("tinycurv"), "__file__", "")).rsplit("__init__", 1)[0]
    frames = [
        f for f in traceback.extract_stack()[:-2] if package and f.filename.startswith(package)
    ]
    where = f"{frames[-1].filename[len(package) :]}:{frames[-1].lineno}" if frames else "?"
    SYNCS.append((kind, where))


_live = _weakref.WeakValueDictionary()  # id(numpy array) -> live wrapper (.base identity)


class _Flags:
    def __init__(self, a):
        self.c_contiguous = a.flags.c_contiguous
        self.f_contiguous = a.flags.f_contiguous
        self.owndata = a.flags.owndata


def _is_host(x):
    return isinstance(x, _np.ndarray)


def _check(x, what):
    if isinstance(x, (list, tuple)):
        for v in x:
            _check(v, what)
    elif isinstance(x, dict):
        for v in x.values():
            _check(v, what)
    elif _is_host(x) and x.ndim > 0:
        raise TypeError(f"Unsupported type {type(x)} (fakecupy: NumPy array passed to {what})")


def _unwrap(x):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, list):
        return [_unwrap(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x):
    if isinstance(x, _np.ndarray):
        w = _live.get(id(x))
        if w is not None and w._a is x:
            return w
        return ndarray(x)
    if isinstance(x, _np.generic) and not isinstance(x, (_np.str_, _np.bytes_)):
        return ndarray(_np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _call(fn, what, args, kwargs, allow_host=False):
    if not allow_host:
        _check(args, what)
        _check(kwargs, what)
    return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))


class ndarray:
    __module__ = "cupy._core.core"
    __array_priority__ = 100.0

    def __init__(self, a):
        self._a = a
        _live[id(a)] = self
        if a.flags.owndata and a.nbytes:  # device-memory accounting for the pool stand-in
            _used[0] += a.nbytes
            _weakref.finalize(self, _free, a.nbytes)
            if _allocator[0] is not None:
                _allocator[0](a.nbytes)

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
            "construct a NumPy array explicitly."
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _call(getattr(ufunc, method), f"numpy.{ufunc.__name__}", inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, f"numpy.{func.__name__}", args, kwargs)

    def get(self, stream=None):
        _sync("get")
        return self._a.copy()

    @property
    def flags(self):
        return _Flags(self._a)

    @property
    def base(self):
        b = self._a.base
        while b is not None and not isinstance(b, _np.ndarray):
            b = getattr(b, "base", None)
        return None if b is None else _wrap(b)

    def __getattr__(self, name):
        if name.startswith("__") or name == "_a":
            raise AttributeError(name)
        if name in ("item", "tolist"):
            _sync(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return lambda *a, **k: _call(attr, f"ndarray.{name}", a, k)
        return _wrap(attr)

    def __repr__(self):
        return "fakecupy." + repr(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __float__(self):
        _sync("__float__")
        return float(self._a)

    def __int__(self):
        _sync("__int__")
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __bool__(self):
        _sync("__bool__")
        return bool(self._a)

    def __complex__(self):
        return complex(self._a)

    def __getitem__(self, idx):
        return _wrap(self._a[_unwrap(idx)])

    def __setitem__(self, idx, value):
        _check(value, "__setitem__")
        self._a[_unwrap(idx)] = _unwrap(value)

    def __hash__(self):
        return id(self)


def _binary(name, reflected=False, inplace=False):
    op = getattr(_np.ndarray, name)

    def method(self, other):
        if isinstance(other, _np.ndarray) and other.ndim > 0:
            raise TypeError(f"Unsupported type {type(other)} (fakecupy: {name})")
        if not isinstance(other, (ndarray, int, float, complex, bool, _np.generic)) and not (
            isinstance(other, _np.ndarray)
        ):
            return NotImplemented
        result = op(self._a, _unwrap(other))
        if inplace:
            return self
        return _wrap(result)

    return method


for _n in (
    "add",
    "sub",
    "mul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "matmul",
    "and",
    "or",
    "xor",
    "lt",
    "le",
    "gt",
    "ge",
    "eq",
    "ne",
):
    _d = f"__{_n}__"
    if hasattr(_np.ndarray, _d):
        setattr(ndarray, _d, _binary(_d))
    if hasattr(_np.ndarray, f"__r{_n}__"):
        setattr(ndarray, f"__r{_n}__", _binary(f"__r{_n}__"))
    if hasattr(_np.ndarray, f"__i{_n}__"):
        setattr(ndarray, f"__i{_n}__", _binary(f"__i{_n}__", inplace=True))
for _n in ("neg", "pos", "abs", "invert"):
    _d = f"__{_n}__"
    setattr(ndarray, _d, (lambda d: lambda self: _wrap(getattr(self._a, d)()))(_d))


class _Ufunc:
    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__

    def __call__(self, *a, **k):
        return _call(self._uf, f"cupy.{self.__name__}", a, k)

    def at(self, a, idx, b=None):
        # CuPy's ufunc.at runs ndarray._scatter_op, whose _prepare_slice_list converts NumPy/list
        # index arrays to device arrays (as __getitem__ does): only the values are checked
        _check(b, f"cupy.{self.__name__}.at")
        self._uf.at(_unwrap(a), _unwrap(idx), _unwrap(b))

    def __getattr__(self, name):
        attr = getattr(self._uf, name)
        return (
            (lambda *a, **k: _call(attr, f"cupy.{self.__name__}.{name}", a, k))
            if callable(attr)
            else attr
        )


def asarray(a, dtype=None, order=None, **kwargs):
    if isinstance(a, ndarray):
        return a if dtype is None else _wrap(a._a.astype(dtype, copy=False))
    return ndarray(_np.array(a, dtype=dtype, order=order, copy=True))


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, ndarray):
        return _wrap(_np.array(a._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    return ndarray(_np.array(_unwrap(a), dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asnumpy(a, stream=None):
    return a._a.copy() if isinstance(a, ndarray) else _np.asarray(a)


def get_array_module(*args):
    import sys

    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else _np


_PASS = {
    "dtype",
    "finfo",
    "iinfo",
    "float32",
    "float64",
    "int64",
    "int32",
    "bool_",
    "newaxis",
    "nan",
    "inf",
    "pi",
    "e",
    "result_type",
    "promote_types",
    "can_cast",
    "issubdtype",
    "floating",
    "integer",
    "number",
    "ndim",
    "shape",
}


def __getattr__(name):
    if name in _PASS:
        return getattr(_np, name)
    attr = getattr(_np, name)
    if isinstance(attr, _np.ufunc):
        return _Ufunc(attr)
    if callable(attr) and not isinstance(attr, type):
        return lambda *a, **k: _call(attr, f"cupy.{name}", a, k)
    return attr


class _Namespace:
    def __init__(self, mod, prefix):
        self._mod, self._prefix = mod, prefix

    def __getattr__(self, name):
        attr = getattr(self._mod, name)
        if callable(attr) and not isinstance(attr, type):
            return lambda *a, **k: _call(attr, f"{self._prefix}.{name}", a, k)
        return attr


linalg = _Namespace(_np.linalg, "cupy.linalg")
fft = _Namespace(_np.fft, "cupy.fft")


class _BitGenerator:
    """As CuPy's XORWOW: ``state`` is a method returning a device pointer, not a dict."""

    def state(self):
        return 140000000000000


class _Generator:
    """A different stream than NumPy's for the same seed (as CuPy's XORWOW)."""

    def __init__(self, seed=None):
        if isinstance(seed, _np.random.SeedSequence):  # CuPy accepts one, as NumPy does
            seed = _np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key + (20240601,))
            self._g = _np.random.default_rng(seed)
        else:
            self._g = _np.random.default_rng(None if seed is None else [int(seed), 20240601])
        self.bit_generator = _BitGenerator()

    def __getattr__(self, name):
        attr = getattr(self._g, name)
        if name in ("choice", "permutation", "shuffle"):
            raise AttributeError(f"fakecupy Generator has no {name!r} (not in CuPy's Generator)")
        return lambda *a, **k: _call(attr, f"cupy.random.Generator.{name}", a, k)


class _Random:
    def default_rng(self, seed=None):
        return _Generator(seed)

    def __getattr__(self, name):
        attr = getattr(_np.random, name)
        return (
            (lambda *a, **k: _call(attr, f"cupy.random.{name}", a, k)) if callable(attr) else attr
        )


random = _Random()


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDeviceProperties(i):
        return {"name": b"fakecupy CPU stand-in", "totalGlobalMem": 0}

    @staticmethod
    def deviceSynchronize():
        pass


class _Device:
    def __init__(self, i=0):
        self.id = i

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


class _Cuda:
    runtime = _Runtime()
    Device = _Device

    class Stream:
        class null:
            @staticmethod
            def synchronize():
                pass

        @staticmethod
        def synchronize():
            pass

    @staticmethod
    def get_current_stream():
        return _Cuda.Stream

    @staticmethod
    def set_allocator(fn=None):
        _allocator[0] = fn

    @staticmethod
    def get_allocator():
        return _allocator[0]

    @staticmethod
    @_contextlib.contextmanager
    def using_allocator(fn=None):
        before, _allocator[0] = _allocator[0], fn
        try:
            yield
        finally:
            _allocator[0] = before


cuda = _Cuda()


class _Pool:
    def used_bytes(self):
        return _used[0]

    def malloc(self, size):  # the bytes are counted when the array wraps them
        return None

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


_POOL = _Pool()


def get_default_memory_pool():
    return _POOL


__version__ = "13.0.0-fakecupy"
