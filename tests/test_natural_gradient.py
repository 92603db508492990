"""NaturalGradient (tinycurv.optim.natural_gradient) against dense Fisher and GGN steps.

fisher="exact" on a cross-entropy network is the damped GGN step (dense and CG); "mc" equals
the step with ``dense.fisher(kind="mc")`` for the same draws and converges to the exact step
with error ∝ 1/√S; "empirical" equals the step with the empirical Fisher.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_matrix_free import cnn_problem, host, mlp_problem

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import backend_name, get_backend
from tinycurv.curvature import dense
from tinycurv.data import batches, load_digits
from tinycurv.optim.base import NonFiniteError
from tinycurv.optim.natural_gradient import NaturalGradient


def params_of(model):
    return host([p.data for p in model.parameters()])


def dense_step(model, loss_fn, x, y, C, lam, lr=1.0):
    g = host(tc.grad(lambda: loss_fn(model(x), y), model.parameters()))
    return params_of(model) - lr * np.linalg.solve(C + lam * np.eye(C.shape[0]), g)


@pytest.mark.parametrize("problem", [mlp_problem, cnn_problem])
@pytest.mark.parametrize("solver", ["dense", "cg"])
def test_exact_fisher_step_is_the_ggn_step(problem, solver):
    model, loss_fn, x, y = problem()
    G = host(dense.ggn(model, loss_fn, x))
    want = dense_step(model, loss_fn, x, y, G, 0.05, lr=0.7)
    opt = NaturalGradient(model, loss_fn, lr=0.7, damping=0.05, solver=solver,
                          cg_tol=1e-13, cg_max_iter=500, check_every=1)  # fmt: skip
    opt.step(x, y)
    np.testing.assert_allclose(params_of(model), want, rtol=0, atol=1e-10)


def test_sampled_and_empirical_fisher_steps_equal_the_dense_fisher():
    model, loss_fn, x, y = mlp_problem()
    F = host(dense.fisher(model, loss_fn, x, y, kind="mc", mc_samples=3, rng=5))
    want = dense_step(model, loss_fn, x, y, F, 0.1)
    for solver in ("dense", "cg"):
        twin, *_ = mlp_problem()
        opt = NaturalGradient(twin, loss_fn, lr=1.0, damping=0.1, fisher="mc", mc_samples=3,
                              seed=5, solver=solver, cg_tol=1e-13, cg_max_iter=500)  # fmt: skip
        opt.step(x, y)
        np.testing.assert_allclose(params_of(twin), want, rtol=0, atol=1e-10)
    E = host(dense.fisher(model, loss_fn, x, y, kind="empirical"))
    want = dense_step(model, loss_fn, x, y, E, 0.1)
    opt = NaturalGradient(model, loss_fn, lr=1.0, damping=0.1, fisher="empirical", solver="dense")
    opt.step(x, y)
    np.testing.assert_allclose(params_of(model), want, rtol=0, atol=1e-10)


def test_monte_carlo_step_converges_as_one_over_root_samples():
    model, loss_fn, x, y = mlp_problem(b=16)
    exact = NaturalGradient(mlp_problem(b=16)[0], loss_fn, lr=1.0, damping=0.1, solver="dense")
    exact.step(x, y)
    target = params_of(exact.model)
    errors = {}
    for S in (4, 64):
        err = []
        for seed in range(6):
            twin = mlp_problem(b=16)[0]
            NaturalGradient(twin, loss_fn, lr=1.0, damping=0.1, fisher="mc", mc_samples=S,
                            seed=seed, solver="dense").step(x, y)  # fmt: skip
            err.append(np.sum((params_of(twin) - target) ** 2))
        errors[S] = np.sqrt(np.mean(err))
    ratio = errors[4] / errors[64]  # √(64/4) = 4 in expectation for error ∝ 1/√S
    assert 2.5 < ratio < 6.5, errors


def test_decreases_the_loss_on_digits():
    X, Y, _, _ = load_digits()
    X, Y = X[:600], Y[:600]
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(64, 32, rng=rng), nn.Tanh(), nn.Linear(32, 10, rng=rng))
    loss_fn = nn.CrossEntropyLoss()
    with tc.no_grad():
        start = loss_fn(model(X), Y).item()
    for fisher in ("exact", "mc"):
        opt = NaturalGradient(model, loss_fn, fisher=fisher)
        for i, (xb, yb) in enumerate(batches(X, Y, 100, rng=0)):
            opt.step(xb, yb)
            if i == 5:
                break
    with tc.no_grad():
        end = loss_fn(model(X), Y).item()
    assert end < 0.5 * start, (start, end)


def test_atomic_resumable_and_checked():
    model, loss_fn, x, y = mlp_problem()
    opt = NaturalGradient(model, loss_fn, fisher="mc", seed=3)
    opt.step(x, y)
    before = params_of(model)
    with pytest.raises(NonFiniteError):
        opt.step(x * np.nan, y)
    np.testing.assert_array_equal(params_of(model), before)
    twin, *_ = mlp_problem()
    for p, q in zip(twin.parameters(), model.parameters(), strict=True):
        p.data = q.data.copy()
    resumed = NaturalGradient(twin, loss_fn, fisher="mc", seed=3)
    resumed.load_state_dict(opt.state_dict())  # the generator travels with the state
    opt.step(x, y)
    resumed.step(x, y)
    np.testing.assert_array_equal(params_of(twin), params_of(model))
    for bad in (dict(fisher="true"), dict(solver="lu"), dict(lr=0.0), dict(mc_samples=0)):
        with pytest.raises(ValueError):
            NaturalGradient(model, loss_fn, **bad)


def test_host_transfers_per_step():
    module = get_backend()
    if backend_name() != "cupy" or not hasattr(module, "SYNCS"):
        pytest.skip("counts transfers on the CuPy stand-in only")
    model, loss_fn, x, y = mlp_problem()
    opt = NaturalGradient(model, loss_fn, cg_tol=0.0, cg_max_iter=10, check_every=5)
    opt.step(x, y)
    module.SYNCS.clear()
    opt.step(x, y)
    assert len(module.SYNCS) == 2 + 1, module.SYNCS  # two CG checks and the loss
