"""Solutions to the exercises of tutorials/04_kfac.ipynb (04.1–04.3)."""

import math

import numpy as np


def kfac_dampings(A, G, damping, pi_correction=False):
    """04.1 · (γ_A, γ_G) = (π√λ, √λ/π), π = sqrt((tr A/dim A)/(tr G/dim G)) or 1."""
    root = math.sqrt(damping)
    if not pi_correction:
        return root, root
    pi = math.sqrt((np.trace(A) / A.shape[0]) / (np.trace(G) / G.shape[0]))
    return pi * root, root / pi


def kfac_direction(grad, A, G, damping):
    """04.2 · (G + √λ I)⁻¹ ∇ (A + √λ I)⁻¹, two solves with the damped factors."""
    root = math.sqrt(damping)
    K_A = A + root * np.eye(A.shape[0])
    K_G = G + root * np.eye(G.shape[0])
    left = np.linalg.solve(K_G, grad)  # (G + √λ I)⁻¹ ∇
    return np.linalg.solve(K_A, left.T).T  # · (A + √λ I)⁻¹, as A is symmetric


def ema_factor(old, new, k, ema_decay):
    """04.3 · ε_k old + (1 − ε_k) new with ε_k = min(1 − 1/k, decay) (0 at k = 1)."""
    eps = min(1.0 - 1.0 / k, ema_decay)
    return eps * old + (1.0 - eps) * new
