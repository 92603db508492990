"""The exercise registry: what the student writes, the library's reference, cases, mistakes.

Ids are ``"NN.k"`` for exercise k of tutorial NN (01–09) and ``"Tn.k"`` for the
build-it-yourself track (``tutorials/track``), whose exercises reuse the notebooks' checks.
Each ``Exercise`` (``tinycurv.course.grader``) pairs the student's function with the library's
own (``tinycurv.curvature.zeta_star``, ``kfac.factors_from``, ``sfn.series_operator``,
``grouped_newton_step``, ``tinycurv.hvp``, the primitives of ``tinycurv.ops`` and the rules of
``tinycurv.dual``), a seeded generator of cases (shapes, float32, edge cases such as b > n,
λ = ∞, large logits) and the typical mistakes with their explanations. ``PLUGS`` says where
each track piece goes in the library, so that ``plug_in`` lets it train a network.

A declared host-side module: the cases are host NumPy arrays and grading runs on the NumPy
backend (``tinycurv.course.grader``). The reference solutions a student would write live in
``tutorials/solutions/`` (withheld by an instructor, if need be); the wrong implementations
below are the mistakes, not solutions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from tinycurv import dual as D
from tinycurv import nn, ops
from tinycurv.course.grader import (
    PLUGS,
    REGISTRY,
    Case,
    Diagnostic,
    Exercise,
    Mistake,
    Plug,
    register,
    replace,
)
from tinycurv.curvature import grouped as grouped_math
from tinycurv.curvature import grouped_step
from tinycurv.curvature import isaac as isaac_math
from tinycurv.curvature import kfac as kfac_math
from tinycurv.curvature import sfn as sfn_math
from tinycurv.dual import Dual
from tinycurv.functional import grad as _grad
from tinycurv.functional import hvp as _hvp
from tinycurv.functional import jvp as _jvp
from tinycurv.optim.adam import adam_steps
from tinycurv.optim.sgd import momentum_directions
from tinycurv.plotting import running_mean as _running_mean
from tinycurv.tensor import Function, Tensor

# The references, captured at import: a plug_in that replaces a library name during a check
# must not change what the student is compared with.
_zeta_star = isaac_math.zeta_star
_zeta = isaac_math.zeta
_zeta_kron = isaac_math.zeta_kron
_factors_from = kfac_math.factors_from
_kfac_dampings = kfac_math.kfac_dampings
_kfac_direction = kfac_math.kfac_direction
_grouped_newton_step = grouped_step.grouped_newton_step
_cubic_model = grouped_step.cubic_model
_grouped_gradient_and_hessian = grouped_math.grouped_gradient_and_hessian
_series_operator = sfn_math.series_operator
_series_coefficients = sfn_math.series_coefficients
_wynn_epsilon = sfn_math.wynn_epsilon
_abs_hessian_inverse = sfn_math.abs_hessian_inverse
_levenberg_marquardt = sfn_math.levenberg_marquardt
_Tanh, _MatMul, _Sigmoid, _unbroadcast = ops.Tanh, ops.MatMul, ops.Sigmoid, ops.unbroadcast
_D_tanh, _D_mul, _D_exp, _D_div = D.tanh, D.mul, D.exp, D.div

F32 = np.float32
EXERCISES = REGISTRY  # the registry, filled below (ids "NN.k" and "Tn.k")


# ============================================================================================
# helpers: random inputs and runners
# ============================================================================================
def _normal(rng: np.random.Generator, *shape: int, dtype: Any = np.float64) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _spd(rng: np.random.Generator, n: int, dtype: Any = np.float64) -> np.ndarray:
    """A symmetric positive definite n×n matrix with eigenvalues of order 1."""
    M = rng.standard_normal((n, 2 * n))
    return (M @ M.T / (2 * n) + 0.2 * np.eye(n)).astype(dtype)


def _symmetric(rng: np.random.Generator, n: int) -> np.ndarray:
    M = rng.standard_normal((n, n))
    return (M + M.T) / 2


def _primitive(name: str, forward: Any, backward: Any) -> type:
    """A ``Function`` subclass from two functions (the wrong implementations below)."""
    return type(name, (Function,), {"forward": forward, "backward": backward})


def _run_primitive(cls: Any, case: Case) -> tuple:
    """Forward on ``xs``, then backward of the cotangent ``gy``: ``(y, (gx, …))``."""
    if not (isinstance(cls, type) and issubclass(cls, Function)):
        raise Mistake("write a class that subclasses tinycurv.Function: `class Tanh(Function):`")
    xs, gy = case.args
    op = cls()
    op.needs_grad = (True,) * len(xs)
    y = op.forward(*xs)
    grads = op.backward(gy)
    if not isinstance(grads, tuple | list):
        raise Mistake(
            "backward must return a tuple with one cotangent per input, e.g. `return (gx,)`"
        )
    return y, tuple(grads)


def _mlp(sizes: tuple[int, ...], seed: int, loss: str, batch: int) -> tuple[list, Any, list]:
    """A small tanh MLP, its closure on a seeded batch, and a seeded direction per parameter."""
    rng = np.random.default_rng(seed)
    layers: list[Any] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [nn.Linear(n_in, n_out, rng=seed + i), nn.Tanh()]
    model = nn.Sequential(*layers[:-1])
    x = rng.standard_normal((batch, sizes[0]))
    if loss == "mse":
        y, loss_fn = rng.standard_normal((batch, sizes[-1])), nn.MSELoss()
    else:
        y, loss_fn = rng.integers(0, sizes[-1], batch), nn.CrossEntropyLoss()
    params = model.parameters()
    vectors = [rng.standard_normal(p.shape) for p in params]
    return params, (lambda: loss_fn(model(x), y)), vectors


def _net_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("a 2-3-1 tanh MLP, MSE", kwargs=dict(sizes=(2, 3, 1), seed=1, loss="mse", batch=8))
    yield Case(
        "a 4-5-3 tanh MLP, cross-entropy", kwargs=dict(sizes=(4, 5, 3), seed=2, loss="ce", batch=6)
    )
    yield Case(
        "a 3-4-4-2 tanh MLP, MSE, batch 1",
        kwargs=dict(sizes=(3, 4, 4, 2), seed=3, loss="mse", batch=1),
    )


def _check_restored(params: list, saved: list, what: str) -> None:
    for i, (p, data) in enumerate(zip(params, saved, strict=True)):
        if isinstance(p.data, Dual) or p.data is not data and not np.array_equal(p.data, data):
            raise Mistake(
                f"after your {what}, params[{i}].data is not what it was (still a Dual?): put "
                "every p.data back when you are done, in a `finally:` block"
            )


def _run_transform(fn: Any, case: Case, what: str) -> Any:
    """``fn(closure, params, vectors)`` twice on a fresh network: restored, and repeatable."""
    params, closure, vectors = _mlp(**case.kwargs)
    saved = [p.data for p in params]
    first = fn(closure, params, vectors)
    _check_restored(params, saved, what)
    second = fn(closure, params, vectors)
    if not _same(first, second):
        raise Mistake(
            f"a second call of your {what} gave another result than the first: gradients "
            "accumulate in p.grad across backward sweeps; set p.grad = None before yours"
        )
    return first


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple | list) and isinstance(b, tuple | list) and len(a) == len(b):
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(np.allclose(D.primal(a), D.primal(b), rtol=1e-12, atol=1e-14))
    except (TypeError, ValueError):
        return False


class _Layer:
    """The two attributes of a layer that ``kfac.factors_from`` reads."""

    def __init__(self, bias: bool) -> None:
        self.bias = object() if bias else None


# ============================================================================================
# 01 · automatic differentiation
# ============================================================================================
def _sigmoid_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("a vector (5,)", ((_normal(rng, 5),), _normal(rng, 5)))
    yield Case("a matrix (3, 4)", ((_normal(rng, 3, 4),), _normal(rng, 3, 4)))
    yield Case("float32 (4,)", ((_normal(rng, 4, dtype=F32),), _normal(rng, 4, dtype=F32)))
    yield Case(
        "a dual input (forward-over-reverse)",
        ((Dual(_normal(rng, 2, 3), _normal(rng, 2, 3)),), _normal(rng, 2, 3)),
        note="x is a Dual here: forward and backward must compute with tinycurv.dual (D.sigmoid,"
        " D.mul, D.sub) or with operators, never np.exp, so that HVPs run through your "
        "primitive",
    )


def _sigmoid_forward(self: Any, x: Any) -> Any:
    self.x = x
    self.y = D.sigmoid(x)
    return self.y


register(
    Exercise(
        id="01.1",
        title="A primitive: the sigmoid's forward and backward",
        name="Sigmoid",
        signature="class Sigmoid(Function): forward(self, x) -> y;  backward(self, gy) -> (gx,)",
        reference=_Sigmoid,
        run=_run_primitive,
        cases=_sigmoid_cases,
        hint="σ(x) = 1/(1 + e⁻ˣ) and σ'(x) = σ(x)(1 − σ(x)). Keep y = σ(x) on self in "
        "forward; backward returns a tuple, (gy·y·(1 − y),). Use D.sigmoid(x) (tinycurv.dual) "
        "so that duals work.",
        diagnostics=(
            Diagnostic(
                "σ'(x) = σ(x)(1 − σ(x)) is written with the OUTPUT y = σ(x) that forward kept, not "
                "with the input x",
                _primitive(
                    "Sigmoid", _sigmoid_forward, lambda self, gy: (gy * self.x * (1.0 - self.x),)
                ),
            ),
            Diagnostic(
                "multiply by the incoming cotangent gy (the chain rule): gx = gy·y·(1 − y)",
                _primitive(
                    "Sigmoid", _sigmoid_forward, lambda self, gy: (self.y * (1.0 - self.y),)
                ),
            ),
            Diagnostic(
                "backward must return a tuple with one cotangent per input, e.g. `return (gx,)`",
                _primitive(
                    "Sigmoid", _sigmoid_forward, lambda self, gy: gy * self.y * (1.0 - self.y)
                ),
                match=False,
            ),
        ),
        notebook="01_autodiff",
    )
)


def _unbroadcast_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("the same shape (3, 4)", (_normal(rng, 3, 4), (3, 4)))
    yield Case("a leading axis added: (4, 3) -> (3,)", (_normal(rng, 4, 3), (3,)))
    yield Case("a size-1 axis stretched: (4, 3) -> (1, 3)", (_normal(rng, 4, 3), (1, 3)))
    yield Case("both: (2, 4, 3) -> (4, 1)", (_normal(rng, 2, 4, 3), (4, 1)))
    yield Case("to a scalar: (5,) -> ()", (_normal(rng, 5), ()))


def _unbroadcast_leading_only(g: Any, shape: tuple) -> Any:
    lead = g.ndim - len(shape)
    return g.sum(axis=tuple(range(lead))) if lead else g


def _unbroadcast_no_keepdims(g: Any, shape: tuple) -> Any:
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return g.sum(axis=axes) if axes else g


def _unbroadcast_mean(g: Any, shape: tuple) -> Any:
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return g.mean(axis=axes, keepdims=True).reshape(shape) if axes else g


register(
    Exercise(
        id="01.2",
        title="Unbroadcasting a cotangent",
        name="unbroadcast",
        signature="unbroadcast(g, shape) -> array of shape `shape`",
        reference=_unbroadcast,
        cases=_unbroadcast_cases,
        hint="Broadcasting copied the input along some axes, so its cotangent is the SUM over "
        "them: the leading axes g has in excess, and the axes where shape has 1 but g does not. "
        "Sum with keepdims=True, then reshape to `shape`.",
        diagnostics=(
            Diagnostic(
                "sum also over the axes where `shape` has a 1 and g does not (the stretched axes), "
                "not only over the leading ones",
                _unbroadcast_leading_only,
            ),
            Diagnostic(
                "keep the summed size-1 axes (keepdims=True, or a reshape) so that the result has "
                "exactly the shape `shape`",
                _unbroadcast_no_keepdims,
            ),
            Diagnostic(
                "sum, do not average: every broadcast copy of the input received its own cotangent",
                _unbroadcast_mean,
            ),
        ),
        notebook="01_autodiff",
    )
)


class _Scalar:
    """A scalar function of an array, for NumPy (a float) and for the engine (a Tensor)."""

    def __init__(self, A: np.ndarray, c: np.ndarray, label: str) -> None:
        self.A, self.c, self.label = A, c, label

    def __call__(self, x: Any) -> Any:
        t = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float64))
        z = ops.matmul(Tensor(self.A), ops.reshape(t, (-1,)))
        out = (ops.tanh(z + Tensor(self.c)) ** 2).sum() + (t * t).sum() * 0.3 + z.sum()
        return out if isinstance(x, Tensor) else out.item()

    def __repr__(self) -> str:
        return self.label


def _exact_gradient(f: Any, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """The engine's gradient of ``f`` at ``x`` (the reference of the finite differences)."""
    t = Tensor(np.array(x, dtype=np.float64), requires_grad=True)
    return _grad(lambda: f(t), [t])[0]


def _numerical_cases(rng: np.random.Generator) -> Iterator[Case]:
    for shape, label in (((4,), "a vector (4,)"), ((2, 3), "a matrix (2, 3)")):
        size = int(np.prod(shape))
        f = _Scalar(_normal(rng, 3, size), _normal(rng, 3), "f")
        yield Case(f"{label}", (f, _normal(rng, *shape)))


def _fd_forward(f: Any, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = np.zeros_like(x)
    base = f(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + h
        g[i] = (f(x) - base) / h
        x[i] = saved
    return g


def _fd_over_h(f: Any, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + h
        up = f(x)
        x[i] = saved - h
        down = f(x)
        x[i] = saved
        g[i] = (up - down) / h
    return g


def _fd_not_restored(f: Any, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + h
        up = f(x)
        x[i] = saved - h
        g[i] = (up - f(x)) / (2 * h)
    return g


def _run_numerical(fn: Any, case: Case) -> Any:
    f, x = case.args
    x = x.copy()
    before = x.copy()
    out = fn(f, x)
    if not np.array_equal(x, before):
        raise Mistake(
            "numerical_grad left x changed: save x[i], perturb it, evaluate, and put "
            "it back before the next entry"
        )
    return out


register(
    Exercise(
        id="01.3",
        title="A gradient check: central finite differences",
        name="numerical_grad",
        signature="numerical_grad(f, x, h=1e-5) -> array shaped like x (f(x) is a float)",
        reference=_exact_gradient,
        run=_run_numerical,
        cases=_numerical_cases,
        rtol=1e-7,
        hint="For every entry i: (f(x + h·eᵢ) − f(x − h·eᵢ)) / (2h). Perturb x[i] in place, "
        "evaluate, and restore it (np.ndindex(x.shape) visits every entry).",
        diagnostics=(
            Diagnostic(
                "that is a one-sided difference, (f(x + h) − f(x))/h, whose error is O(h); the "
                "central difference (f(x + h) − f(x − h))/(2h) has an O(h²) error",
                _fd_forward,
            ),
            Diagnostic("divide by 2h: the two points x ± h are 2h apart", _fd_over_h),
            Diagnostic(
                "numerical_grad left x changed: save x[i], perturb it, evaluate, and put it back "
                "before the next entry",
                _fd_not_restored,
                match=False,
            ),
        ),
        notebook="01_autodiff",
    )
)


def _matmul_vjp_reference(x: Any, w: Any, gy: Any) -> tuple:
    op = _MatMul()
    op.needs_grad = (True, True)
    op.forward(x, w)
    return op.backward(gy)


def _matmul_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case(
        "square (4, 4) @ (4, 4)", (_normal(rng, 4, 4), _normal(rng, 4, 4), _normal(rng, 4, 4))
    )
    yield Case("(3, 5) @ (5, 2)", (_normal(rng, 3, 5), _normal(rng, 5, 2), _normal(rng, 3, 2)))
    yield Case(
        "one row: (1, 4) @ (4, 3)", (_normal(rng, 1, 4), _normal(rng, 4, 3), _normal(rng, 1, 3))
    )
    yield Case(
        "float32 (6, 2) @ (2, 3)",
        (
            _normal(rng, 6, 2, dtype=F32),
            _normal(rng, 2, 3, dtype=F32),
            _normal(rng, 6, 3, dtype=F32),
        ),
    )


register(
    Exercise(
        id="01.4",
        title="The vector-Jacobian product of a matrix product",
        name="matmul_vjp",
        signature="matmul_vjp(x, w, gy) -> (gx, gw) for y = x @ w, x (b, n), w (n, m), gy (b, m)",
        reference=_matmul_vjp_reference,
        cases=_matmul_cases,
        hint="Each cotangent has the shape of its input: gx = gy wᵀ (b, n) and gw = xᵀ gy (n, m). "
        "Check the shapes first: (b, m)·(m, n) and (n, b)·(b, m).",
        diagnostics=(
            Diagnostic(
                "transposed factor: gx = gy wᵀ, (b, m)·(m, n) — you multiplied by w itself",
                lambda x, w, gy: (gy @ w, x.T @ gy),
            ),
            Diagnostic(
                "gw must have the shape of w, (n, m): gw = xᵀ gy; yours, gyᵀ x, is its transpose",
                lambda x, w, gy: (gy @ w.T, gy.T @ x),
            ),
        ),
        notebook="01_autodiff",
    )
)


# ============================================================================================
# 02 · forward mode, dual numbers, HVPs
# ============================================================================================
def _unary_dual_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case(
        "a plain array (a constant)",
        (_normal(rng, 4),),
        note="a plain array is a constant: return the plain result "
        "(`if not isinstance(x, Dual): return np.tanh(x)`)",
    )
    yield Case("Dual(x, dx), arrays (2, 3)", (Dual(_normal(rng, 2, 3), _normal(rng, 2, 3)),))
    yield Case(
        "a batched Dual: tangent (k=4,) + x.shape", (Dual(_normal(rng, 3), _normal(rng, 4, 3)),)
    )
    yield Case(
        "a nested Dual(Dual(x, u), u): second derivatives",
        (Dual(Dual(_normal(rng, 3), np.ones(3)), np.ones(3)),),
        note="x.primal is itself a Dual here: compute the primal's result by calling your"
        " own function on it (recursion), not np.tanh / np.exp, which reject duals",
    )
    u = _normal(rng, 2)
    yield Case(
        "Dual(Dual(Dual(x, u), u), u): third derivatives (tinycurv.taylor)",
        (Dual(Dual(Dual(_normal(rng, 2), u), u), u),),
        note="three levels of duals: recursion handles any depth",
    )


def _dual_unary_wrong(value: Any, slope: Any) -> dict[str, Any]:
    """Three typical wrong dual rules for an elementwise f with value(p) and slope(p, y)."""

    def no_tangent(x: Any) -> Any:
        if not isinstance(x, Dual):
            return value(x)
        y = no_tangent(x.primal)
        return Dual(y, slope(x.primal, y))

    def not_recursive(x: Any) -> Any:
        if not isinstance(x, Dual):
            return value(x)
        y = value(x.primal)
        return Dual(y, slope(x.primal, y) * x.tangent)

    return {"no_tangent": no_tangent, "not_recursive": not_recursive}


_tanh_wrong = _dual_unary_wrong(np.tanh, lambda x, y: 1.0 - y * y)


def _tanh_input_slope(x: Any) -> Any:
    if not isinstance(x, Dual):
        return np.tanh(x)
    y = _tanh_input_slope(x.primal)
    return Dual(y, (1.0 - x.primal * x.primal) * x.tangent)


_TANH_DUAL_DIAGNOSTICS = (
    Diagnostic(
        "multiply the derivative by the tangent: tanh(x + ε·dx) = tanh(x) + ε·(1 − tanh²x)·dx, "
        "so the tangent is (1 − y²)·x.tangent",
        _tanh_wrong["no_tangent"],
    ),
    Diagnostic(
        "tanh'(x) = 1 − tanh²(x): square the OUTPUT y = tanh(x), not the input x",
        _tanh_input_slope,
    ),
    Diagnostic(
        "for nested duals x.primal is itself a Dual: call your tanh on it (recursion) instead "
        "of np.tanh",
        _tanh_wrong["not_recursive"],
    ),
)

_exp_wrong = _dual_unary_wrong(np.exp, lambda x, y: y)


register(
    Exercise(
        id="02.1",
        title="A dual-number rule: exp",
        name="dual_exp",
        signature="dual_exp(x) -> exp(x), a Dual when x is a Dual (any nesting, batched tangents)",
        reference=_D_exp,
        cases=_unary_dual_cases,
        hint="exp(p + ε·t) = exp(p) + ε·exp(p)·t. If x is not a Dual return np.exp(x); else "
        "e = dual_exp(x.primal) (recursion: the primal may be a Dual) and return Dual(e, e * "
        "x.tangent).",
        diagnostics=(
            Diagnostic(
                "multiply by the tangent: exp(p + ε·t) = exp(p) + ε·exp(p)·t, the tangent is "
                "e * x.tangent",
                _exp_wrong["no_tangent"],
            ),
            Diagnostic(
                "for nested duals x.primal is itself a Dual: call dual_exp on it (recursion) "
                "instead of np.exp",
                _exp_wrong["not_recursive"],
            ),
        ),
        notebook="02_forward_mode_and_hvp",
    )
)


def _binary_dual_cases(rng: np.random.Generator, positive: bool = False) -> Iterator[Case]:
    def y_values(*shape: int) -> np.ndarray:
        v = _normal(rng, *shape)
        return np.abs(v) + 0.5 if positive else v

    yield Case("two plain arrays", (_normal(rng, 3), y_values(3)))
    yield Case(
        "Dual op Dual, shapes (2, 3)",
        (Dual(_normal(rng, 2, 3), _normal(rng, 2, 3)), Dual(y_values(2, 3), _normal(rng, 2, 3))),
    )
    yield Case(
        "Dual op plain array (a constant)",
        (Dual(_normal(rng, 4), _normal(rng, 4)), y_values(4)),
        note="a plain array is a constant: its tangent is 0 (test isinstance(y, Dual))",
    )
    yield Case(
        "plain array op Dual",
        (_normal(rng, 4), Dual(y_values(4), _normal(rng, 4))),
        note="a plain array is a constant: its tangent is 0 (test isinstance(x, Dual))",
    )
    yield Case(
        "Dual (2, 3) op plain (3,): broadcasting",
        (Dual(_normal(rng, 2, 3), _normal(rng, 2, 3)), y_values(3)),
    )
    yield Case(
        "a batched Dual (tangent (k=3,) + shape) op plain",
        (Dual(_normal(rng, 2, 4), _normal(rng, 3, 2, 4)), y_values(2, 4)),
    )


def _dual_parts(x: Any) -> tuple[Any, Any]:
    return (x.primal, x.tangent) if isinstance(x, Dual) else (x, None)


def _mul_without_x_dy(x: Any, y: Any) -> Any:
    (a, da), (b, _) = _dual_parts(x), _dual_parts(y)
    if da is None and not isinstance(y, Dual):
        return a * b
    return Dual(a * b, (da if da is not None else 0.0) * b + 0.0 * a)


def _mul_with_dx_dy(x: Any, y: Any) -> Any:
    (a, da), (b, db) = _dual_parts(x), _dual_parts(y)
    if da is None and db is None:
        return a * b
    t = 0.0
    if da is not None:
        t = t + da * b
    if db is not None:
        t = t + a * db
    if da is not None and db is not None:
        t = t + da * db
    return Dual(a * b, t)


register(
    Exercise(
        id="T2.2",
        title="A dual-number rule: the product",
        name="mul",
        signature="mul(x, y) -> x·y elementwise; a Dual when x or y is one",
        reference=_D_mul,
        cases=_binary_dual_cases,
        hint="(a + ε·da)(b + ε·db) = ab + ε·(da·b + a·db), as ε² = 0. A plain operand is a "
        "constant (tangent 0); two plain operands give the plain product a * b.",
        diagnostics=(
            Diagnostic(
                "the product rule has two terms, d(xy) = dx·y + x·dy: you dropped x·dy",
                _mul_without_x_dy,
            ),
            Diagnostic(
                "ε² = 0: the tangent is dx·y + x·dy, with no dx·dy term",
                _mul_with_dx_dy,
            ),
        ),
        notebook="track/02_dual_numbers",
        plug="dual.mul",
    )
)


def _div_sign(x: Any, y: Any) -> Any:
    (a, da), (b, db) = _dual_parts(x), _dual_parts(y)
    if da is None and db is None:
        return a / b
    t = (da if da is not None else 0.0) + (a / b * db if db is not None else 0.0)
    return Dual(a / b, t / b)


def _div_missing_y(x: Any, y: Any) -> Any:
    (a, da), (b, db) = _dual_parts(x), _dual_parts(y)
    if da is None and db is None:
        return a / b
    t = (da / b if da is not None else 0.0) - (a * db / b if db is not None else 0.0)
    return Dual(a / b, t)


register(
    Exercise(
        id="02.2",
        title="A dual-number rule: the quotient",
        name="dual_div",
        signature="dual_div(x, y) -> x / y elementwise; a Dual when x or y is one",
        reference=_D_div,
        cases=functools.partial(_binary_dual_cases, positive=True),
        hint="(a + ε·da)/(b + ε·db) = a/b + ε·(da − (a/b)·db)/b. A plain operand is a constant "
        "(tangent 0); two plain operands give a / b.",
        diagnostics=(
            Diagnostic("d(x/y) = (dx − (x/y)·dy)/y: the dy term has a minus sign", _div_sign),
            Diagnostic("the dy term is −x·dy/y², two factors of y: −(x/y)·dy/y", _div_missing_y),
        ),
        notebook="02_forward_mode_and_hvp",
    )
)


def _jvp_returns_value(closure: Any, params: list, vectors: list) -> tuple:
    value, _ = _jvp(closure, params, vectors)
    return value, value


def _jvp_not_restored(closure: Any, params: list, vectors: list) -> tuple:
    for p, v in zip(params, vectors, strict=True):
        p.data = Dual(p.data, v)
    out = closure().data
    return out.primal, out.tangent


register(
    Exercise(
        id="02.3",
        title="A JVP by one forward sweep on duals",
        name="jvp",
        signature="jvp(closure, params, vectors) -> (L(θ), ∇L(θ)·v), two numbers",
        reference=_jvp,
        run=functools.partial(_run_transform, what="jvp"),
        cases=_net_cases,
        squeeze=True,
        rtol=1e-10,
        hint="Replace every p.data by Dual(p.data, v) (keep the originals), run closure() inside "
        "tc.no_grad(), read out.data.primal and out.data.tangent, and restore p.data in a finally.",
        diagnostics=(
            Diagnostic(
                "the directional derivative is the TANGENT of the loss, out.data.tangent; you "
                "returned its primal (the loss) twice",
                _jvp_returns_value,
            ),
            Diagnostic(
                "after your jvp, params[0].data is not what it was (still a Dual?): put every "
                "p.data back when you are done, in a `finally:` block",
                _jvp_not_restored,
                match=False,
            ),
        ),
        notebook="02_forward_mode_and_hvp",
    )
)


def _hvp_returns_gradient(closure: Any, params: list, vectors: list) -> list:
    return _grad(closure, params)


def _hvp_not_restored(closure: Any, params: list, vectors: list) -> list:
    for p, v in zip(params, vectors, strict=True):
        p.data, p.grad = Dual(p.data, v), None
    closure().backward()
    return [p.grad.tangent for p in params]


def _hvp_accumulates(closure: Any, params: list, vectors: list) -> list:
    saved = [p.data for p in params]
    try:
        for p, v in zip(params, vectors, strict=True):
            p.data = Dual(p.data, v)
        closure().backward()
        return [D.tangent_of(p.grad, p.data) for p in params]
    finally:
        for p, data in zip(params, saved, strict=True):
            p.data = data


register(
    Exercise(
        id="02.4",
        title="Hessian-vector products: forward-over-reverse",
        name="hvp",
        signature="hvp(closure, params, vectors) -> [H·v], arrays shaped like params",
        reference=_hvp,
        run=functools.partial(_run_transform, what="hvp"),
        cases=_net_cases,
        rtol=1e-10,
        hint="Set p.data = Dual(p.data, v) and p.grad = None for every parameter, call "
        "closure().backward(): each p.grad comes back as Dual(∇L, H·v). Return the tangents and "
        "restore p.data (and p.grad) in a finally.",
        diagnostics=(
            Diagnostic(
                "you returned the gradient (the primal of p.grad); H·v is its tangent, "
                "p.grad.tangent",
                _hvp_returns_gradient,
            ),
            Diagnostic(
                "after your hvp, params[0].data is not what it was (still a Dual?): put every "
                "p.data back when you are done, in a `finally:` block",
                _hvp_not_restored,
                match=False,
            ),
            Diagnostic(
                "a second call of your hvp gave another result than the first: gradients "
                "accumulate in p.grad across backward sweeps; set p.grad = None before yours",
                _hvp_accumulates,
                match=False,
            ),
        ),
        notebook="02_forward_mode_and_hvp",
        plug="hvp",
    )
)


def _hessian_reference(closure: Any, params: list, vectors: list) -> np.ndarray:
    from tinycurv.curvature.dense import hessian

    return hessian(closure, params)


def _hessian_transposed_blocks(closure: Any, params: list, vectors: list) -> np.ndarray:
    # columns of H from HVPs, but each HVP flattened column-major
    sizes = [p.size for p in params]
    n = sum(sizes)
    cols = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        parts, start = [], 0
        for p, size in zip(params, sizes, strict=True):
            parts.append(e[start : start + size].reshape(p.shape))
            start += size
        cols.append(np.concatenate([np.ravel(h, order="F") for h in _hvp(closure, params, parts)]))
    return np.stack(cols, axis=1)


register(
    Exercise(
        id="02.5",
        title="The dense Hessian from HVPs",
        name="dense_hessian",
        signature="dense_hessian(closure, params, vectors) -> H (p, p); `vectors` is unused",
        reference=_hessian_reference,
        run=functools.partial(_run_transform, what="dense_hessian"),
        cases=_net_cases,
        rtol=1e-10,
        hint="Column j of H is H·eⱼ: cut the basis vector eⱼ into pieces shaped like the "
        "parameters (row-major, in order), call tc.hvp, flatten the result with np.ravel and "
        "concatenate; stack the p columns.",
        diagnostics=(
            Diagnostic(
                "flatten row-major (np.ravel's default, as tinycurv.curvature.flatten): the "
                "column-major order mixes up the entries of each weight matrix",
                _hessian_transposed_blocks,
            ),
        ),
        notebook="02_forward_mode_and_hvp",
    )
)


# ============================================================================================
# 03 · curvature matrices
# ============================================================================================
def _kron_reference(G: Any, A: Any, V: Any) -> Any:
    return (np.kron(G, A) @ V.reshape(-1)).reshape(V.shape)


def _kron_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case(
        "G (3, 3), A (4, 4), V (3, 4)", (_normal(rng, 3, 3), _normal(rng, 4, 4), _normal(rng, 3, 4))
    )
    yield Case(
        "square: G, A, V all (3, 3)", (_normal(rng, 3, 3), _normal(rng, 3, 3), _normal(rng, 3, 3))
    )
    yield Case(
        "G (1, 1), A (5, 5), V (1, 5)", (_normal(rng, 1, 1), _normal(rng, 5, 5), _normal(rng, 1, 5))
    )


register(
    Exercise(
        id="03.1",
        title="A Kronecker-factored matrix-vector product",
        name="kron_matvec",
        signature="kron_matvec(G, A, V) -> (G ⊗ A)·vec(V) as an (m, n) matrix; G (m, m), A (n, n)",
        reference=_kron_reference,
        cases=_kron_cases,
        hint="For the row-major vec (np.ravel), (G ⊗ A) vec(V) = vec(G V Aᵀ): G acts on the rows "
        "(the first index), A on the columns, transposed. Never form the (mn)×(mn) matrix.",
        diagnostics=(
            Diagnostic(
                "(G ⊗ A) vec(V) = vec(G V Aᵀ): A acts from the right TRANSPOSED (you have G V A)",
                lambda G, A, V: G @ V @ A,
            ),
            Diagnostic(
                "G ⊗ A puts G on the rows (the first index of V) and A on the columns: you swapped "
                "the factors",
                lambda G, A, V: A @ V @ G.T,
            ),
        ),
        notebook="03_curvature",
    )
)


def _kfac_factors_reference(a: Any, g_bar: Any, bias: bool = True) -> tuple:
    return _factors_from(a, g_bar, _Layer(bias))


def _kfac_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case(
        "b=6 rows, n=3 inputs, m=2 outputs, with bias", (_normal(rng, 6, 3), _normal(rng, 6, 2))
    )
    yield Case(
        "r=2 sampled gradients per row: g_bar (2b, m)",
        (_normal(rng, 5, 4), _normal(rng, 10, 3)),
        note="g_bar has r·b rows here, but every factor is divided by b, the rows of a",
    )
    yield Case(
        "without a bias",
        (_normal(rng, 7, 3), _normal(rng, 7, 2)),
        {"bias": False},
        note="bias=False: no column of ones",
    )
    yield Case("b < n (b=3, n=6)", (_normal(rng, 3, 6), _normal(rng, 3, 4)))
    yield Case("float32", (_normal(rng, 8, 3, dtype=F32), _normal(rng, 8, 2, dtype=F32)))


def _homogeneous(a: Any, bias: bool, first: bool = False) -> Any:
    if not bias:
        return a
    ones = np.ones((a.shape[0], 1), dtype=a.dtype)
    return np.concatenate([ones, a] if first else [a, ones], axis=1)


register(
    Exercise(
        id="03.2",
        title="K-FAC's Kronecker factors A and G of one layer",
        name="kfac_factors",
        signature="kfac_factors(a, g_bar, bias=True) -> (A, G); a (b, n), g_bar (r·b, m)",
        reference=_kfac_factors_reference,
        cases=_kfac_cases,
        hint="ã = [a, 1] (a column of ones LAST, only with a bias); A = ãᵀã / b and G = ḡᵀḡ / b, "
        "both divided by b = a.shape[0], the rows of a (eq. 1). Keep the dtype of a.",
        diagnostics=(
            Diagnostic(
                "A = ãᵀã / b: divide by the number of rows b (and G too)",
                lambda a, g_bar, bias=True: (
                    _homogeneous(a, bias).T @ _homogeneous(a, bias),
                    g_bar.T @ g_bar,
                ),
            ),
            Diagnostic(
                "A is (n+1)×(n+1): ãᵀã, not ã ãᵀ (which is b×b) — a transposed factor",
                lambda a, g_bar, bias=True: (
                    _homogeneous(a, bias) @ _homogeneous(a, bias).T / a.shape[0],
                    g_bar.T @ g_bar / a.shape[0],
                ),
            ),
            Diagnostic(
                "the column of ones goes LAST, ã = [a, 1]: the bias is the last column of [W | b]",
                lambda a, g_bar, bias=True: (
                    _homogeneous(a, bias, first=True).T
                    @ _homogeneous(a, bias, first=True)
                    / a.shape[0],
                    g_bar.T @ g_bar / a.shape[0],
                ),
            ),
            Diagnostic(
                "with a bias, append a column of ones to a first: ã = [a, 1], A = ãᵀã / b",
                lambda a, g_bar, bias=True: (a.T @ a / a.shape[0], g_bar.T @ g_bar / a.shape[0]),
            ),
            Diagnostic(
                "divide G by b, the rows of a, not by the r·b rows of g_bar: the r sampled "
                "gradients of a row add up (that is how G estimates the expectation)",
                lambda a, g_bar, bias=True: (
                    _homogeneous(a, bias).T @ _homogeneous(a, bias) / a.shape[0],
                    g_bar.T @ g_bar / g_bar.shape[0],
                ),
            ),
        ),
        notebook="03_curvature",
        plug="kfac_factors",
    )
)


def _ce_hessian_reference(logits: Any) -> Any:
    return nn.CrossEntropyLoss().hessian(logits)


def _softmax_unstable(z: Any) -> Any:
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _softmax_rows(z: Any) -> Any:
    return _softmax_unstable(z - z.max(axis=1, keepdims=True))


def _ce_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("b=2 samples, k=3 classes", (_normal(rng, 2, 3),))
    yield Case("b=4, k=5", (2 * _normal(rng, 4, 5),))
    yield Case(
        "large logits (about 800)",
        (800 + _normal(rng, 3, 4),),
        note="exp(800) overflows: subtract each row's max before np.exp",
    )


register(
    Exercise(
        id="03.3",
        title="The output Hessian of the cross-entropy",
        name="ce_output_hessian",
        signature="ce_output_hessian(logits) -> (b, k, k), ∇²_f ℓₙ for each sample",
        reference=_ce_hessian_reference,
        cases=_ce_cases,
        hint="ℓ = logsumexp(f) − f_y, so ∇²_f ℓ = diag(p) − p pᵀ with p = softmax(f) (stable: "
        "subtract the row max). Build it for all samples at once with broadcasting.",
        diagnostics=(
            Diagnostic(
                "the Hessian of log-sum-exp is diag(p) − p pᵀ: you have only the diagonal part",
                lambda z: _softmax_rows(z)[:, :, None] * np.eye(z.shape[1]),
            ),
            Diagnostic(
                "the sign: ∇²ℓ = diag(p) − p pᵀ (positive semi-definite), not p pᵀ − diag(p)",
                lambda z: -_ce_hessian_reference(z),
            ),
            Diagnostic(
                "use p = softmax(f), not the logits f themselves",
                lambda z: z[:, :, None] * np.eye(z.shape[1]) - z[:, :, None] * z[:, None, :],
            ),
            Diagnostic(
                "exp overflows for large logits: subtract each row's max before np.exp (softmax "
                "does not change)",
                lambda z: (
                    _softmax_unstable(z)[:, :, None] * np.eye(z.shape[1])
                    - _softmax_unstable(z)[:, :, None] * _softmax_unstable(z)[:, None, :]
                ),
            ),
        ),
        notebook="03_curvature",
    )
)


# ============================================================================================
# 04 · K-FAC
# ============================================================================================
def _damping_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case(
        "π-corrected, λ = 0.01, A (4, 4), G (3, 3)",
        (5 * _spd(rng, 4), _spd(rng, 3) / 5, 0.01, True),
    )
    yield Case("π = 1 (no correction), λ = 0.1", (_spd(rng, 4), _spd(rng, 2), 0.1, False))
    yield Case(
        "π-corrected, λ = 1, A (6, 6), G (2, 2)", (_spd(rng, 6), 3 * _spd(rng, 2), 1.0, True)
    )


def _dampings_wrong(
    invert: bool = False, per_dim: bool = True, root: bool = True, sqrt_pi: bool = True
) -> Any:
    def dampings(A: Any, G: Any, damping: float, pi_correction: bool = False) -> tuple:
        lam = math.sqrt(damping) if root else damping
        if not pi_correction:
            return lam, lam
        tA, tG = np.trace(A), np.trace(G)
        if per_dim:
            tA, tG = tA / A.shape[0], tG / G.shape[0]
        pi = tA / tG
        pi = math.sqrt(pi) if sqrt_pi else pi
        pi = 1 / pi if invert else pi
        return pi * lam, lam / pi

    return dampings


register(
    Exercise(
        id="04.1",
        title="Factored Tikhonov damping and the π-correction",
        name="kfac_dampings",
        signature="kfac_dampings(A, G, damping, pi_correction=False) -> (γ_A, γ_G), two numbers",
        reference=_kfac_dampings,
        cases=_damping_cases,
        squeeze=True,
        rtol=1e-12,
        hint="γ_A = π√λ and γ_G = √λ/π (so γ_A·γ_G = λ), with π = sqrt((tr A / dim A) / (tr G / "
        "dim G)), or π = 1 without the correction (M&G 2015, §6.3).",
        diagnostics=(
            Diagnostic(
                "π = sqrt((tr A/dim A)/(tr G/dim G)): you have 1/π (A's share must grow with "
                "its trace)",
                _dampings_wrong(invert=True),
            ),
            Diagnostic(
                "divide each trace by its dimension (tr A / dim A, the mean eigenvalue) "
                "before taking the ratio",
                _dampings_wrong(per_dim=False),
            ),
            Diagnostic(
                "each factor gets √λ (times π or 1/π), so that γ_A·γ_G = λ; you used λ",
                _dampings_wrong(root=False),
            ),
            Diagnostic(
                "π is the SQUARE ROOT of the ratio of mean eigenvalues",
                _dampings_wrong(sqrt_pi=False),
            ),
        ),
        notebook="04_kfac",
    )
)


def _direction_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case(
        "square: m = n+1 = 4, λ = 0.1", (_normal(rng, 4, 4), _spd(rng, 4), _spd(rng, 4), 0.1)
    )
    yield Case("m = 3, n+1 = 5, λ = 0.01", (_normal(rng, 3, 5), _spd(rng, 5), _spd(rng, 3), 0.01))
    yield Case("m = 2, n+1 = 7, λ = 1", (_normal(rng, 2, 7), _spd(rng, 7), _spd(rng, 2), 1.0))


def _direction_wrong(kind: str) -> Any:
    def direction(grad: Any, A: Any, G: Any, damping: float) -> Any:
        root = math.sqrt(damping)
        KA, KG = A + root * np.eye(len(A)), G + root * np.eye(len(G))
        if kind == "lambda":
            KA, KG = A + damping * np.eye(len(A)), G + damping * np.eye(len(G))
        if kind == "undamped":
            KA, KG = A, G
        if kind == "swapped":  # A on the left, G on the right: fits square ∇ only
            return np.linalg.solve(KA, grad) @ np.linalg.inv(KG)
        return np.linalg.solve(KG, grad) @ np.linalg.inv(KA)

    return direction


register(
    Exercise(
        id="04.2",
        title="K-FAC's step of one layer",
        name="kfac_direction",
        signature="kfac_direction(grad, A, G, damping) -> (G + √λ I)⁻¹ ∇ (A + √λ I)⁻¹, (m, n+1)",
        reference=_kfac_direction,
        cases=_direction_cases,
        hint="(G ⊗ A)⁻¹ vec(∇) = vec(G⁻¹ ∇ A⁻¹) for symmetric factors: G (m×m) acts on the rows "
        "of ∇ from the left, A ((n+1)×(n+1)) on its columns from the right; each damped by √λ. "
        "Use np.linalg.solve rather than inv where you can.",
        diagnostics=(
            Diagnostic(
                "factored Tikhonov damping adds √λ to each factor (γ_A·γ_G = λ): you added λ",
                _direction_wrong("lambda"),
            ),
            Diagnostic(
                "damp the factors before inverting: (G + √λ I)⁻¹ ∇ (A + √λ I)⁻¹",
                _direction_wrong("undamped"),
            ),
            Diagnostic(
                "G (m×m) acts from the LEFT on ∇ (m, n+1), A from the right: you swapped the "
                "sides of the factors",
                _direction_wrong("swapped"),
            ),
        ),
        notebook="04_kfac",
    )
)


def _ema_reference(old: Any, new: Any, k: int, ema_decay: float) -> Any:
    """``KFAC._average``'s rule (M&G 2015 §5): ε_k = min(1 − 1/k, decay) at the k-th update."""
    eps = min(1.0 - 1.0 / k, ema_decay) if k > 1 else 0.0
    return eps * old + (1.0 - eps) * new


def _ema_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("the first update (k = 1)", (_spd(rng, 3), _spd(rng, 3), 1, 0.95))
    yield Case("early: k = 3 (1 − 1/k < decay)", (_spd(rng, 3), _spd(rng, 3), 3, 0.95))
    yield Case("late: k = 100 (ε = decay)", (_spd(rng, 4), _spd(rng, 4), 100, 0.95))
    yield Case("float32, k = 50, decay 0.9", (_spd(rng, 2, F32), _spd(rng, 2, F32), 50, 0.9))


register(
    Exercise(
        id="04.3",
        title="The running average of a factor",
        name="ema_factor",
        signature="ema_factor(old, new, k, ema_decay) -> the average after the k-th update",
        reference=_ema_reference,
        cases=_ema_cases,
        hint="ε_k = min(1 − 1/k, ema_decay) weighs the old average and 1 − ε_k the new batch's "
        "factor: early on it is the plain mean of the k factors so far (M&G 2015, §5).",
        diagnostics=(
            Diagnostic(
                "ε weighs the OLD average and 1 − ε the new batch: you swapped them",
                lambda old, new, k, d: _ema_reference(new, old, k, d),
            ),
            Diagnostic(
                "early on, ε_k = 1 − 1/k (the mean of the k factors so far): use "
                "min(1 − 1/k, ema_decay), not ema_decay from the start",
                lambda old, new, k, d: d * old + (1 - d) * new,
            ),
            Diagnostic(
                "ε_k = min(1 − 1/k, ema_decay): later the decay caps it",
                lambda old, new, k, d: (1 - 1 / k) * old + (1 / k) * new,
            ),
        ),
        notebook="04_kfac",
    )
)


# ============================================================================================
# 05 · ISAAC
# ============================================================================================
def _isaac_inputs(
    rng: np.random.Generator, b: int, n: int, m: int, r: int = 1, dtype: Any = np.float64
) -> tuple:
    return (
        _normal(rng, b, m, dtype=dtype),
        _normal(rng, b, n, dtype=dtype),
        _normal(rng, r * b, m, dtype=dtype),
    )


def _zeta_star_cases(rng: np.random.Generator) -> Iterator[Case]:
    g, a, _ = _isaac_inputs(rng, 4, 7, 3)
    yield Case("b < n (b=4, n=7, m=3)", (g, a, 0.5))
    g, a, _ = _isaac_inputs(rng, 12, 5, 3)
    yield Case("b > n (b=12, n=5, m=3)", (g, a, 0.3))
    g, a, _ = _isaac_inputs(rng, 9, 3, 6)
    yield Case("b > n, m > n (b=9, n=3, m=6)", (g, a, 2.0))
    g, a, _ = _isaac_inputs(rng, 1, 4, 2)
    yield Case("one sample (b=1, n=4, m=2)", (g, a, 0.1))
    g, a, _ = _isaac_inputs(rng, 5, 6, 3)
    yield Case(
        "lam_a = inf (b=5, n=6, m=3)",
        (g, a, math.inf),
        note="lam_a = math.inf switches the input side off: ζ* is the plain gradient gᵀa"
        " (with the b×b form 1/(b·lam_a) = 0 does it by itself)",
    )
    g, a, _ = _isaac_inputs(rng, 5, 8, 4, dtype=F32)
    yield Case("float32 (b=5, n=8, m=4)", (g, a, 0.5))


def _solve_right(M: Any, K: Any) -> Any:
    """M K⁻¹ for a symmetric K."""
    return np.linalg.solve(K, M.T).T


def _zs_no_1_over_b(g: Any, a: Any, lam_a: float) -> Any:
    b = a.shape[0]
    return g.T @ np.linalg.solve(np.eye(b) + a @ a.T / lam_a, a)


def _zs_square_side_no_1_over_b(g: Any, a: Any, lam_a: float) -> Any:
    b, n = a.shape
    if b <= n:
        return _zeta_star(g, a, lam_a)
    return _solve_right(g.T @ a, np.eye(n) + a.T @ a / lam_a)


def _zs_square_side_no_lambda(g: Any, a: Any, lam_a: float) -> Any:
    b, n = a.shape
    if b <= n:
        return _zeta_star(g, a, lam_a)
    return _solve_right(g.T @ a, a.T @ a / b + lam_a * np.eye(n))


_ZETA_STAR_DIAGNOSTICS = (
    Diagnostic(
        "ζ* has the weight's shape (m, n) = gᵀ(…)a, g (b, m) transposed on the LEFT; yours is "
        "its transpose (n, m)",
        lambda g, a, lam_a: _zeta_star(g, a, lam_a).T,
    ),
    Diagnostic(
        "did you use the n×n side? For b > n, ζ* = gᵀa (I_n + aᵀa/(b·lam_a))⁻¹: the same 1/b "
        "as on the b×b side (A = aᵀa/b)",
        _zs_square_side_no_1_over_b,
    ),
    Diagnostic(
        "did you use the n×n side? There ζ* = lam_a·gᵀa (A + lam_a I)⁻¹ = gᵀa (I_n + "
        "A/lam_a)⁻¹: keep the factor lam_a",
        _zs_square_side_no_lambda,
    ),
    Diagnostic(
        "missing 1/b: the b×b system is I_b + a aᵀ/(b·lam_a), the 1/b of A = aᵀa/b",
        _zs_no_1_over_b,
    ),
)

register(
    Exercise(
        id="05.2",
        title="ISAAC's ζ*: the gradient conditioned by the inputs (eq. 21)",
        name="zeta_star",
        signature="zeta_star(g, a, lam_a) -> (m, n); g (b, m), a (b, n), lam_a > 0 or math.inf",
        reference=_zeta_star,
        cases=_zeta_star_cases,
        hint="ζ* = gᵀ (I_b + a aᵀ/(b·lam_a))⁻¹ a: one b×b solve (np.linalg.solve(K, a)). For "
        "b > n the n×n form gᵀa (I_n + aᵀa/(b·lam_a))⁻¹ is cheaper and equal. Keep the dtype "
        "(np.eye(b, dtype=a.dtype)).",
        diagnostics=_ZETA_STAR_DIAGNOSTICS,
        notebook="05_isaac",
        plug="zeta_star",
    )
)


def _zeta_kron_cases(rng: np.random.Generator) -> Iterator[Case]:
    g, a, g_bar = _isaac_inputs(rng, 4, 6, 3)
    yield Case("b=4, n=6, m=3, r=1", (g, a, g_bar, 0.5, 0.2))
    g, a, g_bar = _isaac_inputs(rng, 8, 3, 4, r=2)
    yield Case(
        "b > n, r=2 (b=8, n=3, m=4)",
        (g, a, g_bar, 1.0, 0.5),
        note="g_bar has r·b rows here; still G = ḡᵀḡ / b",
    )
    g, a, g_bar = _isaac_inputs(rng, 5, 4, 3)
    yield Case(
        "lam_g = inf (b=5, n=4, m=3)",
        (g, a, g_bar, math.inf, 0.3),
        note="lam_g = math.inf switches the output side off: ζ = ζ* (use math.isinf)",
    )


def _zk_wrong(kind: str) -> Any:
    def zeta_kron(g: Any, a: Any, g_bar: Any, lam_g: float, lam_a: float) -> Any:
        b, n = a.shape
        m = g.shape[1]
        scale = 1.0 if kind == "no_1_over_b" else 1.0 / b
        A, G = a.T @ a * scale, g_bar.T @ g_bar * scale
        if kind == "g_not_g_bar":
            G = g.T @ g * scale
        left = lam_g if kind != "no_lambdas" else 1.0
        right = lam_a if kind != "no_lambdas" else 1.0
        out = right * _solve_right(g.T @ a, A + lam_a * np.eye(n))
        if not math.isinf(lam_g):
            out = left * np.linalg.solve(G + lam_g * np.eye(m), out)
        return out

    return zeta_kron


register(
    Exercise(
        id="05.1",
        title="ISAAC's ζ by its Kronecker form (eq. 17)",
        name="zeta_kron",
        signature="zeta_kron(g, a, g_bar, lam_g, lam_a) -> (m, n)",
        reference=_zeta_kron,
        cases=_zeta_kron_cases,
        rtol=1e-8,
        hint="ζ = lam_g lam_a (G + lam_g I)⁻¹ gᵀa (A + lam_a I)⁻¹ with A = aᵀa/b, G = ḡᵀḡ/b "
        "(eq. 14, 17); lam = math.inf makes that side the identity.",
        diagnostics=(
            Diagnostic("A = aᵀa/b and G = ḡᵀḡ/b (eq. 14): divide by b", _zk_wrong("no_1_over_b")),
            Diagnostic(
                "keep the factor lam_g·lam_a in front (eq. 17): it keeps ζ on the scale of "
                "the gradient",
                _zk_wrong("no_lambdas"),
            ),
            Diagnostic(
                "G is built from g_bar (the sampled or Hessian-root gradients), not from g",
                _zk_wrong("g_not_g_bar"),
            ),
            Diagnostic(
                "ζ has the weight's shape (m, n): yours is transposed",
                lambda g, a, g_bar, lam_g, lam_a: _zeta_kron(g, a, g_bar, lam_g, lam_a).T,
            ),
        ),
        notebook="05_isaac",
    )
)


def _input_side_reference(a: Any, lam_a: float) -> Any:
    """λ_a (A + λ_a I)⁻¹ (n×n), A = aᵀa/b: eq. 17's right factor, solved directly."""
    b, n = a.shape
    return lam_a * np.linalg.inv(a.T @ a / b + lam_a * np.eye(n, dtype=a.dtype))


def _input_side_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("b < n (b=3, n=7)", (_normal(rng, 3, 7), 0.4))
    yield Case("b > n (b=9, n=4)", (_normal(rng, 9, 4), 1.5))
    yield Case("one sample (b=1, n=5)", (_normal(rng, 1, 5), 0.2))
    yield Case("float32 (b=4, n=6)", (_normal(rng, 4, 6, dtype=F32), 0.7))


def _woodbury(a: Any, lam_a: float, scale_b: bool = True, sign: float = -1.0) -> Any:
    b, n = a.shape
    c = b * lam_a if scale_b else lam_a
    K = c * np.eye(b) + a @ a.T
    return np.eye(n) + sign * a.T @ np.linalg.solve(K, a)


register(
    Exercise(
        id="05.3",
        title="The Woodbury identity: a b×b solve for an n×n inverse (eq. 20)",
        name="input_side",
        signature="input_side(a, lam_a) -> lam_a (A + lam_a I_n)⁻¹, (n, n), via a b×b solve",
        reference=_input_side_reference,
        cases=_input_side_cases,
        rtol=1e-8,
        hint="Woodbury: lam_a (aᵀa/b + lam_a I)⁻¹ = I_n − aᵀ (b·lam_a I_b + a aᵀ)⁻¹ a. Only the "
        "b×b matrix is inverted (solved).",
        diagnostics=(
            Diagnostic(
                "missing 1/b: the b×b matrix is b·lam_a I_b + a aᵀ (A = aᵀa/b)",
                lambda a, lam_a: _woodbury(a, lam_a, scale_b=False),
            ),
            Diagnostic(
                "the Woodbury correction is subtracted: I − aᵀ(b·lam_a I + a aᵀ)⁻¹a",
                lambda a, lam_a: _woodbury(a, lam_a, sign=1.0),
            ),
        ),
        notebook="05_isaac",
    )
)


def _zeta_cases(rng: np.random.Generator) -> Iterator[Case]:
    g, a, g_bar = _isaac_inputs(rng, 4, 7, 6)
    yield Case("r·b ≤ m (b=4, n=7, m=6, r=1)", (g, a, g_bar, 0.5, 0.3))
    g, a, g_bar = _isaac_inputs(rng, 5, 4, 3, r=2)
    yield Case(
        "r·b > m, b > n (b=5, n=4, m=3, r=2)",
        (g, a, g_bar, 1.0, 2.0),
        note="g_bar has r·b rows; G = ḡᵀḡ / b still divides by b",
    )
    g, a, g_bar = _isaac_inputs(rng, 6, 5, 3)
    yield Case(
        "lam_g = inf: ζ = ζ* (Theorem 3)",
        (g, a, None, math.inf, 0.5),
        note="lam_g = math.inf: return ζ* (g_bar may be None); use math.isinf",
    )


def _zeta_wrong_rb(g: Any, a: Any, g_bar: Any, lam_g: float, lam_a: float) -> Any:
    if math.isinf(lam_g):
        return _zeta_star(g, a, lam_a)
    m = g.shape[1]
    G = g_bar.T @ g_bar / g_bar.shape[0]
    return lam_g * np.linalg.solve(G + lam_g * np.eye(m), _zeta_star(g, a, lam_a))


def _zeta_wrong_no_b(g: Any, a: Any, g_bar: Any, lam_g: float, lam_a: float) -> Any:
    if math.isinf(lam_g):
        return _zeta_star(g, a, lam_a)
    m = g.shape[1]
    return lam_g * np.linalg.solve(g_bar.T @ g_bar + lam_g * np.eye(m), _zeta_star(g, a, lam_a))


register(
    Exercise(
        id="05.4",
        title="ISAAC's ζ with both dampings, and λ_g = ∞",
        name="zeta",
        signature="zeta(g, a, g_bar, lam_g, lam_a) -> (m, n); g_bar (r·b, m) or None for lam_g=inf",
        reference=_zeta,
        cases=_zeta_cases,
        rtol=1e-8,
        hint="ζ = lam_g (G + lam_g I)⁻¹ ζ*, with G = ḡᵀḡ/b and ζ* from 05.2; lam_g = math.inf "
        "returns ζ* itself. (The cheaper Woodbury form of eq. 20 solves an (r·b)×(r·b) system.)",
        diagnostics=(
            Diagnostic(
                "G = ḡᵀḡ / b divides by b, the rows of a, not by the r·b rows of g_bar",
                _zeta_wrong_rb,
            ),
            Diagnostic("G = ḡᵀḡ / b: divide by b", _zeta_wrong_no_b),
        ),
        notebook="05_isaac",
    )
)


# ============================================================================================
# 06 · GroupedNewton
# ============================================================================================
def _summary_reference(g: Any, H: Any, u: Any, groups: list) -> tuple:
    """The library's one-sweep summary of the quadratic L(θ) = gᵀθ + ½θᵀHθ at θ = 0."""
    p = g.shape[0]
    params = [Tensor(np.zeros(len(s)), requires_grad=True) for s in groups]
    pick = [Tensor(np.eye(p)[:, s]) for s in groups]  # θ = Σ_s E_s θ_s

    def closure() -> Tensor:
        theta = functools.reduce(
            ops.add, [ops.matmul(E, t) for E, t in zip(pick, params, strict=True)]
        )
        return (Tensor(g) * theta).sum() + (theta * ops.matmul(Tensor(H), theta)).sum() * 0.5

    return _grouped_gradient_and_hessian(closure, params, [u[s] for s in groups])


def _summary_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case(
        "p=5 entries, groups [[0, 1], [2, 3, 4]]",
        (_normal(rng, 5), _symmetric(rng, 5), _normal(rng, 5), [[0, 1], [2, 3, 4]]),
    )
    yield Case(
        "p=6, interleaved groups [[0, 3], [1, 4], [2, 5]]",
        (_normal(rng, 6), _symmetric(rng, 6), _normal(rng, 6), [[0, 3], [1, 4], [2, 5]]),
    )
    yield Case(
        "one group (S = 1)", (_normal(rng, 4), _symmetric(rng, 4), _normal(rng, 4), [[0, 1, 2, 3]])
    )


def _summary_wrong(kind: str) -> Any:
    def summary(g: Any, H: Any, u: Any, groups: list) -> tuple:
        P = np.zeros((g.shape[0], len(groups)))
        for s, group in enumerate(groups):
            P[group, s] = 1.0
        U = np.diag(u)
        if kind == "no_u":
            return P.T @ g, P.T @ H @ P
        return P.T @ U @ g, P.T @ U @ H @ P

    return summary


register(
    Exercise(
        id="06.1",
        title="The GroupedNewton summary of a quadratic",
        name="grouped_summary_dense",
        signature="grouped_summary_dense(g, H, u, groups) -> (g_bar (S,), H_bar (S, S))",
        reference=_summary_reference,
        cases=_summary_cases,
        rtol=1e-10,
        hint="With the 0/1 partition matrix P (p × S, P[i, s] = 1 if entry i is in group s): "
        "g_bar = Pᵀ diag(u) g and H_bar = Pᵀ diag(u) H diag(u) P, i.e. ⟨u_s, g⟩ and ⟨u_s, H u_t⟩.",
        diagnostics=(
            Diagnostic(
                "weight by the direction: g_bar_s = ⟨u_s, g⟩ = Σ_{i∈s} uᵢgᵢ, and u on both "
                "sides of H",
                _summary_wrong("no_u"),
            ),
            Diagnostic(
                "H_bar = Pᵀ diag(u) H diag(u) P: diag(u) on BOTH sides of H (H_bar is symmetric)",
                _summary_wrong("one_sided"),
            ),
        ),
        notebook="06_grouped_newton",
    )
)


def _cubic_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case(
        "S=3, D > 0, lam_int = 1",
        (_normal(rng, 3), _normal(rng, 3), _spd(rng, 3), np.abs(_normal(rng, 3)), 1.0),
    )
    yield Case(
        "S=4, D of both signs, lam_int = 0.5",
        (_normal(rng, 4), _normal(rng, 4), _symmetric(rng, 4), 3 * _normal(rng, 4), 0.5),
        note="only |D| matters: d = |D|^(1/3)",
    )
    yield Case(
        "lam_int = 0: the quadratic model",
        (_normal(rng, 2), _normal(rng, 2), _spd(rng, 2), _normal(rng, 2), 0.0),
    )


def _cubic_wrong(kind: str) -> Any:
    def model(eta: Any, g_bar: Any, H_bar: Any, D: Any, lam_int: float) -> float:
        d = np.abs(D) if kind == "no_root" else np.cbrt(np.abs(D))
        lin = g_bar @ eta if kind == "sign" else -g_bar @ eta
        cubic = np.sum(np.abs(d * eta) ** 3) if kind == "sum" else np.linalg.norm(d * eta) ** 3
        return float(lin + 0.5 * eta @ H_bar @ eta + lam_int / 6 * cubic)

    return model


register(
    Exercise(
        id="06.2",
        title="The cubic model of GroupedNewton (App. D)",
        name="cubic_model",
        signature="cubic_model(eta, g_bar, H_bar, D, lam_int) -> float",
        reference=_cubic_model,
        cases=_cubic_cases,
        squeeze=True,
        rtol=1e-12,
        hint="m(η) = −g_barᵀη + ½ ηᵀH_barη + (lam_int/6)·‖diag(d)η‖³ with d = |D|^(1/3) "
        "(np.cbrt(np.abs(D))): one norm, cubed.",
        diagnostics=(
            Diagnostic(
                "d = |D|^(1/3), the cube root of |D|, so that ‖diag(d)η‖³ scales like |D|·|η|³",
                _cubic_wrong("no_root"),
            ),
            Diagnostic(
                "m(η) = −g_barᵀη + …: the step θ − diag(u)Pη moves against the gradient",
                _cubic_wrong("sign"),
            ),
            Diagnostic(
                "the cubic term is (lam_int/6)·‖diag(d)η‖³, the cube of ONE norm, not a sum "
                "of cubes",
                _cubic_wrong("sum"),
            ),
        ),
        notebook="06_grouped_newton",
    )
)


def _cauchy_reference(g: Any, H: Any) -> float:
    """Newton's step on the S = 1 summary along u = g (App. C): η = gᵀg / gᵀHg."""
    g_bar, H_bar = np.array([g @ g]), np.array([[g @ H @ g]])
    return float(_grouped_newton_step(g_bar, H_bar, np.zeros(1), 0.0)[0])


def _cauchy_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("p=5, H positive definite", (_normal(rng, 5), _spd(rng, 5)))
    yield Case("p=3, ill-conditioned H", (_normal(rng, 3), np.diag([100.0, 1.0, 0.01])))
    yield Case("p=8", (_normal(rng, 8), _spd(rng, 8)))


register(
    Exercise(
        id="06.3",
        title="Cauchy's step: one group along the gradient (App. C)",
        name="cauchy_step",
        signature="cauchy_step(g, H) -> float, the learning rate η of θ − η·g",
        reference=_cauchy_reference,
        cases=_cauchy_cases,
        squeeze=True,
        rtol=1e-12,
        hint="With u = g and one group, g_bar = gᵀg and H_bar = gᵀHg; Newton's step on that 1×1 "
        "model is η = gᵀg / gᵀHg.",
        diagnostics=(
            Diagnostic("η = gᵀg / gᵀHg: you have its inverse", lambda g, H: (g @ H @ g) / (g @ g)),
            Diagnostic(
                "η = gᵀg / gᵀHg uses the curvature along g, gᵀHg, not ‖Hg‖²",
                lambda g, H: (g @ g) / ((H @ g) @ (H @ g)),
            ),
        ),
        notebook="06_grouped_newton",
    )
)


def _step_cases(rng: np.random.Generator) -> Iterator[Case]:
    def D(S: int) -> np.ndarray:
        return np.sign(_normal(rng, S)) * (0.5 + np.abs(_normal(rng, S)))

    yield Case(
        "S=2, H_bar positive definite, lam_int = 1", (_normal(rng, 2), _spd(rng, 2), D(2), 1.0)
    )
    yield Case("S=3, positive definite, lam_int = 0.1", (_normal(rng, 3), _spd(rng, 3), D(3), 0.1))
    yield Case(
        "S=3, positive definite, lam_int = 100 (a short step)",
        (5 * _normal(rng, 3), _spd(rng, 3), D(3), 100.0),
    )
    H = _symmetric(rng, 4)
    H -= (np.linalg.eigvalsh(H)[0] + 0.7) * np.eye(4)  # one negative eigenvalue
    H[0, 0] -= 0.5
    yield Case(
        "S=4, H_bar indefinite, lam_int = 1",
        (_normal(rng, 4), H, D(4), 1.0),
        note="H_bar is indefinite: the minimiser has r above r0, where H_bar + (lam_int/2)"
        "·r·diag(d)² becomes positive definite; bracket the root from there",
    )


def _newton_only(g_bar: Any, H_bar: Any, D: Any, lam_int: float) -> Any:
    return np.linalg.solve(H_bar, g_bar)


_STEP_DIAGNOSTICS = (
    Diagnostic(
        "that is the Newton step H_bar⁻¹g_bar: the cubic term (lam_int/6)‖diag(d)η‖³ "
        "shortens it; solve η = (H_bar + (lam_int/2)·r·diag(d)²)⁻¹g_bar with r = "
        "‖diag(d)η‖",
        _newton_only,
    ),
    Diagnostic(
        "d = |D|^(1/3): take the cube root of |D| (np.cbrt(np.abs(D)))",
        lambda g_bar, H_bar, D, lam_int: _grouped_newton_step(
            g_bar, H_bar, np.abs(D) ** 3, lam_int
        ),
    ),
    Diagnostic(
        "the gradient of (lam_int/6)·r³ is (lam_int/2)·r²·∂r: the shift is (lam_int/2)"
        "·r·diag(d)², half of what you used",
        lambda g_bar, H_bar, D, lam_int: _grouped_newton_step(g_bar, H_bar, D, 2 * lam_int),
    ),
)

register(
    Exercise(
        id="06.4",
        title="The cubic-regularised GroupedNewton step (App. D)",
        name="grouped_newton_step",
        signature="grouped_newton_step(g_bar, H_bar, D, lam_int) -> eta (S,), the global minimiser",
        reference=_grouped_newton_step,
        cases=_step_cases,
        rtol=1e-7,
        check_dtype=False,
        hint="With d = |D|^(1/3), c = lam_int/2 and K = diag(d)⁻¹H_bar diag(d)⁻¹ = Q diag(κ) Qᵀ, "
        "b = Qᵀ(g_bar/d): y_j = b_j/(κ_j + c·r) and r = ‖y‖. Find r with scipy.optimize.brentq on "
        "h(r) = ‖y(r)‖ − r, starting above r0 = max(0, −κ_min/c); then η = (Q y)/d.",
        diagnostics=_STEP_DIAGNOSTICS,
        notebook="06_grouped_newton",
        plug="grouped_newton_step",
    )
)


# ============================================================================================
# 07 · saddle-free Newton
# ============================================================================================
def _abs_cases(rng: np.random.Generator) -> Iterator[Case]:
    H = _symmetric(rng, 4)
    yield Case("an indefinite 4×4 H, λ = 0.1", (H, _normal(rng, 4), 0.1))
    H = _symmetric(rng, 6) + 0.1 * np.eye(6)
    yield Case("an indefinite 6×6 H, λ = 0", (H, _normal(rng, 6), 0.0))
    yield Case(
        "a positive definite H (SFN = Newton), λ = 0.5", (_spd(rng, 3), _normal(rng, 3), 0.5)
    )


def _abs_wrong(kind: str) -> Any:
    def direction(H: Any, v: Any, damping: float = 0.0) -> Any:
        lam, Q = np.linalg.eigh(H)
        if kind == "newton":
            return np.linalg.solve(H + damping * np.eye(len(H)), v)
        if kind == "abs_after":
            return Q @ ((Q.T @ v) / np.abs(lam + damping))
        return Q.T @ ((Q @ v) / (np.abs(lam) + damping))

    return direction


register(
    Exercise(
        id="07.1",
        title="Exact saddle-free Newton: (|H| + λI)⁻¹ v",
        name="abs_hessian_inverse",
        signature="abs_hessian_inverse(H, v, damping=0.0) -> (p,)",
        reference=_abs_hessian_inverse,
        cases=_abs_cases,
        rtol=1e-9,
        hint="H = Q Λ Qᵀ (np.linalg.eigh: eigenvectors are the COLUMNS of Q); |H| = Q |Λ| Qᵀ, so "
        "(|H| + λI)⁻¹v = Q ((Qᵀv) / (|Λ| + λ)).",
        diagnostics=(
            Diagnostic(
                "saddle-free: divide by the ABSOLUTE eigenvalues |λᵢ| + λ; (H + λI)⁻¹v is "
                "Newton's step, which a saddle attracts",
                _abs_wrong("newton"),
            ),
            Diagnostic(
                "add the damping after the absolute value: |Λ| + λ, not |Λ + λ|",
                _abs_wrong("abs_after"),
            ),
            Diagnostic(
                "eigh returns the eigenvectors as the columns of Q, H = Q Λ Qᵀ: apply "
                "Q (…) Qᵀv, not Qᵀ (…) Q v",
                _abs_wrong("transposed"),
            ),
        ),
        notebook="07_saddle_free_newton",
    )
)


def _coefficient_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("N = 1, d = 0", (1, 0.0))
    yield Case("N = 6, d = 0 (the binomial series of 1/√(1 − y))", (6, 0.0))
    yield Case("N = 8, d = 0.3", (8, 0.3))
    yield Case("N = 10, d = 2", (10, 2.0))
    yield Case(
        "N = 5, d = 1",
        (5, 1.0),
        note="at d = 1 the recurrence (2) reads 0/0: there cₙ = (−1)ⁿ binom(½, n + 1)",
    )


def _binom_half(n: int) -> float:
    out = 1.0
    for j in range(n):
        out *= (0.5 - j) / (j + 1)
    return out


def _coefficients_wrong(kind: str) -> Any:
    def coefficients(order: int, damping_ratio: float = 0.0) -> list:
        d = damping_ratio
        if d == 1 and kind != "edge":
            return [(-1) ** n * _binom_half(n + 1) for n in range(order)]
        c = [1.0 if kind == "c0" else 1 / (1 + d)]
        for n in range(1, order):
            sign = 1 if kind == "no_sign" else (-1) ** n
            c.append((c[-1] + sign * _binom_half(n)) / (1 - d * d))
        return c

    return coefficients


register(
    Exercise(
        id="07.2",
        title="The coefficients of the saddle-free series (recurrence 2)",
        name="series_coefficients",
        signature="series_coefficients(order, damping_ratio=0.0) -> [c₀, …, c_{N−1}]",
        reference=_series_coefficients,
        cases=_coefficient_cases,
        rtol=1e-12,
        hint="c₀ = 1/(1 + d) and cₙ = (cₙ₋₁ + (−1)ⁿ binom(½, n))/(1 − d²), with binom(½, n) = "
        "Πⱼ₌₀ⁿ⁻¹ (½ − j)/(j + 1); at d = 1 (0/0) use cₙ = (−1)ⁿ binom(½, n + 1).",
        diagnostics=(
            Diagnostic(
                "the recurrence alternates: cₙ = (cₙ₋₁ + (−1)ⁿ binom(½, n))/(1 − d²)",
                _coefficients_wrong("no_sign"),
            ),
            Diagnostic(
                "c₀ = 1/(1 + d): at y = 0 the function 1/(d + √(1 − y)) is 1/(1 + d)",
                _coefficients_wrong("c0"),
            ),
        ),
        notebook="07_saddle_free_newton",
        plug="series_coefficients",
    )
)


def _hvp_of(H: np.ndarray, shapes: list[tuple[int, ...]]) -> Any:
    """``hvp_fn`` of a dense symmetric H acting on vectors split into arrays of ``shapes``."""
    sizes = [int(np.prod(s)) for s in shapes]

    def hvp_fn(vs: list) -> list:
        flat = H @ np.concatenate([np.ravel(v) for v in vs])
        out, start = [], 0
        for s, size in zip(shapes, sizes, strict=True):
            out.append(flat[start : start + size].reshape(s).astype(vs[0].dtype))
            start += size
        return out

    return hvp_fn


def _series_cases(rng: np.random.Generator) -> Iterator[Case]:
    shapes = [(3,), (2, 2)]
    H = _symmetric(rng, 7)
    V = float(np.max(np.abs(np.linalg.eigvalsh(H)))) ** 2
    v = [_normal(rng, *s) for s in shapes]
    yield Case("N = 1 (no HVP)", (_hvp_of(H, shapes), v, 1, V))
    yield Case("N = 6, λ = 0", (_hvp_of(H, shapes), v, 6, V))
    yield Case("N = 12, λ = 0.5, V = 1.5 λ_max²", (_hvp_of(H, shapes), v, 12, 1.5 * V, 0.5))
    v32 = [a.astype(F32) for a in v]
    yield Case("float32, N = 5, λ = 0.1", (_hvp_of(H, shapes), v32, 5, V, 0.1))


def _series_wrong(kind: str) -> Any:
    def series(hvp_fn: Any, vectors: list, order: int, scale: float, damping: float = 0.0) -> list:
        d = 0.0 if kind == "no_d" else damping / math.sqrt(scale)
        terms = order + 1 if kind == "extra" else order
        c = _series_coefficients(terms, d)
        v = list(vectors)
        S = [c[0] * a for a in v]
        for n in range(1, terms):
            Hv = hvp_fn(v) if kind == "one_hvp" else hvp_fn(hvp_fn(v))
            v = [a - h / scale for a, h in zip(v, Hv, strict=True)]
            S = [s + c[n] * a for s, a in zip(S, v, strict=True)]
        return S if kind == "no_root" else [s / math.sqrt(scale) for s in S]

    return series


register(
    Exercise(
        id="07.3",
        title="The saddle-free series of HVPs (1, 3)",
        name="series_operator",
        signature="series_operator(hvp_fn, vectors, order, scale, damping=0.0) -> "
        "[u] ≈ (|H| + λI)⁻¹ v, arrays shaped like vectors",
        reference=_series_operator,
        cases=_series_cases,
        rtol=1e-10,
        hint="v₀ = v, vₙ = vₙ₋₁ − H(H vₙ₋₁)/V (two HVPs per term), Sₙ = Sₙ₋₁ + cₙ vₙ with "
        "cₙ = series_coefficients(N, λ/√V); return V^(−1/2)·S_{N−1}. Vectors are lists of arrays.",
        diagnostics=(
            Diagnostic(
                "scale the sum: u = V^(−1/2)·Σ cₙ Yⁿ v — you forgot the 1/√V",
                _series_wrong("no_root"),
            ),
            Diagnostic(
                "Y = I − H²/V: two HVPs per term, vₙ = vₙ₋₁ − H(H vₙ₋₁)/V", _series_wrong("one_hvp")
            ),
            Diagnostic(
                "the coefficients depend on the damping through d = λ/√V", _series_wrong("no_d")
            ),
            Diagnostic(
                "N terms are n = 0 … N − 1 (2(N − 1) HVPs): you summed one term more",
                _series_wrong("extra"),
            ),
        ),
        notebook="07_saddle_free_newton",
        plug="series_operator",
    )
)


def _wynn_cases(rng: np.random.Generator) -> Iterator[Case]:
    shapes = [(3,), (2,)]
    limit = [_normal(rng, *s) for s in shapes]
    a1, a2 = [_normal(rng, *s) for s in shapes], [_normal(rng, *s) for s in shapes]

    def sums(count: int, r1: float, r2: float) -> list:
        return [
            [s + x * r1**m + y * r2**m for s, x, y in zip(limit, a1, a2, strict=True)]
            for m in range(count)
        ]

    yield Case("k = 0: the last partial sum", (sums(3, 0.5, -0.3), 0))
    yield Case(
        "k = 1 on 5 partial sums of two geometric terms",
        (sums(5, 0.8, -0.5), 1),
        note="only the LAST 2k + 1 partial sums are used",
    )
    yield Case("k = 2, exact for two geometric terms", (sums(6, 0.9, -0.6), 2))
    still = [[a.copy() for a in limit] for _ in range(3)]
    yield Case(
        "a sequence that has converged (all sums equal), k = 1",
        (still, 1),
        note="the differences vanish: return the last partial sum instead of dividing by zero",
    )


def _wynn_wrong(kind: str) -> Any:
    def wynn(partial_sums: list, k: int) -> list:
        if k == 0:
            return [a.copy() for a in partial_sums[-1]]
        chosen = partial_sums[: 2 * k + 1] if kind == "first" else partial_sums[-(2 * k + 1) :]
        flat = [np.concatenate([np.ravel(a) for a in s]) for s in chosen]
        previous, current = None, flat
        steps = 2 * k - 1 if kind == "odd" else 2 * k
        for _ in range(steps):
            column = []
            for m in range(len(current) - 1):
                delta = current[m + 1] - current[m]
                inverse = 1 / delta if kind == "elementwise" else delta / (delta @ delta)
                column.append(inverse if previous is None else previous[m + 1] + inverse)
            previous, current = current, column
        out, start = [], 0
        for a in partial_sums[-1]:
            out.append(current[0][start : start + a.size].reshape(a.shape))
            start += a.size
        return out

    return wynn


register(
    Exercise(
        id="07.4",
        title="Wynn's vector ε-algorithm (4)",
        name="wynn_epsilon",
        signature="wynn_epsilon(partial_sums, k) -> vector (a list of arrays), ε_{2k}",
        reference=_wynn_epsilon,
        cases=_wynn_cases,
        rtol=1e-8,
        hint="Start from ε₋₁ = 0 and ε₀⁽ᵐ⁾ = S_m (the last 2k + 1 sums); ε_{s+1}⁽ᵐ⁾ = ε_{s−1}⁽ᵐ⁺¹⁾ "
        "+ (ε_s⁽ᵐ⁺¹⁾ − ε_s⁽ᵐ⁾)⁻¹ with Samelson's inverse v⁻¹ = v/(vᵀv) over the whole vector; 2k "
        "columns, return ε_{2k}⁽⁰⁾. If a difference is 0 return the last sum.",
        diagnostics=(
            Diagnostic(
                "the inverse of a vector is Samelson's v/(vᵀv) over the whole vector (all its"
                " arrays), not the elementwise 1/v",
                _wynn_wrong("elementwise"),
            ),
            Diagnostic(
                "odd columns ε_{2j+1} are auxiliary: compute 2k columns and return the even "
                "one, ε_{2k}",
                _wynn_wrong("odd"),
            ),
            Diagnostic(
                "use the LAST 2k + 1 partial sums (the most accurate), not the first",
                _wynn_wrong("first"),
            ),
        ),
        notebook="07_saddle_free_newton",
        plug="wynn_epsilon",
    )
)


def _lm_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("a good model, ρ = 0.9", (1.0, 0.9, 0.5))
    yield Case("a poor model, ρ = 0.1", (0.2, 0.1, 0.8))
    yield Case("in between, ρ = 0.5", (0.3, 0.5, 0.8))
    yield Case(
        "ρ = NaN (no model change)",
        (0.3, math.nan, 0.8),
        note="NaN compares False with everything: λ stays",
    )
    yield Case("the floor: λ = 1e-9, ρ = 0.95, min_damping = 1e-8", (1e-9, 0.95, 0.5, 1e-8))


register(
    Exercise(
        id="07.5",
        title="The Levenberg–Marquardt damping rule (8)",
        name="levenberg_marquardt",
        signature="levenberg_marquardt(damping, rho, decay, min_damping=0.0) -> float",
        reference=_levenberg_marquardt,
        cases=_lm_cases,
        squeeze=True,
        rtol=1e-15,
        hint="ρ > ¾: the model predicted well, λ ← ω·λ (less damping); ρ < ¼: λ ← λ/ω; else keep "
        "λ. Never below min_damping.",
        diagnostics=(
            Diagnostic(
                "a good model (ρ > ¾) earns LESS damping, λ ← ω·λ with ω < 1: yours is the "
                "other way round",
                lambda lam, rho, w, floor=0.0: max(
                    lam / w if rho > 0.75 else lam * w if rho < 0.25 else lam, floor
                ),
            ),
            Diagnostic(
                "keep λ at least min_damping",
                lambda lam, rho, w, floor=0.0: (
                    lam * w if rho > 0.75 else lam / w if rho < 0.25 else lam
                ),
            ),
        ),
        notebook="07_saddle_free_newton",
    )
)


# ============================================================================================
# 08 · the GPU backend, float32 and float64
# ============================================================================================
def _fd_step_reference(dtype: Any) -> float:
    """ε^(1/3): the step where central differences balance rounding (ε/h) and truncation."""
    return float(np.finfo(dtype).eps) ** (1.0 / 3.0)


register(
    Exercise(
        id="08.1",
        title="The best finite-difference step of a dtype",
        name="fd_step",
        signature="fd_step(dtype) -> float, the h that minimises the central-difference error",
        reference=_fd_step_reference,
        cases=lambda rng: [
            Case("float64", ("float64",)),
            Case("float32", ("float32",)),
            Case("float16", (np.float16,)),
        ],
        squeeze=True,
        rtol=1e-12,
        hint="The central difference's error is about ε/h (rounding) + h² (truncation); the sum is "
        "smallest near h = ε^(1/3). np.finfo(dtype).eps gives ε.",
        diagnostics=(
            Diagnostic(
                "√ε is the best step of the ONE-sided difference (error ε/h + h); the central "
                "difference's truncation error is h², so h = ε^(1/3)",
                lambda dtype: float(np.finfo(dtype).eps) ** 0.5,
            ),
            Diagnostic(
                "h = ε itself drowns in rounding (error ε/h = 1): balance ε/h against h²",
                lambda dtype: float(np.finfo(dtype).eps),
            ),
        ),
        notebook="08_gpu_backend",
    )
)


def _lse_reference(z: Any, axis: int = -1) -> Any:
    return ops.logsumexp(Tensor(z), axis=axis).data


def _softmax_reference(z: Any, axis: int = -1) -> Any:
    return ops.softmax(Tensor(z), axis=axis).data


def _stable_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("(3, 5) along the last axis", (_normal(rng, 3, 5),))
    yield Case("(4, 3) along axis 0", (_normal(rng, 4, 3),), {"axis": 0})
    yield Case(
        "large logits (about 800)",
        (800 + _normal(rng, 2, 4),),
        note="exp(800) overflows to inf: subtract the max along the axis first",
    )
    yield Case(
        "very negative logits (about −800)",
        (-800 + _normal(rng, 2, 4),),
        note="exp(−800) underflows to 0: subtract the max along the axis first",
    )
    yield Case(
        "float32 (3, 4)",
        (_normal(rng, 3, 4, dtype=F32),),
        note="keep float32: no np.float64 constants or casts",
    )


def _lse_wrong(kind: str) -> Any:
    def lse(z: Any, axis: int = -1) -> Any:
        if kind == "naive":
            return np.log(np.exp(z).sum(axis=axis))
        m = z.max(axis=axis, keepdims=True)
        return np.log(np.exp(z - m).sum(axis=axis))

    return lse


register(
    Exercise(
        id="08.2",
        title="A stable log-sum-exp, in the input's dtype",
        name="logsumexp",
        signature="logsumexp(z, axis=-1) -> log Σ exp(z) along axis (that axis removed)",
        reference=_lse_reference,
        cases=_stable_cases,
        hint="logsumexp(z) = m + log Σ exp(z − m) with m = max(z) along the axis (keepdims=True, "
        "then squeeze it): nothing overflows, the largest term is exp(0) = 1.",
        diagnostics=(
            Diagnostic(
                "exp overflows (or underflows) for large logits: subtract the max along the "
                "axis first, logsumexp(z) = m + log Σ exp(z − m)",
                _lse_wrong("naive"),
            ),
            Diagnostic(
                "add the max back: logsumexp(z) = m + log Σ exp(z − m)", _lse_wrong("no_add")
            ),
        ),
        notebook="08_gpu_backend",
    )
)


def _softmax_wrong(kind: str) -> Any:
    def softmax(z: Any, axis: int = -1) -> Any:
        if kind == "naive":
            e = np.exp(z)
            return e / e.sum(axis=axis, keepdims=True)
        e = np.exp(z - z.max(axis=axis, keepdims=True))
        return e / e.sum()

    return softmax


register(
    Exercise(
        id="08.3",
        title="A stable softmax, in the input's dtype",
        name="softmax",
        signature="softmax(z, axis=-1) -> exp(z) / Σ exp(z) along axis, shaped like z",
        reference=_softmax_reference,
        cases=_stable_cases,
        hint="e = exp(z − max(z, axis, keepdims=True)); return e / e.sum(axis, keepdims=True).",
        diagnostics=(
            Diagnostic(
                "exp overflows for large logits (inf/inf = NaN): subtract the max along the "
                "axis first — the softmax does not change",
                _softmax_wrong("naive"),
            ),
            Diagnostic(
                "normalise along the axis (e.sum(axis=axis, keepdims=True)), not over all entries",
                _softmax_wrong("all"),
            ),
        ),
        notebook="08_gpu_backend",
    )
)


# ============================================================================================
# 09 · comparing optimisers
# ============================================================================================
def _running_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("window 3 over 10 values", (rng.random(10), 3))
    yield Case("window 1 (no smoothing)", (rng.random(6), 1))
    yield Case("window 20 over 8 values (longer than the data)", (rng.random(8), 20))


def _running_valid(values: Any, window: int) -> Any:
    v = np.asarray(values, dtype=float)
    return np.convolve(v, np.ones(window) / window, mode="valid") if window > 1 else v


def _running_divide_window(values: Any, window: int) -> Any:
    v = np.asarray(values, dtype=float)
    if window <= 1:
        return v
    return np.array([v[max(0, i - window + 1) : i + 1].sum() / window for i in range(v.size)])


register(
    Exercise(
        id="09.1",
        title="The running mean of a loss curve",
        name="running_mean",
        signature="running_mean(values, window) -> array of len(values)",
        reference=_running_mean,
        cases=_running_cases,
        hint="Position i holds the mean of values[max(0, i − window + 1) : i + 1]: over fewer "
        "values at the start. np.cumsum makes it O(n).",
        diagnostics=(
            Diagnostic(
                "one mean per position (len(values) of them): at the start, average the "
                "values seen so far",
                _running_valid,
            ),
            Diagnostic(
                "at the start there are fewer than `window` values: divide by how many there are",
                _running_divide_window,
            ),
        ),
        notebook="09_compare_optimisers",
    )
)


def _steps_reference(losses: Any, threshold: float, window: int = 10) -> int | None:
    """The first step (counting from 1) whose running mean is below ``threshold`` (notebook 09)."""
    below = np.flatnonzero(_running_mean(losses, window) < threshold)
    return int(below[0]) + 1 if below.size else None


def _steps_cases(rng: np.random.Generator) -> Iterator[Case]:
    losses = np.exp(-np.arange(60) / 15) * (1 + 0.3 * rng.standard_normal(60))
    yield Case("a noisy decay, threshold 0.3, window 10", (losses, 0.3))
    yield Case("never reached: threshold 1e-6", (losses, 1e-6))
    yield Case("window 1, threshold 0.5", (losses, 0.5, 1))


register(
    Exercise(
        id="09.2",
        title="Steps to a loss threshold",
        name="steps_to_threshold",
        signature="steps_to_threshold(losses, threshold, window=10) -> int (from 1) or None",
        reference=_steps_reference,
        cases=_steps_cases,
        hint="Smooth with running_mean(losses, window) first, find the first position below the "
        "threshold (np.flatnonzero), count steps from 1, and return None if there is none.",
        diagnostics=(
            Diagnostic(
                "steps count from 1 (the first step is step 1): add 1 to the index",
                lambda losses, t, w=10: (
                    None
                    if _steps_reference(losses, t, w) is None
                    else _steps_reference(losses, t, w) - 1
                ),
            ),
            Diagnostic(
                "smooth first: compare the running mean of the last `window` losses, not "
                "the raw (noisy) minibatch losses",
                lambda losses, t, w=10: _steps_reference(losses, t, 1),
            ),
        ),
        notebook="09_compare_optimisers",
    )
)


def _sgd_reference(
    theta: Any,
    grad: Any,
    buf: Any,
    lr: float,
    momentum: float,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> tuple:
    """PyTorch's SGD step, from ``tinycurv.optim.sgd.momentum_directions``."""
    d = grad + weight_decay * theta
    state = {} if buf is None else {"momentum_buffer": [buf]}
    (direction,) = momentum_directions(state, [d], momentum, nesterov)
    return theta - lr * direction, state["momentum_buffer"][0]


def _sgd_cases(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("the first step (buf = None)", (_normal(rng, 4), _normal(rng, 4), None, 0.1, 0.9))
    yield Case("a later step", (_normal(rng, 4), _normal(rng, 4), _normal(rng, 4), 0.1, 0.9))
    yield Case(
        "weight decay 0.01", (_normal(rng, 3), _normal(rng, 3), _normal(rng, 3), 0.5, 0.8, 0.01)
    )
    yield Case("Nesterov", (_normal(rng, 3), _normal(rng, 3), _normal(rng, 3), 0.2, 0.9, 0.0, True))


def _sgd_wrong(kind: str) -> Any:
    def step(
        theta: Any,
        grad: Any,
        buf: Any,
        lr: float,
        momentum: float,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> tuple:
        d = grad + (0.0 if kind == "decay_late" else weight_decay) * theta
        if buf is None:
            buf = d.copy()
        elif kind == "dampening":
            buf = momentum * buf + (1 - momentum) * d
        else:
            buf = momentum * buf + d
        direction = d + momentum * buf if nesterov and kind != "no_nesterov" else buf
        if kind == "decay_late":
            direction = direction + weight_decay * theta
        return theta - lr * direction, buf

    return step


register(
    Exercise(
        id="09.3",
        title="PyTorch's SGD with momentum, one step",
        name="sgd_momentum_step",
        signature="sgd_momentum_step(theta, grad, buf, lr, momentum, weight_decay=0.0, "
        "nesterov=False) -> (theta, buf)",
        reference=_sgd_reference,
        cases=_sgd_cases,
        hint="d = grad + weight_decay·θ; buf = d on the first step (buf is None), else "
        "momentum·buf + d; the direction is buf, or d + momentum·buf with Nesterov; "
        "θ − lr·direction.",
        diagnostics=(
            Diagnostic(
                "PyTorch's SGD adds the whole direction, buf ← momentum·buf + d (no "
                "dampening factor 1 − momentum)",
                _sgd_wrong("dampening"),
            ),
            Diagnostic(
                "weight decay goes into d = grad + weight_decay·θ BEFORE the momentum buffer",
                _sgd_wrong("decay_late"),
            ),
            Diagnostic("Nesterov's direction is d + momentum·buf", _sgd_wrong("no_nesterov")),
        ),
        notebook="09_compare_optimisers",
    )
)


def _adam_reference(
    theta: Any,
    grad: Any,
    m: Any,
    v: Any,
    t: int,
    lr: float,
    betas: tuple = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple:
    """PyTorch's Adam step, from ``tinycurv.optim.adam.adam_steps``."""
    state = {"m": [m], "v": [v]}
    (step,), size = adam_steps(state, [grad], betas, eps, lr, t)
    return theta - size * step, state["m"][0], state["v"][0]


def _adam_cases(rng: np.random.Generator) -> Iterator[Case]:
    z = np.zeros(4)
    yield Case(
        "the first step (t = 1, m = v = 0)", (_normal(rng, 4), _normal(rng, 4), z, z, 1, 1e-3)
    )
    m, v = 0.1 * _normal(rng, 4), 0.01 * rng.random(4)
    yield Case("t = 10", (_normal(rng, 4), _normal(rng, 4), m, v, 10, 1e-2))
    m, v = 0.1 * _normal(rng, 3), 1e-12 * rng.random(3)
    yield Case(
        "tiny second moments, eps = 1e-3",
        (_normal(rng, 3), _normal(rng, 3), m, v, 3, 0.1, (0.8, 0.99), 1e-3),
    )


def _adam_wrong(kind: str) -> Any:
    def step(
        theta: Any,
        grad: Any,
        m: Any,
        v: Any,
        t: int,
        lr: float,
        betas: tuple = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> tuple:
        b1, b2 = betas
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        if kind == "no_correction":
            return theta - lr * m / (np.sqrt(v) + eps), m, v
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        return theta - lr * m_hat / np.sqrt(v_hat + eps), m, v

    return step


register(
    Exercise(
        id="09.4",
        title="PyTorch's Adam, one step",
        name="adam_step",
        signature="adam_step(theta, grad, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8) -> (theta, m, "
        "v)",
        reference=_adam_reference,
        cases=_adam_cases,
        rtol=1e-10,
        hint="m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ), "
        "θ ← θ − lr·m̂/(√v̂ + ε): ε outside the square root.",
        diagnostics=(
            Diagnostic(
                "correct the bias of the moments: m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ) (they "
                "start at 0)",
                _adam_wrong("no_correction"),
            ),
            Diagnostic("ε is added to √v̂, outside the square root", _adam_wrong("eps_inside")),
        ),
        notebook="09_compare_optimisers",
    )
)


# ============================================================================================
# the build-it-yourself track (tutorials/track): the pieces of the engine and the methods
# ============================================================================================
def _tanh_forward(self: Any, x: Any) -> Any:
    self.x = x
    self.y = D.tanh(x)
    return self.y


def _tanh_cases(rng: np.random.Generator) -> Iterator[Case]:
    for case in _sigmoid_cases(rng):
        yield dataclasses.replace(case, note=case.note.replace("D.sigmoid", "D.tanh"))


register(
    Exercise(
        id="T1.1",
        title="The engine's tanh primitive: forward and backward",
        name="Tanh",
        signature="class Tanh(Function): forward(self, x) -> y;  backward(self, gy) -> (gx,)",
        reference=_Tanh,
        run=_run_primitive,
        cases=_tanh_cases,
        hint="forward keeps y = D.tanh(x) on self and returns it; backward returns "
        "(gy * (1 − y·y),): tanh' = 1 − tanh². Write it with tinycurv.dual (D.tanh, D.mul, D.sub) "
        "or operators, so that it runs on duals too.",
        diagnostics=(
            Diagnostic(
                "tanh'(x) = 1 − tanh²(x): square the OUTPUT y that forward kept, not the input x",
                _primitive("Tanh", _tanh_forward, lambda self, gy: (gy * (1.0 - self.x * self.x),)),
            ),
            Diagnostic(
                "multiply by the incoming cotangent gy (the chain rule): gx = gy·(1 − y²)",
                _primitive("Tanh", _tanh_forward, lambda self, gy: (1.0 - self.y * self.y,)),
            ),
            Diagnostic(
                "backward must return a tuple with one cotangent per input, e.g. `return (gx,)`",
                _primitive("Tanh", _tanh_forward, lambda self, gy: gy * (1.0 - self.y * self.y)),
                match=False,
            ),
        ),
        notebook="track/01_primitives",
        plug="Tanh",
    )
)


def _matmul_forward(self: Any, x: Any, w: Any) -> Any:
    self.x, self.w = x, w
    return x @ w


def _matmul_class_cases(rng: np.random.Generator) -> Iterator[Case]:
    for case in _matmul_cases(rng):
        x, w, gy = case.args
        yield Case(case.label, ((x, w), gy))
    x, w = _normal(rng, 3, 4), Dual(_normal(rng, 4, 2), _normal(rng, 4, 2))
    yield Case(
        "a dual weight and a dual cotangent (forward-over-reverse)",
        ((x, w), Dual(_normal(rng, 3, 2), _normal(rng, 3, 2))),
        note="w and gy are Duals here: use @ and .T (or D.matmul, D.transpose), which "
        "accept duals, not np.dot / np.matmul",
    )


register(
    Exercise(
        id="T1.2",
        title="The engine's matrix product: forward and backward",
        name="MatMul",
        signature="class MatMul(Function): forward(self, x, w) -> x @ w;  backward(self, gy) -> "
        "(gx, gw) for 2-D x (b, n), w (n, m)",
        reference=_MatMul,
        run=_run_primitive,
        cases=_matmul_class_cases,
        hint="forward keeps x and w; backward returns (gy @ w.T, x.T @ gy): each cotangent is "
        "shaped like its input.",
        diagnostics=(
            Diagnostic(
                "transposed factor: gx = gy wᵀ, (b, m)·(m, n) — you multiplied by w itself",
                _primitive(
                    "MatMul", _matmul_forward, lambda self, gy: (gy @ self.w, self.x.T @ gy)
                ),
            ),
            Diagnostic(
                "gw must have the shape of w, (n, m): gw = xᵀ gy; yours, gyᵀ x, is its transpose",
                _primitive(
                    "MatMul", _matmul_forward, lambda self, gy: (gy @ self.w.T, gy.T @ self.x)
                ),
            ),
        ),
        notebook="track/01_primitives",
        plug="MatMul",
    )
)


register(
    Exercise(
        id="T2.1",
        title="A dual-number rule: tanh",
        name="tanh",
        signature="tanh(x) -> tanh(x), a Dual when x is a Dual (any nesting, batched tangents)",
        reference=_D_tanh,
        cases=_unary_dual_cases,
        hint="tanh(p + ε·t) = tanh(p) + ε·(1 − tanh²p)·t. If x is not a Dual return np.tanh(x); "
        "else y = tanh(x.primal) (recursion: the primal may be a Dual) and return Dual(y, (1 − y·y)"
        " * x.tangent).",
        diagnostics=_TANH_DUAL_DIAGNOSTICS,
        notebook="track/02_dual_numbers",
        plug="dual.tanh",
    )
)

for _id, _source, _notebook in (
    ("T3.1", "02.4", "track/03_hvp"),
    ("T4.1", "03.2", "track/04_kfac_factors"),
    ("T5.1", "05.2", "track/05_zeta_star"),
    ("T6.1", "06.4", "track/06_cubic_step"),
    ("T7.1", "07.2", "track/07_sfn_series"),
    ("T7.2", "07.3", "track/07_sfn_series"),
    ("T7.3", "07.4", "track/07_sfn_series"),
):
    register(replace(REGISTRY[_source], id=_id, notebook=_notebook))


# ============================================================================================
# PLUGS: where each track piece goes in the library (see grader.plug_in)
# ============================================================================================
def _adapt_hvp(fn: Any) -> Any:
    """The student's ``hvp(closure, params, vectors)`` with ``tinycurv.hvp``'s ``batched``."""

    def hvp(closure: Any, params: Any, vectors: Any, batched: bool = False) -> list:
        if not batched:
            return list(fn(closure, params, vectors))
        k = vectors[0].shape[0]
        columns = [fn(closure, params, [v[j] for v in vectors]) for j in range(k)]
        return [np.stack([c[i] for c in columns]) for i in range(len(params))]

    return hvp


def _adapt_factors(fn: Any) -> Any:
    """The student's ``kfac_factors(a, g_bar, bias)`` as ``kfac.factors_from`` (KFAC-expand)."""

    def factors_from(
        a: Any,
        g_bar: Any,
        layer: Any,
        scale: float = 1.0,
        kfac_approx: str = "expand",
        samples: int | None = None,
    ) -> tuple:
        if kfac_approx != "expand" and samples is not None and a.shape[0] != samples:
            raise ValueError(
                "the plugged-in kfac_factors is KFAC-expand: use kfac_approx='expand' for a "
                "layer with several rows per sample (a convolution)"
            )
        A, G = fn(a, g_bar, bias=getattr(layer, "bias", None) is not None)
        return scale * A, scale * G

    return factors_from


def _adapt_step(fn: Any) -> Any:
    """The student's ``grouped_newton_step(g_bar, H_bar, D, lam_int)`` with ``return_info``."""

    def grouped_newton_step(
        g_bar: Any, H_bar: Any, D: Any, lam_int: float, *, return_info: bool = False
    ) -> Any:
        eta = np.asarray(
            fn(
                np.asarray(g_bar, float),
                np.asarray(H_bar, float),
                np.asarray(D, float),
                float(lam_int),
            ),
            dtype=np.float64,
        )
        info = {
            "case": "student",
            "converged": True,
            "message": "",
            "r": None,
            "r0": None,
            "bracket": None,
        }
        return (eta, info) if return_info else eta

    return grouped_newton_step


def _adapt_series(fn: Any) -> Any:
    """The student's ``series_operator`` (no acceleration) with the library's signature."""

    def series_operator(
        hvp_fn: Any,
        vectors: Any,
        order: int,
        scale: float,
        damping: float = 0.0,
        acceleration: int = 0,
    ) -> list:
        if acceleration:
            raise ValueError(
                "the plugged-in series_operator has no acceleration: train with "
                "acceleration=0 (plug in wynn_epsilon for the accelerated series)"
            )
        return list(fn(hvp_fn, vectors, order, scale, damping))

    return series_operator


for _plug in (
    Plug("Tanh", ("tinycurv.ops:Tanh",), doc="ops.tanh, Tensor.tanh and nn.Tanh"),
    Plug("MatMul", ("tinycurv.ops:MatMul",), doc="ops.matmul, @ and nn.Linear (2-D only)"),
    Plug("dual.tanh", ("tinycurv.dual:tanh",), doc="tanh on duals: JVPs, HVPs, taylor"),
    Plug("dual.mul", ("tinycurv.dual:mul",), doc="every product on duals"),
    Plug(
        "hvp",
        (
            "tinycurv.functional:hvp",
            "tinycurv:hvp",
            "tinycurv.optim.sfn:hvp",
            "tinycurv.curvature.dense:hvp",
        ),
        _adapt_hvp,
        doc="SeriesSFN, dense Hessians",
    ),
    Plug(
        "kfac_factors",
        ("tinycurv.curvature.kfac:factors_from",),
        _adapt_factors,
        doc="KFAC's factors (and kfac_factors)",
    ),
    Plug(
        "zeta_star",
        ("tinycurv.curvature:zeta_star", "tinycurv.curvature.isaac:zeta_star"),
        doc="ISAAC's ζ* (and ζ at lam_g = inf)",
    ),
    Plug(
        "grouped_newton_step",
        (
            "tinycurv.optim.grouped_newton:grouped_newton_step",
            "tinycurv.curvature:grouped_newton_step",
            "tinycurv.curvature.grouped_step:grouped_newton_step",
        ),
        _adapt_step,
        doc="GroupedNewton's cubic step",
    ),
    Plug(
        "series_coefficients",
        ("tinycurv.curvature.sfn:series_coefficients",),
        doc="the coefficients of SeriesSFN's series",
    ),
    Plug(
        "series_operator",
        ("tinycurv.curvature.sfn:series_operator",),
        _adapt_series,
        doc="SeriesSFN's series (acceleration=0)",
    ),
    Plug("wynn_epsilon", ("tinycurv.curvature.sfn:wynn_epsilon",), doc="SeriesSFN's acceleration"),
):
    PLUGS[_plug.name] = _plug


# the registry in reading order: tutorials 01–09, then the track
_ordered = sorted(REGISTRY.items(), key=lambda item: (item[0].startswith("T"), item[0]))
REGISTRY.clear()
REGISTRY.update(_ordered)
