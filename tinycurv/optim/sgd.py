"""Stochastic gradient descent with (Nesterov) momentum and L2 weight decay, as PyTorch's ``SGD``.

With gradient ``g`` of the batch loss at step t (counting from 1)::

    d  = g + weight_decay · θ                      (L2 weight decay, coupled to the gradient)
    b  = d                      at t = 1            (the buffer starts at the first direction)
    b  = momentum · b + d       at t > 1            (no dampening)
    u  = d + momentum · b       with nesterov, else  u = b
    θ ← θ − lr · u

With ``momentum = 0`` this is plain ``θ ← θ − lr · d`` and no buffer is kept. This is exactly
``torch.optim.SGD(params, lr, momentum, dampening=0, weight_decay, nesterov)``.
"""

from __future__ import annotations

from typing import Any

from tinycurv.optim.base import Hyperparameter, Optimizer, check_range, flag, number


class SGD(Optimizer):
    """Stochastic gradient descent (PyTorch semantics; see the module docstring).

    Parameters
    ----------
    model : Module
        The network; its ``parameters()`` are updated in place.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the scalar batch loss as a Tensor.
    lr : float
        Step size, ≥ 0.
    momentum : float
        Heavy-ball coefficient, ≥ 0; 0 disables the momentum buffer.
    weight_decay : float
        L2 penalty coefficient (added to the gradient), ≥ 0.
    nesterov : bool
        Nesterov's variant; needs ``momentum > 0``.
    on_nonfinite : {"raise", "skip"}
        What a step with a non-finite loss, gradient or update does (``Optimizer``).

    Notes
    -----
    ``state["momentum_buffer"]`` holds one array per parameter once the first step with
    ``momentum > 0`` has run.
    """

    lr = Hyperparameter(number())
    momentum = Hyperparameter(number())
    weight_decay = Hyperparameter(number())
    nesterov = Hyperparameter(flag)

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        on_nonfinite: str = "raise",
    ) -> None:
        hp = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(model, loss_fn, on_nonfinite, **hp)
        if self.nesterov and self.momentum <= 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")

    def _update(self, x: Any, y: Any) -> Any:
        loss, grads = self.loss_and_grad(x, y)
        directions = _with_weight_decay(grads, self.params, self.weight_decay)
        if self.momentum > 0:
            directions = momentum_directions(self.state, directions, self.momentum, self.nesterov)
        self.apply_update(directions, scale=self.lr)
        return loss


def momentum_directions(
    state: dict[str, Any], directions: list[Any], beta: float, nesterov: bool
) -> list[Any]:
    """Update ``state["momentum_buffer"]`` and return the heavy-ball (or Nesterov) directions.

    The buffer starts as a copy of the first direction (PyTorch's rule, no dampening); shared by
    SGD and by the SGD base rule of ISAAC.
    """
    buffers = state.get("momentum_buffer")
    if buffers is None:
        buffers = [d.copy() for d in directions]
    else:
        buffers = [beta * b + d for b, d in zip(buffers, directions, strict=True)]
    state["momentum_buffer"] = buffers
    if nesterov:
        return [d + beta * b for d, b in zip(directions, buffers, strict=True)]
    return list(buffers)


def _with_weight_decay(grads: list[Any], params: list[Any], weight_decay: float) -> list[Any]:
    """``g + weight_decay · θ`` for every parameter (the gradients themselves when it is 0)."""
    if weight_decay == 0:
        return list(grads)
    return [g + weight_decay * p.data for g, p in zip(grads, params, strict=True)]


def _check_nonnegative(owner: str, **values: float) -> None:
    """Raise ``ValueError`` naming the first hyperparameter that is not a finite number ≥ 0."""
    for name, value in values.items():
        check_range(owner, name, value)
