"""Benchmark: the step time of series saddle-free Newton relative to SGD, against its HVP count.

A declared host-side helper (it reads the clock and imports NumPy for the start vectors).

On the 5-layer benchmark MLP (``common.mlp``: 784 → n → n → n → n → 10, ReLU, float32, batch
``common.BATCH``) it times, per width n:

* ``SGD``: one ``tinycurv.optim.SGD`` step (gradient + update);
* ``grad``: the engine's ``value_and_grad`` alone; ``HVP``: one ``tinycurv.hvp``;
* ``SFN(N)``: one ``SeriesSFN`` step with ``order=N``, ``adaptive=False`` and a fixed scale V,
  so that only the series is timed: one gradient and ``2(N − 1)`` HVPs, plus vector updates,
  Wynn's ε (order 1) and two norms per term (host transfers, the series' growth check).

and reports ``SFN/SGD`` (measured), ``predicted = (grad + 2(N − 1)·HVP)/SGD`` and their ratio,
which is near 1 when the step costs what its HVP count says (the goal is ≤ 1.2). Every column
is measured in ``rounds`` interleaved rounds (median of medians), so that a change of machine
load hits all columns alike; on a shared CPU, run with ``OPENBLAS_NUM_THREADS=1`` (a busy
machine makes multithreaded BLAS erratic: 10× swings between identical calls). The fixed V
is twice a power-iteration estimate of ``λ_max(H)²`` at the start, and the step size α is tiny
(1e-4) so that repeated timing steps leave the network — and so the work — essentially unchanged.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

from tinycurv import nn
from tinycurv.backend import asarray, get_default_dtype, set_default_dtype
from tinycurv.bench.common import BATCH, SIZES, batch, median_time, mlp, table
from tinycurv.curvature.sfn import power_iteration_scale
from tinycurv.functional import hvp, value_and_grad

HEADERS = (
    "n",
    "N",
    "SGD ms",
    "grad ms",
    "HVP ms",
    "SFN ms",
    "SFN/SGD",
    "predicted",
    "meas/pred",
)


def run(
    sizes: Sequence[int] = SIZES,
    orders: Sequence[int] = (5, 10, 20),
    markdown: bool = False,
    batch_size: int = BATCH,
    repeats: int = 5,
    rounds: int = 3,
    seed: int = 0,
) -> str:
    """Time SeriesSFN steps against SGD on the benchmark MLP and return the table.

    Parameters
    ----------
    sizes : sequence of int
        Hidden widths n of the 5-layer MLP.
    orders : sequence of int
        Series orders N (each ≥ 3: Wynn's ε of order 1 needs ``N ≥ 2k + 1``).
    markdown : bool
        Return a Markdown table instead of aligned text.
    batch_size : int
        Samples per batch.
    repeats : int
        Timed runs per measurement (their median is taken), after 1 warm-up run.
    rounds : int
        Measurements of every column, interleaved; the median over rounds is reported.
    seed : int
        Seeds the networks and the start vectors.

    Returns
    -------
    str
        One row per (n, N), times in milliseconds.
    """
    rows = []
    for n in sizes:
        rows += _rows(n, orders, batch_size, repeats, rounds, seed)
    return table(HEADERS, rows, markdown=markdown)


def _rows(
    n: int, orders: Sequence[int], batch_size: int, repeats: int, rounds: int, seed: int
) -> list[list]:
    """The table rows of width n: one per order N."""
    from tinycurv.optim import SGD, SeriesSFN

    previous = get_default_dtype()
    set_default_dtype("float32")
    try:
        models = [mlp(n, seed=seed) for _ in range(2 + len(orders))]  # identical networks
        x, y = batch(batch_size, seed=seed + 1)
    finally:
        set_default_dtype(previous)
    model = models[0]
    loss_fn = nn.CrossEntropyLoss()
    params = model.parameters()
    closure = lambda: loss_fn(model(x), y)  # noqa: E731
    rng = np.random.default_rng(seed)
    v = [asarray(rng.standard_normal(p.shape), dtype=p.dtype) for p in params]

    sgd = SGD(models[1], loss_fn, lr=1e-4)
    V = 2.0 * power_iteration_scale(
        lambda vs: hvp(closure, params, vs), [p.data for p in params], iters=10, rng=seed
    )
    sfn = {
        N: SeriesSFN(
            net, loss_fn, order=N, acceleration=1, damping=1.0, scale=V, adaptive=False,
            lr=1e-4, momentum=0.5,
        )  # fmt: skip
        for N, net in zip(orders, models[2:], strict=True)
    }
    timed = {
        "grad": lambda: value_and_grad(closure, params),
        "HVP": lambda: hvp(closure, params, v),
        "SGD": lambda: sgd.step(x, y),
    }
    timed.update({N: (lambda opt=opt: opt.step(x, y)) for N, opt in sfn.items()})
    # interleaved rounds, so that a change of machine load affects every column alike
    samples: dict = {key: [] for key in timed}
    for _ in range(rounds):
        for key, fn in timed.items():
            samples[key].append(median_time(fn, repeats=repeats, warmup=1) * 1e3)  # ms
    t = {key: statistics.median(values) for key, values in samples.items()}
    rows = []
    for N in orders:
        predicted = (t["grad"] + 2 * (N - 1) * t["HVP"]) / t["SGD"]
        measured = t[N] / t["SGD"]
        rows.append(
            [n, N, t["SGD"], t["grad"], t["HVP"], t[N], measured, predicted, measured / predicted]
        )
    return rows


if __name__ == "__main__":
    print(run())
