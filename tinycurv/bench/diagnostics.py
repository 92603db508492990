"""Benchmark: GGN-vector products, a Hessian-free step and Lanczos, against what they are made of.

A declared host-side helper (it reads the clock and imports NumPy for the start vectors).

On the 5-layer benchmark MLP (``common.mlp``: 784 → n → n → n → n → 10, ReLU, float32, batch
``common.BATCH``) it times, per width n:

* ``grad``: ``value_and_grad``; ``HVP``: one ``tinycurv.hvp``;
* ``GVP``: one GGN-vector product from scratch (``GGNOperator`` built and applied once: a taped
  forward, a dual forward, a backward); ``GVP*``: one more product on an operator built already
  (a dual forward and a backward: what each CG iteration of a Hessian-free step pays);
* ``HF``: one ``HessianFree`` step with exactly 10 CG iterations (``cg_max_iter=10``, the
  progress test off), with its default backtracking and line search;
* ``Lanczos``: ``lanczos`` with 30 steps on the Hessian (full reorthogonalisation).

and reports the goals' ratios: ``GVP/grad`` (goal ≤ 2); ``HF/pred`` with
``pred = grad + 10·GVP`` (goal ≤ 1.3), and ``HF/pred*`` with the stricter
``pred* = grad + 10·GVP*`` (the step reuses one tape, so each of its products costs GVP*; the
rest is CG's vector updates, the warm start's extra product ``A x₀`` and the forward passes of
backtracking and line search); ``Lz/30HVP`` = Lanczos / (30·HVP) (goal ≤ 1.2; the rest is the
reorthogonalisation, O(m²p) memory traffic in all).
Every column is measured in ``rounds`` interleaved rounds (median of medians); on a shared CPU
run with ``OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

from tinycurv import nn
from tinycurv.backend import asarray, get_default_dtype, set_default_dtype
from tinycurv.bench.common import BATCH, batch, median_time, mlp, table
from tinycurv.curvature.matrix_free import GGNOperator, lanczos
from tinycurv.functional import hvp, value_and_grad

HEADERS = (
    "n",
    "grad ms",
    "HVP ms",
    "GVP ms",
    "GVP* ms",
    "HF ms",
    "Lanczos ms",
    "GVP/grad",
    "GVP*/grad",
    "HF/pred",
    "HF/pred*",
    "Lz/30HVP",
)
CG_ITERATIONS, LANCZOS_STEPS = 10, 30


def run(
    sizes: Sequence[int] = (100, 400),
    markdown: bool = False,
    batch_size: int = BATCH,
    repeats: int = 5,
    rounds: int = 3,
    seed: int = 0,
) -> str:
    """Time the diagnostics' building blocks on the benchmark MLP and return the table.

    Parameters
    ----------
    sizes : sequence of int
        Hidden widths n.
    markdown : bool
        A Markdown table instead of aligned text.
    batch_size : int
        Samples per batch.
    repeats : int
        Timed runs per measurement (median), after one warm-up run.
    rounds : int
        Interleaved measurements of every column (median over rounds).
    seed : int
        Seeds the networks and the vectors.
    """
    return table(HEADERS, [_row(n, batch_size, repeats, rounds, seed) for n in sizes], markdown)


def _row(n: int, batch_size: int, repeats: int, rounds: int, seed: int) -> list:
    from tinycurv.optim.hessian_free import HessianFree

    previous = get_default_dtype()
    set_default_dtype("float32")
    try:
        model, hf_model = mlp(n, seed=seed), mlp(n, seed=seed)
        x, y = batch(batch_size, seed=seed + 1)
    finally:
        set_default_dtype(previous)
    loss_fn = nn.CrossEntropyLoss()
    params = model.parameters()
    closure = lambda: loss_fn(model(x), y)  # noqa: E731
    rng = np.random.default_rng(seed)
    v = [asarray(rng.standard_normal(p.shape), dtype=p.dtype) for p in params]
    G = GGNOperator(model, loss_fn, x)
    hf = HessianFree(hf_model, loss_fn, cg_max_iter=CG_ITERATIONS, progress_tol=0.0)
    timed = {
        "grad": lambda: value_and_grad(closure, params),
        "HVP": lambda: hvp(closure, params, v),
        "GVP": lambda: GGNOperator(model, loss_fn, x)(v),
        "GVP*": lambda: G(v),
        "HF": lambda: hf.step(x, y),
        "Lanczos": lambda: lanczos(lambda u: hvp(closure, params, u), params, LANCZOS_STEPS, 0),
    }
    samples: dict[str, list[float]] = {key: [] for key in timed}
    for _ in range(rounds):  # interleaved, so that a change of machine load hits every column
        for key, fn in timed.items():
            samples[key].append(median_time(fn, repeats=repeats, warmup=1) * 1e3)  # ms
    t = {key: statistics.median(values) for key, values in samples.items()}
    predicted = t["grad"] + CG_ITERATIONS * t["GVP"]
    strict = t["grad"] + CG_ITERATIONS * t["GVP*"]
    return [
        n, t["grad"], t["HVP"], t["GVP"], t["GVP*"], t["HF"], t["Lanczos"],
        t["GVP"] / t["grad"], t["GVP*"] / t["grad"], t["HF"] / predicted, t["HF"] / strict,
        t["Lanczos"] / (LANCZOS_STEPS * t["HVP"]),
    ]  # fmt: skip


if __name__ == "__main__":
    print(run())
