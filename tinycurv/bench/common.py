"""Shared pieces of the benchmarks: the 5-layer MLP, a batch, a timer, a table printer.

A declared host-side helper: it reads the clock, synchronises the device and formats tables.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tinycurv import nn
from tinycurv.backend import asarray, backend_name, get_backend

SIZES = (100, 400, 1600)
BATCH = 60


def mlp(n: int, seed: int = 0, depth: int = 5, d_in: int = 784, d_out: int = 10) -> nn.Sequential:
    """The benchmark network: 784 → n → … → n → 10 with ReLU (``depth`` Linear layers)."""
    rng = np.random.default_rng(seed)
    widths = [d_in] + [n] * (depth - 1) + [d_out]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(widths[i], widths[i + 1], rng=rng))
        if i < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def batch(
    b: int = BATCH, seed: int = 1, d_in: int = 784, classes: int = 10, dtype: str = "float32"
):
    """A random classification batch ``(x, y)`` on the current backend."""
    rng = np.random.default_rng(seed)
    x = asarray(rng.standard_normal((b, d_in)), dtype=dtype)
    y = asarray(rng.integers(0, classes, size=b), dtype="int64")
    return x, y


def synchronize() -> None:
    """Wait for queued GPU work (no-op on NumPy)."""
    if backend_name() == "cupy":
        get_backend().cuda.Stream.null.synchronize()


def median_time(
    fn: Callable[[], Any], repeats: int = 15, warmup: int = 3, min_time: float = 0.0
) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    start_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start_all < min_time:
        t0 = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False) -> str:
    """Format rows as an aligned text table, or as a Markdown table."""
    cells = [[_fmt(c) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.3g}" if abs(c) < 1000 else f"{c:.0f}"
    return str(c)
