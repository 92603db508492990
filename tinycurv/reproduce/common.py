"""What every reproduction shares: the entry record, checks, data, progress bars, CSV, figures.

A declared host-side helper (NumPy on the host, the clock, files, matplotlib). An ``Entry``
names a paper, the figure or table, the paper's setting, the setting run here (full and
``--quick``) and why, the paper's claim in one sentence, and ``run(ctx) -> Result``. A
``Result`` holds the CSV rows, the figure and the ``Check``s of the claim; ``run_entry`` prints
the description, runs it, writes ``<out>/<name>.csv`` and ``<out>/<name>.png`` and prints each
check as ``PASS`` or ``FAIL`` with its numbers. A FAIL is a finding about the paper (or about
the scaled-down setting), not an error: the exit status stays 0.

MNIST comes from ``--data``, else ``$TINYCURV_DATA``, else ``../shared/data/mnist`` next to the
repository. Without it, ``--quick`` falls back to scikit-learn's digits upsampled to 28×28 (and
says so); the full settings refuse to run.
"""

from __future__ import annotations

import csv
import functools
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DPI = 130
REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_MNIST = REPOSITORY.parent / "shared" / "data" / "mnist"


class ReproduceError(RuntimeError):
    """An entry cannot run (missing data, a bad request): a one-line message, exit status 2."""


@dataclass
class Check:
    """One claim checked on a result: ``passed`` and the numbers that decided it."""

    claim: str
    passed: bool
    numbers: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}: {self.claim} — {self.numbers}"


@dataclass
class Result:
    """What an entry's run returns: CSV rows, the figure, the checks and free-form notes."""

    rows: list[dict[str, Any]]
    figure: Any
    checks: list[Check]
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    """How an entry is run: ``quick`` or full, where to write, progress bars, the MNIST folder."""

    quick: bool = False
    out: Path = Path("runs/reproduce")
    progress: bool = True
    data: str | None = None
    notes: list[str] = field(default_factory=list)

    def bar(self, total: int, desc: str) -> Any:
        """A tqdm progress bar on stderr (disabled by ``--quiet``); ``.update(k)``, ``.close()``."""
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, disable=not self.progress, leave=False, file=sys.stderr)

    def note(self, text: str) -> None:
        """A remark printed with the result (e.g. the data fallback)."""
        if text not in self.notes:
            self.notes.append(text)


@dataclass(frozen=True)
class Entry:
    """One reproduction: the paper, what it shows and claims, and how it is run here."""

    name: str
    paper: str
    figure: str
    paper_setting: str
    full: str
    quick: str
    why: str
    claim: str
    run: Callable[[Context], Result]


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def mnist_folder(data: str | None) -> Path | None:
    """The MNIST folder: ``data``, ``$TINYCURV_DATA`` or the shared one; None if none exists.

    A ``data`` folder given explicitly (``--data``) must exist (``ReproduceError``).
    """
    if data is not None and not Path(data).is_dir():
        raise ReproduceError(f"--data {data}: no such folder (it should hold the MNIST files)")
    for candidate in (data, os.environ.get("TINYCURV_DATA"), str(DEFAULT_MNIST)):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@functools.lru_cache(maxsize=2)
def _mnist(folder: str) -> tuple[np.ndarray, ...]:
    from tinycurv.data import load_mnist

    return load_mnist(folder)


@functools.lru_cache(maxsize=1)
def _digits_28() -> tuple[np.ndarray, ...]:
    """scikit-learn's 8×8 digits upsampled to 24×24 (3×3 blocks) and padded to 28×28."""
    from tinycurv.data import load_digits

    out = []
    for i, a in enumerate(load_digits(seed=0)):
        if i % 2 == 0:
            images = np.kron(a.reshape(-1, 8, 8), np.ones((1, 3, 3)))
            a = np.pad(images, ((0, 0), (2, 2), (2, 2))).reshape(len(a), 784)
        out.append(a)
    return tuple(out)


def mnist(ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, X_test, y_test)``: MNIST in [0, 1], (N, 784) float64 (the digits fallback in
    ``--quick`` mode when MNIST is missing); raises ``ReproduceError`` in the full setting."""
    folder = mnist_folder(ctx.data)
    if folder is not None:
        try:
            return _mnist(str(folder))  # type: ignore[return-value]
        except (FileNotFoundError, ValueError) as err:
            if not ctx.quick:
                raise ReproduceError(f"cannot load MNIST from {folder}: {err}") from err
    if not ctx.quick:
        raise ReproduceError(
            "MNIST not found: pass --data DIR or set TINYCURV_DATA (the four IDX files); "
            "--quick falls back to the digits data"
        )
    ctx.note("MNIST not found: scikit-learn's digits upsampled to 28×28 stand in (quick only)")
    return _digits_28()  # type: ignore[return-value]


def normalised(X: np.ndarray) -> np.ndarray:
    """The reference GroupedNewton code's MNIST normalisation ``(x − 0.1307)/0.3081``."""
    return (X - 0.1307) / 0.3081


# --------------------------------------------------------------------------------------------
# dtype, timing, evaluation
# --------------------------------------------------------------------------------------------
class default_dtype:
    """``with default_dtype("float32"):`` — the backend's default dtype inside the block."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def __enter__(self) -> None:
        from tinycurv.backend import get_default_dtype, set_default_dtype

        self.before = get_default_dtype()
        set_default_dtype(self.dtype)

    def __exit__(self, *exc: Any) -> None:
        from tinycurv.backend import set_default_dtype

        set_default_dtype(self.before)


def evaluate(model: Any, loss_fn: Any, X: np.ndarray, y: np.ndarray, chunk: int = 2000):
    """Mean loss and (for integer targets) accuracy of ``model`` on ``(X, y)``, in chunks."""
    from tinycurv.backend import asarray, asnumpy, get_default_dtype
    from tinycurv.tensor import no_grad

    total, correct = 0.0, 0
    dtype = get_default_dtype()
    with no_grad():
        for i in range(0, len(X), chunk):
            xb, yb = X[i : i + chunk], y[i : i + chunk]
            target = asarray(yb, dtype=dtype) if yb.dtype.kind == "f" else yb
            out = model(asarray(xb, dtype=dtype))
            total += float(asnumpy(loss_fn(out, target).data)) * len(xb)
            if yb.dtype.kind != "f":
                correct += int((np.argmax(asnumpy(out.data), axis=1) == yb).sum())
    return total / len(X), correct / len(X)


def batch_stream(X: np.ndarray, y: np.ndarray, batch: int, steps: int, seed: int):
    """``steps`` shuffled mini-batches, epoch after epoch (the same stream for every method)."""
    from tinycurv.data import batches

    done, epoch = 0, 0
    while done < steps:
        for xb, yb in batches(X, y, batch, rng=seed * 1000 + epoch, drop_last=True):
            yield xb, yb
            done += 1
            if done == steps:
                return
        epoch += 1


def train(
    opt: Any,
    X: np.ndarray,
    y: np.ndarray,
    batch: int,
    steps: int,
    seed: int,
    bar: Any = None,
    dtype: str | None = None,
) -> tuple[list[float], list[float]]:
    """``steps`` steps of ``opt`` on the shared batch stream: (losses, cumulative seconds).

    A step that raises ``NonFiniteError`` ends the run (a diverged method): the remaining
    losses are NaN. ``bar`` (optional) is advanced by one per step.
    """
    from tinycurv.backend import asarray, get_default_dtype
    from tinycurv.optim import NonFiniteError

    dtype = dtype or get_default_dtype()
    losses: list[float] = []
    clock: list[float] = []
    elapsed = 0.0
    for xb, yb in batch_stream(X, y, batch, steps, seed):
        target = asarray(yb, dtype=dtype) if yb.dtype.kind == "f" else yb
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():  # skipped steps warn; a diverged run shows as NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                loss = opt.step(asarray(xb, dtype=dtype), target)
        except NonFiniteError:
            loss = float("nan")
        elapsed += time.perf_counter() - t0
        losses.append(loss)
        clock.append(elapsed)
        if bar is not None:
            bar.update(1)
        if not np.isfinite(loss):
            missing = steps - len(losses)
            losses += [float("nan")] * missing
            clock += [elapsed] * missing
            if bar is not None:
                bar.update(missing)
            break
    return losses, clock


def finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if np.isfinite(v)]


def tail_mean(values: Sequence[float], fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of ``values`` (at least one); inf if any of them is not
    finite (a diverged run)."""
    k = max(1, int(round(fraction * len(values))))
    tail = np.asarray(values[-k:], dtype=float)
    return float(tail.mean()) if np.all(np.isfinite(tail)) else float("inf")


# --------------------------------------------------------------------------------------------
# figures and files
# --------------------------------------------------------------------------------------------
def figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (6.0, 4.2)) -> Any:
    """A bare matplotlib ``Figure`` (Agg; pyplot untouched) and its axes (always a 2-D array)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows as CSV, the columns in order of first appearance."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def _cell(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return f"{float(v):.6g}"
    return v


def lam_label(lam: float) -> str:
    """``1e-06`` as ``1e-6``, ``inf`` as ``∞``."""
    if np.isinf(lam):
        return "∞"
    if lam == 1:
        return "1"
    return f"{lam:.0e}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


# --------------------------------------------------------------------------------------------
# running an entry
# --------------------------------------------------------------------------------------------
def describe(entry: Entry, quick: bool) -> str:
    """The header printed before a run."""
    lines = [
        f"{entry.name}: {entry.paper}, {entry.figure}",
        f"  paper's setting: {entry.paper_setting}",
        f"  run here ({'--quick' if quick else 'full'}): {entry.quick if quick else entry.full}",
        f"  why: {entry.why}",
        f"  claim: {entry.claim}",
    ]
    return "\n".join(lines)


def run_entry(entry: Entry, ctx: Context) -> Result:
    """Run one entry: print its description, run it, write its CSV and PNG, print the checks."""
    print(describe(entry, ctx.quick), flush=True)
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.notes = []
    start = time.perf_counter()
    result = entry.run(ctx)
    seconds = time.perf_counter() - start
    csv_path, png_path = ctx.out / f"{entry.name}.csv", ctx.out / f"{entry.name}.png"
    write_csv(csv_path, result.rows)
    result.figure.savefig(png_path, dpi=DPI)
    for note in ctx.notes + result.notes:
        print(f"  note: {note}")
    for check in result.checks:
        print(f"  {check.line()}")
    verdict = "PASS" if all(c.passed for c in result.checks) else "FAIL"
    print(f"  {entry.name}: {verdict} ({seconds:.0f} s); wrote {csv_path}, {png_path}\n")
    sys.stdout.flush()
    return result
