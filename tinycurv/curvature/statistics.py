"""Run the model once and record, per ``Linear``/``Conv2d`` layer, what curvature methods use.

One forward pass (``nn.record``) and its backward sweeps give, for a layer ``z = W a (+ b)``:

    a      (rows, n)     the layer's input; rows = b (Linear) or b·L (Conv2d, L output locations)
    g      (rows, m)     ∇_z of the batch loss, so ∇W = gᵀa and ∇b = Σ_rows g
    g_bar  (r·rows, m)   per-sample output gradients with G = g_barᵀ g_bar / rows   (M&G 2015 §5)

``g_bar`` by ``mode``: ``"exact"`` the columns of Sₙ, Sₙ Sₙᵀ = Hₙ (r = model outputs, GGN);
``"mc"`` S sampled-label gradients over √S (r = S, Fisher); ``"empirical"`` the true-label
per-sample gradients b·g (r = 1); a convolution's rows are multiplied by √L (docs/kfac.md §2).
``ã = [a, 1]`` (``homogeneous``) appends the bias column LAST.

K-FAC (``tinycurv.curvature.kfac``, ``optim.KFAC``) and ISAAC (``optim.ISAAC``) read these; the
math lives in their modules, the recording only here.
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
    "layer_statistics",
    "sampled_output_gradients",
]

MODES = ("exact", "mc", "empirical")


def curvature_layers(model: Any) -> list[Any]:
    """The ``Linear`` and ``Conv2d`` layers of ``model``, in the order of ``model.modules()``."""
    return [m for m in model.modules() if getattr(m, "records_curvature", False)]


def homogeneous(a: Any, layer: Any) -> Any:
    """``ã = [a, 1]`` (rows, n+1) if the layer has a bias, else ``a`` (rows, n) itself."""
    if getattr(layer, "bias", None) is None:
        return a
    return xp.concatenate([a, xp.ones((a.shape[0], 1), dtype=a.dtype)], axis=1)


@dataclass
class LayerStatistics:
    """What ``layer_statistics`` records (per layer lists follow ``curvature_layers`` order).

    loss     0-d array, the batch loss with the true targets
    grads    one gradient per ``model.parameters()`` entry (None for a ``skip`` weight)
    layers   the ``Linear``/``Conv2d`` layers
    a, g     per layer (rows, n) and (rows, m), ∇W = gᵀa
    g_bar    per layer (r·rows, m), G = g_barᵀ g_bar / rows; None for ``mode=None``
    samples  b, the batch size (rows = b·L for a convolution)
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
    skip: Sequence[Any] = (),
) -> LayerStatistics:
    """One forward pass, the true-label backward sweep, then the sweeps for ``g_bar``.

    Sweeps for ``g_bar`` back-propagate per-sample output cotangents (b, m): ``"exact"`` the m
    columns of ``loss_fn.hessian_sqrt``, ``"mc"`` ``mc_samples`` gradients at targets drawn with
    ``loss_fn.sample_targets(f, rng)``, ``"empirical"`` none (ḡ = b·g), ``None`` no ``g_bar``.

    Parameters
    ----------
    model, loss_fn : Module with (b, m) outputs; MSELoss or CrossEntropyLoss
    x, y : the batch
    mode : {"exact", "mc", "empirical"} or None
    mc_samples : int, S (``"mc"``)
    rng : generator or seed (``"mc"``)
    skip : weights (of layers with a bias) whose gradient gᵀa is never formed: they do not
        require a gradient during the call and their ``grads`` entry is None. The one way to skip
        weight gradients (K-FAC's rank-b form, ISAAC's conditioned layers).

    Returns ``LayerStatistics``; the parameters' ``.grad`` are left as they were.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
    if mode == "mc" and int(mc_samples) < 1:
        raise ValueError(f"mc_samples must be ≥ 1, got {mc_samples}")
    params = model.parameters()
    saved = [(p.grad, p.requires_grad) for p in params]
    skipped = {id(w) for w in skip}
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
                sweeps = [[b * gl for gl in g]]  # ḡ = per-sample gradient = b·g
            else:
                sweeps = []
                for cot in _cotangents(loss_fn, f, mode, int(mc_samples), rng):
                    for p in params:  # 2. one backward sweep per cotangent (b, m)
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
    """``(a, g, g_bar)`` of ``layer_statistics``: per layer (rows, n), (rows, m), (r·rows, m).

    ``a`` is without the bias column (``homogeneous`` appends it).
    """
    s = layer_statistics(model, loss_fn, x, y, mode, mc_samples, rng)
    return s.a, s.g, s.g_bar
