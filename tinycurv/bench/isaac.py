"""Benchmark of ISAAC: step time and peak memory relative to SGD (the paper's Table 2 as ratios).

A declared host-side helper (it reads the clock, traces host allocations and uses NumPy for the
data). For the 5-layer benchmark MLP (784 → n → n → n → n → 10, ReLU; float32, batch 60,
cross-entropy) it measures, in one run,

* ``SGD ms``: the median wall time of one ``SGD.step``;
* ``ζ*/SGD``: one ``ISAAC`` step with ``lam_g = inf`` (all five layers conditioned by eq. 21);
  goals ≤ 1.15 at n = 400 and ≤ 1.05 at n = 1600;
* ``ζ/SGD``: one ``ISAAC`` step with a finite ``lam_g`` (eq. 20; one extra backward sweep with
  sampled labels);
* ``K-FAC/SGD``: one ``KFAC`` step with factors and their Cholesky factors recomputed every step
  (``factor_every = inv_every = 1``);
* ``mem …/SGD``: the peak of memory allocated *during* one step, relative to SGD's; goal for ζ*:
  within 5%. On NumPy, host memory (``tracemalloc``, which sees NumPy's allocations; BLAS/LAPACK
  workspaces are not traced); on CuPy, device memory (every allocation through CuPy's allocator,
  the cuSOLVER workspaces CuPy allocates included; cuBLAS's own workspace is not).
  ``SGD peak MB`` is SGD's own peak (MiB).

The steps of the four optimisers are timed in interleaved rounds (each round times every
optimiser on its own copy of the model), and each ratio is the median over the rounds, so slow
drifts of the machine affect all of them alike. No test asserts on these numbers.
"""

from __future__ import annotations

import statistics
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from tinycurv import nn
from tinycurv.backend import backend_name, get_backend, get_default_dtype, set_default_dtype
from tinycurv.bench.common import SIZES, batch, median_time, mlp, synchronize, table
from tinycurv.optim import ISAAC, KFAC, SGD

LR = 1e-3  # small, so that many timed steps stay finite
LAM_A, LAM_G = 1.0, 1.0
METHODS: dict[str, Callable[[Any, Any], Any]] = {
    "sgd": lambda model, loss: SGD(model, loss, lr=LR),
    "zeta_star": lambda model, loss: ISAAC(model, loss, lr=LR, lam_a=LAM_A),
    "zeta": lambda model, loss: ISAAC(model, loss, lr=LR, lam_a=LAM_A, lam_g=LAM_G),
    "kfac": lambda model, loss: KFAC(model, loss, lr=LR, damping=1e-2, factor_every=1, inv_every=1),
}
HEADERS = [
    "n",
    "SGD ms",
    "ζ*/SGD",
    "ζ/SGD",
    "K-FAC/SGD",
    "mem ζ*/SGD",
    "mem ζ/SGD",
    "mem K-FAC/SGD",
    "SGD peak MB",
]


def _float32(build: Callable[[], Any]) -> Any:
    """``build()`` with float32 as the default dtype (the benchmark's parameters and data)."""
    before = get_default_dtype()
    set_default_dtype("float32")
    try:
        return build()
    finally:
        set_default_dtype(before)


def _peak_bytes(step: Callable[[], Any]) -> int:
    """Peak of the host memory allocated during ``step()`` (tracemalloc), in bytes."""
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _peak_device_bytes(step: Callable[[], Any]) -> int:
    """Peak of the device memory allocated during ``step()`` (CuPy's memory pool), in bytes."""
    cupy = get_backend()
    pool = cupy.get_default_memory_pool()
    base, peak = pool.used_bytes(), [0]

    def malloc(size: int) -> Any:  # CuPy's allocator hook: every device allocation passes here
        memory = pool.malloc(size)
        peak[0] = max(peak[0], pool.used_bytes() - base)
        return memory

    with cupy.cuda.using_allocator(malloc):
        step()
        synchronize()
    return peak[0]


def _measure(n: int, rounds: int, repeats: int) -> list[object]:
    x, y = _float32(batch)
    loss_fn = nn.CrossEntropyLoss()
    optimizers = {name: build(_float32(lambda: mlp(n)), loss_fn) for name, build in METHODS.items()}
    steps = {name: (lambda opt=opt: opt.step(x, y)) for name, opt in optimizers.items()}
    for step in steps.values():  # buffers, factors and first-call costs before any timing
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(median_time(step, repeats=repeats, warmup=1))
    t = {name: statistics.median(ts) for name, ts in times.items()}
    row: list[object] = [n, 1e3 * t["sgd"]]
    row += [t[name] / t["sgd"] for name in ("zeta_star", "zeta", "kfac")]
    peak_bytes = _peak_bytes if backend_name() == "numpy" else _peak_device_bytes
    peak = {name: peak_bytes(step) for name, step in steps.items()}
    row += [peak[name] / peak["sgd"] for name in ("zeta_star", "zeta", "kfac")]
    row.append(peak["sgd"] / 2**20)
    return row


def run(
    sizes: Sequence[int] = SIZES, markdown: bool = False, rounds: int = 3, repeats: int = 3
) -> str:
    """Step time and peak step memory of ISAAC (ζ*, ζ) and K-FAC relative to SGD, as a table.

    Parameters
    ----------
    sizes : sequence of int
        Widths n of the hidden layers.
    markdown : bool
        A Markdown table instead of aligned text.
    rounds, repeats : int
        Interleaved rounds, and timed steps per optimiser and round (median of medians).

    Returns
    -------
    str
        One row per size; the columns are explained in the module docstring.
    """
    rows = [_measure(int(n), rounds, repeats) for n in sizes]
    return table(HEADERS, rows, markdown=markdown)
