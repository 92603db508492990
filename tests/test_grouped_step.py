"""Tests of the cubic-regularised GroupedNewton step (Wolinski, Appendix D)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st

from tinycurv.curvature import grouped_step
from tinycurv.curvature.grouped_step import GroupedStepWarning, cubic_model, grouped_newton_step


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _problem(seed: int, S: int = 6, kind: str = "pd") -> tuple[np.ndarray, ...]:
    """(g_bar, H_bar, D) with H_bar positive definite or indefinite, D of mixed signs."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((S, S))
    if kind == "pd":
        H_bar = A @ A.T / S + 0.1 * np.eye(S)
    else:
        H_bar = A + A.T
        assert np.linalg.eigvalsh(H_bar)[0] < 0
    return rng.standard_normal(S), H_bar, rng.standard_normal(S)


def _check_optimality(g_bar, H_bar, D, lam_int, eta, r):
    """Fixed point η = (H̄ + (λ/2) r diag(d)²)⁻¹ ḡ with r = ‖diag(d)η‖, and the matrix ⪰ 0."""
    d = np.cbrt(np.abs(D))
    assert r == pytest.approx(np.linalg.norm(d * eta), rel=1e-9, abs=1e-12)
    M = H_bar + 0.5 * lam_int * r * np.diag(d**2)
    # tolerances relative to the size of the terms (M itself may be nearly singular)
    size = np.linalg.norm(H_bar, 2) + 0.5 * lam_int * r * np.max(d**2)
    assert np.linalg.norm(M @ eta - g_bar) <= 1e-9 * (
        size * np.linalg.norm(eta) + np.linalg.norm(g_bar)
    )
    assert np.linalg.eigvalsh(M)[0] >= -1e-9 * size


def _multistart_min(g_bar, H_bar, D, lam_int, seed=123, starts=20):
    """Best local minimum of the cubic model found by BFGS from random starts."""
    d2 = np.cbrt(np.abs(D)) ** 2

    def model(eta):
        r = np.sqrt(eta @ (d2 * eta))
        return -g_bar @ eta + 0.5 * eta @ H_bar @ eta + lam_int / 6.0 * r**3

    def grad(eta):
        r = np.sqrt(eta @ (d2 * eta))
        return -g_bar + H_bar @ eta + 0.5 * lam_int * r * d2 * eta

    rng = np.random.default_rng(seed)
    S = g_bar.shape[0]
    best = np.inf
    for _ in range(starts):
        x0 = rng.standard_normal(S) * 10.0 ** rng.uniform(-1, 1.5)
        res = scipy.optimize.minimize(
            model, x0, jac=grad, method="BFGS", options={"gtol": 1e-10, "maxiter": 2000}
        )
        best = min(best, res.fun)
    return best


def _assert_global_min(g_bar, H_bar, D, lam_int, eta):
    m_lib = cubic_model(eta, g_bar, H_bar, D, lam_int)
    m_best = _multistart_min(g_bar, H_bar, D, lam_int)
    assert m_lib <= m_best + 1e-9 * (1.0 + abs(m_best))


# --------------------------------------------------------------------------------------------
# the minimiser
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pd", "indefinite"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lam_int", [0.3, 5.0])
def test_fixed_point_psd_and_global_minimiser(kind, seed, lam_int):
    g_bar, H_bar, D = _problem(seed, kind=kind)
    eta, info = grouped_newton_step(g_bar, H_bar, D, lam_int, return_info=True)
    assert info["converged"]
    assert info["case"] == ("positive_definite" if kind == "pd" else "indefinite")
    assert eta.dtype == np.float64 and eta.shape == g_bar.shape
    _check_optimality(g_bar, H_bar, D, lam_int, eta, info["r"])
    _assert_global_min(g_bar, H_bar, D, lam_int, eta)


def test_bracket_lower_end_is_zero_for_pd_and_the_singular_point_otherwise():
    lam_int = 2.0
    g_bar, H_bar, D = _problem(3, kind="pd")
    info = grouped_newton_step(g_bar, H_bar, D, lam_int, return_info=True)[1]
    assert info["r0"] == 0.0 and info["bracket"][0] == 0.0

    g_bar, H_bar, D = _problem(3, kind="indefinite")
    info = grouped_newton_step(g_bar, H_bar, D, lam_int, return_info=True)[1]
    d = np.cbrt(np.abs(D))
    # H̄ + (λ/2) r0 diag(d)² is singular: r0 = −λ_min(diag(d)⁻¹ H̄ diag(d)⁻¹) / (λ/2)
    kappa_1 = np.linalg.eigvalsh(H_bar / np.outer(d, d))[0]
    assert info["r0"] == pytest.approx(-kappa_1 / (0.5 * lam_int), rel=1e-10)
    lam_min = np.linalg.eigvalsh(H_bar + 0.5 * lam_int * info["r0"] * np.diag(d**2))[0]
    assert abs(lam_min) <= 1e-10 * np.linalg.norm(H_bar, 2)
    r_lo, r_hi = info["bracket"]
    assert info["r0"] <= r_lo < info["r"] < r_hi


def test_one_group_closed_form():
    # S = 1, g > 0, r = d η: (λ/2) d³ η² + h η − g = 0 (App. D fixed point, one group), d³ = |D|
    for h in (2.0, -3.0):
        g, D, lam_int = 1.5, -0.7, 4.0
        expected = (-h + np.sqrt(h**2 + 2 * lam_int * abs(D) * g)) / (lam_int * abs(D))
        eta = grouped_newton_step([g], [[h]], [D], lam_int)
        assert eta[0] == pytest.approx(expected, rel=1e-13)


def test_zero_gradient_pd_gives_zero_step():
    _, H_bar, D = _problem(4, kind="pd")
    eta = grouped_newton_step(np.zeros(6), H_bar, D, 1.0)
    np.testing.assert_array_equal(eta, np.zeros(6))


def test_hard_case_zero_gradient_indefinite_moves_along_negative_curvature():
    _, H_bar, D = _problem(5, kind="indefinite")
    g_bar = np.zeros(6)
    eta, info = grouped_newton_step(g_bar, H_bar, D, 1.0, return_info=True)
    assert info["case"] == "hard" and info["r"] == info["r0"] > 0
    assert np.linalg.norm(eta) > 0  # η = 0 is a saddle of the model, not its minimiser
    _check_optimality(g_bar, H_bar, D, 1.0, eta, info["r"])
    _assert_global_min(g_bar, H_bar, D, 1.0, eta)


def test_hard_case_gradient_orthogonal_to_the_negative_eigenvector():
    H_bar = np.diag([-1.0, 1.0, 2.0])
    g_bar = np.array([0.0, 1.0, 1.0])
    D = np.ones(3)
    eta, info = grouped_newton_step(g_bar, H_bar, D, 1.0, return_info=True)
    assert info["case"] == "hard" and info["r"] == pytest.approx(2.0)
    np.testing.assert_allclose(eta[1:], [1.0 / 2.0, 1.0 / 3.0], rtol=1e-12)
    assert abs(eta[0]) == pytest.approx(np.sqrt(4.0 - 1 / 4 - 1 / 9), rel=1e-12)
    _check_optimality(g_bar, H_bar, D, 1.0, eta, info["r"])
    _assert_global_min(g_bar, H_bar, D, 1.0, eta)


def test_near_hard_case_is_continuous():
    H_bar = np.diag([-1.0, 1.0, 2.0])
    D = np.ones(3)
    eta_hard = grouped_newton_step(np.array([0.0, 1.0, 1.0]), H_bar, D, 1.0)
    eta, info = grouped_newton_step(np.array([1e-12, 1.0, 1.0]), H_bar, D, 1.0, return_info=True)
    assert info["case"] == "indefinite"
    _check_optimality(np.array([1e-12, 1.0, 1.0]), H_bar, D, 1.0, eta, info["r"])
    np.testing.assert_allclose(eta, eta_hard, rtol=1e-9)


# --------------------------------------------------------------------------------------------
# lam_int → 0 and lam_int = 0
# --------------------------------------------------------------------------------------------
def test_small_lam_int_tends_to_newton():
    g_bar, H_bar, D = _problem(6, kind="pd")
    newton = np.linalg.solve(H_bar, g_bar)
    errors = [
        np.linalg.norm(grouped_newton_step(g_bar, H_bar, D, lam) - newton)
        for lam in (1e-1, 1e-3, 1e-5, 1e-7)
    ]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False))
    assert errors[-1] <= 1e-5 * np.linalg.norm(newton)


def test_lam_int_zero_is_newton():
    g_bar, H_bar, D = _problem(7, kind="pd")
    eta, info = grouped_newton_step(g_bar, H_bar, D, 0.0, return_info=True)
    np.testing.assert_allclose(eta, np.linalg.solve(H_bar, g_bar), rtol=1e-12)
    assert info["case"] == "newton" and info["converged"]


def test_lam_int_zero_indefinite_raises():
    g_bar, H_bar, D = _problem(7, kind="indefinite")
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        grouped_newton_step(g_bar, H_bar, D, 0.0)
    with pytest.raises(ValueError):  # LinAlgError is a ValueError
        grouped_newton_step(g_bar, H_bar, D, 0)


# --------------------------------------------------------------------------------------------
# invariances
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pd", "indefinite"])
def test_scaling_D_by_c_cubed_equals_scaling_lam_int(kind):
    g_bar, H_bar, D = _problem(8, kind=kind)
    for c in (0.5, 3.0):
        a = grouped_newton_step(g_bar, H_bar, c**3 * D, 0.7)
        b = grouped_newton_step(g_bar, H_bar, D, 0.7 * c**3)
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_sign_of_D_is_dropped():
    g_bar, H_bar, D = _problem(9, kind="indefinite")
    a = grouped_newton_step(g_bar, H_bar, D, 1.0)
    b = grouped_newton_step(g_bar, H_bar, np.abs(D), 1.0)
    c = grouped_newton_step(g_bar, H_bar, -D, 1.0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


# --------------------------------------------------------------------------------------------
# singular diag(d)
# --------------------------------------------------------------------------------------------
def test_singular_d_positive_definite():
    g_bar, H_bar, D = _problem(10, kind="pd")
    D[[1, 4]] = 0.0
    eta, info = grouped_newton_step(g_bar, H_bar, D, 2.0, return_info=True)
    assert info["case"] == "positive_definite" and info["r0"] == 0.0
    _check_optimality(g_bar, H_bar, D, 2.0, eta, info["r"])
    _assert_global_min(g_bar, H_bar, D, 2.0, eta)


def test_singular_d_indefinite_but_bounded():
    g_bar, H_bar, D = _problem(11, kind="indefinite")
    D[[0, 3]] = 0.0
    H_bar[0, 0] = H_bar[3, 3] = 6.0  # H̄ ≻ 0 on the directions without a cubic term
    assert np.linalg.eigvalsh(H_bar[np.ix_([0, 3], [0, 3])])[0] > 0
    assert np.linalg.eigvalsh(H_bar)[0] < 0
    eta, info = grouped_newton_step(g_bar, H_bar, D, 1.0, return_info=True)
    assert info["case"] == "indefinite" and info["r0"] > 0
    _check_optimality(g_bar, H_bar, D, 1.0, eta, info["r"])
    _assert_global_min(g_bar, H_bar, D, 1.0, eta)
    # the singular point: H̄ + (λ/2) r0 diag(d)² has a zero eigenvalue
    d = np.cbrt(np.abs(D))
    lam_min = np.linalg.eigvalsh(H_bar + 0.5 * info["r0"] * np.diag(d**2))[0]
    assert abs(lam_min) <= 1e-9 * np.linalg.norm(H_bar, 2)


def test_singular_d_negative_curvature_is_unbounded_and_falls_back():
    g_bar, H_bar, D = _problem(12, kind="pd")
    D[2] = 0.0
    H_bar[2, :] = H_bar[:, 2] = 0.0
    H_bar[2, 2] = -1.0  # negative curvature where there is no cubic term
    # the model really is unbounded below along e_2
    e = np.eye(6)[2]
    assert cubic_model(1e3 * e, g_bar, H_bar, D, 1.0) < -1e5
    with pytest.warns(GroupedStepWarning, match="unbounded below"):
        eta, info = grouped_newton_step(g_bar, H_bar, D, 1.0, return_info=True)
    np.testing.assert_array_equal(eta, np.zeros(6))
    assert info["case"] == "unbounded" and not info["converged"]


def test_all_D_zero_is_newton_or_unbounded():
    g_bar, H_bar, _ = _problem(13, kind="pd")
    eta = grouped_newton_step(g_bar, H_bar, np.zeros(6), 3.0)
    np.testing.assert_allclose(eta, np.linalg.solve(H_bar, g_bar), rtol=1e-12)
    g_bar, H_bar, _ = _problem(13, kind="indefinite")
    with pytest.warns(UserWarning, match="unbounded below"):
        eta = grouped_newton_step(g_bar, H_bar, np.zeros(6), 3.0)
    np.testing.assert_array_equal(eta, np.zeros(6))


# --------------------------------------------------------------------------------------------
# fallback on a failed solve
# --------------------------------------------------------------------------------------------
def test_fallback_when_brentq_raises(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Failed to converge after 500 iterations")

    monkeypatch.setattr(grouped_step, "brentq", broken)
    g_bar, H_bar, D = _problem(14, kind="indefinite")
    with pytest.warns(GroupedStepWarning, match="fallback eta = 0"):
        eta, info = grouped_newton_step(g_bar, H_bar, D, 1.0, return_info=True)
    np.testing.assert_array_equal(eta, np.zeros(6))
    assert info["case"] == "failed" and not info["converged"]


def test_fallback_when_brentq_returns_a_wrong_root(monkeypatch):
    # a root-finder that "succeeds" with the midpoint of the bracket is caught
    monkeypatch.setattr(scipy.optimize, "brentq", lambda f, a, b, **kwargs: 0.5 * (a + b))
    g_bar, H_bar, D = _problem(15, kind="pd")
    with pytest.warns(RuntimeWarning, match="not a fixed point"):
        eta = grouped_newton_step(g_bar, H_bar, D, 1.0)
    np.testing.assert_array_equal(eta, np.zeros(6))


def test_no_warning_on_success():
    g_bar, H_bar, D = _problem(16, kind="indefinite")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grouped_newton_step(g_bar, H_bar, D, 1.0)


# --------------------------------------------------------------------------------------------
# validation and input types
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["g_bar", "H_bar", "D", "lam_int"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_raises(which, bad):
    args = dict(zip(("g_bar", "H_bar", "D"), _problem(17), strict=True), lam_int=1.0)
    if which == "lam_int":
        args["lam_int"] = bad
    else:
        args[which] = args[which].copy()
        args[which].flat[0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        grouped_newton_step(**args)


@pytest.mark.parametrize(
    "g_bar, H_bar, D, lam_int, match",
    [
        (np.ones((2, 1)), np.eye(2), np.ones(2), 1.0, "g_bar must have shape"),
        (np.ones(0), np.eye(0), np.ones(0), 1.0, "S >= 1"),
        (np.ones(2), np.eye(3), np.ones(2), 1.0, "H_bar must have shape"),
        (np.ones(2), np.ones(2), np.ones(2), 1.0, "H_bar must have shape"),
        (np.ones(2), np.eye(2), np.ones(3), 1.0, "D must have shape"),
        (np.ones(2), np.eye(2), np.ones(2), -1.0, "lam_int must be >= 0"),
        (np.ones(2), np.eye(2), np.ones(2), np.ones(2), "lam_int must be a scalar"),
        (np.ones(2), [[1.0, 0.5], [0.0, 1.0]], np.ones(2), 1.0, "symmetric"),
        (np.ones(2) + 1j, np.eye(2), np.ones(2), 1.0, "real numbers"),
    ],
)
def test_validation_errors(g_bar, H_bar, D, lam_int, match):
    with pytest.raises(ValueError, match=match):
        grouped_newton_step(g_bar, H_bar, D, lam_int)


def test_accepts_lists_and_float32_and_returns_float64():
    g_bar, H_bar, D = _problem(18, kind="pd")
    ref = grouped_newton_step(g_bar, H_bar, D, 1.0)
    from_lists = grouped_newton_step(g_bar.tolist(), H_bar.tolist(), D.tolist(), 1.0)
    np.testing.assert_array_equal(ref, from_lists)
    H32 = H_bar.astype(np.float32)
    out = grouped_newton_step(g_bar.astype(np.float32), H32, D.astype(np.float32), 1.0)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# property: optimality on random problems, some with zeros in D
# --------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    S=st.integers(1, 8),
    log_lam=st.floats(-3, 3),
    n_zero=st.integers(0, 2),
)
def test_property_optimality_conditions(seed, S, log_lam, n_zero):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((S, S))
    H_bar = A + A.T
    g_bar = rng.standard_normal(S)
    D = rng.standard_normal(S) * 10.0 ** rng.uniform(-2, 2, S)
    zero = rng.choice(S, size=min(n_zero, S - 1), replace=False)
    D[zero] = 0.0
    H_bar[zero, zero] += np.abs(H_bar).sum() + 1.0  # keep the model bounded below
    lam_int = 10.0**log_lam
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eta, info = grouped_newton_step(g_bar, H_bar, D, lam_int, return_info=True)
    _check_optimality(g_bar, H_bar, D, lam_int, eta, info["r"])
    assert cubic_model(eta, g_bar, H_bar, D, lam_int) <= 0.0


def test_cupy_arrays_are_copied_to_the_host():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA GPU")
    except Exception:  # CUDARuntimeError when no driver is present
        pytest.skip("no CUDA GPU")
    g_bar, H_bar, D = _problem(19, kind="indefinite")
    ref = grouped_newton_step(g_bar, H_bar, D, 1.0)
    out = grouped_newton_step(cupy.asarray(g_bar), cupy.asarray(H_bar), cupy.asarray(D), 1.0)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-12)
