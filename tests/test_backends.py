"""The same computation on every backend: each result must match NumPy's to 1e-10 (float64).

Each check runs once per backend (the ``any_backend`` fixture; the CuPy case skips where CuPy or
a GPU is missing). Models are initialised from a host generator (``tinycurv.nn.init``), so both
backends start from the same weights; inputs are host NumPy arrays, which the library moves to
the backend where they enter (``Tensor``, the losses, ``asarray``). Only deterministic paths
are compared: the backends' random generators differ, so K-FAC uses ``mode="exact"`` and ISAAC
``lam_g = inf``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import backend, nn
from tinycurv.data import batches, load_digits
from tinycurv.optim.isaac import ISAAC
from tinycurv.optim.kfac import KFAC

TOL = 1e-10


def _on_numpy(fn: Callable[[], Any]) -> Any:
    """``fn()`` on the NumPy backend (the reference), then back to the backend under test."""
    name = backend.backend_name()
    backend.set_backend("numpy")
    try:
        return fn()
    finally:
        backend.set_backend(name)


def _host(arrays: Any) -> list[np.ndarray]:
    return [tc.asnumpy(a) for a in arrays]


def _assert_close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert isinstance(g, np.ndarray) and g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=TOL, atol=TOL)


def _mlp(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Linear(6, 8, rng=rng), nn.Tanh(), nn.Linear(8, 5, rng=rng), nn.ReLU(),
        nn.Linear(5, 3, rng=rng),
    )  # fmt: skip


def _batch(seed: int = 1, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)), rng.integers(0, 3, size=n)


def test_gradient_and_hvp_of_an_mlp(any_backend):
    x, y = _batch()
    v = [
        np.random.default_rng(2).standard_normal(s)
        for s in ((8, 6), (8,), (5, 8), (5,), (3, 5), (3,))
    ]

    def run() -> list[np.ndarray]:
        model, loss_fn = _mlp(), nn.CrossEntropyLoss()
        closure = lambda: loss_fn(model(x), y)
        value, grads, hvps = tc.value_grad_and_hvp(closure, model.parameters(), v)
        return _host([value, *grads, *hvps])

    _assert_close(run(), _on_numpy(run))


def test_conv_forward_and_gradient(any_backend):
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((2, 2, 8, 8)), rng.standard_normal((2, 4))

    def run() -> list[np.ndarray]:
        r = np.random.default_rng(4)
        model = nn.Sequential(
            nn.Conv2d(2, 3, 3, stride=1, padding=1, rng=r), nn.Tanh(), nn.MaxPool2d(2),
            nn.Conv2d(3, 2, 2, stride=2, rng=r), nn.Flatten(), nn.Linear(2 * 2 * 2, 4, rng=r),
        )  # fmt: skip
        out = model(x)
        grads = tc.grad(lambda: nn.MSELoss()(model(x), t), model.parameters())
        return _host([out.data, *grads])

    _assert_close(run(), _on_numpy(run))


def _train(make_opt: Callable[[nn.Module], Any], steps: int = 3) -> list[np.ndarray]:
    model = _mlp()
    opt = make_opt(model)
    losses = [opt.step(*_batch(seed)) for seed in range(steps)]
    return _host([np.array(losses), *(p.data for p in model.parameters())])


def test_kfac_steps(any_backend):
    make = lambda m: KFAC(m, nn.CrossEntropyLoss(), lr=0.1, damping=1e-2, mode="exact")
    _assert_close(_train(make), _on_numpy(lambda: _train(make)))


def test_isaac_steps(any_backend):
    make = lambda m: ISAAC(m, nn.CrossEntropyLoss(), lr=0.1, lam_a=1.0, momentum=0.9)
    _assert_close(_train(make), _on_numpy(lambda: _train(make)))


def test_data_round_trip(any_backend, tmp_path):
    X, y, _, _ = load_digits()
    xb, yb = next(batches(X, y, batch_size=32, rng=0))
    on_device = backend.asarray(xb), backend.asarray(yb)
    assert all(isinstance(a, backend.get_backend().ndarray) for a in on_device)
    assert on_device[0].dtype == xb.dtype and on_device[1].dtype == yb.dtype
    back = _host(on_device)
    assert back[0].dtype == xb.dtype and back[1].dtype == yb.dtype
    np.testing.assert_array_equal(back[0], xb)
    np.testing.assert_array_equal(back[1], yb)

    # a checkpoint written on this backend loads back to the same values (and on this backend)
    model = nn.Sequential(nn.Linear(64, 10, rng=np.random.default_rng(5)))
    tc.save(tmp_path / "ck.npz", model)
    fresh = nn.Sequential(nn.Linear(64, 10, rng=np.random.default_rng(6)))
    tc.load(tmp_path / "ck.npz", fresh)
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        assert isinstance(q.data, backend.get_backend().ndarray)
        np.testing.assert_array_equal(tc.asnumpy(q.data), tc.asnumpy(p.data))


def test_host_inputs_move_to_the_backend(any_backend):
    """NumPy arrays given to a Tensor or a loss end up on the backend (same dtype)."""
    xp_ndarray = backend.get_backend().ndarray
    t = tc.Tensor(np.arange(3, dtype=np.float32))
    assert isinstance(t.data, xp_ndarray) and t.dtype == np.float32
    out = tc.Tensor(np.zeros((2, 3)), requires_grad=True)
    loss = nn.CrossEntropyLoss()(out, np.array([0, 2]))
    assert type(loss.data).__module__.split(".")[0] == any_backend  # (NumPy: a 0-d scalar)
    assert abs(float(tc.asnumpy(loss.data)) - np.log(3.0)) < TOL
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        nn.CrossEntropyLoss()(out, np.array([0, 3]))  # host labels are range-checked


def test_device_labels_out_of_range_give_nan_without_a_sync(monkeypatch):
    """On CuPy, labels already on the device are not read back: a bad one makes the loss NaN.

    Simulated on NumPy by making the loss believe the backend is CuPy.
    """
    from tinycurv.nn import losses

    monkeypatch.setattr(losses, "backend_name", lambda: "cupy")
    out = tc.Tensor(np.zeros((2, 3)), requires_grad=True)
    good = nn.CrossEntropyLoss()(out, tc.Tensor(np.array([0, 2])))
    assert abs(float(good.data) - np.log(3.0)) < TOL
    bad = nn.CrossEntropyLoss()(out, tc.Tensor(np.array([0, -1])))
    assert np.isnan(float(bad.data))
    with pytest.raises(ValueError, match="labels must lie"):  # host labels are still checked
        nn.CrossEntropyLoss()(out, np.array([0, 3]))
