"""Loss curves of optimisers, per step or per second (used by ``tinycurv compare`` and tutorials).

A declared host-side module: it draws with matplotlib on host data. ``records`` are the rows of
``steps.csv`` — dicts with the keys ``optimizer``, ``step``, ``wall_time`` and ``loss`` — or a
mapping ``{label: {"step": [...], "wall_time": [...], "loss": [...]}}``::

    from tinycurv.plotting import plot_losses, read_steps_csv
    fig = plot_losses(read_steps_csv("runs/digits-mlp/steps.csv"), x="time", path="loss.png")

Minibatch losses are noisy, so each curve is drawn faintly as measured and boldly as a running
mean over ``smooth`` steps.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["plot_losses", "read_steps_csv", "running_mean"]

X_AXES = {
    "step": ("step", "training step"),
    "time": ("wall_time", "training time (s, log scale)"),  # methods differ by orders of magnitude
}


def read_steps_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``steps.csv`` file as dicts (``step`` int, ``wall_time`` and ``loss`` float)."""
    with open(path, newline="") as f:
        return [
            {
                "optimizer": row["optimizer"],
                "step": int(row["step"]),
                "wall_time": float(row["wall_time"]),
                "loss": float(row["loss"]),
            }
            for row in csv.DictReader(f)
        ]


def running_mean(values: Any, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or v.size == 0:
        return v
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, v.size + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def _series(records: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]]) -> dict:
    """``{label: {"step": array, "wall_time": array, "loss": array}}`` from either input form."""
    columns = ("step", "wall_time", "loss")
    if isinstance(records, Mapping):
        return {k: {c: np.asarray(v[c], dtype=float) for c in columns} for k, v in records.items()}
    out: dict[str, dict[str, list[float]]] = {}
    for row in records:
        s = out.setdefault(str(row["optimizer"]), {c: [] for c in columns})
        for c in columns:
            s[c].append(float(row[c]))
    return {k: {c: np.asarray(v) for c, v in s.items()} for k, s in out.items()}


def plot_losses(
    records: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    x: str = "step",
    path: str | os.PathLike | None = None,
    title: str = "training loss",
    smooth: int = 10,
    labels: Mapping[str, str] | None = None,
) -> Any:
    """Plot the training loss of each optimiser against steps or wall-clock seconds.

    Parameters
    ----------
    records : list of dict or dict of dict
        Rows with ``optimizer``, ``step``, ``wall_time``, ``loss`` (as in ``steps.csv``), or
        ``{label: {"step": …, "wall_time": …, "loss": …}}``.
    x : {"step", "time"}
        The horizontal axis: step number, or cumulative training time in seconds (log scale).
    path : str or os.PathLike, optional
        Where to save the figure (PNG by its suffix); then the figure is not a pyplot figure,
        so nothing is shown and matplotlib's backend is left as it was.
    title : str
        The figure title (name the task in it).
    smooth : int
        Window of the running mean drawn over the raw minibatch losses (1: raw only).
    labels : dict, optional
        Legend text per optimiser (e.g. ``{"kfac": "kfac (diverged)"}``); default: the name.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    if path is None:  # a pyplot figure, shown by the notebook or plt.show()
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(7, 4.5))
    else:  # a bare Figure, drawn by Agg: no display, no change to pyplot's backend
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    column, xlabel = X_AXES[x]
    labels = labels or {}
    low, high = np.inf, 0.0
    for i, (name, s) in enumerate(_series(records).items()):
        loss = s["loss"]
        keep = np.isfinite(loss) & (loss > 0)  # log scale: positive, finite losses only
        if not keep.any():
            continue
        xs, ys, color = s[column][keep], loss[keep], f"C{i % 10}"
        with np.errstate(over="ignore", invalid="ignore"):
            mean = running_mean(ys, smooth)
        mean[~np.isfinite(mean)] = np.nan
        ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(xs, mean, color=color, label=labels.get(name, name))
        low, high = min(low, ys.min()), max(high, 2 * ys[: max(smooth, 1)].max())
    if high > 0:  # from the smallest loss to 2× the initial ones: a diverged run is cut off
        ax.set_ylim(0.8 * low, max(high, 1.25 * low))
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    if x == "time":
        ax.set_xscale("log")
    ax.set_ylabel(
        "training loss" + (f" (bold: running mean of {smooth} steps)" if smooth > 1 else "")
    )
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
