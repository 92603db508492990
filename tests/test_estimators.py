"""Curvature estimators (tinycurv.curvature.estimators) against dense references.

Hutchinson's trace and diagonal within 3 standard errors of the dense values over seeds; the
exact GGN diagonal equal to diag(ggn) to 1e-12; SLQ's moments within 3 standard errors of
tr(Hᵏ)/p, and its Gauss quadrature exact for polynomials of degree ≤ 2m − 1.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_matrix_free import PROBLEMS, cnn_problem, host, mlp_problem

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray
from tinycurv.curvature import dense
from tinycurv.curvature.estimators import (
    SpectralDensity,
    fisher_output_matrix,
    ggn_diagonal,
    hutchinson_diagonal,
    hutchinson_trace,
    plot_spectral_density,
    smoothed_density,
    spectral_density,
)
from tinycurv.curvature.matrix_free import lanczos

SEEDS = (0, 1, 2)


def hessian_problem():
    model, loss_fn, x, y = mlp_problem()
    closure = lambda: loss_fn(model(x), y)
    return model, loss_fn, x, closure, host(dense.hessian(closure, model.parameters()))


@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
def test_hutchinson_trace_within_three_standard_errors(curvature):
    model, loss_fn, x, closure, H = hessian_problem()
    C = H if curvature == "hessian" else host(dense.ggn(model, loss_fn, x))
    for seed in SEEDS:
        est = hutchinson_trace(
            closure, model.parameters(), 100, rng=seed, curvature=curvature,
            model=model, loss_fn=loss_fn, x=x,
        )  # fmt: skip
        assert isinstance(est.value, float) and est.stderr > 0
        assert abs(est.value - np.trace(C)) < 3 * est.stderr, (seed, est, np.trace(C))


def test_hutchinson_is_exact_for_a_diagonal_matrix():
    w = tc.Tensor(asarray(np.zeros(5)), requires_grad=True)
    d = asarray(np.arange(1.0, 6.0))
    closure = lambda: (w * w * d).sum() * 0.5  # H = diag(d)
    est = hutchinson_trace(closure, [w], 7, rng=0)
    assert est.value == pytest.approx(15.0, abs=1e-12) and est.stderr == pytest.approx(0, abs=1e-12)
    diag = hutchinson_diagonal(closure, [w], 3, rng=0)
    np.testing.assert_allclose(tc.asnumpy(diag.value[0]), np.arange(1.0, 6.0), atol=1e-12)
    one = hutchinson_trace(closure, [w], 1, rng=0)
    assert np.isnan(one.stderr)


def test_hutchinson_diagonal_within_three_standard_errors():
    model, loss_fn, x, closure, H = hessian_problem()
    params = model.parameters()
    for seed in SEEDS:
        est = hutchinson_diagonal(closure, params, 200, rng=seed)
        assert [v.shape for v in est.value] == [p.shape for p in params]
        z = (host(est.value) - np.diag(H)) / host(est.stderr)
        assert np.mean(np.abs(z) < 3) > 0.95 and np.max(np.abs(z)) < 5, (seed, np.sort(z)[-3:])
        assert 0.5 < np.mean(z**2) < 1.6  # the standard errors are calibrated
    ggn = hutchinson_diagonal(None, params, 200, rng=0, curvature="ggn",
                              model=model, loss_fn=loss_fn, x=x)  # fmt: skip
    z = (host(ggn.value) - np.diag(host(dense.ggn(model, loss_fn, x)))) / host(ggn.stderr)
    assert np.mean(np.abs(z) < 3) > 0.95


@pytest.mark.parametrize("name", PROBLEMS)
def test_exact_ggn_diagonal_equals_the_dense_diagonal(name):
    model, loss_fn, x, y = PROBLEMS[name]()
    got = ggn_diagonal(model, loss_fn, x)
    assert [g.shape for g in got] == [p.shape for p in model.parameters()]
    want = np.diag(host(dense.ggn(model, loss_fn, x)))
    np.testing.assert_allclose(host(got), want, rtol=0, atol=1e-12 * max(1.0, want.max()))
    assert all(p.grad is None for p in model.parameters())


def test_exact_ggn_diagonal_of_a_strided_convolution_without_bias():
    rng = np.random.default_rng(3)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False, rng=rng),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 4, rng=rng),
    )
    x, loss_fn = asarray(rng.standard_normal((5, 2, 5, 5))), nn.CrossEntropyLoss()
    want = np.diag(host(dense.ggn(model, loss_fn, x)))
    np.testing.assert_allclose(host(ggn_diagonal(model, loss_fn, x)), want, atol=1e-12)


def test_fisher_output_matrices():
    model, loss_fn, x, y = mlp_problem()
    with tc.no_grad():
        f = model(x).data
    H = tc.asnumpy(loss_fn.hessian(f))
    np.testing.assert_array_equal(tc.asnumpy(fisher_output_matrix(loss_fn, f, kind="exact")), H)
    errors = []
    for S in (8, 512):
        M = tc.asnumpy(fisher_output_matrix(loss_fn, f, kind="mc", mc_samples=S, rng=0))
        errors.append(np.abs(M - H).max())
    assert errors[1] < errors[0] / 3  # ≈ 8 = √(512/8) in expectation
    r = tc.asnumpy(dense.output_gradients(loss_fn, f, y))
    emp = tc.asnumpy(fisher_output_matrix(loss_fn, f, y, kind="empirical"))
    np.testing.assert_allclose(emp, r[:, :, None] * r[:, None, :], atol=1e-15)
    with pytest.raises(ValueError, match="kind"):
        fisher_output_matrix(loss_fn, f, kind="true")


# ----------------------------------------------------------------------------- SLQ


def test_gauss_quadrature_is_exact_to_degree_2m_minus_1():
    _, _, _, _, H = hessian_problem()
    p = H.shape[0]
    u = np.random.default_rng(0).standard_normal(p)
    u /= np.linalg.norm(u)
    m = 6
    theta, S = lanczos(lambda v: asarray(H) @ v, p, m, v0=asarray(u)).ritz()
    theta, tau = tc.asnumpy(theta), tc.asnumpy(S[0] ** 2)
    for k in range(2 * m):
        want = u @ np.linalg.matrix_power(H, k) @ u
        assert np.sum(tau * theta**k) == pytest.approx(want, rel=1e-9, abs=1e-14), k


@pytest.mark.parametrize("name", ["mlp-ce", "cnn"])
def test_spectral_density_reproduces_the_moments(name):
    model, loss_fn, x, y = PROBLEMS[name]()
    closure = lambda: loss_fn(model(x), y)
    H = host(dense.hessian(closure, model.parameters()))
    p = H.shape[0]
    for seed in SEEDS[:2]:
        density = spectral_density(closure, model.parameters(), 6, 20, rng=seed)
        assert density.nodes.shape == density.weights.shape == (20, 6)
        assert float(density.weights.sum()) == pytest.approx(1.0, abs=1e-12)
        for k in (1, 2, 3, 4):
            want = np.trace(np.linalg.matrix_power(H, k)) / p
            est = density.moment(k)
            assert abs(est.value - want) < 3 * est.stderr, (seed, k, est, want)
        assert density.moment(0).value == pytest.approx(1.0, abs=1e-12)


def test_spectral_density_with_every_step_is_the_spectrum():
    d = np.array([-1.0, 0.5, 2.0, 3.0])
    A = asarray(np.diag(d))
    w = tc.Tensor(asarray(np.zeros(4)), requires_grad=True)
    density = spectral_density(None, [w], 4, 3, rng=0, curvature=lambda vs: [A @ vs[0]])
    # Rademacher probes on a diagonal matrix: weight 1/4 on every eigenvalue, in every probe
    np.testing.assert_allclose(tc.asnumpy(density.nodes), np.tile(d, (3, 1)), atol=1e-12)
    np.testing.assert_allclose(tc.asnumpy(density.weights), 1 / 12, atol=1e-12)


def test_smoothed_density_and_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    density = SpectralDensity(
        asarray(np.array([[0.0, 1.0], [2.0, 3.0]])), asarray(np.full((2, 2), 0.25))
    )
    grid, values = smoothed_density(density, points=2001)
    dt = float(grid[1] - grid[0])
    assert float(values.sum()) * dt == pytest.approx(1.0, abs=1e-6)
    fig, ax = plt.subplots()
    assert plot_spectral_density(density, ax=ax) is ax
    fig.savefig(tmp_path / "density.png")
    plt.close(fig)


def test_cnn_problem_is_small():
    model, *_ = cnn_problem()
    assert sum(p.size for p in model.parameters()) < 60
