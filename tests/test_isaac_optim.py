"""The ISAAC optimiser (tinycurv.optim.ISAAC), float64.

* Theorem 4 against the library's dense GGN (``tinycurv.curvature.dense.ggn``, not ISAAC's own
  code): for linear regression with MSE the ζ* step over λ_a is the damped Gauss–Newton step,
  and for the last layer of an MLP under MSE it is the damped step of that layer's GGN block.
* The step is θ − lr·ζ* (resp. θ − lr·ζ) per layer, with ζ*, ζ from the pure functions of
  ``tinycurv.curvature.isaac`` on ``a``, ``g`` recorded with ``nn.record`` (and ``g_bar`` from
  K-FAC's ``sampled_output_gradients``), for Linear and Conv2d layers.
* Several steps with momentum, weight decay and Adam equal the pure functions applied to the
  statistics of ``layer_statistics`` (same batch, same generator) followed by the base rule
  written out by hand; and the optimiser looks the pure functions up at every step: replacing
  ``tinycurv.curvature.isaac.zeta_star`` (what it calls) or its re-export
  ``tinycurv.curvature.zeta_star`` (likewise ``zeta``) changes the step.
* Layer selection, plain gradients for biases and unselected layers; the base rules equal
  ``SGD``/``Adam`` bit for bit when no layer is conditioned.
* Training on digits (MLP and CNN; ζ*, ζ, Adam), exact resumption, clear errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import rel_err

import tinycurv as tc
from tinycurv import curvature, nn
from tinycurv.backend import SavableGenerator, asarray, asnumpy, default_rng, generator_state
from tinycurv.curvature import isaac as isaac_math
from tinycurv.curvature.dense import ggn
from tinycurv.curvature.isaac import zeta, zeta_star
from tinycurv.curvature.kfac import curvature_layers, layer_statistics, sampled_output_gradients
from tinycurv.data import batches, load_digits
from tinycurv.optim import ISAAC, SGD, Adam
from tinycurv.optim import isaac as optim_isaac
from tinycurv.optim.isaac import HyperparameterError

MSE, CE = nn.MSELoss(), nn.CrossEntropyLoss()


def _mlp(rng, sizes, act=nn.Tanh, bias=True):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias, rng=rng))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _cnn(rng, pool=False):
    layers = [nn.Conv2d(1, 3, 3, rng=rng), nn.Tanh()]
    layers += [nn.MaxPool2d(2)] if pool else [nn.Conv2d(3, 2, 3, stride=2, padding=1, rng=rng)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(3 * 9 if pool else 2 * 9, 4, rng=rng))


def _data(rng, b, shape, m, loss):
    x = asarray(rng.standard_normal((b, *shape)))
    y = rng.integers(0, m, size=b) if loss is CE else asarray(rng.standard_normal((b, m)))
    return x, y


def _host(params):
    return [asnumpy(p.data).copy() for p in params]


def _directions(opt, x, y, lr):
    """(θ_before − θ_after)/lr per parameter after one step (the direction of plain SGD)."""
    before = _host(opt.params)
    opt.step(x, y)
    return [(b - asnumpy(p.data)) / lr for b, p in zip(before, opt.params, strict=True)]


def _recorded(model, loss_fn, x, y):
    """Per layer (a, g) from ``nn.record`` and the plain gradients of all parameters."""
    with nn.record(model) as rec:
        loss_fn(model(x), y).backward()
    grads = [asnumpy(p.grad).copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    return [(rec[layer].a, rec[layer].g) for layer in rec], grads


def _index(model, tensor):
    return next(i for i, p in enumerate(model.parameters()) if p is tensor)


def _check_step(model, opt, x, y, want, lr):
    """θ_after = θ_before − lr·d: ``d = want[k]`` for layer k's weight, the gradient else."""
    layers = curvature_layers(model)
    _, grads = _recorded(model, opt.loss_fn, x, y)
    before = _host(model.parameters())
    opt.step(x, y)
    expected = [b - lr * g for b, g in zip(before, grads, strict=True)]
    for k, z in want.items():
        iw = _index(model, layers[k].weight)
        expected[iw] = before[iw] - lr * asnumpy(z).reshape(before[iw].shape)
    for p, e, b in zip(model.parameters(), expected, before, strict=True):
        step = np.max(np.abs(e - b))
        assert np.max(np.abs(asnumpy(p.data) - e)) <= 1e-12 * max(step, 1.0)


# --------------------------------------------------------------------------------------------
# Theorem 4 against the dense GGN
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", [4, 15])  # b < n (b×b form) and b > n (n×n form)
@pytest.mark.parametrize("lam_a", [0.3, 2.0])
def test_theorem4_linear_regression_is_the_damped_gauss_newton_step(b, lam_a):
    rng = np.random.default_rng(b)
    model = nn.Sequential(nn.Linear(6, 3, bias=False, rng=rng))
    x, y = _data(rng, b, (6,), 3, MSE)
    G = asnumpy(ggn(model, MSE, x, y))  # the library's dense GGN (here I_m ⊗ A)
    grad = asnumpy(tc.grad(lambda: MSE(model(x), y), model.parameters())[0]).ravel()
    want = np.linalg.solve(G + lam_a * np.eye(G.shape[0]), grad)  # (GGN + λ_a I)⁻¹ ∇
    (direction,) = _directions(ISAAC(model, MSE, lr=1.0, lam_a=lam_a), x, y, lr=1.0)
    assert rel_err(direction.ravel() / lam_a, want) < 1e-10  # ζ*/λ_a


@pytest.mark.parametrize("b", [4, 12])
def test_theorem4_last_layer_of_an_mlp_is_the_damped_step_of_its_ggn_block(b):
    rng, lam_a = np.random.default_rng(7 + b), 0.5
    model = _mlp(rng, [5, 7, 3])
    x, y = _data(rng, b, (5,), 3, MSE)
    last = model[2]
    sizes = [p.size for p in model.parameters()]
    start = sum(sizes[: _index(model, last.weight)])
    idx = np.arange(start, start + last.weight.size)
    block = asnumpy(ggn(model, MSE, x, y))[np.ix_(idx, idx)]  # I_3 ⊗ A of the last layer
    grads = [asnumpy(v) for v in tc.grad(lambda: MSE(model(x), y), model.parameters())]
    want = np.linalg.solve(
        block + lam_a * np.eye(idx.size), grads[_index(model, last.weight)].ravel()
    )
    directions = _directions(ISAAC(model, MSE, lr=1.0, lam_a=lam_a, layers="last"), x, y, 1.0)
    iw = _index(model, last.weight)
    assert rel_err(directions[iw].ravel() / lam_a, want) < 1e-10
    for i, (d, g) in enumerate(zip(directions, grads, strict=True)):  # the rest: plain gradients
        if i != iw:
            assert rel_err(d, g) < 1e-10


# --------------------------------------------------------------------------------------------
# the step against the pure functions
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", [2, 5, 20])  # each layer in the b ≤ n and the b > n regimes
@pytest.mark.parametrize("lam_a", [0.1, 3.0])
def test_step_is_theta_minus_lr_zeta_star_for_every_layer(b, lam_a):
    rng, lr = np.random.default_rng(b), 0.7
    model = _mlp(rng, [6, 9, 3, 4])  # m > n and m < n layers
    x, y = _data(rng, b, (6,), 4, CE)
    records, _ = _recorded(model, CE, x, y)
    want = {k: zeta_star(g, a, lam_a) for k, (a, g) in enumerate(records)}
    _check_step(model, ISAAC(model, CE, lr=lr, lam_a=lam_a), x, y, want, lr)


@pytest.mark.parametrize("mode", ["exact", "mc", "empirical"])
@pytest.mark.parametrize("b", [2, 8])
def test_step_with_finite_lam_g_is_theta_minus_lr_zeta(mode, b):
    rng, lr, lam_g, lam_a = np.random.default_rng(30 + b), 0.5, 0.4, 0.8
    model = _mlp(rng, [6, 9, 3, 4])
    x, y = _data(rng, b, (6,), 4, CE)
    a, g, g_bar = sampled_output_gradients(model, CE, x, y, mode, 2, default_rng(3))
    want = {k: zeta(g[k], a[k], g_bar[k], lam_g, lam_a) for k in range(len(a))}
    opt = ISAAC(model, CE, lr=lr, lam_a=lam_a, lam_g=lam_g, g_bar_mode=mode, mc_samples=2, seed=3)
    _check_step(model, opt, x, y, want, lr)


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("lam_g", [math.inf, 0.6])
def test_conv_layers_get_zeta_of_the_unfolded_patches_reshaped(pool, lam_g):
    rng, lr, lam_a = np.random.default_rng(5), 0.3, 0.7
    model = _cnn(rng, pool)
    x, y = _data(rng, 3, (1, 8, 8) if pool else (1, 7, 7), 4, CE)  # 9 output locations
    a, g, g_bar = sampled_output_gradients(model, CE, x, y, "exact")
    want = {
        k: zeta_star(g[k], a[k], lam_a)
        if math.isinf(lam_g)
        else zeta(g[k], a[k], g_bar[k], lam_g, lam_a)
        for k in range(len(a))
    }
    opt = ISAAC(model, CE, lr=lr, lam_a=lam_a, lam_g=lam_g, g_bar_mode="exact")
    _check_step(model, opt, x, y, want, lr)


def test_bias_free_layers_and_an_infinite_lam_a_give_the_gradient():
    rng = np.random.default_rng(2)
    model = _mlp(rng, [5, 6, 3], bias=False)  # no bias: gᵀa is formed by backward, then replaced
    x, y = _data(rng, 4, (5,), 3, CE)
    records, _ = _recorded(model, CE, x, y)
    want = {k: zeta_star(g, a, 0.2) for k, (a, g) in enumerate(records)}
    _check_step(model, ISAAC(model, CE, lr=0.4, lam_a=0.2), x, y, want, 0.4)
    _, grads = _recorded(model, CE, x, y)
    plain = _directions(ISAAC(model, CE, lr=1.0, lam_a=math.inf), x, y, 1.0)  # Theorem 1 (ii)
    assert all(rel_err(d, g) < 1e-9 for d, g in zip(plain, grads, strict=True))


# --------------------------------------------------------------------------------------------
# several steps against the pure functions and the base rule written out by hand
# --------------------------------------------------------------------------------------------
def _by_hand(base, hp, lr, t, state, theta, d):
    """θ after step t (from 1) of PyTorch's SGD or Adam on directions ``d``, in host NumPy."""
    wd = hp.get("weight_decay", 0.0)
    d = [di + wd * th for di, th in zip(d, theta, strict=True)]  # decay added to ζ, not conditioned
    if base == "sgd":
        mu = hp.get("momentum", 0.0)
        state["buf"] = d if t == 1 else [mu * v + di for v, di in zip(state["buf"], d, strict=True)]
        u = (
            [di + mu * v for di, v in zip(d, state["buf"], strict=True)]
            if hp.get("nesterov")
            else state["buf"]
        )
        return [th - lr * ui for th, ui in zip(theta, u, strict=True)]
    beta1, beta2 = hp["betas"]
    state["m"] = [beta1 * mi + (1 - beta1) * di for mi, di in zip(state["m"], d, strict=True)]
    state["v"] = [beta2 * vi + (1 - beta2) * di**2 for vi, di in zip(state["v"], d, strict=True)]
    m_hat = [mi / (1 - beta1**t) for mi in state["m"]]  # bias corrections
    v_hat = [vi / (1 - beta2**t) for vi in state["v"]]
    return [
        th - lr * mh / (np.sqrt(vh) + hp["eps"])
        for th, mh, vh in zip(theta, m_hat, v_hat, strict=True)
    ]


BY_HAND = [
    ("sgd", {"momentum": 0.9, "weight_decay": 0.05}),
    ("sgd", {"momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("adam", {"betas": (0.8, 0.9), "eps": 1e-8, "weight_decay": 0.05}),
]


@pytest.mark.parametrize("base, hp", BY_HAND)
@pytest.mark.parametrize("net", ["mlp", "cnn"])  # cnn: Conv2d layers, b·L rows per batch
@pytest.mark.parametrize("loss_fn", [CE, MSE], ids=["ce", "mse"])
@pytest.mark.parametrize("lam_g, mode", [(math.inf, None), (0.4, "mc"), (0.4, "exact")])
def test_steps_are_the_pure_functions_on_layer_statistics_then_the_base_rule(
    base, hp, net, loss_fn, lam_g, mode
):
    rng, lam_a, steps = np.random.default_rng(40), 0.6, 3
    lr = 0.05 if base == "sgd" else 0.01
    model = _mlp(rng, [6, 9, 3, 4]) if net == "mlp" else _cnn(rng)
    shape = (6,) if net == "mlp" else (1, 7, 7)  # cnn: 25 and 9 output locations
    kwargs = {"g_bar_mode": mode, "mc_samples": 2} if mode else {}
    opt = ISAAC(model, loss_fn, lr, lam_a, lam_g, "all", base, seed=7, **kwargs, **hp)
    sampler = SavableGenerator(7)  # the optimiser's stream: the same sampled labels
    layers, params = curvature_layers(model), model.parameters()
    state = {"m": [np.zeros(p.shape) for p in params], "v": [np.zeros(p.shape) for p in params]}
    for t in range(1, steps + 1):
        x, y = _data(rng, 5, shape, 4, loss_fn)
        s = layer_statistics(model, loss_fn, x, y, mode, 2, sampler)  # at θ before the step
        d = [asnumpy(gr) for gr in s.grads]
        for k, layer in enumerate(layers):
            z = (
                curvature.zeta_star(s.g[k], s.a[k], lam_a)  # eq. 21
                if math.isinf(lam_g)
                else curvature.zeta(s.g[k], s.a[k], s.g_bar[k], lam_g, lam_a)  # eq. 20
            )
            iw = _index(model, layer.weight)
            d[iw] = asnumpy(z).reshape(params[iw].shape)
        theta = _host(params)
        want = _by_hand(base, hp, lr, t, state, theta, d)
        opt.step(x, y)
        for p, w, th in zip(params, want, theta, strict=True):
            err = np.max(np.abs(asnumpy(p.data) - w))
            tol = 1e-12 * np.max(np.abs(w - th)) + 1e-15 * np.max(np.abs(th))  # + rounding of θ
            assert err <= tol, (t, err, tol)
    assert generator_state(opt.rng) == generator_state(sampler)  # the same draws, no more


@pytest.mark.parametrize("where", [isaac_math, curvature], ids=["curvature.isaac", "curvature"])
@pytest.mark.parametrize("name, lam_g", [("zeta_star", math.inf), ("zeta", 0.5)])
def test_replacing_the_pure_function_changes_the_step(monkeypatch, where, name, lam_g):
    """The optimiser calls ``tinycurv.curvature.isaac.zeta_star`` / ``.zeta``, looked up at every
    step; rebinding only the re-export ``tinycurv.curvature.<name>`` is honoured too."""
    rng, lr = np.random.default_rng(12), 0.5
    model = _mlp(rng, [6, 9, 3, 4])
    x, y = _data(rng, 5, (6,), 4, CE)

    def make():
        return ISAAC(model, CE, lr=lr, lam_a=0.8, lam_g=lam_g, layers=[0, 2], seed=1)

    theta = _host(model.parameters())
    plain = _directions(make(), x, y, lr)
    for p, th in zip(model.parameters(), theta, strict=True):
        p.data = asarray(th)
    real, calls = getattr(isaac_math, name), []

    def doubled(*args):
        calls.append(args)
        return 2.0 * real(*args)

    monkeypatch.setattr(where, name, doubled)
    patched = _directions(make(), x, y, lr)
    assert len(calls) == 2  # once per conditioned layer
    conditioned = {_index(model, curvature_layers(model)[k].weight) for k in (0, 2)}
    for i, (d, d0) in enumerate(zip(patched, plain, strict=True)):
        expected = 2.0 * d0 if i in conditioned else d0
        assert np.max(np.abs(d - expected)) <= 1e-12 * np.max(np.abs(expected))
    monkeypatch.undo()
    for p, th in zip(model.parameters(), theta, strict=True):
        p.data = asarray(th)
    again = _directions(make(), x, y, lr)  # undone: the step of the real functions again
    assert all(np.array_equal(d, d0) for d, d0 in zip(again, plain, strict=True))


def test_conditioned_weights_with_a_bias_skip_their_gradient(monkeypatch):
    """``layer_statistics(..., skip)`` never forms gᵀa of a conditioned weight (with a bias)."""
    rng = np.random.default_rng(13)
    model = nn.Sequential(
        nn.Linear(6, 5, rng=rng), nn.Tanh(), nn.Linear(5, 4, bias=False, rng=rng), nn.Tanh(),
        nn.Linear(4, 3, rng=rng),
    )  # fmt: skip
    x, y = _data(rng, 4, (6,), 3, CE)
    seen = []

    def spy(*args):
        seen.append(args[7])
        stats = layer_statistics(*args)
        seen.append([gr is None for gr in stats.grads])
        return stats

    monkeypatch.setattr(optim_isaac, "layer_statistics", spy)
    ISAAC(model, CE, lr=0.1, lam_a=1.0, layers=[0, 1]).step(x, y)
    skip, missing = seen
    assert [id(w) for w in skip] == [id(model[0].weight)]  # model[2] has no bias: not skipped
    assert missing == [True, False, False, False, False]  # W0 b0 W1 W2 b2: no gᵀa for W0


# --------------------------------------------------------------------------------------------
# layer selection, biases, the base rules
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layers, chosen",
    [("all", [0, 1, 2]), ("first", [0]), ("last", [2]), ([0], [0]), ([-1, 1], [1, 2]), ([], [])],
)
def test_unselected_layers_and_all_biases_take_the_plain_gradient(layers, chosen):
    rng, lr, lam_a = np.random.default_rng(11), 0.9, 0.5
    model = _mlp(rng, [6, 9, 3, 4])
    x, y = _data(rng, 5, (6,), 4, CE)
    records, _ = _recorded(model, CE, x, y)
    want = {k: zeta_star(records[k][1], records[k][0], lam_a) for k in chosen}
    _check_step(model, ISAAC(model, CE, lr=lr, lam_a=lam_a, layers=layers), x, y, want, lr)


def test_weights_require_gradients_again_after_a_step_even_a_failed_one():
    rng = np.random.default_rng(0)
    model = _mlp(rng, [6, 5, 3])
    params = model.parameters()
    opt = ISAAC(model, CE, lr=0.1, lam_a=1.0)
    x, y = _data(rng, 4, (6,), 3, CE)
    opt.step(x, y)
    with pytest.raises(ValueError):
        opt.step(asarray(np.zeros((4, 7))), y)  # wrong input width, raised inside the forward
    assert model.parameters() == params and all(p.requires_grad for p in params)
    assert all(p.grad is None for p in params)


def test_zeta_star_draws_no_random_numbers_and_runs_no_extra_sweep():
    rng = np.random.default_rng(1)
    model = _mlp(rng, [6, 5, 3])
    x, y = _data(rng, 4, (6,), 3, CE)

    class NoSampling(nn.CrossEntropyLoss):
        def sample_targets(self, outputs, rng=None):
            raise AssertionError("ζ* must not sample labels")

    opt = ISAAC(model, NoSampling(), lr=0.1, lam_a=1.0, lam_g=math.inf, g_bar_mode="mc")
    state = generator_state(opt.rng)
    opt.step(x, y)
    assert generator_state(opt.rng) == state


SGD_CONFIGS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.8, "nesterov": True, "weight_decay": 0.01},
]
ADAM_CONFIGS = [{}, {"betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}]


@pytest.mark.parametrize(
    "base, hp", [("sgd", h) for h in SGD_CONFIGS] + [("adam", h) for h in ADAM_CONFIGS]
)
def test_with_no_layer_conditioned_it_is_sgd_or_adam_bit_for_bit(base, hp):
    rng = np.random.default_rng(4)
    data = [_data(rng, 8, (6,), 3, CE) for _ in range(5)]
    m1, m2 = _mlp(np.random.default_rng(0), [6, 5, 3]), _mlp(np.random.default_rng(0), [6, 5, 3])
    ref = (SGD if base == "sgd" else Adam)(m1, CE, lr=0.05, **hp)
    opt = ISAAC(m2, CE, 0.05, 1.0, math.inf, [], base, **hp)
    assert [ref.step(x, y) for x, y in data] == [opt.step(x, y) for x, y in data]
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert np.array_equal(asnumpy(p.data), asnumpy(q.data))
    for key, buffers in ref.state.items():
        assert all(np.array_equal(u, v) for u, v in zip(buffers, opt.state[key], strict=True))


def test_base_rules_act_on_the_conditioned_direction():
    """Momentum/Adam see ζ* where SGD/Adam would see the gradient (weight decay added to ζ*)."""
    rng, lam_a, wd = np.random.default_rng(9), 0.5, 0.1
    model = _mlp(rng, [6, 5, 3])
    x, y = _data(rng, 4, (6,), 3, CE)
    opt = ISAAC(model, CE, lr=0.1, lam_a=lam_a, base="adam", weight_decay=wd)
    records, grads = _recorded(model, CE, x, y)
    theta = _host(model.parameters())
    opt.step(x, y)
    d = list(grads)
    for k, (a, g) in enumerate(records):
        d[_index(model, curvature_layers(model)[k].weight)] = asnumpy(zeta_star(g, a, lam_a))
    d = [di + wd * t for di, t in zip(d, theta, strict=True)]
    for m, di in zip(opt.state["m"], d, strict=True):  # first Adam step: m = (1 − β₁) d
        np.testing.assert_allclose(asnumpy(m), 0.1 * di, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------------
# training on digits
# --------------------------------------------------------------------------------------------
def _mean_loss(model, loss_fn, X, y):
    with tc.no_grad():
        return float(asnumpy(loss_fn(model(asarray(X)), asarray(y)).data))


@pytest.mark.parametrize(
    "net, kwargs",
    [
        ("mlp", {"lr": 1.0, "lam_a": 1.0}),  # the reference example's lr for ISAAC
        ("mlp", {"lr": 1.0, "lam_a": 1.0, "lam_g": 1.0}),
        ("mlp", {"lr": 0.5, "lam_a": 1.0, "momentum": 0.5, "layers": [0]}),
        ("mlp", {"lr": 0.01, "lam_a": 1.0, "base": "adam"}),
        ("cnn", {"lr": 1.0, "lam_a": 1.0}),
        ("cnn", {"lr": 1.0, "lam_a": 1.0, "lam_g": 1.0, "g_bar_mode": "exact"}),
    ],
)
def test_decreases_the_loss_on_digits(net, kwargs):
    X, y, _, _ = load_digits(image=net == "cnn")
    X, y = X[:600], y[:600]
    rng = np.random.default_rng(0)
    if net == "mlp":
        model = _mlp(rng, [64, 32, 10], act=nn.ReLU)
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(4 * 9, 10, rng=rng),
        )  # fmt: skip
    opt = ISAAC(model, CE, **kwargs)
    start = _mean_loss(model, CE, X, y)
    for epoch in range(3):
        for xb, yb in batches(X, y, 50, rng=epoch):
            opt.step(asarray(xb), asarray(yb))
    assert _mean_loss(model, CE, X, y) < 0.3 * start


# --------------------------------------------------------------------------------------------
# checkpoints and errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"lam_g": 0.5, "momentum": 0.9, "nesterov": True},  # sampled labels: the rng matters
        {"base": "adam", "lr": 0.01, "layers": "first", "weight_decay": 0.01},
    ],
)
@pytest.mark.parametrize("via", ["state_dict", "checkpoint"])
def test_resuming_continues_the_same_trajectory_bit_for_bit(kwargs, via, tmp_path):
    rng = np.random.default_rng(8)
    data = [_data(rng, 6, (6,), 3, CE) for _ in range(7)]

    def make(seed, s):
        model = _mlp(np.random.default_rng(seed), [6, 5, 3])
        return ISAAC(model, CE, **{"lr": 0.1, "lam_a": 0.5, "seed": s, **kwargs})

    straight = make(0, 1)
    want = [straight.step(x, y) for x, y in data]

    first = make(0, 1)
    got = [first.step(x, y) for x, y in data[:4]]
    resumed = make(3, 99)  # other weights and another seed
    if via == "checkpoint":
        tc.save(tmp_path / "isaac.npz", first.model, first)
        tc.load(tmp_path / "isaac.npz", resumed.model, resumed)
    else:
        resumed.model.load_state_dict(first.model.state_dict())
        resumed.load_state_dict(first.state_dict())
    got += [resumed.step(x, y) for x, y in data[4:]]

    assert got == want and resumed.t == straight.t == len(data)
    for p, q in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert np.array_equal(asnumpy(p.data), asnumpy(q.data))
    for key, buffers in straight.state.items():
        assert all(np.array_equal(u, v) for u, v in zip(buffers, resumed.state[key], strict=True))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layers": "middle"}, "layers must be one of"),
        ({"layers": 1}, "layers must be one of"),
        ({"layers": [0.5]}, "integers"),
        ({"layers": [True]}, "integers"),
        ({"layers": [3]}, "out of range"),
        ({"layers": [-4]}, "out of range"),
        ({"base": "rmsprop"}, "base must be one of"),
        ({"base": "Adam"}, "base must be one of"),
        ({"lam_a": 0.0}, "lam_a must be > 0"),
        ({"lam_a": float("nan")}, "lam_a must be > 0"),
        ({"lam_g": -1.0}, "lam_g must be > 0"),
        ({"g_bar_mode": "fisher"}, "g_bar_mode"),
        ({"mc_samples": 0}, "mc_samples"),
        ({"lr": -0.1}, "lr"),
        ({"nesterov": True}, "nesterov"),
        ({"base": "adam", "betas": (0.9, 1.0)}, "betas"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    model = _mlp(np.random.default_rng(0), [6, 5, 4, 3])
    with pytest.raises(ValueError, match=match):
        ISAAC(model, CE, **{"lr": 0.1, "lam_a": 1.0, **kwargs})


@pytest.mark.parametrize("base, key", [("adam", "momentum"), ("sgd", "betas"), ("sgd", "damping")])
def test_hyperparameters_of_another_base_rule_are_rejected(base, key):
    model = _mlp(np.random.default_rng(0), [6, 5, 3])
    with pytest.raises(HyperparameterError, match=f"unknown hyperparameter.*{key}"):
        ISAAC(model, CE, 0.1, 1.0, base=base, **{key: 0.9})
    with pytest.raises(TypeError):  # also a TypeError, like any unexpected keyword
        ISAAC(model, CE, 0.1, 1.0, base=base, **{key: 0.9})


def test_first_or_last_needs_a_linear_or_conv_layer():
    model = nn.Sequential(nn.Tanh())
    with pytest.raises(ValueError, match="no Linear/Conv2d"):
        ISAAC(model, CE, 0.1, 1.0, layers="last")
