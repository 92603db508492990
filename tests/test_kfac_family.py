"""The K-FAC family beyond the plain step: exact damping, the linear operator, KL clipping,
KFAC-reduce (and, where present, the quadratic-model step rule, adaptive damping and EKFAC).

Every function is checked against its dense counterpart: ``inv(kron(G, A) + λI) vec ∇``, the
blocks ``kron(G, A)`` at ``layer_indices``, ``tinycurv.curvature.dense.ggn``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from helpers import rel_err

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray, backend_name, get_backend, xp
from tinycurv.curvature import dense
from tinycurv.curvature import kfac as kfac_math
from tinycurv.curvature.kfac_operator import KFACOperator
from tinycurv.curvature.statistics import curvature_layers, layer_statistics
from tinycurv.optim import KFAC
from tinycurv.tensor import Tensor

B = 5


def _np(a):
    return np.array(tc.asnumpy(a), dtype=np.float64)


def _spd(rng, n):
    X = rng.standard_normal((n, n + 2))
    return X @ X.T / n


def _mlp():
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Linear(6, 5, rng=rng), nn.Tanh(), nn.Linear(5, 3, rng=rng))


def _cnn():
    rng = np.random.default_rng(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, rng=rng), nn.Tanh(), nn.Flatten(), nn.Linear(18, 3, rng=rng)
    )


def _data(shape, loss, seed=1, m=3):
    rng = np.random.default_rng(seed)
    x = asarray(rng.standard_normal(shape))
    if loss == "ce":
        return x, asarray(rng.integers(0, m, shape[0]), dtype="int64")
    return x, asarray(rng.standard_normal((shape[0], m)))


def _loss(loss):
    return nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()


def _layer_grad(s, params, layer, wd=0.0):
    ids = [id(p) for p in params]
    i, j = ids.index(id(layer.weight)), ids.index(id(layer.bias))
    W = xp.reshape(s.grads[i] + wd * params[i].data, (layer.weight.shape[0], -1))
    return xp.concatenate([W, (s.grads[j] + wd * params[j].data)[:, None]], axis=1), i, j


def _moved(model, opt, x, y):
    """(θ_before − θ_after) per parameter after one step, on the host."""
    before = [_np(p.data) for p in model.parameters()]
    opt.step(x, y)
    return [b - _np(p.data) for b, p in zip(before, model.parameters(), strict=True)]


def _as_layer(moved, k, layer):
    return np.concatenate(
        [moved[2 * k].reshape(layer.weight.shape[0], -1), moved[2 * k + 1][:, None]], axis=1
    )


# -- 1. exact damping ------------------------------------------------------------------------------


@pytest.mark.parametrize("damping", [1e-3, 0.3])
def test_exact_damping_is_the_dense_damped_kronecker_inverse(damping):
    rng = np.random.default_rng(2)
    A, G, grad = _spd(rng, 4), _spd(rng, 3), rng.standard_normal((3, 4))
    want = np.linalg.solve(np.kron(G, A) + damping * np.eye(12), grad.reshape(-1))
    A_, G_, g_ = asarray(A), asarray(G), asarray(grad)
    got = kfac_math.kfac_direction_exact(g_, A_, G_, damping)
    assert rel_err(_np(got).reshape(-1), want) < 1e-10
    via = kfac_math.kfac_direction(g_, A_, G_, damping, damping_mode="exact")
    assert rel_err(via, got) < 1e-13
    eig = kfac_math.kfac_eigen(A_, G_)
    assert rel_err(kfac_math.kfac_direction_exact(g_, A_, G_, damping, eigen=eig), got) < 1e-13
    # the rank-b form gives the same
    g, a = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    a_t = np.concatenate([a, np.ones((7, 1))], axis=1)
    rank_b = kfac_math.kfac_direction(
        None, A_, G_, damping, g=asarray(g), a=asarray(a), damping_mode="exact"
    )
    want_b = np.linalg.solve(np.kron(G, A) + damping * np.eye(12), (g.T @ a_t).reshape(-1))
    assert rel_err(_np(rank_b).reshape(-1), want_b) < 1e-10
    # factored damping differs from exact damping
    factored = kfac_math.kfac_direction(g_, A_, G_, damping)
    assert rel_err(factored, got) > 1e-4


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_kfac_exact_damping_step(arch):
    """Δ of ``KFAC(damping_mode="exact")`` is (G ⊗ A + λI)⁻¹ ∇ of the recorded factors."""
    model = _mlp() if arch == "mlp" else _cnn()
    x, y = _data((B, 6) if arch == "mlp" else (B, 1, 5, 5), "ce")
    loss_fn = _loss("ce")
    s = layer_statistics(model, loss_fn, x, y, "exact")
    want = []
    for layer, (A, G) in zip(s.layers, kfac_math.kfac_factors(model, loss_fn, x, y), strict=True):
        grad = _layer_grad(s, model.parameters(), layer)[0]
        dense_K = np.kron(_np(G), _np(A)) + 0.05 * np.eye(G.shape[0] * A.shape[0])
        want.append(np.linalg.solve(dense_K, _np(grad).reshape(-1)).reshape(grad.shape))
    opt = KFAC(model, loss_fn, lr=0.5, damping=0.05, mode="exact", damping_mode="exact")
    moved = _moved(model, opt, x, y)
    for k, layer in enumerate(curvature_layers(model)):
        assert rel_err(_as_layer(moved, k, layer) / 0.5, want[k]) < 1e-9, k
    assert {"A_evals", "A_evecs", "G_evals", "G_evecs"} <= set(opt.state)
    assert "A_chol" not in opt.state


def test_exact_damping_refreshes_eigendecompositions_on_schedule_and_resumes():
    loss_fn = _loss("ce")
    data = [_data((B, 6), "ce", seed=s) for s in range(5)]
    hp = dict(lr=0.2, damping=0.1, mode="mc", damping_mode="exact", inv_every=2, seed=3)
    a, b = _mlp(), _mlp()
    opt_a = KFAC(a, loss_fn, **hp)
    for x, y in data[:3]:
        opt_a.step(x, y)
    evecs_after_3 = [_np(U) for U in opt_a.state["A_evecs"]]
    opt_b = KFAC(b, loss_fn, **hp)
    for p, q in zip(b.parameters(), a.parameters(), strict=True):
        p.data = q.data.copy()
    opt_b.load_state_dict(opt_a.state_dict())
    for x, y in data[3:]:
        opt_a.step(x, y)
        opt_b.step(x, y)
    assert (
        rel_err([_np(p.data) for p in a.parameters()], [_np(p.data) for p in b.parameters()]) == 0
    )
    # step 3 (t = 2) refreshed; step 4 (t = 3) kept them; step 5 (t = 4) refreshed again
    assert rel_err([_np(U) for U in opt_a.state["A_evecs"]], evecs_after_3) > 0


# -- 2. the linear operator ------------------------------------------------------------------------


class _Scale(nn.Module):
    """y = x · s with a parameter s in no Linear/Conv2d layer (the operator's identity block)."""

    def __init__(self, m):
        self.s = Tensor(asarray(np.linspace(0.5, 1.5, m)), requires_grad=True)

    def forward(self, x):
        return x * self.s


def _operator_model():
    rng = np.random.default_rng(4)
    return nn.Sequential(
        nn.Linear(4, 3, rng=rng), nn.Tanh(), nn.Linear(3, 3, bias=False, rng=rng), _Scale(3)
    )


def _dense_kfac(model, factors):
    p = sum(q.size for q in model.parameters())
    K = np.zeros((p, p))
    covered = np.zeros(p, dtype=bool)
    for layer, (A, G) in zip(curvature_layers(model), factors, strict=True):
        i = _np(kfac_math.layer_indices(model, layer)).astype(int)
        K[np.ix_(i, i)] = np.kron(_np(G), _np(A))
        covered[i] = True
    return K, covered


@pytest.mark.parametrize(
    "damping_mode, pi", [("factored", False), ("factored", True), ("exact", False)]
)
def test_operator_equals_its_dense_counterparts(damping_mode, pi):
    model, loss_fn = _operator_model(), _loss("mse")  # CE's exact G is singular: logdet = −inf
    x, y = _data((B, 4), "mse")
    lam = 0.1
    op = KFACOperator(
        model, loss_fn, x, y, "exact", lam, damping_mode=damping_mode, pi_correction=pi
    )
    factors = kfac_math.kfac_factors(model, loss_fn, x, y, "exact")
    K, covered = _dense_kfac(model, factors)
    K[~covered, ~covered] = 1.0  # the identity block of the parameter s
    p = K.shape[0]
    assert op.shape == (p, p) and int((~covered).sum()) == 3
    assert rel_err(op.to_dense(), K) < 1e-14
    v = np.random.default_rng(5).standard_normal((p, 2))
    assert rel_err(op.matvec(asarray(v)), K @ v) < 1e-12
    assert rel_err(op @ asarray(v[:, 0]), K @ v[:, 0]) < 1e-12
    assert rel_err(op.trace(), np.trace(K)) < 1e-12
    assert rel_err(op.logdet(), np.linalg.slogdet(K)[1]) < 1e-10
    # the damped inverse, block by block; identity on s
    D = np.eye(p)
    for layer, (A, G) in zip(curvature_layers(model), factors, strict=True):
        i = _np(kfac_math.layer_indices(model, layer)).astype(int)
        if damping_mode == "exact":
            D[np.ix_(i, i)] = np.kron(_np(G), _np(A)) + lam * np.eye(len(i))
        else:
            K_A, K_G = kfac_math.damped_factors(A, G, lam, pi)
            D[np.ix_(i, i)] = np.kron(_np(K_G), _np(K_A))
    assert rel_err(op.solve(asarray(v)), np.linalg.solve(D, v)) < 1e-10
    assert rel_err(op.solve(asarray(v[:, 0])), np.linalg.solve(D, v[:, 0])) < 1e-10


def test_operator_is_the_ggn_where_kfac_is_exact():
    """One Linear layer under MSE: the undamped operator is the dense GGN."""
    rng = np.random.default_rng(6)
    model, loss_fn = nn.Sequential(nn.Linear(4, 3, rng=rng)), _loss("mse")
    x, y = _data((7, 4), "mse")
    op = KFACOperator(model, loss_fn, x, y, "exact")
    assert rel_err(op.to_dense(), dense.ggn(model, loss_fn, x, y)) < 1e-12


# -- 3. KL clipping --------------------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [1e-6, 1e6])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_kl_clip_scales_the_update(kappa, momentum):
    loss_fn, lr = _loss("ce"), 0.3
    x, y = _data((B, 6), "ce")
    plain, clipped = _mlp(), _mlp()
    hp = dict(lr=lr, damping=0.05, mode="exact", momentum=momentum, weight_decay=0.01)
    s = layer_statistics(plain, loss_fn, x, y, None)
    grads = [_np(g) + 0.01 * _np(p.data) for g, p in zip(s.grads, plain.parameters(), strict=True)]
    delta = _moved(plain, KFAC(plain, loss_fn, **hp), x, y)
    delta = [d / lr for d in delta]
    quad = lr**2 * sum(float(np.sum(d * g)) for d, g in zip(delta, grads, strict=True))
    nu = min(1.0, np.sqrt(kappa / quad))
    opt = KFAC(clipped, loss_fn, kl_clip=kappa, **hp)
    got = _moved(clipped, opt, x, y)
    assert rel_err(got, [lr * nu * d for d in delta]) < 1e-10
    assert (nu < 1) == (kappa < 1)
    with pytest.raises(ValueError):
        KFAC(_mlp(), loss_fn, kl_clip=0.0)


# -- 7. KFAC-reduce --------------------------------------------------------------------------------


def _pooled_conv():
    """A layer shared over 9 locations followed by mean pooling: (b, 1, 4, 4) → (b, 3)."""
    rng = np.random.default_rng(7)
    return nn.Sequential(nn.Conv2d(2, 3, 2, rng=rng), nn.AvgPool2d(3), nn.Flatten())


def test_kfac_reduce_is_exact_for_shared_layer_with_mean_pooling():
    model, loss_fn = _pooled_conv(), _loss("mse")
    x, y = _data((6, 2, 4, 4), "mse")
    GGN = _np(dense.ggn(model, loss_fn, x, y))
    (layer,) = curvature_layers(model)
    i = _np(kfac_math.layer_indices(model, layer)).astype(int)
    want = GGN[np.ix_(i, i)]
    ((A, G),) = kfac_math.kfac_factors(model, loss_fn, x, y, "exact", kfac_approx="reduce")
    assert rel_err(np.kron(_np(G), _np(A)), want) < 1e-12
    ((A, G),) = kfac_math.kfac_factors(model, loss_fn, x, y, "exact")
    assert rel_err(np.kron(_np(G), _np(A)), want) > 1e-3  # expand is not exact here


def test_kfac_reduce_equals_expand_for_linear_layers_and_reaches_the_optimiser():
    loss_fn = _loss("ce")
    x, y = _data((B, 6), "ce")
    e = kfac_math.kfac_factors(_mlp(), loss_fn, x, y, "exact")
    r = kfac_math.kfac_factors(_mlp(), loss_fn, x, y, "exact", kfac_approx="reduce")
    assert rel_err([F for pair in r for F in pair], [F for pair in e for F in pair]) < 1e-14
    model = _cnn()
    xc, yc = _data((B, 1, 5, 5), "ce")
    opt = KFAC(model, loss_fn, mode="exact", kfac_approx="reduce")
    opt.step(xc, yc)
    want = kfac_math.kfac_factors(_cnn(), loss_fn, xc, yc, "exact", kfac_approx="reduce")
    assert rel_err(opt.state["A"][0], want[0][0]) < 1e-13
    assert rel_err(opt.state["G"][0], want[0][1]) < 1e-13
    with pytest.raises(ValueError):
        KFAC(model, loss_fn, kfac_approx="shrink")


def test_defaults_are_unchanged():
    opt = KFAC(_mlp(), _loss("ce"))
    assert (opt.damping_mode, opt.kl_clip, opt.kfac_approx) == ("factored", None, "expand")
    assert (opt.step_rule, opt.adapt_damping, opt.eigen_correction) == ("fixed", False, False)


@pytest.mark.parametrize(
    "options",
    [
        {"damping_mode": "exact"},
        {"kl_clip": 1e-3},
        {"step_rule": "qmodel"},
        {"eigen_correction": True},
        {"kfac_approx": "reduce"},
        {"adapt_damping": True, "adapt_every": 1},
        {"adapt_damping": True, "adapt_every": 2, "step_rule": "qmodel"},
    ],
)
def test_options_add_no_host_transfer(options):
    """Per step only the loss read (optim/base.py) and, with Cholesky factors, their one
    validity check (backend.py) transfer (CuPy stand-in only)."""
    module = get_backend()
    if backend_name() != "cupy" or not hasattr(module, "SYNCS"):
        pytest.skip("counts transfers on the CuPy stand-in only (tinycurv/testing/cupy_stand_in)")
    opt = KFAC(_mlp(), _loss("ce"), lr=0.1, damping=0.1, seed=0, **options)
    data = [_data((B, 6), "ce", seed=s) for s in range(5)]
    for x, y in data[:2]:
        opt.step(x, y)
    module.SYNCS.clear()
    for x, y in data[2:]:
        opt.step(x, y)
    counts = Counter(where.rsplit(":", 1)[0] for _, where in module.SYNCS)
    cholesky = "damping_mode" not in options and "eigen_correction" not in options
    assert counts == Counter({"optim/base.py": 3, **({"backend.py": 3} if cholesky else {})})


# -- 4. step size and momentum from the quadratic model --------------------------------------------


def test_qmodel_coefficients_are_the_dense_2x2_solve():
    rng = np.random.default_rng(8)
    p, lam = 9, 0.07
    F = _spd(rng, p)
    delta, prev, grad = (rng.standard_normal(p) for _ in range(3))
    args = [asarray(v) for v in (delta, prev, grad, F @ delta, F @ prev)]
    alpha, mu, value = kfac_math.qmodel_coefficients(*args, lam)
    Fl = F + lam * np.eye(p)
    U = np.stack([delta, prev], axis=1)
    want = -np.linalg.solve(U.T @ Fl @ U, U.T @ grad)
    assert rel_err([alpha, mu], list(want)) < 1e-12
    d = U @ want
    assert rel_err(value, 0.5 * d @ Fl @ d + grad @ d) < 1e-12
    a1, m1, v1 = kfac_math.qmodel_coefficients(args[0], None, args[2], args[3], None, lam)
    assert rel_err(a1, -(grad @ delta) / (delta @ Fl @ delta)) < 1e-12 and float(m1) == 0.0
    # δ₀ ∥ Δ: the 2×2 system is singular, μ = 0
    a2, m2, _ = kfac_math.qmodel_coefficients(
        args[0], 2 * args[0], args[2], args[3], 2 * args[3], lam
    )
    assert rel_err(a2, a1) < 1e-10 and float(m2) == 0.0


def test_qmodel_step_uses_the_dense_ggn(monkeypatch):
    """Over 3 steps: (α, μ) = the 2×2 solve with the dense minibatch GGN + (λ + η)I, and
    δ = αΔ + μδ₀ is the update."""
    model, loss_fn, lam, wd = _mlp(), _loss("ce"), 0.05, 0.01
    calls = []
    original = kfac_math.qmodel_coefficients

    def spy(*args):
        out = original(*args)
        calls.append(
            ([None if a is None else _np(a) for a in args[:5]], args[5], _np(out[0]), _np(out[1]))
        )
        return out

    monkeypatch.setattr(kfac_math, "qmodel_coefficients", spy)
    opt = KFAC(model, loss_fn, damping=lam, weight_decay=wd, mode="exact", step_rule="qmodel")
    for t in range(3):
        x, y = _data((B, 6), "ce", seed=10 + t)
        GGN = _np(dense.ggn(model, loss_fn, x, y))
        s = layer_statistics(model, loss_fn, x, y, None)
        grad = np.concatenate(
            [
                (_np(g) + wd * _np(p.data)).reshape(-1)
                for g, p in zip(s.grads, model.parameters(), strict=True)
            ]
        )
        before = np.concatenate([_np(p.data).reshape(-1) for p in model.parameters()])
        opt.step(x, y)
        after = np.concatenate([_np(p.data).reshape(-1) for p in model.parameters()])
        (delta, prev, g, F_delta, F_prev), lam_eta, alpha, mu = calls[-1]
        assert lam_eta == lam + wd
        assert rel_err(g, grad) < 1e-12
        assert rel_err(F_delta, GGN @ delta) < 1e-10
        U = np.stack([delta] if prev is None else [delta, prev], axis=1)
        if prev is not None:
            assert rel_err(F_prev, GGN @ prev) < 1e-10
        Fl = GGN + (lam + wd) * np.eye(len(grad))
        want = -np.linalg.solve(U.T @ Fl @ U, U.T @ grad)
        assert rel_err([alpha, mu][: len(want)], list(want)) < 1e-9, t
        assert rel_err(after - before, U @ want) < 1e-9, t
        assert (prev is None) == (t == 0)


# -- 5. adaptive damping ---------------------------------------------------------------------------


def test_levenberg_marquardt_rule_over_a_scripted_sequence():
    omega = (19 / 20) ** 5
    lam, history = 1.0, []
    for rho in [0.9, 0.9, 0.5, 0.1, -2.0, float("nan"), 0.76, 0.25, 0.75]:
        lam = kfac_math.levenberg_marquardt(lam, rho, omega)
        history.append(lam)
    want = [omega, omega**2, omega**2, omega, 1.0, 1 / omega, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(history, want, rtol=1e-14)


@pytest.mark.parametrize("step_rule, lr", [("fixed", 0.5), ("fixed", 2.0), ("qmodel", 0.5)])
def test_adaptive_damping_ratio_is_the_dense_quadratic_models(step_rule, lr):
    """ρ > ¾ (λ falls) for lr = 0.5 and the quadratic model, ρ < ¼ (λ rises) for lr = 2."""
    model, loss_fn, wd = _mlp(), _loss("mse"), 0.01
    opt = KFAC(model, loss_fn, lr=lr, damping=0.3, momentum=0.5, weight_decay=wd, mode="exact",
               step_rule=step_rule, adapt_damping=True, adapt_every=2)  # fmt: skip
    omega, lam, history = (19 / 20) ** 2, 0.3, []
    for t in range(6):
        x, y = _data((B, 6), "mse", seed=20 + t)
        GGN = _np(dense.ggn(model, loss_fn, x, y))
        s = layer_statistics(model, loss_fn, x, y, None)
        params = model.parameters()
        grad = np.concatenate(
            [(_np(g) + wd * _np(p.data)).reshape(-1) for g, p in zip(s.grads, params, strict=True)]
        )
        before = np.concatenate([_np(p.data).reshape(-1) for p in params])
        h0 = opt.step(x, y)
        d = np.concatenate([_np(p.data).reshape(-1) for p in params]) - before
        if t % 2 == 1:  # every T₁ = 2 steps
            h1 = float(_np(loss_fn(model(x), y).data))
            M = 0.5 * d @ (GGN + (lam + wd) * np.eye(len(d))) @ d + grad @ d
            rho = (h1 - h0) / M
            got = float(_np(opt.state["reduction_ratio"])[0])
            assert abs(got - rho) < 1e-8 * max(1.0, abs(rho)), t
            lam = kfac_math.levenberg_marquardt(lam, rho, omega)
            history.append(lam)
        got = float(_np(opt.state["damping"])[0]) if "damping" in opt.state else 0.3
        assert got == pytest.approx(lam, rel=1e-12)
    assert list(_np(opt.state["damping_history"])) == pytest.approx(history, rel=1e-12)
    assert (history[-1] > 0.3) == (lr > 1)
    saved = opt.state_dict()
    assert list(saved["state"]["damping_history"]) == pytest.approx(history, rel=1e-12)
    again, ref = _mlp(), _mlp()
    for p, q, r in zip(again.parameters(), model.parameters(), ref.parameters(), strict=True):
        p.data, r.data = q.data.copy(), q.data.copy()
    resumed = KFAC(again, loss_fn, step_rule=step_rule, adapt_damping=True, adapt_every=2)
    resumed.load_state_dict(saved)
    x, y = _data((B, 6), "mse", seed=40)
    for o in (opt, resumed):
        o.step(x, y)
        o.step(x, y)  # an adaptation step: the resumed λ and history continue exactly
    assert rel_err(resumed.state["damping_history"], opt.state["damping_history"]) == 0
    assert rel_err([p.data for p in again.parameters()], [p.data for p in model.parameters()]) == 0


# -- 6. EKFAC --------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_ekfac_scaling_is_the_diagonal_of_the_rotated_empirical_fisher(arch):
    model, loss_fn = (_mlp(), _loss("ce")) if arch == "mlp" else (_cnn(), _loss("ce"))
    x, y = _data((B, 6) if arch == "mlp" else (B, 1, 5, 5), "ce")
    F = _np(dense.fisher(model, loss_fn, x, y, "empirical"))
    s = layer_statistics(model, loss_fn, x, y, "empirical")
    for layer, a, g_bar, (A, G) in zip(
        s.layers,
        s.a,
        s.g_bar,
        kfac_math.kfac_factors(model, loss_fn, x, y, "empirical"),
        strict=True,
    ):
        _, U_A, _, U_G = kfac_math.kfac_eigen(A, G)
        got = kfac_math.ekfac_scaling(a, g_bar, layer, U_A, U_G, s.samples)
        i = _np(kfac_math.layer_indices(model, layer)).astype(int)
        U = np.kron(_np(U_G), _np(U_A))
        want = np.diag(U.T @ F[np.ix_(i, i)] @ U).reshape(got.shape)
        assert rel_err(got, want) < 1e-10


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_ekfac_step(arch):
    """Δ = U (Uᵀ∇ / (s + λ)), U from the factors, s from the batch's per-sample gradients."""
    model = _mlp() if arch == "mlp" else _cnn()
    loss_fn, lam = _loss("ce"), 0.05
    x, y = _data((B, 6) if arch == "mlp" else (B, 1, 5, 5), "ce")
    s = layer_statistics(model, loss_fn, x, y, "empirical")
    F = _np(dense.fisher(model, loss_fn, x, y, "empirical"))
    want = []
    for layer, (A, G) in zip(
        s.layers, kfac_math.kfac_factors(model, loss_fn, x, y, "empirical"), strict=True
    ):
        _, U_A, _, U_G = kfac_math.kfac_eigen(A, G)
        i = _np(kfac_math.layer_indices(model, layer)).astype(int)
        U = np.kron(_np(U_G), _np(U_A))
        D = np.diag(U.T @ F[np.ix_(i, i)] @ U)
        grad = _np(_layer_grad(s, model.parameters(), layer)[0])
        want.append((U @ ((U.T @ grad.reshape(-1)) / (D + lam))).reshape(grad.shape))
    opt = KFAC(model, loss_fn, lr=0.5, damping=lam, mode="empirical", eigen_correction=True)
    moved = _moved(model, opt, x, y)
    for k, layer in enumerate(curvature_layers(model)):
        assert rel_err(_as_layer(moved, k, layer) / 0.5, want[k]) < 1e-9, k
    for x, y in [_data((B, 6) if arch == "mlp" else (B, 1, 5, 5), "ce", seed=s) for s in (2, 3)]:
        opt.step(x, y)  # EMA of s, refreshed bases
    assert len(opt.state["scaling"]) == 2
