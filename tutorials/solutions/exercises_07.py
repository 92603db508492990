"""Solutions to the exercises of tutorials/07_saddle_free_newton.ipynb (07.1–07.5)."""

import math

import numpy as np


def abs_hessian_inverse(H, v, damping=0.0):
    """07.1 · (|H| + λI)⁻¹ v = Q ((Qᵀv) / (|Λ| + λ)) from H = Q Λ Qᵀ."""
    lam, Q = np.linalg.eigh(H)
    return Q @ ((Q.T @ v) / (np.abs(lam) + damping))


def _binom_half(n):
    out = 1.0
    for j in range(n):
        out *= (0.5 - j) / (j + 1)
    return out


def series_coefficients(order, damping_ratio=0.0):
    """07.2 · c₀ = 1/(1 + d), cₙ = (cₙ₋₁ + (−1)ⁿ binom(½, n))/(1 − d²); d = 1 separately."""
    d = damping_ratio
    if d == 1:
        return [(-1) ** n * _binom_half(n + 1) for n in range(order)]
    c = [1 / (1 + d)]
    for n in range(1, order):
        c.append((c[-1] + (-1) ** n * _binom_half(n)) / (1 - d * d))
    return c


def series_operator(hvp_fn, vectors, order, scale, damping=0.0):
    """07.3 · u = V^(−1/2) Σₙ cₙ Yⁿ v with Y = I − H²/V: N terms, 2(N − 1) HVPs."""
    c = series_coefficients(order, damping / math.sqrt(scale))
    v = list(vectors)
    S = [c[0] * a for a in v]
    for n in range(1, order):
        H2v = hvp_fn(hvp_fn(v))
        v = [a - h / scale for a, h in zip(v, H2v)]
        S = [s + c[n] * a for s, a in zip(S, v)]
    return [s / math.sqrt(scale) for s in S]


def wynn_epsilon(partial_sums, k):
    """07.4 · ε_{2k}⁽⁰⁾ of the last 2k + 1 partial sums, Samelson inverse v/(vᵀv)."""
    last = [np.array(a, copy=True) for a in partial_sums[-1]]
    if k == 0:
        return last
    shapes = [a.shape for a in last]
    current = [np.concatenate([np.ravel(a) for a in s]) for s in partial_sums[-(2 * k + 1) :]]
    previous = None  # ε₋₁ = 0
    for _ in range(2 * k):
        column = []
        for m in range(len(current) - 1):
            delta = current[m + 1] - current[m]
            size = max(np.linalg.norm(current[m]), np.linalg.norm(current[m + 1]))
            if np.linalg.norm(delta) <= 8 * np.finfo(float).eps * size:
                return last  # the sequence has converged: nothing to accelerate
            inverse = delta / (delta @ delta)
            column.append(inverse if previous is None else previous[m + 1] + inverse)
        previous, current = current, column
    pieces = np.split(current[0], np.cumsum([math.prod(s) for s in shapes])[:-1])
    return [p.reshape(s) for p, s in zip(pieces, shapes)]


def levenberg_marquardt(damping, rho, decay, min_damping=0.0):
    """07.5 · λ ← ωλ if ρ > ¾, λ/ω if ρ < ¼, else λ; at least min_damping."""
    if rho > 0.75:
        damping = decay * damping
    elif rho < 0.25:
        damping = damping / decay
    return max(damping, min_damping)
