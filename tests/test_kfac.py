"""K-FAC: the Kronecker factors (tinycurv.curvature.kfac) and the optimiser (tinycurv.optim.KFAC).

Factors are checked against the dense GGN / Fisher of ``tinycurv.curvature.dense`` in the cases
where K-FAC is exact (one Linear layer under MSE; batch size 1 in exact mode; one Conv2d under
MSE), against per-sample loops (empirical mode), and in the limit of many sampled targets (mc).
The optimiser is checked against the step written out by hand with NumPy, against the
least-squares solution (one Newton step), in its large-damping limit, on the digits data, and
for exact resumption from ``state_dict``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from helpers import rel_err

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray, xp
from tinycurv.curvature import dense, statistics
from tinycurv.curvature import kfac as kfac_module
from tinycurv.curvature.kfac import (
    curvature_layers,
    damped_factors,
    homogeneous,
    kfac_dampings,
    kfac_direction,
    layer_indices,
    layer_statistics,
)
from tinycurv.curvature.kfac import kfac_factors as _kfac_factors
from tinycurv.curvature.kfac import sampled_output_gradients as _sampled_output_gradients
from tinycurv.curvature.linalg import cho_factor
from tinycurv.data import batches, load_digits
from tinycurv.optim import KFAC


def _mlp(rng, sizes, act=nn.Tanh, bias=True):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias, rng=rng))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _targets(loss, rng, b, m):
    if loss == "ce":
        return nn.CrossEntropyLoss(), rng.integers(0, m, size=b)
    return nn.MSELoss(), rng.standard_normal((b, m))


def kfac_factors(*args, **kwargs):
    """``tinycurv.curvature.kfac.kfac_factors`` with the factors copied to the host."""
    return [(tc.asnumpy(A), tc.asnumpy(G)) for A, G in _kfac_factors(*args, **kwargs)]


def sampled_output_gradients(*args, **kwargs):
    """``tinycurv.curvature.kfac.sampled_output_gradients`` with every array on the host."""
    return tuple(
        [tc.asnumpy(v) for v in part] for part in _sampled_output_gradients(*args, **kwargs)
    )


def _blocks(model, M):
    """The diagonal blocks of a dense (p, p) matrix, one per layer, in the order of kron(G, A)."""
    M = tc.asnumpy(M)
    return [
        M[np.ix_(i, i)]
        for i in (tc.asnumpy(layer_indices(model, L)) for L in curvature_layers(model))
    ]


# ----------------------------------------------------------------------------- exact cases


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("b", [1, 3, 20])
def test_single_linear_mse_is_exact_for_any_batch(b, bias):
    rng = np.random.default_rng(b)
    model = nn.Sequential(nn.Linear(4, 3, bias=bias, rng=rng))
    x, y = rng.standard_normal((b, 4)), rng.standard_normal((b, 3))
    ((A, G),) = kfac_factors(model, nn.MSELoss(), x, y, mode="exact")
    assert A.shape == ((5, 5) if bias else (4, 4)) and G.shape == (3, 3)
    np.testing.assert_allclose(G, np.eye(3), atol=1e-15)
    x_t = np.concatenate([x, np.ones((b, 1))], axis=1) if bias else x
    np.testing.assert_allclose(A, x_t.T @ x_t / b, rtol=1e-14)  # bias LAST
    GGN = dense.ggn(model, nn.MSELoss(), x, y)
    assert rel_err(np.kron(G, A), _blocks(model, GGN)[0]) < 1e-14


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_batch_of_one_exact_mode_matches_every_ggn_block(loss):
    rng = np.random.default_rng(2)
    model = _mlp(rng, (5, 6, 4, 3))
    loss_fn, y = _targets(loss, rng, 1, 3)
    x = rng.standard_normal((1, 5))
    factors = kfac_factors(model, loss_fn, x, y, mode="exact")
    blocks = _blocks(model, dense.ggn(model, loss_fn, x, y))
    assert len(factors) == 3
    for (A, G), block in zip(factors, blocks, strict=True):
        assert rel_err(np.kron(G, A), block) < 1e-13


def test_single_conv_with_one_location_reduces_to_linear():
    rng = np.random.default_rng(3)
    conv = nn.Conv2d(2, 3, kernel_size=3, rng=rng)
    conv_model = nn.Sequential(conv, nn.Flatten())
    linear = nn.Linear(18, 3, rng=rng)
    linear.weight.data = conv.weight.data.reshape(3, -1).copy()
    linear.bias.data = conv.bias.data.copy()
    x, y = rng.standard_normal((7, 2, 3, 3)), rng.standard_normal((7, 3))
    for mode in ("exact", "mc", "empirical"):
        ((A_c, G_c),) = kfac_factors(conv_model, nn.MSELoss(), x, y, mode=mode, rng=5)
        ((A_l, G_l),) = kfac_factors(
            nn.Sequential(linear), nn.MSELoss(), x.reshape(7, -1), y, mode=mode, rng=5
        )
        np.testing.assert_allclose(A_c, A_l, rtol=1e-13)
        np.testing.assert_allclose(G_c, G_l, rtol=1e-13, atol=1e-15)
    ((A, G),) = kfac_factors(conv_model, nn.MSELoss(), x, y, mode="exact")
    assert (
        rel_err(np.kron(G, A), _blocks(conv_model, dense.ggn(conv_model, nn.MSELoss(), x, y))[0])
        < 1e-14
    )


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_single_conv_mse_is_exact_with_many_locations(stride, padding):
    """A averages and G sums over output locations: G ⊗ A is the GGN of one conv layer."""
    rng = np.random.default_rng(4)
    model = nn.Sequential(
        nn.Conv2d(2, 3, kernel_size=2, stride=stride, padding=padding, rng=rng), nn.Flatten()
    )
    x = rng.standard_normal((4, 2, 4, 4))
    y = rng.standard_normal(model(x).shape)
    ((A, G),) = kfac_factors(model, nn.MSELoss(), x, y, mode="exact")
    locations = model(x).shape[1] // 3
    a = sampled_output_gradients(model, nn.MSELoss(), x, y, mode="exact")[0][0]
    assert a.shape == (4 * locations, 8)
    np.testing.assert_allclose(G, locations * np.eye(3), rtol=1e-14)  # sum over locations
    a_t = np.concatenate([a, np.ones((len(a), 1))], axis=1)
    np.testing.assert_allclose(A, a_t.T @ a_t / (4 * locations), rtol=1e-13, atol=1e-15)  # mean
    assert rel_err(np.kron(G, A), _blocks(model, dense.ggn(model, nn.MSELoss(), x, y))[0]) < 1e-14


# ----------------------------------------------------------------------------- mc and empirical


def test_mc_factors_converge_to_exact_like_one_over_sqrt_samples():
    """G from S sampled targets is an average of S independent draws whose mean is the exact G.

    So the root-mean-square error (over seeds) is c/√S. Measured here: √S·rms = 0.51, 0.40, 0.66,
    0.52 at S = 4, 16, 64, 256 (8 seeds each); the test allows c in [0.2, 1.0], i.e. a 1/√S
    law within a factor 2.5, and requires a 16-fold increase of S to halve the error at least.
    """
    rng = np.random.default_rng(5)
    model = _mlp(rng, (4, 6, 3))
    x, y = rng.standard_normal((4, 4)), rng.integers(0, 3, size=4)
    loss_fn = nn.CrossEntropyLoss()
    exact = kfac_factors(model, loss_fn, x, y, mode="exact")
    norm = sum(np.sum(G * G) for _, G in exact)
    rms = {}
    for S, seeds in ((4, 8), (64, 8), (256, 4)):
        squared = []
        for seed in range(seeds):
            mc = kfac_factors(model, loss_fn, x, y, mode="mc", mc_samples=S, rng=seed)
            for (A, _), (A_e, _) in zip(mc, exact, strict=True):
                np.testing.assert_allclose(A, A_e, rtol=1e-14)  # A does not depend on the labels
            squared.append(
                sum(np.sum((G - G_e) ** 2) for (_, G), (_, G_e) in zip(mc, exact, strict=True))
            )
        rms[S] = math.sqrt(np.mean(squared) / norm)
    assert all(0.2 < rms[S] * math.sqrt(S) < 1.0 for S in rms), rms
    assert rms[64] < rms[4] / 2 and rms[256] < 0.07, rms


def test_empirical_factors_are_outer_products_of_per_sample_gradients():
    rng = np.random.default_rng(6)
    model = _mlp(rng, (4, 5, 3))
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, size=6)
    loss_fn = nn.CrossEntropyLoss()
    factors = kfac_factors(model, loss_fn, x, y, mode="empirical")
    layers = curvature_layers(model)
    A_sum = [0.0] * len(layers)
    G_sum = [0.0] * len(layers)
    for n in range(len(x)):  # a batch of one: its batch loss is ℓₙ
        with nn.record(model) as rec:
            loss_fn(model(x[n : n + 1]), y[n : n + 1]).backward()
        for i, layer in enumerate(layers):
            a = np.append(rec[layer].a[0], 1.0)
            A_sum[i] = A_sum[i] + np.outer(a, a)
            G_sum[i] = G_sum[i] + np.outer(rec[layer].g[0], rec[layer].g[0])
    for (A, G), A_want, G_want in zip(factors, A_sum, G_sum, strict=True):
        assert rel_err(A, A_want / len(x)) < 1e-13
        assert rel_err(G, G_want / len(x)) < 1e-13
    # b = 1: K-FAC of the empirical Fisher is exact
    F = dense.fisher(model, loss_fn, x[:1], y[:1], kind="empirical")
    for (A, G), block in zip(
        kfac_factors(model, loss_fn, x[:1], y[:1], mode="empirical"), _blocks(model, F), strict=True
    ):
        assert rel_err(np.kron(G, A), block) < 1e-13


@pytest.mark.parametrize("mode, r", [("exact", 3), ("mc", 2), ("empirical", 1)])
def test_sampled_output_gradients_contract(mode, r):
    rng = np.random.default_rng(7)
    model = _mlp(rng, (4, 5, 3))
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, size=6)
    loss_fn = nn.CrossEntropyLoss()
    a, g, g_bar = sampled_output_gradients(model, loss_fn, x, y, mode=mode, mc_samples=2, rng=1)
    factors = kfac_factors(model, loss_fn, x, y, mode=mode, mc_samples=2, rng=1)  # same draws
    grads = tc.grad(lambda: loss_fn(model(x), y), model.parameters())
    for i, layer in enumerate(curvature_layers(model)):
        assert a[i].shape == (6, layer.in_features) and g[i].shape == (6, layer.out_features)
        assert g_bar[i].shape == (r * 6, layer.out_features)
        np.testing.assert_allclose(g_bar[i].T @ g_bar[i] / 6, factors[i][1], rtol=1e-13)
        a_t = tc.asnumpy(homogeneous(asarray(a[i]), layer))
        np.testing.assert_allclose(a_t.T @ a_t / 6, factors[i][0], rtol=1e-13)
        np.testing.assert_allclose(g[i].T @ a[i], tc.asnumpy(grads[2 * i]), rtol=1e-13)  # ∇W = gᵀa
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="mode"):
        kfac_factors(model, loss_fn, x, y, mode="fisher")


# ----------------------------------------------------------------------------- the optimiser


def _step_by_hand(model, loss_fn, x, y, lr, damping, pi, wd):
    """θ − lr·(G + γ_G I)⁻¹ (∇ + wd·θ) (A + γ_A I)⁻¹ per layer, in NumPy (first step: no EMA)."""
    factors = kfac_factors(model, loss_fn, x, y, mode="exact")
    grads = [tc.asnumpy(g) for g in tc.grad(lambda: loss_fn(model(x), y), model.parameters())]
    new = []
    for (A, G), i in zip(factors, range(0, 2 * len(factors), 2), strict=True):
        W, b = (tc.asnumpy(model.parameters()[j].data) for j in (i, i + 1))
        grad = np.concatenate([grads[i], grads[i + 1][:, None]], axis=1)
        grad = grad + wd * np.concatenate([W, b[:, None]], axis=1)
        p = math.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G))) if pi else 1.0
        gA, gG = p * math.sqrt(damping), math.sqrt(damping) / p
        V = np.linalg.solve(G + gG * np.eye(len(G)), grad) @ np.linalg.inv(A + gA * np.eye(len(A)))
        new += [W - lr * V[:, :-1], b - lr * V[:, -1]]
    return new


@pytest.mark.parametrize("solver", ["cholesky", "eigen"])
@pytest.mark.parametrize("pi, wd", [(False, 0.0), (True, 0.0), (True, 0.01)])
def test_one_step_equals_the_formula(pi, wd, solver):
    rng = np.random.default_rng(8)
    model = _mlp(rng, (12, 9, 3))  # b = 4 < 9, 12: the rank-b path for both layers (wd = 0)
    x, y = rng.standard_normal((4, 12)), rng.integers(0, 3, size=4)
    loss_fn = nn.CrossEntropyLoss()
    want = _step_by_hand(model, loss_fn, x, y, 0.7, 0.05, pi, wd)
    opt = KFAC(
        model,
        loss_fn,
        lr=0.7,
        damping=0.05,
        mode="exact",
        pi_correction=pi,
        weight_decay=wd,
        solver=solver,
    )
    loss = opt.step(x, y)
    assert isinstance(loss, float) and opt.t == 1
    assert rel_err([p.data for p in model.parameters()], want) < 1e-12


def test_least_squares_in_one_step():
    rng = np.random.default_rng(9)
    model = nn.Linear(5, 2, rng=rng)
    x = rng.standard_normal((40, 5))
    y = x @ rng.standard_normal((5, 2)) + 0.3 + 0.1 * rng.standard_normal((40, 2))
    opt = KFAC(model, nn.MSELoss(), lr=1.0, damping=1e-24, mode="exact")  # √λ = 1e-12
    opt.step(x, y)
    x_t = np.concatenate([x, np.ones((40, 1))], axis=1)
    solution = np.linalg.lstsq(x_t, y, rcond=None)[0].T  # (2, 6) = [W | b]
    W, b = tc.asnumpy(model.weight.data), tc.asnumpy(model.bias.data)
    np.testing.assert_allclose(W, solution[:, :5], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(b, solution[:, 5], rtol=1e-9, atol=1e-11)


def test_large_damping_step_tends_to_the_gradient():
    """(G + √λI)⁻¹ ∇ (A + √λI)⁻¹ = ∇/λ + O(‖F‖/λ^{3/2}): rescaled by λ, the gradient."""
    rng = np.random.default_rng(10)
    model = _mlp(rng, (4, 5, 3))
    x, y = rng.standard_normal((8, 4)), rng.integers(0, 3, size=8)
    loss_fn = nn.CrossEntropyLoss()
    grads = tc.grad(lambda: loss_fn(model(x), y), model.parameters())
    before = [p.data.copy() for p in model.parameters()]
    errors = []
    for damping in (1e10, 1e14):  # relative error ≈ ‖F‖/√λ
        for p, b in zip(model.parameters(), before, strict=True):
            p.data = b.copy()
        KFAC(model, loss_fn, lr=damping, damping=damping, mode="mc", seed=0).step(x, y)  # lr·Δ
        direction = [b - p.data for b, p in zip(before, model.parameters(), strict=True)]
        errors.append(rel_err(direction, grads))
    assert errors[1] < 1e-6 and errors[1] < errors[0] / 30, errors  # measured 1.4e-5, 1.4e-7


def _accuracy(model, X, y):
    with tc.no_grad():
        return float(np.mean(np.argmax(tc.asnumpy(model(asarray(X)).data), axis=1) == y))


@pytest.mark.parametrize("image", [False, True])
def test_loss_decreases_on_digits(image):
    """One epoch, batch 64. Measured over seeds 0–4: training loss 2.3 → 0.10–0.11 (MLP) and
    0.17–0.22 (CNN), test accuracy 0.96 and 0.92–0.95."""
    X, y, Xt, yt = load_digits(image=image)
    rng = np.random.default_rng(0)
    if image:  # a small CNN: conv 3×3 → ReLU → avg-pool → linear
        model = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1, rng=rng),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(6 * 16, 10, rng=rng),
        )
    else:
        model = _mlp(rng, (64, 32, 10))
    loss_fn = nn.CrossEntropyLoss()
    opt = KFAC(
        model,
        loss_fn,
        lr=0.1 if image else 0.2,
        damping=0.03,
        mode="mc",
        seed=0,
        momentum=0.5,
        inv_every=5,
    )
    with tc.no_grad():
        start = loss_fn(model(asarray(X)), y).item()
    for xb, yb in batches(X, y, batch_size=64, rng=0):
        opt.step(asarray(xb), yb)
    with tc.no_grad():
        end = loss_fn(model(asarray(X)), y).item()
    assert end < 0.2 * start, (start, end)
    assert _accuracy(model, Xt, yt) > 0.85


@pytest.mark.parametrize("solver", ["cholesky", "eigen"])
def test_non_positive_definite_factor_skips_or_raises(solver):
    rng = np.random.default_rng(11)
    model = _mlp(rng, (4, 3))
    x, y = rng.standard_normal((10, 4)), rng.integers(0, 3, size=10)
    x[:, 1] = 0.0  # A has a zero row and column: singular without damping
    loss_fn = nn.CrossEntropyLoss()
    before = [p.data.copy() for p in model.parameters()]
    opt = KFAC(model, loss_fn, lr=0.1, damping=0.0, mode="exact", solver=solver)
    with pytest.warns(RuntimeWarning, match="skipped: .*not positive definite"):
        loss = opt.step(x, y)
    # a skipped step is atomic: the step count and the state are as before (Optimizer.step)
    assert math.isfinite(loss) and opt.t == 0 and "A" not in opt.state
    assert all(np.array_equal(b, p.data) for b, p in zip(before, model.parameters(), strict=True))
    opt = KFAC(model, loss_fn, lr=0.1, damping=0.0, mode="exact", solver=solver, on_failure="raise")
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        opt.step(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KFAC(model, loss_fn, lr=0.1, damping=1e-6, mode="exact", solver=solver).step(x, y)


def test_ema_schedule_and_update_frequencies():
    rng = np.random.default_rng(12)
    model = _mlp(rng, (4, 5, 3))
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, size=6)
    loss_fn = nn.CrossEntropyLoss()
    opt = KFAC(model, loss_fn, lr=0.1, damping=0.1, mode="exact", ema_decay=0.95)
    first = kfac_factors(model, loss_fn, x, y, mode="exact")
    opt.step(x, y)
    second = kfac_factors(model, loss_fn, x, y, mode="exact")
    opt.step(x, y)  # ε₂ = min(1 − 1/2, 0.95): the mean of both batches' factors
    for A, (A1, _), (A2, _) in zip(opt.state["A"], first, second, strict=True):
        np.testing.assert_allclose(tc.asnumpy(A), tc.asnumpy((A1 + A2) / 2), rtol=1e-14)
    opt = KFAC(model, loss_fn, lr=0.1, damping=0.1, factor_every=3, inv_every=2, seed=0)
    for _ in range(7):
        opt.step(x, y)
    assert opt.state["factor_updates"] == 3  # steps 0, 3, 6
    with pytest.raises(ValueError, match="inv_every"):
        KFAC(model, loss_fn, inv_every=0)
    with pytest.raises(ValueError, match="mode"):
        KFAC(model, loss_fn, mode="fisher")


def test_state_dict_round_trip_resumes_exactly():
    def setup(seed):
        rng = np.random.default_rng(13)
        model = nn.Sequential(
            nn.Conv2d(1, 2, 3, rng=rng), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3, rng=rng)
        )
        opt = KFAC(
            model,
            nn.CrossEntropyLoss(),
            lr=0.3,
            damping=0.01,
            mode="mc",
            seed=seed,
            momentum=0.9,
            inv_every=2,
            factor_every=1,
            pi_correction=True,
        )
        return model, opt

    rng = np.random.default_rng(14)
    data = [(rng.standard_normal((5, 1, 4, 4)), rng.integers(0, 3, size=5)) for _ in range(6)]
    model, opt = setup(0)
    for xb, yb in data[:3]:
        opt.step(xb, yb)
    saved_model, saved_opt = model.state_dict(), opt.state_dict()
    losses = [opt.step(xb, yb) for xb, yb in data[3:]]
    model2, opt2 = setup(123)  # another seed: the generator's state must come from the dict
    model2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    assert [opt2.step(xb, yb) for xb, yb in data[3:]] == losses
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        np.testing.assert_array_equal(tc.asnumpy(p.data), tc.asnumpy(q.data))


def test_layer_statistics_without_curvature_and_parameters_outside_layers():
    rng = np.random.default_rng(15)
    model = _mlp(rng, (4, 5, 3))
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, size=6)
    s = layer_statistics(model, nn.CrossEntropyLoss(), x, y, mode=None)
    assert s.g_bar is None and s.samples == 6 and len(s.a) == 2
    # a parameter that belongs to no Linear/Conv2d layer takes the plain gradient step
    scale = nn.Linear(3, 3, rng=rng)

    class Scaled(nn.Module):
        def __init__(self):
            self.body = model
            self.gain = tc.Tensor(asarray(np.array([1.5])), requires_grad=True)

        def forward(self, x):
            return self.body(x) * self.gain

    net = Scaled()
    del scale
    loss_fn = nn.CrossEntropyLoss()
    g = tc.grad(lambda: loss_fn(net(x), y), net.parameters())[-1]
    gain = tc.asnumpy(net.gain.data).copy()
    KFAC(net, loss_fn, lr=0.5, damping=0.1, seed=0).step(x, y)
    np.testing.assert_allclose(tc.asnumpy(net.gain.data), gain - 0.5 * tc.asnumpy(g), rtol=1e-14)


# ----------------------------------------------------------------------------- kfac_direction


def _spd(rng, n, scale=1.0):
    X = rng.standard_normal((n + 3, n))
    return scale * X.T @ X / (n + 3)


def _problem(seed, bias=True, m=4, n=6, rows=3):
    """A, G (SPD, on scales 30 apart, so π ≠ 1), g, ã and ∇ = gᵀã, on the backend."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, n))
    a_t = np.concatenate([a, np.ones((rows, 1))], axis=1) if bias else a
    g = rng.standard_normal((rows, m))
    A, G = _spd(rng, a_t.shape[1]), _spd(rng, m, 1 / 30)
    return [asarray(v) for v in (A, G, g, a, a_t, g.T @ a_t)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("pi", [False, True])
def test_kfac_direction_is_the_damped_kronecker_solve(pi, bias):
    """vec_row(Δ) = ((G + γ_G I) ⊗ (A + γ_A I))⁻¹ vec_row(∇), γ from M&G §6.3 (eq. 3)."""
    A, G, _, _, _, grad = _problem(20, bias)
    lam = 0.04
    A_h, G_h, grad_h = tc.asnumpy(A), tc.asnumpy(G), tc.asnumpy(grad)
    p = math.sqrt((np.trace(A_h) / len(A_h)) / (np.trace(G_h) / len(G_h))) if pi else 1.0
    assert not pi or p > 2  # the factors' scales differ: π matters
    gA, gG = p * math.sqrt(lam), math.sqrt(lam) / p
    K = np.kron(G_h + gG * np.eye(len(G_h)), A_h + gA * np.eye(len(A_h)))
    want = np.linalg.solve(K, grad_h.ravel()).reshape(grad_h.shape)
    got = kfac_direction(grad, A, G, lam, pi_correction=pi)
    assert got.shape == grad.shape and rel_err(got, want) < 1e-12
    gammas = kfac_dampings(A, G, lam, pi)
    assert rel_err([asarray(float(tc.asnumpy(v))) for v in gammas], [gA, gG]) < 1e-15
    if not pi:
        assert all(type(v) is float for v in gammas)  # π = 1: plain numbers, no device work


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("pi", [False, True])
def test_kfac_direction_forms_agree(pi, bias):
    """Pre-computed Cholesky factors and eigen-inverses, and the rank-b form ∇ = gᵀã."""
    A, G, g, a, a_t, grad = _problem(21, bias)
    lam = 0.04
    plain = kfac_direction(grad, A, G, lam, pi)
    K_A, K_G = damped_factors(A, G, lam, pi)
    factors = (cho_factor(K_A), cho_factor(K_G))
    inverses = (xp.linalg.inv(K_A), xp.linalg.inv(K_G))
    same = kfac_direction(grad, None, None, lam, factors=factors)  # A, G unused then
    np.testing.assert_array_equal(tc.asnumpy(same), tc.asnumpy(plain))  # the same operations
    assert rel_err(kfac_direction(grad, A, G, lam, pi, inverses=inverses), plain) < 1e-12
    rank_b = kfac_direction(None, A, G, lam, pi, g=g, a=a_t)
    assert rel_err(rank_b, plain) < 1e-12
    for solves in ({"factors": factors}, {"inverses": inverses}):
        assert rel_err(kfac_direction(None, A, G, lam, pi, g=g, a=a_t, **solves), plain) < 1e-12
    raw = kfac_direction(None, A, G, lam, pi, g=g, a=a)  # the bias column is appended if missing
    np.testing.assert_array_equal(tc.asnumpy(raw), tc.asnumpy(rank_b))


def test_kfac_direction_arguments_and_the_pi_fallback():
    A, G, g, _, a_t, grad = _problem(22)
    with pytest.raises(ValueError, match="grad, or g and a"):
        kfac_direction(grad, A, G, 0.1, g=g, a=a_t)
    with pytest.raises(ValueError, match="grad, or g and a"):
        kfac_direction(None, A, G, 0.1, g=g)
    K_A, K_G = damped_factors(A, G, 0.1)
    with pytest.raises(ValueError, match="factors or inverses"):
        kfac_direction(grad, A, G, 0.1, factors=(K_A, K_G), inverses=(K_A, K_G))
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        kfac_direction(grad, A * 0, G, 0.0)
    with warnings.catch_warnings():  # tr G = 0: π falls back to 1, without a division warning
        warnings.simplefilter("error")
        gammas = kfac_dampings(A, G * 0, 0.09, pi_correction=True)
        assert [float(tc.asnumpy(v)) for v in gammas] == [0.3, 0.3]
        K_A, K_G = damped_factors(A, G * 0, 0.09, pi_correction=True)
    np.testing.assert_array_equal(tc.asnumpy(K_G), 0.3 * np.eye(4))


def test_statistics_live_in_one_module_and_skip_drops_weight_gradients():
    """The old import path re-exports the same objects; ``skip`` leaves gᵀa unformed."""
    for name in ("MODES", "LayerStatistics", "curvature_layers", "homogeneous",
                 "layer_statistics", "sampled_output_gradients"):  # fmt: skip
        assert getattr(kfac_module, name) is getattr(statistics, name), name
    assert tc.curvature.kfac_direction is kfac_direction
    rng = np.random.default_rng(23)
    model = _mlp(rng, (4, 5, 3))
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, size=6)
    loss_fn = nn.CrossEntropyLoss()
    full = layer_statistics(model, loss_fn, x, y, mode="exact")
    first = curvature_layers(model)[0].weight
    part = layer_statistics(model, loss_fn, x, y, mode="exact", skip=[first])
    assert part.grads[0] is None and full.grads[0] is not None
    assert rel_err(part.grads[1:], full.grads[1:]) == 0
    assert rel_err(part.g_bar + part.a + part.g, full.g_bar + full.a + full.g) == 0
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
