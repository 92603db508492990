"""Forward mode: dual numbers, and array functions that understand them.

A ``Dual(primal, tangent)`` stands for ``primal + ε·tangent`` with ``ε² = 0``. Pushing it through a
function ``f`` gives ``f(primal) + ε·f'(primal)·tangent``: the value and the directional derivative
(a Jacobian-vector product, JVP) in one pass.

Every array function below (``add``, ``mul``, ``matmul``, ``exp``, ``sum``, ``reshape``, …) accepts
plain backend arrays *or* duals. Reverse mode (``tinycurv.tensor``) writes both its forward and its
backward rules with these functions only. So if the data flowing through reverse mode are duals,
the gradient it returns is a dual too, and its tangent is the derivative of the gradient along
the tangent direction: a Hessian-vector product. That is forward-over-reverse (Pearlmutter 1994),
and it is the whole trick of the engine.

Two extensions, both needed by the curvature methods:

* **Nesting.** A primal or a tangent may itself be a dual, so ``Dual(Dual(x, v), v)`` carries
  second derivatives along ``v`` (``tinycurv.taylor`` nests three levels for third derivatives).
* **Several directions at once.** A tangent may carry one extra *leading* axis of k directions:
  ``tangent.shape == (k,) + primal.shape``. The primal work is shared and each product with a
  tangent is one bigger (BLAS-friendly) operation. A dual is *batched* exactly when its tangent
  has one more dimension than its primal.

Invariant: ``tangent.shape`` is ``primal.shape`` (or ``(k,) + primal.shape``). A missing tangent
(a constant) is represented by a plain array, never by a dual with zero tangent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tinycurv.backend import xp

Array = Any


class Dual:
    """``primal + ε·tangent``: a value with its directional derivative (forward mode).

    Parameters
    ----------
    primal : array or Dual
        The value.
    tangent : array or Dual
        Its derivative along one direction, shape ``primal.shape``, or along k directions,
        shape ``(k,) + primal.shape``.
    """

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

    def __repr__(self) -> str:
        return f"Dual(primal={self.primal!r}, tangent={self.tangent!r})"

    def __len__(self) -> int:
        return len(self.primal)

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

    def reshape(self, *shape: Any) -> Dual:
        return reshape(self, shape[0] if len(shape) == 1 else shape)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Dual:
        return sum(self, axis=axis, keepdims=keepdims)

    def astype(self, dtype: Any) -> Dual:
        return Dual(astype(self.primal, dtype), astype(self.tangent, dtype))


# ----------------------------------------------------------------------------- helpers


def is_dual(x: Any) -> bool:
    """Whether ``x`` is a dual number (at any nesting depth)."""
    return isinstance(x, Dual)


def primal(x: Any) -> Any:
    """The innermost value of a (possibly nested) dual; plain values pass through."""
    while isinstance(x, Dual):
        x = x.primal
    return x


def ndim(x: Any) -> int:
    """Number of dimensions of the value (0 for Python scalars)."""
    return getattr(x, "ndim", 0)


def shape(x: Any) -> tuple[int, ...]:
    """Shape of the value (``()`` for Python scalars)."""
    return tuple(getattr(x, "shape", ()))


def is_batched(x: Dual) -> bool:
    """Whether the dual's tangent carries a leading axis of several directions."""
    return ndim(x.tangent) == ndim(x.primal) + 1


def _split(x: Any) -> tuple[Any, Any]:
    return (x.primal, x.tangent) if isinstance(x, Dual) else (x, None)


def _align(x: Any, out_ndim: int) -> Any:
    """The tangent of operand ``x``, its k-axis lifted in front of a result of rank ``out_ndim``.

    Broadcasting aligns shapes from the right; a batched tangent of a lower-rank operand needs
    singleton axes between its direction axis and its value axes.
    """
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
    for x in xs:
        if isinstance(x, Dual) and is_batched(x):
            return shape(x.tangent)[0]
    return None


def _tsum(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return add(a, b)


def _axes(axis: Any, nd: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(nd))
    axes = axis if isinstance(axis, tuple | list) else (axis,)
    return tuple(a % nd for a in axes)


# ----------------------------------------------------------------------------- arithmetic


def add(x: Any, y: Any) -> Any:
    """x + y (broadcasting)."""
    if not (isinstance(x, Dual) or isinstance(y, Dual)):
        return x + y
    p = add(_split(x)[0], _split(y)[0])
    t = _tsum(_align(x, ndim(p)), _align(y, ndim(p)))
    return Dual(p, _full(t, p, _k(x, y)))


def sub(x: Any, y: Any) -> Any:
    """x − y (broadcasting)."""
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
    """x @ y for arrays of rank ≥ 2 (batched over leading axes). d(xy) = dx·y + x·dy."""
    if not (isinstance(x, Dual) or isinstance(y, Dual)):
        return x @ y
    (xp_, _), (yp_, _) = _split(x), _split(y)
    out_ndim = max(ndim(xp_), ndim(yp_))
    tx, ty = _align(x, out_ndim), _align(y, out_ndim)
    if tx is not None and ty is not None and _stackable(tx, xp_, yp_, ty):
        # dx·y + x·dy = [dx x]·[y; dy]: the two tangent products as one longer product
        t = xp.concatenate([tx, xp_], axis=1) @ xp.concatenate([yp_, ty], axis=0)
        return Dual(matmul(xp_, yp_), t)
    if tx is not None and _shares_rows(xp_, tx, yp_):
        # [x; dx]·y: the value and dx·y in one taller product (k directions: k·m more rows)
        m, n = shape(xp_)
        both = xp.concatenate([xp_, reshape(tx, (-1, n))], axis=0) @ yp_
        p, t = both[:m], reshape(both[m:], shape(tx)[:-1] + shape(yp_)[1:])
        if ty is not None:
            t += matmul(xp_, ty)  # t is a fresh product: add in place
        return Dual(p, t)
    p = matmul(xp_, yp_)
    if tx is None or ty is None:
        return Dual(p, matmul(tx, yp_) if ty is None else matmul(xp_, ty))
    t, t2 = matmul(tx, yp_), matmul(xp_, ty)
    if is_dual(t) or is_dual(t2) or shape(t) != shape(t2) or t.dtype != t2.dtype:
        return Dual(p, add(t, t2))
    t += t2  # both are fresh products: add in place, saving a temporary of the result's size
    return Dual(p, t)


def _stackable(tx: Any, x: Any, y: Any, ty: Any) -> bool:
    """Whether to form a tangent product as one product over a doubled inner axis.

    Worth it for plain 2-D operands when copying them costs less than the result: outer-product
    shapes such as the weight gradient gᵀa of a small batch (then BLAS also runs more efficiently).
    """
    if any(isinstance(v, Dual) or ndim(v) != 2 for v in (tx, x, y, ty)):
        return False
    (m, k), n = shape(x), shape(y)[1]
    return 2 * k * (m + n) < m * n


def _shares_rows(x: Any, tx: Any, y: Any) -> bool:
    """Whether the value x·y and the tangent dx·y can be one product with rows stacked."""
    if any(isinstance(v, Dual) for v in (x, tx, y)) or ndim(x) != 2 or ndim(y) != 2:
        return False
    return ndim(tx) in (2, 3) and x.dtype == tx.dtype


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


def maximum(x: Any, y: Any) -> Any:
    """Elementwise maximum; where x == y the derivative follows x."""
    return where(primal(x) >= primal(y), x, y)


def astype(x: Any, dtype: Any) -> Any:
    """Cast the value (and its tangent) to ``dtype``."""
    if isinstance(x, Dual):
        return x.astype(dtype)
    return x.astype(dtype) if hasattr(x, "astype") else x


# ------------------------------------------------------------------------- reductions and shapes


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Sum over ``axis`` (None: all axes)."""
    if not isinstance(x, Dual):
        return xp.sum(x, axis=axis, keepdims=keepdims)
    axes = _axes(axis, ndim(x.primal))
    t_axes = tuple(a + 1 for a in axes) if is_batched(x) else axes
    return Dual(sum(x.primal, axes, keepdims), sum(x.tangent, t_axes, keepdims))


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Mean over ``axis`` (None: all axes)."""
    count = 1
    for a in _axes(axis, ndim(x)):
        count *= shape(x)[a]
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
    axes = list(range(ndim(x)))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


def broadcast_to(x: Any, new_shape: Sequence[int]) -> Any:
    """Broadcast the value to ``new_shape`` (a read-only view)."""
    new_shape = tuple(new_shape)
    if not isinstance(x, Dual):
        return xp.broadcast_to(x, new_shape)
    t_shape = shape(x.tangent)[:1] + new_shape if is_batched(x) else new_shape
    t = _align(x, len(new_shape))
    return Dual(broadcast_to(x.primal, new_shape), broadcast_to(t, t_shape))


def _index(idx: Any) -> tuple:
    return idx if isinstance(idx, tuple) else (idx,)


def _k_first_works(idx: tuple) -> bool:
    """Whether ``(slice(None),) + idx`` indexes a batched tangent as ``idx`` indexes its value.

    It does unless ``idx`` holds advanced indices (arrays, lists, masks; with them, ints too)
    that are not adjacent: NumPy moves those to the front, in front of the k axis too.
    """
    picks = [i for i, j in enumerate(idx) if not (j is None or j is Ellipsis or type(j) is slice)]
    if all(isinstance(idx[i], int) and not isinstance(idx[i], bool) for i in picks):
        return True  # basic indexing only
    return picks[-1] - picks[0] == len(picks) - 1


def _k_index(idx: tuple) -> tuple:
    """``idx`` for a tangent whose k axis was moved last (``...`` must not swallow that axis)."""
    return idx + (slice(None),) if any(j is Ellipsis for j in idx) else idx


def _k_last(t: Any) -> Any:
    return transpose(t, tuple(range(1, ndim(t))) + (0,))


def _k_first(t: Any) -> Any:
    return transpose(t, (ndim(t) - 1,) + tuple(range(ndim(t) - 1)))


def getitem(x: Any, idx: Any) -> Any:
    """``x[idx]``: any NumPy index (basic, advanced, mixed, boolean masks, None, ``...``)."""
    idx = tuple(primal(i) for i in _index(idx))
    if not isinstance(x, Dual):
        return x[idx]
    if not is_batched(x):
        return Dual(getitem(x.primal, idx), getitem(x.tangent, idx))
    if _k_first_works(idx):
        return Dual(getitem(x.primal, idx), getitem(x.tangent, (slice(None),) + idx))
    # non-adjacent advanced indices: index with the k axis last, where NumPy leaves it alone
    return Dual(getitem(x.primal, idx), _k_first(getitem(_k_last(x.tangent), _k_index(idx))))


def index_add(target_shape: Sequence[int], idx: Any, y: Any) -> Any:
    """Zeros of ``target_shape`` with ``y`` added at ``idx`` (the adjoint of ``getitem``)."""
    idx, target_shape = tuple(primal(i) for i in _index(idx)), tuple(target_shape)
    if not isinstance(y, Dual):
        z = xp.zeros(target_shape, dtype=y.dtype)
        _add_at(z, idx, y)
        return z
    p = index_add(target_shape, idx, y.primal)
    if not is_batched(y):
        return Dual(p, index_add(target_shape, idx, y.tangent))
    k = shape(y.tangent)[0]
    if _k_first_works(idx):
        return Dual(p, index_add((k,) + target_shape, (slice(None),) + idx, y.tangent))
    t = index_add(target_shape + (k,), _k_index(idx), _k_last(y.tangent))
    return Dual(p, _k_first(t))


def _add_at(z: Array, idx: tuple, y: Array) -> None:
    if all(isinstance(i, slice | int) or i is Ellipsis or i is None for i in idx):
        z[idx] += y  # basic indexing: no repeated positions
    elif hasattr(xp, "add") and hasattr(xp.add, "at"):
        xp.add.at(z, idx, y)
    else:  # CuPy without ufunc.at
        import cupyx

        cupyx.scatter_add(z, idx, y)


def pad(x: Any, widths: Sequence[tuple[int, int]]) -> Any:
    """Zero-pad the value by ``widths`` (one (before, after) pair per axis)."""
    widths = tuple(tuple(w) for w in widths)
    if not isinstance(x, Dual):
        return xp.pad(x, widths)
    t_widths = ((0, 0),) + widths if is_batched(x) else widths
    return Dual(pad(x.primal, widths), pad(x.tangent, t_widths))


def per_sample_linear(f: Callable[[Array], Array], x: Any) -> Any:
    """Apply a *linear* map ``f`` that treats axis 0 as a batch of independent samples.

    For a dual, a linear map acts on value and tangent alike; the k directions of a batched
    tangent are folded into the sample axis, so ``f`` runs once for all of them.
    """
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


def tangent_of(x: Any, like: Any) -> Array:
    """The tangent of ``x`` as a plain array shaped like ``like`` (zeros for constants)."""
    if isinstance(x, Dual):
        return x.tangent
    return xp.zeros_like(primal(like))
