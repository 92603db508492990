"""ISAAC: SGD or Adam on weight gradients conditioned per layer by ζ* (eq. 21) or ζ (eq. 20).

Petersen, Sutter, Borgelt, Huh, Kuehne, Sun & Deussen, "ISAAC Newton: Input-based Approximate
Curvature for Newton's Method", ICLR 2023. Names and shapes as in ``tinycurv.curvature.isaac``.
One step, the update θ ← θ − η* ζ of eq. 18 fed through a base rule:

1. statistics: ``layer_statistics`` records a (rows, n) and g (rows, m) of every Linear/Conv2d
   layer (rows = b, or b·L patches), the other parameters' gradients and, for a finite lam_g
   only, g_bar (r·rows, m); a conditioned weight's gᵀa is never formed (its ``skip`` argument);
2. per conditioned layer, the pure function: ``zeta_star(g, a, lam_a)`` or, for a finite lam_g,
   ``zeta(g, a, g_bar, lam_g, lam_a)``, reshaped to the weight; the rest keep their gradients;
3. the base rule on these directions, weight decay added to them (d = ζ + wd·θ): SGD
   (``momentum_directions``) or Adam (``adam_steps``), PyTorch's semantics.

State as ``SGD``/``Adam``; ``self.rng`` (a ``SavableGenerator``) draws the sampled labels and is
saved in ``state_dict()["rng"]``. Design notes: docs/isaac.md.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature import isaac as isaac_module
from tinycurv.curvature.kfac import MODES, curvature_layers, layer_statistics
from tinycurv.optim.adam import adam_steps
from tinycurv.optim.base import (
    Hyperparameter,
    Optimizer,
    PureFunctions,
    choice,
    integer,
    make_generator,
    number,
)
from tinycurv.optim.sgd import _check_nonnegative, _with_weight_decay, momentum_directions

__all__ = ["BASES", "ISAAC", "LAYER_CHOICES", "HyperparameterError"]

isaac_math = PureFunctions(isaac_module)  # zeta, zeta_star looked up at every call

LAYER_CHOICES = ("all", "first", "last")
#: The base rules and their hyperparameters with defaults (PyTorch's SGD and Adam).
BASES: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
}


class HyperparameterError(TypeError, ValueError):
    """A keyword the chosen base rule does not take (both a TypeError and a ValueError)."""


class ISAAC(Optimizer):
    """ISAAC (Petersen et al., ICLR 2023): ζ* or ζ per layer, then SGD or Adam.

    Parameters
    ----------
    model : Module
        The network; its ``Linear``/``Conv2d`` layers can be conditioned.
    loss_fn : MSELoss or CrossEntropyLoss
        ``loss_fn(outputs, targets)``, the scalar batch loss (and, for finite ``lam_g``, the
        sampled targets / Hessian square roots of ``g_bar``).
    lr : float
        Step size ≥ 0 of the base rule (η* of eq. 18 for SGD). Default 0.1; the reference
        example trains with lr 1 and plain SGD.
    lam_a : float
        λ_a > 0, damping of the input factor A; ``math.inf`` leaves the input side unconditioned.
        Default 1, the reference README's suggested starting point.
    lam_g : float
        λ_g > 0, damping of the output factor G; ``math.inf`` (default) gives ζ* (eq. 21) and
        needs no ``g_bar``; a finite value gives ζ (eq. 17/20) with an extra backward sweep.
    layers : {"all", "first", "last"} or list of int
        Which ``Linear``/``Conv2d`` layers (indices in model order) are conditioned; the others
        take the plain gradient.
    base : {"sgd", "adam"}
        The rule the conditioned directions feed.
    g_bar_mode : {"mc", "exact", "empirical"}
        How ``g_bar`` is computed (finite ``lam_g`` only): sampled labels, the loss Hessian's
        square root, or the true-label per-sample gradients (Remark 4).
    mc_samples : int
        r, sampled labels per sample (``g_bar_mode="mc"``).
    seed : int
        Seeds ``self.rng = tinycurv.backend.SavableGenerator(seed)`` (the backend's generator,
        same stream as ``default_rng(seed)``) when ``rng`` is not given.
    rng : generator or int, optional
        A backend generator for the sampled labels (its state is saved only if it is a
        ``SavableGenerator`` or a NumPy generator); an int seeds one generator, once.
    on_nonfinite : {"raise", "skip"}
        What a step with a non-finite loss, gradient or update does (``Optimizer``).
    **base_hyperparameters
        For ``base="sgd"``: ``momentum`` (≥ 0), ``nesterov`` (bool), ``weight_decay`` (≥ 0).
        For ``base="adam"``: ``betas`` (two numbers in [0, 1)), ``eps`` (≥ 0),
        ``weight_decay`` (≥ 0). Semantics as ``tinycurv.optim.SGD`` / ``Adam``.

    Raises
    ------
    ValueError
        For a bad ``layers``, ``base``, ``g_bar_mode`` or out-of-range number.
    HyperparameterError
        (a TypeError and a ValueError) for a keyword the base rule does not take.

    Examples
    --------
    >>> opt = ISAAC(model, nn.CrossEntropyLoss(), lr=1.0, lam_a=10.0, layers=[0, 1, 2])
    >>> loss = opt.step(x, y)                                  # ζ* on the first three layers
    >>> opt = ISAAC(model, loss_fn, 1e-3, 1.0, lam_g=1.0, base="adam", betas=(0.9, 0.99))
    """

    lr = Hyperparameter(number())
    lam_a = Hyperparameter(number(low_open=True, allow_inf=True))
    lam_g = Hyperparameter(number(low_open=True, allow_inf=True))
    layers = Hyperparameter()
    base = Hyperparameter()
    g_bar_mode = Hyperparameter(choice(*MODES))
    mc_samples = Hyperparameter(integer())
    seed = Hyperparameter()
    # the base rule's (checked by _base_hyperparameters); only those of the chosen base are set
    momentum = Hyperparameter()
    nesterov = Hyperparameter()
    betas = Hyperparameter()
    eps = Hyperparameter()
    weight_decay = Hyperparameter()

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        lr: float = 0.1,
        lam_a: float = 1.0,
        lam_g: float = math.inf,
        layers: str | Sequence[int] = "all",
        base: str = "sgd",
        *,
        g_bar_mode: str = "mc",
        mc_samples: int = 1,
        seed: int | None = 0,
        rng: Any = None,
        on_nonfinite: str = "raise",
        **base_hyperparameters: Any,
    ) -> None:
        super().__init__(
            model,
            loss_fn,
            on_nonfinite,
            lr=lr,
            lam_a=lam_a,
            lam_g=lam_g,
            layers=_normalise_layers(layers),
            base=base,
            g_bar_mode=g_bar_mode,
            mc_samples=mc_samples,
            seed=seed,
            **_base_hyperparameters(base, base_hyperparameters),
        )
        self.rng = make_generator(seed, rng)
        self._plan()

    # -- which layers are conditioned ------------------------------------------------------------

    def _plan(self) -> None:
        """Resolve ``layers`` to (curvature-layer index, weight index, layer) triples."""
        all_layers = curvature_layers(self.model)
        chosen = _select(self.hyperparameters["layers"], len(all_layers))
        position = {id(p): i for i, p in enumerate(self.params)}
        self._conditioned = [
            (i, position[id(all_layers[i].weight)], all_layers[i])
            for i in chosen
            if id(all_layers[i].weight) in position
        ]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """As ``Optimizer.load_state_dict``; then the conditioned layers are found again."""
        super().load_state_dict(state)
        self._plan()

    # -- one step --------------------------------------------------------------------------------

    def _update(self, x: Any, y: Any) -> Any:
        lam_a, lam_g = self.lam_a, self.lam_g
        finite_g = not math.isinf(lam_g)
        mode = self.g_bar_mode if finite_g and self._conditioned else None  # ζ*: no sweep (Thm 3)
        skip = [layer.weight for _, _, layer in self._conditioned if _has_bias(layer)]  # no gᵀa
        s = layer_statistics(self.model, self.loss_fn, x, y, mode, self.mc_samples, self.rng, skip)
        directions, s.grads = s.grads, None  # None for the skipped weights, filled in below
        for i, iw, layer in self._conditioned:
            a, g = s.a[i], s.g[i]
            if a is None or g is None:  # the layer was not reached by the loss
                directions[iw] = xp.zeros_like(layer.weight.data)
                continue
            if finite_g:
                zeta = isaac_math.zeta(g, a, s.g_bar[i], lam_g, lam_a)  # eq. 20, (m, n)
            else:
                zeta = isaac_math.zeta_star(g, a, lam_a)  # eq. 21, (m, n)
            directions[iw] = xp.reshape(zeta, layer.weight.shape)
            s.a[i] = s.g[i] = None  # let the layer's records go as soon as they are used
        loss = s.loss
        del s  # the remaining records and g_bar, before the update allocates
        self._base_step(directions)
        return loss

    def _base_step(self, directions: list[Any]) -> None:
        """θ ← θ − (SGD or Adam applied to the directions), PyTorch semantics."""
        directions = _with_weight_decay(directions, self.params, self.weight_decay)
        if self.base == "sgd":
            if self.momentum > 0:
                directions = momentum_directions(
                    self.state, directions, self.momentum, self.nesterov
                )
            self.apply_update(directions, scale=self.lr)
            return
        steps, step_size = adam_steps(
            self.state, directions, self.betas, self.eps, self.lr, self.t + 1
        )
        self.apply_update(steps, scale=step_size)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _has_bias(layer: Any) -> bool:
    bias = getattr(layer, "bias", None)
    return bias is not None and bool(bias.requires_grad)


def _normalise_layers(layers: Any) -> str | list[int]:
    """``"all"``/``"first"``/``"last"``, or a list of ints (checked against the model later)."""
    if isinstance(layers, str):
        if layers not in LAYER_CHOICES:
            raise ValueError(
                f"ISAAC: layers must be one of {LAYER_CHOICES} or a list of layer indices, "
                f"got {layers!r}"
            )
        return layers
    if not isinstance(layers, list | tuple | range):
        raise ValueError(
            f"ISAAC: layers must be one of {LAYER_CHOICES} or a list of layer indices, "
            f"got {type(layers).__name__} {layers!r}"
        )
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise ValueError(f"ISAAC: layer indices must be integers, got {i!r} in {layers!r}")
        out.append(int(i))
    return out


def _select(layers: str | list[int], count: int) -> list[int]:
    """Indices (sorted, distinct) into the ``count`` Linear/Conv2d layers."""
    if layers == "all":
        return list(range(count))
    if layers in ("first", "last"):
        if count == 0:
            raise ValueError(f"ISAAC: layers={layers!r}, but the model has no Linear/Conv2d layer")
        return [0] if layers == "first" else [count - 1]
    bad = [i for i in layers if not -count <= i < count]
    if bad:
        raise ValueError(
            f"ISAAC: layer indices {bad} out of range: the model has {count} Linear/Conv2d "
            f"layer(s), indices 0..{count - 1} (or negative from the end)"
        )
    return sorted({i % count for i in layers})


def _base_hyperparameters(base: str, given: dict[str, Any]) -> dict[str, Any]:
    """The base rule's hyperparameters: defaults updated by ``given``, validated."""
    if base not in BASES:
        raise ValueError(f"ISAAC: base must be one of {tuple(BASES)}, got {base!r}")
    unknown = sorted(set(given) - set(BASES[base]))
    if unknown:
        raise HyperparameterError(
            f"ISAAC: unknown hyperparameter(s) {unknown} for base={base!r}; "
            f"it takes {sorted(BASES[base])}"
        )
    hp = {**BASES[base], **given}
    if base == "sgd":
        _check_nonnegative("ISAAC", momentum=hp["momentum"], weight_decay=hp["weight_decay"])
        if hp["nesterov"] and hp["momentum"] <= 0:
            raise ValueError("ISAAC: nesterov=True needs momentum > 0")
        return {
            "momentum": float(hp["momentum"]),
            "nesterov": bool(hp["nesterov"]),
            "weight_decay": float(hp["weight_decay"]),
        }
    _check_nonnegative("ISAAC", eps=hp["eps"], weight_decay=hp["weight_decay"])
    betas = tuple(float(b) for b in hp["betas"])
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"ISAAC: betas must be two numbers in [0, 1), got {hp['betas']!r}")
    return {"betas": betas, "eps": float(hp["eps"]), "weight_decay": float(hp["weight_decay"])}
