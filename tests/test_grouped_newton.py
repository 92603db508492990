"""GroupedNewton (Wolinski): the summary (g_bar, H_bar, D), its limits, invariance, the optimiser.

Everything runs in float64 on the selected backend (``conftest.py``). The dense references use
``tinycurv.curvature.dense.hessian`` (p Hessian-vector products with unit vectors).

Inputs are drawn on the host (NumPy generators, so the values are the same on every backend)
and moved with ``tinycurv.backend.asarray`` before they meet backend code; results come back
with ``tinycurv.asnumpy`` for the NumPy references and comparisons. ``grouped_newton_step`` and
the optimiser's rates are host-side (NumPy arrays and Python floats) by design.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import asnumpy, nn
from tinycurv.backend import asarray, xp
from tinycurv.curvature import grouped_newton_step, grouped_summary
from tinycurv.curvature.dense import flatten, hessian
from tinycurv.curvature.grouped import (
    check_groups,
    grouped_gradient_and_hessian,
    grouped_third_order,
)
from tinycurv.data import batches, load_digits
from tinycurv.optim import GroupedNewton
from tinycurv.tensor import Tensor

# ------------------------------------------------------------------------------------ helpers


def _mlp(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Linear(5, 4, rng=rng), nn.Tanh(), nn.Linear(4, 3, rng=rng), nn.Sigmoid(),
        nn.Linear(3, 3, rng=rng),
    )  # fmt: skip


def _cnn(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, rng=rng), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3, rng=rng)
    )


def _problem(kind: str, seed: int = 0):
    """(model, closure, params, u) for a small MLP or CNN with cross-entropy on random data."""
    rng = np.random.default_rng(100 + seed)
    if kind == "mlp":
        model, x = _mlp(seed), rng.standard_normal((7, 5))
    else:
        model, x = _cnn(seed), rng.standard_normal((4, 1, 6, 6))
    y = rng.integers(0, 3, size=x.shape[0])
    loss_fn = nn.CrossEntropyLoss()
    params = model.parameters()
    u = [asarray(rng.standard_normal(p.shape)) for p in params]
    x, y = asarray(x), asarray(y)
    return model, (lambda: loss_fn(model(x), y)), params, u


def _partition_matrix(params, groups) -> np.ndarray:
    """P (n, S): P[j, s] = 1 if scalar parameter j belongs to group s."""
    sizes = [p.size for p in params]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    P = np.zeros((starts[-1], len(groups)))
    for s, group in enumerate(groups):
        for i in group:
            P[starts[i] : starts[i + 1], s] = 1.0
    return P


def _step_vector(u, groups, eta) -> np.ndarray:
    """diag(u) P η, flattened (on the host): the change of θ is minus this."""
    u = [asnumpy(a) for a in u]
    return np.concatenate(
        [np.ravel(eta[s] * u[i]) for i in range(len(u)) for s, g in enumerate(groups) if i in g]
    )


# ------------------------------------------------------------------------ the summary itself


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("groups", [None, "coarse"])
def test_summary_equals_dense_projections(kind, groups):
    """g_bar = Pᵀ diag(u) g and H_bar = Pᵀ diag(u) H diag(u) P against the dense Hessian."""
    model, closure, params, u = _problem(kind)
    if groups == "coarse":  # App. G: a coarser, non-contiguous partition (3 groups)
        n = len(params)
        groups = [[i for i in range(n) if i % 3 == r] for r in range(3)]
    gs = check_groups(groups, len(params))
    g_bar, H_bar, D = grouped_summary(closure, params, u, groups)
    assert g_bar.shape == (len(gs),) and H_bar.shape == (len(gs),) * 2 and D.shape == (len(gs),)
    g_bar, H_bar = asnumpy(g_bar), asnumpy(H_bar)

    P = _partition_matrix(params, gs)
    uf = asnumpy(flatten(u))
    g = asnumpy(flatten(tc.grad(closure, params)))
    H = asnumpy(hessian(closure, params))
    np.testing.assert_allclose(g_bar, P.T @ (uf * g), rtol=1e-12, atol=1e-14)
    want = P.T @ (uf[:, None] * H * uf[None, :]) @ P
    np.testing.assert_allclose(H_bar, want, rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(H_bar, H_bar.T)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_third_order_equals_fd_of_second_directional_derivative(kind):
    """D_s = d/dt ⟨u_s, H(θ + t u_s) u_s⟩ at 0, by central differences of HVPs."""
    model, closure, params, u = _problem(kind)
    D = asnumpy(grouped_third_order(closure, params, u))
    theta = [p.data.copy() for p in params]
    h = 1e-4
    for s in range(len(params)):
        u_s = [u[i] if i == s else xp.zeros_like(u[i]) for i in range(len(params))]

        def second(t, u_s=u_s):
            for p, th, us in zip(params, theta, u_s, strict=True):
                p.data = th + t * us
            hv = tc.hvp(closure, params, u_s)
            return sum(float(xp.sum(a * b)) for a, b in zip(u_s, hv, strict=True))

        fd = (second(h) - second(-h)) / (2 * h)
        for p, th in zip(params, theta, strict=True):
            p.data = th
        assert D[s] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_third_order_lifting_only_the_group_is_exact():
    """Lifting only group s equals lifting every parameter with u_s (zeros elsewhere)."""
    model, closure, params, u = _problem("mlp", seed=3)
    groups = [[0, 3], [1, 2, 5], [4]]
    D = asnumpy(grouped_third_order(closure, params, u, groups))
    for s, group in enumerate(groups):
        u_s = [u[i] if i in group else xp.zeros_like(u[i]) for i in range(len(params))]
        assert D[s] == pytest.approx(tc.taylor(closure, params, u_s)[3], rel=1e-12, abs=1e-14)


def test_float32_model_gives_float32_summary():
    """A float32 network keeps float32 through the sweeps even when the default is float64.

    (Regression: ``Tensor(np.float32(…))`` — a NumPy scalar from a full ``sum`` — used to be
    promoted to the default dtype, so the whole backward ran in float64.)
    """
    tc.set_default_dtype("float32")
    model = _mlp(0)
    tc.set_default_dtype("float64")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 5)).astype(np.float32), rng.integers(0, 3, size=7)
    x, y = asarray(x, dtype=np.float32), asarray(y)
    loss_fn = nn.CrossEntropyLoss()
    closure = lambda: loss_fn(model(x), y)
    params = model.parameters()
    u = [asarray(rng.standard_normal(p.shape).astype(np.float32), dtype=np.float32) for p in params]
    assert all(g.dtype == np.float32 for g in tc.grad(closure, params))
    assert all(a.dtype == np.float32 for a in grouped_summary(closure, params, u))


def test_gradient_and_hessian_part_leaves_params_untouched():
    model, closure, params, u = _problem("mlp")
    before = [p.data.copy() for p in params]
    grouped_summary(closure, params, u)
    for p, b in zip(params, before, strict=True):
        np.testing.assert_array_equal(asnumpy(p.data), asnumpy(b))
        assert not isinstance(p.data, tc.Dual) and p.grad is None


# ---------------------------------------------------------------------- Appendix C: the limits


def _quadratic(sizes, seed=0):
    """L(θ) = ½ θᵀAθ − bᵀθ (A ≻ 0) over parameter tensors of the given sizes."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    M = rng.standard_normal((n, n))
    A = M @ M.T / n + 0.5 * np.eye(n)
    b = rng.standard_normal(n)
    params = [Tensor(asarray(rng.standard_normal(k)), requires_grad=True) for k in sizes]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    blocks = [[asarray(A[starts[i] : starts[i + 1], starts[j] : starts[j + 1]])
               for j in range(len(sizes))]
              for i in range(len(sizes))]  # fmt: skip
    b_parts = [asarray(b[starts[i] : starts[i + 1]]) for i in range(len(sizes))]

    def closure():
        total = 0.0
        for i, p in enumerate(params):
            total = total - (p * b_parts[i]).sum()
            for j, q in enumerate(params):
                total = total + 0.5 * (p * (q @ blocks[i][j].T)).sum()
        return total

    return closure, params, A, b  # A and b on the host, for the references


def test_discrete_partition_lam0_is_newton():
    """App. C: every scalar its own group, u = g, lam_int = 0: the step is H⁻¹g (Newton)."""
    closure, params, A, b = _quadratic([1] * 6)
    theta = asnumpy(flatten([p.data for p in params]))
    g = tc.grad(closure, params)
    np.testing.assert_allclose(asnumpy(flatten(g)), A @ theta - b, rtol=1e-12)
    g_bar, H_bar, D = grouped_summary(closure, params, g)  # canonical = discrete here
    np.testing.assert_allclose(asnumpy(D), 0.0, atol=1e-12)  # a quadratic has no third order
    eta = grouped_newton_step(g_bar, H_bar, D, lam_int=0.0)
    step = _step_vector(g, check_groups(None, len(params)), eta)
    np.testing.assert_allclose(step, np.linalg.solve(A, A @ theta - b), rtol=1e-10)
    np.testing.assert_allclose(theta - step, np.linalg.solve(A, b), rtol=1e-9)  # the minimum


def test_trivial_partition_is_cauchy():
    """App. C: one group (S = 1), u = g, lam_int = 0: the step is (gᵀg / gᵀHg) g (Cauchy)."""
    closure, params, A, b = _quadratic([3, 2, 4], seed=1)
    g = tc.grad(closure, params)
    gf = asnumpy(flatten(g))
    groups = [[0, 1, 2]]
    g_bar, H_bar, D = grouped_summary(closure, params, g, groups)
    eta = grouped_newton_step(g_bar, H_bar, D, lam_int=0.0)
    np.testing.assert_allclose(_step_vector(g, groups, eta), (gf @ gf) / (gf @ A @ gf) * gf)


def test_trivial_partition_on_mlp_is_cauchy_along_u():
    """S = 1 on a network: η = uᵀg / uᵀHu with the dense H."""
    model, closure, params, u = _problem("mlp", seed=2)
    groups = [list(range(len(params)))]
    g_bar, H_bar = grouped_gradient_and_hessian(closure, params, u, groups)
    g_bar, H_bar = asnumpy(g_bar), asnumpy(H_bar)
    uf, g = asnumpy(flatten(u)), asnumpy(flatten(tc.grad(closure, params)))
    H = asnumpy(hessian(closure, params))
    assert g_bar[0] == pytest.approx(uf @ g, rel=1e-12)
    assert H_bar[0, 0] == pytest.approx(uf @ H @ uf, rel=1e-11)


# ----------------------------------------------------------------- Appendix E: invariances


@pytest.mark.parametrize("lam_int", [0.0, 1.0])
def test_rescaling_u_per_group_leaves_step_unchanged(lam_int):
    """u_s → c_s u_s (c_s > 0) gives η_s → η_s / c_s: the step diag(u) P η is the same."""
    if lam_int == 0:  # Newton's step needs H_bar ≻ 0: a strictly convex quadratic
        closure, params, _, _ = _quadratic([2, 3, 1], seed=4)
        g = tc.grad(closure, params)
    else:  # a network, so that D ≠ 0 and the cubic term matters
        _, closure, params, g = _problem("mlp", seed=5)
    gs = check_groups(None, len(params))
    c = np.linspace(0.3, 7.0, len(params))
    steps = []
    for scale in (np.ones(len(params)), c):
        u = [scale[i] * g[i] for i in range(len(params))]
        g_bar, H_bar, D = grouped_summary(closure, params, u)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a fallback η = 0 would make the test vacuous
            eta = grouped_newton_step(g_bar, H_bar, D, lam_int=lam_int)
        steps.append(_step_vector(u, gs, eta))
    assert np.linalg.norm(steps[0]) > 0
    np.testing.assert_allclose(steps[1], steps[0], rtol=1e-8, atol=1e-12)


class _AffineMLP(nn.Module):
    """64 → 16 → 10 tanh MLP whose parameters φ give θ_s = α_s φ_s + β_s (App. E)."""

    def __init__(self, theta, alpha, beta):
        self.alpha, self.beta = list(alpha), list(beta)
        for i, (th, a, bb) in enumerate(zip(theta, alpha, beta, strict=True)):
            setattr(self, f"phi{i}", Tensor((th - bb) / a, requires_grad=True))

    def thetas(self):
        return [
            getattr(self, f"phi{i}") * a + bb
            for i, (a, bb) in enumerate(zip(self.alpha, self.beta, strict=True))
        ]

    def forward(self, x):
        w1, b1, w2, b2 = self.thetas()
        return ((x @ w1.T + b1).tanh()) @ w2.T + b2

    def theta_values(self):
        return [asnumpy(t.data) for t in self.thetas()]


def test_trajectory_invariant_under_affine_reparameterisation():
    """App. E: θ_s = α_s φ_s + β_s. Training φ gives the same θ-trajectory as training θ.

    The claim covers all of Algorithm 1: the momentum buffer transforms as u^φ_s = α_s u^θ_s
    (it is linear in the gradients, which transform so), the summary along u^φ is the θ-summary
    along α_s² u^θ_s, hence eta^φ = eta^θ / α_s², and smoothing, max(·, 0), the global lr and
    the plateau schedule all commute with that positive per-group scaling.
    """
    X, y, _, _ = load_digits()
    rng = np.random.default_rng(0)
    base = nn.Sequential(nn.Linear(64, 16, rng=rng), nn.Tanh(), nn.Linear(16, 10, rng=rng))
    theta0 = [p.data.copy() for p in base.parameters()]
    alpha = [3.0, -0.5, 0.25, -4.0]
    beta = [asarray(rng.standard_normal(t.shape)) for t in theta0]
    model_theta = _AffineMLP(theta0, [1.0] * 4, [xp.zeros_like(t) for t in theta0])
    model_phi = _AffineMLP(theta0, alpha, beta)
    loss_fn = nn.CrossEntropyLoss()
    hp = dict(lr=0.5, update_every=4)
    opts = [GroupedNewton(model_theta, loss_fn, **hp), GroupedNewton(model_phi, loss_fn, **hp)]
    for epoch in range(2):
        losses = [[], []]
        for xb, yb in batches(X[:400], y[:400], batch_size=50, rng=epoch):
            for k, opt in enumerate(opts):
                losses[k].append(opt.step(xb, yb))
        np.testing.assert_allclose(losses[1], losses[0], rtol=1e-9)
        assert [o.end_epoch(np.mean(ls)) for o, ls in zip(opts, losses, strict=True)] == [False] * 2
        for a, b in zip(model_phi.theta_values(), model_theta.theta_values(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    # the rates differ exactly by 1/α_s² (η^φ = η^θ / α²)
    r_theta, r_phi = np.array(opts[0].state["rates"]), np.array(opts[1].state["rates"])
    assert np.any(r_theta > 0)
    np.testing.assert_allclose(r_phi * np.square(alpha), r_theta, rtol=1e-7)
    assert losses[0][-1] < losses[0][0]


# --------------------------------------------------------------------------- the optimiser


def _digits_mlp(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(64, 32, rng=rng), nn.Tanh(), nn.Linear(32, 10, rng=rng))


def test_training_decreases_loss_on_digits():
    X, y, Xt, yt = load_digits()
    model = _digits_mlp()
    opt = GroupedNewton(model, nn.CrossEntropyLoss())
    means = []
    for epoch in range(5):
        means.append(np.mean([opt.step(xb, yb) for xb, yb in batches(X, y, 100, rng=epoch)]))
        opt.end_epoch(means[-1])
    assert means[-1] < 0.4 * means[0]
    acc = np.mean(np.argmax(asnumpy(model(asarray(Xt)).data), axis=1) == yt)
    assert acc > 0.85
    rates = np.array(opt.history["rates"])
    assert rates.shape == (opt.t, 4) and np.all(rates >= 0) and np.any(rates > 0)


def test_algorithm_1_bookkeeping():
    """u recursion, first η̃ = η*, smoothing, rates = lr·max(η̃, 0) frozen between updates."""
    X, y, _, _ = load_digits()
    model = _digits_mlp(1)
    hp = dict(lr=0.3, lam_int=2.0, momentum=0.8, dampening=0.6, lr_momentum=0.25, update_every=3)
    opt = GroupedNewton(model, nn.CrossEntropyLoss(), **hp)
    params = model.parameters()
    data = list(batches(X, y, 64, rng=0))[:7]
    u_prev, eta_prev = None, None
    for t, (xb, yb) in enumerate(data):
        closure = lambda xb=xb, yb=yb: nn.CrossEntropyLoss()(model(xb), yb)
        theta = [p.data.copy() for p in params]
        g = tc.grad(closure, params)
        u = g if u_prev is None else [0.8 * a + 0.4 * b for a, b in zip(u_prev, g, strict=True)]
        if t % 3 == 0:
            eta_star = grouped_newton_step(*grouped_summary(closure, params, u), lam_int=2.0)
            eta = eta_star if eta_prev is None else 0.25 * eta_prev + 0.75 * eta_star
            rates = 0.3 * np.maximum(eta, 0.0)
            eta_prev = eta
        opt.step(xb, yb)
        np.testing.assert_allclose(opt.state["rates"], rates, rtol=1e-10)
        np.testing.assert_allclose(opt.state["eta"], eta_prev, rtol=1e-10)
        for p, th, ui, s in zip(params, theta, u, range(4), strict=True):
            np.testing.assert_allclose(
                asnumpy(p.data), asnumpy(th - rates[s] * ui), rtol=1e-12, atol=1e-14
            )
        u_prev = u
    assert [d["step"] for d in opt.history["updates"]] == [0, 3, 6]
    assert len(opt.history["rates"]) == 7


def test_coarse_groups_share_one_rate():
    """App. G: groups=[[0, 2], [1, 3]] (weights, biases): S = 2 rates, one per group."""
    X, y, _, _ = load_digits()
    model = _digits_mlp(3)
    params = model.parameters()
    opt = GroupedNewton(model, nn.CrossEntropyLoss(), groups=[[0, 2], [1, 3]], lr=0.5)
    theta = [p.data.copy() for p in params]
    opt.step(X[:64], y[:64])
    rates = opt.state["rates"]
    assert len(rates) == 2 and len(opt.state["summary"]["H_bar"]) == 2
    for i, p in enumerate(params):
        np.testing.assert_allclose(
            asnumpy(p.data), asnumpy(theta[i] - rates[i % 2] * opt.state["u"][i])
        )


def test_curvature_batch_options():
    X, y, _, _ = load_digits()
    xb, yb = X[:32], y[:32]
    # fixed batch: the summary is computed there, not on the training batch
    model = _digits_mlp(2)
    fixed = (X[100:150], y[100:150])
    opt = GroupedNewton(model, nn.CrossEntropyLoss(), curvature_batch=fixed)
    params = model.parameters()
    g = tc.grad(lambda: nn.CrossEntropyLoss()(model(xb), yb), params)
    want = grouped_summary(lambda: nn.CrossEntropyLoss()(model(fixed[0]), fixed[1]), params, g)
    opt.step(xb, yb)
    np.testing.assert_allclose(opt.state["summary"]["g_bar"], asnumpy(want[0]), rtol=1e-10)
    # sampled: drawn by opt.rng from curvature_data, reproducibly
    runs = []
    for _ in range(2):
        model = _digits_mlp(2)
        opt = GroupedNewton(
            model, nn.CrossEntropyLoss(), curvature_batch=40, curvature_data=(X, y), seed=7
        )
        for t in range(3):
            opt.step(X[32 * t : 32 * t + 32], y[32 * t : 32 * t + 32])
        runs.append(opt.state["summary"]["g_bar"])
    assert runs[0] == runs[1]


def test_non_finite_summary_gives_zero_eta_star(monkeypatch):
    import tinycurv.optim.grouped_newton as module

    X, y, _, _ = load_digits()
    opt = GroupedNewton(_digits_mlp(), nn.CrossEntropyLoss(), update_every=1)
    opt.step(X[:20], y[:20])
    eta = np.array(opt.state["eta"])
    real = module.grouped_summary
    nan = lambda *args: tuple(np.full_like(a, np.nan) for a in real(*args))
    monkeypatch.setattr(module, "grouped_summary", nan)
    with pytest.warns(RuntimeWarning, match="not finite"):
        opt.step(X[20:40], y[20:40])
    np.testing.assert_allclose(opt.state["eta"], 0.5 * eta)  # 0 smoothed in, as the reference
    assert opt.history["updates"][-1]["case"] == "not finite"


def test_end_epoch_plateau_schedule():
    X, y, _, _ = load_digits()
    opt = GroupedNewton(_digits_mlp(), nn.CrossEntropyLoss(), lr=0.2)
    opt.step(X[:50], y[:50])
    rates = list(opt.state["rates"])
    assert opt.end_epoch(1.0) is False  # first epoch: the best so far
    assert opt.end_epoch(0.5) is False  # improved
    assert opt.end_epoch(0.49999) is True  # not by a relative 1e-4: halve (patience 0)
    assert opt.lr == pytest.approx(0.1)
    np.testing.assert_allclose(opt.state["rates"], 0.5 * np.array(rates))
    assert opt.state["best_loss"] == 0.49999
    assert opt.end_epoch(0.4) is False
    opt.hyperparameters["plateau_patience"] = 1
    assert opt.end_epoch(0.45) is False and opt.end_epoch(0.41) is True
    assert opt.lr == pytest.approx(0.05)


def test_state_dict_resume_is_exact():
    X, y, _, _ = load_digits()
    data = list(batches(X, y, 64, rng=1))[:9]
    hp = dict(update_every=4, curvature_batch=30, curvature_data=(X, y), seed=3)
    model = _digits_mlp(4)
    opt = GroupedNewton(model, nn.CrossEntropyLoss(), **hp)
    for xb, yb in data[:5]:
        opt.step(xb, yb)
    state, weights = opt.state_dict(), model.state_dict()
    rng_state = opt.rng.bit_generator.state
    tail = [opt.step(xb, yb) for xb, yb in data[5:]]

    model2 = _digits_mlp(9)
    model2.load_state_dict(weights)
    opt2 = GroupedNewton(model2, nn.CrossEntropyLoss(), **hp)
    opt2.load_state_dict(state)
    opt2.rng.bit_generator.state = rng_state
    assert [opt2.step(xb, yb) for xb, yb in data[5:]] == tail
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        np.testing.assert_array_equal(asnumpy(a.data), asnumpy(b.data))


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "groups, match",
    [
        ([[0, 1], [], [2, 3]], "empty"),
        ([[0, 1], [1, 2, 3]], "is in groups"),
        ([[0, 1], [2]], r"in no group"),
        ([[0, 1], [2, 3, 4]], "out of range"),
        ([[0, 1.5], [2, 3]], "not an integer"),
        ([[0, True], [2, 3]], "not an integer"),
        ([0, 1, 2, 3], "list of parameter indices"),
        ("0123", "list of lists"),
    ],
)
def test_groups_validation(groups, match):
    model, closure, params, u = _problem("mlp")
    params, u = params[:4], u[:4]
    with pytest.raises(ValueError, match=match):
        grouped_summary(closure, params, u, groups)
    with pytest.raises(ValueError, match=match):
        GroupedNewton(_digits_mlp(), nn.CrossEntropyLoss(), groups=groups)


def test_direction_validation():
    model, closure, params, u = _problem("mlp")
    with pytest.raises(ValueError, match="direction has"):
        grouped_summary(closure, params, u[:-1])
    with pytest.raises(ValueError, match="shape"):
        grouped_summary(closure, params, [np.zeros(3)] + u[1:])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=0.0),
        dict(lam_int=-1.0),
        dict(momentum=1.5),
        dict(dampening=-0.1),
        dict(lr_momentum=1.0),
        dict(update_every=0),
        dict(update_every=2.5),
        dict(plateau_factor=1.0),
        dict(plateau_patience=-1),
        dict(curvature_batch=10),  # no curvature_data
        dict(curvature_batch=0, curvature_data=(np.zeros((5, 64)), np.zeros(5, int))),
        dict(curvature_batch=6, curvature_data=(np.zeros((5, 64)), np.zeros(5, int))),
        dict(curvature_batch="all"),
    ],
)
def test_hyperparameter_validation(kwargs):
    with pytest.raises(ValueError):
        GroupedNewton(_digits_mlp(), nn.CrossEntropyLoss(), **kwargs)
