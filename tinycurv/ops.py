"""The primitives of reverse mode: each a ``forward`` and its vector-Jacobian product ``backward``.

Reverse-mode automatic differentiation as in Griewank & Walther, *Evaluating Derivatives* (2008);
run on dual numbers it becomes forward-over-reverse (Pearlmutter 1994). Read one class at a
time: the forward rule and its derivative sit side by side. All array math goes through
``tinycurv.dual`` (imported as ``D``), whose functions accept duals too, so every ``backward``
below, run on dual data, differentiates itself forward.

Notation and shapes: ``gy`` is the cotangent of the output (shaped like the output), ``gx``,
``gw`` those of the inputs (shaped like them: ``unbroadcast`` sums over the axes that
broadcasting added or stretched). The public functions at the end take tensors or constants.
"""

from __future__ import annotations

from typing import Any

from tinycurv import dual as D
from tinycurv import plumbing
from tinycurv.backend import xp
from tinycurv.plumbing import on_backend
from tinycurv.tensor import Function, Tensor, _data


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum a cotangent over the axes that broadcasting added or stretched, back to ``shape``."""
    if D.shape(g) == tuple(shape):
        return g
    lead = D.ndim(g) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and D.shape(g)[lead + i] != 1
    )
    if axes:
        g = D.sum(g, axis=axes, keepdims=True)
    return D.reshape(g, shape) if lead or D.shape(g) != shape else g


# ----------------------------------------------------------------------------- arithmetic


class Add(Function):
    def forward(self, x, y):
        self.shapes = D.shape(x), D.shape(y)
        return D.add(x, y)

    def backward(self, gy):  # gx = gy, gw = gy
        pairs = zip(self.shapes, self.needs_grad, strict=True)
        return tuple(unbroadcast(gy, s) if n else None for s, n in pairs)


class Sub(Function):
    def forward(self, x, y):
        self.shapes = D.shape(x), D.shape(y)
        return D.sub(x, y)

    def backward(self, gy):  # gx = gy, gw = −gy
        (sx, sy), (nx, ny) = self.shapes, self.needs_grad
        return (unbroadcast(gy, sx) if nx else None, unbroadcast(D.neg(gy), sy) if ny else None)


class Mul(Function):
    def forward(self, x, y):
        self.x, self.y = x, y
        return D.mul(x, y)

    def backward(self, gy):  # gx = gy·y, gw = gy·x
        x, y = self.x, self.y
        gx = unbroadcast(D.mul(gy, y), D.shape(x)) if self.needs_grad[0] else None
        gw = unbroadcast(D.mul(gy, x), D.shape(y)) if self.needs_grad[1] else None
        return gx, gw


class Div(Function):
    def forward(self, x, y):
        self.x, self.y = x, y
        return D.div(x, y)

    def backward(self, gy):  # gx = gy/y, gw = −gy·x/y²
        x, y = self.x, self.y
        gx = unbroadcast(D.div(gy, y), D.shape(x)) if self.needs_grad[0] else None
        gw = None
        if self.needs_grad[1]:
            gw = unbroadcast(D.neg(D.div(D.mul(gy, x), D.mul(y, y))), D.shape(y))
        return gx, gw


class Neg(Function):
    def forward(self, x):
        return D.neg(x)

    def backward(self, gy):  # gx = −gy
        return (D.neg(gy),)


class Pow(Function):
    def __init__(self, c: float):
        self.c = float(c)

    def forward(self, x):
        self.x = x
        return D.power(x, self.c)

    def backward(self, gy):  # gx = gy·c·xᶜ⁻¹
        return (D.mul(gy, D.mul(self.c, D.power(self.x, self.c - 1.0))),)


class MatMul(Function):
    """x @ w for operands of rank ≥ 2; leading (batch) axes broadcast."""

    def forward(self, x, w):
        self.x, self.w = x, w
        return D.matmul(x, w)

    def backward(self, gy):
        x, w = self.x, self.w
        gx = gw = None
        if self.needs_grad[0]:  # gx = gy·wᵀ
            gx = unbroadcast(D.matmul(gy, D.swapaxes(w, -1, -2)), D.shape(x))
        if self.needs_grad[1]:  # gw = xᵀ·gy, formed as (gyᵀ x)ᵀ so that for w = Wᵀ (a Linear
            # layer) the gradient of W comes back C-contiguous: same products, faster updates
            gw = unbroadcast(D.swapaxes(D.matmul(D.swapaxes(gy, -1, -2), x), -1, -2), D.shape(w))
        return gx, gw


# ----------------------------------------------------------------------------- elementwise


class Exp(Function):
    def forward(self, x):
        self.y = D.exp(x)
        return self.y

    def backward(self, gy):  # gx = gy·eˣ
        return (D.mul(gy, self.y),)


class Log(Function):
    def forward(self, x):
        self.x = x
        return D.log(x)

    def backward(self, gy):  # gx = gy/x
        return (D.div(gy, self.x),)


class Tanh(Function):
    def forward(self, x):
        self.y = D.tanh(x)
        return self.y

    def backward(self, gy):  # tanh' = 1 − tanh²
        return (D.mul(gy, D.sub(1.0, D.mul(self.y, self.y))),)


class Sigmoid(Function):
    def forward(self, x):
        self.y = D.sigmoid(x)
        return self.y

    def backward(self, gy):  # σ' = σ(1 − σ)
        return (D.mul(gy, D.mul(self.y, D.sub(1.0, self.y))),)


class ReLU(Function):
    def forward(self, x):
        self.mask = D.primal(x) > 0  # a constant: relu is piecewise linear
        return D.mul(x, self.mask)

    def backward(self, gy):  # gx = gy·[x > 0]
        return (D.mul(gy, self.mask),)


class Where(Function):
    """``x`` where ``cond`` else ``y``; ``cond`` is a constant boolean array."""

    def __init__(self, cond: Any):
        self.cond = xp.asarray(D.primal(_data(cond)))

    def forward(self, x, y):
        self.shapes = D.shape(x), D.shape(y)
        return D.where(self.cond, x, y)

    def backward(self, gy):  # gy to x where cond, to y elsewhere
        zero = D.primal(gy).dtype.type(0)
        (sx, sy), (nx, ny) = self.shapes, self.needs_grad
        gx = unbroadcast(D.where(self.cond, gy, zero), sx) if nx else None
        gw = unbroadcast(D.where(self.cond, zero, gy), sy) if ny else None
        return gx, gw


# ----------------------------------------------------------------------------- reductions, shapes


class Sum(Function):
    def __init__(self, axis: Any = None, keepdims: bool = False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.shape = D.shape(x)
        return D.sum(x, axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):  # copy gy back along the summed axes
        if not self.keepdims:  # the summed axes back, as length-1 axes
            summed = D._axes(self.axis, len(self.shape))
            gy = D.reshape(gy, [1 if a in summed else n for a, n in enumerate(self.shape)])
        return (D.broadcast_to(gy, self.shape),)


class Reshape(Function):
    def __init__(self, shape: Any):
        self.new_shape = tuple(shape) if isinstance(shape, tuple | list) else (shape,)

    def forward(self, x):
        self.shape = D.shape(x)
        return D.reshape(x, self.new_shape)

    def backward(self, gy):  # gy back to the input's shape
        return (D.reshape(gy, self.shape),)


class Transpose(Function):
    def __init__(self, axes: Any = None):
        self.axes = None if axes is None else tuple(axes)

    def forward(self, x):
        nd = D.ndim(x)
        self.axes = tuple(reversed(range(nd))) if self.axes is None else D._axes(self.axes, nd)
        return D.transpose(x, self.axes)

    def backward(self, gy):  # the inverse permutation
        return (D.transpose(gy, [self.axes.index(a) for a in range(len(self.axes))]),)


class GetItem(Function):
    def __init__(self, idx: Any):
        # tensors to arrays; host index arrays go to the backend once, not at every sweep
        idx = tuple(map(_data, idx)) if isinstance(idx, tuple) else _data(idx)
        self.idx = tuple(map(on_backend, idx)) if isinstance(idx, tuple) else on_backend(idx)

    def forward(self, x):
        self.shape = D.shape(x)
        return D.getitem(x, self.idx)

    def backward(self, gy):  # gy added back at idx (repeats add up)
        return (D.index_add(self.shape, self.idx, gy),)


def _logsumexp(x: Any, axis: int) -> Any:
    """log Σ exp(x) along ``axis`` (kept), shifted by the constant max m: m + log Σ exp(x − m)."""
    m = D.stop_gradient_max(x, axis=axis)
    return D.add(D.log(D.sum(D.exp(D.sub(x, m)), axis=axis, keepdims=True)), m)


class LogSumExp(Function):
    """log Σ exp(x) along ``axis``, shifted by the (constant) max for stability."""

    def __init__(self, axis: int = -1, keepdims: bool = False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.x, self.lse = x, _logsumexp(x, self.axis)
        return self.lse if self.keepdims else D.sum(self.lse, axis=self.axis)

    def backward(self, gy):  # ∂ lse / ∂x = softmax(x)
        if not self.keepdims:
            gy = D.reshape(gy, D.shape(self.lse))
        return (D.mul(gy, D.exp(D.sub(self.x, self.lse))),)


class LogSoftmax(Function):
    """x − logsumexp(x) along ``axis``."""

    def __init__(self, axis: int = -1):
        self.axis = axis

    def forward(self, x):
        self.y = D.sub(x, _logsumexp(x, self.axis))
        return self.y

    def backward(self, gy):  # gy − softmax · Σ gy
        total = D.sum(gy, axis=self.axis, keepdims=True)
        return (D.sub(gy, D.mul(D.exp(self.y), total)),)


# ----------------------------------------------------------------------------- public functions
# Tensors (or constants) in, a recorded Tensor out: each runs its primitive above.

add = lambda x, y: Add.apply(x, y)  # x + y (broadcasting, as every binary function here)
sub = lambda x, y: Sub.apply(x, y)  # x − y
mul = lambda x, y: Mul.apply(x, y)  # x · y, elementwise
div = lambda x, y: Div.apply(x, y)  # x / y, elementwise
neg = lambda x: Neg.apply(x)  # −x
exp = lambda x: Exp.apply(x)
log = lambda x: Log.apply(x)
tanh = lambda x: Tanh.apply(x)
sigmoid = lambda x: Sigmoid.apply(x)  # 1 / (1 + exp(−x))
relu = lambda x: ReLU.apply(x)  # max(x, 0)
where = lambda cond, x, y: Where.apply(x, y, cond=cond)  # x if cond else y; cond: constant
sum = lambda x, axis=None, keepdims=False: Sum.apply(x, axis=axis, keepdims=keepdims)  # noqa: A001
reshape = lambda x, shape: Reshape.apply(x, shape=shape)  # row-major
transpose = lambda x, axes=None: Transpose.apply(x, axes=axes)  # None: reverse the axes
logsumexp = lambda x, axis=-1, keepdims=False: LogSumExp.apply(x, axis=axis, keepdims=keepdims)
log_softmax = lambda x, axis=-1: LogSoftmax.apply(x, axis=axis)
softmax = lambda x, axis=-1: exp(log_softmax(x, axis=axis))


def pow(x: Any, c: float) -> Tensor:  # noqa: A001
    """x ** c for a constant scalar exponent c."""
    if isinstance(c, Tensor):
        raise TypeError("pow: the exponent must be a constant scalar, not a Tensor")
    return Pow.apply(x, c=c)


def matmul(x: Any, w: Any) -> Tensor:
    """x @ w. 1-D operands are treated as a row (left) or a column (right) vector."""
    x, w = (v if isinstance(v, Tensor) else Tensor(v) for v in (x, w))
    if x.ndim == 1 or w.ndim == 1:  # as a (1, n) or (n, 1) matrix, the added axis dropped after
        return plumbing.matmul_vectors(x, w, lambda a, b: MatMul.apply(a, b), reshape)
    plumbing.check_matmul(x.shape, w.shape)
    return MatMul.apply(x, w)


# elementwise maximum; at ties the derivative follows x
maximum = lambda x, y: where(D.primal(_data(x)) >= D.primal(_data(y)), x, y)


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (None: all)."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    count = 1
    for a in D._axes(axis, x.ndim):
        count *= x.shape[a]
    return mul(sum(x, axis=axis, keepdims=keepdims), 1.0 / count)


getitem = lambda x, idx: GetItem.apply(x, idx=idx)  # x[idx] (basic or advanced indexing)


def take(x: Any, indices: Any, axis: int = 0) -> Tensor:
    """Select ``indices`` along ``axis`` (like ``numpy.take``)."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    return getitem(x, (slice(None),) * (axis % x.ndim) + (_data(indices),))
