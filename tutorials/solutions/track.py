"""Solutions of the build-it-yourself track's engine pieces (T1.1, T1.2, T2.1, T2.2).

The method pieces are the notebooks' solutions: T3.1 = ``exercises_02.hvp``, T4.1 =
``exercises_03.kfac_factors``, T5.1 = ``exercises_05.zeta_star``, T6.1 =
``exercises_06.grouped_newton_step``, T7.1–T7.3 = ``exercises_07.series_coefficients``,
``series_operator``, ``wynn_epsilon``. ``build_track.py`` writes the track notebooks from these
functions: their source in the solution notebooks, their signature and docstring in the stubs.
"""

import numpy as np

from tinycurv import Dual, Function
from tinycurv import dual as D


class Tanh(Function):
    """T1.1 · y = tanh(x); backward: gx = gy·(1 − y²), with the output y kept by forward."""

    def forward(self, x):
        """x (an array or a Dual) -> tanh(x); keep what backward needs on self."""
        self.y = D.tanh(x)  # tinycurv.dual's tanh accepts arrays and duals
        return self.y

    def backward(self, gy):
        """gy, the cotangent of y -> (gx,), a tuple with one cotangent per input."""
        return (gy * (1.0 - self.y * self.y),)


class MatMul(Function):
    """T1.2 · y = x @ w for 2-D x (b, n), w (n, m); backward: (gy wᵀ, xᵀ gy)."""

    def forward(self, x, w):
        """x (b, n), w (n, m) -> x @ w (b, m); keep x and w for backward."""
        self.x, self.w = x, w
        return x @ w

    def backward(self, gy):
        """gy (b, m) -> (gx (b, n), gw (n, m)), each shaped like its input."""
        return gy @ self.w.T, self.x.T @ gy


def tanh(x):
    """T2.1 · tanh(p + ε·t) = tanh(p) + ε·(1 − tanh²p)·t, recursively for nested duals."""
    if not isinstance(x, Dual):
        return np.tanh(x)
    y = tanh(x.primal)
    return Dual(y, (1.0 - y * y) * x.tangent)


def mul(x, y):
    """T2.2 · (a + ε·da)(b + ε·db) = ab + ε·(da·b + a·db); a plain operand is a constant."""
    if not isinstance(x, Dual) and not isinstance(y, Dual):
        return x * y
    if not isinstance(y, Dual):
        return Dual(x.primal * y, x.tangent * y)
    if not isinstance(x, Dual):
        return Dual(x * y.primal, x * y.tangent)
    return Dual(x.primal * y.primal, x.tangent * y.primal + x.primal * y.tangent)
