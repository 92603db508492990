"""The one interface of every optimiser in tinycurv.

::

    opt = Method(model, loss_fn, **hyperparameters)
    loss = opt.step(x, y)          # the batch loss *before* the update, as a float
    state = opt.state_dict()       # hyperparameters, step count and buffers (NumPy arrays)
    opt.load_state_dict(state)     # resume exactly

Subclasses implement ``_update(x, y) -> loss`` (a 0-d backend array or Tensor) and keep their
buffers in ``self.state`` (a dict of backend arrays, lists of arrays, or numbers), which
``state_dict`` copies to the host.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from tinycurv import dual as D
from tinycurv.backend import asarray, asnumpy, generator_state, is_array, restore_generator
from tinycurv.functional import value_and_grad
from tinycurv.tensor import Tensor


class NonFiniteError(FloatingPointError):
    """A loss, gradient or step contained NaN or inf."""


class Optimizer:
    """Base class: holds the model, the loss, the step count ``t`` and the buffers ``state``."""

    def __init__(self, model: Any, loss_fn: Any, **hyperparameters: Any) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.params: list[Tensor] = model.parameters()
        self.hyperparameters = dict(hyperparameters)
        self.t = 0
        self.state: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        hp = self.__dict__.get("hyperparameters", {})
        if name in hp:
            return hp[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # -- the interface ---------------------------------------------------------------------------

    def step(self, x: Any, y: Any) -> float:
        """One update on the batch ``(x, y)``; returns the batch loss before the update."""
        loss = self._update(x, y)
        self.t += 1
        value = float(D.primal(loss.data if isinstance(loss, Tensor) else loss))
        if not math.isfinite(value):
            raise NonFiniteError(f"{type(self).__name__}: the loss is {value} at step {self.t}")
        return value

    def _update(self, x: Any, y: Any) -> Any:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, step count and buffers, with arrays copied to the host (NumPy).

        An optimiser that draws random numbers from ``self.rng`` also gets the generator's state
        under ``"rng"`` (``tinycurv.backend.generator_state``), so a resumed run draws the same
        numbers; a generator whose state cannot be read is left out, with a warning.
        """
        out = {
            "t": self.t,
            "hyperparameters": dict(self.hyperparameters),
            "state": _to_host(self.state),
        }
        rng = getattr(self, "rng", None)
        if rng is not None:
            rng_state = generator_state(rng)
            if rng_state is None:
                warnings.warn(
                    f"{type(self).__name__}.rng ({type(rng).__name__}) has no readable state; "
                    "it is not saved, so a resumed run will draw different random numbers "
                    "(use tinycurv.backend.SavableGenerator)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                out["rng"] = rng_state
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (buffers go back to the current backend)."""
        self.t = int(state["t"])
        self.hyperparameters.update(state.get("hyperparameters", {}))
        self.state = _to_backend(state["state"])
        if state.get("rng") is not None:
            self.rng = restore_generator(getattr(self, "rng", None), state["rng"])

    # -- helpers for subclasses ------------------------------------------------------------------

    def closure(self, x: Any, y: Any):
        """``closure()`` computing the batch loss of the model on ``(x, y)``."""
        return lambda: self.loss_fn(self.model(x), y)

    def loss_and_grad(self, x: Any, y: Any) -> tuple[Any, list[Any]]:
        """The batch loss (0-d array) and its gradient (one array per parameter)."""
        return value_and_grad(self.closure(x, y), self.params)

    def apply_update(self, directions: list[Any], scale: float = 1.0) -> None:
        """θ ← θ − scale · direction for every parameter."""
        for p, d in zip(self.params, directions, strict=True):
            p.data = p.data - scale * d

    def warn_skip(self, reason: str) -> None:
        """Say that this step was skipped, and why."""
        warnings.warn(
            f"{type(self).__name__} step {self.t + 1} skipped: {reason}",
            RuntimeWarning,
            stacklevel=3,
        )


def _to_host(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_host(v) for v in obj)
    if is_array(obj):
        return asnumpy(obj).copy()
    return obj


def _to_backend(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_backend(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_backend(v) for v in obj)
    if hasattr(obj, "dtype") and hasattr(obj, "shape") and getattr(obj, "ndim", 0) > 0:
        return asarray(obj, dtype=obj.dtype)
    return obj
