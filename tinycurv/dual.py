"""Forward mode: dual numbers, and array functions that understand them.

``Dual(primal, tangent)`` stands for ``primal + ε·tangent`` with ``ε² = 0``, so ``f(Dual(x, v))``
is ``Dual(f(x), f'(x)·v)``: the value and a Jacobian-vector product (JVP) in one pass. Every
function below (``add``, ``matmul``, ``exp``, ``sum``, ``getitem``, …) takes plain backend arrays
or duals. Reverse mode (``tinycurv.ops``) writes its forward and backward rules with these only,
so on dual data the gradient comes back as ``Dual(∇L, H·v)``: forward-over-reverse, a
Hessian-vector product (Pearlmutter 1994).

Shapes: ``tangent.shape`` is ``primal.shape`` (one direction) or ``(k,) + primal.shape`` (a
*batched* dual: k directions share the primal work). A primal or a tangent may itself be a dual:
``tinycurv.functional.taylor`` nests three levels for third derivatives. A constant is a plain
array, never a dual with a zero tangent. Notation: ``x``, ``y`` operands, ``dx``, ``dy`` their
tangents. Batched broadcasting, indexing and the fused matmul paths: docs/engine.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from tinycurv import plumbing
from tinycurv.backend import xp

Array = Any


class Dual:
    """``primal + ε·tangent``: a value (array or Dual) and its derivative (array or Dual) along
    one direction, shape ``primal.shape``, or along k directions, ``(k,) + primal.shape``."""

    __slots__ = ("primal", "tangent")
    __array_ufunc__ = None  # make NumPy defer `ndarray op Dual` to our reflected operators
    __array_priority__ = 1000.0  # the same for CuPy

    def __init__(self, primal: Array, tangent: Array) -> None:
        self.primal = primal
        self.tangent = tangent

    # shape of the value, not of the tangent
    shape = property(lambda self: self.primal.shape)
    ndim = property(lambda self: self.primal.ndim)
    dtype = property(lambda self: self.primal.dtype)
    size = property(lambda self: self.primal.size)
    T = property(lambda self: transpose(self))

    __repr__ = lambda self: f"Dual(primal={self.primal!r}, tangent={self.tangent!r})"
    __len__ = lambda self: len(self.primal)
    __add__ = lambda self, o: add(self, o)
    __radd__ = lambda self, o: add(o, self)
    __sub__ = lambda self, o: sub(self, o)
    __rsub__ = lambda self, o: sub(o, self)
    __mul__ = lambda self, o: mul(self, o)
    __rmul__ = lambda self, o: mul(o, self)
    __truediv__ = lambda self, o: div(self, o)
    __rtruediv__ = lambda self, o: div(o, self)
    __matmul__ = lambda self, o: matmul(self, o)
    __rmatmul__ = lambda self, o: matmul(o, self)
    __neg__ = lambda self: neg(self)
    __pow__ = lambda self, c: power(self, c)
    __getitem__ = lambda self, idx: getitem(self, idx)
    # comparisons look at the value only: they decide branches, they carry no derivative
    __gt__ = lambda self, o: primal(self) > primal(o)
    __ge__ = lambda self, o: primal(self) >= primal(o)
    __lt__ = lambda self, o: primal(self) < primal(o)
    __le__ = lambda self, o: primal(self) <= primal(o)
    # methods (the functions of this module, which a lambda in a class body sees)
    reshape = lambda self, *s: reshape(self, s[0] if len(s) == 1 else s)
    sum = lambda self, axis=None, keepdims=False: sum(self, axis=axis, keepdims=keepdims)
    astype = lambda self, dtype: Dual(astype(self.primal, dtype), astype(self.tangent, dtype))


# ----------------------------------------------------------------------------- helpers


is_dual = lambda x: isinstance(x, Dual)  # x a dual number (at any nesting depth)?
ndim = lambda x: getattr(x, "ndim", 0)  # dimensions of the value (0 for Python scalars)
shape = lambda x: tuple(getattr(x, "shape", ()))  # shape of the value (() for Python scalars)
is_batched = lambda x: ndim(x.tangent) == ndim(x.primal) + 1  # k directions in the tangent?
_split = lambda x: (x.primal, x.tangent) if isinstance(x, Dual) else (x, None)
# a + b, where None (the missing tangent of a constant) counts as zero
_tsum = lambda a, b: b if a is None else a if b is None else add(a, b)


def primal(x: Any) -> Any:
    """The innermost value of a (possibly nested) dual; plain values pass through."""
    while isinstance(x, Dual):
        x = x.primal
    return x


def _align(x: Any, out_ndim: int) -> Any:
    """The tangent of ``x`` (None for a constant) ready to broadcast against a rank-``out_ndim``
    result: a batched one gets singleton axes between its k axis and its value axes."""
    if not isinstance(x, Dual):
        return None
    t = x.tangent
    missing = out_ndim - ndim(x.primal)
    if missing > 0 and is_batched(x):
        t = reshape(t, shape(t)[:1] + (1,) * missing + shape(t)[1:])
    return t


def _full(t: Any, like: Any, batched_k: int | None) -> Any:
    """Broadcast a tangent to the full shape of the result ``like`` (keeps the invariant)."""
    target = shape(like) if batched_k is None else (batched_k,) + shape(like)
    return t if shape(t) == target else broadcast_to(t, target)


def _k(*xs: Any) -> int | None:
    """The number of directions of the batched duals among ``xs`` (None if none is batched)."""
    return next((shape(x.tangent)[0] for x in xs if is_dual(x) and is_batched(x)), None)


def _axes(axis: Any, nd: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(nd))
    axes = axis if isinstance(axis, tuple | list) else (axis,)
    return tuple(a % nd for a in axes)


# ----------------------------------------------------------------------------- arithmetic


def add(x: Any, y: Any) -> Any:
    """x + y (broadcasting). d(x + y) = dx + dy."""
    if not (isinstance(x, Dual) or isinstance(y, Dual)):
        return x + y
    p = add(_split(x)[0], _split(y)[0])
    t = _tsum(_align(x, ndim(p)), _align(y, ndim(p)))
    return Dual(p, _full(t, p, _k(x, y)))


def sub(x: Any, y: Any) -> Any:
    """x − y (broadcasting). d(x − y) = dx − dy."""
    if not (isinstance(x, Dual) or isinstance(y, Dual)):
        return x - y
    p = sub(_split(x)[0], _split(y)[0])
    ty = _align(y, ndim(p))
    t = _tsum(_align(x, ndim(p)), None if ty is None else neg(ty))
    return Dual(p, _full(t, p, _k(x, y)))


def neg(x: Any) -> Any:
    """−x."""
    if not isinstance(x, Dual):
        return -x
    return Dual(neg(x.primal), neg(x.tangent))


def mul(x: Any, y: Any) -> Any:
    """x · y elementwise (broadcasting). d(xy) = dx·y + x·dy."""
    if not (isinstance(x, Dual) or isinstance(y, Dual)):
        return x * y
    (xp_, _), (yp_, _) = _split(x), _split(y)
    p = mul(xp_, yp_)
    tx, ty = _align(x, ndim(p)), _align(y, ndim(p))
    t = _tsum(None if tx is None else mul(tx, yp_), None if ty is None else mul(xp_, ty))
    return Dual(p, _full(t, p, _k(x, y)))


def div(x: Any, y: Any) -> Any:
    """x / y elementwise (broadcasting). d(x/y) = (dx − (x/y)·dy) / y."""
    if not (isinstance(x, Dual) or isinstance(y, Dual)):
        return x / y
    yp_ = _split(y)[0]
    p = div(_split(x)[0], yp_)
    tx, ty = _align(x, ndim(p)), _align(y, ndim(p))
    t = _tsum(tx, None if ty is None else neg(mul(p, ty)))
    return Dual(p, _full(div(t, yp_), p, _k(x, y)))


def power(x: Any, c: float) -> Any:
    """x ** c for a constant scalar exponent c. d(xᶜ) = c·xᶜ⁻¹·dx."""
    if not isinstance(x, Dual):
        return x**c
    return Dual(power(x.primal, c), mul(mul(c, power(x.primal, c - 1)), x.tangent))


def matmul(x: Any, y: Any) -> Any:
    """x @ y for rank ≥ 2 (leading axes broadcast). d(xy) = dx·y + x·dy."""
    if not (isinstance(x, Dual) or isinstance(y, Dual)):
        return x @ y
    (xv, _), (yv, _) = _split(x), _split(y)
    out_ndim = max(ndim(xv), ndim(yv))
    dx, dy = _align(x, out_ndim), _align(y, out_ndim)
    fused = plumbing.matmul_fused(xv, dx, yv, dy)  # the same rule, fewer BLAS calls
    if fused is not None:
        return fused
    p = matmul(xv, yv)
    if dx is None or dy is None:
        return Dual(p, matmul(dx, yv) if dy is None else matmul(xv, dy))
    return Dual(p, plumbing.add_fresh(matmul(dx, yv), matmul(xv, dy)))


# ----------------------------------------------------------------------------- elementwise


def exp(x: Any) -> Any:
    """exp(x). d exp(x) = exp(x)·dx."""
    if not isinstance(x, Dual):
        return xp.exp(x)
    e = exp(x.primal)
    return Dual(e, mul(e, x.tangent))


def log(x: Any) -> Any:
    """log(x). d log(x) = dx / x."""
    if not isinstance(x, Dual):
        return xp.log(x)
    return Dual(log(x.primal), div(x.tangent, x.primal))


def tanh(x: Any) -> Any:
    """tanh(x). d tanh(x) = (1 − tanh²x)·dx."""
    if not isinstance(x, Dual):
        return xp.tanh(x)
    y = tanh(x.primal)
    return Dual(y, mul(sub(1.0, mul(y, y)), x.tangent))


def sigmoid(x: Any) -> Any:
    """σ(x) = 1/(1 + e⁻ˣ), computed stably as (1 + tanh(x/2))/2. dσ = σ(1 − σ)·dx."""
    if not isinstance(x, Dual):
        return 0.5 * (1.0 + xp.tanh(0.5 * x))
    s = sigmoid(x.primal)
    return Dual(s, mul(mul(s, sub(1.0, s)), x.tangent))


def where(cond: Any, x: Any, y: Any) -> Any:
    """Elementwise ``x if cond else y``; ``cond`` is a boolean array (no derivative)."""
    cond = primal(cond)
    if not (isinstance(x, Dual) or isinstance(y, Dual)):
        return xp.where(cond, x, y)
    p = where(cond, _split(x)[0], _split(y)[0])
    tx, ty = _align(x, ndim(p)), _align(y, ndim(p))
    zero = xp.zeros((), dtype=primal(p).dtype)
    t = where(cond, zero if tx is None else tx, zero if ty is None else ty)
    return Dual(p, _full(t, p, _k(x, y)))


maximum = lambda x, y: where(primal(x) >= primal(y), x, y)  # at x == y the derivative follows x
astype = lambda x, dtype: x.astype(dtype) if hasattr(x, "astype") else x  # value and tangent


# ------------------------------------------------------------------------- reductions and shapes


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Sum over ``axis`` (None: all axes); the tangent is summed alike."""
    if not isinstance(x, Dual):
        return xp.sum(x, axis=axis, keepdims=keepdims)
    axes = _axes(axis, ndim(x.primal))
    t_axes = tuple(a + 1 for a in axes) if is_batched(x) else axes
    return Dual(sum(x.primal, axes, keepdims), sum(x.tangent, t_axes, keepdims))


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Mean over ``axis`` (None: all axes)."""
    count = math.prod(shape(x)[a] for a in _axes(axis, ndim(x)))
    return mul(sum(x, axis, keepdims), 1.0 / count)


def reshape(x: Any, new_shape: Sequence[int]) -> Any:
    """Reshape the value (row-major)."""
    new_shape = tuple(new_shape) if isinstance(new_shape, Sequence) else (new_shape,)
    if not isinstance(x, Dual):
        return xp.reshape(x, new_shape)
    t_shape = shape(x.tangent)[:1] + new_shape if is_batched(x) else new_shape
    return Dual(reshape(x.primal, new_shape), reshape(x.tangent, t_shape))


def transpose(x: Any, axes: Sequence[int] | None = None) -> Any:
    """Permute axes (None: reverse them; negative axes count from the end)."""
    if not isinstance(x, Dual):
        return xp.transpose(x, axes)
    nd = ndim(x.primal)
    axes = tuple(reversed(range(nd))) if axes is None else tuple(a % nd for a in axes)
    t_axes = (0,) + tuple(a + 1 for a in axes) if is_batched(x) else axes
    return Dual(transpose(x.primal, axes), transpose(x.tangent, t_axes))


def swapaxes(x: Any, a: int, b: int) -> Any:
    """Swap two axes of the value."""
    a, b = a % ndim(x), b % ndim(x)
    return transpose(x, [b if i == a else a if i == b else i for i in range(ndim(x))])


def broadcast_to(x: Any, new_shape: Sequence[int]) -> Any:
    """Broadcast the value to ``new_shape`` (a read-only view)."""
    new_shape = tuple(new_shape)
    if not isinstance(x, Dual):
        return xp.broadcast_to(x, new_shape)
    t_shape = shape(x.tangent)[:1] + new_shape if is_batched(x) else new_shape
    t = _align(x, len(new_shape))
    return Dual(broadcast_to(x.primal, new_shape), broadcast_to(t, t_shape))


# idx as a tuple of plain (non-dual) indices
_index = lambda idx: tuple(primal(i) for i in (idx if isinstance(idx, tuple) else (idx,)))


def getitem(x: Any, idx: Any) -> Any:
    """``x[idx]``: any NumPy index (basic, advanced, mixed, boolean masks, None, ``...``)."""
    idx = _index(idx)
    if not isinstance(x, Dual):
        return x[idx]
    if not is_batched(x):
        return Dual(getitem(x.primal, idx), getitem(x.tangent, idx))
    if plumbing.k_first_works(idx):
        return Dual(getitem(x.primal, idx), getitem(x.tangent, (slice(None),) + idx))
    # non-adjacent advanced indices: index with the k axis last, where NumPy leaves it alone
    return Dual(
        getitem(x.primal, idx),
        plumbing.k_first(getitem(plumbing.k_last(x.tangent), plumbing.k_index(idx))),
    )


def index_add(target_shape: Sequence[int], idx: Any, y: Any) -> Any:
    """Zeros of ``target_shape`` with ``y`` added at ``idx`` (the adjoint of ``getitem``)."""
    idx, target_shape = _index(idx), tuple(target_shape)
    if not isinstance(y, Dual):
        z = xp.zeros(target_shape, dtype=y.dtype)
        plumbing.add_at(z, idx, y)
        return z
    p = index_add(target_shape, idx, y.primal)
    if not is_batched(y):
        return Dual(p, index_add(target_shape, idx, y.tangent))
    k = shape(y.tangent)[0]
    if plumbing.k_first_works(idx):
        return Dual(p, index_add((k,) + target_shape, (slice(None),) + idx, y.tangent))
    t = index_add(target_shape + (k,), plumbing.k_index(idx), plumbing.k_last(y.tangent))
    return Dual(p, plumbing.k_first(t))


def pad(x: Any, widths: Sequence[tuple[int, int]]) -> Any:
    """Zero-pad the value by ``widths`` (one (before, after) pair per axis)."""
    widths = tuple(tuple(w) for w in widths)
    if not isinstance(x, Dual):
        return xp.pad(x, widths)
    t_widths = ((0, 0),) + widths if is_batched(x) else widths
    return Dual(pad(x.primal, widths), pad(x.tangent, t_widths))


def per_sample_linear(f: Callable[[Array], Array], x: Any) -> Any:
    """``f(x)`` for a *linear* ``f`` over samples on axis 0: ``Dual(f(x), f(dx))``; the k
    directions of a batched dx are folded into the sample axis, so ``f`` runs once for all."""
    if not isinstance(x, Dual):
        return f(x)
    p = per_sample_linear(f, x.primal)
    t = x.tangent
    if not is_batched(x):
        return Dual(p, per_sample_linear(f, t))
    k, n = shape(t)[:2]
    ft = per_sample_linear(f, reshape(t, (k * n,) + shape(t)[2:]))
    # f may map a sample to several rows (im2col: one per window): split by the result's shape
    return Dual(p, reshape(ft, (k,) + shape(p)))


def stop_gradient_max(x: Any, axis: Any = None, keepdims: bool = True) -> Array:
    """max of the innermost value: a constant shift for stable exponentials."""
    return xp.max(primal(x), axis=axis, keepdims=keepdims)


# the tangent of x as a plain array shaped like ``like`` (zeros for constants)
tangent_of = lambda x, like: x.tangent if isinstance(x, Dual) else xp.zeros_like(primal(like))
