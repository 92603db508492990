"""Solutions to the exercises of tutorials/03_curvature.ipynb (03.1–03.3)."""

import numpy as np


def kron_matvec(G, A, V):
    """03.1 · (G ⊗ A) vec(V) = vec(G V Aᵀ) for the row-major vec, without forming G ⊗ A."""
    return G @ V @ A.T


def kfac_factors(a, g_bar, bias=True):
    """03.2 · A = ãᵀã/b with ã = [a, 1] (ones last), G = ḡᵀḡ/b; b = rows of a."""
    b = a.shape[0]
    if bias:
        a = np.concatenate([a, np.ones((b, 1), dtype=a.dtype)], axis=1)
    return a.T @ a / b, g_bar.T @ g_bar / b


def ce_output_hessian(logits):
    """03.3 · diag(p) − p pᵀ per sample, p = softmax(logits) computed stably."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    k = logits.shape[1]
    return p[:, :, None] * np.eye(k) - p[:, :, None] * p[:, None, :]
