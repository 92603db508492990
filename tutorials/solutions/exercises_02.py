"""Solutions to the exercises of tutorials/02_forward_mode_and_hvp.ipynb (02.1–02.5)."""

import numpy as np

import tinycurv as tc
from tinycurv import Dual


def dual_exp(x):
    """02.1 · exp(p + ε·t) = exp(p) + ε·exp(p)·t, recursively for nested duals."""
    if not isinstance(x, Dual):
        return np.exp(x)
    e = dual_exp(x.primal)
    return Dual(e, e * x.tangent)


def dual_div(x, y):
    """02.2 · (a + ε·da)/(b + ε·db) = a/b + ε·(da − (a/b)·db)/b; constants have no tangent."""
    if not isinstance(x, Dual) and not isinstance(y, Dual):
        return x / y
    a, da = (x.primal, x.tangent) if isinstance(x, Dual) else (x, 0.0)
    b, db = (y.primal, y.tangent) if isinstance(y, Dual) else (y, 0.0)
    q = a / b
    return Dual(q, (da - q * db) / b)


def jvp(closure, params, vectors):
    """02.3 · (L(θ), ∇L(θ)·v) from one forward sweep on Dual(θ, v)."""
    saved = [p.data for p in params]
    try:
        for p, v in zip(params, vectors):
            p.data = Dual(p.data, v)
        with tc.no_grad():
            out = closure().data
    finally:
        for p, data in zip(params, saved):
            p.data = data
    return out.primal, out.tangent


def hvp(closure, params, vectors):
    """02.4 · H·v by forward-over-reverse: reverse mode on Dual(θ, v) gives Dual(∇L, H·v)."""
    saved = [(p.data, p.grad) for p in params]
    try:
        for p, v in zip(params, vectors):
            p.data, p.grad = Dual(p.data, v), None
        closure().backward()
        return [p.grad.tangent if isinstance(p.grad, Dual) else np.zeros(p.shape) for p in params]
    finally:
        for p, (data, grad) in zip(params, saved):
            p.data, p.grad = data, grad


def dense_hessian(closure, params, vectors=None):
    """02.5 · The p×p Hessian, column j = H·eⱼ (row-major flattening, parameter order)."""
    sizes = [p.size for p in params]
    n = sum(sizes)
    columns = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        pieces = np.split(e, np.cumsum(sizes)[:-1])
        direction = [piece.reshape(p.shape) for piece, p in zip(pieces, params)]
        columns.append(np.concatenate([np.ravel(h) for h in tc.hvp(closure, params, direction)]))
    return np.stack(columns, axis=1)
