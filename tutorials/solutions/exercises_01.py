"""Solutions to the exercises of tutorials/01_autodiff.ipynb (01.1–01.4).

Check one with ``tinycurv check 01.2 tutorials/solutions/exercises_01.py``, all of them with
``tinycurv check 01 tutorials/solutions/exercises_01.py``.
"""

import numpy as np

from tinycurv import Function
from tinycurv import dual as D


class Sigmoid(Function):
    """01.1 · y = σ(x) = 1/(1 + e⁻ˣ); backward: gx = gy·y·(1 − y)."""

    def forward(self, x):
        self.y = D.sigmoid(x)  # kept for backward; D.sigmoid accepts duals
        return self.y

    def backward(self, gy):
        return (D.mul(gy, D.mul(self.y, D.sub(1.0, self.y))),)


def unbroadcast(g, shape):
    """01.2 · Sum the cotangent g over the axes that broadcasting added or stretched."""
    shape = tuple(shape)
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def numerical_grad(f, x, h=1e-5):
    """01.3 · Central differences of the scalar f in every entry of x (x is restored)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + h
        up = f(x)
        x[i] = saved - h
        down = f(x)
        x[i] = saved
        grad[i] = (up - down) / (2 * h)
    return grad


def matmul_vjp(x, w, gy):
    """01.4 · The cotangents of y = x @ w: gx = gy wᵀ (b, n), gw = xᵀ gy (n, m)."""
    return gy @ w.T, x.T @ gy
