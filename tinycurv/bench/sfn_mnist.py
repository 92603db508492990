"""SeriesSFN against Adam on an MNIST MLP (784 → 100 → 10, tanh): a by-hand run, not a test.

A declared host-side helper (NumPy for the data, the clock). Both methods train the same
initial network (``nn.Linear``'s PyTorch-like initialisation, seeded) on the same shuffled
batches, inputs normalised by (x − 0.1307)/0.3081, for ``epochs`` epochs or until
``max_seconds`` have passed:

* ``SeriesSFN`` with its defaults (the reference's ``OursAdaptive``: N = 20 terms, Wynn's ε of
  order 1, adaptive α, μ and λ from λ₀ = 1, V by the running max of ‖H²g‖/‖g‖ from 100),
  updated by ``sfn_options``;
* ``SeriesSFN-fixed``: the same with ``adaptive=False`` (α = 1, μ = 0.5, λ = 1 fixed; the
  reference's ``OursUnadaptive`` but damped), updated by ``sfn_options``;
* ``Adam`` with ``lr = 1e-3`` (PyTorch's defaults otherwise).

Reported per method: steps, wall seconds (training only), the mean batch loss of the last 20
steps, the loss on the whole training set and the test loss and accuracy at the end.

One run (batch 500, float32, NumPy on a shared 2-core CPU with OPENBLAS_NUM_THREADS=1, load
≈ 12): SeriesSFN (adaptive) stopped by the 3-minute cap after 107 steps — train loss 0.278,
test accuracy 91.0%; SeriesSFN-fixed, 1 epoch (120 steps) in 109 s — 0.148, 95.5%; Adam, 1 epoch
in 1.4 s — 0.272, 92.4%. Per step the series methods cost ~40 HVPs (≈ 100× an Adam step here).

Usage::

    python -m tinycurv.bench.sfn_mnist                       # or
    from tinycurv.bench.sfn_mnist import run; print(run("/data/mnist", batch_size=500))
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinycurv import nn
from tinycurv.backend import asarray, get_default_dtype, set_default_dtype
from tinycurv.bench.common import table
from tinycurv.data import batches, load_mnist

DEFAULT_DIRECTORY = "/work/shared/data/mnist"
HEADERS = ("method", "batch", "steps", "seconds", "last-20 loss", "train loss", "test loss",
           "test acc")  # fmt: skip


def mlp(seed: int = 0, hidden: int = 100) -> nn.Sequential:
    """784 → hidden → 10 with tanh."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(784, hidden, rng=rng), nn.Tanh(), nn.Linear(hidden, 10, rng=rng))


def evaluate(model: nn.Module, X: Any, y: np.ndarray, chunk: int = 5000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(X, y)``."""
    loss_fn, total, correct = nn.CrossEntropyLoss(), 0.0, 0
    for i in range(0, len(X), chunk):
        xb, yb = X[i : i + chunk], y[i : i + chunk]
        out = model(xb)
        total += float(loss_fn(out, yb).item()) * len(xb)
        correct += int((np.argmax(out.numpy(), axis=1) == yb).sum())
    return total / len(X), correct / len(X)


def run(
    directory: str | os.PathLike | None = None,
    batch_size: int = 500,
    epochs: int = 1,
    max_seconds: float = 180.0,
    methods: Sequence[str] = ("SeriesSFN", "SeriesSFN-fixed", "Adam"),
    sfn_options: dict[str, Any] | None = None,
    adam_lr: float = 1e-3,
    seed: int = 0,
    dtype: str = "float32",
    markdown: bool = False,
    verbose: bool = True,
) -> str:
    """Train the MNIST MLP with each method and return a table of the results.

    Parameters
    ----------
    directory : str or path-like, optional
        Folder of the four MNIST IDX files; default ``$TINYCURV_DATA``, else
        ``/work/shared/data/mnist``.
    batch_size : int
        Samples per step (the same batches for every method).
    epochs : int
        Epochs per method.
    max_seconds : float
        Wall-time cap per method: training stops after the step that crosses it.
    methods : sequence of str
        Any of ``"SeriesSFN"``, ``"SeriesSFN-fixed"`` and ``"Adam"``.
    sfn_options : dict, optional
        Keyword arguments of ``SeriesSFN`` for both SeriesSFN methods (default: none).
    adam_lr : float
        Adam's learning rate.
    seed : int
        Seeds the initialisation (one network for every method) and the batch order.
    dtype : str
        ``"float32"`` or ``"float64"``.
    markdown : bool
        Format the table as Markdown.
    verbose : bool
        Print progress every 20 steps.

    Returns
    -------
    str
        One row per method.
    """
    from tinycurv.optim import Adam, SeriesSFN

    folder = directory or os.environ.get("TINYCURV_DATA") or DEFAULT_DIRECTORY
    before = get_default_dtype()
    set_default_dtype(dtype)
    try:
        X, y, Xt, yt = load_mnist(folder)
        X = asarray(((X - 0.1307) / 0.3081).astype(dtype), dtype=dtype)
        Xt = asarray(((Xt - 0.1307) / 0.3081).astype(dtype), dtype=dtype)
        X_host = np.arange(len(y))  # batches() shuffles indices on the host
        rows = []
        for method in methods:
            model = mlp(seed)
            loss_fn = nn.CrossEntropyLoss()
            if method in ("SeriesSFN", "SeriesSFN-fixed"):
                options = {"adaptive": method == "SeriesSFN", **(sfn_options or {})}
                opt: Any = SeriesSFN(model, loss_fn, **options)
            elif method == "Adam":
                opt = Adam(model, loss_fn, lr=adam_lr)
            else:
                raise ValueError(f"unknown method {method!r}: SeriesSFN, SeriesSFN-fixed or Adam")
            losses, skipped, start, stop = [], 0, time.perf_counter(), False
            for epoch in range(epochs):
                for idx, yb in batches(X_host, y, batch_size, rng=seed + epoch):
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", RuntimeWarning)
                        losses.append(opt.step(X[asarray(idx, dtype="int64")], yb))
                    skipped += sum("skipped" in str(w.message) for w in caught)
                    elapsed = time.perf_counter() - start
                    if verbose and len(losses) % 20 == 0:
                        extra = ""
                        if method.startswith("SeriesSFN"):
                            s = opt.state
                            extra = (f" λ {s['damping']:.3g} V {s['V']:.3g}"
                                     f" α {s.get('alpha', float('nan')):.3g}"
                                     f" μ {s.get('mu', float('nan')):.3g}")  # fmt: skip
                        print(f"{method} step {len(losses)}: mean loss "
                              f"{np.mean(losses[-20:]):.4f} ({elapsed:.0f} s){extra}",
                              flush=True)  # fmt: skip
                    if elapsed > max_seconds:
                        stop = True
                        break
                if stop:
                    break
            seconds = time.perf_counter() - start
            train_loss, _ = evaluate(model, X, y)
            test_loss, test_acc = evaluate(model, Xt, yt)
            notes = [f"{skipped} skipped"] if skipped else []
            if opt.state.get("rejected"):
                notes.append(f"{opt.state['rejected']} undone")
            name = f"{method} ({', '.join(notes)})" if notes else method
            rows.append([name, batch_size, len(losses), seconds, float(np.mean(losses[-20:])),
                         train_loss, test_loss, test_acc])  # fmt: skip
    finally:
        set_default_dtype(before)
    return table(HEADERS, rows, markdown=markdown)


if __name__ == "__main__":
    print(run())
