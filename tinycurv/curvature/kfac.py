"""K-FAC: Kronecker factors and the step of one layer (Martens & Grosse 2015, ICML; KFC 2016).

For a layer ``z = W ã`` with ``[W | b]`` (m, n+1), ``ã = [a, 1]`` (bias column LAST) and the
recorded statistics of ``tinycurv.curvature.statistics`` (rows = b, or b·L for a convolution):

    F_ℓ ≈ G ⊗ A,   A = ãᵀã / rows,   G = g_barᵀ g_bar / rows                       (§3, eq. 1)
    Δ = (G + γ_G I)⁻¹ ∇ (A + γ_A I)⁻¹,   ∇ = gᵀã  (m, n+1)                          (§4.2, eq. 2)
    γ_A = π√λ,  γ_G = √λ/π,  π = sqrt((tr A / dim A) / (tr G / dim G))  or π = 1    (§6.3, eq. 3)

``G ⊗ A`` acts on the row-major flattening of ``[W | b]`` (``layer_indices``), and
``(P ⊗ Q) vec(X) = vec(P X Qᵀ)``, so no (mn)×(mn) matrix is formed. For ``Conv2d``, A averages
and G sums over output locations (KFC's Ω ⊗ Γ). Shapes: A (n+1, n+1), G (m, m), a (rows, n),
g (rows, m), g_bar (r·rows, m). Derivations, the convolution scaling, the rank-b form and costs:
docs/kfac.md. ``tinycurv.optim.KFAC`` calls ``kfac_direction`` for every layer at every step.
"""

from __future__ import annotations

import math
from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature.damping import levenberg_marquardt  # noqa: F401  (M&G §6.5; re-exported)
from tinycurv.curvature.linalg import cho_apply, cho_factor
from tinycurv.curvature.statistics import (
    MODES,
    LayerStatistics,
    curvature_layers,
    homogeneous,
    layer_statistics,
    sampled_output_gradients,
)

__all__ = [
    "DAMPING_MODES",
    "KFAC_APPROX",
    "MODES",
    "LayerStatistics",
    "curvature_layers",
    "damped_factors",
    "factors_from",
    "homogeneous",
    "kfac_dampings",
    "kfac_direction",
    "kfac_direction_exact",
    "kfac_eigen",
    "kfac_factors",
    "ekfac_direction",
    "ekfac_scaling",
    "layer_indices",
    "levenberg_marquardt",
    "qmodel_coefficients",
    "layer_statistics",
    "sampled_output_gradients",
]


DAMPING_MODES = ("factored", "exact")
KFAC_APPROX = ("expand", "reduce")


def layer_indices(model: Any, layer: Any) -> Any:
    """Positions of the layer's ``[W | b]`` (row-major) in ``flatten(model.parameters())``.

    ``M[xp.ix_(i, i)]`` is then the layer's block of a dense (p, p) matrix, ordered as kron(G, A).
    """
    offsets, start = {}, 0
    for p in model.parameters():
        offsets[id(p)] = start
        start += p.size
    m = layer.weight.shape[0]
    n = layer.weight.size // m
    W = offsets[id(layer.weight)] + xp.arange(m * n).reshape(m, n)
    if getattr(layer, "bias", None) is not None:
        W = xp.concatenate([W, (offsets[id(layer.bias)] + xp.arange(m))[:, None]], axis=1)
    return W.reshape(-1)


def factors_from(
    a: Any,
    g_bar: Any,
    layer: Any,
    scale: float = 1.0,
    kfac_approx: str = "expand",
    samples: int | None = None,
) -> tuple[Any, Any]:
    """``(A, G) = scale·(ãᵀã, g_barᵀ g_bar) / rows`` for one layer (eq. 1).

    ``scale`` multiplies the thin (rows, ·) operands, not the square results (the EMA's 1 − ε).
    ``kfac_approx="reduce"`` (Eschenhagen et al. 2023, KFAC-reduce; needs ``samples`` = b):
    per sample, ã is averaged and ḡ summed over the L = rows / b locations first,
    ``A = (1/b) Σₙ âₙâₙᵀ``, ``G = (1/b) Σₙ ĝₙĝₙᵀ`` (the same as expand when L = 1).
    """
    if kfac_approx not in KFAC_APPROX:
        raise ValueError(f"kfac_approx must be one of {KFAC_APPROX}, got {kfac_approx!r}")
    a_t = homogeneous(a, layer)
    if kfac_approx == "reduce" and samples is not None and a.shape[0] != samples:
        L = a.shape[0] // samples
        a_t = xp.mean(xp.reshape(a_t, (samples, L, a_t.shape[1])), axis=1)  # âₙ
        g_hat = xp.sum(xp.reshape(g_bar, (-1, L, g_bar.shape[1])), axis=1) / math.sqrt(L)  # ĝₙ
        c = scale / samples  # g_bar's rows are √L·ḡ (statistics.py), hence the 1/√L
        return (a_t.T * c) @ a_t, (g_hat.T * c) @ g_hat
    c = scale / a.shape[0]
    return (a_t.T * c) @ a_t, (g_bar.T * c) @ g_bar


def kfac_factors(
    model: Any,
    loss_fn: Any,
    x: Any,
    y: Any,
    mode: str = "exact",
    mc_samples: int = 1,
    rng: Any = None,
    kfac_approx: str = "expand",
) -> list[tuple[Any, Any]]:
    """``[(A, G), ...]`` (eq. 1) of every ``Linear``/``Conv2d`` layer, in ``model.modules()`` order.

    ``kron(G, A)`` approximates the layer's block of the GGN (``"exact"``; ``"mc"`` in
    expectation) or of the empirical Fisher (``"empirical"``); A is (n+1, n+1) with a bias, G
    (m, m). It is exact for one ``Linear`` or ``Conv2d`` layer under MSE and for b = 1 in
    ``"exact"`` mode. Arguments as ``layer_statistics``; ``kfac_approx`` {"expand", "reduce"}
    for convolutions (``factors_from``; KFAC-reduce is exact for a layer shared over locations
    followed by mean pooling, under MSE).
    """
    s = layer_statistics(model, loss_fn, x, y, mode, mc_samples, rng)
    return [
        factors_from(a, gb, layer, 1.0, kfac_approx, s.samples)
        for a, gb, layer in zip(s.a, s.g_bar, s.layers, strict=True)
    ]


def kfac_dampings(A: Any, G: Any, damping: float, pi_correction: bool = False) -> tuple[Any, Any]:
    """``(γ_A, γ_G) = (π√λ, √λ/π)`` (eq. 3, M&G §6.3) for the factors A, G of one layer.

    π = 1 without ``pi_correction`` (two Python floats); with it π is computed on the device (two
    0-d float64 arrays, no host transfer), and falls back to 1 where a trace is not finite and > 0.
    A device λ (an array, as the adaptive damping keeps it) gives device dampings.
    """
    root = math.sqrt(damping) if isinstance(damping, int | float) else xp.sqrt(damping)
    if not pi_correction:
        return root, root
    tA = xp.trace(A).astype(xp.float64) / A.shape[0]  # float64, as math.sqrt(float(·)) would be
    tG = xp.trace(G).astype(xp.float64) / G.shape[0]
    ok = (tA > 0) & (tG > 0) & xp.isfinite(tA) & xp.isfinite(tG)
    pi = xp.where(ok, xp.sqrt(xp.where(ok, tA, 1.0) / xp.where(ok, tG, 1.0)), 1.0)
    return pi * root, root / pi


def damped_factors(A: Any, G: Any, damping: float, pi_correction: bool = False) -> tuple[Any, Any]:
    """``(A + γ_A I, G + γ_G I)``, new arrays, with the dampings of ``kfac_dampings`` (eq. 3)."""
    out = []
    for F, gamma in zip((A, G), kfac_dampings(A, G, damping, pi_correction), strict=True):
        K = F.copy()
        diagonal = xp.arange(K.shape[0])
        if type(gamma) is not float:  # a 0-d float64: round once, to the factor's dtype
            gamma = gamma.astype(K.dtype)
        K[diagonal, diagonal] += gamma
        out.append(K)
    return out[0], out[1]


def _solver(factor: Any, inverse: Any) -> Any:
    """``B ↦ K⁻¹ B`` from a lower Cholesky factor of K, or from K⁻¹ itself."""
    if factor is not None:
        return lambda B: cho_apply(factor, B)
    return lambda B: inverse @ B


def kfac_direction(
    grad: Any,
    A: Any,
    G: Any,
    damping: float,
    pi_correction: bool = False,
    *,
    factors: tuple[Any, Any] | None = None,
    inverses: tuple[Any, Any] | None = None,
    g: Any = None,
    a: Any = None,
    damping_mode: str = "factored",
    eigen: tuple[Any, Any, Any, Any] | None = None,
) -> Any:
    """``Δ = (G + γ_G I)⁻¹ ∇ (A + γ_A I)⁻¹`` (eq. 2, 3), shape (m, n+1): K-FAC's step of one layer.

    Parameters
    ----------
    grad : (m, n+1) gradient of ``[W | b]`` ((m, n) without bias), or None with ``g`` and ``a``
    A, G : (n+1, n+1) and (m, m) Kronecker factors (unused with ``factors``/``inverses``)
    damping : λ ≥ 0;  pi_correction : split √λ by π (eq. 3) instead of π = 1
    factors : (L_A, L_G), lower Cholesky factors of A + γ_A I and G + γ_G I (damping inside)
    inverses : (A_inv, G_inv), (A + γ_A I)⁻¹ and (G + γ_G I)⁻¹ (damping inside)
    g, a : rank-b form ∇ = gᵀa with g (rows, m), a = ã (rows, n+1) (or (rows, n): the column
        of ones is appended when A has n+1 rows): Δ = ((G + γ_G I)⁻¹gᵀ)((A + γ_A I)⁻¹ãᵀ)ᵀ,
        without forming ∇; the same Δ up to rounding.

    damping_mode : ``"factored"`` (the above) or ``"exact"``: ``(G ⊗ A + λI)⁻¹ ∇`` by
        ``kfac_direction_exact`` (``eigen=`` its eigendecompositions; ``pi_correction``,
        ``factors``, ``inverses`` unused)

    Without ``factors``/``inverses`` the damped factors are Cholesky-factored here (raising
    ``LinAlgError`` if one is not positive definite).
    """
    if (grad is None) == (g is None or a is None):
        raise ValueError(
            "kfac_direction: give grad, or g and a (the rank-b form ∇ = gᵀa), not both"
        )
    if damping_mode not in DAMPING_MODES:
        raise ValueError(f"kfac_direction: damping_mode must be one of {DAMPING_MODES}")
    if damping_mode == "exact":
        if grad is None:
            if a.shape[1] == A.shape[0] - 1:
                a = xp.concatenate([a, xp.ones((a.shape[0], 1), dtype=a.dtype)], axis=1)
            grad = g.T @ a
        return kfac_direction_exact(grad, A, G, damping, eigen=eigen)
    if factors is not None and inverses is not None:
        raise ValueError("kfac_direction: give factors or inverses, not both")
    if factors is None and inverses is None:
        K_A, K_G = damped_factors(A, G, damping, pi_correction)
        factors = (cho_factor(K_A, "A + γ_A I"), cho_factor(K_G, "G + γ_G I"))
    fac_A, fac_G = factors if factors is not None else (None, None)
    inv_A, inv_G = inverses if inverses is not None else (None, None)
    solve_A, solve_G = _solver(fac_A, inv_A), _solver(fac_G, inv_G)
    if grad is None:
        dim_A = (fac_A if fac_A is not None else inv_A).shape[0]
        if a.shape[1] == dim_A - 1:  # the bias column of ã = [a, 1]
            a = xp.concatenate([a, xp.ones((a.shape[0], 1), dtype=a.dtype)], axis=1)
        return solve_G(g.T) @ solve_A(a.T).T  # (G + γ_G I)⁻¹gᵀ (m, rows) · ((A + γ_A I)⁻¹ãᵀ)ᵀ
    return solve_A(solve_G(grad).T).T  # ((A + γ_A I)⁻¹ ((G + γ_G I)⁻¹ ∇)ᵀ)ᵀ, A symmetric


def kfac_eigen(A: Any, G: Any) -> tuple[Any, Any, Any, Any]:
    """``(d_A, U_A, d_G, U_G)``: ``A = U_A diag(d_A) U_Aᵀ``, ``G = U_G diag(d_G) U_Gᵀ`` (``eigh``).

    ``G ⊗ A = (U_G ⊗ U_A) diag(d_G ⊗ d_A) (U_G ⊗ U_A)ᵀ``: the Kronecker eigenbasis.
    """
    d_A, U_A = xp.linalg.eigh(A)
    d_G, U_G = xp.linalg.eigh(G)
    return d_A, U_A, d_G, U_G


def kfac_direction_exact(
    grad: Any, A: Any, G: Any, damping: float, *, eigen: tuple[Any, Any, Any, Any] | None = None
) -> Any:
    """``(G ⊗ A + λI)⁻¹ vec(∇)`` as an (m, n+1) matrix: exact Tikhonov damping (M&G 2015 §6.3).

    ``U_G [(U_Gᵀ ∇ U_A) / (d_G d_Aᵀ + λ)] U_Aᵀ`` with the eigendecompositions of ``kfac_eigen``
    (passed as ``eigen=(d_A, U_A, d_G, U_G)``, else computed here; A, G then unused). No factor
    damping and no π: the damping is that of the Kronecker product itself (the division is
    elementwise; λ = 0 with a zero eigenvalue gives inf).
    """
    d_A, U_A, d_G, U_G = kfac_eigen(A, G) if eigen is None else eigen
    return ekfac_direction(grad, U_A, U_G, d_G[:, None] * d_A[None, :], damping)


def ekfac_direction(grad: Any, U_A: Any, U_G: Any, scaling: Any, damping: float) -> Any:
    """``U_G [(U_Gᵀ ∇ U_A) / (s + λ)] U_Aᵀ``: the inverse of ``U diag(s) Uᵀ + λI`` applied to ∇.

    ``U = U_G ⊗ U_A``, ``s`` (m, n+1): ``d_G d_Aᵀ`` for K-FAC with exact damping, or the
    re-estimated scaling of ``ekfac_scaling`` (George et al. 2018, EKFAC, eq. 9).
    """
    return U_G @ ((U_G.T @ grad @ U_A) / (scaling + damping)) @ U_A.T


def ekfac_scaling(a: Any, g_bar: Any, layer: Any, U_A: Any, U_G: Any, samples: int) -> Any:
    """``s = (1/b) Σₙ (U_Gᵀ Gₙ U_A)²`` (m, n+1), Gₙ = Σ_t ḡₙₜ ãₙₜᵀ the per-sample gradients.

    George et al. 2018 (EKFAC, §3.2): the diagonal of ``Uᵀ F U`` in the Kronecker eigenbasis
    ``U = U_G ⊗ U_A``, F the Fisher of the per-sample rows of ``g_bar`` (the mode's: exact,
    mc or empirical; over every sweep r). ``g_bar``'s convolution rows are √L·ḡ (statistics.py).
    """
    a_t = homogeneous(a, layer) @ U_A  # (b·L, n+1), rotated
    L = a.shape[0] // samples
    g_rot = g_bar @ U_G  # (r·b·L, m)
    if L != 1:
        g_rot = g_rot / math.sqrt(L)
    a_t = xp.reshape(a_t, (samples, L, a_t.shape[1]))
    g_rot = xp.reshape(g_rot, (-1, samples, L, g_rot.shape[1]))  # (r, b, L, m)
    per_sample = xp.einsum("rbtm,btn->rbmn", g_rot, a_t)  # U_Gᵀ Gₙ U_A per sweep and sample
    return xp.sum(per_sample * per_sample, axis=(0, 1)) / samples


def qmodel_coefficients(
    delta: Any, prev: Any, grad: Any, F_delta: Any, F_prev: Any, damping: float
) -> tuple[Any, Any, Any]:
    """``(α, μ, M(δ))`` minimising ``M(δ) = ½ δᵀ(F + λI)δ + ∇ᵀδ`` over ``δ = αΔ + μδ₀``.

    M&G 2015 §7: with ``Mᵢⱼ = uᵢᵀ(F + λI)uⱼ``, ``bᵢ = ∇ᵀuᵢ`` (u = Δ, δ₀), ``[α, μ] = −M⁻¹b``
    and ``M(δ) = ½ (α b₁ + μ b₂)``. All arguments flat vectors (p,) (``F_delta = F Δ``, ``F_prev
    = F δ₀``; λ includes any weight decay); ``prev=None`` (first step): μ = 0, α = −b₁/M₁₁.
    A singular 2×2 system (δ₀ ∥ Δ) falls back to μ = 0. Results are 0-d arrays (no transfer).
    """
    m11 = xp.dot(delta, F_delta) + damping * xp.dot(delta, delta)
    b1 = xp.dot(grad, delta)
    alpha_only = -b1 / m11
    if prev is None:
        return alpha_only, xp.zeros_like(b1), 0.5 * alpha_only * b1
    m12 = xp.dot(delta, F_prev) + damping * xp.dot(delta, prev)
    m22 = xp.dot(prev, F_prev) + damping * xp.dot(prev, prev)
    b2 = xp.dot(grad, prev)
    det = m11 * m22 - m12 * m12
    ok = det > 1e-12 * xp.abs(m11 * m22)
    safe = xp.where(ok, det, 1.0)
    alpha = xp.where(ok, (-b1 * m22 + b2 * m12) / safe, alpha_only)
    mu = xp.where(ok, (-b2 * m11 + b1 * m12) / safe, 0.0)
    return alpha, mu, 0.5 * (alpha * b1 + mu * b2)
