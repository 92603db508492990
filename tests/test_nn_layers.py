"""Layers of ``tinycurv.nn``: values, gradients, HVPs, recording, parameters and errors (float64).

Derivatives are checked against central finite differences (``tests/helpers.py``):

* gradients: (L(θ + εeᵢ) − L(θ − εeᵢ)) / 2ε with ε = 1e-6, relative tolerance 1e-7 (truncation
  error ~ε² ≈ 1e-12, rounding ~1e-16/ε ≈ 1e-10);
* HVPs: (∇L(θ + εv) − ∇L(θ − εv)) / 2ε with ε = 1e-5, relative tolerance 1e-6.

"Relative" means max |a − b| / max |b| over all parameters. Each layer is checked inside the
scalar ``L = Σ tanh(layer(x)) ⊙ R`` (R fixed and random), so that even linear layers have a
non-zero Hessian, and the input ``x`` is differentiated along with the layer's parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    GRAD_RTOL,
    HVP_RTOL,
    data_of,
    fd_grad,
    fd_hvp,
    grad_function,
    loss_function,
    rel_err,
)

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray
from tinycurv.tensor import Tensor

# -- layers under test -----------------------------------------------------------------------

LAYERS = {
    "linear": (lambda: nn.Linear(5, 4, rng=0), (3, 5)),
    "linear-nobias": (lambda: nn.Linear(5, 4, bias=False, rng=0), (3, 5)),
    "conv-3x3": (lambda: nn.Conv2d(2, 3, 3, rng=0), (2, 2, 5, 6)),
    "conv-2x3-stride2-pad1-nobias": (
        lambda: nn.Conv2d(2, 3, (2, 3), stride=2, padding=1, bias=False, rng=0),
        (2, 2, 5, 6),
    ),
    "conv-3x2-pad2": (lambda: nn.Conv2d(1, 2, (3, 2), padding=2, rng=0), (2, 1, 4, 4)),
    "conv-1x1": (lambda: nn.Conv2d(3, 2, 1, rng=0), (2, 3, 3, 3)),
    "maxpool-2": (lambda: nn.MaxPool2d(2), (2, 2, 4, 6)),
    "maxpool-3-stride2": (lambda: nn.MaxPool2d(3, stride=2), (2, 2, 7, 5)),
    "maxpool-3-stride1-pad1": (lambda: nn.MaxPool2d(3, stride=1, padding=1), (1, 2, 4, 4)),
    "avgpool-2": (lambda: nn.AvgPool2d(2), (2, 2, 4, 6)),
    "avgpool-3-stride2-pad1": (lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 2, 5, 5)),
    "avgpool-2x3-stride1": (lambda: nn.AvgPool2d((2, 3), stride=1), (1, 2, 4, 5)),
    "flatten": (lambda: nn.Flatten(), (2, 2, 3, 2)),
    "relu": (lambda: nn.ReLU(), (3, 7)),
    "tanh": (lambda: nn.Tanh(), (3, 7)),
    "sigmoid": (lambda: nn.Sigmoid(), (3, 7)),
    "elu": (lambda: nn.ELU(), (3, 7)),
    "elu-0.5": (lambda: nn.ELU(alpha=0.5), (3, 7)),
}


def _setup(name: str, seed: int = 1):
    """The layer, the input leaf x, all leaves [x, *parameters] and the closure L."""
    make, shape = LAYERS[name]
    layer = make()
    rng = np.random.default_rng(seed)
    x = Tensor(asarray(rng.standard_normal(shape)), requires_grad=True, name="x")
    with tc.no_grad():
        out_shape = layer(x).shape
    R = asarray(rng.standard_normal(out_shape))
    closure = lambda: (layer(x).tanh() * R).sum()
    return layer, x, [x, *layer.parameters()], closure


@pytest.mark.parametrize("name", list(LAYERS))
def test_gradient_matches_finite_differences(name):
    _, _, params, closure = _setup(name)
    want = fd_grad(loss_function(closure, params), data_of(params))
    assert rel_err(tc.grad(closure, params), want) < GRAD_RTOL


@pytest.mark.parametrize("name", list(LAYERS))
def test_hvp_matches_finite_differences(name):
    _, _, params, closure = _setup(name)
    rng = np.random.default_rng(2)
    v = [asarray(rng.standard_normal(p.shape)) for p in params]
    want = fd_hvp(grad_function(closure, params), data_of(params), v)
    assert rel_err(tc.hvp(closure, params, v), want) < HVP_RTOL


# -- values against direct loops ---------------------------------------------------------------


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_loop(x, w, b, stride, padding):
    """Direct convolution (cross-correlation, as PyTorch) by explicit loops."""
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    xp_ = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    out = np.zeros((N, O, oh, ow))
    for n in range(N):
        for o in range(O):
            for i in range(oh):
                for j in range(ow):
                    window = xp_[n, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    out[n, o, i, j] = np.sum(window * w[o]) + (0.0 if b is None else b[o])
    return out


def pool_loop(x, k, stride, padding, reduce, fill):
    """Pooling by explicit loops over windows of the ``fill``-padded input."""
    (kh, kw), (N, C, H, W) = k, x.shape
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    xp_ = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    oh, ow = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    out = np.zeros((N, C, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = xp_[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            out[:, :, i, j] = reduce(window.reshape(N, C, -1), axis=2)
    return out


@pytest.mark.parametrize("name", [n for n in LAYERS if n.startswith("conv")])
def test_conv2d_matches_loop_convolution(name):
    layer, x, _, _ = _setup(name)
    got = tc.asnumpy(layer(x).data)
    w = tc.asnumpy(layer.weight.data)
    b = None if layer.bias is None else tc.asnumpy(layer.bias.data)
    want = conv_loop(tc.asnumpy(x.data), w, b, layer.stride, layer.padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", [n for n in LAYERS if "pool" in n])
def test_pooling_matches_loops(name):
    layer, x, _, _ = _setup(name)
    is_max = isinstance(layer, nn.MaxPool2d)
    reduce, fill = (np.max, -np.inf) if is_max else (np.mean, 0.0)
    k, s, p = layer.kernel_size, layer.stride, layer.padding
    want = pool_loop(tc.asnumpy(x.data), k, s, p, reduce, fill)
    np.testing.assert_allclose(tc.asnumpy(layer(x).data), want, rtol=1e-14, atol=1e-15)


def test_maxpool_gradient_goes_to_first_maximum_only():
    x = Tensor(asarray(np.array([[[[1.0, 3.0], [3.0, 0.0]]]])), requires_grad=True)
    (nn.MaxPool2d(2)(x).sum()).backward()
    np.testing.assert_array_equal(tc.asnumpy(x.grad), [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_pooling_default_stride_is_the_kernel_size_per_axis():
    """PyTorch: ``stride=None`` means ``stride = kernel_size`` on each axis."""
    x = Tensor(asarray(np.arange(36.0).reshape(1, 1, 4, 9)))
    assert nn.AvgPool2d((2, 3))(x).shape == (1, 1, 2, 3)


def test_activation_values():
    z = np.linspace(-3, 3, 13)
    x = Tensor(asarray(z))
    cases = {
        nn.ReLU(): np.maximum(z, 0),
        nn.Tanh(): np.tanh(z),
        nn.Sigmoid(): 1 / (1 + np.exp(-z)),
        nn.ELU(): np.where(z > 0, z, np.expm1(z)),
        nn.ELU(0.3): np.where(z > 0, z, 0.3 * np.expm1(z)),
    }
    for layer, want in cases.items():
        np.testing.assert_allclose(tc.asnumpy(layer(x).data), want, rtol=1e-14, atol=1e-15)


def test_flatten_shape_and_order():
    z = np.arange(24.0).reshape(2, 3, 2, 2)
    out = tc.asnumpy(nn.Flatten()(Tensor(asarray(z))).data)
    np.testing.assert_array_equal(out, z.reshape(2, 12))


# -- recording a and g -------------------------------------------------------------------------


def _mlp(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(5, 6, rng=rng), nn.Tanh(), nn.Linear(6, 3, rng=rng))


def _cnn(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, (3, 2), stride=1, padding=1, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 2, stride=2, bias=False, rng=rng),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4, 3, rng=rng),
    )


def _batch(shape, seed: int = 3, classes: int = 3):
    rng = np.random.default_rng(seed)
    return asarray(rng.standard_normal(shape)), asarray(rng.integers(0, classes, shape[0]))


@pytest.mark.parametrize("make, shape", [(_mlp, (4, 5)), (_cnn, (3, 2, 5, 4))])
def test_record_gta_is_the_weight_gradient(make, shape):
    model, (x, y) = make(), _batch(shape)
    with nn.record(model) as rec:
        loss = nn.CrossEntropyLoss()(model(x), y)
        loss.backward()
    assert list(rec) == [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    for layer, r in rec.items():
        gw = tc.asnumpy(r.g).T @ tc.asnumpy(r.a)
        want = tc.asnumpy(layer.weight.grad)
        np.testing.assert_allclose(gw.reshape(layer.weight.shape), want, rtol=1e-12)
        if layer.bias is not None:
            want = tc.asnumpy(layer.bias.grad)
            np.testing.assert_allclose(tc.asnumpy(r.g).sum(0), want, rtol=1e-12)
    assert all(layer._record is None for layer in rec)


def test_record_g_is_the_batch_loss_gradient_of_the_output():
    """g of a layer is ∂(batch loss)/∂(its output), including the 1/b of the mean."""
    model, (x, y) = _mlp(), _batch((4, 5))
    first, rest = model[0], nn.Sequential(*model.layers[1:])
    with nn.record(model) as rec:
        nn.CrossEntropyLoss()(model(x), y).backward()
    h = Tensor(first(x).data, requires_grad=True)
    (g_h,) = tc.grad(lambda: nn.CrossEntropyLoss()(rest(h), y), [h])
    np.testing.assert_allclose(tc.asnumpy(rec[first].g), tc.asnumpy(g_h), rtol=1e-12)
    f = tc.asnumpy(model(x).data)
    p = np.exp(f - f.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[tc.asnumpy(y)]
    np.testing.assert_allclose(tc.asnumpy(rec[model[2]].g), (p - onehot) / 4, rtol=1e-12)


def test_record_g_of_a_convolution_is_per_location():
    model, (x, y) = _cnn(), _batch((3, 2, 5, 4))
    conv, rest = model[0], nn.Sequential(*model.layers[1:])
    with nn.record(model) as rec:
        nn.CrossEntropyLoss()(model(x), y).backward()
    h = Tensor(conv(x).data, requires_grad=True)  # (N, out, oh, ow)
    (g_h,) = tc.grad(lambda: nn.CrossEntropyLoss()(rest(h), y), [h])
    rows = tc.asnumpy(g_h).transpose(0, 2, 3, 1).reshape(-1, conv.out_channels)  # (N·oh·ow, out)
    np.testing.assert_allclose(tc.asnumpy(rec[conv].g), rows, rtol=1e-12)
    assert rec[conv].a.shape == (rows.shape[0], 2 * 3 * 2)


def test_record_overwrites_g_on_each_backward():
    model, (x, y) = _mlp(), _batch((4, 5))
    loss_fn = nn.CrossEntropyLoss()
    with nn.record(model) as rec:
        out = model(x)
        loss_fn(out, y).backward()
        g_true = tc.asnumpy(rec[model[2]].g).copy()
        loss_fn(out, (y + 1) % 3).backward()
    assert not np.allclose(g_true, tc.asnumpy(rec[model[2]].g))


# -- parameters, state dicts, initialisation --------------------------------------------------


def test_parameter_order_and_names():
    model = _cnn()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "3.weight", "6.weight", "6.bias"]
    expected = [model[0].weight, model[0].bias, model[3].weight, model[6].weight, model[6].bias]
    assert all(a is b for a, b in zip(model.parameters(), expected, strict=True))
    assert model.num_parameters() == 3 * 2 * 3 * 2 + 3 + 4 * 3 * 2 * 2 + 4 * 3 + 3


def test_state_dict_round_trip():
    x, _ = _batch((3, 2, 5, 4))
    a, b = _cnn(seed=0), _cnn(seed=1)
    state = a.state_dict()
    assert not np.array_equal(tc.asnumpy(a(x).data), tc.asnumpy(b(x).data))
    b.load_state_dict(state)
    np.testing.assert_array_equal(tc.asnumpy(a(x).data), tc.asnumpy(b(x).data))
    state["0.weight"][...] = 0.0  # a copy: the model is unaffected
    assert np.any(tc.asnumpy(a[0].weight.data) != 0)


def test_load_state_dict_errors():
    model, state = _mlp(), _mlp().state_dict()
    with pytest.raises(KeyError, match="missing"):
        model.load_state_dict({k: v for k, v in state.items() if k != "0.bias"})
    state["0.bias"] = np.zeros(7)
    with pytest.raises(ValueError, match="shape"):
        model.load_state_dict(state)


def test_seeded_initialisation_is_reproducible():
    for make in (_mlp, _cnn):
        a, b, c = make(0).state_dict(), make(0).state_dict(), make(1).state_dict()
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert not any(np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    "layer, fan_in",
    [(nn.Linear(200, 300, rng=0), 200), (nn.Conv2d(8, 64, (3, 5), rng=0), 8 * 3 * 5)],
)
def test_initialisation_bounds_are_pytorch_like(layer, fan_in):
    """U(−1/√fan_in, 1/√fan_in) for weight and bias, filling the interval."""
    bound = 1 / np.sqrt(fan_in)
    for p in layer.parameters():
        values = tc.asnumpy(p.data)
        assert values.dtype == np.float64
        assert np.all(np.abs(values) <= bound)
        assert values.max() > 0.9 * bound and values.min() < -0.9 * bound
        assert abs(values.mean()) < 0.1 * bound  # the mean of ≥ 64 uniform draws


# -- errors -------------------------------------------------------------------------------------


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"Linear\(5, 4\)"):
        nn.Linear(5, 4, rng=0)(asarray(np.zeros((2, 6))))
    with pytest.raises(ValueError, match="Linear"):
        nn.Linear(5, 4, rng=0)(asarray(np.zeros(5)))
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        nn.Conv2d(2, 3, 3, rng=0)(asarray(np.zeros((1, 3, 5, 5))))
    with pytest.raises(ValueError, match="Conv2d"):
        nn.Conv2d(2, 3, 3, rng=0)(asarray(np.zeros((2, 5, 5))))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        nn.Conv2d(2, 3, 3, rng=0)(asarray(np.zeros((1, 2, 2, 5))))
    with pytest.raises(ValueError, match="NCHW"):
        nn.MaxPool2d(2)(asarray(np.zeros((2, 4, 4))))
    with pytest.raises(ValueError, match="padding"):
        nn.AvgPool2d(2, padding=2)


# == input checks at the boundary (tests/test_input_errors.py has the bad inputs) ==============
# Windows that exactly fit the (padded) input, just inside what the new checks reject, still
# give the loop values and finite-difference gradients.

EDGE_LAYERS = {
    "maxpool-window-equals-input": (lambda: nn.MaxPool2d(3), (2, 1, 3, 3)),
    "maxpool-window-fits-by-padding": (lambda: nn.MaxPool2d(3, stride=1, padding=1), (1, 2, 1, 2)),
    "avgpool-window-fits-by-padding": (lambda: nn.AvgPool2d((3, 2), padding=1), (1, 1, 1, 1)),
    "conv-kernel-equals-input": (lambda: nn.Conv2d(2, 3, (2, 3), rng=0), (2, 2, 2, 3)),
    "conv-numpy-integer-sizes": (
        lambda: nn.Conv2d(np.int64(1), np.int32(2), np.int64(2), stride=np.int64(1), rng=0),
        (1, 1, 3, 3),
    ),
}


@pytest.mark.parametrize("name", list(EDGE_LAYERS))
def test_edge_windows_match_loops_and_finite_differences(name, monkeypatch):
    monkeypatch.setitem(LAYERS, name, EDGE_LAYERS[name])
    layer, x, params, closure = _setup(name)
    got = tc.asnumpy(layer(x).data)
    xs = tc.asnumpy(x.data)
    if isinstance(layer, nn.Conv2d):
        b = None if layer.bias is None else tc.asnumpy(layer.bias.data)
        want = conv_loop(xs, tc.asnumpy(layer.weight.data), b, layer.stride, layer.padding)
    else:
        is_max = isinstance(layer, nn.MaxPool2d)
        reduce, fill = (np.max, -np.inf) if is_max else (np.mean, 0.0)
        want = pool_loop(xs, layer.kernel_size, layer.stride, layer.padding, reduce, fill)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    want_grad = fd_grad(loss_function(closure, params), data_of(params))
    assert rel_err(tc.grad(closure, params), want_grad) < GRAD_RTOL


def test_checked_sizes_are_stored_as_python_ints():
    conv = nn.Conv2d(np.int64(2), 3, [np.int64(3), 1], stride=(np.int32(2), 1), padding=[0, 1])
    assert conv.kernel_size == (3, 1) and conv.stride == (2, 1) and conv.padding == (0, 1)
    assert all(type(v) is int for v in (*conv.kernel_size, *conv.stride, conv.in_channels))
    assert repr(conv) == "Conv2d(2, 3, kernel_size=(3, 1), stride=(2, 1), padding=(0, 1))"
    assert nn.MaxPool2d((2, 3)).stride == (2, 3)  # the stride defaults to the kernel, per axis


# == end of the input-check block ===============================================================


# -- batched HVPs through chains of convolutions and pooling -----------------------------------

# Unfold maps N samples to N·oh·ow rows and Patches adds window axes: with k directions folded
# into the sample axis, the result must be split by its own shape. The input of every layer after
# the first depends on the parameters, and x is a parameter too (so the first one's does as well).
CHAINS = {
    "conv-tanh-conv": lambda: nn.Sequential(
        nn.Conv2d(1, 2, 3, rng=0),
        nn.Tanh(),
        nn.Conv2d(2, 2, 3, rng=1),
        nn.Flatten(),
        nn.Linear(8, 3, rng=2),
    ),
    "conv-maxpool-conv": lambda: nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, rng=0),
        nn.MaxPool2d(2),
        nn.Conv2d(2, 2, 2, rng=1),
        nn.Flatten(),
        nn.Linear(8, 3, rng=2),
    ),
    "conv-sigmoid-avgpool-pad1": lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3, rng=0),
        nn.Sigmoid(),
        nn.AvgPool2d(3, stride=1, padding=1),
        nn.Flatten(),
        nn.Linear(48, 3, rng=2),
    ),
    "conv-relu-maxpool-conv-stride2": lambda: nn.Sequential(
        nn.Conv2d(1, 2, 2, rng=0),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=1, padding=1),
        nn.Conv2d(2, 3, 3, stride=2, padding=1, rng=1),
        nn.Flatten(),
        nn.Linear(27, 3, rng=2),
    ),
}


@pytest.mark.parametrize("with_input", [False, True], ids=["params", "params-and-input"])
@pytest.mark.parametrize("name", list(CHAINS))
def test_batched_hvp_through_conv_and_pool_chains(name, with_input):
    """``hvp(…, batched=True)`` equals the k single HVPs (1e-12) and finite differences."""
    model = CHAINS[name]()
    rng = np.random.default_rng(3)
    x = Tensor(asarray(rng.standard_normal((2, 1, 6, 6))), requires_grad=with_input)
    params = ([x] if with_input else []) + list(model.parameters())
    closure = lambda: (model(x) ** 2).sum()
    k = 3
    vs = [asarray(rng.standard_normal((k,) + p.shape)) for p in params]
    hb = tc.hvp(closure, params, vs, batched=True)
    assert [h.shape for h in hb] == [(k,) + p.shape for p in params]
    g = grad_function(closure, params)
    for j in range(k):
        vj = [v[j] for v in vs]
        one = tc.hvp(closure, params, vj)
        assert rel_err([h[j] for h in hb], one) < 1e-12
        assert rel_err(one, fd_hvp(g, data_of(params), vj)) < HVP_RTOL


# --------------------------------------------------------------------------------------------
# padding semantics that only show on special inputs (survivors of the mutation run)
# --------------------------------------------------------------------------------------------
def _naive_pool(x, k, s, p, reduce, fill):
    N, C, H, W = x.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=fill)
    oh, ow = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    out = np.empty((N, C, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp_[:, :, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]]
            out[:, :, i, j] = reduce(win, axis=(2, 3))
    return out


def test_maxpool_padding_acts_as_minus_infinity_on_all_negative_inputs():
    """PyTorch semantics: a padded window of negative values has a negative maximum, never 0."""
    x = -1.0 - np.random.default_rng(3).random((2, 3, 5, 4))
    pool = nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 1))
    got = tc.asnumpy(pool(tc.Tensor(asarray(x))).data)
    np.testing.assert_array_equal(got, _naive_pool(x, (3, 2), (2, 1), (1, 1), np.max, -np.inf))
    assert (got < 0).all()


def test_conv_and_avgpool_with_different_paddings_per_axis():
    """Padding (ph, pw) with ph ≠ pw: each axis padded by its own amount (zeros counted)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 5, 6))
    pool = nn.AvgPool2d(3, stride=1, padding=(1, 0))
    got = tc.asnumpy(pool(tc.Tensor(asarray(x))).data)
    np.testing.assert_allclose(got, _naive_pool(x, (3, 3), (1, 1), (1, 0), np.mean, 0.0))
    conv = nn.Conv2d(2, 3, (3, 2), padding=(2, 0), rng=5)
    W, bias = tc.asnumpy(conv.weight.data), tc.asnumpy(conv.bias.data)
    xp_ = np.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)))
    oh, ow = xp_.shape[2] - 2, xp_.shape[3] - 1
    want = np.empty((2, 3, oh, ow))
    for i in range(oh):
        for j in range(ow):
            want[:, :, i, j] = np.einsum("ncij,ocij->no", xp_[:, :, i : i + 3, j : j + 2], W) + bias
    np.testing.assert_allclose(tc.asnumpy(conv(tc.Tensor(asarray(x))).data), want, atol=1e-12)
