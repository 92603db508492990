"""Benchmark of GroupedNewton: the summary's cost in gradients, and the amortised step.

A declared host-side helper (it reads the clock and uses NumPy for the data). For the 5-layer
benchmark MLP (784 → n → n → n → n → 10, ReLU; S = 10 groups, canonical partition) in float32
on a batch of 60, it measures

* ``grad``: one gradient, ``tinycurv.grad`` (one forward + backward);
* ``gH/grad``: ``g_bar`` and ``H_bar`` (one forward + backward on duals carrying S = 10
  tangent directions) in gradients; goal ≤ 2S + 2;
* ``D/grad``: the S third-order terms (one nested-dual forward sweep per group, lifting only
  the group's parameters) in gradients; goal ≤ 2S;
* ``step/grad``: a ``GroupedNewton.step`` averaged over T = 10 steps (one summary update among
  them, curvature on the training batch), in gradients, against the target
  ``1 + (gH + D)/T`` gradients; goal: ``step/target`` ≤ 1.2.

The four measurements are timed in alternation (medians over ``repeats`` rounds), so a
changing machine load skews them alike. Ratios are measured in one run; no test asserts on them.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from tinycurv import nn
from tinycurv.backend import asarray, get_default_dtype, set_default_dtype
from tinycurv.bench.common import batch, mlp, synchronize, table
from tinycurv.curvature.grouped import grouped_gradient_and_hessian, grouped_third_order
from tinycurv.functional import grad
from tinycurv.optim.grouped_newton import GroupedNewton

T = 10  # update_every


def _measure(n: int, repeats: int, cpu_time: bool) -> list[object]:
    before = get_default_dtype()
    set_default_dtype("float32")
    try:
        model = mlp(n)
        x, y = batch()
    finally:
        set_default_dtype(before)
    loss_fn = nn.CrossEntropyLoss()
    params = model.parameters()
    closure = lambda: loss_fn(model(x), y)
    rng = np.random.default_rng(2)
    u = [asarray(rng.standard_normal(p.shape), dtype=p.data.dtype) for p in params]
    S = len(params)

    # amortised step: blocks of T steps, each block starting with a summary update
    opt = GroupedNewton(model, loss_fn, update_every=T, lr=1e-3)

    def block() -> None:
        for _ in range(T):
            opt.step(x, y)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fallback eta = 0 changes nothing in the timing
        t_grad, t_gh, t_d, t_block = _interleaved_medians(
            [
                lambda: grad(closure, params),
                lambda: grouped_gradient_and_hessian(closure, params, u),
                lambda: grouped_third_order(closure, params, u),
                block,
            ],
            repeats,
            cpu_time,
        )
    t_step = t_block / T
    target = 1.0 + (t_gh + t_d) / t_grad / T
    return [
        n,
        sum(p.size for p in params),
        S,
        1e3 * t_grad,
        t_gh / t_grad,
        2 * S + 2,
        t_d / t_grad,
        2 * S,
        t_step / t_grad,
        target,
        t_step / t_grad / target,
    ]


def _interleaved_medians(
    fns: Sequence[Callable[[], object]], repeats: int, cpu_time: bool = False
) -> list[float]:
    """Median time of each function, timed in alternation (robust to a drifting load).

    Wall time, or with ``cpu_time`` the CPU time of this process (all threads; only meaningful
    on the NumPy backend, but steadier than wall time on a shared machine).
    """
    clock = time.process_time if cpu_time else time.perf_counter
    for fn in fns:  # warm-up
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            synchronize()
            t0 = clock()
            fn()
            synchronize()
            ts.append(clock() - t0)
    return [statistics.median(ts) for ts in times]


def run(
    sizes: Sequence[int] = (100, 400, 1600),
    markdown: bool = False,
    repeats: int = 7,
    cpu_time: bool = False,
) -> str:
    """Time the GroupedNewton summary and step for the benchmark MLP at each width.

    Parameters
    ----------
    sizes : sequence of int
        Hidden widths n of the 5-layer MLP.
    markdown : bool
        Format the table as Markdown.
    repeats : int
        Timed rounds (medians are reported).
    cpu_time : bool
        Time with the process's CPU time instead of wall time (NumPy on a busy machine).

    Returns
    -------
    str
        The table: gradient time (ms), the summary's parts in gradients with their goals, and
        the amortised step in gradients against ``1 + (summary)/T``.
    """
    rows = [_measure(int(n), repeats, cpu_time) for n in sizes]
    headers = [
        "n",
        "params",
        "S",
        "grad ms (CPU)" if cpu_time else "grad ms",
        "gH/grad",
        "goal",
        "D/grad",
        "goal",
        f"step/grad (T={T})",
        "target",
        "step/target",
    ]
    return table(headers, rows, markdown=markdown)


if __name__ == "__main__":
    print(run())
