"""Checkpoints: resuming continues the same trajectory bit for bit (float64); types round-trip."""

from __future__ import annotations

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray
from tinycurv.optim import SGD, Adam, Optimizer

K, M = 7, 6  # steps before and after the checkpoint


def _model(seed: int) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(10, 8, rng=rng), nn.Tanh(), nn.Linear(8, 3, rng=rng))


def _batches(n: int) -> list:
    rng = np.random.default_rng(42)
    return [
        (asarray(rng.standard_normal((16, 10))), asarray(rng.integers(0, 3, 16))) for _ in range(n)
    ]


class NoisySGD(Optimizer):
    """SGD plus Gaussian noise drawn from ``self.rng``: its trajectory depends on the RNG state."""

    def __init__(self, model, loss_fn, lr: float = 0.1, noise: float = 0.01, seed: int = 0):
        super().__init__(model, loss_fn, lr=lr, noise=noise)
        self.rng = np.random.default_rng(seed)

    def _update(self, x, y):
        loss, grads = self.loss_and_grad(x, y)
        noisy = [g + self.noise * asarray(self.rng.standard_normal(g.shape)) for g in grads]
        self.apply_update(noisy, scale=self.lr)
        return loss


CE = nn.CrossEntropyLoss()
OPTIMIZERS = {  # (model, seed) → optimizer; only NoisySGD uses the seed
    "sgd-momentum": lambda m, s: SGD(m, CE, lr=0.2, momentum=0.9),
    "sgd-nesterov-wd": lambda m, s: SGD(
        m, CE, lr=0.2, momentum=0.8, weight_decay=0.01, nesterov=True
    ),
    "adam": lambda m, s: Adam(m, CE, lr=1e-2),
    "adam-wd": lambda m, s: Adam(m, CE, lr=1e-2, betas=(0.8, 0.9), weight_decay=0.1),
    "noisy-sgd-rng": lambda m, s: NoisySGD(m, CE, seed=s),
}


def _train(opt, batches) -> list[float]:
    return [opt.step(x, y) for x, y in batches]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_resume_continues_the_same_trajectory_bit_for_bit(name, tmp_path):
    make, data = OPTIMIZERS[name], _batches(K + M)
    straight_model = _model(0)
    straight = make(straight_model, 5)
    straight_losses = _train(straight, data)

    first_model = _model(0)
    first = make(first_model, 5)
    losses = _train(first, data[:K])
    tc.save(tmp_path / "ckpt.npz", first_model, first)

    resumed_model = _model(123)  # different weights, fresh buffers, fresh RNG
    resumed = make(resumed_model, 9)
    tc.load(tmp_path / "ckpt.npz", resumed_model, resumed)
    losses += _train(resumed, data[K:])

    assert losses == straight_losses
    for a, b in zip(resumed_model.parameters(), straight_model.parameters(), strict=True):
        assert np.array_equal(tc.asnumpy(a.data), tc.asnumpy(b.data))
    assert resumed.t == straight.t == K + M
    for key, buffers in straight.state.items():
        for a, b in zip(resumed.state[key], buffers, strict=True):
            assert np.array_equal(tc.asnumpy(a), tc.asnumpy(b))


def test_hyperparameters_keep_their_types(tmp_path):
    model = _model(0)
    opt = Adam(model, nn.CrossEntropyLoss(), lr=3e-3, betas=(0.8, 0.95), eps=1e-7)
    _train(opt, _batches(2))
    tc.save(tmp_path / "a.npz", model, opt)
    fresh = Adam(_model(1), nn.CrossEntropyLoss())
    meta = tc.load(tmp_path / "a.npz", fresh.model, fresh)
    assert meta["optimizer_class"] == "Adam"
    assert fresh.hyperparameters == opt.hyperparameters
    assert type(fresh.betas) is tuple and type(fresh.lr) is float and type(fresh.t) is int


class Recorder(Optimizer):
    """Keeps what ``load_state_dict`` was given, to inspect the decoded structure."""

    def load_state_dict(self, state):
        self.loaded = state
        super().load_state_dict(state)


def test_nested_state_round_trips_with_types(tmp_path):
    model = _model(0)
    opt = Recorder(model, None, lr=0.1, betas=(0.9, 0.99), flag=True, nothing=None, name="x")
    opt.t = 3
    opt.state = {
        "buffers": [np.arange(3.0), np.ones((2, 2))],
        "nested": {"count": 4, "pair": (1.5, None), 7: "int key", (1, 2): [True, False]},
        "scalar": np.float32(2.5),
        "zero_d": np.array(4.0),
        "big": 2**70,
        "nan": float("nan"),
    }
    expected = opt.state_dict()
    tc.save(tmp_path / "s.npz", model, opt)
    fresh = Recorder(_model(1), None)
    tc.load(tmp_path / "s.npz", fresh.model, fresh)
    got = fresh.loaded
    assert got["t"] == 3 and got["hyperparameters"] == expected["hyperparameters"]
    state = got["state"]
    np.testing.assert_array_equal(state["buffers"][1], np.ones((2, 2)))
    assert state["nested"] == {"count": 4, "pair": (1.5, None), 7: "int key", (1, 2): [True, False]}
    assert type(state["nested"]["pair"]) is tuple
    assert type(state["scalar"]) is np.float32 and state["scalar"] == 2.5
    assert isinstance(state["zero_d"], np.ndarray) and state["zero_d"].shape == ()
    assert state["big"] == 2**70 and np.isnan(state["nan"])


@pytest.mark.parametrize("bit_generator", ["PCG64", "MT19937", "Philox"])
def test_rng_state_is_restored(bit_generator, tmp_path):
    model = _model(0)
    opt = NoisySGD(model, nn.CrossEntropyLoss())
    opt.rng = np.random.Generator(getattr(np.random, bit_generator)(11))
    opt.rng.standard_normal(5)
    tc.save(tmp_path / "r.npz", model, opt)
    want = opt.rng.standard_normal(5)
    fresh = NoisySGD(_model(1), nn.CrossEntropyLoss())  # holds a PCG64 generator
    tc.load(tmp_path / "r.npz", fresh.model, fresh)
    assert type(fresh.rng.bit_generator).__name__ == bit_generator
    np.testing.assert_array_equal(fresh.rng.standard_normal(5), want)


def test_model_only_and_exact_path(tmp_path):
    model, other = _model(0), _model(1)
    path = tmp_path / "weights.ckpt"
    assert tc.save(path, model) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.ckpt"]  # no suffix, no temp
    tc.load(path, other)
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert np.array_equal(tc.asnumpy(a.data), tc.asnumpy(b.data))


def test_load_errors(tmp_path):
    model = _model(0)
    sgd = SGD(model, nn.CrossEntropyLoss(), momentum=0.9)
    tc.save(tmp_path / "sgd.npz", model, sgd)
    with pytest.raises(ValueError, match="state of a SGD, not of a Adam"):
        tc.load(tmp_path / "sgd.npz", _model(1), Adam(_model(1), nn.CrossEntropyLoss()))
    tc.save(tmp_path / "model.npz", model)
    with pytest.raises(KeyError, match="no optimizer"):
        tc.load(tmp_path / "model.npz", _model(1), SGD(_model(1), nn.CrossEntropyLoss()))
    with pytest.raises(KeyError, match="missing"):
        tc.load(tmp_path / "model.npz", nn.Sequential(nn.Linear(10, 3, rng=0)))
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a tinycurv checkpoint"):
        tc.load(tmp_path / "other.npz", model)
    with pytest.raises(TypeError, match="cannot save"):
        bad = SGD(model, nn.CrossEntropyLoss())
        bad.state["thing"] = object()
        tc.save(tmp_path / "bad.npz", model, bad)


def test_any_optimiser_with_rng_carries_it_in_its_state_dict():
    """``Optimizer.state_dict`` holds ``self.rng``'s state (no checkpoint file needed)."""
    data = _batches(6)
    straight = NoisySGD(_model(0), CE, seed=5)
    want = _train(straight, data)
    first = NoisySGD(_model(0), CE, seed=5)
    got = _train(first, data[:3])
    state = first.state_dict()
    assert state["rng"]["kind"] == "state"
    resumed = NoisySGD(_model(0), CE, seed=9)
    resumed.model.load_state_dict(first.model.state_dict())
    resumed.load_state_dict(state)
    assert got + _train(resumed, data[3:]) == want


def test_a_generator_without_readable_state_is_left_out_with_a_warning():
    class Opaque:  # like CuPy's generator: its state cannot be exported
        bit_generator = type("Bits", (), {"state": lambda self: 0})()

    opt = NoisySGD(_model(0), CE)
    opt.rng = Opaque()
    with pytest.warns(RuntimeWarning, match="no readable state"):
        state = opt.state_dict()
    assert "rng" not in state
