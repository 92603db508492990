"""The math of ISAAC (tinycurv.curvature.isaac) on small dense float64 problems.

Every reference below is computed densely and independently of the module (``np.linalg.solve``,
``np.kron``), with the contract's conventions: g (b, m) batch-loss gradients w.r.t. the
pre-activations, a (b, n) inputs, g_bar (r·b, m) with G = g_barᵀ g_bar / b, A = aᵀa / b,
weight gradient gᵀa (m, n), Kronecker products acting on the row-major flattening of W.

Sizes m = 11 outputs, n = 6 inputs, b ∈ {3, 8} (b < n and b > n), r ∈ {1, m} cover all four
branches of ``zeta``: b×b or n×n on the input side, (r·b)×(r·b) or m×m on the output side.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import backend
from tinycurv.curvature import isaac, linalg

M, N = 11, 6
BATCHES = (3, 8)  # b < n and b > n
RANKS = (1, M)  # one sampled gradient per sample, or the exact Hessian square root
GRID = (1e-6, 1e-3, 1.0, 1e3, 1e6)
INF = math.inf


# --------------------------------------------------------------------------------------------
# the functions under test, called on the backend: host inputs in, host results out
# --------------------------------------------------------------------------------------------
# Every reference below is NumPy on the host. The wrappers move each host input to the current
# backend (keeping its dtype), run the library there, check that the result is a backend array
# and bring it back, so the same comparisons run unchanged on NumPy and on CuPy.
def _dev(x: np.ndarray | None) -> Any:
    """A backend copy of the host array ``x`` with its dtype (None passes through)."""
    return None if x is None else backend.asarray(x, dtype=x.dtype)


def _host(out: Any) -> np.ndarray:
    """The backend result ``out`` as a host array (it must be a backend array)."""
    assert isinstance(out, backend.get_backend().ndarray), type(out)
    return tc.asnumpy(out)


def zeta(g, a, g_bar, lam_g, lam_a):
    return _host(isaac.zeta(_dev(g), _dev(a), _dev(g_bar), lam_g, lam_a))


def zeta_kron(g, a, g_bar, lam_g, lam_a):
    return _host(isaac.zeta_kron(_dev(g), _dev(a), _dev(g_bar), lam_g, lam_a))


def zeta_star(g, a, lam_a):
    return _host(isaac.zeta_star(_dev(g), _dev(a), lam_a))


def cho_solve(K, B, name="K"):
    return _host(linalg.cho_solve(_dev(K), _dev(B), name=name))


def cho_factor(K, name="K"):
    return _host(linalg.cho_factor(_dev(K), name=name))


def cho_apply(L, B):
    return _host(linalg.cho_apply(_dev(L), _dev(B)))


def _backend_grad(g: np.ndarray, a: np.ndarray) -> np.ndarray:
    """gᵀa computed on the backend, for the bitwise checks (another BLAS may round otherwise)."""
    return tc.asnumpy(_dev(g).T @ _dev(a))


# --------------------------------------------------------------------------------------------
# data and dense references
# --------------------------------------------------------------------------------------------
def _with_singular_values(rng: np.random.Generator, rows: int, cols: int, lo: float, hi: float):
    """A (rows, cols) matrix with singular values spread evenly over [lo, hi]."""
    U, _ = np.linalg.qr(rng.standard_normal((rows, rows)))
    V, _ = np.linalg.qr(rng.standard_normal((cols, cols)))
    k = min(rows, cols)
    return (U[:, :k] * np.linspace(lo, hi, k)) @ V[:, :k].T


def _problem(b: int, r: int, seed: int, spread: tuple[float, float] = (0.05, 0.1)):
    """g (b, m), a (b, n), g_bar (r·b, m); the nonzero eigenvalues of A and G lie in ``spread``.

    The spread is kept small (‖A‖, ‖G‖ ≤ 0.1) so that the Kronecker form keeps ~1e-11
    relative accuracy at λ = 1e-6 even where a factor is singular (see zeta_kron's Notes).
    """
    rng = np.random.default_rng(seed)
    lo, hi = math.sqrt(spread[0]), math.sqrt(spread[1])
    a = math.sqrt(b) * _with_singular_values(rng, b, N, lo, hi)
    g_bar = math.sqrt(b) * _with_singular_values(rng, r * b, M, lo, hi)
    g = rng.standard_normal((b, M)) / b  # gradients of a mean-reduced batch loss
    return g, a, g_bar


def _factors(g_bar: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = a.shape[0]
    return g_bar.T @ g_bar / b, a.T @ a / b


def _dense_zeta(g, a, g_bar, lam_g, lam_a):
    """λ_g λ_a (G + λ_g I)⁻¹ gᵀa (A + λ_a I)⁻¹ by two LU solves (finite λ only)."""
    G, A = _factors(g_bar, a)
    left = np.linalg.solve(G + lam_g * np.eye(M), g.T @ a)
    return lam_g * lam_a * np.linalg.solve(A + lam_a * np.eye(N), left.T).T


def _paper_eq20(g, a, g_bar, lam_g, lam_a):
    """Eq. 20 exactly as printed: both brackets in their 'identity minus' form."""
    b = a.shape[0]
    rb = g_bar.shape[0]
    K_g = np.eye(rb) + g_bar @ g_bar.T / (b * lam_g)
    left = np.eye(M) - g_bar.T @ np.linalg.solve(K_g, g_bar) / (b * lam_g)
    K_a = np.eye(b) + a @ a.T / (b * lam_a)
    right = np.eye(b) - a @ a.T @ np.linalg.solve(K_a, np.eye(b)) / (b * lam_a)
    return left @ g.T @ right @ a


def _rel(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


CASES = [(b, r) for b in BATCHES for r in RANKS]


# --------------------------------------------------------------------------------------------
# eq. 17: the Kronecker form
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("b", "r"), CASES)
def test_eq17_is_the_kronecker_product_on_row_major_weights(b, r):
    g, a, g_bar = _problem(b, r, seed=1, spread=(0.5, 2.0))
    G, A = _factors(g_bar, a)
    lam_g, lam_a = 0.3, 0.7
    P = np.kron(G + lam_g * np.eye(M), A + lam_a * np.eye(N))  # (mn, mn), row-major vec(W)
    vec = lam_g * lam_a * np.linalg.solve(P, (g.T @ a).reshape(-1))
    expected = vec.reshape(M, N)
    assert _rel(zeta_kron(g, a, g_bar, lam_g, lam_a), expected) < 1e-12
    assert _rel(zeta(g, a, g_bar, lam_g, lam_a), expected) < 1e-12


# --------------------------------------------------------------------------------------------
# Theorem 1: eq. 17 == eq. 20, and the two limits
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("b", "r"), CASES)
def test_theorem1_eq17_equals_eq20_on_the_grid(b, r):
    g, a, g_bar = _problem(b, r, seed=2)
    worst = 0.0
    for lam_g in GRID:
        for lam_a in GRID:
            z17 = zeta_kron(g, a, g_bar, lam_g, lam_a)
            z20 = zeta(g, a, g_bar, lam_g, lam_a)
            worst = max(worst, _rel(z20, z17))
    assert worst <= 1e-10, worst


@pytest.mark.parametrize(("b", "r"), CASES)
def test_woodbury_form_matches_dense_reference(b, r):
    g, a, g_bar = _problem(b, r, seed=3, spread=(0.5, 2.0))
    for lam_g in (1e-2, 1.0, 1e2):
        for lam_a in (1e-2, 1.0, 1e2):
            expected = _dense_zeta(g, a, g_bar, lam_g, lam_a)
            assert _rel(zeta(g, a, g_bar, lam_g, lam_a), expected) < 1e-9


@pytest.mark.parametrize(("b", "r"), CASES)
def test_eq20_as_printed_equals_the_simplified_right_bracket(b, r):
    # zeta uses (I_b + aaᵀ/(bλ))⁻¹ for the paper's I_b − aaᵀ(I_b + aaᵀ/(bλ))⁻¹/(bλ).
    g, a, g_bar = _problem(b, r, seed=4, spread=(0.5, 2.0))
    for lam_g in (1e-2, 1.0, 1e2):
        for lam_a in (1e-2, 1.0, 1e2):
            printed = _paper_eq20(g, a, g_bar, lam_g, lam_a)
            assert _rel(zeta(g, a, g_bar, lam_g, lam_a), printed) < 1e-9


def test_woodbury_stays_accurate_where_the_kronecker_form_cannot():
    # b < n: A is singular, I + A/λ_a has condition ~‖A‖/λ_a. With ‖A‖ ~ 1 and λ = 1e-8 the
    # Kronecker form loses ~1e-8; the b×b form has no such loss. Reference: 50-digit mpmath.
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    g, a, g_bar = _problem(3, 1, seed=5, spread=(0.5, 2.0))
    lam_g, lam_a = 1.0, 1e-8
    G = mpmath.matrix(g_bar.T.tolist()) * mpmath.matrix(g_bar.tolist()) / 3
    A = mpmath.matrix(a.T.tolist()) * mpmath.matrix(a.tolist()) / 3
    grad = mpmath.matrix(g.T.tolist()) * mpmath.matrix(a.tolist())
    exact = lam_g * lam_a * mpmath.inverse(G + lam_g * mpmath.eye(M)) * grad
    exact = exact * mpmath.inverse(A + lam_a * mpmath.eye(N))
    exact = np.array(exact.tolist(), dtype=float)
    assert _rel(zeta(g, a, g_bar, lam_g, lam_a), exact) < 1e-13


@pytest.mark.parametrize("fn", [zeta, zeta_kron])
@pytest.mark.parametrize(("b", "r"), [(8, M), (6, 2)])  # (6, 2): b = n, r·b = 12 ≥ m: Woodbury
def test_theorem1_i_small_damping_gives_kfac_gauss_newton(fn, b, r):
    # Full-rank factors need b ≥ n and r·b ≥ m; then ζ/(λ_gλ_a) → G⁻¹ gᵀa A⁻¹ (linearly in λ).
    g, a, g_bar = _problem(b, r, seed=6, spread=(0.5, 2.0))
    G, A = _factors(g_bar, a)
    assert np.linalg.matrix_rank(G) == M and np.linalg.matrix_rank(A) == N
    kfac = np.linalg.solve(G, np.linalg.solve(A, (g.T @ a).T).T)
    bound = np.linalg.norm(np.linalg.inv(G), 2) + np.linalg.norm(np.linalg.inv(A), 2)
    errors = []
    for lam in (1e-2, 1e-4, 1e-6):
        err = _rel(fn(g, a, g_bar, lam, lam) / (lam * lam), kfac)
        assert err <= 1.1 * lam * bound + 1e-8, (lam, err)
        errors.append(err)
    assert errors[-1] < 1e-5
    assert errors[0] > 10 * errors[1]  # it does converge, at rate ~λ


@pytest.mark.parametrize("fn", [zeta, zeta_kron])
@pytest.mark.parametrize(("b", "r"), CASES)
def test_theorem1_ii_large_damping_gives_the_gradient(fn, b, r):
    g, a, g_bar = _problem(b, r, seed=7, spread=(0.5, 2.0))
    G, A = _factors(g_bar, a)
    grad = g.T @ a
    for lam in (1e2, 1e5, 1e8):
        # ‖λ(M + λI)⁻¹ − I‖ ≤ ‖M‖/λ on each side
        bound = (np.linalg.norm(G, 2) + np.linalg.norm(A, 2)) / lam
        assert _rel(fn(g, a, g_bar, lam, lam), grad) <= bound * (1 + 1e-6) + 1e-14
    assert np.array_equal(fn(g, a, g_bar, INF, INF), _backend_grad(g, a))


# --------------------------------------------------------------------------------------------
# Theorem 2: ζ is an ascent direction for every damping
# --------------------------------------------------------------------------------------------
def _check_inner_product_bounds(g, a, g_bar, lam_g, lam_a):
    G, A = _factors(g_bar, a)
    grad = g.T @ a
    z = zeta(g, a, g_bar, lam_g, lam_a)
    inner = float(np.sum(z * grad))
    sq = float(np.sum(grad * grad))
    # eigenvalues of the preconditioner λ_gλ_a (G + λ_g)⁻¹ ⊗ (A + λ_a)⁻¹ lie in (lower, 1]
    lower = lam_g / (np.linalg.norm(G, 2) + lam_g) * lam_a / (np.linalg.norm(A, 2) + lam_a)
    assert inner >= lower * sq * (1 - 1e-9) > 0
    assert inner <= sq * (1 + 1e-12)


@pytest.mark.parametrize(("b", "r"), CASES)
def test_theorem2_ascent_direction_on_the_grid(b, r):
    g, a, g_bar = _problem(b, r, seed=8)
    for lam_g in GRID:
        for lam_a in GRID:
            _check_inner_product_bounds(g, a, g_bar, lam_g, lam_a)


def test_theorem2_ascent_direction_on_random_draws():
    rng = np.random.default_rng(9)
    for _ in range(60):
        b = int(rng.integers(1, 12))
        r = int(rng.choice([1, 2, M]))
        g = rng.standard_normal((b, M)) * 10.0 ** rng.uniform(-3, 1)
        a = rng.standard_normal((b, N)) * 10.0 ** rng.uniform(-1, 1)
        g_bar = rng.standard_normal((r * b, M)) * 10.0 ** rng.uniform(-1, 1)
        lam_g, lam_a = 10.0 ** rng.uniform(-3, 3, size=2)
        _check_inner_product_bounds(g, a, g_bar, lam_g, lam_a)


# --------------------------------------------------------------------------------------------
# Theorem 3: λ_g → ∞ gives ζ*, which needs no g_bar
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("b", "r"), CASES)
def test_theorem3_large_lam_g_converges_to_zeta_star(b, r):
    g, a, g_bar = _problem(b, r, seed=10, spread=(0.5, 2.0))
    G, _ = _factors(g_bar, a)
    for lam_a in (1e-3, 1.0, 1e3):
        star = zeta_star(g, a, lam_a)
        for lam_g in (1e2, 1e6, 1e10):
            # ζ = λ_g (G + λ_g I)⁻¹ ζ*, so ‖ζ − ζ*‖ ≤ ‖G‖/λ_g ‖ζ*‖
            bound = np.linalg.norm(G, 2) / lam_g
            assert _rel(zeta(g, a, g_bar, lam_g, lam_a), star) <= bound * (1 + 1e-6) + 1e-13
            assert _rel(zeta_kron(g, a, g_bar, lam_g, lam_a), star) <= bound * (1 + 1e-6) + 1e-12


@pytest.mark.parametrize(("b", "r"), CASES)
def test_theorem3_infinite_lam_g_is_zeta_star_and_ignores_g_bar(b, r):
    g, a, g_bar = _problem(b, r, seed=11)
    other = np.random.default_rng(12).standard_normal(g_bar.shape) * 100.0
    for lam_a in (*GRID, INF):
        star = zeta_star(g, a, lam_a)
        assert np.array_equal(zeta(g, a, g_bar, INF, lam_a), star)
        assert np.array_equal(zeta(g, a, other, INF, lam_a), star)
        assert np.array_equal(
            zeta_kron(g, a, g_bar, INF, lam_a), zeta_kron(g, a, other, INF, lam_a)
        )
        assert _rel(zeta_kron(g, a, g_bar, INF, lam_a), star) <= 1e-10


@pytest.mark.parametrize("b", BATCHES)
def test_eq21_zeta_star_is_input_damped_gradient(b):
    g, a, _ = _problem(b, 1, seed=13, spread=(0.5, 2.0))
    A = a.T @ a / b
    for lam_a in (1e-3, 1.0, 1e3):
        expected = lam_a * np.linalg.solve(A + lam_a * np.eye(N), (g.T @ a).T).T
        assert _rel(zeta_star(g, a, lam_a), expected) < 1e-10
        # eq. 21 in the b×b form: gᵀ (I_b + aaᵀ/(bλ_a))⁻¹ a
        b_form = g.T @ np.linalg.solve(np.eye(b) + a @ a.T / (b * lam_a), a)
        assert _rel(zeta_star(g, a, lam_a), b_form) < 1e-10
    assert np.array_equal(zeta_star(g, a, INF), _backend_grad(g, a))


def test_infinite_lam_a_alone_conditions_only_the_output_side():
    g, a, g_bar = _problem(3, 1, seed=14, spread=(0.5, 2.0))
    G, _ = _factors(g_bar, a)
    lam_g = 0.5
    expected = lam_g * np.linalg.solve(G + lam_g * np.eye(M), g.T @ a)
    for fn in (zeta, zeta_kron):
        out = fn(g, a, g_bar, lam_g, INF)
        assert np.all(np.isfinite(out))
        assert _rel(out, expected) < 1e-12


# --------------------------------------------------------------------------------------------
# Theorem 4: ζ* is the damped Gauss–Newton step of linear regression with MSE
# --------------------------------------------------------------------------------------------
def _linear_regression(b: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, N))
    y = rng.standard_normal((b, M))
    W = rng.standard_normal((M, N))

    def loss(W_):
        return 0.5 * np.sum((x @ W_.T - y) ** 2) / b  # (1/b) Σ ½‖W xₙ − yₙ‖²

    g = (x @ W.T - y) / b  # ∂loss/∂z for the batch loss
    return x, y, W, g, loss


@pytest.mark.parametrize("b", BATCHES)
def test_theorem4_linear_regression_gradient_convention(b):
    x, _, W, g, loss = _linear_regression(b, seed=15)
    grad = g.T @ x
    fd = np.zeros_like(W)
    h = 1e-4
    for i in range(M):
        for j in range(N):
            E = np.zeros_like(W)
            E[i, j] = h
            fd[i, j] = (loss(W + E) - loss(W - E)) / (2 * h)  # exact for a quadratic
    assert np.allclose(grad, fd, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("b", BATCHES)
def test_theorem4_zeta_star_is_damped_gauss_newton_step(b):
    x, _, _, g, _ = _linear_regression(b, seed=16)
    A = x.T @ x / b
    ggn = np.kron(np.eye(M), A)  # GGN of the MSE batch loss, row-major vec(W)
    for lam_a in (1e-3, 1e-1, 1.0, 10.0):
        step = np.linalg.solve(ggn + lam_a * np.eye(M * N), (g.T @ x).reshape(-1))
        assert _rel(zeta_star(g, x, lam_a).reshape(-1) / lam_a, step) < 1e-10


def test_theorem4_small_damping_solves_least_squares_in_one_step():
    b = 8  # b > n: A is invertible and the undamped GN step is Newton's step
    x, y, W, g, _ = _linear_regression(b, seed=17)
    lam_a = 1e-9
    W_new = W - zeta_star(g, x, lam_a) / lam_a
    W_lstsq = np.linalg.lstsq(x, y, rcond=None)[0].T
    assert _rel(W_new, W_lstsq) < 1e-6


@pytest.mark.parametrize("b", BATCHES)
def test_theorem4_exact_g_bar_gives_zeta_star_direction(b):
    # MSE: the per-sample loss Hessian w.r.t. z is I_m, its square root I_m (r = m), so G = I
    # and ζ = λ_g/(1 + λ_g) · ζ* (the paper's proof says "ζ* = ζ": same direction).
    x, _, _, g, _ = _linear_regression(b, seed=18)
    g_bar = np.tile(np.eye(M), (b, 1))
    assert np.allclose(g_bar.T @ g_bar / b, np.eye(M))
    for lam_g in (1e-3, 1.0, 1e3):
        for lam_a in (1e-2, 1.0):
            expected = lam_g / (1 + lam_g) * zeta_star(g, x, lam_a)
            assert _rel(zeta(g, x, g_bar, lam_g, lam_a), expected) < 1e-12
            assert _rel(zeta_kron(g, x, g_bar, lam_g, lam_a), expected) < 1e-12


# --------------------------------------------------------------------------------------------
# Remark 4: the empirical Fisher
# --------------------------------------------------------------------------------------------
def _softmax_regression(b: int, seed: int):
    """Per-sample gradients ∇_z ℓₙ of cross-entropy ℓₙ; the batch loss is their mean."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, N))
    W = rng.standard_normal((M, N))
    labels = rng.integers(0, M, size=b)
    z = x @ W.T
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    per_sample = p - np.eye(M)[labels]  # row n: ∇_z ℓₙ
    return x, per_sample


@pytest.mark.parametrize("b", BATCHES)
def test_remark4_g_bar_from_per_sample_gradients_gives_empirical_fisher(b):
    x, per_sample = _softmax_regression(b, seed=19)
    g = per_sample / b  # gradient of the mean loss (1/b) Σ ℓₙ w.r.t. z
    g_bar = b * g  # = per_sample: r = 1 row per sample
    F_G = sum(np.outer(v, v) for v in per_sample) / b  # (1/b) Σ ∇ℓₙ ∇ℓₙᵀ
    assert np.allclose(g_bar.T @ g_bar / b, F_G, rtol=1e-13, atol=1e-15)
    A = x.T @ x / b
    for lam_g in (1e-3, 1.0, 1e3):
        for lam_a in (1e-3, 1.0, 1e3):
            left = np.linalg.solve(F_G + lam_g * np.eye(M), g.T @ x)
            expected = lam_g * lam_a * np.linalg.solve(A + lam_a * np.eye(N), left.T).T
            assert _rel(zeta(g, x, g_bar, lam_g, lam_a), expected) < 1e-9
            assert _rel(zeta_kron(g, x, g_bar, lam_g, lam_a), expected) < 1e-9


def test_remark4_single_sample_fisher_is_exactly_kronecker():
    # For b = 1 the empirical Fisher of the layer, vec(∇ℓ aᵀ) vec(∇ℓ aᵀ)ᵀ, is F_G ⊗ A exactly,
    # so ζ is its damped natural-gradient-like step with no K-FAC approximation at all.
    x, per_sample = _softmax_regression(1, seed=20)
    per_weight = np.outer(per_sample[0], x[0]).reshape(-1)  # row-major vec of ∇_W ℓ
    fisher = np.outer(per_weight, per_weight)
    F_G = np.outer(per_sample[0], per_sample[0])
    assert np.allclose(fisher, np.kron(F_G, np.outer(x[0], x[0])), rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------------------------
# cost: which systems are solved
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("b", "r"), CASES)
def test_zeta_solves_the_smaller_side(monkeypatch, b, r):
    # zeta and zeta_star invert one damped matrix per side (``_damped_inverse``, no host check)
    # and never call the checked Cholesky solve; zeta_kron, the reference, solves n×n and m×m.
    inverted: list[int] = []
    solved: list[int] = []
    real_inverse, real_solve = isaac._damped_inverse, isaac.cho_solve

    def inverse_spy(M, scale):
        inverted.append(M.shape[0])
        return real_inverse(M, scale)

    def solve_spy(K, B, name="K"):
        solved.append(K.shape[0])
        return real_solve(K, B, name=name)

    monkeypatch.setattr(isaac, "_damped_inverse", inverse_spy)
    monkeypatch.setattr(isaac, "cho_solve", solve_spy)
    g, a, g_bar = _problem(b, r, seed=21)
    zeta(g, a, g_bar, 1.0, 1.0)
    assert sorted(inverted) == sorted([min(b, N), min(r * b, M)]) and solved == []
    inverted.clear()
    zeta_star(g, a, 1.0)
    assert inverted == [min(b, N)] and solved == []
    inverted.clear()
    zeta_kron(g, a, g_bar, 1.0, 1.0)
    assert sorted(solved) == sorted([N, M]) and inverted == []
    solved.clear()
    zeta(g, a, g_bar, INF, INF)
    assert inverted == [] and solved == []


@pytest.mark.parametrize(("b", "r"), CASES)
@pytest.mark.parametrize(("m", "n"), [(M, N), (N, M)])  # both orders of the products
def test_zeta_and_zeta_star_never_transfer_to_the_host(b, r, m, n):
    """On the CuPy stand-in (which records every device-to-host transfer), all branches."""
    module = backend.get_backend()
    if backend.backend_name() != "cupy" or not hasattr(module, "SYNCS"):
        pytest.skip("counts transfers on the CuPy stand-in only (tinycurv/testing/cupy_stand_in)")
    rng = np.random.default_rng(25)
    g, a = _dev(rng.standard_normal((b, m))), _dev(rng.standard_normal((b, n)))
    g_bar = _dev(rng.standard_normal((r * b, m)))
    module.SYNCS.clear()
    for lam_g, lam_a in ((1.0, 0.5), (INF, 0.5), (1.0, INF), (INF, INF)):
        isaac.zeta(g, a, g_bar, lam_g, lam_a)
        isaac.zeta_star(g, a, lam_a)
    assert module.SYNCS == []


def test_float32_in_float32_out():
    g, a, g_bar = (v.astype(np.float32) for v in _problem(3, 1, seed=22, spread=(0.5, 2.0)))
    for out in (
        zeta(g, a, g_bar, 1.0, 1.0),
        zeta_kron(g, a, g_bar, 1.0, 1.0),
        zeta_star(g, a, 1.0),
    ):
        assert out.dtype == np.float32 and out.shape == (M, N)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("g_shape", "a_shape", "g_bar_shape", "match"),
    [
        ((4, M), (5, N), (4, M), "batch sizes differ"),
        ((4, M), (4, N), (4, M + 1), "columns"),
        ((4, M), (4, N), (6, M), "r·b rows"),
        ((4, M), (4, N), (0, M), "r·b rows"),
        ((4,), (4, N), (4, M), "2-D"),
        ((4, M), (4, N, 1), (4, M), "2-D"),
        ((4, M), (4, N), (4 * M,), "2-D"),
        ((0, M), (0, N), (0, M), "empty batch"),
    ],
)
def test_shape_errors(g_shape, a_shape, g_bar_shape, match):
    g, a, g_bar = np.ones(g_shape), np.ones(a_shape), np.ones(g_bar_shape)
    for fn in (zeta, zeta_kron):
        with pytest.raises(ValueError, match=match):
            fn(g, a, g_bar, 1.0, 1.0)
        with pytest.raises(ValueError, match=match):
            fn(g, a, g_bar, INF, INF)  # checked even where g_bar is not used


@pytest.mark.parametrize(("g_shape", "a_shape"), [((4, M), (5, N)), ((4,), (4, N))])
def test_zeta_star_shape_errors(g_shape, a_shape):
    with pytest.raises(ValueError):
        zeta_star(np.ones(g_shape), np.ones(a_shape), 1.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, -INF, float("nan")])
def test_damping_must_be_positive(bad):
    g, a, g_bar = _problem(3, 1, seed=23)
    for fn in (zeta, zeta_kron):
        with pytest.raises(ValueError, match="lam_g must be > 0"):
            fn(g, a, g_bar, bad, 1.0)
        with pytest.raises(ValueError, match="lam_a must be > 0"):
            fn(g, a, g_bar, 1.0, bad)
    with pytest.raises(ValueError, match="lam_a must be > 0"):
        zeta_star(g, a, bad)


# --------------------------------------------------------------------------------------------
# the Cholesky helpers
# --------------------------------------------------------------------------------------------
def test_cho_solve_matches_dense_solve():
    rng = np.random.default_rng(24)
    X = rng.standard_normal((7, 7))
    K = X @ X.T + 0.5 * np.eye(7)
    B = rng.standard_normal((7, 3))
    assert np.allclose(cho_solve(K, B), np.linalg.solve(K, B), rtol=1e-12, atol=1e-12)
    assert np.allclose(cho_solve(K, B[:, 0]), np.linalg.solve(K, B[:, 0]), rtol=1e-12)
    L = cho_factor(K)
    assert np.allclose(L, np.tril(L)) and np.allclose(L @ L.T, K)
    assert np.allclose(cho_apply(L, B), np.linalg.solve(K, B), rtol=1e-12, atol=1e-12)


def test_cho_solve_rejects_non_positive_definite():
    K = np.diag([1.0, -1.0, 2.0])
    with pytest.raises(np.linalg.LinAlgError, match="my matrix.*not positive definite"):
        cho_solve(K, np.ones(3), name="my matrix")
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        cho_factor(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="square"):
        cho_factor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="rows"):
        cho_apply(np.eye(3), np.ones(4))


def test_finite_lam_g_requires_g_bar():
    g, a = np.ones((4, 3)), np.ones((4, 5))
    for fn in (zeta, zeta_kron):
        with pytest.raises(ValueError, match="g_bar"):
            fn(g, a, None, 1.0, 1.0)


def test_deferred_checks_name_the_first_bad_factor():
    """``cho_factor(check=False)`` + ``check_factors`` (one device sync for all, as K-FAC does)
    accepts valid factors and rejects a NaN one by name, like the immediate check."""
    from tinycurv.curvature.linalg import check_factors

    good = backend.asarray(np.diag([1.0, 4.0]))
    bad = backend.asarray(np.full((2, 2), np.nan))
    factors = [linalg.cho_factor(good, "A", check=False), linalg.cho_factor(bad, "G", check=False)]
    np.testing.assert_allclose(tc.asnumpy(factors[0]), np.diag([1.0, 2.0]), rtol=1e-15)
    check_factors(factors[:1], ["A"])
    check_factors([], [])
    with pytest.raises(np.linalg.LinAlgError, match="G .*not positive definite"):
        check_factors(factors, ["A", "G"])
