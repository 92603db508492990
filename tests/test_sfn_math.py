"""The math of series saddle-free Newton (tinycurv.curvature.sfn) on dense matrices.

Every test builds ``hvp_fn`` from a dense symmetric matrix with a known spectrum, so the exact
answer ``(|H| + λI)⁻¹ v`` is available from ``abs_hessian_inverse`` (and from the spectrum).

The matrices, vectors and random draws are made on the host (NumPy), moved to the backend with
``tinycurv.backend.asarray`` before they meet the library, and the results are brought back with
``tinycurv.asnumpy`` for the comparisons: the same values and checks on every backend.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from tinycurv import asnumpy
from tinycurv.backend import asarray, xp
from tinycurv.curvature.sfn import (
    abs_hessian_inverse,
    power_iteration_scale,
    saddle_free_direction,
    series_coefficients,
    series_coefficients_closed_form,
    series_operator,
    wynn_epsilon,
)

V = 4.0
# y = 1 − λ²/V for each eigenvalue; ρ = max|y| = 0.8 belongs to the first one (λ = −√0.8),
# the next largest |y| is 0.5, so the first component dominates the error after ~15 terms.
Y_SPECTRUM = np.array([0.8, 0.5, 0.2, -0.3, -0.5, 0.0])
SIGNS = np.array([-1.0, 1.0, -1.0, 1.0, -1.0, 1.0])  # indefinite: both signs
RHO = 0.8


def _orthogonal(p: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, p)))
    return q


def _matrix(eigenvalues: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    Q = _orthogonal(len(eigenvalues), seed)
    return Q @ np.diag(eigenvalues) @ Q.T, Q


def _dense_hvp(H: np.ndarray):
    """``hvp_fn`` of the dense (host) matrix H, on backend vectors."""
    H_backend = asarray(H)
    return lambda vs: [H_backend @ vs[0]]


def _series(H: np.ndarray, vectors, *args, **kwargs) -> list[np.ndarray]:
    """``series_operator`` with ``_dense_hvp(H)`` on host vectors, moved to the backend and back."""
    out = series_operator(_dense_hvp(H), [asarray(v) for v in vectors], *args, **kwargs)
    return [asnumpy(o) for o in out]


def _exact(H: np.ndarray, v: np.ndarray, damping: float = 0.0) -> np.ndarray:
    """``abs_hessian_inverse`` of host H and v, on the backend; the result on the host."""
    return asnumpy(abs_hessian_inverse(asarray(H), asarray(v), damping))


def _backend_sums(sums) -> list[list]:
    """A sequence of vectors (lists of host arrays) as backend arrays, for ``wynn_epsilon``."""
    return [[asarray(a) for a in s] for s in sums]


class _HostSeededRNG:
    """A backend "generator" whose draws are NumPy's ``default_rng(seed)`` moved to the backend.

    ``power_iteration_scale`` takes a backend generator; backends draw different streams for the
    same seed (CuPy's differs from NumPy's), and the checks on the power-iteration path depend on
    the start vector, so it is drawn on the host: the same start on every backend.
    """

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def standard_normal(self, size=None, dtype=np.float64):
        return asarray(self._rng.standard_normal(size, dtype=dtype))


@pytest.fixture
def indefinite():
    eigenvalues = SIGNS * np.sqrt(V * (1.0 - Y_SPECTRUM))
    H, Q = _matrix(eigenvalues, seed=0)
    g = np.random.default_rng(1).standard_normal(len(eigenvalues))
    return H, Q, g


# --------------------------------------------------------------------------------------------
# coefficients
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [0.0, 0.05, 0.5, 0.9, 0.999, 1.0, 1.001, 1.3, 2.0, 10.0])
def test_recurrence_equals_closed_form(d):
    rec = series_coefficients(40, d)
    closed = series_coefficients_closed_form(40, d)
    assert len(rec) == len(closed) == 40
    np.testing.assert_allclose(rec, closed, rtol=1e-14, atol=0)
    assert all(c > 0 for c in rec)


def test_undamped_coefficients_are_central_binomials():
    expected = [math.comb(2 * n, n) / 4**n for n in range(60)]
    np.testing.assert_allclose(series_coefficients(60, 0.0), expected, rtol=1e-15)
    np.testing.assert_allclose(series_coefficients_closed_form(60, 0.0), expected, rtol=1e-15)


def _reciprocal_series(order: int, d: float) -> list[float]:
    """A third derivation, in floats: 1/(1 + d + Σₖ≥₁ sₖ yᵏ) by power-series division,
    sₖ = (−1)ᵏ binom(1/2, k) < 0, so every term of the convolution is positive (stable)."""
    s = [1.0]
    for k in range(1, order):
        s.append(s[-1] * (0.5 - (k - 1)) / k * -1.0)
    c = [1.0 / (1.0 + d)]
    for n in range(1, order):
        c.append(-sum(s[j] * c[n - j] for j in range(1, n + 1)) / (1.0 + d))
    return c


@pytest.mark.parametrize("d", [0.0, 0.3, 0.95, 1.0, 1.7])
def test_coefficients_match_power_series_division(d):
    np.testing.assert_allclose(series_coefficients(50, d), _reciprocal_series(50, d), rtol=1e-12)


@pytest.mark.parametrize("d", [0.0, 0.25, 1.0, 3.0])
def test_coefficients_sum_to_generating_function(d):
    y = 0.5
    c = series_coefficients(120, d)
    assert sum(cn * y**n for n, cn in enumerate(c)) == pytest.approx(
        1.0 / (d + math.sqrt(1.0 - y)), rel=1e-14
    )


def test_coefficients_continuous_through_d_equal_one():
    at_one = series_coefficients(30, 1.0)
    for d in (1.0 - 1e-9, 1.0 + 1e-9):
        np.testing.assert_allclose(series_coefficients(30, d), at_one, rtol=1e-7)
    assert at_one[:3] == [0.5, 0.125, 0.0625]  # 1/(1 + √(1−y)) = 1/2 + y/8 + y²/16 + …


def test_recurrence_first_terms_by_hand():
    d = 0.5
    c = series_coefficients(3, d)
    c0 = Fraction(2, 3)
    c1 = (c0 - Fraction(1, 2)) / Fraction(3, 4)  # (−1)¹ binom(1/2, 1) = −1/2
    c2 = (c1 - Fraction(1, 8)) / Fraction(3, 4)  # (+1) binom(1/2, 2) = −1/8
    assert c == [float(c0), float(c1), float(c2)]


@pytest.mark.parametrize("bad", [dict(order=0, damping_ratio=0.0), dict(order=3, damping_ratio=-1)])
def test_coefficients_reject_bad_arguments(bad):
    with pytest.raises(ValueError):
        series_coefficients(**bad)
    with pytest.raises(ValueError):
        series_coefficients_closed_form(**bad)


# --------------------------------------------------------------------------------------------
# Wynn's ε-algorithm
# --------------------------------------------------------------------------------------------
def test_wynn_k0_returns_last_partial_sum():
    sums = _backend_sums([[np.full(3, float(i))] for i in range(4)])
    out = wynn_epsilon(sums, 0)
    np.testing.assert_array_equal(asnumpy(out[0]), asnumpy(sums[-1][0]))
    assert out[0] is not sums[-1][0]


def test_wynn_is_exact_on_one_geometric_mode_split_over_arrays():
    rng = np.random.default_rng(2)
    limit = [rng.standard_normal(3), rng.standard_normal((2, 2))]
    a = [rng.standard_normal(3), rng.standard_normal((2, 2))]
    r = -0.7
    sums = [[li + r**m * ai for li, ai in zip(limit, a, strict=True)] for m in range(6)]
    out = wynn_epsilon(_backend_sums(sums), 1)
    for o, li in zip(out, limit, strict=True):
        np.testing.assert_allclose(asnumpy(o), li, rtol=0, atol=1e-12)
    # the last sums alone are far from the limit
    assert np.abs(sums[-1][0] - limit[0]).max() > 0.01


def test_wynn_on_scalars_is_shanks():
    seq = [sum((-1) ** j / (j + 1) for j in range(m + 1)) for m in range(7)]  # → log 2
    sums = _backend_sums([[np.array([s])] for s in seq])
    s0, s1, s2 = seq[-3:]
    shanks = (s2 * s0 - s1 * s1) / (s2 + s0 - 2 * s1)
    assert float(wynn_epsilon(sums, 1)[0][0]) == pytest.approx(shanks, rel=1e-13)
    # order 2 (Shanks applied twice, 5 sums) is closer to log 2 than order 1
    e1 = abs(float(wynn_epsilon(sums, 1)[0][0]) - math.log(2))
    e2 = abs(float(wynn_epsilon(sums, 2)[0][0]) - math.log(2))
    assert e2 < e1 < abs(seq[-1] - math.log(2))


def test_wynn_uses_only_the_last_2k_plus_1_sums():
    rng = np.random.default_rng(3)
    sums = _backend_sums([[rng.standard_normal(4)] for _ in range(7)])
    a = wynn_epsilon(sums, 1)
    junk = _backend_sums([[rng.standard_normal(4)] for _ in range(3)])
    b = wynn_epsilon(junk + sums[-3:], 1)
    np.testing.assert_array_equal(asnumpy(a[0]), asnumpy(b[0]))


def test_wynn_stagnated_sequence_returns_last():
    sums = _backend_sums([[np.ones(3)], [np.ones(3)], [np.ones(3)]])
    np.testing.assert_array_equal(asnumpy(wynn_epsilon(sums, 1)[0]), np.ones(3))


def test_wynn_rejects_too_few_sums():
    with pytest.raises(ValueError, match="2k"):
        wynn_epsilon(_backend_sums([[np.ones(2)]] * 4), 2)


# --------------------------------------------------------------------------------------------
# the series on an indefinite quadratic
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_series_converges_to_exact_sfn(indefinite, damping):
    H, _, g = indefinite
    exact = _exact(H, g, damping)
    errors = [
        np.linalg.norm(_series(H, [g], N, V, damping)[0] - exact) for N in (5, 10, 20, 40, 80)
    ]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False))
    assert errors[-1] < 1e-7 * np.linalg.norm(exact)


@pytest.mark.parametrize("damping", [0.0, 0.3, 2.0])
def test_error_decreases_at_the_predicted_geometric_rate(indefinite, damping):
    """Per eigen-component the error is V^(−1/2)|qᵢᵀg| |Σₙ≥N cₙ yᵢⁿ|. The coefficients cₙ decay
    only like a power of n (n^(−1/2) undamped, n^(−3/2) damped), so the error is ρ^N up to a
    slowly varying factor ≈ c_N: dividing it out, the rate over N ∈ [20, 40] is ρ to 0.005;
    dividing out the exact tail sum of the dominant component, it is ρ to 1e-6."""
    H, Q, g = indefinite
    exact = _exact(H, g, damping)
    N1, N2 = 20, 40
    e1, e2 = (np.linalg.norm(_series(H, [g], N, V, damping)[0] - exact) for N in (N1, N2))
    c = series_coefficients(400, damping / math.sqrt(V))
    raw_rate = (e2 / e1) ** (1 / (N2 - N1))
    coefficient_corrected = (e2 / e1 * c[N1] / c[N2]) ** (1 / (N2 - N1))

    def tail(N: int) -> float:  # Σₙ≥N cₙ ρ^(n−N): the non-geometric factor of the error
        return sum(c[n] * RHO ** (n - N) for n in range(N, len(c)))

    tail_corrected = (e2 / e1 * tail(N1) / tail(N2)) ** (1 / (N2 - N1))
    assert raw_rate < RHO  # the power-law factor makes the raw rate look faster …
    assert abs(coefficient_corrected - RHO) < 0.005  # … and accounts for it
    assert abs(tail_corrected - RHO) < 1e-6
    # the error is the dominant eigen-component (largest |1 − λᵢ²/V|)
    err = _series(H, [g], 30, V, damping)[0] - exact
    cosine = abs(Q[:, 0] @ err) / np.linalg.norm(err)
    assert cosine > 0.9999


@pytest.mark.parametrize("damping", [0.0, 0.3])
@pytest.mark.parametrize("order", [10, 20, 30])
def test_acceleration_reduces_error_at_fixed_order(indefinite, damping, order):
    """Shanks/ε of order k removes k geometric modes: a clear gain once one mode (ρ = 0.8)
    dominates the error (≥ 30× here from N = 20); at N = 10 the ±0.5 modes still matter and
    the gain is smaller (at N = 5, not shown, order 1 is even slightly worse than nothing)."""
    H, _, g = indefinite
    exact = _exact(H, g, damping)
    plain = np.linalg.norm(_series(H, [g], order, V, damping)[0] - exact)
    required = 0.8 if order < 20 else 0.1
    for k in (1, 2):
        accelerated = _series(H, [g], order, V, damping, acceleration=k)
        assert np.linalg.norm(accelerated[0] - exact) < required * plain


def test_series_on_split_parameters_equals_single_array(indefinite):
    H, _, g = indefinite

    H_backend = asarray(H)

    def split_hvp(vs):
        out = H_backend @ xp.concatenate([vs[0].ravel(), vs[1]])
        return [out[:4].reshape(2, 2), out[4:]]

    whole = _series(H, [g], 15, V, 0.1, acceleration=1)[0]
    split = [asarray(g[:4].reshape(2, 2)), asarray(g[4:])]
    parts = [asnumpy(a) for a in series_operator(split_hvp, split, 15, V, 0.1, acceleration=1)]
    assert parts[0].shape == (2, 2)
    np.testing.assert_allclose(np.concatenate([parts[0].ravel(), parts[1]]), whole, rtol=1e-12)


def test_order_one_is_first_term(indefinite):
    H, _, g = indefinite
    out = _series(H, [g], 1, V, damping=0.6)[0]
    d = 0.6 / math.sqrt(V)
    np.testing.assert_allclose(out, g / (math.sqrt(V) * (1 + d)), rtol=1e-15)


def test_positive_definite_gives_damped_newton():
    eigenvalues = np.array([1.0, 1.3, 1.8, 2.2, 2.5])
    H, _ = _matrix(eigenvalues, seed=4)
    g = np.random.default_rng(5).standard_normal(5)
    damping = 0.1
    scale = (eigenvalues.min() ** 2 + eigenvalues.max() ** 2) / 2  # ρ = 0.724, balanced
    direction = _series(H, [g], 60, scale, damping)[0]
    newton = np.linalg.solve(H + damping * np.eye(5), g)
    np.testing.assert_allclose(direction, newton, rtol=1e-7)
    np.testing.assert_allclose(_exact(H, g, damping), newton, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def test_scale_too_small_raises(indefinite):
    H, _, g = indefinite
    lam_max2 = np.max(np.linalg.eigvalsh(H) ** 2)
    with pytest.raises(ValueError, match="scale V too small"):
        _series(H, [g], 20, lam_max2 / 4)
    # just above the bound λ_max²/2 is accepted
    _series(H, [g], 20, lam_max2 / 2 * (1 + 1e-9))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(order=0, scale=V),
        dict(order=3, scale=0.0),
        dict(order=3, scale=-1.0),
        dict(order=3, scale=float("nan")),
        dict(order=3, scale=V, damping=-0.1),
        dict(order=2, scale=V, acceleration=1),  # k = 1 needs N ≥ 3
        dict(order=3, scale=V, acceleration=-1),
    ],
)
def test_bad_arguments_raise(indefinite, kwargs):
    H, _, g = indefinite
    with pytest.raises(ValueError):
        _series(H, [g], **kwargs)


def test_abs_hessian_inverse_matches_spectrum():
    eigenvalues = np.array([-3.0, -0.5, 0.25, 2.0])
    H, Q = _matrix(eigenvalues, seed=6)
    v = np.random.default_rng(7).standard_normal(4)
    out = _exact(H, v, damping=0.2)
    np.testing.assert_allclose(out, Q @ ((Q.T @ v) / (np.abs(eigenvalues) + 0.2)), rtol=1e-12)
    with pytest.raises(ValueError, match="singular"):
        abs_hessian_inverse(asarray(np.diag([1.0, 0.0])), asarray(np.ones(2)))


# --------------------------------------------------------------------------------------------
# the scale
# --------------------------------------------------------------------------------------------
def test_power_iteration_scale_on_known_spectrum():
    eigenvalues = np.array([-3.0, 1.8, 1.0, -1.2, 1.5, -1.6])  # λ_max² = 9, from a negative one
    H, _ = _matrix(eigenvalues, seed=8)
    hvp_fn, like = _dense_hvp(H), [asarray(np.zeros(6))]
    # the start vector of NumPy's default_rng(0) on every backend (the path below depends on it)
    estimate = power_iteration_scale(hvp_fn, like, iters=20, rng=_HostSeededRNG(0))
    assert estimate <= 9.0 * (1 + 1e-12)  # a Rayleigh quotient of H²: never above λ_max²
    assert estimate == pytest.approx(9.0, rel=1e-5)  # (1.8/3)^40 ≈ 1e-9
    doubled = power_iteration_scale(hvp_fn, like, iters=20, rng=_HostSeededRNG(0), safety=2.0)
    assert doubled == pytest.approx(2 * estimate, rel=1e-12)
    # the estimate rises monotonically with the iterations, from below (this start vector
    # is nearly orthogonal to the top eigenvector: 3 iterations give only 2.7 of 9)
    path = [
        power_iteration_scale(hvp_fn, like, iters=i, rng=_HostSeededRNG(0)) for i in range(1, 9)
    ]
    assert all(a <= b for a, b in zip(path, path[1:], strict=False)) and path[-1] <= 9.0
    rough = path[5]  # 6 iterations: past λ_max²/2 = 4.5, so the series converges
    assert 4.5 <= rough < 9.0 * 0.9
    g = np.ones(6)
    out = _series(H, [g], 200, rough, damping=0.1, acceleration=1)[0]
    np.testing.assert_allclose(out, _exact(H, g, 0.1), rtol=1e-6)


def test_power_iteration_scale_on_split_vectors_and_zero_hessian():
    def split_hvp(vs):
        return [-2.0 * vs[0], 0.5 * vs[1]]

    shapes = [asarray(np.zeros((2, 3))), asarray(np.zeros(4))]
    assert power_iteration_scale(split_hvp, shapes, rng=1) == pytest.approx(4.0, rel=1e-10)
    tiny = power_iteration_scale(lambda vs: [0.0 * vs[0]], [asarray(np.zeros(3))], rng=1)
    assert 0 < tiny < 1e-300


# --------------------------------------------------------------------------------------------
# the public wrapper, through the engine's HVP
# --------------------------------------------------------------------------------------------
def test_saddle_free_direction_on_quadratic_closure(indefinite):
    # TODO(engine): runs once tinycurv.functional (hvp by forward-over-reverse) is available
    pytest.importorskip("tinycurv.functional")
    from tinycurv import Tensor

    H, _, g = indefinite
    theta = Tensor(asarray(np.random.default_rng(9).standard_normal(len(g))), requires_grad=True)
    H_tensor = Tensor(asarray(H))

    def closure():
        return (theta @ H_tensor @ theta) * 0.5  # Hessian: H

    direction = saddle_free_direction(
        closure, [theta], [asarray(g)], 40, V, damping=0.3, acceleration=1
    )
    assert len(direction) == 1 and direction[0].shape == g.shape
    direction = [asnumpy(d) for d in direction]
    dense = _series(H, [g], 40, V, 0.3, acceleration=1)[0]
    np.testing.assert_allclose(direction[0], dense, rtol=1e-10)
    np.testing.assert_allclose(direction[0], _exact(H, g, 0.3), rtol=1e-5)


# --------------------------------------------------------------------------------------------
# (6)–(8): the step model, as pure host functions
# --------------------------------------------------------------------------------------------
def test_subspace_minimiser_is_the_saddle_free_model_on_the_span():
    from tinycurv.curvature.sfn import subspace_minimiser

    rng = np.random.default_rng(11)
    for trial in range(20):
        p = 6
        H = rng.standard_normal((p, p))
        H = H + H.T  # indefinite
        D, g = rng.standard_normal((p, 2)), rng.standard_normal(p)
        lam = [0.0, 0.3, 2.0][trial % 3]
        c, change = subspace_minimiser((D.T @ H @ D).tolist(), (D.T @ D).tolist(),
                                       (D.T @ g).tolist(), lam)  # fmt: skip
        Q, R = np.linalg.qr(D)
        nu, W = np.linalg.eigh(Q.T @ H @ Q)
        z = W @ ((W.T @ (Q.T @ g)) / (np.abs(nu) + lam))  # (|M| + λI)⁻¹ β in the basis Q
        np.testing.assert_allclose(c, np.linalg.solve(R, z), rtol=1e-9, atol=1e-12)
        assert change == pytest.approx(-0.5 * (Q.T @ g) @ z, rel=1e-10)
        delta = D @ np.array(c)
        C = Q @ W @ np.diag(np.abs(nu) + lam) @ W.T @ Q.T  # the model's curvature on the span
        assert change == pytest.approx(-g @ delta + 0.5 * delta @ C @ delta, rel=1e-9)


def test_reference_coefficients_are_one_and_zero():
    from tinycurv.curvature.sfn import reference_coefficients

    rng = np.random.default_rng(12)
    for _ in range(50):
        g_u, g_d, d_b, alpha_prev = rng.standard_normal(4) * [3, 1, 2, 1]
        assert reference_coefficients(g_u, g_d, d_b, alpha_prev) in ((1.0, 0.0), (1.0, -0.0))
    assert reference_coefficients(2.0, 0.0, 0.0, 0.0) == (1.0, 0.0)  # first step: C δ term → 1
    alpha, mu = reference_coefficients(1.0, 1.0, 1.0, 1.0)  # singular: det = 1·1 − 1
    assert math.isnan(alpha) and math.isnan(mu)


def test_model_change_and_the_reference_model():
    from tinycurv.curvature.sfn import model_change, reference_model_change

    rng = np.random.default_rng(13)
    C = rng.standard_normal((5, 5))
    C = C @ C.T
    u, d, g = rng.standard_normal((3, 5))
    alpha, mu = 0.7, -0.3
    delta = alpha * u + mu * d
    want = -g @ delta + 0.5 * delta @ C @ delta
    got = model_change(alpha, mu, u @ C @ u, u @ C @ d, d @ C @ d, g @ u, g @ d)
    assert got == pytest.approx(want, rel=1e-12)
    assert reference_model_change(1.0, 0.0, 2.5, 0.4, 0.9) == pytest.approx(-1.25, rel=1e-15)


@pytest.mark.parametrize(("rho", "want"), [(0.9, 0.9), (0.1, 1 / 0.9), (0.5, 1.0),
                                           (float("nan"), 1.0), (-3.0, 1 / 0.9)])  # fmt: skip
def test_levenberg_marquardt_rule(rho, want):
    from tinycurv.curvature.sfn import levenberg_marquardt, reduction_ratio

    assert levenberg_marquardt(1.0, rho, 0.9) == pytest.approx(want, rel=1e-15)
    assert levenberg_marquardt(1e-9, 0.9, 0.9, min_damping=1e-8) == 1e-8
    assert reduction_ratio(0.5, 1.0, -1.0) == 0.5 and math.isnan(reduction_ratio(0.5, 1.0, 0.0))


def test_power_iteration_is_a_lower_bound_from_any_start():
    from tinycurv.curvature.sfn import power_iteration, random_start

    eigenvalues = np.array([-4.0, 3.9, 1.0, -0.2])
    H, _ = _matrix(eigenvalues, seed=4)
    for seed in range(5):
        start = [asarray(asnumpy(random_start([xp.zeros(4)], seed)[0]))]
        for iters in (1, 3, 10):
            estimate, w = power_iteration(_dense_hvp(H), start, iters)
            assert float(asnumpy(estimate)) <= 16.0 * (1 + 1e-12)
            assert float(np.linalg.norm(asnumpy(w[0]))) == pytest.approx(1.0, rel=1e-12)
