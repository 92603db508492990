"""K-FAC step time relative to an SGD step on the 5-layer benchmark MLP (float32, batch 60).

Two schedules are timed for each width n:

* **every step**: factors (one sampled-label backward sweep) and their damped Cholesky factors
  recomputed at every step (``factor_every = inv_every = 1``);
* **every 10 steps**: both recomputed every 10th step; the time of 10 consecutive steps (so each
  block contains exactly one factorisation) divided by 10, median over blocks.

SGD, K-FAC every step and a K-FAC block are timed in turn within each repetition, so a change of
machine load shifts all three alike; the table reports medians and their ratios.

Goals: ≤ 4.5× SGD at n = 400 every step; ≤ 2.5× at n = 400 and ≤ 3× at n = 1600 every 10 steps.
Run with ``python -c "from tinycurv.bench import kfac; print(kfac.run())"``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from tinycurv import nn
from tinycurv.backend import get_default_dtype, set_default_dtype
from tinycurv.bench.common import BATCH, SIZES, batch, median_time, mlp, table
from tinycurv.optim.kfac import KFAC
from tinycurv.optim.sgd import SGD

GOALS = {"every step": {400: 4.5}, "every 10": {400: 2.5, 1600: 3.0}}
HEADERS = ("n", "SGD ms", "K-FAC every step ms", "ratio", "K-FAC every 10 ms", "ratio")


def _repeats(n: int) -> tuple[int, int]:
    """(repeats, warmup): fewer for the large widths, whose steps take long (and for smoke runs)."""
    if n < 100:
        return 1, 0
    return (11, 2) if n <= 400 else (5, 1)


def _kfac(n: int, every: int) -> KFAC:
    # a small lr: the same batch is stepped on again and again
    return KFAC(
        mlp(n),
        nn.CrossEntropyLoss(),
        lr=1e-3,
        damping=1e-2,
        mode="mc",
        seed=0,
        inv_every=every,
        factor_every=every,
    )


def _time_width(n: int, x: object, y: object) -> tuple[int, float, float, float]:
    """Median seconds per step of SGD, K-FAC every step and K-FAC every 10 (amortised).

    The three are timed in turn within each repetition (not one after the other), so that a
    change of machine load affects all three alike and their ratios stay comparable.
    """
    repeats, warmup = _repeats(n)
    sgd = SGD(mlp(n), nn.CrossEntropyLoss(), lr=1e-3)
    every, amortised = _kfac(n, 1), _kfac(n, 10)
    runs = {
        "sgd": lambda: sgd.step(x, y),
        "every": lambda: every.step(x, y),
        "amortised": lambda: [amortised.step(x, y) for _ in range(10)],  # one factorisation
    }
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(median_time(fn, repeats=1, warmup=0))
    t = {name: statistics.median(ts) for name, ts in times.items()}
    return n, t["sgd"], t["every"], t["amortised"] / 10


def time_sizes(sizes: Sequence[int] = SIZES) -> list[tuple[int, float, float, float]]:
    """Seconds per step: ``(n, sgd, kfac_every_step, kfac_every_10)`` for each width (float32)."""
    dtype = get_default_dtype()
    set_default_dtype("float32")
    try:
        x, y = batch(BATCH, dtype="float32")
        return [_time_width(n, x, y) for n in sizes]
    finally:
        set_default_dtype(dtype)


def run(sizes: Sequence[int] = SIZES, markdown: bool = False) -> str:
    """The table: per width, SGD and K-FAC step times (ms) and K-FAC/SGD ratios."""
    rows = [
        (n, 1e3 * s, 1e3 * k1, k1 / s, 1e3 * k10, k10 / s) for n, s, k1, k10 in time_sizes(sizes)
    ]
    goals = "; ".join(
        f"{name}: ≤ {g}× at n = {n}" for name, by_n in GOALS.items() for n, g in by_n.items()
    )
    return table(HEADERS, rows, markdown) + f"\n\nGoals (K-FAC/SGD): {goals}."
