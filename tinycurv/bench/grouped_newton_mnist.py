"""GroupedNewton against Adam on the paper's MNIST MLP: a by-hand run, not a test.

A declared host-side helper (NumPy for the data, the clock). The network and the settings are
those of the reference code (``p-wol/GroupedNewton``, ``run_mlp_mnist.sh`` and
``training.py``):

* ``Perceptron`` with ``model.args='1024-200-100-10'``: ``training.py`` prepends the input size,
  so the layers are **784 → 1024 → 200 → 100 → 10**, tanh, log-softmax + NLL (cross-entropy);
  ``sigma_w=1, sigma_b=0``, no scaling: weights N(0, 1)/√fan_in, biases 0; S = 8 groups;
* inputs normalised by (x − 0.1307)/0.3081 (``datasets.py``), training batch 100;
* GroupedNewton: ``damping=.1`` (our ``lr``), ``damping_int=1.`` (``lam_int``),
  ``momentum=.9``, ``momentum_damp=.9`` (``dampening``), ``mom_lrs=.5`` (``lr_momentum``),
  ``period_hg=10`` (``update_every``), curvature batch 1000 (``hg.batch_size``), float32
  (``system.dtype=32``);
* Adam: ``lr=1e-3`` (PyTorch's defaults).

Usage::

    python -m tinycurv.bench.grouped_newton_mnist            # or
    from tinycurv.bench.grouped_newton_mnist import run; print(run("/data/mnist", epochs=1))
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinycurv import nn
from tinycurv.backend import asarray, get_default_dtype, set_default_dtype
from tinycurv.bench.common import table
from tinycurv.data import batches, load_mnist
from tinycurv.optim import Adam, GroupedNewton

LAYERS = (784, 1024, 200, 100, 10)


def perceptron(seed: int = 0, layers: Sequence[int] = LAYERS) -> nn.Sequential:
    """The reference's ``Perceptron``: tanh MLP, weights N(0, 1)/√fan_in, biases 0."""
    rng = np.random.default_rng(seed)
    modules: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
        lin = nn.Linear(n_in, n_out, rng=rng)
        w = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        lin.weight.data = asarray(w, dtype=lin.weight.dtype)
        lin.bias.data = asarray(np.zeros(n_out), dtype=lin.bias.dtype)
        modules.append(lin)
        if i < len(layers) - 2:
            modules.append(nn.Tanh())
    return nn.Sequential(*modules)


def _evaluate(model: nn.Module, X: Any, y: Any, chunk: int = 2000) -> tuple[float, float]:
    loss_fn, total, correct = nn.CrossEntropyLoss(), 0.0, 0
    for i in range(0, len(X), chunk):
        out = model(X[i : i + chunk])
        total += float(loss_fn(out, y[i : i + chunk]).data) * len(X[i : i + chunk])
        correct += int((np.argmax(np.asarray(out.data), axis=1) == y[i : i + chunk]).sum())
    return total / len(X), correct / len(X)


def run(
    directory: str = "/work/shared/data/mnist",
    epochs: int = 1,
    methods: Sequence[str] = ("GroupedNewton", "Adam"),
    curvature_batch: int = 1000,
    max_seconds: float = 240.0,
    seed: int = 0,
    markdown: bool = False,
    verbose: bool = True,
) -> str:
    """Train the MNIST MLP with each method for ``epochs`` epochs (or ``max_seconds``).

    Parameters
    ----------
    directory : str
        Folder of the four MNIST IDX files.
    epochs : int
        Epochs per method (``GroupedNewton.end_epoch`` is called after each).
    methods : sequence of str
        ``"GroupedNewton"`` and/or ``"Adam"``.
    curvature_batch : int
        Samples drawn from the training set for each GroupedNewton summary (reference: 1000).
    max_seconds : float
        Wall-time cap per method; training stops after the step that crosses it.
    seed : int
        Seeds the initialisation (the same network for every method) and the batch order.
    markdown : bool
        Format the table as Markdown.
    verbose : bool
        Print the running mean training loss every 100 steps.

    Returns
    -------
    str
        A table: method, steps, seconds, mean training loss of each epoch (partial epochs
        included), final test loss and accuracy, and for GroupedNewton the final rates.
    """
    before = get_default_dtype()
    set_default_dtype("float32")
    try:
        X, y, Xt, yt = load_mnist(directory)
        X = ((X - 0.1307) / 0.3081).astype(np.float32)
        Xt = asarray(((Xt - 0.1307) / 0.3081).astype(np.float32), dtype="float32")
        rows = []
        for method in methods:
            model = perceptron(seed)
            loss_fn = nn.CrossEntropyLoss()
            if method == "GroupedNewton":
                opt: Any = GroupedNewton(
                    model,
                    loss_fn,
                    curvature_batch=curvature_batch,
                    curvature_data=(X, y),
                    seed=seed,
                )
            elif method == "Adam":
                opt = Adam(model, loss_fn, lr=1e-3)
            else:
                raise ValueError(f"unknown method {method!r}: GroupedNewton or Adam")
            start, means, steps, stop = time.perf_counter(), [], 0, False
            for epoch in range(epochs):
                losses = []
                for xb, yb in batches(X, y, 100, rng=seed + epoch):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        losses.append(opt.step(xb, yb))
                    steps += 1
                    if verbose and steps % 100 == 0:
                        elapsed = time.perf_counter() - start
                        print(f"{method} step {steps}: mean loss {np.mean(losses[-100:]):.4f}"
                              f" ({elapsed:.0f} s)", flush=True)  # fmt: skip
                    if time.perf_counter() - start > max_seconds:
                        stop = True
                        break
                means.append(float(np.mean(losses)))
                if isinstance(opt, GroupedNewton) and not stop:
                    opt.end_epoch(means[-1])
                if stop:
                    break
            seconds = time.perf_counter() - start
            test_loss, test_acc = _evaluate(model, Xt, yt)
            rates = opt.state.get("rates") if isinstance(opt, GroupedNewton) else None
            rows.append(
                [
                    method,
                    steps,
                    seconds,
                    " / ".join(f"{m:.4f}" for m in means),
                    test_loss,
                    test_acc,
                    "-" if rates is None else " ".join(f"{r:.3g}" for r in rates),
                ]
            )
    finally:
        set_default_dtype(before)
    headers = [
        "method",
        "steps",
        "seconds",
        "train loss per epoch",
        "test loss",
        "test acc",
        "rates",
    ]
    return table(headers, rows, markdown=markdown)


if __name__ == "__main__":
    print(run())
