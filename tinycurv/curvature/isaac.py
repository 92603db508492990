"""ISAAC's directions ζ and ζ*: the functions that ``tinycurv.optim.ISAAC`` calls for every layer.

Petersen, Sutter, Borgelt, Huh, Kuehne, Sun & Deussen, "ISAAC Newton: Input-based Approximate
Curvature for Newton's Method", ICLR 2023 (arXiv 2305.00604); numbers as in its preprint.

One layer ``z = a Wᵀ``, weight W (m, n): ``a`` (b, n) inputs; ``g`` (b, m) gradients of the batch
loss w.r.t. z, so that ∇W = gᵀa; ``g_bar`` (r·b, m) back-propagated Hessian square roots or
sampled gradients (Remark 1); A = aᵀa/b, G = g_barᵀg_bar/b (eq. 14). For a Conv2d b = rows b·L.

    zeta      = lam_g lam_a (G + lam_g I)⁻¹ gᵀa (A + lam_a I)⁻¹                       (eq. 17)
    zeta_star = lim_{lam_g→∞} zeta = gᵀ (I_b + aaᵀ/(b lam_a))⁻¹ a                   (eq. 21)

``zeta_kron`` is eq. 17 as written (the dense reference); ``zeta`` (eq. 20, Woodbury) and
``zeta_star`` solve the cheaper side and never wait for the device. ``lam = math.inf`` makes
a side the identity. Derivations, costs, accuracy: docs/isaac.md.
"""

from __future__ import annotations

import math
from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature.linalg import cho_solve

__all__ = ["zeta", "zeta_kron", "zeta_star"]


# --------------------------------------------------------------------------------------------
# checks (shapes and Python numbers only: nothing here reads a device value)
# --------------------------------------------------------------------------------------------
def _check_lam(lam: float, name: str) -> float:
    """``lam`` as a float, which must be > 0 (``math.inf`` allowed)."""
    value = float(lam)
    if not value > 0:  # also rejects NaN
        raise ValueError(f"{name} must be > 0 (math.inf allowed), got {lam!r}")
    return value


def _require_g_bar(g_bar: Any, lam_g: float) -> None:
    """A finite ``lam_g`` needs the output-side statistics ``g_bar``."""
    if g_bar is None and not math.isinf(lam_g):
        raise ValueError(
            "g_bar (r·b, m) is required for a finite lam_g; pass lam_g=math.inf for zeta_star"
        )


def _check_shapes(g: Any, a: Any, g_bar: Any = None) -> None:
    """Validate g (b, m), a (b, n) and, if given, g_bar (r·b, m)."""
    for name, arr in (("g", g), ("a", a), ("g_bar", g_bar)):
        if arr is not None and arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array, got shape {tuple(arr.shape)}")
    b, m = g.shape
    if a.shape[0] != b:
        raise ValueError(
            f"batch sizes differ: a has {a.shape[0]} rows (a: (b, n)), g has {b} (g: (b, m))"
        )
    if b == 0:
        raise ValueError("empty batch: a and g have 0 rows")
    if g_bar is None:
        return
    if g_bar.shape[1] != m:
        raise ValueError(
            f"g_bar has {g_bar.shape[1]} columns but g has {m}: both are (·, m), m = outputs"
        )
    if g_bar.shape[0] == 0 or g_bar.shape[0] % b != 0:
        raise ValueError(
            f"g_bar must have r·b rows (r ≥ 1 per sample, b = {b}), got {g_bar.shape[0]}"
        )


# --------------------------------------------------------------------------------------------
# the two conditioned sides of eq. 20, cost-ordered and sync-free
# --------------------------------------------------------------------------------------------
def _damped_inverse(M: Any, scale: float) -> Any:
    """``(I + scale·M)⁻¹`` for a symmetric PSD ``M`` (p, p), which is overwritten.

    ``I + scale·M`` is positive definite with eigenvalues ≥ 1, so ``xp.linalg.inv`` needs no
    pivot check (``linalg.cho_factor``'s costs a device sync) and is as accurate as a solve.
    """
    M *= scale
    M += xp.eye(M.shape[0], dtype=M.dtype)
    return xp.linalg.inv(M)


def _times_input_side(left: Any, a: Any, lam_a: float) -> Any:
    """``left · lam_a a (A + lam_a I)⁻¹``, (m, n), for ``left`` (m, b) and ``a`` (b, n).

    ``left = gᵀ`` gives ζ* (eq. 21), ``left = lam_g (G + lam_g I)⁻¹ gᵀ`` gives ζ (eq. 20). Solves
    the b×b side when b ≤ n, else the n×n one; the products are ordered by cost.
    """
    if math.isinf(lam_a):
        return left @ a  # Theorem 1 (ii): the input side is the identity
    b, n = a.shape
    m = left.shape[0]
    if b <= n:  # eq. 20/21: left (I_b + aaᵀ/(b·lam_a))⁻¹ a
        K_inv = _damped_inverse(a @ a.T, 1.0 / (b * lam_a))
        return (left @ K_inv) @ a if m <= n else left @ (K_inv @ a)
    K_inv = _damped_inverse(a.T @ a, 1.0 / (b * lam_a))  # eq. 17, b > n: (I_n + A/lam_a)⁻¹
    return left @ (a @ K_inv) if b <= m else (left @ a) @ K_inv


def _output_side(g: Any, g_bar: Any, lam_g: float) -> Any:
    """``lam_g (G + lam_g I)⁻¹ gᵀ``, (m, b), with ``G = g_barᵀ g_bar / b`` (eq. 20, left bracket).

    The (r·b)×(r·b) Woodbury form when r·b ≤ m, else the m×m side.
    """
    b, m = g.shape
    scale = 1.0 / (b * lam_g)
    if g_bar.shape[0] <= m:  # eq. 20: gᵀ − ḡᵀ (I_rb + ḡḡᵀ/(b·lam_g))⁻¹ ḡ gᵀ/(b·lam_g)
        K_inv = _damped_inverse(g_bar @ g_bar.T, scale)
        correction = g_bar.T @ (K_inv @ (g_bar @ g.T))
        correction *= scale
        return g.T - correction
    return _damped_inverse(g_bar.T @ g_bar, scale) @ g.T  # eq. 17: (I_m + G/lam_g)⁻¹ gᵀ


# --------------------------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------------------------
def zeta_kron(g: Any, a: Any, g_bar: Any, lam_g: float, lam_a: float) -> Any:
    """ζ by the Kronecker form (eq. 17), m×m and n×n Cholesky solves: the dense reference.

    Parameters
    ----------
    g : (b, m) gradients of the batch loss w.r.t. the layer's pre-activations.
    a : (b, n) the layer's inputs.
    g_bar : (r·b, m) per-sample Hessian square roots or sampled gradients, ``G = ḡᵀḡ/b``.
    lam_g, lam_a : dampings > 0 of the G and A factors; ``math.inf`` switches a side off.

    Returns
    -------
    zeta : (m, n) ``lam_g lam_a (G + lam_g I)⁻¹ gᵀa (A + lam_a I)⁻¹``.

    Notes
    -----
    For a singular factor (b < n for A) ``I + A/lam_a`` has condition ``1 + ‖A‖/lam_a``: this form
    loses about ``eps·‖A‖/lam_a`` in relative accuracy, which ``zeta`` does not. Slow (O(n³ + m³))
    and it checks positive definiteness on the host: for reference and tests.
    """
    lam_g, lam_a = _check_lam(lam_g, "lam_g"), _check_lam(lam_a, "lam_a")
    _require_g_bar(g_bar, lam_g)
    _check_shapes(g, a, g_bar)
    b, n = a.shape
    m = g.shape[1]
    grad = g.T @ a  # ∇_W L = gᵀa, (m, n) (eq. 19)
    if not math.isinf(lam_a):
        A = (a.T @ a) / b  # eq. 14
        K_a = xp.eye(n, dtype=A.dtype) + A / lam_a  # (A + λ_a I)/λ_a
        grad = cho_solve(K_a, grad.T, name="I_n + A/lam_a").T  # · λ_a (A + λ_a I)⁻¹ (eq. 17)
    if not math.isinf(lam_g):
        G = (g_bar.T @ g_bar) / b  # eq. 14
        K_g = xp.eye(m, dtype=G.dtype) + G / lam_g  # (G + λ_g I)/λ_g
        grad = cho_solve(K_g, grad, name="I_m + G/lam_g")  # λ_g (G + λ_g I)⁻¹ · (eq. 17)
    return grad


def zeta(g: Any, a: Any, g_bar: Any, lam_g: float, lam_a: float) -> Any:
    """ζ by the Woodbury form (eq. 20); ``lam_g = math.inf`` returns ``zeta_star`` (Theorem 3).

    Solves a b×b (or, for b > n, n×n) system on the input side and an (r·b)×(r·b) (or, for
    r·b > m, m×m) one on the output side; no host synchronisation.

    Parameters
    ----------
    g : (b, m) gradients of the batch loss w.r.t. the layer's pre-activations.
    a : (b, n) the layer's inputs.
    g_bar : (r·b, m) per-sample Hessian square roots or sampled gradients, ``G = ḡᵀḡ/b``;
        may be None when ``lam_g = math.inf``.
    lam_g, lam_a : dampings > 0 of the G and A factors; ``math.inf`` switches a side off.

    Returns
    -------
    zeta : (m, n), equal to ``zeta_kron(g, a, g_bar, lam_g, lam_a)`` in exact arithmetic.
    """
    lam_g, lam_a = _check_lam(lam_g, "lam_g"), _check_lam(lam_a, "lam_a")
    _require_g_bar(g_bar, lam_g)
    _check_shapes(g, a, g_bar)
    if math.isinf(lam_g):
        return zeta_star(g, a, lam_a)  # Theorem 3
    return _times_input_side(_output_side(g, g_bar, lam_g), a, lam_a)  # eq. 20


def zeta_star(g: Any, a: Any, lam_a: float) -> Any:
    """ζ* = lim_{lam_g→∞} ζ (eq. 21): the gradient conditioned by the inputs alone.

    Solves a b×b system (an n×n one when b > n); no host synchronisation.

    Parameters
    ----------
    g : (b, m) gradients of the batch loss w.r.t. the layer's pre-activations.
    a : (b, n) the layer's inputs.
    lam_a : damping > 0 of A; ``math.inf`` gives the plain gradient ``gᵀa``.

    Returns
    -------
    zeta_star : (m, n) ``gᵀ (I_b + aaᵀ/(b lam_a))⁻¹ a = lam_a gᵀa (A + lam_a I)⁻¹``.
    """
    lam_a = _check_lam(lam_a, "lam_a")
    _check_shapes(g, a)
    return _times_input_side(g.T, a, lam_a)  # eq. 21
