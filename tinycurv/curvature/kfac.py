"""K-FAC's Kronecker factors: per-layer ``A`` (inputs) and ``G`` (back-propagated output noise).

Martens & Grosse 2015 ("Optimizing Neural Networks with Kronecker-factored Approximate
Curvature", ICML) approximate the GGN/Fisher block of one layer ``z = W ã`` (weight with the
bias as its last column, ``[W | b]`` of shape (m, n+1), input ``ã = [a, 1]``) by

    F_ℓ ≈ G ⊗ A,   A = E[ã ãᵀ],   G = E[ḡ ḡᵀ]                               (M&G 2015 §3)

where ḡ is the gradient of the per-sample loss with respect to the pre-activation z, with the
targets drawn from the model (Fisher), or one back-propagated column of the loss Hessian's
square root ``Sₙ`` (Sₙ Sₙᵀ = Hₙ; then Σ_c ḡ_c ḡ_cᵀ gives the GGN exactly for one sample), or
with the true targets (empirical Fisher). ``G ⊗ A`` acts on the row-major flattening of
``[W | b]``, because ``vec_row(ḡ ãᵀ) = ḡ ⊗ ã`` is the per-sample gradient.

Conventions (all factors average over the b samples of the batch)
-----------------------------------------------------------------
``a``      (rows, n)      the layer's recorded input (``nn.record``); rows = b for ``Linear``;
``g``      (rows, m)      gradient of the *batch* loss w.r.t. the layer output, so ∇W = gᵀa;
``g_bar``  (r·rows, m)    per-sample back-propagated square-root columns (exact, r = m outputs
                          of the model), S sampled-label gradients over √S (mc, r = S), or
                          true-label per-sample gradients (empirical, r = 1);
``A = ãᵀã / rows``        ``ã = [a, 1]`` when the layer has a bias (the bias column LAST);
``G = g_barᵀ g_bar / rows``.

Convolutions (Grosse & Martens 2016, "A Kronecker-factored approximate Fisher matrix for
convolution layers", KFC): a ``Conv2d`` is a ``Linear`` applied to every unfolded patch, so
``a`` has rows = b·L (sample × output location, L = oh·ow) and the gradient is the sum over
locations ∇W = Σ_{n,t} g_{n,t} ã_{n,t}ᵀ. Under KFC's assumptions (independent activations and
derivatives, spatial homogeneity, spatially uncorrelated derivatives) the block is
``Ω ⊗ Γ`` with one factor summing and one averaging over locations (KFC's assumptions IAD, SH
and SUD; called KFAC-expand by Eschenhagen et al. 2023).
**Scaling chosen here:** ``A`` is the MEAN over samples and locations,
``A = (1/(bL))·Σ_{n,t} ã ãᵀ``, and ``G`` the SUM over locations (mean over samples),
``G = (1/b)·Σₙ Σ_t Σ_c ḡ ḡᵀ``. So A of a convolution is on the same scale as A of a linear
layer, and ``g_bar`` rows are ``√L·ḡ``, which keeps ``A = ãᵀã/rows`` and ``G = g_barᵀ g_bar /
rows`` for both layer kinds. The product ``G ⊗ A`` equals KFC's ``Ω ⊗ Γ``; for a single conv
layer under MSE it is exactly the GGN (for any L), and with one output location (L = 1)
everything reduces to the ``Linear`` case.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tinycurv import dual as D
from tinycurv.backend import default_rng, xp
from tinycurv.nn.record import record
from tinycurv.tensor import Tensor

__all__ = [
    "MODES",
    "LayerStatistics",
    "curvature_layers",
    "homogeneous",
    "kfac_factors",
    "layer_indices",
    "layer_statistics",
    "sampled_output_gradients",
]

MODES = ("exact", "mc", "empirical")


def curvature_layers(model: Any) -> list[Any]:
    """The ``Linear`` and ``Conv2d`` layers of ``model``, in the order of ``model.modules()``."""
    return [m for m in model.modules() if getattr(m, "records_curvature", False)]


def homogeneous(a: Any, layer: Any) -> Any:
    """``ã = [a, 1]``: the recorded input with a column of ones appended if the layer has a bias."""
    if getattr(layer, "bias", None) is None:
        return a
    return xp.concatenate([a, xp.ones((a.shape[0], 1), dtype=a.dtype)], axis=1)


def layer_indices(model: Any, layer: Any) -> Any:
    """Positions of the layer's ``[W | b]`` (row-major) in ``flatten(model.parameters())``.

    So ``M[xp.ix_(i, i)]`` with ``i = layer_indices(model, layer)`` is the layer's diagonal block
    of a dense (p, p) matrix ``M`` (``tinycurv.curvature.dense``) in the ordering of
    ``kron(G, A)``.
    """
    offsets, start = {}, 0
    for p in model.parameters():
        offsets[id(p)] = start
        start += p.size
    m = layer.weight.shape[0]
    n = layer.weight.size // m
    W = offsets[id(layer.weight)] + xp.arange(m * n).reshape(m, n)
    if getattr(layer, "bias", None) is not None:
        W = xp.concatenate([W, (offsets[id(layer.bias)] + xp.arange(m))[:, None]], axis=1)
    return W.reshape(-1)


# ----------------------------------------------------------------------------- statistics


@dataclass
class LayerStatistics:
    """What one forward and its backward sweeps give a curvature method.

    Attributes
    ----------
    loss : array
        The batch loss with the true targets (0-d).
    grads : list of arrays
        Its gradient for every parameter of ``model.parameters()`` (None for the weights in
        ``skip_weight_gradients``).
    layers : list
        The ``Linear``/``Conv2d`` layers (``curvature_layers``).
    a, g : lists of arrays
        Per layer: the input (rows, n) and the batch-loss output gradient (rows, m).
    g_bar : list of arrays, or None
        Per layer (r·rows, m), scaled so that ``g_barᵀ g_bar / rows`` is G; None when no
        curvature was asked for.
    samples : int
        b, the number of samples (rows = b·L for a convolution).
    """

    loss: Any
    grads: list[Any]
    layers: list[Any]
    a: list[Any] = field(default_factory=list)
    g: list[Any] = field(default_factory=list)
    g_bar: list[Any] | None = None
    samples: int = 0


def _rng(rng: Any) -> Any:
    return rng if hasattr(rng, "random") else default_rng(rng)


def layer_statistics(
    model: Any,
    loss_fn: Any,
    x: Any,
    y: Any,
    mode: str | None = "mc",
    mc_samples: int = 1,
    rng: Any = None,
    skip_weight_gradients: Sequence[Any] = (),
) -> LayerStatistics:
    """One forward pass, the true-label backward sweep, and the backward sweeps for ``g_bar``.

    The forward pass (recording every layer's ``a``) is shared by all sweeps:

    1. the batch loss with the true targets ``y`` is back-propagated: the parameters' gradients
       and each layer's ``g`` (its row n is ∇_z ℓₙ / b);
    2. for ``g_bar``, the model outputs f are back-propagated with cotangents (b, m) of
       *per-sample* losses (not divided by b):

       * ``"exact"``: the columns ``Sₙ[:, c]`` of ``loss_fn.hessian_sqrt`` (m sweeps), so that
         ``Σ_c ḡ_c ḡ_cᵀ`` summed over samples is the GGN's output factor (M&G 2015 §5);
       * ``"mc"``: ``∇_f ℓₙ(fₙ, ŷₙ)/√S`` for S = ``mc_samples`` targets ŷ drawn from the model's
         predictive distribution (``loss_fn.sample_targets``; S sweeps);
       * ``"empirical"``: no extra sweep: ḡ = b·g, the true-label per-sample gradients;
       * ``None``: no ``g_bar`` at all (plain gradient with ``a`` and ``g``).

    Parameters
    ----------
    model : Module
        Outputs (b, m); its ``Linear``/``Conv2d`` layers are recorded.
    loss_fn : MSELoss or CrossEntropyLoss
    x, y : arrays
        The batch.
    mode : {"exact", "mc", "empirical"} or None
    mc_samples : int
        S (``"mc"`` only).
    rng : generator or seed, optional
        Draws the targets of ``"mc"``.
    skip_weight_gradients : list of Tensor
        Weights whose gradient gᵀa is not needed (a caller that forms its direction from ``a``
        and ``g`` directly): they are marked as not requiring a gradient during the call, so no
        sweep forms their (m, n) gradient; their entry of ``grads`` is None. Only for layers
        with a bias (otherwise the first layer's output would not be on the tape).

    Returns
    -------
    LayerStatistics
        The parameters' ``.grad`` are left as they were before the call.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
    if mode == "mc" and int(mc_samples) < 1:
        raise ValueError(f"mc_samples must be ≥ 1, got {mc_samples}")
    params = model.parameters()
    saved = [(p.grad, p.requires_grad) for p in params]
    skipped = {id(w) for w in skip_weight_gradients}
    for p in params:
        p.grad = None
        p.requires_grad = id(p) not in skipped
    try:
        with record(model) as records:
            outputs = model(x)
            loss = loss_fn(outputs, y)
            loss.backward()  # 1. true targets: ∇θ L and every layer's g
            grads = [
                None if id(p) in skipped else xp.zeros_like(p.data) if p.grad is None else p.grad
                for p in params
            ]
            layers = list(records)
            a = [records[layer].a for layer in layers]
            g = [records[layer].g for layer in layers]
            f = D.primal(outputs.data)
            if f.ndim != 2:
                raise ValueError(f"the model's outputs must be (batch, m), got shape {f.shape}")
            b = f.shape[0]
            stats = LayerStatistics(D.primal(loss.data), grads, layers, a, g, None, b)
            if mode is None:
                return stats
            if mode == "empirical":
                cotangents = None
                sweeps = [[b * gl for gl in g]]  # ḡ = per-sample gradient = b·g
            else:
                cotangents = _cotangents(loss_fn, f, mode, int(mc_samples), rng)
                sweeps = []
                for cot in cotangents:  # 2. one backward sweep per cotangent (b, m)
                    for p in params:
                        p.grad = None
                    outputs.backward(grad=cot)
                    sweeps.append([records[layer].g for layer in layers])
    finally:
        for p, (grad, req) in zip(params, saved, strict=True):
            p.grad, p.requires_grad = grad, req
    stats.g_bar = []
    for i in range(len(layers)):
        locations = a[i].shape[0] // b  # L = 1 for Linear
        rows = [sweep[i] for sweep in sweeps]
        gb = rows[0] if len(rows) == 1 else xp.concatenate(rows, axis=0)
        stats.g_bar.append(gb * math.sqrt(locations) if locations != 1 else gb)
    return stats


def _cotangents(loss_fn: Any, f: Any, mode: str, mc_samples: int, rng: Any) -> list[Any]:
    """The per-sample output cotangents (b, m) whose back-propagations are the rows of ``g_bar``."""
    if mode == "exact":
        S = loss_fn.hessian_sqrt(f)  # (b, m, m), Sₙ Sₙᵀ = Hₙ
        return [S[:, :, c] for c in range(S.shape[2])]
    rng = _rng(rng)
    scale = 1.0 / math.sqrt(mc_samples)
    out = []
    for _ in range(mc_samples):
        leaf = Tensor(f, requires_grad=True)
        loss_fn(leaf, loss_fn.sample_targets(f, rng)).backward()  # ∇_f L = ∇_f ℓₙ / b
        out.append(leaf.grad * (f.shape[0] * scale))
    return out


def sampled_output_gradients(
    model: Any,
    loss_fn: Any,
    x: Any,
    y: Any,
    mode: str = "mc",
    mc_samples: int = 1,
    rng: Any = None,
) -> tuple[list[Any], list[Any], list[Any]]:
    """Per layer: inputs ``a``, batch-loss output gradients ``g`` and ``g_bar``; one forward pass.

    ``g_bar`` (r·rows, m) holds the per-sample back-propagated square roots of the loss Hessian
    (``"exact"``, r = m model outputs), the sampled-label gradients (``"mc"``, r = mc_samples,
    each over √r) or the true-label per-sample gradients (``"empirical"``, r = 1), scaled so
    that ``g_bar.T @ g_bar / rows`` is the factor G (rows = ``a.shape[0]``: the batch size b for
    ``Linear``, b·L for ``Conv2d``, whose rows are also multiplied by √L; see the module
    docstring). ``g`` is the gradient of the batch loss (∇W = gᵀa). The bias column is *not*
    appended to ``a`` (``homogeneous`` does that). See ``layer_statistics`` for the sweeps.

    Returns
    -------
    a, g, g_bar : lists of arrays, one per ``Linear``/``Conv2d`` layer (``curvature_layers``)
    """
    s = layer_statistics(model, loss_fn, x, y, mode, mc_samples, rng)
    return s.a, s.g, s.g_bar


def factors_from(a: Any, g_bar: Any, layer: Any, scale: float = 1.0) -> tuple[Any, Any]:
    """``(A, G) = (ãᵀã / rows, g_barᵀ g_bar / rows)`` for one layer (M&G 2015 §3 / KFC).

    Both are multiplied by ``scale`` (folded into the thin (rows, ·) operand, not the square
    result: the exponential moving average uses it for its weight 1 − ε).
    """
    c = scale / a.shape[0]
    a_t = homogeneous(a, layer)
    return (a_t.T * c) @ a_t, (g_bar.T * c) @ g_bar


def kfac_factors(
    model: Any,
    loss_fn: Any,
    x: Any,
    y: Any,
    mode: str = "exact",
    mc_samples: int = 1,
    rng: Any = None,
) -> list[tuple[Any, Any]]:
    """The Kronecker factors ``(A, G)`` of every ``Linear``/``Conv2d`` layer.

    ``kron(G, A)`` approximates the layer's diagonal block of the GGN (``"exact"``: via the
    loss Hessian's square root; ``"mc"``: the Fisher with sampled targets, which has the GGN as
    its expectation for these losses) or of the empirical Fisher (``"empirical"``), parameters
    ordered as the row-major flattening of ``[W | b]`` (``layer_indices``).

    Parameters
    ----------
    model : Module
    loss_fn : MSELoss or CrossEntropyLoss
    x, y : arrays
        The batch (b samples).
    mode : {"exact", "mc", "empirical"}
    mc_samples : int
        Sampled targets per sample (``"mc"``).
    rng : generator or seed, optional

    Returns
    -------
    list of (A, G)
        ``A = (1/b)·Σₙ ãₙãₙᵀ`` ((n+1)×(n+1) with a bias, the bias LAST) and
        ``G = (1/b)·Σₙ Σ_c ḡₙ,c ḡₙ,cᵀ`` (m×m), per layer in the order of ``model.modules()``.
        For ``Conv2d``, A averages and G sums over output locations (module docstring).

    Notes
    -----
    Exact cases: one ``Linear`` layer under MSE (any batch; A is the GGN's input factor and
    G = I), any network with b = 1 in ``"exact"`` mode (the layer's GGN block is
    ``Σ_c ḡ_cḡ_cᵀ ⊗ ããᵀ``), one ``Conv2d`` under MSE.
    """
    s = layer_statistics(model, loss_fn, x, y, mode, mc_samples, rng)
    return [factors_from(a, gb, layer) for a, gb, layer in zip(s.a, s.g_bar, s.layers, strict=True)]
