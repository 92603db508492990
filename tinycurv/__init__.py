"""tinycurv: second-order optimisation for neural networks, small enough to read.

The engine (reverse mode, forward mode by dual numbers, forward-over-reverse Hessian-vector
products) lives in ``tinycurv.tensor``, ``tinycurv.ops``, ``tinycurv.dual`` and
``tinycurv.functional``; layers in ``tinycurv.nn``; curvature in ``tinycurv.curvature``;
optimisers in ``tinycurv.optim``.
"""

from tinycurv import ops
from tinycurv.backend import (
    asnumpy,
    get_backend,
    get_default_dtype,
    set_backend,
    set_default_dtype,
    xp,
)
from tinycurv.checkpoint import CheckpointError, load, save
from tinycurv.dual import Dual
from tinycurv.functional import grad, hvp, jvp, taylor, value_and_grad, value_grad_and_hvp
from tinycurv.tensor import Function, Tensor, no_grad, set_grad_enabled

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Dual",
    "Function",
    "Tensor",
    "asnumpy",
    "get_backend",
    "get_default_dtype",
    "grad",
    "hvp",
    "jvp",
    "load",
    "no_grad",
    "ops",
    "save",
    "set_backend",
    "set_default_dtype",
    "set_grad_enabled",
    "taylor",
    "value_and_grad",
    "value_grad_and_hvp",
    "xp",
]
