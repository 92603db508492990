"""Every primitive of the engine: value, gradient, JVP, HVP and batched HVP (float64).

Each primitive ``op`` is checked inside the scalar ``L = Σ R ⊙ y + ½ Σ y²``, ``y = op(θ…)``
(R fixed and random): even linear primitives then have a non-zero Hessian (JᵀJ), and their
``backward`` runs on dual numbers during an HVP (the cotangent ``R + y`` is a dual). The head
does not saturate, so gradients stay of the order of the values. For every case:

* the value of ``op`` equals the NumPy expression it stands for (to 1e-12);
* ``tinycurv.grad`` equals central differences of L (ε = 1e-6, relative 1e-7);
* ``tinycurv.jvp`` equals the central difference of L along v (ε = 1e-6, relative 1e-7);
* ``tinycurv.hvp`` equals central differences of the gradient (ε = 1e-5, relative 1e-6);
* ``tinycurv.hvp(…, batched=True)`` with k = 3 directions equals 3 separate HVPs (1e-12).

Inputs are smooth and away from kinks and poles: relu and maximum see |x| ≥ 0.2 (resp. gaps
≥ 0.2), log sees x ≥ 0.5, divisions see |y| ≥ 0.5; a finite-difference step of 1e-5 never crosses
a kink then. Shapes and broadcasting are drawn by Hypothesis (see ``conftest.py``).

The last sections test dual numbers directly (nesting, the batched-tangent shape invariant) and
the ``Tensor`` interface (operators, methods, accumulation in ``backward``, ``no_grad``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from helpers import (
    GRAD_RTOL,
    HVP_RTOL,
    JVP_RTOL,
    data_of,
    fd_grad,
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
from tinycurv import ops
from tinycurv.backend import asarray
from tinycurv.tensor import Tensor

K = 3
EXACT = 1e-12

seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
nonscalar_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)
triples = hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3)


# ----------------------------------------------------------------------------- inputs


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in [0.5, 2]: safe for log, roots and divisions."""
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """|x| in [0.2, 1.5] with a random sign: away from the kink of relu and poles of 1/x."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 1.5, shape)


def leaves(*arrays: np.ndarray) -> list[Tensor]:
    return [Tensor(asarray(a), requires_grad=True, name=f"p{i}") for i, a in enumerate(arrays)]


# ----------------------------------------------------------------------------- the checker


def check_derivatives(op: Callable[..., Tensor], arrays: list[np.ndarray], seed: int) -> None:
    """Gradient, JVP, HVP and batched HVP of ``L = Σ R ⊙ y + ½ Σ y²``, ``y = op(*leaves)``."""
    params = leaves(*arrays)
    rng = np.random.default_rng([seed, 1])  # a stream independent of the inputs' draws
    with tc.no_grad():
        out_shape = op(*params).shape
    R = asarray(rng.standard_normal(out_shape))

    def closure() -> Tensor:
        y = op(*params)
        return (y * R).sum() + 0.5 * (y * y).sum()

    f, g, x0 = loss_function(closure, params), grad_function(closure, params), data_of(params)

    assert rel_err(tc.grad(closure, params), fd_grad(f, x0)) < GRAD_RTOL

    v = random_like(params, rng)
    value, jv = tc.jvp(closure, params, v)
    f0, g0 = f(x0), g(x0)
    assert abs(float(value) - f0) <= EXACT * max(1.0, abs(f0))
    # ∇L·v may cancel to nearly zero: measure errors against Σ|∇L ⊙ v|, and allow the rounding
    # error of the central difference, ~1e-16·|L|/ε
    dot = sum(float(np.sum(gi * tc.asnumpy(vi))) for gi, vi in zip(g0, v, strict=True))
    scale = sum(float(np.sum(np.abs(gi * tc.asnumpy(vi)))) for gi, vi in zip(g0, v, strict=True))
    assert abs(float(jv) - dot) <= EXACT * scale + 1e-15
    assert abs(float(jv) - fd_jvp(f, x0, v)) <= JVP_RTOL * scale + 1e-9 * max(1.0, abs(f0))

    hv = tc.hvp(closure, params, v)
    assert [h.shape for h in hv] == [p.shape for p in params]
    assert rel_err(hv, fd_hvp(g, x0, v)) < HVP_RTOL

    vs = random_like(params, rng, k=K)
    hb = tc.hvp(closure, params, vs, batched=True)
    assert [h.shape for h in hb] == [(K,) + p.shape for p in params]
    for j in range(K):
        one = tc.hvp(closure, params, [w[j] for w in vs])
        assert rel_err([h[j] for h in hb], one) < EXACT


def check_value(op: Callable[..., Tensor], ref: Callable[..., np.ndarray], arrays: list) -> None:
    """``op`` on tensors equals ``ref`` on the NumPy arrays (shape and values)."""
    with tc.no_grad():
        got = tc.asnumpy(op(*leaves(*arrays)).data)
    want = np.asarray(ref(*arrays))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=EXACT, atol=EXACT)


# ----------------------------------------------------------------------------- elementwise


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


UNARY = {
    "neg": (lambda x: -x, lambda x: -x, normal),
    "ops.neg": (ops.neg, np.negative, normal),
    "exp": (lambda x: x.exp(), np.exp, normal),
    "log": (lambda x: x.log(), np.log, positive),
    "tanh": (ops.tanh, np.tanh, normal),
    "sigmoid": (lambda x: x.sigmoid(), _sigmoid, normal),
    "relu": (lambda x: x.relu(), lambda x: np.maximum(x, 0.0), away_from_zero),
    "pow-2": (lambda x: x**2, lambda x: x**2, normal),
    "pow-3": (lambda x: ops.pow(x, 3), lambda x: x**3, normal),
    "pow-minus-1": (lambda x: x**-1, lambda x: 1.0 / x, away_from_zero),
    "pow-0.5": (lambda x: x**0.5, np.sqrt, positive),
    "pow-minus-1.5": (lambda x: ops.pow(x, -1.5), lambda x: x**-1.5, positive),
    "scalar-plus": (lambda x: x + 2.0, lambda x: x + 2.0, normal),
    "scalar-rplus": (lambda x: 2.0 + x, lambda x: 2.0 + x, normal),
    "scalar-minus": (lambda x: x - 1.5, lambda x: x - 1.5, normal),
    "scalar-rminus": (lambda x: 1.5 - x, lambda x: 1.5 - x, normal),
    "scalar-times": (lambda x: x * 3.0, lambda x: x * 3.0, normal),
    "scalar-rtimes": (lambda x: -0.5 * x, lambda x: -0.5 * x, normal),
    "scalar-div": (lambda x: x / 4.0, lambda x: x / 4.0, normal),
    "scalar-rdiv": (lambda x: 1.0 / x, lambda x: 1.0 / x, away_from_zero),
    "self-mul": (lambda x: x * x, lambda x: x * x, normal),
    "self-div": (lambda x: (x + 3.0) / x, lambda x: (x + 3.0) / x, away_from_zero),
}


@pytest.mark.parametrize("name", list(UNARY))
@given(shape=shapes, seed=seeds)
def test_unary(name, shape, seed):
    op, ref, domain = UNARY[name]
    x = domain(np.random.default_rng(seed), shape)
    check_value(op, ref, [x])
    check_derivatives(op, [x], seed)


def _binary_inputs(name: str, shapes_: tuple, rng: np.random.Generator) -> list[np.ndarray]:
    sx, sy = shapes_
    x = normal(rng, sx)
    if name == "div":
        return [x, away_from_zero(rng, sy)]
    if name == "maximum":  # x on a grid offset by 1/4, y by 3/4: |x − y| ≥ 1/2 everywhere
        return [rng.integers(-3, 3, sx) + 0.25, rng.integers(-3, 3, sy) + 0.75]
    return [x, normal(rng, sy)]


BINARY = {
    "add": (lambda x, y: x + y, np.add),
    "ops.add": (ops.add, np.add),
    "sub": (lambda x, y: x - y, np.subtract),
    "ops.sub": (ops.sub, np.subtract),
    "mul": (lambda x, y: x * y, np.multiply),
    "ops.mul": (ops.mul, np.multiply),
    "div": (lambda x, y: x / y, np.divide),
    "maximum": (ops.maximum, np.maximum),
}


@pytest.mark.parametrize("name", list(BINARY))
@given(bshapes=pairs, seed=seeds)
def test_binary_broadcasting(name, bshapes, seed):
    op, ref = BINARY[name]
    arrays = _binary_inputs(name, bshapes.input_shapes, np.random.default_rng(seed))
    check_value(op, ref, arrays)
    check_derivatives(op, arrays, seed)


@given(bshapes=triples, seed=seeds)
def test_where_broadcasting(bshapes, seed):
    sc, sx, sy = bshapes.input_shapes
    rng = np.random.default_rng(seed)
    cond = rng.random(sc) < 0.5
    x, y = normal(rng, sx), normal(rng, sy)
    cond_b = asarray(cond)  # a backend condition for the op; the reference keeps the host one
    op = lambda a, b: ops.where(cond_b, a, b)
    check_value(op, lambda a, b: np.where(cond, a, b), [x, y])
    check_derivatives(op, [x, y], seed)


def test_where_with_tensor_condition_and_constant_branch():
    rng = np.random.default_rng(0)
    x = normal(rng, (3, 4))
    cond = Tensor(asarray(x > 0.3))
    op = lambda a: ops.where(cond, a.exp(), 0.5)
    check_value(op, lambda a: np.where(a > 0.3, np.exp(a), 0.5), [x])
    check_derivatives(op, [x], 1)


def test_maximum_with_a_constant_and_ties_follow_x():
    rng = np.random.default_rng(0)
    x = away_from_zero(rng, (4, 3))
    check_value(lambda a: ops.maximum(a, 0.0), lambda a: np.maximum(a, 0.0), [x])
    check_derivatives(lambda a: ops.maximum(a, 0.0), [x], 2)
    check_derivatives(lambda a: ops.maximum(0.1, a), [x], 3)
    # at a tie the derivative follows the first argument
    a, b = leaves(np.ones(3), np.ones(3))
    ga, gb = tc.grad(lambda: ops.maximum(a, b).sum(), [a, b])
    np.testing.assert_array_equal(tc.asnumpy(ga), np.ones(3))
    np.testing.assert_array_equal(tc.asnumpy(gb), np.zeros(3))


# ----------------------------------------------------------------------------- reductions, shapes


@st.composite
def shape_and_axis(draw, allow_none: bool = True, allow_tuple: bool = True):
    shape = draw(nonscalar_shapes)
    nd = len(shape)
    options = [st.integers(-nd, nd - 1)]
    if allow_none:
        options.append(st.none())
    if allow_tuple:
        options.append(
            st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True).map(tuple)
        )
    return shape, draw(st.one_of(*options))


@given(case=shape_and_axis(), keepdims=st.booleans(), seed=seeds)
def test_sum(case, keepdims, seed):
    shape, axis = case
    x = normal(np.random.default_rng(seed), shape)
    op = lambda a: a.sum(axis=axis, keepdims=keepdims)
    check_value(op, lambda a: np.sum(a, axis=axis, keepdims=keepdims), [x])
    check_derivatives(op, [x], seed)


@given(case=shape_and_axis(), keepdims=st.booleans(), seed=seeds)
def test_mean(case, keepdims, seed):
    shape, axis = case
    x = normal(np.random.default_rng(seed), shape)
    op = lambda a: ops.mean(a, axis=axis, keepdims=keepdims)
    check_value(op, lambda a: np.mean(a, axis=axis, keepdims=keepdims), [x])
    check_derivatives(op, [x], seed)


def test_sum_and_mean_of_everything_are_scalars():
    x = leaves(np.arange(6.0).reshape(2, 3))[0]
    assert x.sum().shape == () and x.mean().shape == ()
    assert x.mean().item() == pytest.approx(2.5)
    assert x.mean(axis=0, keepdims=True).shape == (1, 3)


@given(shape=shapes, seed=seeds, data=st.data())
def test_reshape(shape, seed, data):
    dims = data.draw(st.permutations(list(shape))) if shape else []
    new_shape = tuple(dims) + (1,) if data.draw(st.booleans()) else tuple(dims)
    x = normal(np.random.default_rng(seed), shape)
    op = lambda a: a.reshape(new_shape)
    check_value(op, lambda a: a.reshape(new_shape), [x])
    check_derivatives(op, [x], seed)


def test_reshape_with_minus_one_and_varargs():
    x = normal(np.random.default_rng(0), (2, 3, 2))
    check_value(lambda a: a.reshape(3, -1), lambda a: a.reshape(3, -1), [x])
    check_derivatives(lambda a: a.reshape(3, -1), [x], 0)
    check_derivatives(lambda a: ops.reshape(a, (-1,)), [x], 1)


@given(shape=shapes, seed=seeds, data=st.data())
def test_transpose(shape, seed, data):
    axes = data.draw(st.none() | st.permutations(list(range(len(shape)))).map(tuple))
    x = normal(np.random.default_rng(seed), shape)
    op = lambda a: ops.transpose(a, axes)
    check_value(op, lambda a: np.transpose(a, axes), [x])
    check_derivatives(op, [x], seed)


def test_transpose_method_forms():
    x = normal(np.random.default_rng(0), (2, 3, 4))
    check_value(lambda a: a.transpose(), lambda a: a.T, [x])
    check_value(lambda a: a.transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2), [x])
    check_value(lambda a: a.transpose((2, 0, 1)), lambda a: a.transpose(2, 0, 1), [x])
    check_value(lambda a: a.T, lambda a: a.T, [x])
    check_derivatives(lambda a: a.transpose(2, 0, 1), [x], 0)


def _logsumexp(a: np.ndarray, axis, keepdims: bool) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


@given(case=shape_and_axis(allow_tuple=False), keepdims=st.booleans(), seed=seeds)
def test_logsumexp(case, keepdims, seed):
    shape, axis = case
    x = 3.0 * normal(np.random.default_rng(seed), shape)
    op = lambda a: ops.logsumexp(a, axis=axis, keepdims=keepdims)
    check_value(op, lambda a: _logsumexp(a, axis, keepdims), [x])
    check_derivatives(op, [x], seed)


def test_logsumexp_is_stable_for_large_inputs():
    x = leaves(np.array([[1000.0, 1000.0], [-1000.0, -1001.0]]))[0]
    got = tc.asnumpy(x.logsumexp(axis=1).data)
    np.testing.assert_allclose(got, [1000.0 + np.log(2.0), -1000.0 + np.log1p(np.exp(-1.0))])
    (g,) = tc.grad(lambda: x.logsumexp(axis=1).sum(), [x])
    np.testing.assert_allclose(
        tc.asnumpy(g), [[0.5, 0.5], [_sigmoid(1.0), _sigmoid(-1.0)]], rtol=1e-12
    )


@given(case=shape_and_axis(allow_none=False, allow_tuple=False), seed=seeds)
def test_log_softmax(case, seed):
    shape, axis = case
    x = 3.0 * normal(np.random.default_rng(seed), shape)
    op = lambda a: ops.log_softmax(a, axis=axis)
    check_value(op, lambda a: a - _logsumexp(a, axis, True), [x])
    check_derivatives(op, [x], seed)


def test_softmax_and_log_softmax_method():
    x = normal(np.random.default_rng(0), (3, 4))
    e = np.exp(x)
    check_value(ops.softmax, lambda a: e / e.sum(axis=-1, keepdims=True), [x])
    check_value(lambda a: a.log_softmax(axis=0), lambda a: a - _logsumexp(a, 0, True), [x])
    check_derivatives(lambda a: ops.softmax(a, axis=0), [x], 0)


# ----------------------------------------------------------------------------- matmul

MATMUL_SHAPES = [
    ((3, 4), (4, 2)),
    ((1, 1), (1, 1)),
    ((2, 3, 4), (2, 4, 5)),  # batched 3-D
    ((2, 3, 4), (4, 5)),  # batch broadcast, right operand 2-D
    ((3, 4), (2, 4, 5)),  # batch broadcast, left operand 2-D
    ((1, 3, 4), (2, 4, 2)),  # batch axis stretched
    ((2, 1, 3, 2), (4, 2, 3)),  # 4-D against 3-D
    ((4,), (4,)),  # 1-D · 1-D: a scalar
    ((4,), (4, 3)),  # row vector
    ((3, 4), (4,)),  # column vector
    ((2, 3, 4), (4,)),  # batched matrix · vector
    ((4,), (2, 4, 3)),  # vector · batched matrix
]


@pytest.mark.parametrize(("sx", "sw"), MATMUL_SHAPES, ids=str)
def test_matmul(sx, sw):
    rng = np.random.default_rng(len(sx) * 10 + len(sw))
    x, w = normal(rng, sx), normal(rng, sw)
    check_value(lambda a, b: a @ b, np.matmul, [x, w])
    check_value(ops.matmul, np.matmul, [x, w])
    check_derivatives(lambda a, b: a @ b, [x, w], 7)


def test_matmul_with_constant_operands_and_reflected():
    rng = np.random.default_rng(0)
    x, w = normal(rng, (3, 4)), normal(rng, (5, 4))
    xa = asarray(x)
    check_derivatives(lambda b: xa @ b.T, [w], 0)  # ndarray @ Tensor defers to __rmatmul__
    check_derivatives(lambda a: a @ asarray(w.T), [x], 1)
    (t,) = leaves(w)
    assert isinstance(xa @ t.T, Tensor)


def test_linear_layer_with_bias_broadcast():
    rng = np.random.default_rng(0)
    x = normal(rng, (5, 4))
    w, b = normal(rng, (3, 4)), normal(rng, (3,))
    op = lambda W, c: asarray(x) @ W.T + c
    check_value(op, lambda W, c: x @ W.T + c, [w, b])
    check_derivatives(op, [w, b], 0)
    check_derivatives(lambda X, W, c: X @ W.T + c, [x, w, b], 1)


# ----------------------------------------------------------------------------- indexing

INDEXING = {
    "int": ((4, 3), lambda x: x[1]),
    "negative-int": ((4, 3), lambda x: x[-1]),
    "slices-with-step": ((4, 5), lambda x: x[1:3, ::2]),
    "reversed": ((5,), lambda x: x[::-1]),
    "ellipsis": ((2, 3, 4), lambda x: x[..., 1]),
    "newaxis": ((3, 4), lambda x: x[None, :, 1]),
    "int-array-with-repeats": ((4, 3), lambda x: x[np.array([0, 2, 0, 0, 3])]),
    "list-with-repeats-axis-1": ((3, 4), lambda x: x[:, [1, 1, 0]]),
    "paired-arrays-with-repeats": (
        (3, 4),
        lambda x: x[np.array([0, 1, 1, 2, 1]), np.array([2, 2, 2, 0, 2])],
    ),
    "2-d-index-array": ((5, 2), lambda x: x[np.array([[0, 4], [4, 4]])]),
    "int-and-array": ((3, 4, 2), lambda x: x[1, [0, 0, 3]]),
    "boolean-mask": ((3, 4), lambda x: x[np.arange(12).reshape(3, 4) % 3 == 0]),
    # advanced indices (ints count, with arrays) separated by a slice, None or `...`: NumPy moves
    # the advanced axes to the front, so a batched tangent must not just get a leading slice
    "int-slice-array": ((2, 3, 5), lambda x: x[0, :, np.array([0, 2, 4, 4])]),
    "array-slice-array": ((3, 2, 4), lambda x: x[np.array([0, 2]), :, np.array([1, 3])]),
    "array-newaxis-array": (
        (3, 4),
        lambda x: x[np.array([0, 2, 2, 1]), None, np.array([1, 3, 1, 0])],
    ),
    "array-ellipsis-array": ((3, 2, 2, 4), lambda x: x[np.array([1, 1]), ..., np.array([0, 3])]),
    "negative-int-slice-list": ((2, 3, 4), lambda x: x[-1, 1:, [3, -4, 3, 0]]),
    "mask-slice-int": ((3, 4, 2), lambda x: x[np.array([True, False, True]), :, -1]),
}


@pytest.mark.parametrize("name", list(INDEXING))
def test_getitem(name):
    shape, index = INDEXING[name]
    x = normal(np.random.default_rng(0), shape)
    check_value(index, index, [x])
    check_derivatives(index, [x], 1)


@pytest.mark.parametrize(
    ("shape", "indices", "axis"),
    [((4, 3), [2, 0, 2, 2], 0), ((3, 5), np.array([4, 4, 1]), 1), ((2, 3, 2), [1, 1], -1)],
)
def test_take_with_repeats(shape, indices, axis):
    x = normal(np.random.default_rng(1), shape)
    op = lambda a: ops.take(a, indices, axis=axis)
    check_value(op, lambda a: np.take(a, indices, axis=axis), [x])
    check_derivatives(op, [x], 2)


def test_gradient_of_repeated_index_counts_repeats():
    x = leaves(np.zeros(4))[0]
    (g,) = tc.grad(lambda: x[np.array([0, 2, 0, 0])].sum(), [x])
    np.testing.assert_array_equal(tc.asnumpy(g), [3.0, 0.0, 1.0, 0.0])
    (g,) = tc.grad(lambda: ops.take(x, Tensor(asarray(np.array([3, 3]))), axis=0).sum(), [x])
    np.testing.assert_array_equal(tc.asnumpy(g), [0.0, 0.0, 0.0, 2.0])


# ----------------------------------------------------------------------------- negative axes

NEGATIVE_AXES = {  # (shape, op, NumPy reference)
    "transpose(-1, -2)": ((3, 4), lambda x: x.transpose(-1, -2), lambda a: a.T),
    "ops.transpose((0, -1, 1))": (
        (2, 3, 4),
        lambda x: ops.transpose(x, (0, -1, 1)),
        lambda a: a.transpose(0, 2, 1),
    ),
    "transpose(-1, -3, -2)": (
        (2, 3, 4),
        lambda x: x.transpose(-1, -3, -2),
        lambda a: a.transpose(2, 0, 1),
    ),
    "1-d transpose(-1)": ((4,), lambda x: x.transpose(-1), lambda a: a),
    "x @ x.transpose(0, -1, -2)": (
        (2, 3, 4),
        lambda x: x @ x.transpose(0, -1, -2),
        lambda a: a @ a.transpose(0, 2, 1),
    ),
    "sum(-1)": ((2, 3, 4), lambda x: x.sum(axis=-1), lambda a: a.sum(axis=2)),
    "sum((-1, 0), keepdims)": (
        (2, 3, 4),
        lambda x: x.sum(axis=(-1, 0), keepdims=True),
        lambda a: a.sum(axis=(2, 0), keepdims=True),
    ),
    "mean(-2)": ((2, 3, 4), lambda x: ops.mean(x, axis=-2), lambda a: a.mean(axis=1)),
    "mean((-3, -1), keepdims)": (
        (2, 3, 4),
        lambda x: x.mean(axis=(-3, -1), keepdims=True),
        lambda a: a.mean(axis=(0, 2), keepdims=True),
    ),
    "logsumexp(-2)": (
        (2, 3, 4),
        lambda x: x.logsumexp(axis=-2),
        lambda a: _logsumexp(a, 1, False),
    ),
    "logsumexp(-3, keepdims)": (
        (2, 3, 4),
        lambda x: ops.logsumexp(x, axis=-3, keepdims=True),
        lambda a: _logsumexp(a, 0, True),
    ),
    "log_softmax(-2)": (
        (2, 3, 4),
        lambda x: x.log_softmax(axis=-2),
        lambda a: a - _logsumexp(a, 1, True),
    ),
    "take(axis=-2)": (
        (3, 4, 2),
        lambda x: ops.take(x, [3, 0, 3], axis=-2),
        lambda a: a[:, [3, 0, 3]],
    ),
}


@pytest.mark.parametrize("name", list(NEGATIVE_AXES))
def test_negative_axes(name):
    """Axes counted from the end: values, gradients, JVPs, HVPs and batched HVPs."""
    shape, op, ref = NEGATIVE_AXES[name]
    x = normal(np.random.default_rng(4), shape)
    check_value(op, ref, [x])
    check_derivatives(op, [x], 5)


# ----------------------------------------------------------------------------- compositions


def test_hvp_through_relu_inside_a_network():
    """relu has a zero Hessian almost everywhere, but tanh after it makes the network's HVP
    non-zero; it must still match finite differences (no pre-activation near the kink)."""
    rng = np.random.default_rng(3)
    x = asarray(rng.standard_normal((6, 4)))
    w1, b1, w2 = rng.standard_normal((5, 4)), rng.standard_normal(5), rng.standard_normal((3, 5))
    pre = tc.asnumpy(x) @ w1.T + b1
    assert np.abs(pre).min() > 1e-2  # the finite-difference steps stay on one side of the kink
    op = lambda W1, c1, W2: (x @ W1.T + c1).relu() @ W2.T
    check_derivatives(op, [w1, b1, w2], 4)
    # and the HVP is really non-zero (so the comparison above is not 0 == 0)
    params = leaves(w1, b1, w2)
    closure = lambda: (op(*params).tanh() ** 2).sum()
    hv = tc.hvp(closure, params, random_like(params, rng))
    assert all(float(tc.xp.abs(h).max()) > 1e-3 for h in hv)


def test_relu_alone_has_zero_hessian():
    x = leaves(away_from_zero(np.random.default_rng(0), (3, 4)))[0]
    R = asarray(np.random.default_rng(1).standard_normal((3, 4)))
    hv = tc.hvp(lambda: (x.relu() * R).sum(), [x], random_like([x], np.random.default_rng(2)))
    np.testing.assert_array_equal(tc.asnumpy(hv[0]), np.zeros((3, 4)))


@given(
    bshapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=1, max_dims=3, max_side=3),
    seed=seeds,
)
def test_chain_of_broadcasting_ops(bshapes, seed):
    """A small expression mixing ranks: every parameter's cotangent is un-broadcast correctly."""
    sa, sb, sc = bshapes.input_shapes
    rng = np.random.default_rng(seed)
    arrays = [normal(rng, sa), normal(rng, sb), positive(rng, sc)]
    op = lambda a, b, c: (a * b - c.log()).sigmoid() / c + a.exp() * 0.1
    ref = lambda a, b, c: _sigmoid(a * b - np.log(c)) / c + np.exp(a) * 0.1
    check_value(op, ref, arrays)
    check_derivatives(op, arrays, seed)


def test_batched_hvp_with_parameters_of_different_rank():
    """``x @ W.T + b``: W (2-D) and b (1-D) broadcast together; k = 3 directions at once."""
    rng = np.random.default_rng(5)
    x = asarray(rng.standard_normal((7, 4)))
    W, b = leaves(rng.standard_normal((3, 4)), rng.standard_normal(3))
    y = asarray(rng.standard_normal((7, 3)))
    closure = lambda: (((x @ W.T + b).tanh() - y) ** 2).sum()
    vs = random_like([W, b], rng, k=K)
    hb = tc.hvp(closure, [W, b], vs, batched=True)
    assert hb[0].shape == (K, 3, 4) and hb[1].shape == (K, 3)
    g = grad_function(closure, [W, b])
    for j in range(K):
        vj = [v[j] for v in vs]
        assert rel_err([h[j] for h in hb], tc.hvp(closure, [W, b], vj)) < EXACT
        assert rel_err([h[j] for h in hb], fd_hvp(g, data_of([W, b]), vj)) < HVP_RTOL


# ----------------------------------------------------------------------------- primitive errors


def test_primitive_errors():
    x = leaves(np.ones((2, 3)))[0]
    with pytest.raises(TypeError, match="exponent"):
        ops.pow(x, Tensor(asarray(2.0)))
    with pytest.raises(ValueError, match="scalar"):
        ops.matmul(x, Tensor(asarray(2.0)))
    with pytest.raises(ValueError, match="align"):
        ops.matmul(x, Tensor(asarray(np.ones((2, 3)))))


# ----------------------------------------------------------------------------- dual numbers

# f, f', f'' written by hand, and the domain to sample from
SCALAR_FUNCTIONS = {
    "exp": (D.exp, np.exp, np.exp, np.exp, normal),
    "log": (D.log, np.log, lambda x: 1 / x, lambda x: -1 / x**2, positive),
    "tanh": (
        D.tanh,
        np.tanh,
        lambda x: 1 - np.tanh(x) ** 2,
        lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2),
        normal,
    ),
    "sigmoid": (
        D.sigmoid,
        _sigmoid,
        lambda x: _sigmoid(x) * (1 - _sigmoid(x)),
        lambda x: _sigmoid(x) * (1 - _sigmoid(x)) * (1 - 2 * _sigmoid(x)),
        normal,
    ),
    "cube": (
        lambda x: D.power(x, 3.0),
        lambda x: x**3,
        lambda x: 3 * x**2,
        lambda x: 6 * x,
        normal,
    ),
    "x-times-x": (
        lambda x: D.mul(x, x),
        lambda x: x * x,
        lambda x: 2 * x,
        lambda x: 2 + 0 * x,
        normal,
    ),
    "reciprocal": (
        lambda x: D.div(1.0, x),
        lambda x: 1 / x,
        lambda x: -1 / x**2,
        lambda x: 2 / x**3,
        away_from_zero,
    ),
    "sqrt": (
        lambda x: D.power(x, 0.5),
        np.sqrt,
        lambda x: 0.5 / np.sqrt(x),
        lambda x: -0.25 * x**-1.5,
        positive,
    ),
}


@pytest.mark.parametrize("name", list(SCALAR_FUNCTIONS))
def test_nested_duals_give_second_derivatives(name):
    f, f0, f1, f2, domain = SCALAR_FUNCTIONS[name]
    rng = np.random.default_rng(0)
    x, v = domain(rng, (3, 2)), rng.standard_normal((3, 2))
    out = f(D.Dual(D.Dual(asarray(x), asarray(v)), asarray(v)))
    host = tc.asnumpy
    np.testing.assert_allclose(host(out.primal.primal), f0(x), rtol=EXACT)
    np.testing.assert_allclose(host(out.primal.tangent), f1(x) * v, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(host(out.tangent.primal), f1(x) * v, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(host(out.tangent.tangent), f2(x) * v * v, rtol=1e-12, atol=1e-14)


def test_nested_duals_of_a_product_give_the_mixed_derivative():
    """d/ds d/dt (x + s u)(y + t w) = u·w along two different directions."""
    rng = np.random.default_rng(1)
    x, y, u, w = (rng.standard_normal(4) for _ in range(4))
    xb, yb, ub, wb = (asarray(a) for a in (x, y, u, w))
    out = D.mul(D.Dual(D.Dual(xb, ub), 0 * ub), D.Dual(D.Dual(yb, 0 * wb), wb))
    np.testing.assert_allclose(tc.asnumpy(out.tangent.tangent), u * w, rtol=EXACT)
    np.testing.assert_allclose(tc.asnumpy(out.tangent.primal), x * w, rtol=EXACT)
    np.testing.assert_allclose(tc.asnumpy(out.primal.tangent), u * y, rtol=EXACT)


DUAL_BINARY = {
    "add": D.add,
    "sub": D.sub,
    "mul": D.mul,
    "div": lambda a, b: D.div(a, D.add(D.mul(b, b), 1.0)),
    "where": lambda a, b: D.where(D.primal(a) > 0, a, b),
    "maximum": D.maximum,
}


def _operand(kind: str, x: np.ndarray, t: np.ndarray):
    return {"dual": D.Dual(x, t), "plain": x}[kind]


@pytest.mark.parametrize("name", list(DUAL_BINARY))
@given(
    bshapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
    kinds=st.sampled_from([("dual", "dual"), ("dual", "plain"), ("plain", "dual")]),
    seed=seeds,
)
def test_batched_tangent_shape_invariant_through_broadcasting(name, bshapes, kinds, seed):
    """``tangent.shape == (k,) + primal.shape`` after broadcasting, and each of the k directions
    equals the same operation on an ordinary (unbatched) dual."""
    op = DUAL_BINARY[name]
    rng = np.random.default_rng(seed)
    (sx, sy) = bshapes.input_shapes
    x, y = rng.standard_normal(sx), rng.standard_normal(sy)
    tx, ty = rng.standard_normal((K,) + sx), rng.standard_normal((K,) + sy)
    x, y, tx, ty = (asarray(a) for a in (x, y, tx, ty))  # drawn on the host, moved over
    out = op(_operand(kinds[0], x, tx), _operand(kinds[1], y, ty))
    assert D.shape(out.primal) == bshapes.result_shape
    assert D.shape(out.tangent) == (K,) + bshapes.result_shape
    for j in range(K):
        one = op(_operand(kinds[0], x, tx[j]), _operand(kinds[1], y, ty[j]))
        assert D.shape(one.tangent) == bshapes.result_shape
        np.testing.assert_allclose(
            tc.asnumpy(out.tangent[j]), tc.asnumpy(one.tangent), rtol=EXACT, atol=EXACT
        )
        np.testing.assert_allclose(tc.asnumpy(out.primal), tc.asnumpy(one.primal), rtol=0, atol=0)


DUAL_UNARY_BATCHED = {
    "sum-axis": ((2, 3, 4), lambda a: D.sum(a, axis=(0, 2))),
    "sum-keepdims": ((2, 3, 4), lambda a: D.sum(a, axis=-1, keepdims=True)),
    "sum-all": ((2, 3), lambda a: D.sum(a)),
    "mean": ((2, 3), lambda a: D.mean(a, axis=0)),
    "reshape": ((2, 3, 4), lambda a: D.reshape(a, (4, 6))),
    "transpose": ((2, 3, 4), lambda a: D.transpose(a, (2, 0, 1))),
    "T": ((2, 3), lambda a: a.T),
    "swapaxes": ((2, 3, 4), lambda a: D.swapaxes(a, -1, -2)),
    "broadcast_to": ((3, 1), lambda a: D.broadcast_to(a, (2, 3, 4))),
    "getitem-advanced": ((4, 3), lambda a: D.getitem(a, (np.array([0, 0, 3]), slice(1, None)))),
    "index_add": ((3, 2), lambda a: D.index_add((4, 2), (np.array([1, 1, 3]),), a)),
    "pad": ((2, 3), lambda a: D.pad(a, ((1, 0), (2, 1)))),
    "matmul-lower-rank-left": ((3, 4), lambda a: D.matmul(a, asarray(np.ones((2, 4, 5))))),
    "matmul-lower-rank-right": ((4, 5), lambda a: D.matmul(asarray(np.ones((2, 3, 4))), a)),
    "power": ((2, 3), lambda a: D.power(D.add(D.mul(a, a), 1.0), 1.5)),
    "per_sample_linear": ((3, 4), lambda a: D.per_sample_linear(lambda z: z[:, ::-1] * 2.0, a)),
    # a sample mapped to several rows (as im2col maps it to one row per window)
    "per_sample_linear-rows": (
        (3, 2, 4),
        lambda a: D.per_sample_linear(lambda z: z.reshape(-1, z.shape[-1]) * 2.0, a),
    ),
    "transpose-negative": ((2, 3, 4), lambda a: D.transpose(a, (-1, 0, -2))),
    "sum-negative-tuple": ((2, 3, 4), lambda a: D.sum(a, axis=(-1, -3))),
    "getitem-non-adjacent": ((2, 3, 4), lambda a: D.getitem(a, (0, slice(None), [0, 2, 3, 3]))),
    "getitem-ellipsis-between-arrays": (
        (3, 2, 4),
        lambda a: D.getitem(a, ([1, 1, 0], Ellipsis, [0, 3, 3])),
    ),
    "index_add-non-adjacent": (
        (4, 3),
        lambda a: D.index_add((2, 3, 5), (-1, slice(None), [0, 4, 4, 1]), a),
    ),
}


@pytest.mark.parametrize("name", list(DUAL_UNARY_BATCHED))
def test_batched_tangent_through_shape_ops(name):
    shape, op = DUAL_UNARY_BATCHED[name]
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal(shape), rng.standard_normal((K,) + shape)
    x, t = asarray(x), asarray(t)
    out = op(D.Dual(x, t))
    assert D.shape(out.tangent) == (K,) + D.shape(out.primal)
    for j in range(K):
        one = op(D.Dual(x, t[j]))
        assert D.shape(one.tangent) == D.shape(one.primal)
        np.testing.assert_allclose(
            tc.asnumpy(out.tangent[j]), tc.asnumpy(one.tangent), rtol=EXACT, atol=EXACT
        )
    # the unbatched tangent is the directional derivative of the primal map
    eps = 1e-6
    fd = (op(x + eps * t[0]) - op(x - eps * t[0])) / (2 * eps)
    np.testing.assert_allclose(
        tc.asnumpy(op(D.Dual(x, t[0])).tangent), tc.asnumpy(fd), rtol=1e-7, atol=1e-8
    )


def test_dual_helpers_and_operators():
    xn, tn = np.arange(6.0).reshape(2, 3), np.ones((K, 2, 3))
    x, t = asarray(xn), asarray(tn)
    d = D.Dual(x, t)
    assert d.shape == (2, 3) and d.ndim == 2 and d.size == 6 and len(d) == 2
    assert d.dtype == np.float64 and D.is_batched(d) and not D.is_batched(D.Dual(x, x))
    assert D.primal(D.Dual(D.Dual(x, x), x)) is x
    # comparisons look at the value only
    np.testing.assert_array_equal(tc.asnumpy(d > 2.0), xn > 2.0)
    s = 2.0 * d - 1.0 + d / 2.0
    np.testing.assert_allclose(tc.asnumpy(s.primal), 2.5 * xn - 1.0)
    np.testing.assert_allclose(tc.asnumpy(s.tangent), 2.5 * tn)
    r = asarray(np.ones((2, 3))) - d  # (backend) ndarray op Dual defers to the reflected operator
    assert isinstance(r, D.Dual)
    np.testing.assert_allclose(tc.asnumpy(r.tangent), -tn)
    np.testing.assert_array_equal(tc.asnumpy(D.tangent_of(x, x)), np.zeros((2, 3)))


# ----------------------------------------------------------------------------- Tensor interface


def test_operator_overloading_linear_relu_against_hand_gradient():
    """``(x @ W.T + b).relu().sum()``: value and gradients written out by hand."""
    rng = np.random.default_rng(0)
    xn, wn, bn = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    x = Tensor(asarray(xn))
    W, b = leaves(wn, bn)
    loss = (x @ W.T + b).relu().sum()
    pre = xn @ wn.T + bn
    assert isinstance(loss, Tensor)
    assert loss.item() == pytest.approx(np.maximum(pre, 0).sum(), rel=EXACT)
    loss.backward()
    mask = (pre > 0).astype(float)
    np.testing.assert_allclose(tc.asnumpy(W.grad), mask.T @ xn, rtol=EXACT)
    np.testing.assert_allclose(tc.asnumpy(b.grad), mask.sum(axis=0), rtol=EXACT)
    assert x.grad is None  # constants get no gradient


def test_tensor_methods_and_properties():
    xn = np.random.default_rng(0).standard_normal((2, 3))
    x = Tensor(asarray(xn), requires_grad=True, name="x")
    assert x.data is not None and tc.asnumpy(x.data) is not None
    np.testing.assert_array_equal(tc.asnumpy(x.data), xn)
    np.testing.assert_array_equal(x.numpy(), xn)
    np.testing.assert_allclose(tc.asnumpy(x.exp().data), np.exp(xn))
    np.testing.assert_array_equal(tc.asnumpy(x.T.data), xn.T)
    assert x.T.shape == (3, 2) and x.shape == (2, 3) and x.ndim == 2 and x.size == 6
    assert len(x) == 2 and x.dtype == np.float64
    assert "name='x'" in repr(x)
    np.testing.assert_array_equal(tc.asnumpy(x > 0), xn > 0)
    np.testing.assert_array_equal(tc.asnumpy(x <= Tensor(asarray(xn))), np.ones((2, 3), bool))
    d = x.detach()
    assert d.requires_grad is False and d.creator is None and d.data is x.data
    assert Tensor([1.5, 2.0]).dtype == np.float64
    assert Tensor(3.0, requires_grad=True).shape == ()


def test_backward_accumulates_like_pytorch():
    x = leaves(np.array([1.0, 2.0, 3.0]))[0]
    (x * x).sum().backward()
    np.testing.assert_allclose(tc.asnumpy(x.grad), [2.0, 4.0, 6.0])
    (x * x).sum().backward()  # a second backward adds to .grad
    np.testing.assert_allclose(tc.asnumpy(x.grad), [4.0, 8.0, 12.0])
    (3.0 * x).sum().backward()
    np.testing.assert_allclose(tc.asnumpy(x.grad), [7.0, 11.0, 15.0])
    x.zero_grad()
    assert x.grad is None
    # a leaf reached along several paths sums their contributions (diamond graph)
    y = x.exp()
    (y * x + y).sum().backward()
    want = np.exp([1.0, 2.0, 3.0]) * ([1.0, 2.0, 3.0] + np.array(2.0))
    np.testing.assert_allclose(tc.asnumpy(x.grad), want)


def test_backward_of_a_non_scalar_needs_a_cotangent():
    x = leaves(np.array([[1.0, 2.0], [3.0, 4.0]]))[0]
    y = x * x
    with pytest.raises(ValueError, match="grad"):
        y.backward()
    y.backward(asarray(np.array([[1.0, 0.0], [0.0, 2.0]])))  # a VJP
    np.testing.assert_allclose(tc.asnumpy(x.grad), [[2.0, 0.0], [0.0, 16.0]])


def test_no_grad_records_no_tape_and_restores():
    x = leaves(np.ones(3))[0]
    assert tc.tensor.is_grad_enabled()
    with tc.no_grad():
        y = x * 2.0
        assert not tc.tensor.is_grad_enabled()
    assert tc.tensor.is_grad_enabled()
    assert y.requires_grad is False and y.creator is None and y.parents == []
    with pytest.raises(RuntimeError), tc.no_grad():
        raise RuntimeError("inside no_grad")
    assert tc.tensor.is_grad_enabled()
    z = x * 2.0
    assert z.requires_grad and z.creator is not None


def test_only_leaves_that_require_grad_receive_one():
    a, b = leaves(np.ones(2), np.ones(2))
    c = Tensor(asarray(np.ones(2)))
    (a * b * c).sum().backward()
    np.testing.assert_array_equal(tc.asnumpy(a.grad), np.ones(2))
    assert c.grad is None


def test_custom_function_runs_under_all_modes():
    """A user-defined ``Function`` written with ``tinycurv.dual`` gets HVPs for free."""

    class Cube(tc.Function):
        def forward(self, x):
            self.x = x
            return D.mul(D.mul(x, x), x)

        def backward(self, gy):
            return (D.mul(gy, D.mul(3.0, D.mul(self.x, self.x))),)

    x = normal(np.random.default_rng(0), (2, 3))
    check_value(lambda a: Cube.apply(a), lambda a: a**3, [x])
    check_derivatives(lambda a: Cube.apply(a), [x], 0)


# ----------------------------------------------------------------------------- regressions
# Engine bugs found by these tests and fixed: constants' size/dtype, writeable and independent
# leaf gradients.


def test_tensor_of_a_python_number_has_size_and_dtype():
    c = Tensor(2.0)
    assert c.shape == () and c.size == 1 and c.dtype.kind == "f"
    x = leaves(np.ones(2))[0]
    np.testing.assert_array_equal(tc.asnumpy(tc.grad(lambda: Tensor(2.0), [x])[0]), np.zeros(2))


def test_leaf_gradients_are_writeable_and_independent():
    a, b = leaves(np.ones(3), np.ones(3))
    (a + b).sum().backward()
    assert a.grad is not b.grad
    # NumPy flags read-only arrays; CuPy has no such flag (every CuPy array is writeable)
    assert all(getattr(g.flags, "writeable", True) for g in (a.grad, b.grad))
    a.grad *= 2.0
    np.testing.assert_array_equal(tc.asnumpy(b.grad), np.ones(3))


def test_leaf_gradients_do_not_share_memory_through_views():
    """b's cotangent is a reshaped *view* of a's: the two ``.grad`` must still be independent."""
    a, b = leaves(np.ones(3), np.ones((3, 1)))
    (a + b.reshape(3)).sum().backward()
    assert not tc.xp.shares_memory(a.grad, b.grad)
    b.grad[0, 0] = 5.0
    np.testing.assert_array_equal(tc.asnumpy(a.grad), np.ones(3))
    x = leaves(np.ones((2, 3)))[0]
    (g,) = tc.grad(lambda: x.sum(), [x])  # Sum.backward returns a read-only broadcast view
    g += 1.0
    np.testing.assert_array_equal(tc.asnumpy(g), np.full((2, 3), 2.0))
