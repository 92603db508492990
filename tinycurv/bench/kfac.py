"""K-FAC step time relative to an SGD step on the 5-layer benchmark MLP (float32, batch 60).

Two schedules are timed for each width n:

* **every step**: factors (one sampled-label backward sweep) and their damped Cholesky factors
  recomputed at every step (``factor_every = inv_every = 1``);
* **every 10 steps**: both recomputed every 10th step; the time of 10 consecutive steps (so each
  block contains exactly one factorisation) divided by 10, median over blocks.

A second table times the options of docs/kfac.md §9–§14, relative to the same SGD step:

* **qmodel**: ``step_rule="qmodel"`` (α, μ from the quadratic model: one batched
  ``curvature.ggn_vp`` of two vectors per step), every step, and every 10 steps as above;
* **EKFAC**: ``eigen_correction=True``, every step (eigendecompositions of A and G, and the
  per-sample scaling s);
* **exact damping**: ``damping_mode="exact"``, every step (eigendecompositions of A and G).

All of them are timed in turn within each repetition, so a change of machine load shifts all
alike; the tables report medians and their ratios to SGD.

Goals: ≤ 4.5× SGD at n = 400 every step; ≤ 2.5× at n = 400 and ≤ 3× at n = 1600 every 10 steps
(none for the second table).
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
VARIANT_HEADERS = (
    "n",
    "qmodel ms",
    "ratio",
    "qmodel every 10 ms",
    "ratio",
    "EKFAC ms",
    "ratio",
    "exact damping ms",
    "ratio",
)
# the options of the second table: name → KFAC keyword arguments (docs/kfac.md §9–§14)
VARIANTS = {
    "qmodel": {"step_rule": "qmodel"},
    "ekfac": {"eigen_correction": True},
    "exact": {"damping_mode": "exact"},
}


def _repeats(n: int) -> tuple[int, int]:
    """(repeats, warmup): fewer for the large widths, whose steps take long (and for smoke runs)."""
    if n < 100:
        return 1, 0
    return (11, 2) if n <= 400 else (5, 1)


def _kfac(n: int, every: int, **options: object) -> KFAC:
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
        **options,
    )


def _time_all(n: int, x: object, y: object) -> dict[str, float]:
    """Median seconds per step of SGD, K-FAC (every step, every 10) and the ``VARIANTS``.

    Keys: ``sgd``, ``every``, ``amortised`` (per step of a 10-step block), ``qmodel``,
    ``qmodel_amortised``, ``ekfac``, ``exact``. All are timed in turn within each repetition
    (not one after the other), so that a change of machine load affects all alike and their
    ratios stay comparable.
    """
    repeats, warmup = _repeats(n)
    sgd = SGD(mlp(n), nn.CrossEntropyLoss(), lr=1e-3)
    every, amortised = _kfac(n, 1), _kfac(n, 10)
    variants = {name: _kfac(n, 1, **kw) for name, kw in VARIANTS.items()}
    q_amortised = _kfac(n, 10, **VARIANTS["qmodel"])
    runs = {
        "sgd": lambda: sgd.step(x, y),
        "every": lambda: every.step(x, y),
        "amortised": lambda: [amortised.step(x, y) for _ in range(10)],  # one factorisation
        **{name: (lambda o=o: o.step(x, y)) for name, o in variants.items()},
        "qmodel_amortised": lambda: [q_amortised.step(x, y) for _ in range(10)],
    }
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(median_time(fn, repeats=1, warmup=0))
    t = {name: statistics.median(ts) for name, ts in times.items()}
    t["amortised"] /= 10
    t["qmodel_amortised"] /= 10
    return t


def time_all_sizes(sizes: Sequence[int] = SIZES) -> list[tuple[int, dict[str, float]]]:
    """Seconds per step of everything ``_time_all`` times, for each width (float32)."""
    dtype = get_default_dtype()
    set_default_dtype("float32")
    try:
        x, y = batch(BATCH, dtype="float32")
        return [(n, _time_all(n, x, y)) for n in sizes]
    finally:
        set_default_dtype(dtype)


def time_sizes(sizes: Sequence[int] = SIZES) -> list[tuple[int, float, float, float]]:
    """Seconds per step: ``(n, sgd, kfac_every_step, kfac_every_10)`` for each width (float32)."""
    return [(n, t["sgd"], t["every"], t["amortised"]) for n, t in time_all_sizes(sizes)]


def run(sizes: Sequence[int] = SIZES, markdown: bool = False) -> str:
    """Two tables: per width, SGD and K-FAC step times (ms) and K-FAC/SGD ratios; then the
    quadratic-model step, EKFAC and exact damping (ms, and ratios to the same SGD step)."""
    measured = time_all_sizes(sizes)

    def ms_and_ratios(t: dict[str, float], keys: Sequence[str]) -> list[float]:
        return [v for k in keys for v in (1e3 * t[k], t[k] / t["sgd"])]

    rows = [(n, 1e3 * t["sgd"], *ms_and_ratios(t, ("every", "amortised"))) for n, t in measured]
    keys = ("qmodel", "qmodel_amortised", "ekfac", "exact")
    variants = [(n, *ms_and_ratios(t, keys)) for n, t in measured]
    goals = "; ".join(
        f"{name}: ≤ {g}× at n = {n}" for name, by_n in GOALS.items() for n, g in by_n.items()
    )
    return (
        table(HEADERS, rows, markdown)
        + f"\n\nGoals (K-FAC/SGD): {goals}.\n\n"
        + "Options (every step unless said; ratios to the SGD step above):\n\n"
        + table(VARIANT_HEADERS, variants, markdown)
    )
