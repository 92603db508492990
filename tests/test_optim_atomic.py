"""Every optimiser's step is atomic (``Optimizer.step``), runs inside ``no_grad``, and takes clear
errors for bad hyperparameters.

The class of fault: a batch with NaN (or a loss whose gradient is NaN) in the middle of training.
For each optimiser the step must leave every parameter and ``state_dict()`` byte-identical, then
raise ``NonFiniteError`` (default) or warn and return (``on_nonfinite="skip"``); training then
continues exactly as a run that never saw the batch.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import nn, optim
from tinycurv.backend import SavableGenerator, asarray
from tinycurv.optim import NonFiniteError

OPTIMISERS = {
    "sgd": lambda m, f, **kw: optim.SGD(m, f, lr=0.1, momentum=0.9, **kw),
    "adam": lambda m, f, **kw: optim.Adam(m, f, lr=1e-2, **kw),
    "zeta_star": lambda m, f, **kw: optim.ISAAC(m, f, lr=0.1, lam_a=1.0, momentum=0.5, **kw),
    "zeta": lambda m, f, **kw: optim.ISAAC(
        m, f, lr=1e-2, lam_a=1.0, lam_g=1.0, base="adam", **kw
    ),
    "kfac": lambda m, f, **kw: optim.KFAC(m, f, lr=0.1, damping=0.1, momentum=0.5, seed=0, **kw),
    "kfac_every_2": lambda m, f, **kw: optim.KFAC(
        m, f, lr=0.1, damping=0.1, inv_every=2, factor_every=2, seed=0, **kw
    ),
    "grouped_newton": lambda m, f, **kw: optim.GroupedNewton(m, f, lr=0.1, update_every=2, **kw),
    "sfn": lambda m, f, **kw: optim.SeriesSFN(m, f, order=6, **kw),
    "sfn_fixed": lambda m, f, **kw: optim.SeriesSFN(m, f, order=6, adaptive=False, lr=0.5, **kw),
}


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 8, rng=1), nn.Tanh(), nn.Linear(8, 3, rng=2))


def _batches(n: int = 6, b: int = 10):
    rng = np.random.default_rng(0)
    return [
        (asarray(rng.standard_normal((b, 6))), asarray(rng.integers(0, 3, b), dtype="int64"))
        for _ in range(n)
    ]


def _nan_batch(x, y):
    bad = tc.asnumpy(x).copy()
    bad[3, 2] = np.nan
    return asarray(bad), y


def assert_same_state(a, b, where="state"):
    """Nested state dicts equal: arrays byte for byte (dtype and shape too), the rest by ==."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_same_state(u, v, f"{where}/{i}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, where


def _params(model):
    return [tc.asnumpy(p.data).copy() for p in model.parameters()]


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_a_nan_batch_changes_nothing_and_training_continues_as_without_it(name):
    batches = _batches()
    # the run that never sees the bad batch
    model_a = _mlp()
    opt_a = OPTIMISERS[name](model_a, nn.CrossEntropyLoss())
    losses_a = [opt_a.step(x, y) for x, y in batches]
    # the run that meets it after three steps: raise (default), nothing changed
    model_b = _mlp()
    opt_b = OPTIMISERS[name](model_b, nn.CrossEntropyLoss())
    losses_b = [opt_b.step(x, y) for x, y in batches[:3]]
    before, params = opt_b.state_dict(), _params(model_b)
    with pytest.raises(NonFiniteError, match="not finite"):
        opt_b.step(*_nan_batch(*batches[3]))
    assert_same_state(opt_b.state_dict(), before)
    assert_same_state(_params(model_b), params, "params")
    losses_b += [opt_b.step(x, y) for x, y in batches[3:]]
    assert losses_b == losses_a
    assert_same_state(_params(model_b), _params(model_a), "params")
    assert_same_state(opt_b.state_dict(), opt_a.state_dict())


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_skip_policy_warns_and_changes_nothing(name):
    batches = _batches(3)
    model = _mlp()
    opt = OPTIMISERS[name](model, nn.CrossEntropyLoss(), on_nonfinite="skip")
    opt.step(*batches[0])
    before, params = opt.state_dict(), _params(model)
    with pytest.warns(RuntimeWarning, match="not finite"):
        loss = opt.step(*_nan_batch(*batches[1]))
    assert math.isnan(loss)
    assert_same_state(opt.state_dict(), before)
    assert_same_state(_params(model), params, "params")


@pytest.mark.parametrize("name", ["sgd", "kfac", "sfn"])
def test_an_exception_inside_the_step_changes_nothing(name):
    """A wrong target shape fails inside the step, after the generator may have drawn."""
    x, y = _batches(1)[0]
    model = _mlp()
    opt = OPTIMISERS[name](model, nn.MSELoss())
    y3 = asarray(np.random.default_rng(1).standard_normal((10, 3)))
    opt.step(x, y3)
    before, params = opt.state_dict(), _params(model)
    with pytest.raises(ValueError):
        opt.step(x, asarray(np.zeros((10, 4))))
    assert_same_state(opt.state_dict(), before)
    assert_same_state(_params(model), params, "params")


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_step_inside_no_grad_is_the_same_step(name):
    batches = _batches(2)
    model_a, model_b = _mlp(), _mlp()
    opt_a = OPTIMISERS[name](model_a, nn.CrossEntropyLoss())
    opt_b = OPTIMISERS[name](model_b, nn.CrossEntropyLoss())
    for x, y in batches:
        la = opt_a.step(x, y)
        with tc.no_grad():
            lb = opt_b.step(x, y)
        assert la == lb
    assert_same_state(_params(model_b), _params(model_a), "params")
    assert opt_b.t == 2


@pytest.mark.parametrize("cls", [optim.KFAC, optim.ISAAC])
def test_an_int_rng_seeds_one_generator_once(cls):
    """``rng=0`` is a seed: successive steps draw new samples, as with ``seed=0``."""
    kwargs = {"lam_g": 1.0} if cls is optim.ISAAC else {}
    batches = _batches(3)
    runs = []
    for how in ({"rng": 0}, {"seed": 0}, {"rng": SavableGenerator(0)}):
        model = _mlp()
        opt = cls(model, nn.CrossEntropyLoss(), lr=0.1, **kwargs, **how)
        for x, y in batches:
            opt.step(x, y)
        runs.append(_params(model))
    assert_same_state(runs[0], runs[1], "params")
    assert_same_state(runs[0], runs[2], "params")
    model = _mlp()
    opt = cls(model, nn.CrossEntropyLoss(), lr=0.1, rng=0, **kwargs)
    first = opt.rng.random(3)
    assert not np.array_equal(tc.asnumpy(first), tc.asnumpy(opt.rng.random(3)))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda m, f: optim.SGD(m, f, lr=math.inf), "lr"),
        (lambda m, f: optim.SGD(m, f, lr=math.nan), "lr"),
        (lambda m, f: optim.SGD(m, f, lr=-1.0), "lr"),
        (lambda m, f: optim.SGD(m, f, momentum=math.inf), "momentum"),
        (lambda m, f: optim.Adam(m, f, lr=math.inf), "lr"),
        (lambda m, f: optim.Adam(m, f, eps=math.nan), "eps"),
        (lambda m, f: optim.KFAC(m, f, lr=math.inf), "lr"),
        (lambda m, f: optim.KFAC(m, f, damping=math.inf), "damping"),
        (lambda m, f: optim.KFAC(m, f, inv_every=0), "inv_every"),
        (lambda m, f: optim.KFAC(m, f, mode="fisher"), "mode"),
        (lambda m, f: optim.ISAAC(m, f, lr=math.inf), "lr"),
        (lambda m, f: optim.GroupedNewton(m, f, lr=math.inf), "lr"),
        (lambda m, f: optim.SeriesSFN(m, f, lr=math.inf), "lr"),
        (lambda m, f: optim.SGD(m, f, on_nonfinite="ignore"), "on_nonfinite"),
        (lambda m, f: optim.KFAC(m, f, on_nonfinite="warn"), "on_nonfinite"),
    ],
)
def test_bad_hyperparameters_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make(_mlp(), nn.CrossEntropyLoss())


def test_a_skipped_kfac_step_with_finite_inputs_keeps_the_step_count():
    """A singular damped factor (damping 0) is a skip, not a non-finite error."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((10, 6))
    x[:, 1] = 0.0
    model = _mlp()
    opt = optim.KFAC(model, nn.CrossEntropyLoss(), lr=0.1, damping=0.0, mode="exact")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = opt.step(asarray(x), asarray(rng.integers(0, 3, 10), dtype="int64"))
    assert math.isfinite(loss) and opt.t == 0 and opt.state == {}
    assert any("not positive definite" in str(w.message) for w in caught)
