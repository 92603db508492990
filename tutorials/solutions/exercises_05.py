"""Solutions to the exercises of tutorials/05_isaac.ipynb (05.1–05.4)."""

import math

import numpy as np


def zeta_kron(g, a, g_bar, lam_g, lam_a):
    """05.1 · ζ = λ_g λ_a (G + λ_g I)⁻¹ gᵀa (A + λ_a I)⁻¹ (eq. 17), ∞ = identity."""
    b, n = a.shape
    m = g.shape[1]
    out = g.T @ a
    if not math.isinf(lam_a):
        A = a.T @ a / b
        out = lam_a * np.linalg.solve(A + lam_a * np.eye(n), out.T).T
    if not math.isinf(lam_g):
        G = g_bar.T @ g_bar / b
        out = lam_g * np.linalg.solve(G + lam_g * np.eye(m), out)
    return out


def zeta_star(g, a, lam_a):
    """05.2 · ζ* = gᵀ (I_b + a aᵀ/(b λ_a))⁻¹ a (eq. 21); the n×n side when b > n."""
    b, n = a.shape
    if b <= n:
        K = np.eye(b, dtype=a.dtype) + (a @ a.T) / (b * lam_a)
        return g.T @ np.linalg.solve(K, a)
    K = np.eye(n, dtype=a.dtype) + (a.T @ a) / (b * lam_a)
    return np.linalg.solve(K, (g.T @ a).T).T  # K is symmetric


def input_side(a, lam_a):
    """05.3 · λ_a (A + λ_a I)⁻¹ = I_n − aᵀ (b λ_a I_b + a aᵀ)⁻¹ a (Woodbury, a b×b solve)."""
    b, n = a.shape
    K = b * lam_a * np.eye(b, dtype=a.dtype) + a @ a.T
    return np.eye(n, dtype=a.dtype) - a.T @ np.linalg.solve(K, a)


def zeta(g, a, g_bar, lam_g, lam_a):
    """05.4 · ζ = λ_g (G + λ_g I)⁻¹ ζ*, and ζ* itself for λ_g = ∞ (Theorem 3)."""
    star = zeta_star(g, a, lam_a)
    if math.isinf(lam_g):
        return star
    b, m = a.shape[0], g.shape[1]
    G = g_bar.T @ g_bar / b
    return lam_g * np.linalg.solve(G + lam_g * np.eye(m), star)
