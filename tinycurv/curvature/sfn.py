"""Series saddle-free Newton: ``(|H| + λI)⁻¹ v`` from Hessian-vector products only.

Saddle-free Newton (SFN, Dauphin et al. 2014) preconditions the gradient with ``|H|⁻¹``, the
inverse Hessian whose eigenvalues are replaced by their absolute values, so that negative
curvature repels instead of attracting. Forming ``|H| = Q|Λ|Qᵀ`` needs an eigendecomposition;
Oldewage, Clarke & Hernández-Lobato ("Series of Hessian-vector products for tractable
saddle-free Newton optimisation of neural networks", TMLR 2024, arXiv 2310.14901) write it as a
power series in ``H²`` instead, since ``|H| = (H²)^(1/2)``.

The series (notation of the paper: scale V, damping λ, d = λ/√V, coefficients c, order N)
----------------------------------------------------------------------------------------------
Pick a scale ``V > 0`` and put ``Y = I − H²/V``. Then ``|H| = √V (I − Y)^(1/2)`` and::

    (|H| + λI)⁻¹ = V^(−1/2) · (d I + (I − Y)^(1/2))⁻¹ = V^(−1/2) Σₙ cₙ Yⁿ

where ``cₙ`` are the Taylor coefficients of ``f(y) = 1/(d + √(1 − y))`` at ``y = 0``. The
series converges (for every ``d ≥ 0``) when the spectrum of ``Y`` lies in ``[−1, 1)``, i.e.
``0 < λᵢ(H)² ≤ 2V`` for every eigenvalue; the error of the eigen-component ``i`` after N terms
shrinks like ``|1 − λᵢ²/V|^N`` (times a power of N, see ``series_operator``).

Applied to a vector ``g`` the powers are never formed: ``v₀ = g``, ``vₙ = vₙ₋₁ − H(H vₙ₋₁)/V``
(two HVPs per term), and the direction is ``V^(−1/2) Σₙ₌₀^(N−1) cₙ vₙ``. The partial sums
``Sₙ = Σₖ≤ₙ cₖ vₖ`` converge geometrically, so Wynn's vector ε-algorithm (Shanks transform with
the Samelson inverse) extrapolates them to the limit (``wynn_epsilon``).

Equation numbers of the paper are not cited here: its text was not available when this module
was written, so each formula is named by what it is instead.

Everything here works on *vectors* that are lists of arrays shaped like the parameters; a list
is treated as one long vector (``_dot``, ``_axpy``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from tinycurv.backend import asnumpy, default_rng, quiet_float_errors, xp

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
# coefficients
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
    """Coefficients ``c₀ … c_{N−1}`` of ``1/(d + √(1 − y)) = Σₙ cₙ yⁿ`` by the paper's recurrence.

    Parameters
    ----------
    order : int
        N ≥ 1, the number of coefficients.
    damping_ratio : float
        ``d = λ/√V ≥ 0`` (damping over the square root of the scale).

    Returns
    -------
    list of float
        ``[c₀, …, c_{N−1}]``, all positive.

    Notes
    -----
    Multiplying ``f(y) = 1/(d + √(1 − y))`` by ``(d²− 1) + y`` gives ``d − √(1 − y)``; comparing
    coefficients of ``yⁿ`` with ``√(1 − y) = Σₙ (−1)ⁿ binom(1/2, n) yⁿ`` gives::

        c₀ = 1/(1 + d),   cₙ = (cₙ₋₁ + (−1)ⁿ binom(1/2, n)) / (1 − d²)   (n ≥ 1)

    which is the damped-series recurrence of the paper (and of its reference code). At
    ``d = 1`` it reads 0/0; there ``f(y) = (1 − √(1 − y))/y`` and ``cₙ = (−1)ⁿ binom(1/2, n+1)``.
    At ``d = 0``, ``cₙ = binom(2n, n)/4ⁿ`` (the coefficients of ``(1 − y)^(−1/2)``).

    Dividing by ``1 − d²`` every step amplifies rounding errors by ``1/|1 − d²|`` per term
    (catastrophically for ``d`` near 1), so the recurrence is run in exact rational
    arithmetic (``fractions.Fraction`` on the exact binary value of ``d``) and rounded once.
    """
    d = _check_coefficient_args(order, damping_ratio)
    if d == 1:
        return [float((-1) ** n * _binom_half(n + 1)) for n in range(order)]
    c = [1 / (1 + d)]  # c₀ = 1/(1 + d)
    for n in range(1, order):  # damped-series coefficient recurrence
        c.append((c[-1] + (-1) ** n * _binom_half(n)) / (1 - d * d))
    return [float(cn) for cn in c]


def series_coefficients_closed_form(order: int, damping_ratio: float = 0.0) -> list[float]:
    """The same coefficients by an independent closed form (the reference for tests).

    Parameters
    ----------
    order : int
        N ≥ 1, the number of coefficients.
    damping_ratio : float
        ``d = λ/√V ≥ 0``.

    Returns
    -------
    list of float
        ``[c₀, …, c_{N−1}]``.

    Notes
    -----
    Rationalise: ``f(y) = (d − √(1 − y)) / ((d² − 1) + y)``. With ``x = d² − 1 ≠ 0`` the
    denominator is a geometric series, ``1/(x + y) = Σₘ (−1)ᵐ yᵐ / x^(m+1)``, and the Cauchy
    product with the numerator ``d − Σₖ (−1)ᵏ binom(1/2, k) yᵏ`` collapses to::

        cₙ = (−1)ⁿ x^(−(n+1)) · (d − Σₖ₌₀ⁿ binom(1/2, k) xᵏ)

    (``d`` minus a partial sum of the binomial series of ``√(1 + x) = d``). At ``d = 1``
    (``x = 0``): ``cₙ = (−1)ⁿ binom(1/2, n+1)``. The bracket cancels to roughly ``|x|^(n+1)``
    when ``|x| < 1``, so this too is evaluated exactly in rationals and rounded once.
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
# Wynn's vector ε-algorithm
# --------------------------------------------------------------------------------------------
def wynn_epsilon(partial_sums: Sequence[Sequence[Any]], k: int) -> Vector:
    """Shanks transform of order k of a vector sequence by Wynn's ε-algorithm.

    Parameters
    ----------
    partial_sums : list of vectors
        The sequence ``S₀, S₁, …``; each vector is a list of arrays (read as one long vector).
        Only the last ``2k + 1`` are used.
    k : int
        Order of the transform, ``k ≥ 0``; ``k = 0`` returns (a copy of) the last vector.

    Returns
    -------
    vector
        ``ε_{2k}`` computed from the last ``2k + 1`` vectors, a list of arrays.

    Notes
    -----
    The ε-table (Wynn 1956; vector form with the Samelson inverse ``v⁻¹ = v/(vᵀv)``, Wynn
    1962), with ``m`` indexing the ``2k + 1`` vectors used::

        ε₋₁⁽ᵐ⁾ = 0,   ε₀⁽ᵐ⁾ = S_m,   ε_{s+1}⁽ᵐ⁾ = ε_{s−1}⁽ᵐ⁺¹⁾ + (ε_s⁽ᵐ⁺¹⁾ − ε_s⁽ᵐ⁾)⁻¹

    Each column is one shorter than the last; after ``2k`` columns one vector is left,
    ``ε_{2k}⁽⁰⁾``, which is exact for a sequence ``S_m = S + Σⱼ₌₁ᵏ aⱼ rⱼᵐ`` with scalar ``aⱼ``
    (a single direction) and is the accelerated limit in general. Odd columns are auxiliary.

    When a difference ``ε_s⁽ᵐ⁺¹⁾ − ε_s⁽ᵐ⁾`` vanishes to rounding (the sequence has stagnated,
    e.g. it converged exactly), its inverse is undefined and the last vector is returned.

    The reference code has an unused option, Sablonnière's modification (the inverse scaled by
    ``⌊s/2⌋ + 1``, meant for logarithmically converging sequences); it is not applied here.
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
# the series
# --------------------------------------------------------------------------------------------
def series_operator(
    hvp_fn: HVPFn,
    vectors: Sequence[Any],
    order: int,
    scale: float,
    damping: float = 0.0,
    acceleration: int = 0,
) -> Vector:
    """Approximate ``(|H| + λI)⁻¹ v`` by N terms of the series in ``Y = I − H²/V``.

    Parameters
    ----------
    hvp_fn : callable
        ``hvp_fn(vector) -> vector``: the product ``H v`` for a list of arrays.
    vectors : list of arrays
        ``v`` (typically the gradient), shaped like the parameters.
    order : int
        N ≥ 1, the number of series terms; ``2(N − 1)`` HVPs are made.
    scale : float
        ``V > 0``; convergence needs ``V ≥ λ_max(H)²/2``.
    damping : float
        ``λ ≥ 0``, added to the absolute eigenvalues.
    acceleration : int
        k ≥ 0: Wynn's ε-algorithm of order k over the last ``2k + 1`` partial sums
        (needs ``N ≥ 2k + 1``); 0 returns the plain partial sum.

    Returns
    -------
    list of arrays
        ``V^(−1/2) S_{N−1}`` (or its accelerated version), shaped like ``vectors``.

    Raises
    ------
    ValueError
        For ``N < 1``, ``V ≤ 0``, ``λ < 0``, ``k < 0`` or ``N < 2k + 1``, and when a term grows,
        ``‖vₙ‖ > (1 + tol)‖vₙ₋₁‖``: as ``Y`` is symmetric, a spectrum in ``[−1, 1]`` makes
        ``‖Y v‖ ≤ ‖v‖``, so growth proves that some ``λᵢ² > 2V``. (The check only sees what
        the vector contains: a component too small to show growth within N terms goes
        unnoticed.)

    Notes
    -----
    Per eigen-component ``i`` with ``yᵢ = 1 − λᵢ²/V`` the error after N terms is the tail
    ``V^(−1/2) Σₙ≥N cₙ yᵢⁿ``. The coefficients decay only polynomially (``cₙ ~ n^(−1/2)`` for
    ``d = 0``, ``cₙ ~ n^(−3/2)/(2√π d²)`` for ``d > 0``, from the branch point of
    ``1/(d + √(1 − y))`` at ``y = 1``), so the error behaves like ``N^(−α) ρ^N`` with
    ``ρ = maxᵢ |yᵢ|`` and ``α = 1/2`` or ``3/2``: geometric at rate ρ up to a power of N.
    The best ``V`` for a spectrum of ``|λ|`` in ``[a, b]`` is ``(a² + b²)/2`` (``ρ`` balanced at
    both ends); a zero eigenvalue (``yᵢ = 1``) converges only like ``N^(−α+1)`` — damping helps.
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
    c = series_coefficients(order, damping / math.sqrt(V))  # d = λ/√V
    v = [xp.asarray(a) for a in vectors]  # v₀ = g
    eps = max((float(xp.finfo(a.dtype).eps) for a in v), default=0.0)
    growth_tol = max(1e-6, 100 * eps)
    S = _scale(c[0], v)  # S₀ = c₀ v₀
    kept = [S]  # the last 2k + 1 partial sums
    norms = [_norm(v)]  # ‖vₙ‖ as backend scalars, read back once after the loop
    with quiet_float_errors():  # a diverging series may overflow: _check_contraction says so
        for n in range(1, order):
            H2v = hvp_fn(hvp_fn(v))  # two HVPs per term
            v = _axpy(-1.0 / V, H2v, v)  # vₙ = vₙ₋₁ − H²vₙ₋₁/V = Y vₙ₋₁
            norms.append(_norm(v))
            S = _axpy(c[n], v, S)  # Sₙ = Sₙ₋₁ + cₙ vₙ
            kept = (kept + [S])[-(2 * k + 1) :]
    _check_contraction(asnumpy(xp.stack(norms)).tolist(), growth_tol, V)
    limit = wynn_epsilon(kept, k) if k > 0 else S
    return _scale(1.0 / math.sqrt(V), limit)  # (|H| + λI)⁻¹ v ≈ V^(−1/2) Σ cₙ Yⁿ v


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
    """Series saddle-free Newton direction ``(|H| + λI)⁻¹ v`` for the loss ``closure()``.

    Parameters
    ----------
    closure : callable
        ``closure()`` returns the scalar loss as a ``Tensor`` computed from ``params``.
    params : list of Tensor
        The leaf tensors; ``H`` is the Hessian of the loss with respect to them.
    vectors : list of arrays
        ``v`` shaped like ``params`` (typically the gradient).
    order, scale, damping, acceleration
        As in ``series_operator`` (N, V, λ, k).

    Returns
    -------
    list of arrays
        The direction, shaped like ``params``. The update is ``θ ← θ − α·direction``.
    """
    from tinycurv.functional import hvp  # lazy: the engine imports nothing from here

    return series_operator(
        lambda vs: hvp(closure, params, vs), vectors, order, scale, damping, acceleration
    )


def power_iteration_scale(
    hvp_fn: HVPFn,
    vectors_like: Sequence[Any],
    iters: int = 20,
    rng: Any = None,
    safety: float = 1.0,
) -> float:
    """A scale ``V`` for the series: ``safety ·`` (power-iteration estimate of ``λ_max(H)²``).

    Parameters
    ----------
    hvp_fn : callable
        ``hvp_fn(vector) -> vector``, the product ``H v``.
    vectors_like : list of arrays
        Gives the shapes and dtypes of the vectors (e.g. the parameters' data).
    iters : int
        Number of power iterations (one HVP each).
    rng : generator, int or None
        A backend random generator or a seed for the random start vector.
    safety : float
        Factor > 0 applied to the estimate.

    Returns
    -------
    float
        ``V = safety · ‖H u‖²`` where ``u`` is the unit power-iteration vector.

    Notes
    -----
    Power iteration on ``H`` (``u ← Hu/‖Hu‖``) makes ``‖Hu‖² = uᵀH²u`` the Rayleigh quotient
    of ``H²``: it increases monotonically towards ``λ_max(H²) = max|λᵢ(H)|²`` and never exceeds
    it, whatever the signs of the eigenvalues. The series needs only ``V ≥ λ_max²/2``, so
    returning the estimate itself (``safety = 1``) leaves a factor-2 margin: convergence is
    guaranteed once the estimate has reached half of ``λ_max²``, which after ``iters``
    iterations fails only if the random start is nearly orthogonal to the top eigenvectors
    (``series_operator`` then detects the growth and raises). ``V ≈ λ_max²`` puts the spectrum
    of ``Y`` in ``[0, 1)``; a smaller V (down to ``λ_max²/2``) converges faster on the small
    eigenvalues but has no margin. The reference code's ``power_series`` rule is
    ``V = (λ̂ + tol)² + λ``. If ``H`` vanishes along the iteration, the smallest positive
    normal number of the dtype is returned (meaningful with damping only).
    """
    if int(iters) != iters or iters < 1:
        raise ValueError(f"power_iteration_scale: iters must be an integer ≥ 1, got {iters!r}")
    if not (math.isfinite(float(safety)) and safety > 0):
        raise ValueError(f"power_iteration_scale: safety must be > 0, got {safety!r}")
    if rng is None or isinstance(rng, int):
        rng = default_rng(rng)
    u = [rng.standard_normal(tuple(a.shape)).astype(a.dtype) for a in vectors_like]
    u = _scale(_reciprocal(_norm(u)), u)
    for _ in range(int(iters)):  # on the backend throughout: one sync, at the end
        w = hvp_fn(u)
        norm_w = _norm(w)  # ‖H u‖, so uᵀH²u = ‖H u‖² with ‖u‖ = 1
        u = _scale(_reciprocal(norm_w), w)  # H u = 0: u = 0 from here on, and the estimate 0
    estimate = float(asnumpy(norm_w)) ** 2
    tiny = min(float(xp.finfo(a.dtype).tiny) for a in vectors_like)
    return max(float(safety) * estimate, tiny)


# --------------------------------------------------------------------------------------------
# dense reference
# --------------------------------------------------------------------------------------------
def abs_hessian_inverse(H: Any, v: Any, damping: float = 0.0) -> Any:
    """Exact ``(|H| + λI)⁻¹ v`` by a dense eigendecomposition — the reference "exact SFN".

    For verification on small problems only (O(p³) time, O(p²) memory): it is what the series
    approximates. ``|H| = Q|Λ|Qᵀ`` from ``H = QΛQᵀ``.

    Parameters
    ----------
    H : array, shape (p, p)
        A symmetric matrix (symmetrised as ``(H + Hᵀ)/2``).
    v : array, shape (p,)
        The vector.
    damping : float
        ``λ ≥ 0``.

    Returns
    -------
    array, shape (p,)
        ``Q diag(1/(|Λ| + λ)) Qᵀ v``.

    Raises
    ------
    ValueError
        If ``|H| + λI`` is singular (a zero eigenvalue with ``λ = 0``) or ``λ < 0``.
    """
    if damping < 0:
        raise ValueError(f"abs_hessian_inverse: damping must be ≥ 0, got {damping!r}")
    H = xp.asarray(H)
    eigenvalues, Q = xp.linalg.eigh(0.5 * (H + H.T))
    shifted = xp.abs(eigenvalues) + damping
    if bool(xp.any(shifted == 0)):
        raise ValueError("abs_hessian_inverse: |H| + λI is singular (zero eigenvalue, λ = 0)")
    return Q @ ((Q.T @ xp.asarray(v)) / shifted)
