"""ISAAC: the two-parameter damped Kronecker-factored Newton direction ζ and its limit ζ*.

Petersen, Sutter, Borgelt, Huh, Kuehne, Sun & Deussen, "ISAAC Newton: Input-based Approximate
Curvature for Newton's Method", ICLR 2023 (arXiv 2305.00604). Equation and theorem numbers
follow the paper's preprint text (eq. 17 ζ, eq. 19 the vec identity, eq. 20 the Woodbury form,
eq. 21 ζ*, Theorems 1–4, Remarks 1–4).

Conventions (one linear layer ``z = a Wᵀ``, weight ``W`` of shape (m, n), PyTorch layout)
----------------------------------------------------------------------------------------------
``a``      (b, n)    the layer's inputs for a batch of b samples;
``g``      (b, m)    gradients of the *batch* loss w.r.t. the pre-activations ``z``, so that
                     the weight gradient is exactly ``∇_W L = gᵀa`` (m, n);
``g_bar``  (r·b, m)  per-sample back-propagated square roots of the loss Hessian (r = m, exact)
                     or r sampled-label gradients per sample (Remark 1), scaled so that
                     ``G = g_barᵀ g_bar / b`` is the output-side K-FAC factor;
``A = aᵀa / b``      the input-side K-FAC factor (n, n).

The GGN block of the layer is approximated (K-FAC, eq. 13) by ``G ⊗ A`` acting on the row-major
flattening of ``W``; with the identity (eq. 19) ``(P ⊗ Q) vec(X) = vec(P X Q)`` (Q symmetric)
every Kronecker product below becomes a left and a right matrix product.

The direction (eq. 17)
----------------------
The paper defines, with its own scaling (eq. 14: ``E[ḡᵀḡ] ≈ ḡᵀḡ/b``, ``E[aᵀa] ≈ aᵀa/b``, batch
``ḡ`` of shape (r·b, d_i), ``a`` of shape (b, d_{i-1}), gradient ``gᵀa``),

    ζ = λ_g λ_a (ḡᵀḡ/b + λ_g I)⁻¹ ⊗ (aᵀa/b + λ_a I)⁻¹ ∇_θ L,

which by eq. 19 is, in this module's names and with no rescaling at all,

    zeta = lam_g · lam_a · (G + lam_g I)⁻¹ · gᵀa · (A + lam_a I)⁻¹      (m, n).

So the contract of this module *is* eq. 17: ``g_bar`` ↔ the paper's batch ``ḡ``, ``a`` ↔ its
``a``, ``g`` ↔ its ``g`` (its ``gᵀa`` is the gradient being conditioned; here ``g`` belongs to
the batch loss, so any loss reduction is already inside ``g``; ζ is linear in ``g``). The paper
writes ``W`` as (d_{i-1}, d_i) for row vectors ``z = aW`` but the gradient as ``gᵀa``
(d_i, d_{i-1}), i.e. the (out, in) layout used here. The factor ``λ_g λ_a`` makes ζ a
re-scaled Tikhonov-damped K-FAC step: the update ``θ' = θ − η* ζ`` (eq. 18) equals the damped
K-FAC update (eq. 16) with ``η = η* λ_g λ_a`` and ``λ = λ_g = λ_a``.

The Woodbury form (eq. 20) and the limit ζ* (eq. 21)
----------------------------------------------------
Woodbury's identity turns the m×m and n×n solves of eq. 17 into (r·b)×(r·b) and b×b ones::

    zeta = (I_m − ḡᵀ (I_rb + ḡḡᵀ/(bλ_g))⁻¹ ḡ / (bλ_g))
           · gᵀ · (I_b − aaᵀ (I_b + aaᵀ/(bλ_a))⁻¹ / (bλ_a)) · a

(the identity inside the first bracket is (r·b)×(r·b), the size of ḡḡᵀ). For λ_g → ∞ the
left bracket tends to I_m (Theorem 3), leaving ζ* of eq. 21. The right
bracket simplifies: with ``K = I_b + aaᵀ/(bλ_a)`` it is ``I_b − (K − I_b) K⁻¹ = K⁻¹``, so::

    zeta_star = gᵀ (I_b + aaᵀ/(bλ_a))⁻¹ a = λ_a gᵀa (A + λ_a I)⁻¹.

This module uses ``K⁻¹ a`` instead of ``a − aaᵀK⁻¹a/(bλ_a)``: equal in exact arithmetic, but
without the subtraction, which cancels catastrophically for small λ_a (ζ* → 0 like λ_a when
b < n, because gᵀa lies in the row space of a). The left bracket has no such shortcut and is
used as written; it loses about ``eps·‖G‖/λ_g`` in relative accuracy when gᵀ lies in the row
space of ``ḡ`` (e.g. the empirical Fisher of Remark 4) and λ_g is tiny.

When the batch is larger than the layer (b > n, resp. r·b > m) the n×n (resp. m×m) side of
eq. 17 is cheaper and is used instead, as Theorem 3 (ii) notes (cost of ζ*:
O(bn² + b²n + b³), or O(bn² + n³) for b > n).

Every damping factor is applied as ``λ (M + λI)⁻¹ = (I + M/λ)⁻¹``, so ``lam = math.inf`` is
exact (the side is the identity, no ``inf·0``): lam_g = inf gives ζ* (Theorem 3), both inf
give gᵀa (Theorem 1 ii), lam_a = inf alone gives ``lam_g (G + lam_g I)⁻¹ gᵀa``.

Theorems (what the tests check)
-------------------------------
1. eq. 17 = eq. 20; (i) ζ/(λ_gλ_a) → G⁻¹ gᵀa A⁻¹ as λ_g, λ_a → 0 (full-rank factors);
   (ii) ζ → gᵀa as λ_g, λ_a → ∞.
2. ⟨ζ, gᵀa⟩ ≥ 0: the preconditioner is positive definite, so ζ is an ascent direction.
3. λ_g → ∞ gives ζ*, which needs only the inputs a (no ``g_bar``, no extra backward pass).
4. For linear regression with MSE (GGN = I_m ⊗ A), ζ*/λ_a = (GGN + λ_a I)⁻¹ vec(gᵀa), the
   damped Gauss–Newton step. (The paper's proof says "ζ* = ζ"; exactly, ζ with the exact
   ``g_bar`` (G = I) is λ_g/(1 + λ_g) · ζ*, the same direction.)

Remark 4 (empirical Fisher): pass the per-sample gradients of the per-sample losses as
``g_bar`` (r = 1). For a mean-reduced loss ``L = (1/b) Σ ℓ_n`` these are ``b·g`` (row n of
``g`` is ``∇_z ℓ_n / b``), so ``g_barᵀ g_bar / b = (1/b) Σ ∇ℓ_n ∇ℓ_nᵀ``, the empirical Fisher's
output-side Kronecker factor. (Rows ``√b·g_n`` would give ``Σ g_n g_nᵀ``, the factor for the
per-sample gradients of the *batch* loss, which is 1/b times smaller.)
"""

from __future__ import annotations

import math
from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature.linalg import cho_solve

__all__ = ["zeta", "zeta_kron", "zeta_star"]


# --------------------------------------------------------------------------------------------
# checks
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
# the two conditioned factors of eq. 20
# --------------------------------------------------------------------------------------------
def _conditioned_inputs(a: Any, lam_a: float) -> Any:
    """``λ_a a (A + λ_a I)⁻¹ = (I_b + aaᵀ/(bλ_a))⁻¹ a``, shape (b, n) (right bracket of eq. 20)."""
    if math.isinf(lam_a):
        return a
    b, n = a.shape
    if b <= n:  # b×b solve: eq. 20/21, I_b − aaᵀ K⁻¹/(bλ_a) = K⁻¹ with K = I_b + aaᵀ/(bλ_a)
        K = xp.eye(b, dtype=a.dtype) + (a @ a.T) / (b * lam_a)
        return cho_solve(K, a, name="I_b + a aᵀ/(b·lam_a)")
    A = (a.T @ a) / b  # eq. 14, n×n side (b > n): λ_a (A + λ_a I)⁻¹ = (I_n + A/λ_a)⁻¹
    K = xp.eye(n, dtype=a.dtype) + A / lam_a
    return cho_solve(K, a.T, name="I_n + A/lam_a").T


def _conditioned_output_grads(g: Any, g_bar: Any, lam_g: float) -> Any:
    """``λ_g (G + λ_g I)⁻¹ gᵀ``, shape (m, b) (left bracket of eq. 20 times gᵀ)."""
    gT = g.T
    if math.isinf(lam_g):
        return gT
    b, m = g.shape
    rb = g_bar.shape[0]
    if rb <= m:  # (r·b)×(r·b) Woodbury solve, eq. 20: I_m − ḡᵀ (I_rb + ḡḡᵀ/(bλ_g))⁻¹ ḡ/(bλ_g)
        K = xp.eye(rb, dtype=g_bar.dtype) + (g_bar @ g_bar.T) / (b * lam_g)
        return gT - g_bar.T @ cho_solve(K, g_bar @ gT, name="I_rb + ḡ ḡᵀ/(b·lam_g)") / (b * lam_g)
    G = (g_bar.T @ g_bar) / b  # eq. 14, m×m side (r·b > m): λ_g (G + λ_g I)⁻¹ = (I_m + G/λ_g)⁻¹
    K = xp.eye(m, dtype=g_bar.dtype) + G / lam_g
    return cho_solve(K, gT, name="I_m + G/lam_g")


# --------------------------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------------------------
def zeta_kron(g: Any, a: Any, g_bar: Any, lam_g: float, lam_a: float) -> Any:
    """ζ by the Kronecker form (eq. 17) with m×m and n×n Cholesky solves; returns (m, n).

    Parameters
    ----------
    g : (b, m) gradients of the batch loss w.r.t. the layer's pre-activations.
    a : (b, n) the layer's inputs.
    g_bar : (r·b, m) per-sample Hessian square roots or sampled gradients, ``G = ḡᵀḡ/b``.
    lam_g, lam_a : dampings > 0 of the G and A factors; ``math.inf`` switches a side off.

    Returns
    -------
    zeta : (m, n) ``lam_g lam_a (G + lam_g I)⁻¹ gᵀa (A + lam_a I)⁻¹``, the reference form.

    Notes
    -----
    When a factor is singular (b < n for A, r·b < m for G) the matrix ``I + A/lam_a`` has
    condition number ``1 + ‖A‖/lam_a``, and rounding ``A`` itself costs about
    ``eps·‖A‖/lam_a`` in relative accuracy (≈ 1e-10 for ‖A‖ ≈ 1, lam_a = 1e-6); the Woodbury
    form ``zeta`` does not lose this.
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
    """ζ by the Woodbury form (eq. 20): b×b and (r·b)×(r·b) solves; returns (m, n).

    Where the batch is larger than the layer (b > n, resp. r·b > m) the cheaper n×n (resp. m×m)
    side is solved instead. ``lam_g = math.inf`` returns ``zeta_star(g, a, lam_a)`` (eq. 21).

    Parameters
    ----------
    g : (b, m) gradients of the batch loss w.r.t. the layer's pre-activations.
    a : (b, n) the layer's inputs.
    g_bar : (r·b, m) per-sample Hessian square roots or sampled gradients, ``G = ḡᵀḡ/b``.
    lam_g, lam_a : dampings > 0 of the G and A factors; ``math.inf`` switches a side off.

    Returns
    -------
    zeta : (m, n) equal to ``zeta_kron(g, a, g_bar, lam_g, lam_a)`` in exact arithmetic.
    """
    lam_g, lam_a = _check_lam(lam_g, "lam_g"), _check_lam(lam_a, "lam_a")
    _require_g_bar(g_bar, lam_g)
    _check_shapes(g, a, g_bar)
    if math.isinf(lam_g):
        return zeta_star(g, a, lam_a)  # Theorem 3
    a_hat = _conditioned_inputs(a, lam_a)  # λ_a a (A + λ_a I)⁻¹, (b, n) (eq. 20, right)
    gT_hat = _conditioned_output_grads(g, g_bar, lam_g)  # λ_g (G + λ_g I)⁻¹ gᵀ, (m, b) (left)
    return gT_hat @ a_hat  # eq. 20


def zeta_star(g: Any, a: Any, lam_a: float) -> Any:
    """ζ* = lim_{λ_g→∞} ζ (eq. 21): only the inputs condition the gradient; returns (m, n).

    Parameters
    ----------
    g : (b, m) gradients of the batch loss w.r.t. the layer's pre-activations.
    a : (b, n) the layer's inputs.
    lam_a : damping > 0 of A; ``math.inf`` gives the plain gradient ``gᵀa``.

    Returns
    -------
    zeta_star : (m, n) ``gᵀ (I_b + aaᵀ/(b lam_a))⁻¹ a = lam_a gᵀa (A + lam_a I)⁻¹``, by a b×b
        solve, or an n×n one when b > n.
    """
    lam_a = _check_lam(lam_a, "lam_a")
    _check_shapes(g, a)
    return g.T @ _conditioned_inputs(a, lam_a)  # eq. 21
