"""What curvature methods need from a layer: its input ``a`` and its output gradient ``g``.

K-FAC and ISAAC precondition a layer's weight gradient ``gᵀa`` with statistics of ``a`` (the
layer's input; for a convolution the unfolded patch matrix) and of ``g`` (the gradient of the loss
with respect to the layer's pre-activation output). One mechanism records both::

    with record(model) as rec:
        loss = loss_fn(model(x), y)
        loss.backward()
    a, g = rec[layer].a, rec[layer].g      # (rows, in_features), (rows, out_features)

Rows are samples for ``Linear`` and (sample, output location) pairs for ``Conv2d``; the bias is not
appended to ``a``. Each backward sweep overwrites ``g``, so several backward sweeps through one
forward pass (true and sampled labels, say) can be read one after the other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tinycurv.tensor import Function, Tensor


@dataclass
class Record:
    """The last recorded input ``a`` and output gradient ``g`` of one layer (backend arrays)."""

    a: Any = None
    g: Any = None


class Tap(Function):
    """The identity, whose backward stores the cotangent ``gy`` in a ``Record``."""

    def __init__(self, record: Record):
        self.record = record

    def forward(self, x):
        return x

    def backward(self, gy):
        self.record.g = gy
        return (gy,)


def tap(layer: Any, a: Any, out: Tensor) -> Tensor:
    """Called by a layer in forward: record ``a`` and pass ``out`` through a ``Tap``."""
    rec = getattr(layer, "_record", None)
    if rec is None:
        return out
    rec.a = a
    return Tap.apply(out, record=rec)


@contextlib.contextmanager
def record(model: Any) -> Iterator[dict[Any, Record]]:
    """Record ``a`` and ``g`` of every ``Linear`` and ``Conv2d`` layer of ``model``.

    Yields
    ------
    dict
        Layer → ``Record``, in the order of ``model.modules()``.
    """
    layers = [m for m in model.modules() if getattr(m, "records_curvature", False)]
    records = {layer: Record() for layer in layers}
    for layer, rec in records.items():
        layer._record = rec
    try:
        yield records
    finally:
        for layer in layers:
            layer._record = None
