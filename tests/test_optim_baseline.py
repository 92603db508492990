"""SGD and Adam: their update rules by hand for two steps, their interface, and digits training.

The hand computations use a linear model f = x Wᵀ + b under ``MSELoss`` (1/b)Σ½‖f − y‖², whose
gradient is written out in NumPy here: ∂W = rᵀx / b, ∂b = Σₙ rₙ / b with r = f − y.

Digits (scikit-learn's 8×8, 1437 train / 360 test): a 64→64→10 tanh MLP, batch 32, 10 epochs,
reaches 96.7% test accuracy with SGD (lr 0.1, momentum 0.9) and with Adam (lr 0.01), each in
about 0.25 s on one CPU core (seeded; 95.8–97.8% over six other seeds).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray
from tinycurv.data import batches, load_digits
from tinycurv.optim import SGD, Adam, Optimizer

RTOL = 1e-13


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    model = nn.Linear(3, 2, rng=rng)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    return model, x, y  # host arrays: the hand computations use NumPy


def _loss_and_grad(W, b, x, y):
    """The MSE batch loss of the linear model and its gradient, by hand."""
    r = x @ W.T + b - y
    n = len(x)
    return 0.5 * np.sum(r * r) / n, [r.T @ x / n, r.sum(0) / n]


def _params(model):
    return [tc.asnumpy(p.data).copy() for p in model.parameters()]


def _assert_params(model, expected):
    for got, want in zip(_params(model), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_and_weight_decay_by_hand(nesterov):
    lr, mu, wd = 0.3, 0.9, 0.05
    model, x, y = _problem()
    opt = SGD(model, nn.MSELoss(), lr=lr, momentum=mu, weight_decay=wd, nesterov=nesterov)
    theta, buffers = _params(model), None
    for _ in range(2):
        loss, grads = _loss_and_grad(*theta, x, y)
        d = [g + wd * p for g, p in zip(grads, theta, strict=True)]
        buffers = d if buffers is None else [mu * b + di for b, di in zip(buffers, d, strict=True)]
        u = [di + mu * b for di, b in zip(d, buffers, strict=True)] if nesterov else buffers
        theta = [p - lr * ui for p, ui in zip(theta, u, strict=True)]
        assert opt.step(asarray(x), asarray(y)) == pytest.approx(loss, rel=RTOL)
        _assert_params(model, theta)
    for got, want in zip(opt.state["momentum_buffer"], buffers, strict=True):
        np.testing.assert_allclose(tc.asnumpy(got), want, rtol=RTOL)
    assert opt.t == 2


def test_plain_sgd_keeps_no_buffer():
    model, x, y = _problem()
    theta = _params(model)
    opt = SGD(model, nn.MSELoss(), lr=0.5)
    _, grads = _loss_and_grad(*theta, x, y)
    opt.step(asarray(x), asarray(y))
    _assert_params(model, [p - 0.5 * g for p, g in zip(theta, grads, strict=True)])
    assert opt.state == {}


def test_adam_by_hand():
    lr, (b1, b2), eps, wd = 0.01, (0.8, 0.95), 1e-3, 0.1
    model, x, y = _problem()
    opt = Adam(model, nn.MSELoss(), lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    theta = _params(model)
    m = [np.zeros_like(p) for p in theta]
    v = [np.zeros_like(p) for p in theta]
    for t in (1, 2):
        loss, grads = _loss_and_grad(*theta, x, y)
        d = [g + wd * p for g, p in zip(grads, theta, strict=True)]
        m = [b1 * mi + (1 - b1) * di for mi, di in zip(m, d, strict=True)]
        v = [b2 * vi + (1 - b2) * di**2 for vi, di in zip(v, d, strict=True)]
        m_hat = [mi / (1 - b1**t) for mi in m]
        v_hat = [vi / (1 - b2**t) for vi in v]
        steps = [mh / (np.sqrt(vh) + eps) for mh, vh in zip(m_hat, v_hat, strict=True)]
        theta = [p - lr * s for p, s in zip(theta, steps, strict=True)]
        assert opt.step(asarray(x), asarray(y)) == pytest.approx(loss, rel=RTOL)
        _assert_params(model, theta)
    np.testing.assert_allclose(tc.asnumpy(opt.state["m"][0]), m[0], rtol=RTOL)
    np.testing.assert_allclose(tc.asnumpy(opt.state["v"][1]), v[1], rtol=RTOL)


def test_first_adam_step_has_length_lr_per_coordinate():
    """With ε ≈ 0 the bias-corrected first step is −lr·sign(g)."""
    model, x, y = _problem()
    theta = _params(model)
    _, grads = _loss_and_grad(*theta, x, y)
    Adam(model, nn.MSELoss(), lr=0.01, eps=1e-300).step(asarray(x), asarray(y))
    want = [p - 0.01 * np.sign(g) for p, g in zip(theta, grads, strict=True)]
    _assert_params(model, want)


def test_hyperparameters_and_state_dict():
    model, x, y = _problem()
    opt = Adam(model, nn.MSELoss(), lr=0.01, betas=(0.5, 0.6))
    assert isinstance(opt, Optimizer)
    assert opt.lr == 0.01 and opt.betas == (0.5, 0.6) and opt.eps == 1e-8
    expected = {"lr": 0.01, "betas": (0.5, 0.6), "eps": 1e-8, "weight_decay": 0.0}
    assert opt.hyperparameters == expected
    opt.step(asarray(x), asarray(y))
    state = opt.state_dict()
    assert state["t"] == 1 and state["hyperparameters"]["betas"] == (0.5, 0.6)
    assert set(state["state"]) == {"m", "v"}
    assert all(isinstance(a, np.ndarray) for a in state["state"]["m"])
    opt.hyperparameters["lr"] = 0.0  # hyperparameters are read at every step
    before = _params(model)
    opt.step(asarray(x), asarray(y))
    _assert_params(model, before)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda m, f: SGD(m, f, lr=-1.0), "lr"),
        (lambda m, f: SGD(m, f, momentum=-0.1), "momentum"),
        (lambda m, f: SGD(m, f, weight_decay=-1e-3), "weight_decay"),
        (lambda m, f: SGD(m, f, nesterov=True), "nesterov"),
        (lambda m, f: Adam(m, f, betas=(1.0, 0.9)), "betas"),
        (lambda m, f: Adam(m, f, betas=(0.9,)), "betas"),
        (lambda m, f: Adam(m, f, eps=-1.0), "eps"),
        (lambda m, f: Adam(m, f, lr=float("nan")), "lr"),
    ],
)
def test_bad_hyperparameters_raise(make, match):
    model, _, _ = _problem()
    with pytest.raises(ValueError, match=match):
        make(model, nn.MSELoss())


def _train_digits(make_opt, epochs: int = 10) -> tuple[float, float]:
    X, y, Xt, yt = load_digits()
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(64, 64, rng=rng), nn.Tanh(), nn.Linear(64, 10, rng=rng))
    opt = make_opt(model, nn.CrossEntropyLoss())
    data_rng = np.random.default_rng(1)
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in batches(X, y, 32, rng=data_rng):
            opt.step(asarray(xb), asarray(yb))
    seconds = time.perf_counter() - start
    with tc.no_grad():
        predictions = tc.asnumpy(model(asarray(Xt)).data).argmax(axis=1)
    return float(np.mean(predictions == yt)), seconds


@pytest.mark.parametrize(
    "make_opt",
    [lambda m, f: SGD(m, f, lr=0.1, momentum=0.9), lambda m, f: Adam(m, f, lr=1e-2)],
    ids=["sgd-momentum", "adam"],
)
def test_digits_mlp_reaches_95_percent(make_opt):
    accuracy, seconds = _train_digits(make_opt)
    print(f"digits test accuracy {accuracy:.4f} after {seconds:.2f} s")
    assert accuracy > 0.95
