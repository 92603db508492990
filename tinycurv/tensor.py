"""Reverse mode: the ``Tensor``, the tape, and the backward sweep.

A ``Tensor`` wraps an array (``tensor.data``) and remembers the primitive ``Function`` that made
it (``creator``) and its inputs (``parents``). ``loss.backward()`` visits the tape in reverse
topological order and calls each function's ``backward``: a vector-Jacobian product (VJP)
mapping the cotangent ``gy`` of its output (shaped like the output) to cotangents of its inputs
(shaped like them). Leaves with ``requires_grad=True`` accumulate theirs in ``.grad``.

The primitives (``tinycurv.ops``) compute with the dual-aware array functions of
``tinycurv.dual``, so ``data`` may be a dual number and everything still works: that is how
``tinycurv.hvp`` gets forward-over-reverse Hessian-vector products from this same code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tinycurv import dual as D
from tinycurv.backend import get_default_dtype, xp
from tinycurv.plumbing import own, seed_cotangent, tensor_data

_grad_enabled = True


@contextlib.contextmanager
def set_grad_enabled(mode: bool) -> Iterator[None]:
    """Within this block the tape is recorded (``True``) or not (``False``)."""
    global _grad_enabled
    before, _grad_enabled = _grad_enabled, bool(mode)
    try:
        yield
    finally:
        _grad_enabled = before


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Within this block no tape is recorded (forward passes only, e.g. evaluation or JVPs)."""
    return set_grad_enabled(False)


def is_grad_enabled() -> bool:
    """Whether operations on tensors are currently recorded for backward."""
    return _grad_enabled


class Function:
    """A primitive: ``forward(*xs)`` returns the output array, ``backward(gy)`` one cotangent per
    input (None where ``self.needs_grad[i]`` is False), both written with ``tinycurv.dual`` so that
    they run on duals too. What ``backward`` needs, ``forward`` keeps on ``self``."""

    needs_grad: tuple[bool, ...] = ()

    def forward(self, *xs: Any) -> Any:
        raise NotImplementedError

    def backward(self, gy: Any) -> tuple[Any, ...]:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Tensor:
        """Run the primitive on tensors (or constants) and record it on the tape."""
        tensors = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
        fn = cls(**params)
        out = Tensor(fn.forward(*(t.data for t in tensors)))
        if _grad_enabled and any(t.requires_grad for t in tensors):
            fn.needs_grad = tuple(t.requires_grad for t in tensors)
            out.requires_grad, out.creator, out.parents = True, fn, tensors
        return out


class Tensor:
    """An array ``data`` (array, Dual or number) on the tape of reverse mode.

    Python numbers and lists become arrays of the default dtype; arrays keep their dtype (a NumPy
    array moves to the GPU when the backend is CuPy). ``requires_grad``: whether ``backward``
    accumulates a gradient in ``.grad``; ``name``: a label, shown in ``repr``.
    """

    __array_ufunc__ = None  # `ndarray op Tensor` defers to Tensor's reflected operators
    __array_priority__ = 2000.0

    def __init__(self, data: Any, requires_grad: bool = False, name: str | None = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        self.data = tensor_data(data, requires_grad)
        self.requires_grad = requires_grad
        self.grad: Any = None
        self.creator: Function | None = None
        self.parents: list[Tensor] = []
        self.name = name

    shape = property(lambda self: D.shape(self.data))
    ndim = property(lambda self: D.ndim(self.data))
    # a Python number (a constant) has the default dtype and size 1
    dtype = property(
        lambda self: getattr(D.primal(self.data), "dtype", xp.dtype(get_default_dtype()))
    )
    size = property(lambda self: getattr(D.primal(self.data), "size", 1))

    def __repr__(self) -> str:
        label = f", name={self.name!r}" if self.name else ""
        return f"Tensor({D.primal(self.data)!r}{label})"

    __len__ = lambda self: self.shape[0]

    def item(self) -> float:
        """The value of a one-element tensor as a Python float (a host transfer)."""
        return float(D.primal(self.data))

    def numpy(self) -> Any:
        """The value as a NumPy array (a host transfer)."""
        from tinycurv.backend import asnumpy

        return asnumpy(D.primal(self.data))

    def detach(self) -> Tensor:
        """The same data, cut from the tape."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    def backward(self, grad: Any = None, inputs: Any = None) -> None:
        """Back-propagate ``grad`` (shaped like this tensor; default 1 for a one-element one);
        the leaves reached (only those in ``inputs``, if given) accumulate it in ``.grad``."""
        grads = {id(self): seed_cotangent(self, grad)}  # ones for a one-element tensor
        owners: set[int] = set()  # memory already handed to a leaf in this sweep
        chosen = None if inputs is None else {id(t) for t in inputs}
        for node in reversed(_topological_order(self)):
            gy = grads.pop(id(node), None)
            if gy is None:
                continue
            if node.creator is None:  # a leaf
                if chosen is not None and id(node) not in chosen:
                    continue
                node.grad = own(gy, owners) if node.grad is None else D.add(node.grad, gy)
                continue
            for parent, gx in zip(node.parents, node.creator.backward(gy), strict=True):
                if gx is not None and parent.requires_grad:
                    key = id(parent)
                    grads[key] = gx if key not in grads else D.add(grads[key], gx)

    # operators and methods: thin wrappers over the primitives of tinycurv.ops
    __add__ = lambda self, o: ops.add(self, o)
    __radd__ = lambda self, o: ops.add(o, self)
    __sub__ = lambda self, o: ops.sub(self, o)
    __rsub__ = lambda self, o: ops.sub(o, self)
    __mul__ = lambda self, o: ops.mul(self, o)
    __rmul__ = lambda self, o: ops.mul(o, self)
    __truediv__ = lambda self, o: ops.div(self, o)
    __rtruediv__ = lambda self, o: ops.div(o, self)
    __matmul__ = lambda self, o: ops.matmul(self, o)
    __rmatmul__ = lambda self, o: ops.matmul(o, self)
    __neg__ = lambda self: ops.neg(self)
    __pow__ = lambda self, c: ops.pow(self, c)
    __getitem__ = lambda self, idx: ops.getitem(self, idx)
    # comparisons give boolean arrays of the value (no derivative), e.g. for masks
    __gt__ = lambda self, o: D.primal(self.data) > D.primal(_data(o))
    __lt__ = lambda self, o: D.primal(self.data) < D.primal(_data(o))
    __ge__ = lambda self, o: D.primal(self.data) >= D.primal(_data(o))
    __le__ = lambda self, o: D.primal(self.data) <= D.primal(_data(o))
    __hash__ = object.__hash__
    T = property(lambda self: ops.transpose(self))
    exp = lambda self: ops.exp(self)
    log = lambda self: ops.log(self)
    tanh = lambda self: ops.tanh(self)
    sigmoid = lambda self: ops.sigmoid(self)
    relu = lambda self: ops.relu(self)
    sum = lambda self, axis=None, keepdims=False: ops.sum(self, axis=axis, keepdims=keepdims)
    mean = lambda self, axis=None, keepdims=False: ops.mean(self, axis=axis, keepdims=keepdims)
    logsumexp = lambda self, axis=-1, keepdims=False: ops.logsumexp(self, axis, keepdims)
    log_softmax = lambda self, axis=-1: ops.log_softmax(self, axis=axis)
    reshape = lambda self, *shape: ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes: Any) -> Tensor:
        if len(axes) == 1 and not isinstance(axes[0], int):  # t.transpose((1, 0)), (None)
            axes = axes[0]
        return ops.transpose(self, axes or None)


_data = lambda x: x.data if isinstance(x, Tensor) else x  # the array of a tensor or constant


def _topological_order(root: Tensor) -> list[Tensor]:
    """Nodes reachable from ``root``, each after all of its parents (iterative DFS)."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]  # (node, its parents already pushed)
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node.parents if p.requires_grad and id(p) not in seen)
    return order


from tinycurv import ops  # noqa: E402  (the primitives need Tensor defined first)
