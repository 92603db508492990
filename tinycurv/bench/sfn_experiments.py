"""The saddle-free Newton experiments at CPU scale: direction accuracy, the paper's figures.

A declared host-side helper (NumPy on the host, the clock, matplotlib). ``python -m
tinycurv.bench.sfn_experiments [accuracy|toy|accelerators|training|all] [--out DIR]`` prints
Markdown tables (for BENCHMARKS_SFN.md) and writes PNGs to ``--out`` (default docs/figures):

* ``accuracy``: how closely the series direction ``u`` approximates the exact
  ``(|H| + λI)⁻¹g`` (cosine and length ratio) for each scale rule, N, k and λ, on the digits
  MLP (64–32–10 tanh) and CNN at points of an Adam training run, and the cost in HVPs;
* ``toy``: the reference's surface ``f(x, y) = (2x + y)(x − y) + 3xy``: SGD, Newton, exact SFN
  and the series' partial sums (V = 25, N = 1…5), one step and five (``sfn_toy_surface.png``);
* ``accelerators``: a 100-D symmetric Gaussian H, V = 1000: the plain series against Wynn's ε
  (k = 1, 2), error, cosine and length against N (``sfn_accelerators.png``);
* ``training``: full-batch regression on scikit-learn's diabetes data (MLP of ≈ 1k parameters)
  and the digits classifier (64–8–10, full batch): SGD, Adam, K-FAC, ExactSFN (both adaptive
  rules, a third of the steps), SeriesSFN with each scale rule and both adaptive rules
  (``sfn_training_<task>.png`` and its data ``sfn_training_<task>.csv``; ``--replot`` draws
  the PNGs again from the CSVs without training).

This module is the one implementation of these experiments: the ``tinycurv reproduce`` entries
``sfn-toy``, ``sfn-accelerators`` and ``sfn-diabetes`` (``tinycurv.reproduce.sfn``) call its
``toy_paths``, ``accelerator_rows``, ``train_full_batch`` and figure functions.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tinycurv import nn
from tinycurv.backend import asarray, asnumpy
from tinycurv.bench.common import table
from tinycurv.curvature import dense
from tinycurv.curvature import sfn as sfn_math
from tinycurv.data import batches, load_digits
from tinycurv.functional import grad, hvp

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures"
ORDERS, ACCELERATIONS, DAMPINGS = (5, 10, 20), (0, 1, 2), (1.0, 0.1, 0.01)
CHECKPOINTS = (16, 100, 400)  # Adam steps before each measurement
DPI = 150  # the figures


# --------------------------------------------------------------------------------------------
# networks and data
# --------------------------------------------------------------------------------------------
def digits_mlp(rng: np.random.Generator, hidden: int = 32) -> nn.Sequential:
    """64–hidden–10 tanh (2,410 parameters for hidden = 32)."""
    return nn.Sequential(nn.Linear(64, hidden, rng=rng), nn.Tanh(), nn.Linear(hidden, 10, rng=rng))


def digits_cnn(rng: np.random.Generator) -> nn.Sequential:
    """conv 1→8 3×3 + ReLU + max-pool 2 + linear (1,370 parameters; ``tinycurv compare``'s)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10, rng=rng),
    )


def _flat(arrays: Sequence[Any]) -> np.ndarray:
    return np.concatenate([np.ravel(asnumpy(a)) for a in arrays])


def _cos_ratio(u: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    nu, ne = np.linalg.norm(u), np.linalg.norm(exact)
    return float(u @ exact / (nu * ne)), float(nu / ne)


# --------------------------------------------------------------------------------------------
# B1: direction accuracy
# --------------------------------------------------------------------------------------------
def scale_rules(H_hvp: Callable, g: list, params: list, seed: int = 0) -> dict[str, float]:
    """V of each scale rule of ``SeriesSFN`` at one point (the first step of a run).

    ``running-max``: ``max(100, ‖H²g‖/‖g‖)``; ``power``: ``max(0.75 × 20 power iterations from
    a random start, ‖H²g‖/‖g‖)`` (the default, at a refresh); ``V=10``: a fixed float.
    """
    H2g = H_hvp(H_hvp(g))
    ratio = float(np.linalg.norm(_flat(H2g)) / np.linalg.norm(_flat(g)))
    estimate, _ = sfn_math.power_iteration(
        H_hvp, sfn_math.random_start([p.data for p in params], seed), 20
    )
    return {
        "running-max": max(100.0, ratio),
        "power": max(0.75 * float(asnumpy(estimate)), ratio),
        "V=10": 10.0,
    }


def accuracy_points(
    kind: str, checkpoints: Sequence[int] = CHECKPOINTS, batch: int = 64, seed: int = 0
) -> list[dict[str, Any]]:
    """Train the digits ``kind`` ("mlp" or "cnn") with Adam (lr 1e-2, batch 64) and, at each
    checkpoint, measure every (rule, N, k, λ) against the exact direction on a fresh batch."""
    from tinycurv.optim import Adam

    X, y, _, _ = load_digits(image=kind == "cnn")
    rng = np.random.default_rng(seed)
    model = digits_mlp(rng) if kind == "mlp" else digits_cnn(rng)
    loss_fn = nn.CrossEntropyLoss()
    opt = Adam(model, loss_fn, lr=1e-2)
    params = model.parameters()
    pick = np.random.default_rng(seed + 1)
    out, done, epoch = [], 0, 0
    for target in checkpoints:
        while done < target:
            for xb, yb in batches(X, y, batch, rng=seed * 1000 + epoch):
                opt.step(asarray(xb), asarray(yb))
                done += 1
                if done == target:
                    break
            else:
                epoch += 1
        idx = pick.choice(len(X), batch, replace=False)
        xb, yb = asarray(X[idx]), asarray(y[idx])
        closure = lambda: loss_fn(model(xb), yb)  # noqa: B023, E731
        H = dense.hessian(closure, params)
        H = 0.5 * (H + H.T)
        g = grad(closure, params)
        g_flat = dense.flatten(g)
        H_hvp = lambda vs, H=H: dense.unflatten(H @ dense.flatten(vs), params)  # noqa: E731
        eigenvalues = asnumpy(np.linalg.eigvalsh(asnumpy(H)))
        V = scale_rules(lambda vs, c=closure: hvp(c, params, vs), g, params, seed)
        for lam in DAMPINGS:
            exact = asnumpy(sfn_math.abs_hessian_inverse(H, g_flat, lam))
            cos_g, len_g = _cos_ratio(asnumpy(g_flat), exact)
            out.append(
                dict(kind=kind, t=target, lam=lam, rule="gradient", N=0, k=0, cos=cos_g,
                     ratio=len_g, lam_max2=float(np.max(eigenvalues**2)),
                     negative=float(np.mean(eigenvalues < 0)), V=math.nan)
            )  # fmt: skip
            for rule, V_rule in V.items():
                for N in ORDERS:
                    for k in ACCELERATIONS:
                        if N < 2 * k + 1:
                            continue
                        try:
                            u = sfn_math.series_operator(H_hvp, g, N, V_rule, lam, k)
                            c, r = _cos_ratio(_flat(u), exact)
                        except ValueError:  # the series grows: V too small
                            c, r = math.nan, math.nan
                        out.append(
                            dict(kind=kind, t=target, lam=lam, rule=rule, N=N, k=k, cos=c,
                                 ratio=r, lam_max2=float(np.max(eigenvalues**2)),
                                 negative=float(np.mean(eigenvalues < 0)), V=V_rule)
                        )  # fmt: skip
    return out


def _hvp_cost(rule: str, N: int) -> str:
    """HVPs per step of the direction: the series' 2(N − 1), plus the scale rule's."""
    series = 2 * (N - 1)
    if rule == "power":
        return f"{series} + 20/10"  # 20 power iterations every scale_every = 10 steps
    return str(series)


def accuracy_table(points: list[dict[str, Any]], markdown: bool = True) -> str:
    """Worst case over the checkpoints of cos and length ratio, per (rule, N, k) and λ, net."""
    kinds = sorted({p["kind"] for p in points}, reverse=True)  # mlp, cnn
    headers = ["rule", "N", "k", "HVPs"]
    headers += [f"{kind} λ={lam:g}" for lam in DAMPINGS for kind in kinds]
    keys = []
    for p in points:
        key = (p["rule"], p["N"], p["k"])
        if key not in keys:
            keys.append(key)
    rows = []
    for rule, N, k in keys:
        row = [rule, N or "—", k if N else "—", _hvp_cost(rule, N) if N else "0"]
        for lam in DAMPINGS:
            for kind in kinds:
                sel = [
                    p for p in points
                    if (p["rule"], p["N"], p["k"], p["lam"], p["kind"]) == (rule, N, k, lam, kind)
                ]  # fmt: skip
                if any(math.isnan(p["cos"]) for p in sel):
                    row.append("grows")
                    continue
                cos = min(p["cos"] for p in sel)
                worst = max(sel, key=lambda p: abs(math.log(p["ratio"])))["ratio"]
                ok = "**" if cos >= 0.99 and abs(worst - 1) <= 0.15 else ""
                row.append(f"{ok}{cos:.3f} / {worst:.2f}{ok}")
        rows.append(row)
    return table(headers, rows, markdown=markdown)


def spectrum_table(points: list[dict[str, Any]], markdown: bool = True) -> str:
    """The measured points: λ_max², the negative fraction and each rule's V."""
    rows, seen = [], set()
    for p in points:
        key = (p["kind"], p["t"])
        if key in seen or p["rule"] == "gradient":
            continue
        seen.add(key)
        V = {q["rule"]: q["V"] for q in points if (q["kind"], q["t"]) == key}
        rows.append([p["kind"], p["t"], f"{p['lam_max2']:.3g}", f"{100 * p['negative']:.0f}%",
                     f"{V['running-max']:.3g}", f"{V['power']:.3g}"])  # fmt: skip
    headers = ["net", "Adam steps", "λ_max(H)²", "negative eigenvalues", "V running-max",
               "V power"]  # fmt: skip
    return table(headers, rows, markdown=markdown)


def step_cost(kind: str = "mlp", steps: int = 30, seed: int = 0) -> list[list[Any]]:
    """CPU time per step (``time.process_time``) of the old default (running-max, k = 1,
    subspace rule), the new default and the new default with the other adaptive rule, on the
    digits ``kind``: batch 64, after 16 Adam steps, the configurations interleaved step by step
    on the same batches; ``steps`` a multiple of ``scale_every`` = 10 amortises the power
    refreshes exactly; retries (RuntimeWarning) included and counted."""
    from tinycurv.optim import Adam, SeriesSFN

    X, y, _, _ = load_digits(image=kind == "cnn")
    other = "reference" if _default_rule() == "subspace" else "subspace"
    configs = {
        "old default: running-max, k=1, subspace": dict(scale="running-max", acceleration=1,
                                                        adaptive="subspace"),
        "new default: power, k=2, " + _default_rule(): {},
        f"power, k=2, {other}": dict(adaptive=other),
    }  # fmt: skip
    opts, seconds, retries = {}, dict.fromkeys(configs, 0.0), dict.fromkeys(configs, 0)
    for name, hp in configs.items():
        model = digits_mlp(np.random.default_rng(seed)) if kind == "mlp" else digits_cnn(
            np.random.default_rng(seed))  # fmt: skip
        loss_fn = nn.CrossEntropyLoss()
        adam = Adam(model, loss_fn, lr=1e-2)
        warm = np.random.default_rng(seed + 1)
        for _ in range(16):
            i = warm.choice(len(X), 64, replace=False)
            adam.step(asarray(X[i]), asarray(y[i]))
        opts[name] = SeriesSFN(model, loss_fn, **hp)
    pick = np.random.default_rng(seed + 2)
    for _ in range(steps):
        i = pick.choice(len(X), 64, replace=False)
        xb, yb = asarray(X[i]), asarray(y[i])
        for name, opt in opts.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                t0 = time.process_time()
                opt.step(xb, yb)
                seconds[name] += time.process_time() - t0
            retries[name] += sum("retried" in str(w.message) for w in caught)
    base = seconds[next(iter(configs))]
    return [[kind, name, f"{1e3 * sec / steps:.1f}", f"{sec / base:.2f}", retries[name]]
            for name, sec in seconds.items()]  # fmt: skip


def _default_rule() -> str:
    from tinycurv.optim.sfn import DEFAULT_ADAPTIVE

    return str(DEFAULT_ADAPTIVE)


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def _figure(ncols: int, size: tuple[float, float]) -> tuple[Any, list[Any]]:
    """A bare matplotlib ``Figure`` (Agg, constrained layout; pyplot untouched) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    return fig, list(np.atleast_1d(fig.subplots(1, ncols)))


def _legend_below(fig: Any, ax: Any, ncol: int = 3) -> None:
    """One legend for the figure, outside the axes, under them (it covers no curve)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


# --------------------------------------------------------------------------------------------
# B4 (a): the reference's toy surface
# --------------------------------------------------------------------------------------------
TOY_H = np.array([[4.0, 2.0], [2.0, -2.0]])  # f = ½ θᵀHθ = 2x² + 2xy − y², eigenvalues 1 ± √13
TOY_START, TOY_V, TOY_TERMS, TOY_SGD_LR, TOY_STEPS = (0.75, 1.0), 25.0, 5, 0.1, 5


def toy_f(p: np.ndarray) -> np.ndarray:
    """``f(x, y) = (2x + y)(x − y) + 3xy = 2x² + 2xy − y²``: a saddle, H = [[4, 2], [2, −2]]."""
    x, y = p[0], p[1]
    return (2 * x + y) * (x - y) + 3 * x * y


def toy_paths(
    steps: int = TOY_STEPS, start=TOY_START, V: float = TOY_V, terms: int = TOY_TERMS,
    sgd_lr: float = TOY_SGD_LR,
) -> dict[str, np.ndarray]:  # fmt: skip
    """``steps`` steps from ``start`` of SGD (lr ``sgd_lr``), Newton, exact SFN and the series
    with N = 1…``terms`` terms (V, undamped, unit steps: the reference's ``play.py``).

    Returns name → the points θ₀ … θ_steps, shape (steps + 1, 2); ∇f(θ) = Hθ.
    """
    H_b = asarray(TOY_H)
    rules = {
        f"SGD (lr {sgd_lr:g})": lambda g: sgd_lr * g,
        "Newton": lambda g: np.linalg.solve(TOY_H, g),
        "exact SFN": lambda g: asnumpy(sfn_math.abs_hessian_inverse(H_b, asarray(g), 0.0)),
    }
    for n in range(1, terms + 1):
        rules[f"series N={n}"] = lambda g, n=n: asnumpy(
            sfn_math.series_operator(lambda vs: [H_b @ vs[0]], [asarray(g)], n, V)[0]
        )
    paths = {}
    for name, rule in rules.items():
        theta = np.array(start, dtype=float)
        path = [theta]
        for _ in range(steps):
            theta = theta - np.asarray(rule(TOY_H @ theta), dtype=float)
            path.append(theta)
        paths[name] = np.array(path)
    return paths


def toy_figure(paths: dict[str, np.ndarray], V: float = TOY_V) -> Any:
    """Left: the first step of each rule on the contours of f; right: f along the steps."""
    fig, (ax, ax_f) = _figure(2, (11.5, 5.2))
    xs, ys = np.meshgrid(np.linspace(-5, 3, 201), np.linspace(-3, 3, 201))
    contour = ax.contour(xs, ys, toy_f(np.stack([xs, ys])), levels=30, cmap="coolwarm",
                         linewidths=0.6)  # fmt: skip
    fig.colorbar(contour, ax=ax, label="f(x, y)")
    names = [n for n in paths if not n.startswith("series")]
    series = [n for n in paths if n.startswith("series")]
    start = paths[names[0]][0]
    ax.plot(*start, "ko", label="start")
    for i, name in enumerate(names):
        ax.plot(*paths[name][1], "sD*"[i % 3], color=f"C{i}", markersize=9, label=name)
    first = np.array([paths[n][1] for n in series])
    ax.plot(first[:, 0], first[:, 1], "-^", color="C4", markersize=5,
            label=f"series N = 1…{len(series)} (V = {V:g})")  # fmt: skip
    ax.plot(0, 0, "k+", markersize=12, label="saddle (0, 0)")
    ax.set(xlabel="x", ylabel="y", title=f"one step from ({start[0]:g}, {start[1]:g})")
    steps = len(paths[names[0]]) - 1
    for i, name in enumerate([*names, series[-1]]):
        ax_f.plot(range(steps + 1), [float(toy_f(p)) for p in paths[name]], "o-",
                  color=f"C{i if i < len(names) else 4}")  # fmt: skip
    ax_f.set(xlabel="step", ylabel="f(x, y) (symlog)", yscale="symlog",
             title=f"f along {steps} steps of each")  # fmt: skip
    ax_f.grid(True, alpha=0.3)
    _legend_below(fig, ax, ncol=6)
    fig.suptitle("f = (2x + y)(x − y) + 3xy: Newton against saddle-free Newton "
                 f"(right: series N = {len(series)})")  # fmt: skip
    return fig


def toy_surface(out: Path | None = None, steps: int = TOY_STEPS) -> str:
    """The toy's table (the point and f after one step, f after ``steps``) and, with ``out``,
    ``out/sfn_toy_surface.png``."""
    paths = toy_paths(steps)
    start = next(iter(paths.values()))[0]
    rows = [["start", f"{start[0]:.4f}", f"{start[1]:.4f}", f"{float(toy_f(start)):.4f}", "—"]]
    rows += [[name, f"{p[1, 0]:.4f}", f"{p[1, 1]:.4f}", f"{float(toy_f(p[1])):.4f}",
              f"{float(toy_f(p[-1])):.4g}"] for name, p in paths.items()]  # fmt: skip
    if out is not None:
        toy_figure(paths).savefig(out / "sfn_toy_surface.png", dpi=DPI)
    return table(["method", "x", "y", "f", f"f after {steps} steps"], rows, markdown=True)


# --------------------------------------------------------------------------------------------
# B4 (b): accelerators on a random symmetric Gaussian H
# --------------------------------------------------------------------------------------------
ACC_DIM, ACC_V, ACC_TERMS, ACC_KS = 100, 1000.0, 100, (0, 1, 2)


def accelerator_rows(
    dim: int = ACC_DIM, V: float = ACC_V, terms: int = ACC_TERMS, seeds: Sequence[int] = (0,),
    damping: float = 0.0, ks: Sequence[int] = ACC_KS, bar: Any = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The series u after N = 1…``terms`` terms, plain (k = 0) and Wynn's ε (k ≥ 1), against
    ``(|H| + λI)⁻¹g`` for H symmetric with N(0, 1) entries (dim × dim) and g ~ N(0, I): the
    recursion (3) of ``series_operator`` in one pass for all N, then ``wynn_epsilon``.

    One row per (seed, N, k): relative error, cosine, length ratio, 2(N − 1) HVPs, λ_max(H)²
    and min |λᵢ|. ``bar`` (optional) advances by one per N.
    """
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        M = rng.standard_normal((dim, dim))
        H = np.triu(M) + np.triu(M, 1).T  # symmetric, N(0, 1) entries
        g = rng.standard_normal(dim)
        exact = asnumpy(sfn_math.abs_hessian_inverse(asarray(H), asarray(g), damping))
        eigenvalues = np.linalg.eigvalsh(H)
        c = sfn_math.series_coefficients(terms, damping / math.sqrt(V))
        v, S = g.copy(), c[0] * g
        sums = [S]
        for n in range(1, terms):  # (3): vₙ = vₙ₋₁ − H²vₙ₋₁/V, Sₙ = Sₙ₋₁ + cₙvₙ, one pass
            v = v - H @ (H @ v) / V
            S = S + c[n] * v
            sums.append(S)
        for N in range(1, terms + 1):
            for k in ks:
                if N < 2 * k + 1:
                    continue
                last = [[asarray(s)] for s in sums[N - 2 * k - 1 : N]]
                u = asnumpy(sfn_math.wynn_epsilon(last, k)[0]) / math.sqrt(V)
                cos, ratio = _cos_ratio(u, exact)
                rows.append(dict(seed=seed, dim=dim, N=N, k=k, hvps=2 * (N - 1),
                                 error=float(np.linalg.norm(u - exact) / np.linalg.norm(exact)),
                                 cosine=cos, length_ratio=ratio,
                                 lam_max_squared=float(np.max(eigenvalues**2)),
                                 min_abs_eigenvalue=float(np.min(np.abs(eigenvalues))),
                                 V=V, damping=damping))  # fmt: skip
            if bar is not None:
                bar.update(1)
    return rows


def accelerator_mean(rows: list[dict[str, Any]], key: str, N: int, k: int) -> float:
    """The mean over the seeds of ``key`` at (N, k)."""
    return float(np.mean([r[key] for r in rows if r["N"] == N and r["k"] == k]))


def accelerator_figure(rows: list[dict[str, Any]]) -> Any:
    """Error, cosine and length ratio against N, one curve per k (mean over the seeds)."""
    fig, axes = _figure(3, (13.5, 4.6))
    terms = max(r["N"] for r in rows)
    for k in sorted({r["k"] for r in rows}):
        Ns = list(range(2 * k + 1, terms + 1))
        label = "plain series" if k == 0 else f"Wynn ε, k = {k}"
        for ax, key in zip(axes, ("error", "cosine", "length_ratio"), strict=True):
            ax.plot(Ns, [accelerator_mean(rows, key, N, k) for N in Ns], label=label)
    axes[2].axhline(1.0, color="k", linewidth=0.8, label="exact (ratio 1)")
    for ax, ylabel in zip(axes, ("‖u − |H|⁻¹g‖ / ‖|H|⁻¹g‖", "cos(u, |H|⁻¹g)",
                                 "‖u‖ / ‖|H|⁻¹g‖"), strict=True):  # fmt: skip
        ax.set(xlabel="series terms N (2(N − 1) HVPs)", ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_yscale("log")
    _legend_below(fig, axes[2], ncol=4)
    r = rows[0]
    seeds = sorted({q["seed"] for q in rows})
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean of {len(seeds)} seeds"
    fig.suptitle(f"SFN accelerators: {r['dim']}-D symmetric Gaussian H, V = {r['V']:g}, "
                 f"λ = {r['damping']:g}, {which}")  # fmt: skip
    return fig


def accelerators(out: Path | None = None, seed: int = 0) -> str:
    """cos and length ratio to ``|H|⁻¹g`` at N = 5…100 (one seed) as a table and, with ``out``,
    ``out/sfn_accelerators.png``."""
    rows = accelerator_rows(seeds=(seed,))
    table_rows = [[N] + [f"{accelerator_mean(rows, 'cosine', N, k):.3f} / "
                         f"{accelerator_mean(rows, 'length_ratio', N, k):.2f}" for k in ACC_KS]
                  for N in (5, 10, 20, 50, 100) if N <= ACC_TERMS]  # fmt: skip
    if out is not None:
        accelerator_figure(rows).savefig(out / "sfn_accelerators.png", dpi=DPI)
    note = (f"λ_max(H)² = {rows[0]['lam_max_squared']:.0f} (2V = {2 * ACC_V:g}), "
            f"min |λ| = {rows[0]['min_abs_eigenvalue']:.3f}")  # fmt: skip
    headers = ["N", *("plain" if k == 0 else f"Wynn k={k}" for k in ACC_KS)]
    return table(headers, table_rows, markdown=True) + "\n\n" + note


# --------------------------------------------------------------------------------------------
# B4 (c): full-batch training, diabetes regression and the digits classifier
# --------------------------------------------------------------------------------------------
TRAINING_STEPS = {"diabetes": 300, "digits": 150}
TRAINING_LOSS = {"diabetes": "training loss (MSE, standardised target)",
                 "digits": "training loss (cross-entropy)"}  # fmt: skip
TRAINING_NET = {"diabetes": "MLP 10–48–10–1 tanh", "digits": "MLP 64–8–10 tanh"}


def diabetes_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes data (442 × 10), inputs and target standardised."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    X = (bunch.data - bunch.data.mean(0)) / bunch.data.std(0)
    t = (bunch.target - bunch.target.mean()) / bunch.target.std()
    return X.astype(np.float64), t[:, None].astype(np.float64)


def training_optimisers() -> dict[str, tuple[str, dict[str, Any], float]]:
    """name → (class, keyword arguments, fraction of the steps) of the comparison; ExactSFN
    (seconds per step: p HVPs) runs a third of the steps."""
    return {
        "sgd": ("SGD", {"lr": 0.1, "momentum": 0.9}, 1.0),
        "adam": ("Adam", {"lr": 1e-2}, 1.0),
        "kfac": ("KFAC", {"lr": 0.3, "damping": 1e-2, "seed": 0}, 1.0),
        "exact-sfn reference": ("ExactSFN", {"adaptive": "reference"}, 1 / 3),
        "exact-sfn subspace": ("ExactSFN", {"adaptive": "subspace"}, 1 / 3),
        "series power reference": ("SeriesSFN", {"adaptive": "reference"}, 1.0),
        "series power subspace": ("SeriesSFN", {"adaptive": "subspace"}, 1.0),
        "series running-max reference (OursAdaptive)": (
            "SeriesSFN", {"scale": "running-max", "acceleration": 1, "adaptive": "reference"}, 1.0
        ),
        "series V=10 subspace": ("SeriesSFN", {"scale": 10.0, "adaptive": "subspace"}, 1.0),
    }  # fmt: skip


def train_full_batch(
    task: str, steps: int, names: Sequence[str] | None = None, seed: int = 0,
    same_steps: bool = False, bar: Any = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Full-batch training on ``task`` ("diabetes" or "digits"): per optimiser the loss per step
    and the cumulative seconds; every run from the same initial weights.

    ``names`` selects optimisers of ``training_optimisers()``; ``same_steps`` gives every one
    ``steps`` steps (ExactSFN too); ``bar`` (optional) advances by one per optimiser.
    """
    import tinycurv.optim as optim

    if task == "diabetes":
        X, t = diabetes_data()
        make = lambda r: nn.Sequential(nn.Linear(10, 48, rng=r), nn.Tanh(),  # noqa: E731
                                       nn.Linear(48, 10, rng=r), nn.Tanh(),
                                       nn.Linear(10, 1, rng=r))  # fmt: skip
        loss_fn = nn.MSELoss()
    else:
        X, t, _, _ = load_digits()
        make = lambda r: digits_mlp(r, hidden=8)  # noqa: E731
        loss_fn = nn.CrossEntropyLoss()
    x, y = asarray(X), asarray(t)
    runs = {}
    for name, (cls, kwargs, fraction) in training_optimisers().items():
        if names is not None and name not in names:
            continue
        model = make(np.random.default_rng(seed))
        opt = getattr(optim, cls)(model, loss_fn, **kwargs)
        losses, seconds, elapsed, status = [], [], 0.0, "ok"
        for _ in range(steps if same_steps else max(1, round(steps * fraction))):
            t0 = time.perf_counter()
            try:
                loss = opt.step(x, y)
            except (FloatingPointError, ValueError, RuntimeError) as err:
                status = f"stopped: {type(err).__name__}"
                break
            elapsed += time.perf_counter() - t0
            if not math.isfinite(loss):
                status = "diverged"
                break
            losses.append(loss)
            seconds.append(elapsed)
        params = sum(p.size for p in model.parameters())
        runs[name] = dict(losses=losses, seconds=seconds, status=status, params=params,
                          damping=getattr(opt, "state", {}).get("damping"))  # fmt: skip
        if bar is not None:
            bar.update(1)
    return runs


def training_rows(runs: dict[str, dict[str, Any]], labels: dict[str, str] | None = None):
    """The runs as CSV rows (method, step, loss, seconds, status, parameters); ``labels``
    renames the methods."""
    rows = []
    for name, r in runs.items():
        for t, (loss, sec) in enumerate(zip(r["losses"], r["seconds"], strict=True)):
            rows.append(dict(method=(labels or {}).get(name, name), step=t + 1, loss=loss,
                             seconds=sec, status=r["status"], parameters=r["params"]))  # fmt: skip
    return rows


def runs_from_csv(path: Path) -> dict[str, dict[str, Any]]:
    """The runs back from ``training_rows``' CSV (a run that stopped before its first step has
    no rows and is not there)."""
    import csv

    runs: dict[str, dict[str, Any]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            r = runs.setdefault(row["method"], dict(losses=[], seconds=[], status=row["status"],
                                                    params=int(row["parameters"])))  # fmt: skip
            r["losses"].append(float(row["loss"]))
            r["seconds"].append(float(row["seconds"]))
    return runs


def training_table(task: str, runs: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, r in runs.items():
        L = r["losses"]
        final = f"{min(L[-10:]):.4g}" if L else "—"
        at = lambda n, L=L: f"{L[n - 1]:.4g}" if len(L) >= n else "—"  # noqa: E731
        ms = 1e3 * r["seconds"][-1] / len(L) if L else math.nan
        rows.append([name, at(10), at(50), final, f"{ms:.1f}", f"{r['seconds'][-1]:.1f}" if L
                     else "—", r["status"]])  # fmt: skip
    headers = ["optimizer", "loss @10", "loss @50", "final (min of last 10)", "ms/step",
               "total s", "status"]  # fmt: skip
    return table(headers, rows, markdown=True)


def training_figure(task: str, runs: dict[str, dict[str, Any]],
                    labels: dict[str, str] | None = None) -> Any:  # fmt: skip
    """Loss per full-batch step and per second of each run (first-order methods dashed, the
    SFN variants solid); ``labels`` renames the runs in the legend."""
    fig, axes = _figure(2, (11.5, 5.0))
    for i, (name, r) in enumerate(runs.items()):
        if not r["losses"]:
            continue
        style = "-" if "sfn" in name.lower() or name.startswith("series") else "--"
        label = (labels or {}).get(name, name)
        if r["status"] != "ok":
            label += f" ({r['status']} after {len(r['losses'])} steps)"
        steps = range(1, len(r["losses"]) + 1)
        axes[0].plot(steps, r["losses"], style, color=f"C{i % 10}", label=label)
        axes[1].plot(r["seconds"], r["losses"], style, color=f"C{i % 10}", label=label)
    axes[0].set(xlabel="full-batch step", title="loss per step")
    axes[1].set(xlabel="training time (s, wall clock)", xscale="log", title="loss per second")
    for ax in axes:
        ax.set(ylabel=TRAINING_LOSS.get(task, "training loss"), yscale="log")
        ax.grid(True, which="major", alpha=0.3)
    _legend_below(fig, axes[0], ncol=3)
    params = next(iter(runs.values()))["params"]
    fig.suptitle(f"SFN: {task}, {TRAINING_NET.get(task, '')} ({params:,} parameters), full batch")
    return fig


def training_plot(task: str, runs: dict[str, dict[str, Any]], out: Path,
                  csv: bool = True) -> Path:  # fmt: skip
    """``out/sfn_training_<task>.png`` and (``csv``) its data, ``out/sfn_training_<task>.csv``
    (which ``--replot`` draws again without training)."""
    if csv:
        from tinycurv.reproduce.common import write_csv

        write_csv(out / f"sfn_training_{task}.csv", training_rows(runs))
    path = out / f"sfn_training_{task}.png"
    training_figure(task, runs).savefig(path, dpi=DPI)
    return path


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all",
                        choices=["accuracy", "toy", "accelerators", "training", "all"])  # fmt: skip
    parser.add_argument("--out", default=str(FIGURES))
    parser.add_argument("--task", choices=["diabetes", "digits"], help="training: only this one")
    parser.add_argument(
        "--replot", action="store_true", help="training: redraw the PNGs from --out's CSVs"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.what in ("accuracy", "all"):
        t0 = time.perf_counter()
        points = accuracy_points("mlp") + accuracy_points("cnn")
        print(spectrum_table(points), "\n")
        print(accuracy_table(points))
        print(f"\n({time.perf_counter() - t0:.0f} s)\n")
        rows = step_cost("mlp") + step_cost("cnn")
        print(table(["net", "configuration", "CPU ms/step", "× old default", "retries"], rows,
                    markdown=True))  # fmt: skip
        print()
    if args.what in ("toy", "all"):
        print(toy_surface(out), "\n")
    if args.what in ("accelerators", "all"):
        print(accelerators(out), "\n")
    if args.what in ("training", "all"):
        for task, steps in TRAINING_STEPS.items():
            if args.task and task != args.task:
                continue
            if args.replot:
                runs = runs_from_csv(out / f"sfn_training_{task}.csv")
            else:
                runs = train_full_batch(task, steps)
            print(f"{task} (full batch, {steps} steps, p = {next(iter(runs.values()))['params']})")
            print(training_table(task, runs), "\n")
            training_plot(task, runs, out, csv=not args.replot)


if __name__ == "__main__":
    main()
