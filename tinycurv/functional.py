"""The functional API: gradients, JVPs, Hessian-vector products and Taylor terms of a closure.

``closure()`` returns a scalar ``Tensor`` computed from ``params`` (floating tensors, e.g.
``model.parameters()``); vectors are lists of backend arrays shaped like ``params`` (batched:
``(k,) + p.shape``); results are backend arrays (0-d for scalars) and no ``.grad`` is written.
A non-leaf parameter is differentiated as it stands, as by ``torch.autograd.grad``.

* ``grad``: reverse mode, one forward and one backward sweep.
* ``jvp``: forward mode, the parameters' data become ``Dual(θ, v)``; one forward sweep.
* ``hvp``: forward-over-reverse (Pearlmutter 1994): reverse mode on ``Dual(θ, v)`` returns the
  gradient as ``Dual(∇L, H·v)``; no Hessian is ever formed.
* ``taylor``: nested duals ``Dual(Dual(Dual(θ, u), u), u)`` give the derivatives of
  ``φ(t) = L(θ + t·u)`` at 0. More in docs/engine.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tinycurv import dual as D
from tinycurv.backend import xp
from tinycurv.plumbing import check_params, check_scalar, check_vectors, own
from tinycurv.tensor import Tensor, no_grad, set_grad_enabled

Closure = Callable[[], Tensor]


def _tangent(v: Any, p: Tensor) -> Any:
    """``v`` as a backend array of the parameter's dtype (no silent float32 → float64 upcast)."""
    return xp.asarray(v, dtype=D.primal(p.data).dtype)


@contextlib.contextmanager
def _substituted(params: Sequence[Tensor], values: Sequence[Any]) -> Iterator[None]:
    """Temporarily replace each parameter's data (by a dual, typically) and clear its grad;
    a non-leaf parameter is cut from the tape meanwhile (it becomes an input of the closure)."""
    saved = [(p.data, p.grad, p.requires_grad, p.creator, p.parents) for p in params]
    try:
        for p, v in zip(params, values, strict=True):
            p.data, p.grad, p.requires_grad, p.creator, p.parents = v, None, True, None, []
        with set_grad_enabled(True):  # a transform records its own tape, even inside no_grad
            yield
    finally:
        for p, state in zip(params, saved, strict=True):
            p.data, p.grad, p.requires_grad, p.creator, p.parents = state


def value_and_grad(closure: Closure, params: Sequence[Tensor]) -> tuple[Any, list[Any]]:
    """``(L(θ), ∇L(θ))``: a 0-d array and arrays like ``params`` (zeros where L ignores one)."""
    return _value_and_grad(closure, params, "value_and_grad")


def grad(closure: Closure, params: Sequence[Tensor]) -> list[Any]:
    """The gradient of ``closure()`` with respect to ``params`` (a list of arrays)."""
    return _value_and_grad(closure, params, "grad")[1]


def _value_and_grad(closure: Closure, params: Sequence[Tensor], what: str) -> tuple[Any, list]:
    check_params(params, what)
    with _substituted(params, [p.data for p in params]):
        out = check_scalar(closure(), what)
        out.backward(inputs=params)
        grads = [xp.zeros_like(p.data) if p.grad is None else p.grad for p in params]
    return xp.reshape(out.data, ()), grads


def jvp(closure: Closure, params: Sequence[Tensor], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """``(L(θ), ∇L(θ)·v)``, 0-d arrays: one forward sweep on ``Dual(θ, v)``, no tape."""
    check_vectors(params, tangents, "jvp", batched=False)
    duals = [D.Dual(p.data, _tangent(v, p)) for p, v in zip(params, tangents, strict=True)]
    with _substituted(params, duals), no_grad():
        out = check_scalar(closure(), "jvp").data
    if not D.is_dual(out):  # the loss does not depend on params
        return xp.reshape(out, ()), xp.zeros((), dtype=D.primal(out).dtype)
    return xp.reshape(out.primal, ()), xp.reshape(out.tangent, ())


def value_grad_and_hvp(
    closure: Closure, params: Sequence[Tensor], vectors: Sequence[Any], batched: bool = False
) -> tuple[Any, list[Any], list[Any]]:
    """``(L(θ), ∇L(θ), H·v)`` from one forward and one backward sweep on ``Dual(θ, v)``.

    Reverse mode on duals returns the gradient as ``Dual(∇L, H·v)``. ``vectors`` are shaped like
    ``params``, or with ``batched=True`` like ``(k,) + p.shape``: k directions sharing one primal
    sweep. Returns a 0-d array, arrays shaped like ``params`` and arrays shaped like ``vectors``.
    """
    k = check_vectors(params, vectors, "hvp", batched)
    duals = [D.Dual(p.data, _tangent(v, p)) for p, v in zip(params, vectors, strict=True)]
    with _substituted(params, duals):
        out = check_scalar(closure(), "hvp")
        out.backward(inputs=params)  # reverse mode on duals
        grads = [p.grad for p in params]
    value = xp.reshape(D.primal(out.data), ())
    g_out, hv_out, owners = [], [], set()  # every returned array is its own, writeable memory
    for p, g in zip(params, grads, strict=True):
        if not D.is_dual(g):  # L does not depend on p (g is None), or ∇L does not move along v
            dtype, hv_shape = D.primal(p.data).dtype, ((k,) if batched else ()) + p.shape
            g = D.Dual(xp.zeros(p.shape, dtype) if g is None else g, xp.zeros(hv_shape, dtype))
        g_out.append(own(g.primal, owners))
        hv_out.append(own(g.tangent, owners))  # the tangent of the gradient: H v
    return value, g_out, hv_out


def hvp(
    closure: Closure, params: Sequence[Tensor], vectors: Sequence[Any], batched: bool = False
) -> list[Any]:
    """``H·v`` by forward-over-reverse, arrays shaped like ``vectors`` (``value_grad_and_hvp``)."""
    return value_grad_and_hvp(closure, params, vectors, batched)[2]


def _coefficient(x: Any, j: int, order: int) -> Any:
    """The j-th derivative stored in a depth-``order`` nested dual (0 if it is absent)."""
    for _ in range(j):  # j tangents from the outside …
        if not D.is_dual(x):
            return 0.0
        x = x.tangent
    for _ in range(order - j):  # … then down the primals
        x = x.primal if D.is_dual(x) else x
    return D.primal(x)


def taylor(
    closure: Closure, params: Sequence[Tensor], direction: Sequence[Any], order: int = 3
) -> list[float]:
    """``[φ(0), φ'(0), …, φ⁽ᵒʳᵈᵉʳ⁾(0)]`` of ``φ(t) = L(θ + t·u)``, u = ``direction``, exactly:
    nested duals of depth ``order`` (one forward sweep, 2^order components)."""
    if order < 0:
        raise ValueError(f"taylor: order must be ≥ 0, got {order}")
    check_vectors(params, direction, "taylor", batched=False)
    us, lifted = (
        [_tangent(u, p) for p, u in zip(params, direction, strict=True)],
        [p.data for p in params],
    )
    for _ in range(order):  # θ + t·u as Dual(…Dual(Dual(θ, u), u)…, u)
        lifted = [D.Dual(x, u) for x, u in zip(lifted, us, strict=True)]
    with _substituted(params, lifted), no_grad():
        out = check_scalar(closure(), "taylor").data
    return [float(xp.reshape(_coefficient(out, j, order), ())) for j in range(order + 1)]
