"""``tinycurv verify``: every numerical claim the library rests on, checked on seeded problems.

Each check calls the library on a small float64 problem and returns ``(error, tolerance)``; it
passes when ``error <= tolerance``. ``CHECKS`` holds each claim and its source (docs/verify.md):
derivatives against finite differences, layers and losses against naive loops, the papers'
identities and limits, and every optimiser's rule, whose parameter trajectory over a few steps
must equal a NumPy re-implementation of its update formulas (on a twin model)::

    from tinycurv import verify
    print(verify.format_table(verify.run()))          # all checks
    verify.run(["hvp-fd"], perturb={"hvp-fd": 1.0})   # a deliberately broken check: FAIL

``perturb`` (or ``TINYCURV_VERIFY_BREAK=name[=amount][,name…]``) adds ``amount`` (default 1.0)
to the measured error of the named checks, the hook tests use to see the command fail. Errors
are relative, ``‖measured − expected‖ / ‖expected‖``; tolerances are a few hundred rounding
errors for identities, the proven bound for limits. A declared host-side module: the references
are computed with NumPy on the host.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from tinycurv import curvature, nn, ops, optim
from tinycurv.backend import asarray, asnumpy, get_default_dtype, set_default_dtype
from tinycurv.curvature.dense import fisher, ggn, hessian
from tinycurv.curvature.grouped import check_groups, grouped_summary
from tinycurv.curvature.grouped_step import grouped_newton_step
from tinycurv.curvature.isaac import zeta, zeta_kron, zeta_star
from tinycurv.curvature.kfac import kfac_factors, layer_indices, sampled_output_gradients
from tinycurv.curvature.sfn import (
    abs_hessian_inverse,
    levenberg_marquardt,
    model_change,
    saddle_free_direction,
    series_coefficients,
    series_coefficients_closed_form,
    subspace_minimiser,
)
from tinycurv.functional import grad, hvp
from tinycurv.tensor import Tensor

__all__ = ["CHECKS", "Check", "Outcome", "format_table", "run"]

BREAK_ENV = "TINYCURV_VERIFY_BREAK"


@dataclass(frozen=True)
class Check:
    """A claim, its source, and the function measuring ``(error, tolerance)``."""

    name: str
    claim: str
    source: str
    fn: Callable[[], tuple[float, float]]


@dataclass(frozen=True)
class Outcome:
    """The result of one check; ``message`` holds an exception's text if it raised."""

    check: Check
    error: float
    tolerance: float
    message: str = ""

    @property
    def passed(self) -> bool:
        return not self.message and math.isfinite(self.error) and self.error <= self.tolerance


CHECKS: dict[str, Check] = {}


def check(name: str, claim: str, source: str) -> Callable:
    """Register the decorated function as the check ``name``."""

    def register(fn: Callable[[], tuple[float, float]]) -> Callable[[], tuple[float, float]]:
        CHECKS[name] = Check(name, claim, source, fn)
        return fn

    return register


# --------------------------------------------------------------------------------------------
# small helpers (host NumPy; library inputs go through asarray, outputs through asnumpy)
# --------------------------------------------------------------------------------------------
def _rel(x: object, ref: object) -> float:
    x, ref = np.asarray(asnumpy(x), dtype=float), np.asarray(asnumpy(ref), dtype=float)
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def _flat(arrays: Iterable[object]) -> np.ndarray:
    return np.concatenate([np.ravel(asnumpy(a)) for a in arrays])


def _mlp(seed: int) -> tuple[nn.Module, Callable[[], Tensor]]:
    """A 4–5–3 tanh network and the closure of its cross-entropy on a random batch of 6."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(4, 5, rng=rng), nn.Tanh(), nn.Linear(5, 3, rng=rng))
    x, y = asarray(rng.standard_normal((6, 4))), asarray(rng.integers(0, 3, size=6))
    return model, lambda: nn.CrossEntropyLoss()(model(x), y)


def _random_like(params: list[Tensor], seed: int) -> list[object]:
    rng = np.random.default_rng(seed)
    return [asarray(rng.standard_normal(p.shape)) for p in params]


def _isaac_problem(b: int, seed: int, m: int = 7, n: int = 5, r: int = 1):
    """g (b, m), a (b, n), g_bar (r·b, m) as backend arrays."""
    rng = np.random.default_rng(seed)
    return (
        asarray(rng.standard_normal((b, m)) / b),
        asarray(rng.standard_normal((b, n))),
        asarray(rng.standard_normal((r * b, m))),
    )


def _host(params: Iterable[Tensor]) -> list[np.ndarray]:
    """The parameters' values as host float64 arrays."""
    return [np.array(asnumpy(p.data), dtype=float) for p in params]


def _at(params: list[Tensor], values: Iterable[object], fn: Callable):
    """``fn()`` with the parameters temporarily set to ``values`` (host or backend arrays)."""
    saved = [p.data for p in params]
    try:
        for p, v in zip(params, values, strict=True):
            p.data = asarray(v)
        return fn()
    finally:
        for p, s in zip(params, saved, strict=True):
            p.data = s


def _shifted(params: list[Tensor], v: list[np.ndarray], t: float) -> list[np.ndarray]:
    return [x + t * vi for x, vi in zip(_host(params), v, strict=True)]


def _fd_directional(closure, params, v, eps=1e-5) -> float:
    """(L(θ + εv) − L(θ − εv)) / 2ε, the derivative along v by central differences."""
    loss = lambda: float(asnumpy(closure().data))
    up, down = (_at(params, _shifted(params, v, s * eps), loss) for s in (1.0, -1.0))
    return (up - down) / (2 * eps)


def _fd_hvp(closure, params, v, eps=1e-4) -> np.ndarray:
    """(∇L(θ + εv) − ∇L(θ − εv)) / 2ε, flattened: H v by central differences of gradients."""
    g = lambda: _flat(grad(closure, params))
    up, down = (_at(params, _shifted(params, v, s * eps), g) for s in (1.0, -1.0))
    return (up - down) / (2 * eps)


def _host_random(params: list[Tensor], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(p.shape) for p in params]


def _labels(rng: np.random.Generator, b: int, classes: int = 3):
    return asarray(rng.integers(0, classes, size=b))


def _cnn(seed: int) -> tuple[nn.Module, Callable[[], Tensor]]:
    """Conv2d → Tanh → MaxPool2d (padded) → Conv2d → Flatten → Linear, cross-entropy, b = 3."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, rng=rng),
        nn.Tanh(),
        nn.MaxPool2d(2, padding=1),
        nn.Conv2d(3, 2, 2, rng=rng),
        nn.Flatten(),
        nn.Linear(8, 3, rng=rng),
    )
    x, y = asarray(rng.standard_normal((3, 2, 5, 5))), _labels(rng, 3)
    return model, lambda: nn.CrossEntropyLoss()(model(x), y)


def _zoo(seed: int) -> tuple[nn.Module, Callable[[], Tensor]]:
    """Conv2d (strided) → ELU → AvgPool2d (padded) → Linear → Sigmoid → Linear → ReLU → Linear
    (no bias), MSE, b = 3: every other layer kind."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 2, (3, 2), stride=(1, 2), padding=(1, 0), rng=rng),
        nn.ELU(0.7),
        nn.AvgPool2d(3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(12, 6, rng=rng),
        nn.Sigmoid(),
        nn.Linear(6, 5, rng=rng),
        nn.ReLU(),
        nn.Linear(5, 2, bias=False, rng=rng),
    )
    x, y = asarray(rng.standard_normal((3, 1, 5, 6))), asarray(rng.standard_normal((3, 2)))
    return model, lambda: nn.MSELoss()(model(x), y)


def _ops_closure(seed: int) -> tuple[list[Tensor], Callable[[], Tensor]]:
    """A scalar built from every primitive of ``tinycurv.ops`` (as Tensor methods)."""
    rng = np.random.default_rng(seed)
    theta = Tensor(asarray(rng.standard_normal((3, 4))), requires_grad=True)
    phi = Tensor(asarray(rng.standard_normal(4)), requires_grad=True)

    def closure() -> Tensor:
        z = (theta @ phi).tanh().sum()  # MatMul, Tanh, Sum
        r = theta / (1.0 + theta * theta)  # Div, Add, Mul
        s = (theta**3).mean(axis=0) - (-phi).exp()  # Pow, mean, Neg, Exp, Sub
        t = (1.0 + phi * phi).log() + ops.maximum(phi, 0.5 * phi)  # Log, Where
        u = r.T.reshape(2, 6)[:, asarray(np.array([0, 3, 5]))].sigmoid()  # Transpose, GetItem
        w = (theta @ theta.T - 0.5).relu().sum(axis=1, keepdims=True)  # ReLU, keepdims
        lse = theta.logsumexp(axis=1).sum() + theta.log_softmax(axis=0)[1].sum()
        cube = theta.reshape(3, 2, 2)
        batched = (cube @ cube.transpose(0, 2, 1)).tanh().sum()  # MatMul of 3-D operands
        return z + (s * t).sum() + u.sum() + (w * w).sum() + lse + batched

    return [theta, phi], closure


# --------------------------------------------------------------------------------------------
# engine and dense curvature
# --------------------------------------------------------------------------------------------
@check(
    "hvp-fd",
    "HVP = central finite differences of gradients (float64)",
    "Pearlmutter 1994 (forward-over-reverse)",
)
def _hvp_fd() -> tuple[float, float]:
    model, closure = _mlp(seed=0)
    params = model.parameters()
    v = _random_like(params, 1)
    hv = hvp(closure, params, v)
    eps, saved, grads = 1e-4, [p.data for p in params], []
    for sign in (1.0, -1.0):
        for p, s, vi in zip(params, saved, v, strict=True):
            p.data = s + sign * eps * vi
        grads.append(_flat(grad(closure, params)))
    for p, s in zip(params, saved, strict=True):
        p.data = s
    return _rel(_flat(hv), (grads[0] - grads[1]) / (2 * eps)), 1e-6  # O(eps²) truncation


@check("hvp-symmetry", "HVP symmetry u·Hv = v·Hu", "Schwarz's theorem (H = Hᵀ)")
def _hvp_symmetry() -> tuple[float, float]:
    model, closure = _mlp(seed=2)
    params = model.parameters()
    u, v = _random_like(params, 3), _random_like(params, 4)
    uHv = float(_flat(u) @ _flat(hvp(closure, params, v)))
    vHu = float(_flat(v) @ _flat(hvp(closure, params, u)))
    return abs(uHv - vHu) / max(abs(uHv), abs(vHu)), 1e-12


@check(
    "grad-fd",
    "Gradient = central finite differences of the loss (every op and layer kind, both losses)",
    "definition of the derivative; reverse mode (backpropagation)",
)
def _grad_fd() -> tuple[float, float]:
    problems = [_ops_closure(20)] + [(m.parameters(), c) for m, c in (_cnn(21), _zoo(22))]
    errors = []
    for params, closure in problems:
        g = _flat(grad(closure, params))
        directions = [_host_random(params, 24 + i) for i in range(4)]
        ad = [float(g @ _flat(v)) for v in directions]
        errors.append(_rel(ad, [_fd_directional(closure, params, v) for v in directions]))
    return max(errors), 1e-7  # O(ε²) truncation and O(eps/ε) rounding, ε = 1e-5


def _hvp_fd_error(params: list[Tensor], closure: Callable, seed: int) -> float:
    """‖Hv − FD‖/‖FD‖, the worst of two random directions."""
    errors = []
    for i in range(2):
        v = _host_random(params, seed + i)
        errors.append(
            _rel(_flat(hvp(closure, params, [asarray(x) for x in v])), _fd_hvp(closure, params, v))
        )
    return max(errors)


@check(
    "hvp-cnn",
    "HVP = finite differences of gradients on Conv2d → Tanh → MaxPool2d → Conv2d → Flatten "
    "→ Linear (CE)",
    "Pearlmutter 1994 (forward-over-reverse through im2col and pooling)",
)
def _hvp_cnn() -> tuple[float, float]:
    model, closure = _cnn(25)
    return _hvp_fd_error(model.parameters(), closure, 26), 1e-6


@check(
    "hvp-ops",
    "HVP = finite differences of gradients for every primitive and layer kind (MSE)",
    "Pearlmutter 1994 (forward-over-reverse through each backward rule)",
)
def _hvp_ops() -> tuple[float, float]:
    params, closure = _ops_closure(27)
    model, zoo = _zoo(28)
    return max(_hvp_fd_error(params, closure, 29), _hvp_fd_error(model.parameters(), zoo, 30)), 1e-6


@check(
    "hvp-batched",
    "Batched HVP (k directions in one sweep) = the k single HVPs stacked",
    "forward mode with a batched tangent (tinycurv.dual)",
)
def _hvp_batched() -> tuple[float, float]:
    problems = [_ops_closure(31)] + [(m.parameters(), c) for m, c in (_cnn(32), _zoo(33))]
    errors = []
    for params, closure in problems:
        vs = [_host_random(params, 34 + i) for i in range(3)]
        single = np.stack([_flat(hvp(closure, params, [asarray(x) for x in v])) for v in vs])
        stacked = [asarray(np.stack([v[j] for v in vs])) for j in range(len(params))]
        batched = [asnumpy(h) for h in hvp(closure, params, stacked, batched=True)]
        errors.append(_rel(np.stack([_flat(h[i] for h in batched) for i in range(3)]), single))
    return max(errors), 1e-12


# --------------------------------------------------------------------------------------------
# layers and losses: values against naive loops and formulas (PyTorch semantics)
# --------------------------------------------------------------------------------------------
def _window(x: np.ndarray, n: int, c: int, i: int, j: int, k, stride, padding, fill: float):
    """The kh·kw entries of window (i, j) of x[n, c], ``fill`` where it overhangs the input."""
    H, W = x.shape[2:]
    out = []
    for p in range(k[0]):
        for q in range(k[1]):
            r, s = i * stride[0] + p - padding[0], j * stride[1] + q - padding[1]
            out.append(x[n, c, r, s] if 0 <= r < H and 0 <= s < W else fill)
    return np.array(out)


def _out_size(x: np.ndarray, k, stride, padding) -> tuple[int, int]:
    return tuple((x.shape[2 + a] + 2 * padding[a] - k[a]) // stride[a] + 1 for a in (0, 1))


def _pool_reference(x, k, stride, padding, reduce, fill) -> np.ndarray:
    N, C = x.shape[:2]
    oh, ow = _out_size(x, k, stride, padding)
    out = np.empty((N, C, oh, ow))
    for n, c, i, j in np.ndindex(N, C, oh, ow):
        out[n, c, i, j] = reduce(_window(x, n, c, i, j, k, stride, padding, fill))
    return out


@check(
    "layer-linear",
    "Linear(x) = x Wᵀ + b (and x Wᵀ without bias)",
    "PyTorch nn.Linear",
)
def _layer_linear() -> tuple[float, float]:
    rng = np.random.default_rng(41)
    x, errors = rng.standard_normal((4, 5)), []
    for bias in (True, False):
        layer = nn.Linear(5, 3, bias=bias, rng=rng)
        W = asnumpy(layer.weight.data)
        ref = x @ W.T + (asnumpy(layer.bias.data) if bias else 0.0)
        errors.append(_rel(layer(Tensor(asarray(x))).data, ref))
    return max(errors), 1e-14


@check(
    "layer-conv2d",
    "Conv2d (stride, zero padding, rectangular kernel) = naive loop over windows",
    "PyTorch nn.Conv2d (cross-correlation, NCHW, weight (out, in, kh, kw))",
)
def _layer_conv2d() -> tuple[float, float]:
    rng = np.random.default_rng(42)
    x, errors = rng.standard_normal((2, 2, 5, 6)), []
    for k, stride, padding in (((3, 2), (2, 1), (1, 2)), ((2, 2), (1, 1), (0, 0))):
        layer = nn.Conv2d(2, 3, k, stride=stride, padding=padding, rng=rng)
        W, b = asnumpy(layer.weight.data), asnumpy(layer.bias.data)
        oh, ow = _out_size(x, k, stride, padding)
        ref = np.empty((2, 3, oh, ow))
        for n, o, i, j in np.ndindex(2, 3, oh, ow):
            ref[n, o, i, j] = b[o] + sum(
                W[o, c].ravel() @ _window(x, n, c, i, j, k, stride, padding, 0.0) for c in (0, 1)
            )
        errors.append(_rel(layer(Tensor(asarray(x))).data, ref))
    return max(errors), 1e-14


@check(
    "layer-maxpool",
    "MaxPool2d = naive loop, padding acting as −∞ (all-negative input)",
    "PyTorch nn.MaxPool2d (implicit −∞ padding)",
)
def _layer_maxpool() -> tuple[float, float]:
    rng = np.random.default_rng(43)
    x, errors = -0.1 - np.abs(rng.standard_normal((2, 2, 5, 6))), []
    for k, stride, padding in ((3, 2, 1), ((2, 3), (1, 2), (1, 1))):
        layer = nn.MaxPool2d(k, stride=stride, padding=padding)
        k, stride, padding = layer.kernel_size, layer.stride, layer.padding
        ref = _pool_reference(x, k, stride, padding, np.max, -np.inf)
        errors.append(_rel(layer(Tensor(asarray(x))).data, ref))
    return max(errors), 0.0  # a max is exact


@check(
    "layer-avgpool",
    "AvgPool2d = naive loop, zero padding counted in the mean",
    "PyTorch nn.AvgPool2d (count_include_pad=True, its default)",
)
def _layer_avgpool() -> tuple[float, float]:
    rng = np.random.default_rng(44)
    x, errors = rng.standard_normal((2, 2, 5, 6)), []
    for k, stride, padding in ((3, 2, 1), ((2, 3), (1, 2), (1, 1))):
        layer = nn.AvgPool2d(k, stride=stride, padding=padding)
        k, stride, padding = layer.kernel_size, layer.stride, layer.padding
        ref = _pool_reference(x, k, stride, padding, np.mean, 0.0)
        errors.append(_rel(layer(Tensor(asarray(x))).data, ref))
    return max(errors), 1e-14


@check(
    "layer-activations",
    "Tanh, ReLU, Sigmoid, ELU(α), Flatten = their formulas",
    "PyTorch nn.Tanh, nn.ReLU, nn.Sigmoid, nn.ELU, nn.Flatten",
)
def _layer_activations() -> tuple[float, float]:
    x = np.random.default_rng(45).standard_normal((3, 2, 2, 2)) * 3
    refs = [
        (nn.Tanh(), np.tanh(x)),
        (nn.ReLU(), np.maximum(x, 0.0)),
        (nn.Sigmoid(), 1.0 / (1.0 + np.exp(-x))),
        (nn.ELU(0.7), np.where(x > 0, x, 0.7 * np.expm1(x))),
        (nn.Flatten(), x.reshape(3, 8)),
    ]
    return max(_rel(layer(Tensor(asarray(x))).data, ref) for layer, ref in refs), 1e-14


@check(
    "loss-values",
    "MSE = (1/b) Σ ½‖f − y‖²; CE = mean −log softmax(f)[y]; their per-sample Hessians "
    "(I; diag p − ppᵀ) and square roots (S Sᵀ = H)",
    "the losses' definitions (tinycurv.nn.losses; MSE with ½ and a sum over outputs)",
)
def _loss_values() -> tuple[float, float]:
    rng = np.random.default_rng(46)
    f, t, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    mse, ce = nn.MSELoss(), nn.CrossEntropyLoss()
    shift = f - f.max(axis=1, keepdims=True)
    log_p = shift - np.log(np.exp(shift).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    H = np.stack([np.diag(q) - np.outer(q, q) for q in p])
    S, F = ce.hessian_sqrt(asarray(f)), Tensor(asarray(f))
    errors = [
        _rel(mse(F, asarray(t)).data, 0.5 * np.sum((f - t) ** 2) / 5),
        _rel(ce(F, asarray(y)).data, -np.mean(log_p[np.arange(5), y])),
        _rel(mse.hessian(asarray(f)), np.broadcast_to(np.eye(4), (5, 4, 4))),
        _rel(mse.hessian_sqrt(asarray(f)), np.broadcast_to(np.eye(4), (5, 4, 4))),
        _rel(ce.hessian(asarray(f)), H),
        _rel(asnumpy(S) @ np.swapaxes(asnumpy(S), 1, 2), H),
    ]
    return max(errors), 1e-13


# --------------------------------------------------------------------------------------------
# optimiser rules: the trajectory of ``opt.step`` against a NumPy re-implementation
# --------------------------------------------------------------------------------------------
def _batches(seed: int, steps: int, shape: tuple[int, ...], classes: int | None = 3):
    """``steps`` random batches: labels in [0, classes), or (b, 3) targets for classes=None."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        x = asarray(rng.standard_normal(shape))
        y = (
            _labels(rng, shape[0], classes)
            if classes
            else asarray(rng.standard_normal((shape[0], 3)))
        )
        out.append((x, y))
    return out


def _trajectory_error(build, make_opt, reference, batches, after=None) -> float:
    """max over steps of ‖θ_opt − θ_ref‖ / ‖θ_ref − θ₀‖ (relative to the distance travelled).

    ``build()`` returns a fresh (model, loss_fn), the same weights at every call; the optimiser
    ``make_opt(model, loss_fn)`` steps one copy and ``reference(twin, loss_fn, x, y, t, state)``
    returns the next parameters (host arrays) of the other; ``after(opt, t, state)``, if given,
    runs after step t on both (e.g. an end-of-epoch call).
    """
    (model, loss_fn), (twin, _) = build(), build()
    opt, state, theta0, worst = make_opt(model, loss_fn), {}, _flat(_host(twin.parameters())), 0.0
    for t, (x, y) in enumerate(batches):
        opt.step(x, y)
        new = reference(twin, loss_fn, x, y, t, state)
        for p, v in zip(twin.parameters(), new, strict=True):
            p.data = asarray(v)
        if after is not None:
            after(opt, t, state)
        ref = _flat(new)
        error = np.linalg.norm(_flat(_host(model.parameters())) - ref)
        worst = max(worst, error / np.linalg.norm(ref - theta0))
    return worst


def _mlp_model(seed: int, loss_fn=None):
    """A builder of the 4–5–3 tanh network (the same weights at every call) and its loss."""

    def build():
        rng = np.random.default_rng(seed)
        layers = (nn.Linear(4, 5, rng=rng), nn.Tanh(), nn.Linear(5, 3, rng=rng))
        return nn.Sequential(*layers), loss_fn or nn.CrossEntropyLoss()

    return build


def _gradient(model, loss_fn, x, y) -> list[np.ndarray]:
    return [np.array(asnumpy(g)) for g in grad(lambda: loss_fn(model(x), y), model.parameters())]


def _sgd_update(theta, d, t, state, lr, momentum, weight_decay, nesterov):
    """PyTorch's SGD (dampening 0): d + wd θ; b = d at t = 0, then μb + d; u = d + μb or b."""
    d = [di + weight_decay * p for di, p in zip(d, theta, strict=True)]
    if momentum:
        b = d if t == 0 else [momentum * bi + di for bi, di in zip(state["b"], d, strict=True)]
        state["b"] = b
        d = [di + momentum * bi for di, bi in zip(d, b, strict=True)] if nesterov else b
    return [p - lr * di for p, di in zip(theta, d, strict=True)]


def _adam_update(theta, d, t, state, lr, betas, eps, weight_decay):
    """PyTorch's Adam: moments m, v of d + wd θ; θ ← θ − lr m̂ / (√v̂ + ε), hats bias-corrected."""
    (b1, b2), n = betas, t + 1
    d = [di + weight_decay * p for di, p in zip(d, theta, strict=True)]
    m = [b1 * mi + (1 - b1) * di for mi, di in zip(state.get("m", [0.0] * len(d)), d, strict=True)]
    v = [
        b2 * vi + (1 - b2) * di**2 for vi, di in zip(state.get("v", [0.0] * len(d)), d, strict=True)
    ]
    state.update(m=m, v=v)
    return [
        p - lr * (mi / (1 - b1**n)) / (np.sqrt(vi / (1 - b2**n)) + eps)
        for p, mi, vi in zip(theta, m, v, strict=True)
    ]


def _gradient_rule(update, **hp):
    """The reference of a first-order optimiser: ``update`` applied to the batch gradient."""
    return lambda model, loss_fn, x, y, t, state: update(
        _host(model.parameters()), _gradient(model, loss_fn, x, y), t, state, **hp
    )


@check(
    "sgd-rule",
    "SGD trajectory = PyTorch's rule (momentum, Nesterov, L2 weight decay, no dampening)",
    "torch.optim.SGD documentation (Sutskever et al. 2013 form)",
)
def _sgd_rule() -> tuple[float, float]:
    errors = []
    for lr, mu, wd, nesterov in (
        (0.3, 0.9, 0.01, False),
        (0.2, 0.8, 0.1, True),
        (0.5, 0, 0.05, False),
    ):
        hp = dict(lr=lr, momentum=mu, weight_decay=wd, nesterov=nesterov)
        make = lambda model, loss_fn, hp=hp: optim.SGD(model, loss_fn, **hp)
        reference = _gradient_rule(_sgd_update, **hp)
        errors.append(_trajectory_error(_mlp_model(50), make, reference, _batches(51, 4, (6, 4))))
    return max(errors), 1e-12


@check(
    "adam-rule",
    "Adam trajectory = PyTorch's rule (bias-corrected moments, ε outside the root, L2 decay)",
    "Kingma & Ba 2015, Alg. 1; torch.optim.Adam documentation",
)
def _adam_rule() -> tuple[float, float]:
    errors = []
    for lr, betas, eps, wd in ((0.05, (0.8, 0.9), 1e-2, 0.05), (0.1, (0.9, 0.999), 1e-8, 0.0)):
        hp = dict(lr=lr, betas=betas, eps=eps, weight_decay=wd)
        make = lambda model, loss_fn, hp=hp: optim.Adam(model, loss_fn, **hp)
        reference = _gradient_rule(_adam_update, **hp)
        errors.append(_trajectory_error(_mlp_model(52), make, reference, _batches(53, 4, (6, 4))))
    return max(errors), 1e-12


@check(
    "ggn-linear",
    "GGN = Hessian for a linear model (cross-entropy)",
    "Schraudolph 2002 (H − GGN involves ∇²f = 0)",
)
def _ggn_linear() -> tuple[float, float]:
    rng = np.random.default_rng(5)
    model = nn.Sequential(nn.Linear(4, 3, rng=rng))
    x, y = asarray(rng.standard_normal((6, 4))), asarray(rng.integers(0, 3, size=6))
    loss_fn = nn.CrossEntropyLoss()
    H = hessian(lambda: loss_fn(model(x), y), model.parameters())
    return _rel(ggn(model, loss_fn, x), H), 1e-12


# --------------------------------------------------------------------------------------------
# K-FAC
# --------------------------------------------------------------------------------------------
@check(
    "kfac-linear-mse",
    "K-FAC G ⊗ A is exact for one Linear layer with MSE",
    "Martens & Grosse 2015 §3; exact as G = I for every sample",
)
def _kfac_linear() -> tuple[float, float]:
    rng = np.random.default_rng(6)
    layer = nn.Linear(5, 3, rng=rng)
    model = nn.Sequential(layer)
    x, y = asarray(rng.standard_normal((7, 5))), asarray(rng.standard_normal((7, 3)))
    ((A, G),) = kfac_factors(model, nn.MSELoss(), x, y, mode="exact")
    idx = asnumpy(layer_indices(model, layer))
    block = asnumpy(ggn(model, nn.MSELoss(), x))[np.ix_(idx, idx)]
    return _rel(np.kron(asnumpy(G), asnumpy(A)), block), 1e-12


@check(
    "kfac-conv-mse",
    "KFC G ⊗ A is exact for one Conv2d layer with MSE",
    "Grosse & Martens 2016 (KFC) §3; exact when no other layer mixes locations",
)
def _kfac_conv() -> tuple[float, float]:
    rng = np.random.default_rng(7)
    layer = nn.Conv2d(2, 3, 3, padding=1, rng=rng)
    model = nn.Sequential(layer, nn.Flatten())
    x, y = asarray(rng.standard_normal((3, 2, 4, 4))), asarray(rng.standard_normal((3, 48)))
    ((A, G),) = kfac_factors(model, nn.MSELoss(), x, y, mode="exact")
    idx = asnumpy(layer_indices(model, layer))
    block = asnumpy(ggn(model, nn.MSELoss(), x))[np.ix_(idx, idx)]
    return _rel(np.kron(asnumpy(G), asnumpy(A)), block), 1e-12


@check(
    "kfac-ce-exact",
    "K-FAC G ⊗ A (exact mode) = each layer's GGN block for one sample (cross-entropy)",
    "Martens & Grosse 2015 §3 (the block is Σ_c ḡ_cḡ_cᵀ ⊗ ããᵀ when b = 1)",
)
def _kfac_ce_exact() -> tuple[float, float]:
    model, _ = _mlp_model(8)()
    rng = np.random.default_rng(9)
    x, y = asarray(rng.standard_normal((1, 4))), _labels(rng, 1)
    G_full = asnumpy(ggn(model, nn.CrossEntropyLoss(), x))
    factors = kfac_factors(model, nn.CrossEntropyLoss(), x, y, mode="exact")
    errors = []
    for layer, (A, G) in zip((model[0], model[2]), factors, strict=True):
        idx = asnumpy(layer_indices(model, layer))
        errors.append(_rel(np.kron(asnumpy(G), asnumpy(A)), G_full[np.ix_(idx, idx)]))
    return max(errors), 1e-12


@check(
    "kfac-fisher",
    "Fisher = (1/b) Σ ∇ℓₙ∇ℓₙᵀ; K-FAC G ⊗ A (mc, empirical) = the Fisher block with the same "
    "labels when b = 1; empirical A and G",
    "Martens & Grosse 2015 §3, §5 (Fisher with sampled targets); Kunstner et al. 2019 (empirical)",
)
def _kfac_fisher() -> tuple[float, float]:
    model, loss_fn = _mlp_model(10)()
    rng = np.random.default_rng(11)
    x, y = asarray(rng.standard_normal((1, 4))), _labels(rng, 1)
    errors = []
    for kind, samples in (("mc", 3), ("empirical", 1)):  # b = 1: G ⊗ A is the Fisher block
        F = asnumpy(fisher(model, loss_fn, x, y, kind=kind, mc_samples=samples, rng=12))
        factors = kfac_factors(model, loss_fn, x, y, mode=kind, mc_samples=samples, rng=12)
        for layer, (A, G) in zip((model[0], model[2]), factors, strict=True):
            idx = asnumpy(layer_indices(model, layer))
            errors.append(_rel(np.kron(asnumpy(G), asnumpy(A)), F[np.ix_(idx, idx)]))
    # b = 4, one Linear layer: per-sample gradients r_n ⊗ ã_n, r_n = softmax(z_n) − e_{y_n}
    layer = nn.Linear(4, 3, rng=rng)
    model, x, y = nn.Sequential(layer), rng.standard_normal((4, 4)), rng.integers(0, 3, 4)
    z = x @ asnumpy(layer.weight.data).T + asnumpy(layer.bias.data)
    r = np.exp(z - z.max(axis=1, keepdims=True))
    r = r / r.sum(axis=1, keepdims=True) - np.eye(3)[y]
    a_t = np.concatenate([x, np.ones((4, 1))], axis=1)
    per_sample = np.stack([np.outer(rn, an).ravel() for rn, an in zip(r, a_t, strict=True)])
    idx = asnumpy(layer_indices(model, layer))
    F = asnumpy(fisher(model, loss_fn, asarray(x), asarray(y), kind="empirical"))
    errors.append(_rel(F[np.ix_(idx, idx)], per_sample.T @ per_sample / 4))
    ((A, G),) = kfac_factors(model, loss_fn, asarray(x), asarray(y), mode="empirical")
    errors += [_rel(A, a_t.T @ a_t / 4), _rel(G, r.T @ r / 4)]
    return max(errors), 1e-12


@check(
    "kfac-direction",
    "kfac_direction = dense solve on kron(G + γ_G I, A + γ_A I) (π-split damping); its rank-b "
    "form (∇ = gᵀã) = the full form",
    "Martens & Grosse 2015 §4.2 ((P ⊗ Q) vec X = vec(P X Qᵀ)), §6.3 (π-split damping)",
)
def _kfac_direction_check() -> tuple[float, float]:
    rng, errors = np.random.default_rng(13), []
    g, a = rng.standard_normal((3, 4)), rng.standard_normal((3, 5))
    a_t = np.concatenate([a, np.ones((3, 1))], axis=1)
    A, G = a_t.T @ a_t / 3 + 0.1 * np.eye(6), g.T @ g / 3 + 0.2 * np.eye(4)
    grad_ = g.T @ a_t
    for damping, pi in ((0.3, False), (0.05, True)):
        split = math.sqrt((np.trace(A) / 6) / (np.trace(G) / 4)) if pi else 1.0
        K = np.kron(
            G + math.sqrt(damping) / split * np.eye(4), A + split * math.sqrt(damping) * np.eye(6)
        )
        ref = np.linalg.solve(K, grad_.ravel()).reshape(4, 6)
        args = (asarray(A), asarray(G), damping, pi)
        errors.append(_rel(curvature.kfac_direction(asarray(grad_), *args), ref))
        for rows in (a_t, a):
            low_rank = curvature.kfac_direction(None, *args, g=asarray(g), a=asarray(rows))
            errors.append(_rel(low_rank, ref))
    return max(errors), 1e-12


def _kfac_reference(lr, damping, ema_decay, momentum, weight_decay, factor_every, inv_every, pi):
    """K-FAC (M&G 2015): EMA of A and G with ε_k = min(1 − 1/k, ema_decay) every factor_every
    steps; (G + γ_G I) ⊗ (A + γ_A I) refreshed every inv_every steps (π-split damping, §6.3);
    Δ by a dense solve on [∇W + wd W | ∇b + wd b]; v ← μv + Δ; θ ← θ − lr v."""

    def step(model, loss_fn, x, y, t, state):
        layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        if t % factor_every == 0:
            k = state["k"] = state.get("k", 0) + 1
            eps = min(1 - 1 / k, ema_decay)
            batch = [(asnumpy(A), asnumpy(G)) for A, G in kfac_factors(model, loss_fn, x, y)]
            old = state.get("factors", batch)
            state["factors"] = [
                (eps * A0 + (1 - eps) * A, eps * G0 + (1 - eps) * G)
                for (A0, G0), (A, G) in zip(old, batch, strict=True)
            ]
        if t % inv_every == 0:
            state["K"] = []
            for A, G in state["factors"]:
                split = math.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G))) if pi else 1.0
                gamma_A, gamma_G = split * math.sqrt(damping), math.sqrt(damping) / split
                state["K"].append(
                    np.kron(G + gamma_G * np.eye(len(G)), A + gamma_A * np.eye(len(A)))
                )
        params, theta = model.parameters(), _host(model.parameters())
        d = {
            id(p): g + weight_decay * th
            for p, g, th in zip(params, _gradient(model, loss_fn, x, y), theta, strict=True)
        }
        for layer, K in zip(layers, state["K"], strict=True):
            W, b = layer.weight, layer.bias
            m = W.shape[0]
            full = d[id(W)].reshape(m, -1)
            if b is not None:
                full = np.concatenate([full, d[id(b)][:, None]], axis=1)
            delta = np.linalg.solve(K, full.ravel()).reshape(full.shape)
            d[id(W)] = delta[:, : full.shape[1] - (b is not None)].reshape(W.shape)
            if b is not None:
                d[id(b)] = delta[:, -1]
        delta = [d[id(p)] for p in params]
        if momentum:
            v = state.get("v")
            delta = state["v"] = (
                delta
                if v is None
                else [momentum * vi + di for vi, di in zip(v, delta, strict=True)]
            )
        return [th - lr * di for th, di in zip(theta, delta, strict=True)]

    return step


def _kfac_cnn():
    rng = np.random.default_rng(54)
    conv = nn.Conv2d(1, 2, 2, stride=2, rng=rng)
    return nn.Sequential(
        conv, nn.Tanh(), nn.Flatten(), nn.Linear(8, 3, rng=rng)
    ), nn.CrossEntropyLoss()


def _kfac_mlp():
    rng = np.random.default_rng(55)
    layers = (nn.Linear(4, 5, rng=rng), nn.Tanh(), nn.Linear(5, 3, bias=False, rng=rng))
    return nn.Sequential(*layers), nn.MSELoss()


@check(
    "kfac-rule",
    "K-FAC trajectory = EMA factors (A and G), damped Kronecker solve, momentum v ← μv + Δ, "
    "factors/inverses refreshed every factor_every/inv_every steps",
    "Martens & Grosse 2015 §4.2, §5, §6.3, §7; Grosse & Martens 2016 (Conv2d)",
)
def _kfac_rule() -> tuple[float, float]:
    configs = (  # (build, batch shape, targets, hyperparameters)
        (
            _kfac_cnn,
            (2, 1, 4, 4),
            3,
            dict(
                lr=0.3,
                damping=0.1,
                ema_decay=0.7,
                momentum=0.5,
                weight_decay=0.0,
                factor_every=2,
                inv_every=2,
            ),
        ),
        (
            _kfac_mlp,
            (6, 4),
            None,
            dict(
                lr=0.2,
                damping=0.05,
                ema_decay=0.7,
                momentum=0.9,
                weight_decay=0.01,
                factor_every=1,
                inv_every=2,
                pi_correction=True,
                solver="eigen",
            ),
        ),
    )
    errors = []
    for i, (build, shape, targets, hp) in enumerate(configs):
        make = lambda m, f, hp=hp: optim.KFAC(m, f, mode="exact", **hp)
        pi = hp.get("pi_correction", False)
        reference = _kfac_reference(
            *(
                hp[k]
                for k in (
                    "lr",
                    "damping",
                    "ema_decay",
                    "momentum",
                    "weight_decay",
                    "factor_every",
                    "inv_every",
                )
            ),
            pi,
        )
        errors.append(
            _trajectory_error(build, make, reference, _batches(56 + i, 5, shape, targets))
        )
    return max(errors), 1e-10


# --------------------------------------------------------------------------------------------
# ISAAC (Petersen et al., ICLR 2023)
# --------------------------------------------------------------------------------------------
@check(
    "isaac-thm1-eq20",
    "ISAAC Thm 1: eq. 17 (Kronecker) = eq. 20 (Woodbury)",
    "Petersen et al. 2023, Thm 1, eqs. 17 and 20",
)
def _isaac_eq20() -> tuple[float, float]:
    errors = []
    for b, r, lam in ((3, 1, 0.1), (3, 7, 1.0), (9, 1, 10.0), (9, 7, 0.3)):
        g, a, g_bar = _isaac_problem(b, seed=b + r, r=r)
        errors.append(_rel(zeta(g, a, g_bar, lam, lam), zeta_kron(g, a, g_bar, lam, lam)))
    return max(errors), 1e-12


def _full_rank_factors(seed: int):
    g, a, g_bar = _isaac_problem(12, seed=seed, r=2)  # b ≥ n and r·b ≥ m: A, G invertible
    G, A = (asnumpy(g_bar.T @ g_bar) / 12, asnumpy(a.T @ a) / 12)
    return g, a, g_bar, G, A


@check(
    "isaac-thm1-i",
    "ISAAC Thm 1(i): ζ/(λ_gλ_a) → G⁻¹ gᵀa A⁻¹ as λ → 0",
    "Petersen et al. 2023, Thm 1(i) (K-FAC / Gauss–Newton limit)",
)
def _isaac_thm1_i() -> tuple[float, float]:
    g, a, g_bar, G, A = _full_rank_factors(7)
    grad = asnumpy(g.T @ a)
    kfac = np.linalg.solve(G, np.linalg.solve(A, grad.T).T)
    lam = 1e-6
    bound = lam * (np.linalg.norm(np.linalg.inv(G), 2) + np.linalg.norm(np.linalg.inv(A), 2))
    return _rel(asnumpy(zeta(g, a, g_bar, lam, lam)) / lam**2, kfac), 1.1 * bound + 1e-9


@check(
    "isaac-thm1-ii",
    "ISAAC Thm 1(ii): ζ → gᵀa (the gradient) as λ → ∞",
    "Petersen et al. 2023, Thm 1(ii)",
)
def _isaac_thm1_ii() -> tuple[float, float]:
    g, a, g_bar, G, A = _full_rank_factors(8)
    lam = 1e8
    bound = (np.linalg.norm(G, 2) + np.linalg.norm(A, 2)) / lam  # ‖λ(M + λI)⁻¹ − I‖ ≤ ‖M‖/λ
    return _rel(zeta(g, a, g_bar, lam, lam), g.T @ a), 1.01 * bound + 1e-14


@check(
    "isaac-thm2",
    "ISAAC Thm 2: ⟨ζ, ∇L⟩ > 0 for all dampings (a descent direction for −ζ)",
    "Petersen et al. 2023, Thm 2",
)
def _isaac_thm2() -> tuple[float, float]:
    rng, worst = np.random.default_rng(9), 0.0
    for i in range(40):
        g, a, g_bar = _isaac_problem(
            int(rng.integers(1, 12)), seed=100 + i, r=int(rng.choice([1, 7]))
        )
        lam_g, lam_a = 10.0 ** rng.uniform(-4, 4, size=2)
        z, grad = asnumpy(zeta(g, a, g_bar, lam_g, lam_a)), asnumpy(g.T @ a)
        cosine = float(np.sum(z * grad)) / (np.linalg.norm(z) * np.linalg.norm(grad))
        worst = max(worst, -cosine)
    return max(worst, 0.0), 0.0  # error: how far the worst cosine is below 0


@check(
    "isaac-thm3",
    "ISAAC Thm 3: ζ → ζ* (eq. 21, inputs only) as λ_g → ∞",
    "Petersen et al. 2023, Thm 3, eq. 21",
)
def _isaac_thm3() -> tuple[float, float]:
    g, a, g_bar, G, _ = _full_rank_factors(10)
    lam_g = 1e8
    bound = np.linalg.norm(G, 2) / lam_g  # ζ = λ_g (G + λ_g I)⁻¹ ζ*
    return _rel(zeta(g, a, g_bar, lam_g, 0.5), zeta_star(g, a, 0.5)), 1.01 * bound + 1e-13


@check(
    "isaac-thm4",
    "ISAAC Thm 4: ζ*/λ_a = (GGN + λ_a I)⁻¹ ∇L for linear regression (MSE)",
    "Petersen et al. 2023, Thm 4 (damped Gauss–Newton)",
)
def _isaac_thm4() -> tuple[float, float]:
    rng, b, lam_a = np.random.default_rng(11), 4, 0.3
    model = nn.Sequential(nn.Linear(6, 3, bias=False, rng=rng))
    a, y = rng.standard_normal((b, 6)), rng.standard_normal((b, 3))
    g = (a @ asnumpy(model[0].weight.data).T - y) / b  # ∇_z of (1/b) Σ ½‖z − y‖²
    GGN = asnumpy(ggn(model, nn.MSELoss(), asarray(a)))
    step = np.linalg.solve(GGN + lam_a * np.eye(GGN.shape[0]), (g.T @ a).ravel())
    return _rel(asnumpy(zeta_star(asarray(g), asarray(a), lam_a)).ravel() / lam_a, step), 1e-12


@check(
    "isaac-remark2",
    "ISAAC Remark 2, corrected: ζ* = (I + ḡᵀḡ/(bλ_g)) ζ (the printed ζ* = Mζ is off by 40–100%)",
    "Petersen et al. 2023, Remark 2 (the printed relation lacks the identity term)",
)
def _isaac_remark2() -> tuple[float, float]:
    errors = []
    for k, lam_g in enumerate((1e-6, 1e-3, 1.0, 1e3)):
        g, a, g_bar = _isaac_problem(4, seed=30 + k)  # b = 4 < m = 7: ḡᵀḡ is singular
        gb = asnumpy(g_bar)
        M = gb.T @ gb / (4 * lam_g)
        z = asnumpy(zeta(g, a, g_bar, lam_g, 0.5))
        errors.append(_rel(z + M @ z, zeta_star(g, a, 0.5)))
    return max(errors), 1e-8


@check(
    "isaac-conv-eq20",
    "ISAAC eq. 20 (Woodbury) = eq. 17 (Kronecker) on a Conv2d layer (several rows per sample)",
    "Petersen et al. 2023, eqs. 17, 20, 21; rows = samples × locations (KFC)",
)
def _isaac_conv_eq20() -> tuple[float, float]:
    rng = np.random.default_rng(60)
    conv = nn.Conv2d(2, 4, 3, padding=1, rng=rng)
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(36, 3, rng=rng))
    x, y = asarray(rng.standard_normal((2, 2, 3, 3))), _labels(rng, 2)
    stats = sampled_output_gradients(model, nn.CrossEntropyLoss(), x, y, mode="exact")
    a, g, g_bar = (s[0] for s in stats)  # the conv layer's: a (18, 18), g (18, 4), g_bar (54, 4)
    errors = []
    for lam_g, lam_a in ((0.1, 0.5), (3.0, 0.02)):
        errors.append(_rel(zeta(g, a, g_bar, lam_g, lam_a), zeta_kron(g, a, g_bar, lam_g, lam_a)))
        errors.append(_rel(zeta_star(g, a, lam_a), zeta_kron(g, a, None, math.inf, lam_a)))
    return max(errors), 1e-12


def _isaac_reference(lam_a, lam_g, conditioned, update, **hp):
    """ISAAC: per conditioned layer ζ* = λ_a ∇W (A + λ_a I)⁻¹ (eq. 21, A = aᵀa/rows from the
    recorded inputs) or ζ = λ_g (G + λ_g I)⁻¹ ζ* (eq. 17, G the exact K-FAC factor); every
    other parameter keeps its gradient; then the base rule (SGD or Adam)."""

    def step(model, loss_fn, x, y, t, state):
        params = model.parameters()
        d = {id(p): g for p, g in zip(params, _gradient(model, loss_fn, x, y), strict=True)}
        layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        with nn.record(model) as rec:
            model(x)
        finite = math.isfinite(lam_g)
        factors = kfac_factors(model, loss_fn, x, y, mode="exact") if finite else None
        for i in conditioned:
            W, a = layers[i].weight, asnumpy(rec[layers[i]].a)
            A, grad_W = a.T @ a / len(a), d[id(W)].reshape(W.shape[0], -1)
            z = lam_a * np.linalg.solve(A + lam_a * np.eye(len(A)), grad_W.T).T  # A symmetric
            if finite:
                G = asnumpy(factors[i][1])
                z = lam_g * np.linalg.solve(G + lam_g * np.eye(len(G)), z)
            d[id(W)] = z.reshape(W.shape)
        return update(_host(params), [d[id(p)] for p in params], t, state, **hp)

    return step


def _isaac_cnn():
    rng = np.random.default_rng(61)
    conv = nn.Conv2d(2, 3, 3, padding=1, rng=rng)
    return nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(3 * 16, 3, rng=rng)), (
        nn.CrossEntropyLoss()
    )


@check(
    "isaac-rule",
    "ISAAC trajectory = ζ* (eq. 21) or ζ (eq. 17) per conditioned layer (a CNN: rows = b·L), "
    "then PyTorch's SGD / Adam",
    "Petersen et al. 2023, eqs. 17, 18, 21 and its reference code (bias: plain gradient)",
)
def _isaac_rule() -> tuple[float, float]:
    sgd = dict(lr=0.3, momentum=0.5, weight_decay=0.01, nesterov=True)
    adam = dict(lr=0.05, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.01)
    configs = (  # ISAAC's keywords, the reference's (layers conditioned, base update)
        (dict(lam_a=0.5, **sgd), (0.5, math.inf, [0, 1], _sgd_update), sgd),
        (
            dict(lam_a=2.0, lam_g=0.3, layers=[0], base="adam", g_bar_mode="exact", **adam),
            (2.0, 0.3, [0], _adam_update),
            adam,
        ),
    )
    errors = []
    for i, (kwargs, (lam_a, lam_g, layers, update), hp) in enumerate(configs):
        make = lambda model, loss_fn, kw=kwargs: optim.ISAAC(model, loss_fn, **kw)
        reference = _isaac_reference(lam_a, lam_g, layers, update, **hp)
        batches = _batches(62 + i, 4, (2, 2, 4, 4))  # rows = 2 samples × 16 locations
        errors.append(_trajectory_error(_isaac_cnn, make, reference, batches))
    return max(errors), 1e-10


# --------------------------------------------------------------------------------------------
# GroupedNewton (Wolinski 2023, arXiv 2312.03885)
# --------------------------------------------------------------------------------------------
def _lse_problem(p: int = 5, k: int = 4, seed: int = 12):
    """L(θ) = log Σₖ exp(cₖᵀθ) + 0.05‖θ‖², θ as p scalar tensors; analytic g and H."""
    rng = np.random.default_rng(seed)
    C, theta = rng.standard_normal((k, p)), rng.standard_normal(p)
    params = [Tensor(asarray(theta[i : i + 1]), requires_grad=True) for i in range(p)]

    def closure() -> Tensor:
        z = sum(params[i] * Tensor(asarray(C[:, i])) for i in range(p))
        return z.logsumexp(axis=0) + 0.05 * sum((q * q).sum() for q in params)

    z = C @ theta
    prob = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    g = C.T @ prob + 0.1 * theta
    H = C.T @ (np.diag(prob) - np.outer(prob, prob)) @ C + 0.1 * np.eye(p)
    return params, closure, g, H


def _grouped_step(closure, params, direction, groups, lam_int):
    """The GroupedNewton update Σ_s η_s u_s (flattened) for one summary."""
    g_bar, H_bar, D = grouped_summary(closure, params, direction, groups)
    eta = grouped_newton_step(g_bar, H_bar, D, lam_int)
    owner = {i: s for s, grp in enumerate(check_groups(groups, len(params))) for i in grp}
    return _flat([eta[owner[i]] * asnumpy(u) for i, u in enumerate(direction)])


@check(
    "gn-newton",
    "GroupedNewton, one group per scalar (λ_int = 0) = Newton's step H⁻¹g",
    "Wolinski 2023, App. C (finest partition)",
)
def _gn_newton() -> tuple[float, float]:
    params, closure, g, H = _lse_problem()
    u = [asarray(g[i : i + 1]) for i in range(len(params))]
    return _rel(_grouped_step(closure, params, u, None, 0.0), np.linalg.solve(H, g)), 1e-10


@check(
    "gn-cauchy",
    "GroupedNewton, one group, u = g (λ_int = 0) = Cauchy step (gᵀg/gᵀHg)·g",
    "Wolinski 2023, App. C (coarsest partition)",
)
def _gn_cauchy() -> tuple[float, float]:
    params, closure, g, H = _lse_problem(seed=13)
    u = [asarray(g[i : i + 1]) for i in range(len(params))]
    step = _grouped_step(closure, params, u, [list(range(len(params)))], 0.0)
    return _rel(step, (g @ g) / (g @ H @ g) * g), 1e-10


@check(
    "gn-invariance",
    "GroupedNewton update unchanged by rescaling each group's direction",
    "Wolinski 2023, App. E (invariance)",
)
def _gn_invariance() -> tuple[float, float]:
    model, closure = _mlp(seed=14)
    params = model.parameters()
    u = grad(closure, params)
    c = np.random.default_rng(15).choice([-1.0, 1.0], len(u)) * 10.0 ** np.linspace(-1, 1, len(u))
    scaled = [ci * ui for ci, ui in zip(c, u, strict=True)]
    return _rel(
        _grouped_step(closure, params, scaled, None, 1.0),
        _grouped_step(closure, params, u, None, 1.0),
    ), 1e-8


@check(
    "gn-fixed-point",
    "Cubic step: η = (H̄ + (λ/2) r diag(d)²)⁻¹ ḡ, r = ‖dη‖, matrix ⪰ 0",
    "Wolinski 2023, App. D (cubic model minimiser)",
)
def _gn_fixed_point() -> tuple[float, float]:
    model, closure = _mlp(seed=16)
    params, lam = model.parameters(), 2.0
    g_bar, H_bar, D = (asnumpy(t) for t in grouped_summary(closure, params, grad(closure, params)))
    eta = grouped_newton_step(g_bar, H_bar, D, lam)
    d = np.cbrt(np.abs(D))
    M = H_bar + 0.5 * lam * np.linalg.norm(d * eta) * np.diag(d**2)
    size = np.linalg.norm(M, 2)
    scale = size * np.linalg.norm(eta) + np.linalg.norm(g_bar)
    residual = np.linalg.norm(M @ eta - g_bar) / scale
    return max(residual, -np.linalg.eigvalsh(M)[0] / size), 1e-9


def _third_derivatives(closure, params, parts: list[list[np.ndarray]]) -> np.ndarray:
    """D_s = d³/dt³ L(θ + t·u_s) by central differences of u_sᵀ H(θ ± εu_s) u_s."""
    out = []
    for u in parts:
        eps = 1e-4 / np.linalg.norm(_flat(u))
        curv = lambda u=u: float(_flat(u) @ _flat(hvp(closure, params, [asarray(x) for x in u])))
        up, down = (_at(params, _shifted(params, u, s * eps), curv) for s in (1.0, -1.0))
        out.append((up - down) / (2 * eps))
    return np.array(out)


def _dense_summary(closure, params, u, groups):
    """ḡ = Uᵀg, H̄ = UᵀHU (dense Hessian), D by differences; U has the group parts of u."""
    parts = [[ui if i in grp else 0 * ui for i, ui in enumerate(u)] for grp in groups]
    U = np.stack([_flat(p) for p in parts], axis=1)
    g, H = _flat(grad(closure, params)), asnumpy(hessian(closure, params))
    return U.T @ g, U.T @ H @ U, _third_derivatives(closure, params, parts)


@check(
    "gn-summary",
    "GroupedNewton summary: ḡ = Uᵀg, H̄ = UᵀHU (dense H), D_s = d³L(θ + t u_s)/dt³",
    "Wolinski 2023, §3 (the summary of the loss along the groups' directions)",
)
def _gn_summary() -> tuple[float, float]:
    model, closure = _mlp(seed=70)
    params = model.parameters()
    u = _host_random(params, 71)
    groups = [[0, 2], [1], [3]]
    summary = grouped_summary(closure, params, [asarray(x) for x in u], groups)
    ref = _dense_summary(closure, params, u, groups)
    errors = [_rel(s, r) for s, r in zip(summary, ref, strict=True)]
    return max(errors), 1e-6  # D by differences: O(ε²)


def _gn_reference(lr, lam_int, momentum, dampening, lr_momentum, update_every):
    """GroupedNewton (Alg. 1): u ← μu + (1 − dampening)g; every T steps η* from the dense
    summary, η smoothed, rates = lr·max(η, 0); θ_s ← θ_s − rate_s u_s (canonical groups)."""

    def step(model, loss_fn, x, y, t, state):
        params, closure = model.parameters(), lambda: loss_fn(model(x), y)
        g = _gradient(model, loss_fn, x, y)
        u = (
            g
            if t == 0
            else [
                momentum * ui + (1 - dampening) * gi for ui, gi in zip(state["u"], g, strict=True)
            ]
        )
        state["u"] = u
        if t % update_every == 0:
            groups = [[i] for i in range(len(params))]
            eta_star = grouped_newton_step(*_dense_summary(closure, params, u, groups), lam_int)
            eta = state.get("eta")
            state["eta"] = (
                eta_star if eta is None else lr_momentum * eta + (1 - lr_momentum) * eta_star
            )
            state["rates"] = state.get("lr", lr) * np.maximum(state["eta"], 0.0)
        return [p - r * ui for p, r, ui in zip(_host(params), state["rates"], u, strict=True)]

    return step


@check(
    "gn-rule",
    "GroupedNewton trajectory = Alg. 1: momentum direction, cubic step on the dense summary "
    "every T steps, smoothed rates, max(·, 0), plateau halving",
    "Wolinski 2023, Alg. 1, App. D, F; reference code p-wol/GroupedNewton",
)
def _gn_rule() -> tuple[float, float]:
    hp = dict(lr=0.5, lam_int=1.0, momentum=0.9, dampening=0.7, lr_momentum=0.3, update_every=2)
    make = lambda model, loss_fn: optim.GroupedNewton(model, loss_fn, **hp)
    reference = _gn_reference(**hp)

    def plateau(opt, t, state):  # after step 2: a second epoch without improvement halves
        if t == 2:  # lr and the current rates (patience 0), used by step 3
            opt.end_epoch(1.0)
            opt.end_epoch(1.0)
            state["lr"], state["rates"] = 0.5 * hp["lr"], 0.5 * state["rates"]

    batches = _batches(73, 5, (6, 4))
    return _trajectory_error(_mlp_model(72), make, reference, batches, after=plateau), 1e-6


# --------------------------------------------------------------------------------------------
# series saddle-free Newton (Oldewage et al., TMLR 2024)
# --------------------------------------------------------------------------------------------
@check(
    "sfn-series",
    "SFN series (HVPs only) → (|H| + λI)⁻¹ v (eigendecomposition)",
    "Oldewage et al. 2024 (series in Y = I − H²/V)",
)
def _sfn_series() -> tuple[float, float]:
    rng, p = np.random.default_rng(17), 8
    Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    spectrum = np.array([-2.0, -1.2, -0.5, 0.5, 0.8, 1.1, 1.6, 2.0])  # indefinite, |λ| ∈ [½, 2]
    M = (Q * spectrum) @ Q.T
    theta = Tensor(asarray(rng.standard_normal(p)), requires_grad=True)
    closure = lambda: 0.5 * (theta * (Tensor(asarray(M)) @ theta)).sum()
    v = rng.standard_normal(p)
    V, lam = (0.25 + 4.0) / 2, 0.1  # the optimal scale for |λ| ∈ [½, 2]: ρ = 15/17
    series = saddle_free_direction(closure, [theta], [asarray(v)], order=300, scale=V, damping=lam)
    return _rel(series[0], abs_hessian_inverse(asarray(M), asarray(v), lam)), 1e-10


@check(
    "sfn-coefficients",
    "SFN coefficients: recurrence = closed form = Taylor coefficients",
    "Oldewage et al. 2024 (damped-series recurrence)",
)
def _sfn_coefficients() -> tuple[float, float]:
    errors, y = [], 0.3
    for d in (0.0, 0.3, 0.9, 1.0, 1.5, 3.0):
        rec, closed = series_coefficients(60, d), series_coefficients_closed_form(60, d)
        errors.append(_rel(rec, closed))
        total = sum(c * y**n for n, c in enumerate(rec))  # tail ≤ y⁶⁰: negligible
        errors.append(abs(total - 1 / (d + math.sqrt(1 - y))) * (d + math.sqrt(1 - y)))
    return max(errors), 1e-13


@check(
    "sfn-step-rules",
    "SFN steps: subspace (α, μ) = argmin −bᵀc + ½cᵀ(|A|_G + λG)c, and its value; model change "
    "M(δ) − M(0); λ ← ωλ if ρ > ¾, λ/ω if ρ < ¼, floored",
    "Oldewage et al. 2024; Martens & Grosse 2015 §6.5 (Levenberg–Marquardt)",
)
def _sfn_step_rules() -> tuple[float, float]:
    rng, errors = np.random.default_rng(90), []
    Q = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    H = (Q * np.array([2.0, -1.5, 0.7, -0.3, 1.1])) @ Q.T  # indefinite
    for k in (1, 2, 2):
        D, g, lam = rng.standard_normal((5, k)), rng.standard_normal(5), 0.2
        A, G, b = D.T @ H @ D, D.T @ D, D.T @ g
        L = np.linalg.cholesky(G)
        w, V = np.linalg.eigh(np.linalg.solve(L, np.linalg.solve(L, A).T))  # L⁻¹AL⁻ᵀ
        C = L @ ((V * (np.abs(w) + lam)) @ V.T) @ L.T  # |A|_G + λG
        c = np.linalg.solve(C, b)
        got, change = subspace_minimiser(A.tolist(), G.tolist(), b.tolist(), lam)
        errors += [_rel(got, c), abs(change - (0.5 * c @ C @ c - b @ c)) / abs(b @ c)]
    alpha, mu, uCu, uCd, dCd, g_u, g_d = rng.standard_normal(7)
    quadratic = np.array([alpha, mu]) @ np.array([[uCu, uCd], [uCd, dCd]]) @ np.array([alpha, mu])
    M = 0.5 * quadratic - alpha * g_u - mu * g_d
    errors.append(abs(model_change(alpha, mu, uCu, uCd, dCd, g_u, g_d) - M) / abs(M))
    lm = [
        levenberg_marquardt(lam, rho, 0.9, 0.3)
        for lam, rho in ((0.5, 0.9), (0.5, 0.5), (0.5, 0.2), (0.5, math.nan), (0.31, 0.9))
    ]
    errors.append(_rel(lm, [0.45, 0.5, 0.5 / 0.9, 0.5, 0.3]))
    return max(errors), 1e-12


def _dense_series(H, g, order, V, lam, acceleration):
    """V^(−1/2) Σₙ<N cₙ Yⁿ g with Y = I − H²/V (closed-form cₙ), or Wynn's ε₂ of the last three
    partial sums (acceleration 1): S₁ + ((S₂ − S₁)⁻¹ − (S₁ − S₀)⁻¹)⁻¹, v⁻¹ = v/vᵀv."""
    c = series_coefficients_closed_form(order, lam / math.sqrt(V))
    v, sums = g, [c[0] * g]
    for n in range(1, order):
        v = v - H @ (H @ v) / V
        sums.append(sums[-1] + c[n] * v)
    limit = sums[-1]
    if acceleration:
        inv = lambda w: w / (w @ w)
        S0, S1, S2 = sums[-3:]
        limit = S1 + inv(inv(S2 - S1) - inv(S1 - S0))
    return limit / math.sqrt(V)


def _subspace_step(H, g, u, prev, lam):
    """α, μ minimising −gᵀδ + ½δᵀ(|H|_span + λI)δ over δ = αu + μδ_prev (|·| of H restricted
    to the span, in an orthonormal basis), and the model's change at the minimiser."""
    D = u[:, None] if prev is None else np.stack([u, prev], axis=1)
    L_inv = np.linalg.inv(np.linalg.cholesky(D.T @ D))
    w, Q = np.linalg.eigh(L_inv @ D.T @ H @ D @ L_inv.T)
    beta = L_inv @ (D.T @ g)
    z = Q @ ((Q.T @ beta) / (np.abs(w) + lam))
    c = L_inv.T @ z
    return c[0], (c[1] if prev is not None else 0.0), -0.5 * beta @ z


def _unflat(vector: np.ndarray, like: list[np.ndarray]) -> list[np.ndarray]:
    ends = np.cumsum([x.size for x in like])
    return [vector[e - x.size : e].reshape(x.shape) for e, x in zip(ends, like, strict=True)]


def _series_direction(order, acceleration, scale, initial_scale=100.0):
    """u of SeriesSFN: V fixed, or the running max of ‖H²g‖/‖g‖ from ``initial_scale``."""

    def direction(H, g, lam, state):
        V = scale or max(
            state.get("V", initial_scale), np.linalg.norm(H @ H @ g) / np.linalg.norm(g)
        )
        state["V"] = V
        return _dense_series(H, g, order, V, lam, acceleration)

    return direction


def _exact_direction(H, g, lam, state):
    """u of ExactSFN: Q (|Λ| + λI)⁻¹ Qᵀ g from the eigendecomposition H = QΛQᵀ."""
    w, Q = np.linalg.eigh(H)
    return Q @ ((Q.T @ g) / (np.abs(w) + lam))


def _sfn_reference(direction, adaptive, damping, lr, momentum, damping_decay):
    """Saddle-free Newton's step rules, θ ← θ − δ, δ = αu + μδ_prev: fixed (α = lr, μ = momentum,
    λ fixed); "subspace" (α, μ by the saddle-free model on span{u, δ_prev}, λ by the reduction
    ratio ρ, uphill steps undone); "reference" (the 2×2 solve with C = |H| + λI, i.e. uᵀCu = gᵀu,
    uᵀCδ_prev = gᵀδ_prev, δ_prevᵀCδ_prev ≈ α_prev δ_prevᵀb with b ← μb + αg; uphill kept)."""

    def step(model, loss_fn, x, y, t, state):
        params, closure = model.parameters(), lambda: loss_fn(model(x), y)
        theta = _host(params)
        g, H = _flat(_gradient(model, loss_fn, x, y)), asnumpy(hessian(closure, params))
        lam, prev = state.get("damping", damping), state.get("delta")
        u = direction(H, g, lam, state)
        if adaptive == "subspace":
            alpha, mu, change = _subspace_step(H, g, u, prev, lam)
        elif adaptive == "reference":
            g_d = 0.0 if prev is None else g @ prev
            d_b = 0.0 if prev is None else prev @ state["b"]
            C = np.array([[g @ u, g_d], [g_d, state.get("alpha", 0.0) * d_b or 1.0]])
            alpha, mu = np.linalg.solve(C, [g @ u, g_d])
            state["b"] = alpha * g if prev is None else mu * state["b"] + alpha * g
            d_C_d = alpha * (mu * d_b + alpha * g_d)  # with the new b and α, as the reference
            quadratic = alpha**2 * (g @ u) + 2 * alpha * mu * g_d + mu**2 * d_C_d
            change = 0.5 * quadratic - alpha * (g @ u) - mu * g_d
        else:
            alpha, mu = lr, momentum
        delta = alpha * u + (0.0 if prev is None else mu * prev)
        new = _unflat(_flat(theta) - delta, theta)
        if adaptive:
            loss = lambda: float(asnumpy(closure().data))
            before, after = loss(), _at(params, new, loss)
            rho = (after - before) / change
            if adaptive == "subspace" and after > before:  # undone: θ, δ_prev kept; λ ← λ/ω
                state["damping"] = lam / damping_decay
                return theta
            lam = lam * damping_decay if rho > 0.75 else lam / damping_decay if rho < 0.25 else lam
        state.update(damping=lam, delta=delta, alpha=alpha)
        return new

    return step


@check(
    "sfn-rule",
    "SeriesSFN / ExactSFN trajectory = dense u (series: cₙ, Wynn ε, V fixed or running max; "
    "exact: eigh), δ = αu + μδ_prev: fixed, 'subspace' (λ by ρ, uphill undone), 'reference'",
    "Oldewage et al. 2024 and its reference code; Dauphin et al. 2014; Martens & Grosse 2015 §6–7",
)
def _sfn_rule() -> tuple[float, float]:
    rule = dict(lr=0.7, momentum=0.5, damping_decay=0.9)
    series = dict(order=12, scale=5.0)  # V = 5 ≥ λ_max²/2 along these runs
    u = lambda k, scale=5.0, initial=100.0: _series_direction(12, k, scale, initial)
    fixed, subspace, reference = (dict(adaptive=r) for r in (False, "subspace", "reference"))
    configs = (  # (optimiser, its keywords, the reference's u, steps)
        (optim.SeriesSFN, dict(acceleration=0, damping=0.2, **fixed), u(0), 4),
        # "subspace": steps with ρ > ¾, ¼ < ρ < ¾, two undone, then ρ < ¼ (λ/ω used by step 7)
        (optim.SeriesSFN, dict(acceleration=1, damping=0.05, **subspace), u(1), 7),
        (optim.SeriesSFN, dict(acceleration=1, damping=0.05, **reference), u(1), 3),
        # V = running max of ‖H²g‖/‖g‖: 0.4, then it grows at every step (≥ λ_max²/2 always)
        (
            optim.SeriesSFN,
            dict(scale=None, initial_scale=0.4, acceleration=0, damping=0.2, **fixed),
            u(0, None, 0.4),
            4,
        ),
        (optim.ExactSFN, dict(damping=0.05, **subspace), _exact_direction, 7),
    )
    errors = []
    for cls, hp, direction, steps in configs:
        kwargs = {**rule, **(series if cls is optim.SeriesSFN else {}), **hp}
        make = lambda model, loss_fn, cls=cls, kw=kwargs: cls(model, loss_fn, **kw)
        reference = _sfn_reference(direction, hp["adaptive"], hp["damping"], **rule)
        batches = _batches(82, steps, (6, 4))
        errors.append(_trajectory_error(_mlp_model(80), make, reference, batches))
    return max(errors), 1e-9


@check(
    "kfac-qmodel-damping",
    "K-FAC step_rule='qmodel' + adapt_damping: δ = αΔ + μδ₀ with (α, μ) the 2×2 solve of the dense "
    "GGN model (F + λI); ρ = (h(θ+δ) − h(θ)) / M(δ); λ ← ωλ if ρ > ¾, λ/ω if ρ < ¼",
    "Martens & Grosse 2015 §6.5, §7",
)
def _kfac_qmodel_damping() -> tuple[float, float]:
    errors, moves = [], set()
    for rule, lr in (("qmodel", None), ("fixed", 3.0)):  # ρ > ¾ (λ falls); fixed: also ρ < ¼
        model, loss_fn = _mlp_model(95)()
        params, omega, lam, prev = model.parameters(), 19 / 20, 0.05, None
        step = {"step_rule": rule} if lr is None else {"lr": lr, "momentum": 0.0}
        opt = optim.KFAC(model, loss_fn, damping=lam, mode="exact", adapt_damping=True,
                         adapt_every=1, **step)  # fmt: skip
        for x, y in _batches(96, 4, (12, 4)):
            g = _gradient(model, loss_fn, x, y)
            F = np.asarray(asnumpy(ggn(model, loss_fn, x, y))) + lam * np.eye(len(_flat(g)))
            theta, h0 = _flat(_host(params)), float(opt.step(x, y))
            update, h1 = _flat(_host(params)) - theta, float(asnumpy(loss_fn(model(x), y).data))
            Delta = []  # −(G + √λ I)⁻¹ [∇W | ∇b] (A + √λ I)⁻¹ per layer (eq. 3, π = 1), by hand
            for j, A in enumerate(opt.state["A"]):
                A, G = np.asarray(asnumpy(A)), np.asarray(asnumpy(opt.state["G"][j]))
                grad_Wb = np.concatenate([g[2 * j], g[2 * j + 1][:, None]], axis=1)
                D = -np.linalg.solve(G + math.sqrt(lam) * np.eye(len(G)), grad_Wb)
                D = np.linalg.solve(A + math.sqrt(lam) * np.eye(len(A)), D.T).T
                Delta += [D[:, :-1].ravel(), D[:, -1]]
            U = np.stack([np.concatenate(Delta)] + ([] if prev is None else [prev]), axis=1)
            if lr is None:  # (α, μ) minimise M(αΔ + μδ₀): the 2×2 (first step 1×1) solve
                delta = U @ -np.linalg.solve(U.T @ F @ U, U.T @ _flat(g))
            else:
                delta = lr * U[:, 0]
            rho = (h1 - h0) / (0.5 * delta @ F @ delta + _flat(g) @ delta)
            lam = lam * omega if rho > 0.75 else lam / omega if rho < 0.25 else lam
            moves.add("down" if rho > 0.75 else "up" if rho < 0.25 else "kept")
            got = float(asnumpy(opt.state["damping"])[0])
            errors += [_rel(update, delta), abs(got - lam) / lam]
            prev = update
    errors.append(0.0 if {"down", "up"} <= moves else 1.0)  # both branches of the rule ran
    return max(errors), 1e-8


# --------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------
def _perturbations(perturb: Mapping[str, float] | None) -> dict[str, float]:
    """``perturb`` merged with ``$TINYCURV_VERIFY_BREAK`` (``name[=amount]``, comma-separated)."""
    out = dict(perturb or {})
    for item in filter(None, (s.strip() for s in os.environ.get(BREAK_ENV, "").split(","))):
        name, _, amount = item.partition("=")
        out[name.strip()] = float(amount) if amount else 1.0
    unknown = sorted(set(out) - set(CHECKS))
    if unknown:
        raise ValueError(f"cannot perturb unknown check(s) {unknown}: choose from {list(CHECKS)}")
    return out


def run(
    checks: Iterable[str] | None = None, perturb: Mapping[str, float] | None = None
) -> list[Outcome]:
    """Run checks (default: all, in registry order) in float64 and return their outcomes.

    Parameters
    ----------
    checks : list of str, optional
        Names from ``CHECKS``.
    perturb : dict, optional
        ``{name: amount}`` added to the measured error of those checks (a test hook); merged
        with the environment variable ``TINYCURV_VERIFY_BREAK``.

    Returns
    -------
    list of Outcome
        An exception inside a check is reported as a failure with its message.
    """
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}: choose from {list(CHECKS)}")
    extra = _perturbations(perturb)
    saved_dtype, outcomes = get_default_dtype(), []
    set_default_dtype("float64")
    try:
        for name in names:
            c = CHECKS[name]
            try:
                error, tol = c.fn()
                outcomes.append(Outcome(c, float(error) + extra.get(name, 0.0), float(tol)))
            except Exception as err:  # a crash is a failure of the claim, reported in the table
                outcomes.append(Outcome(c, math.nan, math.nan, f"{type(err).__name__}: {err}"))
    finally:
        set_default_dtype(saved_dtype)
    return outcomes


def format_table(outcomes: Iterable[Outcome], markdown: bool = False) -> str:
    """Claim, source, error, tolerance and PASS/FAIL per check (messages of crashes below)."""
    outcomes = list(outcomes)
    headers = ["check", "claim", "source", "error", "tolerance", "result"]
    rows = [
        [
            o.check.name,
            o.check.claim,
            o.check.source,
            f"{o.error:.2e}",
            f"{o.tolerance:.1e}",
            "PASS" if o.passed else "FAIL",
        ]
        for o in outcomes
    ]
    if markdown:  # a "|" inside a cell (|H|) is escaped
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        cells = lambda r: " | ".join(c.replace("|", "\\|") for c in r)
        return "\n".join(lines + ["| " + cells(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
    lines = [line(headers), line(["-" * w for w in widths]), *map(line, rows)]
    return "\n".join(lines + [f"{o.check.name}: {o.message}" for o in outcomes if o.message])
