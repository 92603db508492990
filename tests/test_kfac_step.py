"""``optim.KFAC``'s step checked against its pure function ``curvature.kfac.kfac_direction``.

The factors are recomputed by hand from ``layer_statistics`` with the optimiser's generator
(``SavableGenerator(seed)``, the same draws); over several steps the reference here applies the
moving average ε_k = min(1 − 1/k, ema_decay) to A and G, weight decay before preconditioning,
momentum without dampening (v ← μv + Δ, v = Δ at the first step) and refreshes the damped
factorisations exactly every ``inv_every`` steps (factors every ``factor_every``). MLP (one
layer in the rank-b form) and CNN, modes exact/mc/empirical, cross-entropy and MSE.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from helpers import rel_err

import tinycurv as tc
import tinycurv.curvature
from tinycurv import nn
from tinycurv.backend import SavableGenerator, asarray, backend_name, get_backend, xp
from tinycurv.curvature import kfac as kfac_math
from tinycurv.curvature.statistics import curvature_layers, homogeneous, layer_statistics
from tinycurv.optim import KFAC

B = 5  # batch size: the MLP's first layer (12 → 10) takes the rank-b form (wd = 0)


def _model(arch):
    rng = np.random.default_rng(0)
    if arch == "mlp":
        return nn.Sequential(nn.Linear(12, 10, rng=rng), nn.Tanh(), nn.Linear(10, 4, rng=rng))
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, rng=rng), nn.Tanh(), nn.Flatten(), nn.Linear(18, 4, rng=rng)
    )


def _batches(arch, loss, steps):
    """``steps`` different batches (so the factors change from step to step)."""
    rng = np.random.default_rng(1)
    shape = (B, 12) if arch == "mlp" else (B, 1, 5, 5)
    out = []
    for _ in range(steps):
        x = asarray(rng.standard_normal(shape))
        y = rng.integers(0, 4, B) if loss == "ce" else rng.standard_normal((B, 4))
        out.append((x, asarray(y, dtype="int64" if loss == "ce" else None)))
    return out


def _loss(loss):
    return nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()


def _factors(s):
    """(A, G) per layer by hand: ãᵀã / rows and g_barᵀ g_bar / rows."""
    out = []
    for a, g_bar, layer in zip(s.a, s.g_bar, s.layers, strict=True):
        a_t = homogeneous(a, layer)
        out.append((a_t.T @ a_t / a.shape[0], g_bar.T @ g_bar / a.shape[0]))
    return out


def _layer_grad(s, params, layer, wd):
    """[∇W + wd·W | ∇b + wd·b], (m, n+1)."""
    i, j = (next(k for k, p in enumerate(params) if p is q) for q in (layer.weight, layer.bias))
    W = xp.reshape(s.grads[i] + wd * params[i].data, (layer.weight.shape[0], -1))
    return xp.concatenate([W, (s.grads[j] + wd * params[j].data)[:, None]], axis=1), i, j


def _by_hand(model, loss_fn, data, *, lr, damping, mode, ema_decay, momentum, wd, pi, inv_every,
             factor_every, seed):  # fmt: skip
    """The reference K-FAC, step by step; yields (A, G, momentum buffers) after each step."""
    rng = SavableGenerator(seed)
    params = model.parameters()
    A = G = used = v = None
    k = 0
    for t, (x, y) in enumerate(data):
        new_factors = t % factor_every == 0
        s = layer_statistics(model, loss_fn, x, y, mode if new_factors else None, 1, rng)
        if new_factors:
            k += 1
            eps = min(1 - 1 / k, ema_decay)
            batch = _factors(s)
            if A is None:
                A, G = [F for F, _ in batch], [F for _, F in batch]
            else:
                A = [eps * old + (1 - eps) * Fb for old, (Fb, _) in zip(A, batch, strict=True)]
                G = [eps * old + (1 - eps) * Fb for old, (_, Fb) in zip(G, batch, strict=True)]
        if t % inv_every == 0:
            used = (list(A), list(G))  # the factors the damped factorisations are made from
        delta = [None] * len(params)
        for layer, A_l, G_l in zip(s.layers, *used, strict=True):
            grad, i, j = _layer_grad(s, params, layer, wd)
            V = kfac_math.kfac_direction(grad, A_l, G_l, damping, pi)  # the plain form
            delta[i] = xp.reshape(V[:, :-1], layer.weight.shape)
            delta[j] = V[:, -1]
        if v is None or momentum == 0:
            v = delta  # the buffer starts at the first Δ
        else:
            v = [momentum * b + d for b, d in zip(v, delta, strict=True)]  # v ← μv + Δ
        for p, d in zip(params, v, strict=True):
            p.data = p.data - lr * d
        yield A, G, v


def _np(arrays):
    return [tc.asnumpy(a) for a in arrays]


CASES = [(arch, mode, loss) for arch in ("mlp", "cnn") for mode in ("exact", "mc", "empirical")
         for loss in ("ce", "mse")]  # fmt: skip


@pytest.mark.parametrize("arch, mode, loss", CASES)
def test_one_step_is_kfac_direction_of_the_recorded_statistics(arch, mode, loss, monkeypatch):
    """Δ = (θ_before − θ_after)/lr equals kfac_direction(∇, A, G, λ, π) per layer."""
    model, loss_fn = _model(arch), _loss(loss)
    (x, y), = _batches(arch, loss, 1)  # fmt: skip
    s = layer_statistics(model, loss_fn, x, y, mode, 1, SavableGenerator(3))
    want = []
    for layer, (A, G) in zip(s.layers, _factors(s), strict=True):
        grad = _layer_grad(s, model.parameters(), layer, 0.0)[0]
        want.append(tc.asnumpy(kfac_math.kfac_direction(grad, A, G, 0.05, True)))
    calls = []
    original = kfac_math.kfac_direction

    def spy(grad, *args, **kwargs):
        calls.append("rank-b" if grad is None else "full")
        return original(grad, *args, **kwargs)

    monkeypatch.setattr(kfac_math, "kfac_direction", spy)
    before = _np(p.data for p in model.parameters())
    KFAC(model, loss_fn, lr=0.5, damping=0.05, mode=mode, pi_correction=True, seed=3).step(x, y)
    after = _np(p.data for p in model.parameters())
    moved = [(b - a) / 0.5 for b, a in zip(before, after, strict=True)]
    for k, layer in enumerate(curvature_layers(model)):
        got = np.concatenate([moved[2 * k].reshape(layer.weight.shape[0], -1),
                              moved[2 * k + 1][:, None]], axis=1)  # fmt: skip
        assert rel_err(got, want[k]) < 1e-10, (k, rel_err(got, want[k]))
    assert calls == (["rank-b", "full"] if arch == "mlp" else ["full", "full"])


@pytest.mark.parametrize("arch, mode, loss", CASES)
@pytest.mark.parametrize("wd, pi", [(0.0, False), (0.01, True)])  # wd = 0: rank-b form
def test_several_steps_by_hand(arch, mode, loss, wd, pi):
    """6 steps: EMA of A and G (ε capped from k = 3), stale factorisations (inv_every = 2),
    weight decay before preconditioning, momentum 0.9 without dampening."""
    hp = dict(lr=0.2, damping=0.1, mode=mode, ema_decay=0.6, momentum=0.9, pi=pi, inv_every=2,
              factor_every=1, seed=4)  # fmt: skip
    model, ref, loss_fn = _model(arch), _model(arch), _loss(loss)
    data = _batches(arch, loss, 6)
    opt = KFAC(model, loss_fn, weight_decay=wd, pi_correction=pi,
               **{k: v for k, v in hp.items() if k != "pi"})  # fmt: skip
    for t, ((x, y), (A, G, v)) in enumerate(
        zip(data, _by_hand(ref, loss_fn, data, wd=wd, **hp), strict=True)
    ):
        opt.step(x, y)
        where = f"after step {t + 1}"
        assert rel_err(_np(opt.state["A"]), _np(A)) < 1e-12, where
        assert rel_err(_np(opt.state["G"]), _np(G)) < 1e-12, where
        assert rel_err(_np(opt.state["momentum_buffer"]), _np(v)) < 1e-9, where
        got, want = (_np(p.data for p in m.parameters()) for m in (model, ref))
        assert rel_err(got, want) < 1e-10, (where, rel_err(got, want))


@pytest.mark.parametrize("inv_every, factor_every", [(1, 1), (3, 1), (1, 2), (3, 2), (2, 3)])
def test_factors_and_inverses_are_refreshed_exactly_on_schedule(inv_every, factor_every):
    hp = dict(lr=0.3, damping=0.05, mode="mc", ema_decay=0.95, momentum=0.0, pi=False,
              inv_every=inv_every, factor_every=factor_every, seed=5)  # fmt: skip
    model, ref, loss_fn = _model("mlp"), _model("mlp"), _loss("ce")
    data = _batches("mlp", "ce", 7)
    opt = KFAC(model, loss_fn, **{k: v for k, v in hp.items() if k != "pi"})
    for t, ((x, y), _) in enumerate(
        zip(data, _by_hand(ref, loss_fn, data, wd=0.0, **hp), strict=True)
    ):
        opt.step(x, y)
        got, want = (_np(p.data for p in m.parameters()) for m in (model, ref))
        assert rel_err(got, want) < 1e-10, (t + 1, rel_err(got, want))
    assert opt.state["factor_updates"] == len(range(0, 7, factor_every))


def _doubled(original):
    return lambda *args, **kwargs: 2 * original(*args, **kwargs)


@pytest.mark.parametrize("where", ["module", "package"])
def test_replacing_kfac_direction_changes_the_step(where, monkeypatch):
    """The step looks kfac_direction up at every call, under either of its two names."""
    assert tinycurv.curvature.kfac_direction is kfac_math.kfac_direction

    def moved(patch):
        model, loss_fn = _model("mlp"), _loss("ce")
        (x, y), = _batches("mlp", "ce", 1)  # fmt: skip
        before = _np(p.data for p in model.parameters())
        with monkeypatch.context() as m:
            if patch:
                target = kfac_math if where == "module" else tinycurv.curvature
                m.setattr(target, "kfac_direction", _doubled(kfac_math.kfac_direction))
            KFAC(model, loss_fn, lr=0.5, damping=0.05, mode="exact").step(x, y)
        return [b - a for b, a in zip(before, _np(p.data for p in model.parameters()), strict=True)]

    plain, patched = moved(False), moved(True)
    for i, (d, d2) in enumerate(zip(plain, patched, strict=True)):  # every parameter is in a layer
        np.testing.assert_allclose(d2, 2 * d, rtol=1e-12, err_msg=f"parameter {i}")
    assert [np.array_equal(a, b) for a, b in zip(moved(False), plain, strict=True)] == [True] * 4


def test_pi_correction_adds_no_host_transfer():
    """π is computed on the device: refactorising every step transfers the loss and the one
    validity check of all factors, with or without the π-correction (CuPy stand-in only)."""
    module = get_backend()
    if backend_name() != "cupy" or not hasattr(module, "SYNCS"):
        pytest.skip("counts transfers on the CuPy stand-in only (tinycurv/testing/cupy_stand_in)")
    counts = {}
    for pi in (False, True):
        opt = KFAC(_model("mlp"), _loss("ce"), lr=0.1, damping=0.1, pi_correction=pi, seed=0)
        data = _batches("mlp", "ce", 5)
        for x, y in data[:2]:
            opt.step(x, y)
        module.SYNCS.clear()
        for x, y in data[2:]:
            opt.step(x, y)
        counts[pi] = Counter(where.rsplit(":", 1)[0] for _, where in module.SYNCS)
    assert counts[True] == counts[False] == Counter({"optim/base.py": 3, "backend.py": 3})
