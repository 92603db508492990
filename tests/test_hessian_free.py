"""HessianFree (tinycurv.optim.hessian_free) against the dense damped Gauss–Newton step.

With CG run to convergence and no backtracking or line search one step is exactly
θ ← θ − (G + λI)⁻¹ g; the damping follows Martens' rule over a scripted sequence of ρ; the
optimiser decreases the loss on digits (MLP and CNN); steps are atomic and resumable.
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
from tinycurv.optim import hessian_free as hf
from tinycurv.optim.base import NonFiniteError
from tinycurv.optim.hessian_free import HessianFree, backtracking_grid, levenberg_marquardt

EXACT = dict(adapt_damping=False, backtracking=False, line_search=False, cg_tol=1e-13,
             progress_tol=0.0, cg_max_iter=500)  # fmt: skip


def params_of(model):
    return host([p.data for p in model.parameters()])


@pytest.mark.parametrize("problem", [mlp_problem, cnn_problem])
def test_converged_step_is_the_damped_gauss_newton_step(problem):
    model, loss_fn, x, y = problem()
    lam = 0.1
    G = host(dense.ggn(model, loss_fn, x))
    g = host(tc.grad(lambda: loss_fn(model(x), y), model.parameters()))
    want = params_of(model) - np.linalg.solve(G + lam * np.eye(G.shape[0]), g)
    opt = HessianFree(model, loss_fn, damping=lam, **EXACT)
    opt.step(x, y)
    np.testing.assert_allclose(params_of(model), want, rtol=0, atol=1e-10)
    assert opt.state["alpha"] == 1.0 and opt.state["damping"] == lam


def test_levenberg_marquardt_rule():
    assert levenberg_marquardt(1.0, 0.1) == 1.5
    assert levenberg_marquardt(1.0, 0.5) == 1.0
    assert levenberg_marquardt(1.0, 0.9) == pytest.approx(2 / 3)
    assert levenberg_marquardt(1.0, float("nan")) == 1.5
    assert levenberg_marquardt(1.0, -3.0) == 1.5
    assert levenberg_marquardt(1e-9, 0.9, min_damping=1e-8) == 1e-8


def test_damping_follows_the_rule_over_a_scripted_rho(monkeypatch):
    model, loss_fn, x, y = mlp_problem()
    script = [0.9, 0.9, 0.1, 0.5, -1.0, float("nan"), 0.8]
    ratios = iter(script)
    monkeypatch.setattr(HessianFree, "_reduction_ratio", lambda self, *a: next(ratios))
    opt = HessianFree(model, loss_fn, damping=2.0, cg_max_iter=5)
    lam, seen = 2.0, []
    for rho in script:
        opt.step(x, y)
        lam = levenberg_marquardt(lam, rho, min_damping=1e-8)
        seen.append(opt.state["damping"])
        assert opt.state["damping"] == pytest.approx(lam, rel=1e-15)
    assert seen[:3] == pytest.approx([2.0 * 2 / 3, 2.0 * 4 / 9, 2.0 * 4 / 9 * 1.5])


def test_backtracking_grid_and_choice():
    assert backtracking_grid(1.3, 10) == [1, 2, 3, 4, 5, 7, 9]
    assert backtracking_grid(2.0, 20) == [1, 2, 4, 8, 16]
    model, loss_fn, x, y = mlp_problem()
    opt = HessianFree(model, loss_fn, damping=1e-4, cg_max_iter=30, progress_tol=0.0)
    opt.step(x, y)
    chosen, n = opt.state["cg_chosen"], opt.state["cg_iterations"]
    assert chosen == n or chosen in backtracking_grid(1.3, 30)


def test_warm_start_from_the_decayed_previous_solution(monkeypatch):
    model, loss_fn, x, y = mlp_problem()
    starts = []
    cg = hf.conjugate_gradient

    def spy(matvec, b, **kw):
        starts.append(kw["x0"])
        return cg(matvec, b, **kw)

    monkeypatch.setattr(hf, "conjugate_gradient", spy)
    opt = HessianFree(model, loss_fn, cg_max_iter=4, cg_decay=0.5)
    opt.step(x, y)
    previous = opt.state["delta"]
    opt.step(x, y)
    assert starts[0] is None
    np.testing.assert_allclose(host(starts[1]), 0.5 * host(previous), rtol=1e-15)


def test_line_search_satisfies_armijo():
    model, loss_fn, x, y = mlp_problem()
    closure = lambda: loss_fn(model(x), y)
    opt = HessianFree(model, loss_fn, damping=1e-6, adapt_damping=False, backtracking=False,
                      cg_max_iter=50, progress_tol=0.0, lr=4.0)  # fmt: skip
    before = params_of(model)
    g = host(tc.grad(closure, model.parameters()))
    loss = opt.step(x, y)
    alpha = opt.state["alpha"]
    assert alpha in [4.0 * 0.8**k for k in range(21)] or alpha == 0.0
    step = (before - params_of(model)) / alpha  # p
    with tc.no_grad():
        after = closure().item()
    assert after <= loss - 1e-2 * alpha * g @ step + 1e-12


def digits_loss(model, loss_fn, X, Y):
    with tc.no_grad():
        return loss_fn(model(X), Y).item()


@pytest.mark.parametrize("image", [False, True])
def test_decreases_the_loss_on_digits(image):
    X, Y, _, _ = load_digits(image=image)
    rng = np.random.default_rng(0)
    if image:
        conv = nn.Conv2d(1, 4, 3, padding=1, rng=rng)
        model = nn.Sequential(
            conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10, rng=rng)
        )
    else:
        model = nn.Sequential(nn.Linear(64, 32, rng=rng), nn.Tanh(), nn.Linear(32, 10, rng=rng))
    loss_fn = nn.CrossEntropyLoss()
    X, Y = X[:600], Y[:600]
    start = digits_loss(model, loss_fn, X, Y)
    opt = HessianFree(model, loss_fn, cg_max_iter=20)
    for i, (xb, yb) in enumerate(batches(X, Y, 100, rng=0)):
        opt.step(xb, yb)
        if i == 9:
            break
    end = digits_loss(model, loss_fn, X, Y)
    assert end < 0.5 * start, (start, end)


def test_a_non_finite_step_changes_nothing():
    model, loss_fn, x, y = mlp_problem()
    opt = HessianFree(model, loss_fn, cg_max_iter=5)
    opt.step(x, y)
    before, state = params_of(model), opt.state_dict()
    with pytest.raises(NonFiniteError):
        opt.step(x * np.nan, y)
    np.testing.assert_array_equal(params_of(model), before)
    assert opt.state_dict()["state"]["damping"] == state["state"]["damping"]


def test_state_dict_resumes_exactly():
    model, loss_fn, x, y = mlp_problem()
    twin, *_ = mlp_problem()
    opt = HessianFree(model, loss_fn, cg_max_iter=6)
    opt.step(x, y)
    for p, q in zip(twin.parameters(), model.parameters(), strict=True):
        p.data = q.data.copy()
    resumed = HessianFree(twin, loss_fn, cg_max_iter=6)
    resumed.load_state_dict(opt.state_dict())
    opt.step(x, y)
    resumed.step(x, y)
    np.testing.assert_array_equal(params_of(twin), params_of(model))
    with pytest.raises(ValueError, match="cg_decay"):
        HessianFree(model, loss_fn, cg_decay=1.5)


def test_host_transfers_per_step():
    module = get_backend()
    if backend_name() != "cupy" or not hasattr(module, "SYNCS"):
        pytest.skip("counts transfers on the CuPy stand-in only")
    model, loss_fn, x, y = mlp_problem()
    opt = HessianFree(model, loss_fn, cg_max_iter=10, check_every=5, progress_tol=0.0)
    opt.step(x, y)
    module.SYNCS.clear()
    opt.step(x, y)
    # 2 CG checks, 1–8 backtracking candidates, line-search trials (≤ 20), the loss
    assert 2 + 1 + 1 <= len(module.SYNCS) <= 2 + 8 + 20 + 1, module.SYNCS
    opt.line_search = opt.backtracking = False
    module.SYNCS.clear()
    opt.step(x, y)
    assert len(module.SYNCS) == 2 + 1 + 1, module.SYNCS  # CG, L(θ − p) for ρ, the loss
