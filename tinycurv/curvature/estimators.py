"""Stochastic estimators of curvature: trace, diagonal and spectral density; the exact GGN diagonal.

For a symmetric C (p, p) (Hessian, GGN or any matvec, see ``matrix_free.curvature_operator``)
and Rademacher probes v (entries ±1, E[v vᵀ] = I):

* Hutchinson (1989): ``tr C = E[vᵀ C v]`` and ``diag C = E[v ∘ C v]`` (Bekas, Kokiopoulou &
  Saad 2007); S probes give the sample mean and its standard error ``s/√S``;
* exact GGN diagonal (BackPACK's DiagGGN, Dangel, Kunstner & Hennig 2020): with ``Sₙ Sₙᵀ = Hₙ``
  (``loss_fn.hessian_sqrt``, (b, m, m)), ``diag G = (1/b)·Σₙ Σ_c (Jₙᵀ Sₙ[:, c])²``; one backward
  sweep per output c gives every layer's per-sample gradients of ``Sₙ[:, c]ᵀ fₙ``;
* stochastic Lanczos quadrature (Golub & Meurant; Ghorbani, Krishnan & Xiao 2019, as in
  PyHessian): for a unit probe u, m Lanczos steps give ``T = S Θ Sᵀ`` and
  ``uᵀ g(C) u ≈ Σⱼ S₁ⱼ² g(θⱼ)``, exact for polynomials g of degree ≤ 2m − 1. Averaging over
  probes gives the spectral density ``φ(t) = (1/p)·Σᵢ δ(t − λᵢ)`` as nodes θ and weights τ.

Vectors are lists of backend arrays shaped like the parameters. Derivations, the variance of
each estimator and the host transfers: ``docs/diagnostics.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from tinycurv import dual as D
from tinycurv.backend import asnumpy, xp
from tinycurv.curvature.dense import output_gradients
from tinycurv.curvature.matrix_free import _generator, _read, curvature_operator, lanczos
from tinycurv.nn.record import record
from tinycurv.tensor import Tensor, set_grad_enabled

__all__ = [
    "Estimate",
    "SpectralDensity",
    "fisher_output_matrix",
    "ggn_diagonal",
    "hutchinson_diagonal",
    "hutchinson_trace",
    "plot_spectral_density",
    "smoothed_density",
    "spectral_density",
]

CHUNK = 16  # probes per batched product


class Estimate(NamedTuple):
    """A Monte-Carlo estimate and its standard error (floats, or lists of arrays)."""

    value: Any
    stderr: Any


def _rademacher(rng: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    return xp.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dtype)


def _probes(params: Sequence[Tensor], k: int, rng: Any) -> list[Any]:
    return [_rademacher(rng, (k,) + tuple(p.shape), p.dtype) for p in params]


def _chunks(samples: int, chunk: int):
    for start in range(0, samples, chunk):
        yield min(chunk, samples - start)


def _check_samples(what: str, samples: int) -> int:
    if int(samples) != samples or samples < 1:
        raise ValueError(f"{what}: samples must be an integer ≥ 1, got {samples!r}")
    return int(samples)


def hutchinson_trace(
    closure: Callable[[], Tensor] | None,
    params: Sequence[Tensor],
    samples: int,
    rng: Any = None,
    curvature: Any = "hessian",
    *,
    model: Any = None,
    loss_fn: Any = None,
    x: Any = None,
    chunk: int = CHUNK,
) -> Estimate:
    """``tr C ≈ (1/S)·Σₛ vₛᵀ C vₛ`` over S Rademacher probes, with its standard error.

    Parameters
    ----------
    closure, params, curvature, model, loss_fn, x :
        As for ``matrix_free.curvature_operator`` (``"hessian"``, ``"ggn"`` or a matvec).
    samples : int
        S probes (the standard error needs S ≥ 2; it is NaN for S = 1).
    rng : generator or seed, optional
    chunk : int
        Probes per batched product.

    Returns
    -------
    Estimate(value, stderr) of floats (one host transfer, at the end).
    """
    S = _check_samples("hutchinson_trace", samples)
    op = curvature_operator(closure, params, curvature, model, loss_fn, x)
    rng = _generator(rng)
    quads = []
    for k in _chunks(S, chunk):
        V = _probes(params, k, rng)
        CV = op(V, batched=True)
        pairs = zip(V, CV, strict=True)
        quads.append(sum(xp.sum(xp.reshape(v * c, (k, -1)), axis=1) for v, c in pairs))
    q = xp.concatenate(quads)  # vₛᵀ C vₛ, (S,)
    mean = xp.mean(q)
    var = xp.sum((q - mean) ** 2) / (S - 1) if S > 1 else xp.asarray(math.nan, dtype=q.dtype)
    value, variance = _read([mean, var])
    return Estimate(value, math.sqrt(variance / S) if S > 1 else math.nan)


def hutchinson_diagonal(
    closure: Callable[[], Tensor] | None,
    params: Sequence[Tensor],
    samples: int,
    rng: Any = None,
    curvature: Any = "hessian",
    *,
    model: Any = None,
    loss_fn: Any = None,
    x: Any = None,
    chunk: int = CHUNK,
) -> Estimate:
    """``diag C ≈ (1/S)·Σₛ vₛ ∘ C vₛ`` over S Rademacher probes, entry by entry.

    Parameters as for ``hutchinson_trace``.

    Returns
    -------
    Estimate(value, stderr) of lists of arrays shaped like ``params`` (no host transfer);
    stderr is NaN everywhere for S = 1.
    """
    S = _check_samples("hutchinson_diagonal", samples)
    op = curvature_operator(closure, params, curvature, model, loss_fn, x)
    rng = _generator(rng)
    total = [xp.zeros(p.shape, dtype=p.dtype) for p in params]
    squares = [xp.zeros(p.shape, dtype=p.dtype) for p in params]
    for k in _chunks(S, chunk):
        V = _probes(params, k, rng)
        CV = op(V, batched=True)
        for i, (v, c) in enumerate(zip(V, CV, strict=True)):
            d = v * c  # (k,) + shape: one sample of the diagonal per probe
            total[i] = total[i] + xp.sum(d, axis=0)
            squares[i] = squares[i] + xp.sum(d * d, axis=0)
    mean = [t / S for t in total]
    if S == 1:
        return Estimate(mean, [xp.full(m.shape, math.nan, dtype=m.dtype) for m in mean])
    var = [xp.maximum(q - S * m * m, 0.0) / (S - 1) for q, m in zip(squares, mean, strict=True)]
    return Estimate(mean, [xp.sqrt(v / S) for v in var])


# ----------------------------------------------------------------------------- exact GGN diagonal


def ggn_diagonal(model: Any, loss_fn: Any, x: Any, y: Any = None) -> list[Any]:
    """The exact diagonal of the GGN ``(1/b)·Σₙ Jₙᵀ Hₙ Jₙ``, shaped like ``model.parameters()``.

    One taped forward pass recording every ``Linear``/``Conv2d`` layer's input a (``nn.record``),
    then one backward sweep per output c from the cotangent ``Sₙ[:, c]`` (b, m), which records
    the layer's output gradients g. The per-sample gradient of ``Sₙ[:, c]ᵀfₙ`` w.r.t. W is
    ``Σₜ gₙₜ aₙₜᵀ`` (t: output locations of a convolution; one for ``Linear``) and w.r.t. the bias
    ``Σₜ gₙₜ``; their squares summed over n and c, over b, are the diagonal. For ``Linear`` the
    square of the outer product is ``(g∘g)ᵀ(a∘a)`` (no per-sample tensor is formed).

    Parameters
    ----------
    model : Module
        Outputs (b, m); every parameter must belong to a ``Linear`` or ``Conv2d`` layer.
    loss_fn : MSELoss or CrossEntropyLoss
        Gives ``hessian_sqrt``.
    x : array
        The inputs (b, …).
    y : unused
        For a uniform signature (the loss Hessians do not depend on the targets).
    """
    params = model.parameters()
    saved = [p.grad for p in params]
    try:
        with record(model) as records, set_grad_enabled(True):
            outputs = model(x)
            f = D.primal(outputs.data)
            if f.ndim != 2:
                raise ValueError(f"ggn_diagonal: outputs must be (batch, m), got {f.shape}")
            b, m = f.shape
            S = loss_fn.hessian_sqrt(f)  # (b, m, m)
            diag = {id(p): xp.zeros(p.shape, dtype=p.dtype) for p in params}
            for c in range(m):  # one backward sweep per output
                outputs.backward(grad=S[:, :, c], inputs=[])
                for layer, rec in records.items():
                    _accumulate(diag, layer, rec.a, rec.g, b)
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g
    owners = {id(q) for layer in records for q in (layer.weight, getattr(layer, "bias", None))}
    missing = [i for i, p in enumerate(params) if id(p) not in owners]
    if missing:
        raise ValueError(
            f"ggn_diagonal: parameters {missing} belong to no Linear/Conv2d layer (not supported)"
        )
    return [diag[id(p)] / b for p in params]


def _accumulate(diag: dict[int, Any], layer: Any, a: Any, g: Any, b: int) -> None:
    """Add the squared per-sample gradients of one sweep to the layer's diagonal entries."""
    W = layer.weight
    L = a.shape[0] // b  # output locations (1 for Linear)
    if L == 1:
        dW = (g * g).T @ (a * a)  # Σₙ (gₙ aₙᵀ)², (out, in)
        db = xp.sum(g * g, axis=0)
    else:
        gn, an = xp.reshape(g, (b, L, -1)), xp.reshape(a, (b, L, -1))
        per_sample = xp.einsum("nto,nti->noi", gn, an)  # Σₜ gₙₜ aₙₜᵀ, (b, out, in·kh·kw)
        dW = xp.sum(per_sample * per_sample, axis=0)
        db = xp.sum(xp.sum(gn, axis=1) ** 2, axis=0)
    diag[id(W)] = diag[id(W)] + xp.reshape(dW, W.shape)
    bias = getattr(layer, "bias", None)
    if bias is not None:
        diag[id(bias)] = diag[id(bias)] + db


def fisher_output_matrix(
    loss_fn: Any, f: Any, y: Any = None, kind: str = "mc", mc_samples: int = 1, rng: Any = None
) -> Any:
    """The Fisher's output-space matrices Mₙ (b, m, m), so that ``F = (1/b)·Σₙ Jₙᵀ Mₙ Jₙ``.

    ``"exact"``: the loss Hessian (for these losses, the Fisher of the predictive distribution
    in the outputs: ``diag(p) − ppᵀ`` for softmax, I for MSE). ``"mc"``:
    ``(1/S)·Σₛ rₙₛ rₙₛᵀ`` with ``rₙₛ = ∇_f ℓₙ(fₙ, ŷₙₛ)``, ŷ drawn by ``loss_fn.sample_targets``
    (unbiased for the exact one). ``"empirical"``: ``rₙ rₙᵀ`` with the true targets y.
    """
    if kind == "exact":
        return loss_fn.hessian(f)
    if kind == "empirical":
        R = output_gradients(loss_fn, f, y)[:, :, None]  # (b, m, 1)
        return R @ xp.swapaxes(R, 1, 2)
    if kind != "mc":
        raise ValueError(f"kind must be 'exact', 'mc' or 'empirical', got {kind!r}")
    rng = _generator(rng)
    R = xp.stack(
        [output_gradients(loss_fn, f, loss_fn.sample_targets(f, rng)) for _ in range(mc_samples)],
        axis=2,
    )  # (b, m, S)
    return R @ xp.swapaxes(R, 1, 2) / mc_samples


# ----------------------------------------------------------------------------- spectral density


class SpectralDensity(NamedTuple):
    """Stochastic Lanczos quadrature: ``nodes`` θ and ``weights`` τ, both (probes, m).

    Each row is one probe's Gauss quadrature; the weights sum to 1 over the whole array
    (1/probes per row), so ``Σ τ g(θ)`` estimates ``(1/p)·tr g(C)``.
    """

    nodes: Any
    weights: Any

    def moment(self, k: int) -> Estimate:
        """``tr(Cᵏ)/p`` estimated by ``Σ τ θᵏ``, with the standard error over probes (floats)."""
        per_probe = xp.sum(self.weights * self.nodes**k, axis=1) * self.weights.shape[0]
        n = per_probe.shape[0]
        mean = xp.mean(per_probe)
        var = xp.sum((per_probe - mean) ** 2) / (n - 1) if n > 1 else mean * math.nan
        value, variance = _read([mean, var])
        return Estimate(value, math.sqrt(variance / n) if n > 1 else math.nan)


def spectral_density(
    closure: Callable[[], Tensor] | None,
    params: Sequence[Tensor],
    steps: int,
    probes: int,
    rng: Any = None,
    curvature: Any = "hessian",
    *,
    model: Any = None,
    loss_fn: Any = None,
    x: Any = None,
) -> SpectralDensity:
    """The spectral density of C by stochastic Lanczos quadrature (Ghorbani et al. 2019, Alg. 1).

    For each of ``probes`` Rademacher probes u (normalised, ‖u‖ = 1): m = ``steps`` Lanczos
    steps from u (``matrix_free.lanczos``), ``T = S Θ Sᵀ``, nodes θⱼ and weights ``S₁ⱼ²``.
    In exact arithmetic ``Σⱼ S₁ⱼ² θⱼᵏ = uᵀCᵏu`` for k ≤ 2m − 1, whose expectation over the
    probes is exactly ``tr(Cᵏ)/p``.

    Parameters
    ----------
    closure, params, curvature, model, loss_fn, x :
        As for ``matrix_free.curvature_operator``.
    steps : int
        m, Lanczos steps (products) per probe (at most p).
    probes : int
        Number of probes.
    rng : generator or seed, optional

    Returns
    -------
    SpectralDensity
        Host transfers: those of ``lanczos`` (one per step).
    """
    probes = _check_samples("spectral_density", probes)
    op = curvature_operator(closure, params, curvature, model, loss_fn, x)
    rng = _generator(rng)
    p = sum(int(q.size) for q in params)
    dtype = params[0].dtype
    nodes, weights = [], []
    for _ in range(probes):
        u = _rademacher(rng, (p,), dtype) / math.sqrt(p)
        theta, S = lanczos(lambda vs: op(vs), params, steps, rng, v0=u).ritz()
        nodes.append(theta)
        weights.append(S[0] ** 2)
    return SpectralDensity(xp.stack(nodes), xp.stack(weights) / probes)


def smoothed_density(
    density: SpectralDensity, grid: Any = None, sigma: float | None = None, points: int = 1000
) -> tuple[Any, Any]:
    """The density convolved with a Gaussian of width σ: ``Σ τⱼ N(t; θⱼ, σ²)`` on a grid.

    ``grid`` defaults to ``points`` values spanning the nodes (with a margin of 5σ); ``sigma``
    to 1% of that span. Returns (grid, values), backend arrays; the values integrate to ≈ 1.
    """
    theta, tau = xp.reshape(density.nodes, (-1,)), xp.reshape(density.weights, (-1,))
    if grid is None or sigma is None:
        lo, hi = _read([xp.min(theta), xp.max(theta)])
        span = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
        sigma = 0.01 * span if sigma is None else float(sigma)
        if grid is None:
            grid = xp.linspace(lo - 5 * sigma, hi + 5 * sigma, points, dtype=theta.dtype)
    grid = xp.asarray(grid, dtype=theta.dtype)
    z = (grid[:, None] - theta[None, :]) / sigma
    values = (xp.exp(-0.5 * z * z) @ tau) / (sigma * math.sqrt(2 * math.pi))
    return grid, values


def plot_spectral_density(
    density: SpectralDensity, ax: Any = None, sigma: float | None = None, log: bool = True, **kw
) -> Any:
    """Plot ``smoothed_density`` with matplotlib (log scale by default, as PyHessian); the axes."""
    import matplotlib.pyplot as plt

    grid, values = smoothed_density(density, sigma=sigma)
    ax = plt.gca() if ax is None else ax
    t, v = asnumpy(grid), asnumpy(values)
    ax.plot(t, v + 1e-12 if log else v, **kw)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    return ax
