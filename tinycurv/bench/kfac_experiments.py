"""K-FAC as Martens & Grosse published it (quadratic-model step, adaptive λ) against the baselines.

A declared host-side helper (host data, the clock, matplotlib). ``python -m
tinycurv.bench.kfac_experiments [--task mnist-autoencoder|digits-mlp] [--steps N] [--out DIR]``
trains SGD with momentum, Adam, ISAAC, K-FAC with a fixed step and ``kfac-qmodel``
(``step_rule="qmodel"``, ``adapt_damping=True``) on one task of ``tinycurv.compare`` with its
hyperparameters (``DEFAULTS`` and ``Task.hyperparameters``), the same initial weights and the
same mini-batches in the same order as ``tinycurv compare`` (so the losses are those of
``tinycurv compare --optimizers sgd,adam,isaac,kfac,kfac-qmodel``). Unlike ``compare``, the
optimisers are stepped **in turn** (one step of each on every batch), so a change of machine load
slows all of them alike; each step's wall time and CPU time (``time.process_time``) are kept.

It prints a Markdown table (loss at step 100, final training loss, test metric, wall and CPU
ms/step and their ratio to SGD's, steps and seconds to a target loss) and writes
``kfac_qmodel_<task>.png`` to ``--out`` (default docs/figures): the loss per step, per second,
and λ of the adaptive run against the step; ``--json FILE`` also keeps the runs.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tinycurv.backend import asarray, asnumpy
from tinycurv.bench.common import table
from tinycurv.compare import TASKS, _evaluate, resolve
from tinycurv.data import batches
from tinycurv.plotting import running_mean

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures"
OPTIMISERS = ("sgd", "adam", "isaac", "kfac", "kfac-qmodel")
SMOOTH = 10  # losses are running means over this many steps (as ``Run.final_loss``)


def train_in_turn(
    task: str,
    names: Sequence[str] = OPTIMISERS,
    steps: int = 300,
    batch_size: int = 64,
    seed: int = 0,
    data: str | None = None,
    hyperparameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every optimiser of ``names`` on ``task``, one step of each per mini-batch.

    Returns
    -------
    dict
        Per name: ``losses``, ``wall`` and ``cpu`` (cumulative seconds after each step),
        ``damping`` (λ after each step, NaN where the optimiser has none), ``test`` (the task's
        metric), ``status`` (``"ok"`` or ``"diverged at step k"``), ``kwargs``.
    """
    spec = TASKS[task]
    X, y, Xt, yt = spec.load(data)
    overrides = hyperparameters or {}
    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        cls, kwargs = resolve(name)
        kwargs.update({**spec.hyperparameters.get(name, {}), **overrides.get(name, {})})
        model, loss_fn = spec.model(np.random.default_rng(seed)), spec.loss()
        runs[name] = {
            "opt": cls(model, loss_fn, **kwargs),
            "model": model,
            "loss_fn": loss_fn,
            "kwargs": kwargs,
            "losses": [],
            "wall": [],
            "cpu": [],
            "damping": [],
            "status": "ok",
        }
    epoch, done = 0, 0
    with np.errstate(all="ignore"):
        while done < steps:
            epoch_losses: dict[str, list[float]] = {n: [] for n in runs}
            for xb, yb in batches(X, y, batch_size, rng=seed * 1000 + epoch):
                xb, yb = asarray(xb), asarray(yb)
                for name, r in runs.items():
                    if r["status"] != "ok":
                        continue
                    w0, c0 = time.perf_counter(), time.process_time()
                    loss = r["opt"].step(xb, yb)
                    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                    if not math.isfinite(loss):
                        r["status"] = f"diverged at step {len(r['losses']) + 1}"
                        continue
                    r["losses"].append(loss)
                    r["wall"].append(wall + (r["wall"][-1] if r["wall"] else 0.0))
                    r["cpu"].append(cpu + (r["cpu"][-1] if r["cpu"] else 0.0))
                    lam = r["opt"].state.get("damping") if hasattr(r["opt"], "state") else None
                    r["damping"].append(math.nan if lam is None else float(asnumpy(lam).ravel()[0]))
                    epoch_losses[name].append(loss)
                done += 1
                if done == steps:
                    break
            epoch += 1
            for name, r in runs.items():
                if hasattr(r["opt"], "end_epoch") and done < steps and r["status"] == "ok":
                    r["opt"].end_epoch(float(np.mean(epoch_losses[name])))
    for r in runs.values():
        ok = r["status"] == "ok"
        r["test"] = _evaluate(r["model"], r["loss_fn"], Xt, yt, spec.metric) if ok else math.nan
        for key in ("opt", "model", "loss_fn"):
            del r[key]
    return runs


def time_to_target(r: Mapping[str, Any], target: float) -> tuple[int | None, float, float]:
    """(step, wall s, CPU s) at which the running mean of ``SMOOTH`` losses first is ≤ target."""
    mean = running_mean(r["losses"], SMOOTH)
    hits = np.nonzero(mean[SMOOTH - 1 :] <= target)[0]
    if hits.size == 0:
        return None, math.nan, math.nan
    i = int(hits[0]) + SMOOTH - 1
    return i + 1, r["wall"][i], r["cpu"][i]


def summary(task: str, runs: Mapping[str, Mapping[str, Any]], target: float) -> str:
    """The Markdown table of ``train_in_turn``'s runs (times relative to SGD's)."""
    metric = TASKS[task].metric
    ref = runs.get("sgd")
    ref_wall = ref["wall"][-1] / len(ref["wall"]) if ref and ref["wall"] else math.nan
    ref_cpu = ref["cpu"][-1] / len(ref["cpu"]) if ref and ref["cpu"] else math.nan
    headers = [
        "optimizer",
        "loss at step 100",
        "final train loss",
        metric,
        "ms/step (wall)",
        "ms/step (CPU)",
        "× SGD (CPU)",
        f"steps to {target:g}",
        f"s to {target:g} (CPU)",
    ]
    rows = []
    for name, r in runs.items():
        n = len(r["losses"])
        mean = running_mean(r["losses"], SMOOTH)
        wall = r["wall"][-1] / n if n else math.nan
        cpu = r["cpu"][-1] / n if n else math.nan
        step, _, cpu_s = time_to_target(r, target)
        final = f"{mean[-1]:.4g}" if r["status"] == "ok" else r["status"]
        rows.append(
            [
                name,
                f"{mean[99]:.4g}" if n >= 100 else "—",
                final,
                f"{r['test']:.4g}",
                f"{1e3 * wall:.1f}",
                f"{1e3 * cpu:.1f}",
                f"{cpu / ref_cpu:.2f}",
                "—" if step is None else str(step),
                "—" if step is None else f"{cpu_s:.3g}",
            ]
        )
    note = f"(SGD: {1e3 * ref_wall:.1f} ms/step wall.)" if ref else ""
    return table(headers, rows, markdown=True) + ("\n\n" + note if note else "")


def plot(task: str, runs: Mapping[str, Mapping[str, Any]], out: Path, batch_size: int) -> Path:
    """Loss per step, per CPU second, and λ of the adaptive runs: ``kfac_qmodel_<task>.png``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.4))
    axes = fig.subplots(1, 3)
    for i, (name, r) in enumerate(runs.items()):
        if not r["losses"]:
            continue
        mean, color = running_mean(r["losses"], SMOOTH), f"C{i}"
        steps = np.arange(1, len(mean) + 1)
        axes[0].plot(steps, mean, color=color, label=name)
        axes[1].plot(r["cpu"], mean, color=color, label=name)
        lam = np.asarray(r["damping"], dtype=float)
        if r["kwargs"].get("adapt_damping") and np.isfinite(lam).any():
            axes[2].plot(steps, lam, color=color, label=f"{name} (adaptive λ)")
        elif "damping" in r["kwargs"]:
            axes[2].axhline(r["kwargs"]["damping"], color=color, ls="--", label=f"{name} (fixed λ)")
    title = f"{task} (batch {batch_size}, seed 0)"
    axes[0].set(xlabel="training step", ylabel=f"training loss (running mean of {SMOOTH})",
                yscale="log", title=f"{title}: loss per step")  # fmt: skip
    axes[1].set(xlabel="training time (CPU s, log scale)", xscale="log",
                ylabel=f"training loss (running mean of {SMOOTH})", yscale="log",
                title=f"{title}: loss per second")  # fmt: skip
    axes[2].set(xlabel="training step", ylabel="damping λ (log scale)", yscale="log",
                title="λ over training (Levenberg–Marquardt, M&G §6.5)")  # fmt: skip
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"kfac_qmodel_{task}.png"
    fig.savefig(path, dpi=130)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist-autoencoder", choices=sorted(TASKS))
    parser.add_argument("--optimizers", default=",".join(OPTIMISERS))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--target", type=float, help="the target loss (default: per task)")
    parser.add_argument("--data", help="the MNIST folder (default: $TINYCURV_DATA)")
    parser.add_argument("--out", default=str(FIGURES))
    parser.add_argument("--json", help="also write the runs (losses, times, λ) to this file")
    args = parser.parse_args(argv)
    names = [n for n in args.optimizers.split(",") if n]
    target = args.target or {"mnist-autoencoder": 10.0}.get(args.task, 0.1)
    t0 = time.perf_counter()
    runs = train_in_turn(args.task, names, args.steps, args.batch_size, data=args.data)
    print(f"{args.task}: {args.steps} steps, batch {args.batch_size}, seed 0 "
          f"({time.perf_counter() - t0:.0f} s)\n")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(runs))
    print(summary(args.task, runs, target), "\n")
    for name, r in runs.items():
        lam = [v for v in r["damping"] if math.isfinite(v)]
        if r["kwargs"].get("adapt_damping") and lam:
            print(f"{name}: λ from {r['kwargs'].get('damping')} to {lam[-1]:.3g} "
                  f"(min {min(lam):.3g}, max {max(lam):.3g})")  # fmt: skip
    print(plot(args.task, runs, Path(args.out), args.batch_size))


if __name__ == "__main__":
    main()
