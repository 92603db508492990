"""Parameter initialisation, PyTorch-like (a declared host-side helper).

Initial values are drawn on the host with a ``numpy.random.Generator`` so that one seed gives the
same network on every backend, then moved to the current backend.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinycurv.backend import asarray, get_default_dtype
from tinycurv.tensor import Tensor


def make_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A NumPy generator from a generator, a seed, or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def uniform_parameter(shape: tuple[int, ...], fan_in: int, rng: Any, name: str) -> Tensor:
    """U(−1/√fan_in, 1/√fan_in): PyTorch's default for Linear and Conv2d weights and biases."""
    if not fan_in >= 1:
        raise ValueError(f"{name}: fan_in must be a positive integer, got {fan_in!r}")
    bound = 1.0 / math.sqrt(fan_in)
    data = make_rng(rng).uniform(-bound, bound, size=shape)
    return Tensor(asarray(data, dtype=get_default_dtype()), requires_grad=True, name=name)
