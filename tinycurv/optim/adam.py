"""Adam with L2 weight decay, as PyTorch's ``Adam`` (not AdamW).

With gradient ``g`` of the batch loss at step t (counting from 1), and m = v = 0 before step 1::

    d  = g + weight_decay · θ                        (L2 decay, coupled to the gradient)
    m  = β₁ m + (1 − β₁) d                            (first moment)
    v  = β₂ v + (1 − β₂) d²                           (second moment, elementwise)
    θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)

The last line is PyTorch's arrangement of the bias corrections m̂ = m / (1 − β₁ᵗ),
v̂ = v / (1 − β₂ᵗ), θ ← θ − lr · m̂ / (√v̂ + ε); ε is added *after* the square root. This
matches ``torch.optim.Adam(params, lr, betas, eps, weight_decay, amsgrad=False)``.
"""

from __future__ import annotations

import math
from typing import Any

from tinycurv.backend import xp
from tinycurv.optim.base import Hyperparameter, Optimizer, beta_pair, number
from tinycurv.optim.sgd import _with_weight_decay


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch semantics; see the module docstring.

    Parameters
    ----------
    model : Module
        The network; its ``parameters()`` are updated in place.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the scalar batch loss as a Tensor.
    lr : float
        Step size, ≥ 0.
    betas : tuple of float
        (β₁, β₂), each in [0, 1): decay rates of the first and second moments.
    eps : float
        Added to the denominator, ≥ 0.
    weight_decay : float
        L2 penalty coefficient (added to the gradient), ≥ 0.
    on_nonfinite : {"raise", "skip"}
        What a step with a non-finite loss, gradient or update does (``Optimizer``).

    Notes
    -----
    ``state["m"]`` and ``state["v"]`` hold one array per parameter after the first step.
    """

    lr = Hyperparameter(number())
    betas = Hyperparameter(beta_pair)
    eps = Hyperparameter(number())
    weight_decay = Hyperparameter(number())

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        on_nonfinite: str = "raise",
    ) -> None:
        hp = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(model, loss_fn, on_nonfinite, **hp)

    def _update(self, x: Any, y: Any) -> Any:
        loss, grads = self.loss_and_grad(x, y)
        directions = _with_weight_decay(grads, self.params, self.weight_decay)
        steps, step_size = adam_steps(
            self.state, directions, self.betas, self.eps, self.lr, self.t + 1
        )
        self.apply_update(steps, scale=step_size)
        return loss


def adam_steps(
    state: dict[str, Any],
    directions: list[Any],
    betas: tuple[float, float],
    eps: float,
    lr: float,
    t: int,
) -> tuple[list[Any], float]:
    """Update the moments ``state["m"]``, ``state["v"]`` and return Adam's steps at step t ≥ 1.

    Returns ``m / (√v/√(1−β₂ᵗ) + ε)`` and their scale ``lr/(1−β₁ᵗ)`` (PyTorch's order of
    operations); shared by Adam and by the Adam base rule of ISAAC.
    """
    beta1, beta2 = betas
    m = state.get("m") or [xp.zeros_like(d) for d in directions]
    v = state.get("v") or [xp.zeros_like(d) for d in directions]
    m = [beta1 * mi + (1.0 - beta1) * d for mi, d in zip(m, directions, strict=True)]
    v = [beta2 * vi + (1.0 - beta2) * (d * d) for vi, d in zip(v, directions, strict=True)]
    state["m"], state["v"] = m, v
    root_correction = math.sqrt(1.0 - beta2**t)
    steps = [mi / (xp.sqrt(vi) / root_correction + eps) for mi, vi in zip(m, v, strict=True)]
    return steps, lr / (1.0 - beta1**t)
