"""Solutions to the exercises of tutorials/06_grouped_newton.ipynb (06.1–06.4)."""

import numpy as np
from scipy.optimize import brentq


def grouped_summary_dense(g, H, u, groups):
    """06.1 · g_bar = Pᵀ diag(u) g and H_bar = Pᵀ diag(u) H diag(u) P."""
    P = np.zeros((g.shape[0], len(groups)))
    for s, group in enumerate(groups):
        P[group, s] = 1.0
    Pu = u[:, None] * P  # diag(u) P: column s is u_s
    return Pu.T @ g, Pu.T @ H @ Pu


def cubic_model(eta, g_bar, H_bar, D, lam_int):
    """06.2 · m(η) = −g_barᵀη + ½ηᵀH_barη + (λ/6)‖diag(d)η‖³, d = |D|^(1/3)."""
    d = np.cbrt(np.abs(D))
    r = np.linalg.norm(d * eta)
    return float(-g_bar @ eta + 0.5 * eta @ H_bar @ eta + lam_int / 6 * r**3)


def cauchy_step(g, H):
    """06.3 · One group along u = g: Newton on the 1×1 summary, η = gᵀg / gᵀHg."""
    return float(g @ g / (g @ H @ g))


def grouped_newton_step(g_bar, H_bar, D, lam_int):
    """06.4 · The global minimiser of the cubic model (App. D), D without zeros, lam_int > 0.

    In y = diag(d)η with K = diag(d)⁻¹H_bar diag(d)⁻¹ = Q diag(κ) Qᵀ and b = Qᵀ diag(d)⁻¹g_bar
    the stationary points are y_j = b_j/(κ_j + c r), r = ‖y‖, c = λ/2; the minimiser is the
    root r of ‖y(r)‖ = r with κ_min + c r ≥ 0.
    """
    d = np.cbrt(np.abs(D))
    c = lam_int / 2
    K = H_bar / np.outer(d, d)
    kappa, Q = np.linalg.eigh((K + K.T) / 2)
    b = Q.T @ (g_bar / d)
    r0 = max(0.0, -kappa[0] / c)  # below r0, K + c r I is not positive definite

    def h(r):
        return np.linalg.norm(b / (kappa + c * r)) - r

    lo = r0 + 1e-12 * (1.0 + r0)  # just above the pole at r0
    hi = r0 + 1.0
    while h(hi) > 0:
        hi *= 2
    r = brentq(h, lo, hi, xtol=1e-15, rtol=1e-15) if h(lo) > 0 else lo
    return (Q @ (b / (kappa + c * r))) / d
