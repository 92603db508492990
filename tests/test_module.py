"""``Module``: a tied weight is one parameter; load_state_dict copies, keeps dtypes, is atomic."""

from __future__ import annotations

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray
from tinycurv.optim import SGD


def _mlp(seed: int) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(4, 5, rng=rng), nn.Tanh(), nn.Linear(5, 2, rng=rng))


def _host_state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.state_dict().items()}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a
    )


class TiedHead(nn.Module):
    """A bare Tensor registered twice: ``embed.weight`` and ``head``."""

    def __init__(self) -> None:
        self.embed = nn.Linear(3, 3, rng=0)
        self.head = self.embed.weight

    def forward(self, x):
        return self.embed(x) @ self.head


def test_a_layer_used_twice_is_one_parameter_stepped_once():
    lin, tanh = nn.Linear(3, 3, rng=0), nn.Tanh()
    model = nn.Sequential(lin, tanh, lin)
    params = model.parameters()
    assert len(params) == 2 and params[0] is lin.weight and params[1] is lin.bias
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert model.num_parameters() == 3 * 3 + 3
    assert [type(m) for m in model.modules()] == [nn.Sequential, nn.Linear, nn.Tanh]
    assert list(model.state_dict()) == ["0.weight", "0.bias"]
    assert [name for name, _ in TiedHead().named_parameters()] == ["embed.weight", "embed.bias"]

    # the expected gradient, from an untied copy: the sum over both uses
    first, second = nn.Linear(3, 3, rng=1), nn.Linear(3, 3, rng=2)
    first.load_state_dict({"weight": lin.state_dict()["weight"], "bias": lin.state_dict()["bias"]})
    second.load_state_dict(first.state_dict())
    untied = nn.Sequential(first, nn.Tanh(), second)
    rng = np.random.default_rng(3)
    x, y = asarray(rng.standard_normal((8, 3))), asarray(rng.standard_normal((8, 3)))
    loss = nn.MSELoss()
    g = tc.grad(lambda: loss(untied(x), y), untied.parameters())
    want = [
        tc.asnumpy(p.data) - 0.1 * (tc.asnumpy(g[i]) + tc.asnumpy(g[i + 2]))
        for i, p in enumerate(params)
    ]
    SGD(model, loss, lr=0.1).step(x, y)
    for p, w in zip(params, want, strict=True):
        np.testing.assert_allclose(tc.asnumpy(p.data), w, rtol=1e-12, atol=1e-14)


def test_load_state_dict_copies_keeps_the_dtype_and_is_atomic():
    model, source = _mlp(0), _mlp(1)
    state = {k: asarray(v) for k, v in source.state_dict().items()}  # backend arrays, same dtype
    kept = {k: tc.asnumpy(v).copy() for k, v in state.items()}
    model.load_state_dict(state)
    assert _same(model.state_dict(), kept)
    model[0].weight.data[...] = 7.0  # the model's own copy: the caller's dict is unaffected
    assert _same({k: tc.asnumpy(v) for k, v in state.items()}, kept)
    before = _host_state(model)
    state["0.bias"][...] = -7.0  # and the other way round
    assert _same(model.state_dict(), before)

    # atomic: a bad shape (or value) in the last entry leaves every earlier one untouched
    bad = source.state_dict()
    bad["2.bias"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"2\.bias has shape \(3,\), expected \(2,\)"):
        model.load_state_dict(bad)
    assert _same(model.state_dict(), before)
    for value, match in [
        (np.full(2, np.nan), "NaN or inf"),
        (np.array(["a", "b"]), "real numbers"),
        (np.ones(2, dtype=complex), "real numbers"),
        ("ab", "real numbers"),
    ]:
        bad["2.bias"] = value
        with pytest.raises(ValueError, match=match):
            model.load_state_dict(bad)
        assert _same(model.state_dict(), before)
    good = source.state_dict()
    with pytest.raises(KeyError, match=r"missing \['0.bias'\], unexpected \['extra'\]"):
        model.load_state_dict({**{k: v for k, v in good.items() if k != "0.bias"}, "extra": 1})
    assert _same(model.state_dict(), before)

    # a float32 model stays float32 (and a cast that overflows float32 is refused)
    tc.set_default_dtype("float32")
    small = _mlp(2)
    small.load_state_dict(good)
    assert all(p.dtype == np.float32 for p in small.parameters())
    for name, p in small.named_parameters():
        np.testing.assert_array_equal(tc.asnumpy(p.data), good[name].astype(np.float32))
    before = _host_state(small)
    with pytest.raises(ValueError, match="too large"), np.errstate(over="ignore"):  # stand-in
        small.load_state_dict({**good, "0.bias": np.full(5, 1e300)})
    assert _same(small.state_dict(), before)


def test_reassigning_an_attribute_unregisters_it():
    lin = nn.Linear(3, 2, rng=0)
    lin.bias = None
    assert [name for name, _ in lin.named_parameters()] == ["weight"]
    child = nn.Linear(2, 2, rng=1)
    model = nn.Sequential(lin)
    model.extra = child
    del model.extra
    assert [p is lin.weight for p in model.parameters()] == [True]
