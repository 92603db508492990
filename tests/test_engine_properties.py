"""Property-based fuzz of the engine: random compositions of primitives, differentiated four ways.

Hypothesis (the derandomised profile of ``conftest.py``) draws small programs ``y = f(θ…)`` —
broadcasting binary operations against parameters and constants of other ranks, elementwise
functions, reductions with negative axes and ``keepdims``, reshapes with ``-1``, transposes with
negative axes, matmuls, every form of NumPy indexing (basic, advanced, mixed, non-adjacent
advanced indices, boolean masks, ``None``, ``...``, negative ints), and chains of 1–3
convolution and pooling layers — and differentiates ``L = Σ R ⊙ y + ½ Σ y²`` (R fixed and random,
so even linear programs have a Hessian, JᵀJ) in float64:

(a) ``hvp(…, batched=True)`` with k = 2 directions equals the stack of the k single HVPs (relative
    ``STACK_RTOL`` = 1e-12: the same products, possibly in another order), and each equals the
    central difference of the exact gradient, ``(∇L(θ + εv) − ∇L(θ − εv)) / 2ε``, ε = 1e-5
    (relative ``HVP_RTOL`` = 1e-6, see ``helpers.py``);
(b) ``jvp`` equals the central difference ``(L(θ + εv) − L(θ − εv)) / 2ε``, ε = 1e-6 (``JVP_RTOL``
    = 1e-7 relative to Σ|∇L ⊙ v|), and ``taylor`` gives φ(0) = L and φ'(0) = jvp (1e-12),
    φ''(0) = v·(the finite-difference HVP) and φ'''(0) = the central difference (ε = 1e-5) of
    v·H(θ + tv)v (both to relative 1e-6 of the larger of the term and Σ|v ⊙ Hv|).

A last group checks the dual-number functions themselves: a batched tangent (k directions)
through each function equals the k single tangents exactly, and a single tangent equals the
finite difference of the value map (``DUAL_RTOL`` = 1e-7, ε = 1e-6).

Inputs are standard normal; finite-difference steps never cross a kink of relu/maximum/max-pool
except with negligible probability (the examples are fixed, so a failure would be reproducible).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import (
    HVP_RTOL,
    JVP_RTOL,
    data_of,
    fd_hvp,
    fd_jvp,
    grad_function,
    loss_function,
    random_like,
    rel_err,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinycurv as tc
from tinycurv import dual as D
from tinycurv import nn, ops
from tinycurv.backend import asarray, xp
from tinycurv.tensor import Tensor

K = 2
STACK_RTOL = 1e-12
TAYLOR_EPS = 1e-5
DUAL_EPS, DUAL_RTOL = 1e-6, 1e-7

seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def leaves(arrays: list[np.ndarray]) -> list[Tensor]:
    return [Tensor(asarray(a), requires_grad=True, name=f"p{i}") for i, a in enumerate(arrays)]


# ----------------------------------------------------------------------------- the checker


def check_program(forward: Callable[[], Tensor], params: list[Tensor], seed: int) -> None:
    """Properties (a) and (b) for ``L = Σ R ⊙ y + ½ Σ y²``, ``y = forward()`` (of ``params``)."""
    rng = np.random.default_rng([seed, 7])
    with tc.no_grad():
        R = asarray(rng.standard_normal(forward().shape))

    def closure() -> Tensor:
        y = forward()
        return (y * R).sum() + 0.5 * (y * y).sum()

    f, g, x0 = loss_function(closure, params), grad_function(closure, params), data_of(params)

    # (a) batched == stacked single == finite differences of the gradient
    vs = random_like(params, rng, k=K)
    hb = tc.hvp(closure, params, vs, batched=True)
    assert [h.shape for h in hb] == [(K,) + p.shape for p in params]
    for j in range(K):
        vj = [v[j] for v in vs]
        one = tc.hvp(closure, params, vj)
        assert rel_err([h[j] for h in hb], one) <= STACK_RTOL
        assert rel_err(one, fd_hvp(g, x0, vj)) < HVP_RTOL

    # (b) jvp and taylor against finite differences
    v = [w[0] for w in vs]
    vh = [tc.asnumpy(a) for a in v]
    value, jv = tc.jvp(closure, params, v)
    f0, g0 = f(x0), g(x0)
    scale = sum(float(np.sum(np.abs(gi * vi))) for gi, vi in zip(g0, vh, strict=True))
    assert abs(float(jv) - fd_jvp(f, x0, v)) <= JVP_RTOL * scale + 1e-9 * max(1.0, abs(f0))

    phi = tc.taylor(closure, params, v, order=3)
    assert abs(phi[0] - f0) <= 1e-12 * max(1.0, abs(f0))
    assert abs(phi[1] - float(jv)) <= 1e-12 * max(1.0, scale)
    hv = fd_hvp(g, x0, v)
    curv = sum(float(np.sum(vi * h)) for vi, h in zip(vh, hv, strict=True))
    curv_scale = sum(float(np.sum(np.abs(vi * h))) for vi, h in zip(vh, hv, strict=True))
    assert abs(phi[2] - curv) <= HVP_RTOL * max(1.0, curv_scale)
    third = _vhv(closure, params, x0, vh, TAYLOR_EPS) - _vhv(closure, params, x0, vh, -TAYLOR_EPS)
    third /= 2 * TAYLOR_EPS
    assert abs(phi[3] - third) <= HVP_RTOL * max(1.0, curv_scale, abs(third))


def _vhv(closure, params, x0: list, v: list, t: float) -> float:
    """v·H(θ + t·v)·v from the engine's HVP at a shifted point (parameters restored after)."""
    saved = [p.data for p in params]
    try:
        for p, a, d in zip(params, x0, v, strict=True):
            p.data = asarray(a + t * d)
        hv = tc.hvp(closure, params, [asarray(d) for d in v])
    finally:
        for p, s in zip(params, saved, strict=True):
            p.data = s
    return sum(float(np.sum(d * tc.asnumpy(h))) for d, h in zip(v, hv, strict=True))


# ----------------------------------------------------------------------------- random indices


@st.composite
def indices(draw, shape: tuple[int, ...]) -> Any:
    """A NumPy index for an array of ``shape`` whose result is not empty.

    Mixes full and strided slices (negative steps too), Python and NumPy ints (negative too),
    index arrays and lists (repeats), 1-D and 2-D boolean masks, ``None`` and ``...``. All index
    arrays select ``m`` positions, so they broadcast together; where two of them are separated
    by a slice, an int or ``None``, NumPy moves the advanced axes to the front.
    """
    m = draw(st.integers(1, 3))
    kinds = ["all", "slice", "int", "np-int", "array", "list", "mask"]
    entries: list[Any] = []
    for n in shape:
        kind = draw(st.sampled_from(kinds))
        if kind == "slice":
            s = slice(
                draw(st.none() | st.integers(-n, n - 1)),
                draw(st.none() | st.integers(-n, n)),
                draw(st.sampled_from([None, 2, -1, -2])),
            )
            entries.append(s if len(range(*s.indices(n))) else slice(None))
        elif kind in ("int", "np-int"):
            i = draw(st.integers(-n, n - 1))
            entries.append(i if kind == "int" else np.int64(i))
        elif kind in ("array", "list") or (kind == "mask" and m > n):
            picks = draw(st.lists(st.integers(-n, n - 1), min_size=m, max_size=m))
            entries.append(picks if kind == "list" else np.array(picks))
        elif kind == "mask":
            mask = np.zeros(n, dtype=bool)
            mask[draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m, unique=True))] = True
            entries.append(mask)
        else:
            entries.append(slice(None))
    if len(shape) >= 2 and shape[0] * shape[1] >= m and draw(st.integers(0, 4)) == 0:
        mask = np.zeros(shape[0] * shape[1], dtype=bool)  # one mask over the two leading axes
        mask[draw(st.lists(st.integers(0, mask.size - 1), min_size=m, max_size=m, unique=True))] = 1
        entries[:2] = [mask.reshape(shape[:2])]
    if draw(st.booleans()):  # `...` stands for a run of entries (maybe none)
        i = draw(st.integers(0, len(entries)))
        j = draw(st.integers(i, len(entries)))
        entries[i:j] = [Ellipsis]
    else:  # or trailing entries are left out
        entries = entries[: draw(st.integers(0, len(entries)))]
    for _ in range(draw(st.integers(0, 2))):
        entries.insert(draw(st.integers(0, len(entries))), None)
    if len(entries) == 1 and draw(st.booleans()):
        return entries[0]
    return tuple(entries)


def _on_backend(idx: Any) -> Any:
    """Index arrays moved to the backend (lists, ints, slices pass through)."""
    move = lambda i: asarray(i) if isinstance(i, np.ndarray) else i
    return tuple(map(move, idx)) if isinstance(idx, tuple) else move(idx)


# ----------------------------------------------------------------------------- random programs


def _signed(draw, axis: int, nd: int) -> int:
    """``axis`` written as itself or counted from the end."""
    return axis - nd if draw(st.booleans()) else axis


def _binary(draw, shape, rng, params):
    """A broadcasting binary op against a new parameter or a constant of another rank."""
    other = draw(hnp.broadcastable_shapes(shape, min_dims=0, max_dims=min(len(shape) + 1, 3)))
    name = draw(st.sampled_from(["add", "sub", "rsub", "mul", "div", "maximum", "where"]))
    b = rng.standard_normal(other)
    if draw(st.booleans()):
        i = len(params)
        params.append(b)
        get = lambda ps: ps[i]
    else:
        const = asarray(b)
        get = lambda ps: const
    cond = asarray(rng.random(np.broadcast_shapes(shape, other)) < 0.5)
    return name, {
        "add": lambda y, ps: y + get(ps),
        "sub": lambda y, ps: y - get(ps),
        "rsub": lambda y, ps: get(ps) - y,
        "mul": lambda y, ps: y * get(ps),
        "div": lambda y, ps: y / (get(ps) * get(ps) + 1.0),
        "maximum": lambda y, ps: ops.maximum(y, get(ps)),
        "where": lambda y, ps: ops.where(cond, y, get(ps) * 2.0),
    }[name]


UNARY = {
    "tanh": lambda y: y.tanh(),
    "sigmoid": lambda y: ops.sigmoid(y),
    "square": lambda y: y * y,
    "cube": lambda y: ops.pow(y, 3) * 0.3,
    "exp": lambda y: (y * 0.5).exp(),
    "log1p-square": lambda y: (y * y + 1.0).log(),
    "relu": lambda y: y.relu(),
}


def _unary(draw, shape, rng, params):
    name = draw(st.sampled_from(sorted(UNARY)))
    return name, lambda y, ps: UNARY[name](y)


def _reduce(draw, shape, rng, params):
    nd = len(shape)
    keepdims = draw(st.booleans())
    name = draw(st.sampled_from(["sum", "mean", "logsumexp", "log_softmax"]))
    axis = _signed(draw, draw(st.integers(0, nd - 1)), nd)
    if name in ("sum", "mean") and draw(st.booleans()):
        picks = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
        axis = tuple(_signed(draw, a, nd) for a in picks)
    label = f"{name}(axis={axis}, keepdims={keepdims})"
    return label, {
        "sum": lambda y, ps: y.sum(axis=axis, keepdims=keepdims),
        "mean": lambda y, ps: ops.mean(y, axis=axis, keepdims=keepdims),
        "logsumexp": lambda y, ps: y.logsumexp(axis=axis, keepdims=keepdims),
        "log_softmax": lambda y, ps: y.log_softmax(axis=axis),
    }[name]


def _reshape(draw, shape, rng, params):
    dims = list(draw(st.permutations(list(shape))))
    if draw(st.booleans()):
        dims.insert(draw(st.integers(0, len(dims))), 1)
    if draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    new = tuple(dims)
    return f"reshape{new}", lambda y, ps: y.reshape(new)


def _transpose(draw, shape, rng, params):
    nd = len(shape)
    axes = tuple(_signed(draw, a, nd) for a in draw(st.permutations(list(range(nd)))))
    form = draw(st.sampled_from(["ops", "method", "T"]))
    return f"transpose{axes}/{form}", {
        "ops": lambda y, ps: ops.transpose(y, axes),
        "method": lambda y, ps: y.transpose(*axes),
        "T": lambda y, ps: y.T,
    }[form]


def _index(draw, shape, rng, params):
    idx = draw(indices(shape))
    return f"getitem[{idx!r}]", lambda y, ps: y[idx]


def _matmul(draw, shape, rng, params):
    i, m = len(params), draw(st.integers(1, 3))
    if len(shape) >= 2 and draw(st.booleans()):
        params.append(rng.standard_normal((m, shape[-2])) / 2)
        return "W @ y", lambda y, ps: ps[i] @ y
    params.append(rng.standard_normal((shape[-1], m)) / 2)
    return "y @ W", lambda y, ps: y @ ps[i]


STAGES = {
    "binary": _binary,
    "unary": _unary,
    "reduce": _reduce,
    "reshape": _reshape,
    "transpose": _transpose,
    "index": _index,
    "matmul": _matmul,
}


@st.composite
def programs(draw):
    """(labels, build, arrays, seed): a chain of 1–4 random stages on a first parameter."""
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(draw(shapes))]
    stages, labels = [], []
    probe = Tensor(asarray(arrays[0]))
    for _ in range(draw(st.integers(1, 4))):
        if probe.ndim == 0 or probe.size > 64:  # scalars and big values only shrink or grow
            kinds = ["binary", "unary"] if probe.ndim == 0 else ["reduce", "index"]
        else:
            kinds = sorted(STAGES)
        label, stage = STAGES[draw(st.sampled_from(kinds))](draw, probe.shape, rng, arrays)
        with tc.no_grad():
            probe = stage(probe, [Tensor(asarray(a)) for a in arrays])
        stages.append(stage)
        labels.append(label)

    def build(ps: list[Tensor]) -> Tensor:
        y = ps[0]
        for stage in stages:
            y = stage(y, ps)
        return y

    return labels, build, arrays, seed


@given(program=programs())
def test_random_programs(program):
    labels, build, arrays, seed = program
    params = leaves(arrays)
    check_program(lambda: build(params), params, seed)


@pytest.mark.parametrize("kind", ["index", "transpose", "reduce"])
@given(data=st.data())
def test_random_programs_around_one_kind(kind, data):
    """The same properties on programs built around one kind of stage, for more of its forms:
    ``tanh · stage · (y @ W)`` with a parameter before and after it."""
    seed = data.draw(seeds)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(data.draw(shapes))]
    label, stage = STAGES[kind](data.draw, arrays[0].shape, rng, arrays)
    with tc.no_grad():
        out = stage(Tensor(asarray(arrays[0])), [Tensor(asarray(a)) for a in arrays])
    tail = None
    if out.ndim:
        _, tail = _matmul(data.draw, out.shape, rng, arrays)

    params = leaves(arrays)

    def forward():
        y = stage(params[0].tanh(), params)
        return y if tail is None else tail(y, params)

    check_program(forward, params, seed)


# ----------------------------------------------------------------------------- conv/pool chains


@st.composite
def conv_chains(draw):
    """(labels, model, input shape, seed): 1–3 Conv2d / MaxPool2d / AvgPool2d layers, each
    maybe followed by an activation, then Flatten and Linear."""
    seed = draw(seeds)
    n, c, hw = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(4, 7))
    shape = (n, c, hw, hw)
    layers = []
    for depth in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "conv", "max", "avg"]))
        k = draw(st.integers(1, min(3, hw)))
        stride, padding = draw(st.integers(1, 2)), draw(st.integers(0, k // 2))
        if kind == "conv":
            out = draw(st.integers(1, 3))
            layers.append(nn.Conv2d(c, out, k, stride=stride, padding=padding, rng=seed + depth))
            c = out
        else:
            pool = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
            layers.append(pool(k, stride=stride, padding=padding))
        hw = (hw + 2 * padding - k) // stride + 1  # ≥ 1: the kernel fits
        act = draw(st.sampled_from([None, nn.Tanh, nn.Sigmoid, nn.ReLU]))
        if act is not None:
            layers.append(act())
    layers += [nn.Flatten(), nn.Linear(c * hw * hw, 2, rng=seed)]
    return [repr(layer) for layer in layers], nn.Sequential(*layers), shape, seed


@given(chain=conv_chains())
def test_conv_and_pool_chains(chain):
    """The input is a parameter too, so every Unfold/Patches (and its adjoint) sees batched
    tangents whose sample axis does not match the rows of its result."""
    _, model, shape, seed = chain
    x = Tensor(asarray(np.random.default_rng(seed).standard_normal(shape)), requires_grad=True)
    check_program(lambda: model(x), [x] + list(model.parameters()), seed)


# ----------------------------------------------------------------------------- dual numbers


def _dual_check(fn: Callable[[Any], Any], x: np.ndarray, seed: int, tol=STACK_RTOL) -> None:
    """``fn`` on a batched dual equals ``fn`` on each direction's dual (to relative ``tol``; 0
    for bit-for-bit), whose tangent equals the central difference of ``fn`` on values."""
    rng = np.random.default_rng([seed, 3])
    xb, t = asarray(x), asarray(rng.standard_normal((K,) + x.shape))
    out = fn(D.Dual(xb, t))
    assert D.shape(out.tangent) == (K,) + D.shape(out.primal)
    np.testing.assert_array_equal(tc.asnumpy(out.primal), tc.asnumpy(fn(xb)))
    for j in range(K):
        one = fn(D.Dual(xb, t[j]))
        assert D.shape(one.tangent) == D.shape(one.primal)
        assert rel_err(out.tangent[j], one.tangent) <= tol
    fd = (fn(xb + DUAL_EPS * t[0]) - fn(xb - DUAL_EPS * t[0])) / (2 * DUAL_EPS)
    assert rel_err(fn(D.Dual(xb, t[0])).tangent, fd) < DUAL_RTOL


@given(shape=shapes, data=st.data(), seed=seeds)
def test_dual_getitem_and_index_add(shape, data, seed):
    """Every indexing form on batched tangents, and its adjoint (repeated positions add up):
    bit for bit the stacked single-direction results."""
    idx = _on_backend(data.draw(indices(shape)))
    x = np.random.default_rng(seed).standard_normal(shape)
    _dual_check(lambda a: D.getitem(a, idx), x, seed, tol=0.0)
    picked = np.random.default_rng(seed).standard_normal(asarray(x)[idx].shape)
    _dual_check(lambda a: D.index_add(shape, idx, a), picked, seed, tol=0.0)


@given(shape=shapes, data=st.data(), seed=seeds)
def test_dual_shape_functions(shape, data, seed):
    """pad, broadcast_to, reshape (-1), transpose/swapaxes (negative axes), sum/mean (keepdims,
    negative and tuple axes) and per_sample_linear (a sample mapped to several rows)."""
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1))
    axes = tuple(_signed(data.draw, a, nd) for a in data.draw(st.permutations(list(range(nd)))))
    tup = tuple(
        data.draw(st.lists(st.integers(-nd, nd - 1), max_size=nd, unique_by=lambda a: a % nd))
    )
    keep = data.draw(st.booleans())
    widths = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape)
    wide = data.draw(hnp.broadcastable_shapes(shape, min_dims=nd, max_dims=3))
    wide = np.broadcast_shapes(shape, wide)
    rows = lambda z: xp.reshape(z, (-1,) + tuple(z.shape[2:])) * 2.0 if z.ndim > 1 else z * 2.0
    x = np.random.default_rng(seed).standard_normal(shape)
    for fn in (
        lambda a: D.pad(a, widths),
        lambda a: D.broadcast_to(a, wide),
        lambda a: D.reshape(a, (-1,) + shape[nd // 2 + 1 :]),
        lambda a: D.transpose(a, axes),
        lambda a: D.swapaxes(a, axis, -1),
        lambda a: D.sum(a, axis=axis, keepdims=keep),
        lambda a: D.sum(a, axis=tup, keepdims=keep),
        lambda a: D.mean(a, axis=tup or None, keepdims=keep),
        lambda a: D.per_sample_linear(rows, a),
    ):
        _dual_check(fn, x, seed)


@given(
    bshapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3),
    seed=seeds,
)
def test_dual_broadcasting_against_constants_of_other_ranks(bshapes, seed):
    """Binary functions, where and maximum with a plain operand of another rank on either side."""
    sx, sy, sc = bshapes.input_shapes
    rng = np.random.default_rng(seed)
    y = asarray(rng.standard_normal(sy))
    cond = asarray(rng.random(sc) < 0.5)
    x = rng.standard_normal(sx)
    for fn in (
        lambda a: D.add(a, y),
        lambda a: D.sub(y, a),
        lambda a: D.mul(y, a),
        lambda a: D.div(a, D.add(D.mul(y, y), 1.0)),
        lambda a: D.div(y, D.add(D.mul(a, a), 1.0)),
        lambda a: D.where(cond, a, y),
        lambda a: D.where(cond, y, D.tanh(a)),
        lambda a: D.maximum(a, y),
        lambda a: D.maximum(y, a),
    ):
        _dual_check(fn, x, seed)
