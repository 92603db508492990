"""Train several optimisers on one task and compare them (``tinycurv compare``).

A declared host-side module: it loads data, reads the clock, writes ``steps.csv`` and plots.
From a notebook::

    from tinycurv.compare import compare
    results = compare("digits-mlp", ["sgd", "kfac"], steps=200)
    print(results.table())

Every optimiser starts from the same initial weights (seeded by ``seed``) and sees the same
mini-batches in the same order; each runs with its documented default hyperparameters, the
table ``DEFAULTS`` below (override them with ``hyperparameters={"sgd": {"lr": 0.05}}``).
A run whose loss becomes NaN or infinite stops and is reported as "diverged"; the others go on.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinycurv import nn
from tinycurv.backend import asarray, asnumpy
from tinycurv.data import batches, load_digits, load_mnist, teacher_student
from tinycurv.tensor import no_grad

__all__ = ["DEFAULTS", "TASKS", "CompareError", "CompareResults", "Run", "Task", "compare"]

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
STEPS, BATCH_SIZE = 300, 64  # the defaults: every optimiser in DEFAULTS on digits-mlp

# --------------------------------------------------------------------------------------------
# The default hyperparameters: name → (class path, keyword arguments, why).
# Tuned on digits-mlp (batch 64, 300 steps); see BENCHMARKS.md and `tinycurv compare`.
# --------------------------------------------------------------------------------------------
DEFAULTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "sgd": (
        "tinycurv.optim.sgd.SGD",
        {"lr": 0.1, "momentum": 0.9},
        "heavy-ball baseline; lr 0.3 is better on digits (0.01) but 1.0 diverges: keep a margin",
    ),
    "adam": (
        "tinycurv.optim.adam.Adam",
        {"lr": 1e-2},
        "10× Kingma & Ba's 1e-3, which is too slow for 300 steps (digits loss 0.29 vs 0.03)",
    ),
    "kfac": (
        "tinycurv.optim.kfac.KFAC",
        {"lr": 0.3, "damping": 1e-2, "seed": 0},
        "MC Fisher factors, EMA 0.95; λ = 1e-2 adds √λ = 0.1 to each factor (1e-3 overfits)",
    ),
    "kfac-qmodel": (
        "tinycurv.optim.kfac.KFAC",
        {
            "step_rule": "qmodel",
            "adapt_damping": True,
            "damping": 1.0,
            "weight_decay": 1e-4,
            "seed": 0,
        },
        "M&G 2015 §6–7: α, μ from the exact-GGN quadratic model, λ by Levenberg–Marquardt every 5 "
        "steps from 1; wd 1e-4 floors the model's λ + η (wd 0: λ → 2e-6 by step 260 on digits, "
        "then μ > 1 and the loss jumps to 1e5)",
    ),
    "isaac": (
        "tinycurv.optim.isaac.ISAAC",
        {"lr": 0.3, "lam_a": 10.0, "momentum": 0.9},
        "ζ* (λ_g = ∞, inputs only) with the reference's λ_a = 10, on SGD momentum 0.9",
    ),
    "grouped-newton": (
        "tinycurv.optim.grouped_newton.GroupedNewton",
        {"lr": 0.1, "lam_int": 1.0, "momentum": 0.9},
        "the reference's MNIST settings (cubic damping 1, summary every 10 steps)",
    ),
    "sfn": (
        "tinycurv.optim.sfn.SeriesSFN",
        {"order": 20, "acceleration": 2, "damping": 1.0, "scale": "power"},
        "SeriesSFN's defaults: u ≈ (|H| + λI)⁻¹g by 20 terms + Wynn ε (k = 2), V = 0.75 × a "
        "power-iteration λ_max(H)²; cos ≥ 0.99, length ≥ 0.90 of exact SFN at λ = 1 on the digits "
        "MLP/CNN (BENCHMARKS_SFN.md); 38 HVPs + 2 (V) per step; λ adaptive from 1",
    ),
    "hessian-free": (
        "tinycurv.optim.hessian_free.HessianFree",
        {"min_damping": 1e-2},
        "Martens 2010 defaults; λ floor 1e-2 (without it λ → 1e-8 and each step overfits its "
        "batch: digits loss 0.22 vs 0.006)",
    ),
    "natural-gradient": (
        "tinycurv.optim.natural_gradient.NaturalGradient",
        {"lr": 0.3, "damping": 0.1},
        "exact Fisher (= GGN for softmax) by CG, ≤ 50 products; lr 1 / λ 1e-2 diverge on digits",
    ),
}


class CompareError(ValueError):
    """A bad request: unknown task or optimiser, or an optimiser that does not exist yet."""


# --------------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """A data set, a model and a loss; ``metric`` is ``"accuracy"`` or ``"test loss"``.

    ``hyperparameters`` overrides ``DEFAULTS`` for this task (per optimiser), where the defaults
    tuned on digits do not carry over; a caller's ``hyperparameters`` override both.
    """

    name: str
    description: str
    load: Callable[[str | None], Split]
    model: Callable[[np.random.Generator], nn.Module]
    loss: Callable[[], Any]
    metric: str
    hyperparameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _mlp(widths: Sequence[int], act: type[nn.Module], rng: np.random.Generator) -> nn.Sequential:
    """Linear layers of the given widths with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1], rng=rng))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _cnn(rng: np.random.Generator) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, rng=rng),  # (N, 8, 8, 8)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 8, 4, 4)
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10, rng=rng),
    )


def _autoencoder_data(directory: str | None) -> Split:
    X, _, Xt, _ = load_mnist(directory)
    return X, X, Xt, Xt  # the targets are the inputs


# Tuned for the autoencoder by a 100-step sweep (batch 64, seed 0; BENCHMARKS.md): the digits
# defaults diverge there (K-FAC lr 0.3, Adam lr 1e-2) or barely move (ISAAC λ_a = 10 ≈ SGD).
AUTOENCODER_HYPERPARAMETERS = {
    "sgd": {"lr": 0.01, "momentum": 0.9},
    "adam": {"lr": 3e-4},
    "kfac": {"lr": 0.03, "damping": 1e-2, "seed": 0},
    "isaac": {"lr": 0.1, "lam_a": 0.03, "momentum": 0.9},
    # λ₀ ∈ {150 (M&G's), 10} at M&G's η = 1e-5, 100 steps: 14.2 vs 8.6 (BENCHMARKS.md)
    "kfac-qmodel": {"damping": 10.0, "weight_decay": 1e-5},
}

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "digits-mlp",
            "8×8 digits, MLP 64–64–10 (tanh), cross-entropy",
            lambda d: load_digits(),
            lambda r: _mlp([64, 64, 10], nn.Tanh, r),
            nn.CrossEntropyLoss,
            "accuracy",
        ),
        Task(
            "digits-cnn",
            "8×8 digits, conv 1→8 3×3 + ReLU + max-pool 2 + linear, cross-entropy",
            lambda d: load_digits(image=True),
            _cnn,
            nn.CrossEntropyLoss,
            "accuracy",
        ),
        Task(
            "mnist-mlp",
            "MNIST, MLP 784–128–128–10 (ReLU), cross-entropy",
            load_mnist,
            lambda r: _mlp([784, 128, 128, 10], nn.ReLU, r),
            nn.CrossEntropyLoss,
            "accuracy",
        ),
        Task(
            "mnist-autoencoder",
            "MNIST autoencoder 784–1000–500–30–500–1000–784 (ReLU), MSE (ISAAC Fig. 2)",
            _autoencoder_data,
            lambda r: _mlp([784, 1000, 500, 30, 500, 1000, 784], nn.ReLU, r),
            nn.MSELoss,
            "test loss",
            AUTOENCODER_HYPERPARAMETERS,
        ),
        Task(
            "teacher-student",
            "tanh teacher 10–20–1, student 10–32–1 (tanh), MSE",
            lambda d: teacher_student(noise=0.1),
            lambda r: _mlp([10, 32, 1], nn.Tanh, r),
            nn.MSELoss,
            "test loss",
        ),
    )
}


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One optimiser's run: per-step losses and cumulative training times, and the outcome.

    ``status`` is ``"ok"``, ``"diverged"`` (NaN/inf loss: the run stopped) or ``"failed"`` (an
    exception; ``message`` says which).
    """

    optimizer: str
    hyperparameters: dict[str, Any]
    status: str = "ok"
    message: str = ""
    losses: list[float] = field(default_factory=list)
    wall_times: list[float] = field(default_factory=list)
    test_metric: float = math.nan
    total_time: float = 0.0

    @property
    def final_loss(self) -> float:
        """Mean training loss of the last 10 steps (NaN if none)."""
        return float(np.mean(self.losses[-10:])) if self.losses else math.nan

    @property
    def time_per_step(self) -> float:
        """Mean training time per step in seconds."""
        return self.wall_times[-1] / len(self.wall_times) if self.wall_times else math.nan


@dataclass
class CompareResults:
    """All runs of one ``compare`` call, and where its files went."""

    task: str
    metric: str
    runs: list[Run]
    out: Path | None = None
    files: list[Path] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """The per-step records: dicts with ``optimizer, step, wall_time, loss``."""
        return [
            {"optimizer": r.optimizer, "step": i + 1, "wall_time": t, "loss": loss}
            for r in self.runs
            for i, (t, loss) in enumerate(zip(r.wall_times, r.losses, strict=True))
        ]

    def table(self, markdown: bool = False) -> str:
        """The summary table: final train loss, test metric, time per step, total time."""
        from tinycurv.bench.common import table

        headers = ["optimizer", "final train loss", self.metric, "ms/step", "total s"]
        rows = []
        for r in self.runs:
            if r.status == "ok":
                metric = f"{r.test_metric:.4f}"
                loss = f"{r.final_loss:.4g}"
            else:
                metric = "—"
                loss = f"{r.status} (step {len(r.losses) + 1})"
            rows.append(
                [r.optimizer, loss, metric, f"{1e3 * r.time_per_step:.2f}", f"{r.total_time:.1f}"]
            )
        return table(headers, rows, markdown=markdown)


# --------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------
def resolve(name: str) -> tuple[type, dict[str, Any]]:
    """The class and default keyword arguments of optimiser ``name`` (imported on demand).

    Raises
    ------
    CompareError
        For an unknown name, or an optimiser whose module does not exist (yet).
    """
    if name not in DEFAULTS:
        raise CompareError(f"unknown optimizer {name!r}: choose from {', '.join(DEFAULTS)}")
    path, kwargs, _ = DEFAULTS[name]
    module, _, cls = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls), dict(kwargs)
    except (ImportError, AttributeError) as err:
        raise CompareError(f"optimizer {name!r} is not available: {path} ({err})") from err


def available_optimizers() -> list[str]:
    """The names in ``DEFAULTS`` whose class can be imported."""
    out = []
    for name in DEFAULTS:
        try:
            resolve(name)
            out.append(name)
        except CompareError:
            pass
    return out


def _evaluate(model: nn.Module, loss_fn: Any, X: np.ndarray, y: np.ndarray, metric: str) -> float:
    """Test accuracy or mean test loss, in chunks of 1000 samples."""
    total = 0.0
    with no_grad():
        for start in range(0, len(X), 1000):
            xb, yb = asarray(X[start : start + 1000]), asarray(y[start : start + 1000])
            out = model(xb)
            if metric == "accuracy":
                total += float((asnumpy(out.data).argmax(axis=1) == asnumpy(yb)).sum())
            else:
                total += float(asnumpy(loss_fn(out, yb).data)) * len(xb)
    return total / len(X)


def _train(
    name: str,
    task: Task,
    data: Split,
    steps: int,
    batch_size: int,
    seed: int,
    overrides: Mapping[str, Any],
    progress: bool,
) -> Run:
    """Train a fresh model with optimiser ``name`` for ``steps`` steps."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    cls, kwargs = resolve(name)
    kwargs.update(overrides)
    X, y, Xt, yt = data
    model, loss_fn = task.model(np.random.default_rng(seed)), task.loss()
    run = Run(name, kwargs)
    elapsed, epoch = 0.0, 0
    bar = tqdm(total=steps, desc=f"{task.name} {name}", disable=not progress, leave=True)
    try:
        opt = cls(model, loss_fn, **kwargs)
        with np.errstate(all="ignore"):  # divergence is detected from the loss, not warnings
            while len(run.losses) < steps:
                epoch_losses = []
                for xb, yb in batches(X, y, batch_size, rng=seed * 1000 + epoch):
                    t0 = time.perf_counter()
                    loss = opt.step(asarray(xb), asarray(yb))
                    elapsed += time.perf_counter() - t0
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"the loss is {loss}")
                    run.losses.append(loss)
                    run.wall_times.append(elapsed)
                    epoch_losses.append(loss)
                    bar.update()
                    if len(run.losses) % 10 == 0:
                        bar.set_postfix(loss=f"{np.mean(run.losses[-10:]):.4g}")
                    if len(run.losses) == steps:
                        break
                epoch += 1
                if hasattr(opt, "end_epoch") and len(run.losses) < steps:
                    opt.end_epoch(float(np.mean(epoch_losses)))
        run.test_metric = _evaluate(model, loss_fn, Xt, yt, task.metric)
    except (FloatingPointError, np.linalg.LinAlgError) as err:  # NonFiniteError is one
        run.status, run.message = "diverged", f"{type(err).__name__}: {err}"
    except Exception as err:  # report, and go on with the other optimisers
        run.status, run.message = "failed", f"{type(err).__name__}: {err}"
        traceback.print_exc()
    finally:
        bar.close()
    run.total_time = time.perf_counter() - start
    return run


def _write_csv(results: CompareResults, path: Path) -> None:
    """Write ``results.rows()`` to ``path`` through a temporary file, so that an interrupted
    write never leaves a truncated ``steps.csv``."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["optimizer", "step", "wall_time", "loss"])
        writer.writeheader()
        for row in results.rows():
            writer.writerow(
                {**row, "wall_time": f"{row['wall_time']:.6f}", "loss": repr(row["loss"])}
            )
    os.replace(partial, path)


def _check_count(name: str, value: Any, minimum: int) -> None:
    """CompareError unless ``value`` is an integer ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise CompareError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def _prepare_out(out: str | os.PathLike) -> Path:
    """Create the output folder and check that a file can be written there.

    Raises
    ------
    CompareError
        When the folder cannot be created or written (before any training).
    """
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".tinycurv-write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise CompareError(f"cannot write to the output folder {str(folder)!r}: {reason}") from err
    return folder


def compare(
    task: str = "digits-mlp",
    optimizers: Sequence[str] | None = None,
    steps: int = STEPS,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    progress: bool = True,
    hyperparameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> CompareResults:
    """Train each optimiser on ``task`` and collect losses, times and the test metric.

    Parameters
    ----------
    task : str
        One of ``TASKS``: digits-mlp, digits-cnn, mnist-mlp, mnist-autoencoder, teacher-student.
    optimizers : list of str, optional
        Names from ``DEFAULTS``; default: all whose module exists.
    steps, batch_size, seed : int
        Training steps per optimiser (epochs repeat as needed), mini-batch size, and the seed
        of the initial weights and of the batch order (the same for every optimiser).
    out : str or os.PathLike, optional
        Folder for ``steps.csv`` (columns optimizer, step, wall_time, loss),
        ``loss_per_step.png`` and ``loss_per_second.png``; None writes nothing. The folder is
        created and checked before any training, and ``steps.csv`` is rewritten after every
        run, so an interrupted comparison keeps the finished runs.
    data : str or os.PathLike, optional
        The MNIST folder (default: the environment variable ``TINYCURV_DATA``).
    progress : bool
        Show a tqdm progress bar per run.
    hyperparameters : dict, optional
        Per-optimiser keyword arguments overriding ``DEFAULTS`` and the task's own
        ``Task.hyperparameters``.

    Returns
    -------
    CompareResults
        The runs (``.runs``), the summary (``.table()``) and the written files (``.files``).

    Raises
    ------
    CompareError
        For an unknown task or optimiser name, here or as a key of ``hyperparameters`` (the
        message lists the valid ones), an optimiser named twice, ``steps`` or ``batch_size``
        below 1, a negative ``seed``, or an ``out`` folder that cannot be created or written.
    FileNotFoundError
        For an MNIST task without its data files.
    TypeError
        For ``optimizers`` given as one string rather than a list of names.
    """
    if task not in TASKS:
        raise CompareError(f"unknown task {task!r}: choose from {', '.join(TASKS)}")
    if isinstance(optimizers, str):
        raise TypeError(
            f"optimizers must be a list of names such as ['sgd', 'kfac'], got the string "
            f"{optimizers!r}"
        )
    names = list(optimizers) if optimizers is not None else available_optimizers()
    if not names:
        raise CompareError(f"no optimizer given: choose from {', '.join(DEFAULTS)}")
    for name in names:
        resolve(name)  # fail before any training
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CompareError(f"optimizer {', '.join(map(repr, twice))} given twice")
    _check_count("steps", steps, minimum=1)
    _check_count("batch_size", batch_size, minimum=1)
    _check_count("seed", seed, minimum=0)
    unknown = sorted(set(hyperparameters or {}) - set(DEFAULTS))
    if unknown:
        raise CompareError(
            f"hyperparameters for unknown optimizer {', '.join(map(repr, unknown))}: "
            f"choose from {', '.join(DEFAULTS)}"
        )
    spec = TASKS[task]
    split = spec.load(None if data is None else str(data))
    results = CompareResults(task, spec.metric, [])
    csv_path = None
    if out is not None:
        results.out = _prepare_out(out)  # a bad folder fails now, not after all the training
        csv_path = results.out / "steps.csv"
    overrides = hyperparameters or {}
    for n in names:
        run = _train(
            n,
            spec,
            split,
            steps,
            batch_size,
            seed,
            {**spec.hyperparameters.get(n, {}), **overrides.get(n, {})},
            progress,
        )
        results.runs.append(run)
        if csv_path is not None:  # after every run: an interrupted comparison keeps these
            _write_csv(results, csv_path)
    if results.out is not None and csv_path is not None:
        from tinycurv.plotting import plot_losses

        runs = results.runs
        labels = {r.optimizer: f"{r.optimizer} ({r.status})" for r in runs if r.status != "ok"}
        rows = results.rows()
        for x, fname, unit in (
            ("step", "loss_per_step.png", "per step"),
            ("time", "loss_per_second.png", "per second"),
        ):
            title = f"{task}: training loss {unit} (batch {batch_size}, seed {seed})"
            plot_losses(rows, x=x, path=results.out / fname, title=title, labels=labels)
        results.files = [
            csv_path,
            results.out / "loss_per_step.png",
            results.out / "loss_per_second.png",
        ]
    return results
