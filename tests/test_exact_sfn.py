"""Exact saddle-free Newton (tinycurv.optim.ExactSFN), in float64.

* its direction is ``abs_hessian_inverse`` of the dense Hessian (fixed step, lr 1, momentum 0);
* its step rules are SeriesSFN's: the series with many terms and a good V gives the same step,
  for every rule; ``adaptive="reference"`` takes α = 1, μ = 0;
* a model above ``max_params`` is refused with a clear error;
* both optimisers and all step rules train an MLP and a CNN (the loss decreases);
* atomic steps: a NaN gradient leaves everything as it was.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import nn, optim
from tinycurv.backend import asarray
from tinycurv.curvature import flatten, hessian
from tinycurv.curvature.sfn import abs_hessian_inverse
from tinycurv.optim import ExactSFN, NonFiniteError, SeriesSFN


def _params(model) -> np.ndarray:
    return tc.asnumpy(flatten([p.data for p in model.parameters()]))


def _mlp(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(4, 6, rng=rng), nn.Tanh(), nn.Linear(6, 3, rng=rng))


def _cnn(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, rng=rng),
        nn.Tanh(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3, rng=rng),
    )


def _data(kind: str, n: int = 24, seed: int = 1):
    """Inputs and learnable labels (the argmax of a fixed linear map of the inputs)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4) if kind == "mlp" else (n, 1, 4, 4))
    labels = (x.reshape(n, -1) @ rng.standard_normal((x[0].size, 3))).argmax(axis=1)
    return asarray(x), asarray(labels, dtype="int64")


@pytest.mark.parametrize("damping", [1.0, 0.05])
def test_direction_is_abs_hessian_inverse(damping):
    model = _mlp()
    x, y = _data("mlp")
    loss_fn = nn.CrossEntropyLoss()
    closure = lambda: loss_fn(model(x), y)
    params = model.parameters()
    H = hessian(closure, params)
    g = flatten(tc.grad(closure, params))
    assert bool((np.linalg.eigvalsh(tc.asnumpy(H)) < 0).any())  # indefinite here
    want = tc.asnumpy(abs_hessian_inverse(H, g, damping))
    theta = _params(model)
    opt = ExactSFN(model, loss_fn, lr=1.0, damping=damping, adaptive=False, momentum=0.0)
    opt.step(x, y)
    np.testing.assert_allclose(theta - _params(model), want, rtol=1e-10, atol=1e-13)


def test_fixed_step_with_momentum_and_reference_rule_by_hand():
    """Fixed: δ = lr·u + μ·δ_prev; reference: α = 1, μ = 0, so δ = u; over 3 steps."""
    x, y = _data("mlp")
    loss_fn = nn.CrossEntropyLoss()
    for rule in (False, "reference"):
        model = _mlp(seed=2)
        opt = ExactSFN(model, loss_fn, lr=0.7, damping=0.5, adaptive=rule, momentum=0.4)
        delta = 0.0
        for _ in range(3):
            closure = lambda m=model: loss_fn(m(x), y)
            params = model.parameters()
            lam = opt.state.get("damping", 0.5)
            u = tc.asnumpy(
                abs_hessian_inverse(
                    hessian(closure, params), flatten(tc.grad(closure, params)), lam
                )
            )
            delta = (0.7 * u + 0.4 * delta) if rule is False else u
            theta = _params(model)
            opt.step(x, y)
            np.testing.assert_allclose(theta - _params(model), delta, rtol=1e-9, atol=1e-13)
        if rule == "reference":
            assert opt.state["alpha"] == 1.0 and opt.state["mu"] == 0.0


class _Point(nn.Module):
    """A "model" whose output is its one parameter θ (the input is ignored)."""

    def __init__(self, theta: np.ndarray) -> None:
        self.theta = tc.Tensor(asarray(theta), requires_grad=True)

    def forward(self, x):
        return self.theta


def _quartic(A: np.ndarray, b: np.ndarray):
    """``½θᵀAθ − bᵀθ + 0.01 Σθ⁴``: H = A + 0.12 diag(θ²), indefinite with |λ| ≥ 1 near 0."""
    A_t, b_t = tc.Tensor(asarray(A)), tc.Tensor(asarray(b))
    return lambda t, _: (t @ A_t @ t) * 0.5 - b_t @ t + (t * t * t * t).sum() * 0.01


@pytest.mark.parametrize("rule", [False, "reference", "subspace"])
def test_series_with_many_terms_takes_the_exact_step(rule):
    """SeriesSFN with N = 80, k = 2 and V ≥ λ_max² converges to ExactSFN's step under the same
    step rule: one implementation of the rules, two directions (|λ| ∈ [1, 2.2] here, so the
    series converges geometrically)."""
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    A = q @ np.diag([-2.0, -1.5, -1.0, 1.0, 1.4, 2.0]) @ q.T
    b, theta0 = 0.2 * rng.standard_normal(6), 0.2 * rng.standard_normal(6)
    loss_fn = _quartic(A, b)
    hp = dict(damping=0.5, adaptive=rule, lr=0.8, momentum=0.3)
    exact_model, series_model = _Point(theta0), _Point(theta0)
    exact = ExactSFN(exact_model, loss_fn, **hp)
    series = SeriesSFN(series_model, loss_fn, order=80, acceleration=2, scale=5.0, **hp)
    dummy = np.zeros(1)
    for _ in range(3):
        exact.step(dummy, dummy)
        series.step(dummy, dummy)
        np.testing.assert_allclose(_params(series_model), _params(exact_model), rtol=1e-9)
        assert series.state["damping"] == pytest.approx(exact.state["damping"], rel=1e-9)
        assert series.state["alpha"] == pytest.approx(exact.state["alpha"], rel=1e-8)


def test_too_many_parameters_is_a_clear_error():
    model = nn.Sequential(nn.Linear(60, 60, rng=0))  # 3,660 parameters
    with pytest.raises(ValueError, match=r"p = 3660 .*max_params = 3000.*p HVPs and p²"):
        ExactSFN(model, nn.MSELoss())
    ExactSFN(model, nn.MSELoss(), max_params=4000)  # raised on request


def test_non_finite_gradient_leaves_everything_unchanged():
    model = _mlp()
    x, y = _data("mlp")
    opt = ExactSFN(model, nn.CrossEntropyLoss())
    opt.step(x, y)
    before, state = _params(model), opt.state_dict()
    bad = tc.asnumpy(x).copy()
    bad[0, 0] = np.nan
    with pytest.raises(NonFiniteError):
        opt.step(asarray(bad), y)
    np.testing.assert_array_equal(_params(model), before)
    assert opt.t == 1 and opt.state_dict()["state"]["damping"] == state["state"]["damping"]


MAKERS = {
    "exact-fixed": lambda m, f: ExactSFN(m, f, adaptive=False, lr=0.5),
    "exact-reference": lambda m, f: ExactSFN(m, f, adaptive="reference"),
    "exact-subspace": lambda m, f: ExactSFN(m, f, adaptive="subspace"),
    "series-default": lambda m, f: SeriesSFN(m, f, order=8),
    "series-reference-running-max": lambda m, f: SeriesSFN(
        m, f, order=8, scale="running-max", adaptive="reference"
    ),
    "series-subspace-power": lambda m, f: SeriesSFN(m, f, order=8, adaptive="subspace"),
    "series-fixed": lambda m, f: SeriesSFN(m, f, order=8, adaptive=False, lr=0.5),
}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("name", sorted(MAKERS))
def test_every_rule_trains_mlps_and_cnns(kind, name):
    model = _mlp() if kind == "mlp" else _cnn()
    x, y = _data(kind)
    loss_fn = nn.CrossEntropyLoss()
    full = lambda: float(loss_fn(model(x), y).item())
    before = full()
    opt = MAKERS[name](model, loss_fn)
    for _ in range(10):
        opt.step(x, y)
    assert np.isfinite(full()) and full() < 0.7 * before


def test_registered_in_optim():
    assert optim.ExactSFN is ExactSFN and "ExactSFN" in optim.__all__


@pytest.mark.parametrize(("rule", "most"), [(False, 1), ("reference", 3), ("subspace", 3)])
def test_host_transfers_per_step(rule, most):
    """On the CuPy stand-in: the dense Hessian and its eigendecomposition stay on the device; a
    step transfers the loss (fixed step), plus the step model's numbers and L(θ − δ) (adaptive)."""
    from collections import Counter

    from tinycurv.backend import backend_name, get_backend

    module = get_backend()
    if backend_name() != "cupy" or not hasattr(module, "SYNCS"):
        pytest.skip("counts transfers on the CuPy stand-in only (tinycurv/testing/cupy_stand_in)")
    model = _mlp()
    x, y = _data("mlp")
    opt = ExactSFN(model, nn.CrossEntropyLoss(), adaptive=rule)
    opt.step(x, y)
    module.SYNCS.clear()
    for _ in range(3):
        opt.step(x, y)
    where = Counter(w.rsplit(":", 1)[0] for _, w in module.SYNCS)
    assert sum(where.values()) <= most * 3, where
    assert not any("curvature" in w for w in where), where  # nothing from hessian / eigh
