"""Checkpoints: resuming continues the same trajectory bit for bit (float64); types round-trip."""

from __future__ import annotations

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray
from tinycurv.checkpoint import CheckpointError
from tinycurv.optim import SGD, Adam, Optimizer
from tinycurv.optim.base import Hyperparameter, number

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

    lr = Hyperparameter(number())
    noise = Hyperparameter(number())

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

    lr, betas, flag, nothing, name = (Hyperparameter() for _ in range(5))

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


# -- failed loads change nothing; damaged files; concurrent and failed saves; dtypes; tying --


def _snapshot(model, opt) -> tuple:
    return model.state_dict(), opt.state_dict()


def _assert_same(a, b) -> None:
    """Equal nested state: arrays byte for byte (values and dtype), everything else by ``==``."""
    if isinstance(a, np.ndarray | np.generic):
        assert isinstance(b, np.ndarray | np.generic) and a.dtype == b.dtype
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            _assert_same(u, v)
    else:
        assert a == b or (a != a and b != b)  # NaN


def _trained_sgd(seed: int, steps: int = 2):
    model = _model(seed)
    opt = SGD(model, CE, lr=0.1, momentum=0.9)
    _train(opt, _batches(steps))
    return model, opt


def _wider_last_layer() -> nn.Sequential:
    rng = np.random.default_rng(3)
    return nn.Sequential(nn.Linear(10, 8, rng=rng), nn.Tanh(), nn.Linear(8, 4, rng=rng))


def _write_bad_file(kind: str, path) -> type:
    """Write a checkpoint that ``load`` into ``_trained_sgd`` must refuse; return the error."""
    if kind == "later layer with another shape":
        wide = _wider_last_layer()
        opt = SGD(wide, CE, lr=0.1, momentum=0.9)
        tc.save(path, wide, opt)
        return ValueError
    if kind == "another optimiser class":
        model = _model(4)
        tc.save(path, model, Adam(model, CE))
        return ValueError
    if kind == "no optimizer state":
        tc.save(path, _model(4))
        return KeyError
    if kind == "optimizer state of another architecture":  # the model's part fits; SGD's not
        wide = _wider_last_layer()
        opt = SGD(wide, CE, lr=0.1, momentum=0.9)
        opt.state["momentum_buffer"] = [asarray(np.ones(p.shape)) for p in opt.params]
        tc.save(path, _model(4), opt)
        return ValueError
    model, opt = _trained_sgd(4)
    tc.save(path, model, opt)
    data = path.read_bytes()
    cut = {"truncated to 0": 0, "truncated to half": len(data) // 2, "truncated by one byte": -1}
    if kind in cut:
        path.write_bytes(data[: cut[kind]])
    elif kind == "garbage bytes":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif kind in ("broken meta", "meta referring to a missing array"):
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if kind == "broken meta":
            arrays["__meta__"] = np.array('{"format": "tinycurv-checkpoint-1", "optim')
        else:
            del arrays[next(k for k in arrays if k.startswith("optimizer/"))]
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    else:
        raise AssertionError(kind)
    return CheckpointError


@pytest.mark.parametrize(
    "kind",
    [
        "later layer with another shape",
        "another optimiser class",
        "no optimizer state",
        "optimizer state of another architecture",  # needs Optimizer.load_state_dict to check
        "truncated to 0",
        "truncated to half",
        "truncated by one byte",
        "garbage bytes",
        "broken meta",
        "meta referring to a missing array",
    ],
)
def test_a_failed_load_changes_neither_model_nor_optimizer(kind, tmp_path):
    path = tmp_path / "bad.npz"
    error = _write_bad_file(kind, path)
    model, opt = _trained_sgd(0)
    before = _snapshot(model, opt)
    with pytest.raises(error) as info:
        tc.load(path, model, opt)
    if error is CheckpointError:
        assert str(path) in str(info.value)
        assert "is not a tinycurv checkpoint or is damaged" in str(info.value)
        assert isinstance(info.value, ValueError)
    _assert_same(_snapshot(model, opt), before)
    # the same holds for the model alone, where the file's model part is what is wrong
    if error is CheckpointError or kind == "later layer with another shape":
        with pytest.raises(error):
            tc.load(path, model)
        _assert_same(_snapshot(model, opt), before)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        tc.load(tmp_path / "nope.npz", _model(0))


def test_concurrent_saves_to_one_path_all_succeed(tmp_path):
    import threading

    path = tmp_path / "shared.npz"
    models = [_model(0), _model(1)]
    opts = [SGD(m, CE, momentum=0.9) for m in models]
    start, errors = threading.Barrier(2), []

    def work(i: int) -> None:
        try:
            start.wait()
            for _ in range(15):
                tc.save(path, models[i], opts[i])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["shared.npz"]  # no temporary files left
    fresh = _model(2)
    tc.load(path, fresh, SGD(fresh, CE, momentum=0.9))
    got = fresh.state_dict()
    assert any(all(np.array_equal(got[k], v) for k, v in m.state_dict().items()) for m in models)


@pytest.mark.parametrize("exception", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_save_leaves_no_temporary_file_and_the_old_file_intact(
    exception, tmp_path, monkeypatch
):
    old, new = _model(0), _model(1)
    path = tmp_path / "ckpt.npz"
    tc.save(path, old)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise exception

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(type(exception)):
        tc.save(path, new)
    with pytest.raises(type(exception)):
        tc.save(tmp_path / "fresh.npz", new)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]
    assert path.read_bytes() == before
    fresh = _model(2)
    tc.load(path, fresh)
    _assert_same(fresh.state_dict(), old.state_dict())


def test_a_saved_file_has_the_permissions_of_a_plain_open(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    tc.save(tmp_path / "m.npz", _model(0))
    with open(tmp_path / "plain", "wb"):
        pass
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "m.npz").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_a_float32_model_stays_float32_after_loading_a_float64_checkpoint(tmp_path):
    model, opt = _trained_sgd(0)
    tc.save(tmp_path / "f64.npz", model, opt)
    tc.set_default_dtype("float32")
    small = _model(1)
    tc.load(tmp_path / "f64.npz", small)
    assert all(p.dtype == np.float32 for p in small.parameters())
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(small.state_dict()[name], value.astype(np.float32))
    _train(SGD(small, CE, lr=0.1), _batches(1))
    assert all(p.dtype == np.float32 for p in small.parameters())


def test_a_float32_optimizer_keeps_float32_buffers_after_loading_a_float64_checkpoint(tmp_path):
    """Needs ``Optimizer.load_state_dict`` to cast buffers to the parameters' dtype."""
    model, opt = _trained_sgd(0)
    tc.save(tmp_path / "f64.npz", model, opt)
    tc.set_default_dtype("float32")
    small = _model(1)
    small_opt = SGD(small, CE, lr=0.1, momentum=0.9)
    tc.load(tmp_path / "f64.npz", small, small_opt)
    assert all(b.dtype == np.float32 for b in small_opt.state["momentum_buffer"])
    _train(small_opt, _batches(1))
    assert all(p.dtype == np.float32 for p in small.parameters())
    assert all(b.dtype == np.float32 for b in small_opt.state["momentum_buffer"])


def test_tied_weights_round_trip(tmp_path):
    def tied(seed: int) -> nn.Sequential:
        lin = nn.Linear(10, 10, rng=seed)
        return nn.Sequential(lin, nn.Tanh(), lin, nn.Tanh(), nn.Linear(10, 3, rng=seed + 1))

    model = tied(0)
    opt = SGD(model, CE, lr=0.1, momentum=0.9)
    _train(opt, _batches(2))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "4.weight", "4.bias"]
    tc.save(tmp_path / "tied.npz", model, opt)
    fresh = tied(5)
    fresh_opt = SGD(fresh, CE, lr=0.1, momentum=0.9)
    tc.load(tmp_path / "tied.npz", fresh, fresh_opt)
    assert fresh[0] is fresh[2]
    _assert_same(fresh.state_dict(), model.state_dict())
    data = _batches(4)[2:]
    assert _train(fresh_opt, data) == _train(opt, data)
