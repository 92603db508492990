"""The saddle-free Newton experiments at CPU scale: direction accuracy, the paper's figures.

A declared host-side helper (NumPy on the host, the clock, matplotlib). ``python -m
tinycurv.bench.sfn_experiments [accuracy|toy|accelerators|training|all] [--out DIR]`` prints
Markdown tables (for BENCHMARKS.md) and writes PNGs to ``--out`` (default docs/figures):

* ``accuracy``: how closely the series direction ``u`` approximates the exact
  ``(|H| + λI)⁻¹g`` (cosine and length ratio) for each scale rule, N, k and λ, on the digits
  MLP (64–32–10 tanh) and CNN at points of an Adam training run, and the cost in HVPs;
* ``toy``: the reference's surface ``f(x, y) = (2x + y)(x − y) + 3xy``: SGD, Newton, exact SFN
  and the series' partial sums (V = 25, 5 steps);
* ``accelerators``: a 100-D symmetric Gaussian H, V = 1000: the plain series against Wynn's ε
  (k = 1, 2), cosine and length against N;
* ``training``: full-batch regression on scikit-learn's diabetes data (MLP of ≈ 1k parameters)
  and the digits classifier (64–8–10, full batch): SGD, Adam, K-FAC, ExactSFN (both adaptive
  rules, a third of the steps), SeriesSFN with each scale rule and both adaptive rules.
"""

from __future__ import annotations

import argparse
import math
import time
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


def step_cost(kind: str = "mlp", steps: int = 12, seed: int = 0) -> list[list[Any]]:
    """Wall time per step of the old default (running-max, k = 1, subspace rule) and the new
    one, and of its variants, on the digits ``kind`` (batch 64, after 16 Adam steps)."""
    from tinycurv.optim import Adam, SeriesSFN

    X, y, _, _ = load_digits(image=kind == "cnn")
    configs = {
        "old default: running-max, k=1, subspace": dict(scale="running-max", acceleration=1,
                                                        adaptive="subspace"),
        "new default: power, k=2, " + _default_rule(): {},
        "power, k=2, subspace": dict(adaptive="subspace"),
        "power, k=2, reference": dict(adaptive="reference"),
    }  # fmt: skip
    rows, base = [], None
    for name, hp in configs.items():
        rng = np.random.default_rng(seed)
        model = digits_mlp(rng) if kind == "mlp" else digits_cnn(rng)
        loss_fn = nn.CrossEntropyLoss()
        adam = Adam(model, loss_fn, lr=1e-2)
        pick = np.random.default_rng(seed + 1)
        for _ in range(16):
            i = pick.choice(len(X), 64, replace=False)
            adam.step(asarray(X[i]), asarray(y[i]))
        opt = SeriesSFN(model, loss_fn, **hp)
        times = []
        for _ in range(steps + 1):
            i = pick.choice(len(X), 64, replace=False)
            t0 = time.perf_counter()
            opt.step(asarray(X[i]), asarray(y[i]))
            times.append(time.perf_counter() - t0)
        ms = 1e3 * float(np.mean(times))  # includes the power iteration's refreshes
        base = base or ms
        rows.append([kind, name, f"{ms:.1f}", f"{ms / base:.2f}"])
    return rows


def _default_rule() -> str:
    from tinycurv.optim.sfn import DEFAULT_ADAPTIVE

    return str(DEFAULT_ADAPTIVE)


# --------------------------------------------------------------------------------------------
# B4 (a): the reference's toy surface
# --------------------------------------------------------------------------------------------
def toy_f(p: np.ndarray) -> np.ndarray:
    """``f(x, y) = (2x + y)(x − y) + 3xy = 2x² + 2xy − y²``: a saddle, H = [[4, 2], [2, −2]]."""
    x, y = p[0], p[1]
    return (2 * x + y) * (x - y) + 3 * x * y


def toy_surface(out: Path | None = None, start=(0.75, 1.0), V: float = 25.0, terms: int = 5):
    """One step from ``start`` of SGD (lr 0.1), Newton, exact SFN and the series' partial sums
    (V = 25, undamped: the reference's ``play.py``), as a table and a contour plot."""
    H = np.array([[4.0, 2.0], [2.0, -2.0]])
    theta = np.array(start, dtype=float)
    g = H @ theta  # ∇f = Hθ (f is a quadratic form)
    exact = asnumpy(sfn_math.abs_hessian_inverse(asarray(H), asarray(g), 0.0))
    points = {"start": theta, "SGD (lr 0.1)": theta - 0.1 * g,
              "Newton": theta - np.linalg.solve(H, g), "exact SFN": theta - exact}  # fmt: skip
    H_b = asarray(H)
    for n in range(1, terms + 1):
        u = asnumpy(sfn_math.series_operator(lambda vs: [H_b @ vs[0]], [asarray(g)], n, V)[0])
        points[f"series N={n}"] = theta - u
    rows = [[name, f"{p[0]:.4f}", f"{p[1]:.4f}", f"{float(toy_f(p)):.4f}"]
            for name, p in points.items()]  # fmt: skip
    if out is not None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 5.0), dpi=150)
        ax = fig.add_subplot()
        xs, ys = np.meshgrid(np.linspace(-5, 3, 200), np.linspace(-3, 3, 200))
        contour = ax.contour(xs, ys, toy_f(np.stack([xs, ys])), levels=30, alpha=0.5)
        fig.colorbar(contour, ax=ax, label="f(x, y)")
        style = {"start": ("k", "o"), "SGD (lr 0.1)": ("tab:red", "s"),
                 "Newton": ("tab:orange", "D"), "exact SFN": ("tab:cyan", "*")}  # fmt: skip
        for name, (colour, marker) in style.items():
            ax.scatter(*points[name], c=colour, marker=marker, s=90, label=name, zorder=3)
        series = np.array([points[f"series N={n}"] for n in range(1, terms + 1)])
        ax.plot(series[:, 0], series[:, 1], "-^", c="tab:purple", ms=6, zorder=2,
                label=f"series N = 1…{terms} (V = {V:g})")  # fmt: skip
        ax.set(xlabel="x", ylabel="y",
               title="f = (2x + y)(x − y) + 3xy: one step from (0.75, 1)")  # fmt: skip
        ax.legend(loc="lower left", fontsize=8)
        fig.savefig(out / "sfn_toy_surface.png", dpi=150, bbox_inches="tight")
    return table(["method", "x", "y", "f"], rows, markdown=True)


# --------------------------------------------------------------------------------------------
# B4 (b): accelerators on a random symmetric Gaussian H
# --------------------------------------------------------------------------------------------
def accelerators(out: Path | None = None, p: int = 100, V: float = 1000.0, terms: int = 100,
                 seed: int = 0):  # fmt: skip
    """cos and length ratio to ``|H|⁻¹g`` against N: plain partial sums, Wynn k = 1, 2."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((p, p))
    H = np.triu(M) + np.triu(M, 1).T  # symmetric, Gaussian entries
    g = rng.standard_normal(p)
    exact = asnumpy(sfn_math.abs_hessian_inverse(asarray(H), asarray(g), 0.0))
    c = sfn_math.series_coefficients(terms, 0.0)
    v, S, sums = g.copy(), c[0] * g, [c[0] * g]
    for n in range(1, terms):
        v = v - H @ (H @ v) / V
        S = S + c[n] * v
        sums.append(S)
    curves: dict[str, list[tuple[float, float]]] = {"plain": [], "Wynn k=1": [], "Wynn k=2": []}
    Ns = list(range(1, terms + 1))
    for N in Ns:
        for name, k in (("plain", 0), ("Wynn k=1", 1), ("Wynn k=2", 2)):
            if N < 2 * k + 1:
                curves[name].append((math.nan, math.nan))
                continue
            u = asnumpy(sfn_math.wynn_epsilon([[asarray(s)] for s in sums[:N]], k)[0])
            curves[name].append(_cos_ratio(u / math.sqrt(V), exact))
    rows = []
    for N in (5, 10, 20, 50, 100):
        if N <= terms:
            rows.append([N] + [f"{curves[n][N - 1][0]:.3f} / {curves[n][N - 1][1]:.2f}"
                               for n in curves])  # fmt: skip
    if out is not None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 4), dpi=150)
        axes = fig.subplots(1, 2)
        for name, values in curves.items():
            axes[0].plot(Ns, [x[0] for x in values], label=name)
            axes[1].plot(Ns, [x[1] for x in values], label=name)
        axes[0].set(xlabel="terms N", ylabel="cos(u, |H|⁻¹g)", title="cosine similarity")
        axes[1].axhline(1.0, c="k", lw=0.8, label="exact")
        axes[1].set(xlabel="terms N", ylabel="‖u‖ / ‖|H|⁻¹g‖", title="length ratio")
        for ax in axes:
            ax.legend()
        fig.suptitle(f"{p}-D symmetric Gaussian H, V = {V:g}, λ = 0")
        fig.savefig(out / "sfn_accelerators.png", dpi=150, bbox_inches="tight")
    lam = np.linalg.eigvalsh(H)
    note = (f"λ_max(H)² = {np.max(lam**2):.0f} (2V = {2 * V:g}), "
            f"min |λ| = {np.min(np.abs(lam)):.3f}")  # fmt: skip
    return table(["N", *curves], rows, markdown=True) + "\n\n" + note


# --------------------------------------------------------------------------------------------
# B4 (c): full-batch training, diabetes regression and the digits classifier
# --------------------------------------------------------------------------------------------
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


def train_full_batch(task: str, steps: int, names: Sequence[str] | None = None, seed: int = 0):
    """Full-batch training on ``task`` ("diabetes" or "digits"): per optimiser the loss per step
    and the cumulative seconds; every run from the same initial weights."""
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
        for _ in range(max(1, round(steps * fraction))):
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


def training_plot(task: str, runs: dict[str, dict[str, Any]], out: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=150)
    axes = fig.subplots(1, 2)
    for name, r in runs.items():
        if not r["losses"]:
            continue
        style = "--" if name.startswith(("sgd", "adam", "kfac")) else "-"
        axes[0].plot(range(1, len(r["losses"]) + 1), r["losses"], style, label=name)
        axes[1].plot(r["seconds"], r["losses"], style, label=name)
    axes[0].set(xlabel="full-batch step", ylabel="training loss", yscale="log",
                title=f"{task}: loss per step")  # fmt: skip
    axes[1].set(xlabel="seconds (CPU)", ylabel="training loss", yscale="log", xscale="log",
                title=f"{task}: loss per second")  # fmt: skip
    axes[1].legend(fontsize=7, loc="upper right")
    path = out / f"sfn_training_{task}.png"
    fig.savefig(path, dpi=150, bbox_inches="tight")
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
        print(table(["net", "configuration", "ms/step", "× old default"], rows, markdown=True))
        print()
    if args.what in ("toy", "all"):
        print(toy_surface(out), "\n")
    if args.what in ("accelerators", "all"):
        print(accelerators(out), "\n")
    if args.what in ("training", "all"):
        for task, steps in (("diabetes", 300), ("digits", 150)):
            if args.task and task != args.task:
                continue
            runs = train_full_batch(task, steps)
            print(f"{task} (full batch, {steps} steps, p = {next(iter(runs.values()))['params']})")
            print(training_table(task, runs), "\n")
            training_plot(task, runs, out)


if __name__ == "__main__":
    main()
