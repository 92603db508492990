"""Saddle-free Newton by a series of Hessian-vector products: every equation, as a pure function.

Oldewage, Clarke & Hernández-Lobato, "Series of Hessian-vector products for tractable
saddle-free Newton optimisation of neural networks" (TMLR 2024, arXiv 2310.14901); the numbers
(1)–(8) are this module's, used by ``tinycurv.optim.SeriesSFN`` / ``ExactSFN``. Derivations and
departures from the reference code: docs/sfn.md. H (p×p) Hessian, g gradient, λ damping,
V scale, d = λ/√V, Y = I − H²/V, N terms, k Wynn order; a vector is a list of arrays.

(1) (|H| + λI)⁻¹ = V^(−1/2) Σₙ cₙ Yⁿ, convergent iff λᵢ(H)² ≤ 2V             series_operator
(2) c₀ = 1/(1 + d),  cₙ = (cₙ₋₁ + (−1)ⁿ binom(½, n)) / (1 − d²)               series_coefficients
(3) v₀ = g, vₙ = vₙ₋₁ − H(Hvₙ₋₁)/V, Sₙ = Sₙ₋₁ + cₙvₙ, u = V^(−1/2) S_{N−1}       series_operator
(4) ε_{s+1}⁽ᵐ⁾ = ε_{s−1}⁽ᵐ⁺¹⁾ + (ε_s⁽ᵐ⁺¹⁾ − ε_s⁽ᵐ⁾)⁻¹,  v⁻¹ = v/vᵀv             wynn_epsilon
(5) w ← Hw/‖Hw‖;  ‖Hw‖² ↑ λ_max(H²),  V = margin · ‖Hw‖²                        power_iteration
(6) δ = αu + μδ_prev,  M(δ) − M(0) = −gᵀδ + ½ δᵀCδ                             model_change
(7) subspace: C = |H|_span + λI on span{u, δ_prev} (exact 2×2)                subspace_minimiser
    reference: [[gᵀu, gᵀδ], [gᵀδ, α_prev δᵀb]] (α, μ)ᵀ = (gᵀu, gᵀδ)ᵀ, so α = 1, μ = 0;
    b ← μb + αg (δ = δ_prev)               reference_coefficients, reference_model_change
(8) ρ = (L(θ − δ) − L(θ)) / (M(δ) − M(0));  λ ← ωλ if ρ > ¾, λ/ω if ρ < ¼     levenberg_marquardt
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from tinycurv.backend import asnumpy, default_rng, quiet_float_errors, xp
from tinycurv.curvature import damping as damping_rule
from tinycurv.curvature.damping import reduction_ratio  # noqa: F401  (ρ of (8); re-exported)

Vector = list[Any]
HVPFn = Callable[[Vector], Vector]

SCALE_TOO_SMALL = (
    "scale V too small: need V ≥ λ_max(H)²/2; pass a larger scale or use power_iteration_scale"
)


# --------------------------------------------------------------------------------------------
# vectors as lists of arrays
# --------------------------------------------------------------------------------------------
def _dot(a: Sequence[Any], b: Sequence[Any]) -> Any:
    """``aᵀb`` of two lists of arrays read as one long vector each (0-d backend array, no sync)."""
    return sum(xp.sum(x * y) for x, y in zip(a, b, strict=True))


def _norm(a: Sequence[Any]) -> Any:
    """Euclidean norm of a list of arrays read as one long vector (0-d backend array)."""
    return xp.sqrt(_dot(a, a))


def _reciprocal(x: Any) -> Any:
    """``1/x`` for a 0-d backend array, and 1 where ``x`` is 0 (no division warning, no sync)."""
    return 1 / xp.where(x == 0, xp.ones_like(x), x)


def _axpy(alpha: float, x: Sequence[Any], y: Sequence[Any]) -> Vector:
    """``α x + y`` for lists of arrays (new arrays; the inputs are not modified)."""
    return [alpha * xi + yi for xi, yi in zip(x, y, strict=True)]


def _scale(alpha: float, x: Sequence[Any]) -> Vector:
    """``α x`` for a list of arrays."""
    return [alpha * xi for xi in x]


def _samelson_inverse(v: Sequence[Any]) -> Vector:
    """Samelson inverse of a vector: ``v⁻¹ = v / (vᵀv)`` (so that ``vᵀ v⁻¹ = 1``; 0 for v = 0)."""
    return _scale(_reciprocal(_dot(v, v)), v)


# --------------------------------------------------------------------------------------------
# (2) coefficients
# --------------------------------------------------------------------------------------------
def _binom_half(n: int) -> Fraction:
    """``binom(1/2, n)`` exactly: ``Πⱼ₌₀ⁿ⁻¹ (1/2 − j)/(j + 1)``."""
    out = Fraction(1)
    for j in range(n):
        out *= (Fraction(1, 2) - j) / (j + 1)
    return out


def _check_coefficient_args(order: int, damping_ratio: float) -> Fraction:
    if int(order) != order or order < 1:
        raise ValueError(f"order N must be an integer ≥ 1, got {order!r}")
    d = float(damping_ratio)
    if not math.isfinite(d) or d < 0:
        raise ValueError(f"damping_ratio d = λ/√V must be finite and ≥ 0, got {damping_ratio!r}")
    return Fraction(d)  # the exact binary value of the float


def series_coefficients(order: int, damping_ratio: float = 0.0) -> list[float]:
    """Taylor coefficients ``c₀ … c_{N−1}`` of ``1/(d + √(1 − y))`` by the recurrence (2).

    Parameters
    ----------
    order : int
        N ≥ 1, the number of coefficients.
    damping_ratio : float
        ``d = λ/√V ≥ 0``.

    Returns
    -------
    list of float
        ``[c₀, …, c_{N−1}]``, all positive. At ``d = 1`` (where (2) reads 0/0)
        ``cₙ = (−1)ⁿ binom(½, n + 1)``. Run in exact rationals and rounded once: dividing by
        ``1 − d²`` every term would amplify rounding errors (docs/sfn.md).
    """
    d = _check_coefficient_args(order, damping_ratio)
    if d == 1:
        return [float((-1) ** n * _binom_half(n + 1)) for n in range(order)]
    c = [1 / (1 + d)]  # c₀ = 1/(1 + d)
    for n in range(1, order):  # (2)
        c.append((c[-1] + (-1) ** n * _binom_half(n)) / (1 - d * d))
    return [float(cn) for cn in c]


def series_coefficients_closed_form(order: int, damping_ratio: float = 0.0) -> list[float]:
    """The coefficients of (2) by an independent closed form (the reference for tests).

    ``cₙ = (−1)ⁿ x^(−(n+1)) (d − Σₖ₌₀ⁿ binom(½, k) xᵏ)`` with ``x = d² − 1`` (rationalise
    ``1/(d + √(1 − y))`` and expand; docs/sfn.md), exactly in rationals.

    Parameters
    ----------
    order : int
        N ≥ 1.
    damping_ratio : float
        ``d = λ/√V ≥ 0``.

    Returns
    -------
    list of float
        ``[c₀, …, c_{N−1}]``.
    """
    d = _check_coefficient_args(order, damping_ratio)
    if d == 1:
        return [float((-1) ** n * _binom_half(n + 1)) for n in range(order)]
    x = d * d - 1
    out = []
    partial = Fraction(0)  # Σₖ₌₀ⁿ binom(1/2, k) xᵏ
    for n in range(order):
        partial += _binom_half(n) * x**n
        out.append(float((-1) ** n * (d - partial) / x ** (n + 1)))
    return out


# --------------------------------------------------------------------------------------------
# (4) Wynn's vector ε-algorithm
# --------------------------------------------------------------------------------------------
def wynn_epsilon(partial_sums: Sequence[Sequence[Any]], k: int) -> Vector:
    """Shanks transform of order k of a vector sequence by Wynn's ε-algorithm (4).

    Parameters
    ----------
    partial_sums : list of vectors
        ``S₀, S₁, …`` (each a list of arrays); only the last ``2k + 1`` are used.
    k : int
        Order, ``k ≥ 0``; ``k = 0`` returns (a copy of) the last vector.

    Returns
    -------
    vector
        ``ε_{2k}⁽⁰⁾`` from ``ε₋₁ = 0``, ``ε₀⁽ᵐ⁾ = S_m`` and (4) with the Samelson inverse
        ``v⁻¹ = v/vᵀv``: exact for ``S_m = S + Σⱼ₌₁ᵏ aⱼ rⱼᵐ``. If a difference vanishes to rounding
        (a stagnated sequence) the last vector is returned.
    """
    if int(k) != k or k < 0:
        raise ValueError(f"wynn_epsilon: k must be an integer ≥ 0, got {k!r}")
    if len(partial_sums) < 2 * k + 1:
        raise ValueError(
            f"wynn_epsilon: order k = {k} needs 2k + 1 = {2 * k + 1} partial sums, "
            f"got {len(partial_sums)}"
        )
    last = [xp.array(a, copy=True) for a in partial_sums[-1]]
    if k == 0:
        return last
    current = [[xp.asarray(a) for a in s] for s in partial_sums[-(2 * k + 1) :]]  # ε₀ (backend)
    eps = max((float(xp.finfo(a.dtype).eps) for a in last), default=0.0)
    previous: list[Vector] | None = None  # ε₋₁ = 0
    moved = []  # per difference: not stagnated (a backend bool; all read at the end, one sync)
    with quiet_float_errors():  # a stagnated table may overflow; it is then not used
        for _s in range(2 * k):
            column = []
            for m in range(len(current) - 1):
                delta = _axpy(-1.0, current[m], current[m + 1])  # ε_s⁽ᵐ⁺¹⁾ − ε_s⁽ᵐ⁾
                size = xp.maximum(_norm(current[m]), _norm(current[m + 1]))
                moved.append(_norm(delta) > 8 * eps * size)
                inverse = _samelson_inverse(delta)
                column.append(inverse if previous is None else _axpy(1.0, previous[m + 1], inverse))
            previous, current = current, column
    if not bool(asnumpy(xp.stack(moved)).all()):  # stagnated (or not finite) somewhere
        return last
    return current[0]


# --------------------------------------------------------------------------------------------
# (1), (3) the series
# --------------------------------------------------------------------------------------------
def series_operator(
    hvp_fn: HVPFn,
    vectors: Sequence[Any],
    order: int,
    scale: float,
    damping: float = 0.0,
    acceleration: int = 0,
) -> Vector:
    """``u ≈ (|H| + λI)⁻¹ v``: N terms of the series (1) by the recursion (3), then Wynn (4).

    Parameters
    ----------
    hvp_fn : callable
        ``hvp_fn(vector) -> vector``, the product ``H v`` (lists of arrays).
    vectors : list of arrays
        ``v`` (typically g), shaped like the parameters.
    order : int
        N ≥ 1 terms; ``2(N − 1)`` HVPs.
    scale : float
        ``V > 0``; (1) converges iff ``V ≥ λ_max(H)²/2``.
    damping : float
        ``λ ≥ 0``.
    acceleration : int
        k ≥ 0, Wynn's ε over the last ``2k + 1`` partial sums (``N ≥ 2k + 1``); 0: plain sum.

    Returns
    -------
    list of arrays
        ``V^(−1/2) S_{N−1}`` (or its accelerated version), shaped like ``vectors``. The error
        of eigen-component i is ``V^(−1/2) Σₙ≥N cₙ yᵢⁿ`` with ``yᵢ = 1 − λᵢ²/V`` (docs/sfn.md).

    Raises
    ------
    ValueError
        For bad arguments, and (message starting with ``SCALE_TOO_SMALL``) when a term grows,
        ``‖vₙ‖ > (1 + tol)‖vₙ₋₁‖``: Y symmetric, so growth proves some ``λᵢ² > 2V``.
    """
    if int(order) != order or order < 1:
        raise ValueError(f"series_operator: order N must be an integer ≥ 1, got {order!r}")
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"series_operator: scale V must be finite and > 0, got {scale!r}")
    damping = float(damping)
    if not (math.isfinite(damping) and damping >= 0):
        raise ValueError(f"series_operator: damping λ must be finite and ≥ 0, got {damping!r}")
    if int(acceleration) != acceleration or acceleration < 0:
        raise ValueError(f"series_operator: acceleration k must be ≥ 0, got {acceleration!r}")
    if order < 2 * acceleration + 1:
        raise ValueError(
            f"series_operator: acceleration k = {acceleration} needs order N ≥ 2k + 1 = "
            f"{2 * acceleration + 1}, got N = {order}"
        )

    V, k = scale, int(acceleration)
    c = series_coefficients(order, damping / math.sqrt(V))  # (2), d = λ/√V
    v = [xp.asarray(a) for a in vectors]  # v₀ = g
    eps = max((float(xp.finfo(a.dtype).eps) for a in v), default=0.0)
    growth_tol = max(1e-6, 100 * eps)
    S = _scale(c[0], v)  # S₀ = c₀ v₀
    kept = [S]  # the last 2k + 1 partial sums
    norms = [_norm(v)]  # ‖vₙ‖ as backend scalars, read back once after the loop
    with quiet_float_errors():  # a diverging series may overflow: _check_contraction says so
        for n in range(1, order):
            H2v = hvp_fn(hvp_fn(v))  # two HVPs per term
            v = _axpy(-1.0 / V, H2v, v)  # (3) vₙ = vₙ₋₁ − H²vₙ₋₁/V = Y vₙ₋₁
            norms.append(_norm(v))
            S = _axpy(c[n], v, S)  # (3) Sₙ = Sₙ₋₁ + cₙ vₙ
            kept = (kept + [S])[-(2 * k + 1) :]
    _check_contraction(asnumpy(xp.stack(norms)).tolist(), growth_tol, V)
    limit = wynn_epsilon(kept, k) if k > 0 else S  # (4)
    return _scale(1.0 / math.sqrt(V), limit)  # (1) u = V^(−1/2) Σ cₙ Yⁿ v


def _check_contraction(norms: list[float], growth_tol: float, V: float) -> None:
    """Raise if some ‖vₙ‖ grew: Y = I − H²/V is a contraction only for V ≥ λ_max²/2."""
    for n in range(1, len(norms)):
        if not norms[n] <= (1 + growth_tol) * norms[n - 1]:  # also catches inf / nan
            ratio = f"{norms[n] / norms[n - 1]:.6g}" if norms[n - 1] else "inf"
            raise ValueError(
                f"{SCALE_TOO_SMALL} (term {n}: ‖vₙ‖/‖vₙ₋₁‖ = {ratio} > 1 with V = {V:.6g})"
            )


def saddle_free_direction(
    closure: Callable[[], Any],
    params: Sequence[Any],
    vectors: Sequence[Any],
    order: int,
    scale: float,
    damping: float = 0.0,
    acceleration: int = 0,
) -> Vector:
    """``series_operator`` (1)–(4) with the engine's HVPs of the loss ``closure()``.

    Parameters
    ----------
    closure : callable
        ``closure()`` returns the scalar loss as a ``Tensor`` computed from ``params``.
    params : list of Tensor
        The leaves; ``H`` is the Hessian of the loss with respect to them.
    vectors : list of arrays
        ``v`` shaped like ``params`` (typically g).
    order, scale, damping, acceleration
        N, V, λ, k as in ``series_operator``.

    Returns
    -------
    list of arrays
        ``u ≈ (|H| + λI)⁻¹ v``, shaped like ``params``; the update is ``θ ← θ − α u``.
    """
    from tinycurv.functional import hvp  # lazy: the engine imports nothing from here

    return series_operator(
        lambda vs: hvp(closure, params, vs), vectors, order, scale, damping, acceleration
    )


# --------------------------------------------------------------------------------------------
# (5) the scale by power iteration
# --------------------------------------------------------------------------------------------
def power_iteration(hvp_fn: HVPFn, start: Sequence[Any], iters: int) -> tuple[Any, Vector]:
    """Power iteration (5) on H from ``start``: a lower bound on ``λ_max(H²)`` and the vector.

    Parameters
    ----------
    hvp_fn : callable
        ``hvp_fn(vector) -> vector``, the product ``H w``.
    start : list of arrays
        The start vector (random, or the last call's vector: a warm start); not all zero.
    iters : int
        ≥ 1 iterations, one HVP each.

    Returns
    -------
    estimate : 0-d backend array
        ``‖H w‖²`` for the unit w of the last iteration: the Rayleigh quotient of ``H²``, which
        increases monotonically to ``λ_max(H²) = maxᵢ λᵢ(H)²`` and never exceeds it (0 if
        ``H w = 0``). Not read back to the host here.
    vector : list of arrays
        ``H w/‖H w‖``, the start of the next call.
    """
    if int(iters) != iters or iters < 1:
        raise ValueError(f"power_iteration: iters must be an integer ≥ 1, got {iters!r}")
    w = [xp.asarray(a) for a in start]
    w = _scale(_reciprocal(_norm(w)), w)
    for _ in range(int(iters)):
        Hw = hvp_fn(w)
        norm = _norm(Hw)  # ‖H w‖ with ‖w‖ = 1
        w = _scale(_reciprocal(norm), Hw)  # (5); H w = 0 leaves w = 0 and the estimate 0
    return norm * norm, w


def random_start(vectors_like: Sequence[Any], rng: Any = None) -> Vector:
    """A standard normal vector shaped like ``vectors_like`` (backend generator or int seed)."""
    if rng is None or isinstance(rng, int):
        rng = default_rng(rng)
    return [rng.standard_normal(tuple(a.shape)).astype(a.dtype) for a in vectors_like]


def power_iteration_scale(
    hvp_fn: HVPFn,
    vectors_like: Sequence[Any],
    iters: int = 20,
    rng: Any = None,
    safety: float = 1.0,
) -> float:
    """A scale ``V = safety · ‖H w‖²`` by ``iters`` power iterations (5) from a random start.

    Parameters
    ----------
    hvp_fn : callable
        ``hvp_fn(vector) -> vector``, the product ``H w``.
    vectors_like : list of arrays
        Shapes and dtypes of the vectors (e.g. the parameters' data).
    iters : int
        Power iterations (one HVP each).
    rng : generator, int or None
        Backend random generator or seed of the start vector.
    safety : float
        The margin > 0 of (5). ``safety = 1`` gives V ≤ λ_max² and (once the estimate passes
        λ_max²/2) convergence of (1).

    Returns
    -------
    float
        V (at least the dtype's smallest normal number, for H = 0).
    """
    if not (math.isfinite(float(safety)) and safety > 0):
        raise ValueError(f"power_iteration_scale: safety must be > 0, got {safety!r}")
    if int(iters) != iters or iters < 1:
        raise ValueError(f"power_iteration_scale: iters must be an integer ≥ 1, got {iters!r}")
    estimate, _ = power_iteration(hvp_fn, random_start(vectors_like, rng), iters)
    tiny = min(float(xp.finfo(a.dtype).tiny) for a in vectors_like)
    return max(float(safety) * float(asnumpy(estimate)), tiny)


# --------------------------------------------------------------------------------------------
# (6)–(8) the step: coefficients α, μ, the model change, the damping
# --------------------------------------------------------------------------------------------
def model_change(
    alpha: float,
    mu: float,
    u_C_u: float,
    u_C_d: float,
    d_C_d: float,
    g_u: float,
    g_d: float,
) -> float:
    """``M(δ) − M(0) = −gᵀδ + ½ δᵀCδ`` (6) for ``δ = αu + μδ_prev``, from inner products.

    Parameters
    ----------
    alpha, mu : float
        α, μ.
    u_C_u, u_C_d, d_C_d : float
        ``uᵀCu``, ``uᵀCδ_prev``, ``δ_prevᵀCδ_prev`` for the model's curvature C.
    g_u, g_d : float
        ``gᵀu``, ``gᵀδ_prev``.

    Returns
    -------
    float
        ``½(α² uᵀCu + 2αμ uᵀCδ_prev + μ² δ_prevᵀCδ_prev) − α gᵀu − μ gᵀδ_prev``.
    """
    curvature = alpha * alpha * u_C_u + 2.0 * alpha * mu * u_C_d + mu * mu * d_C_d
    return 0.5 * curvature - alpha * g_u - mu * g_d


def reference_coefficients(g_u: float, g_d: float, d_b: float, alpha_prev: float) -> tuple:
    """α, μ by the reference code's quadratic-model solve (7, "reference").

    The reference takes C = |H| + λI itself, so ``uᵀCu = gᵀu`` (u = C⁻¹g), ``uᵀCδ_prev =
    gᵀδ_prev``, and ``δ_prevᵀCδ_prev ≈ α_prev δ_prevᵀb`` with its buffer ``b ← μb + αg``
    (1 where that is 0), and solves the 2×2 system by Cramer's rule. The first column equals
    the right-hand side, so ``(α, μ) = (1, 0)`` whenever the system is regular.

    Parameters
    ----------
    g_u, g_d : float
        ``gᵀu``, ``gᵀδ_prev`` (0 before the first step).
    d_b : float
        ``δ_prevᵀb`` (0 before the first step).
    alpha_prev : float
        α of the previous step (0 before the first).

    Returns
    -------
    (alpha, mu) : tuple of float
        NaN for a singular system.
    """
    a11, a12, a22 = g_u, g_d, alpha_prev * d_b
    if a22 == 0:
        a22 = 1.0
    det = a11 * a22 - a12 * a12
    if det == 0 or not math.isfinite(det):
        return math.nan, math.nan
    return (g_u * a22 - a12 * g_d) / det, (a11 * g_d - a12 * g_u) / det


def reference_model_change(alpha: float, mu: float, g_u: float, g_d: float, d_b: float) -> float:
    """M(δ) − M(0) (6) of the reference's model, as the reference evaluates it for ρ (8).

    After its buffer and α_prev have been updated: ``δ_prevᵀCδ_prev ≈ α δ_prevᵀ(μb + αg)
    = α(μ δ_prevᵀb + α gᵀδ_prev)``, ``uᵀCu = gᵀu``, ``uᵀCδ_prev = gᵀδ_prev``; with (α, μ) = (1, 0)
    this is ``−½ gᵀu``. Arguments as in ``reference_coefficients`` (``d_b`` with the old b).
    """
    d_C_d = alpha * (mu * d_b + alpha * g_d)
    return model_change(alpha, mu, g_u, g_d, d_C_d, g_u, g_d)


def subspace_minimiser(
    A: Sequence[Sequence[float]], G: Sequence[Sequence[float]], b: Sequence[float], damping: float
) -> tuple[list[float], float]:
    """α, μ minimising the saddle-free model on ``span(D)`` (7, "subspace"), and M(c*) − M(0).

    The model is ``m(c) = −bᵀc + ½ cᵀ(|A|_G + λG)c`` with ``A = DᵀHD``, ``G = DᵀD``, ``b = Dᵀg``
    (k×k, k×k, k; D = [u] or [u, δ_prev]): with ``G = LLᵀ``, ``M = L⁻¹AL⁻ᵀ`` is H on an
    orthonormal basis of the span, ``|M|`` takes absolute eigenvalues, and
    ``z = (|M| + λI)⁻¹L⁻¹b``, ``c = L⁻ᵀz``, ``m(c*) − m(0) = −½ (L⁻¹b)ᵀz``.

    Parameters
    ----------
    A, G : k×k nested lists of float, k ∈ {1, 2}
    b : list of k floats
    damping : float
        λ ≥ 0.

    Returns
    -------
    (coefficients, change)
        ``[α]`` or ``[α, μ]`` and the model change ≤ 0. A second column (numerically) parallel
        to the first, or zero, is dropped (μ = 0); eigen-directions with ``|ν| + λ = 0`` are
        left out (pseudo-inverse).
    """
    lam = damping
    if len(b) == 2:
        g11, g12, g22 = G[0][0], G[0][1], G[1][1]
        if g22 <= 0 or g11 * g22 - g12 * g12 <= 1e-12 * g11 * g22:  # δ_prev ∥ u, or zero
            c, change = subspace_minimiser([[A[0][0]]], [[g11]], [b[0]], lam)
            return [c[0], 0.0], change
    if len(b) == 1:
        g11 = G[0][0]
        if not g11 > 0:
            return [0.0], 0.0
        denominator = abs(A[0][0]) + lam * g11  # |uᵀHu| + λ uᵀu
        alpha = b[0] / denominator if denominator > 0 else 0.0
        return [alpha], -0.5 * alpha * b[0]
    l11 = math.sqrt(g11)  # G = LLᵀ
    l21 = g12 / l11
    l22 = math.sqrt(g22 - l21 * l21)
    beta1 = b[0] / l11  # β = L⁻¹ b
    beta2 = (b[1] - l21 * beta1) / l22
    w11, w12 = A[0][0] / l11, A[0][1] / l11  # W = L⁻¹A, then M = W L⁻ᵀ
    w21, w22 = (A[1][0] - l21 * w11) / l22, (A[1][1] - l21 * w12) / l22
    m11 = w11 / l11
    m12 = (w12 - l21 * m11) / l22
    m22 = (w22 - l21 * (w21 / l11)) / l22
    mean, radius = 0.5 * (m11 + m22), math.hypot(0.5 * (m11 - m22), m12)  # eigen of M (2×2)
    angle = 0.5 * math.atan2(2.0 * m12, m11 - m22)
    q1, q2 = (math.cos(angle), math.sin(angle)), (-math.sin(angle), math.cos(angle))
    z1 = z2 = 0.0
    for nu, q in ((mean + radius, q1), (mean - radius, q2)):
        denominator = abs(nu) + lam  # |ν| + λ
        if denominator > 0:
            coefficient = (q[0] * beta1 + q[1] * beta2) / denominator
            z1, z2 = z1 + coefficient * q[0], z2 + coefficient * q[1]
    mu = z2 / l22  # c = L⁻ᵀ z
    alpha = (z1 - l21 * mu) / l11
    return [alpha, mu], -0.5 * (beta1 * z1 + beta2 * z2)


def levenberg_marquardt(
    damping: float, rho: float, decay: float, min_damping: float = 0.0
) -> float:
    """The damping rule of (8), ``curvature.damping.levenberg_marquardt`` with ω = ``decay``, a
    floor ``min_damping`` (the reference clips at 1e-8) and a NaN ρ leaving λ as it is."""
    return damping_rule.levenberg_marquardt(damping, rho, decay, min_damping, nan_raises=False)


# --------------------------------------------------------------------------------------------
# dense reference
# --------------------------------------------------------------------------------------------
def abs_hessian_inverse(H: Any, v: Any, damping: float = 0.0) -> Any:
    """Exact ``(|H| + λI)⁻¹ v = Q diag(1/(|Λ| + λ)) Qᵀ v`` from ``H = QΛQᵀ`` — exact SFN.

    O(p³) time, O(p²) memory: what (1) approximates, for small problems.

    Parameters
    ----------
    H : array (p, p)
        Symmetric (symmetrised as ``(H + Hᵀ)/2``).
    v : array (p,)
    damping : float
        λ ≥ 0.

    Returns
    -------
    array (p,)

    Raises
    ------
    ValueError
        For ``λ < 0``, and for a singular ``|H|`` with ``λ = 0`` (only then is the spectrum read
        back to the host; with ``λ > 0`` nothing is).
    """
    if damping < 0:
        raise ValueError(f"abs_hessian_inverse: damping must be ≥ 0, got {damping!r}")
    H = xp.asarray(H)
    eigenvalues, Q = xp.linalg.eigh(0.5 * (H + H.T))
    shifted = xp.abs(eigenvalues) + damping
    if damping == 0 and bool(xp.any(shifted == 0)):
        raise ValueError("abs_hessian_inverse: |H| + λI is singular (zero eigenvalue, λ = 0)")
    return Q @ ((Q.T @ xp.asarray(v)) / shifted)
