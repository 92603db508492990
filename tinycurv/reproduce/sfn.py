"""Series saddle-free Newton (Oldewage, Clarke & Hernández-Lobato, TMLR 2024): three entries.

A declared host-side helper (NumPy on the host, the clock, matplotlib). The entries of the SFN
issue, computed directly with ``tinycurv.curvature.sfn`` (``series_operator``,
``abs_hessian_inverse``) and the optimisers ``ExactSFN`` and ``SeriesSFN``:

* ``sfn-toy``: the reference's surface f(x, y) = (2x + y)(x − y) + 3xy = 2x² + 2xy − y², a
  saddle at 0 (H eigenvalues 1 ± √13): SGD, Newton, exact SFN and the series' partial sums
  (V = 25, 5 terms), one step and five;
* ``sfn-accelerators``: a 100-D symmetric Gaussian H, V = 1000: the plain series against
  Wynn's ε with k = 1 and 2, error, cosine and length against the number of terms N;
* ``sfn-diabetes``: full-batch regression on scikit-learn's diabetes data (an MLP of ≈ 1k
  parameters): SGD, Adam, K-FAC, ExactSFN and SeriesSFN.

``sfn-diabetes`` is a thin entry over ``tinycurv.bench.sfn_experiments.train_full_batch``; the
toy and the accelerators use the settings of that module's ``toy_surface`` and ``accelerators``
but are computed here, because those functions return Markdown text, not the numbers.
"""

from __future__ import annotations

import numpy as np

from tinycurv.reproduce.common import Check, Context, Entry, Result, default_dtype, figure

PAPER = "Oldewage, Clarke & Hernández-Lobato, Series of Hessian-vector products for tractable " \
    "saddle-free Newton optimisation (TMLR 2024)"  # fmt: skip


def _series(H: np.ndarray, v: np.ndarray, order: int, scale: float, damping: float,
            k: int = 0) -> np.ndarray:  # fmt: skip
    """``series_operator`` on a dense symmetric H (host arrays in, host array out)."""
    from tinycurv.backend import asarray, asnumpy
    from tinycurv.curvature.sfn import series_operator

    Hb = asarray(H)
    out = series_operator(lambda vs: [Hb @ vs[0]], [asarray(v)], order, scale, damping, k)
    return np.asarray(asnumpy(out[0]), dtype=float)


def _exact(H: np.ndarray, v: np.ndarray, damping: float) -> np.ndarray:
    from tinycurv.backend import asarray, asnumpy
    from tinycurv.curvature.sfn import abs_hessian_inverse

    return np.asarray(asnumpy(abs_hessian_inverse(asarray(H), asarray(v), damping)), dtype=float)


# --------------------------------------------------------------------------------------------
# the toy surface (the reference's play.py; tinycurv.bench.sfn_experiments.toy_surface)
# --------------------------------------------------------------------------------------------
TOY_H = np.array([[4.0, 2.0], [2.0, -2.0]])  # f = ½ θᵀHθ = 2x² + 2xy − y²
TOY_START, TOY_V, TOY_TERMS, TOY_SGD_LR, TOY_STEPS = np.array([0.75, 1.0]), 25.0, 5, 0.1, 5


def toy_f(theta: np.ndarray) -> float:
    """f(x, y) = (2x + y)(x − y) + 3xy."""
    x, y = theta
    return float((2 * x + y) * (x - y) + 3 * x * y)


def toy(ctx: Context) -> Result:
    with default_dtype("float64"):
        rules = {
            f"SGD (lr {TOY_SGD_LR:g})": lambda g: TOY_SGD_LR * g,
            "Newton": lambda g: np.linalg.solve(TOY_H, g),
            "exact SFN": lambda g: _exact(TOY_H, g, 0.0),
        }
        for N in range(1, TOY_TERMS + 1):
            rules[f"series N = {N}"] = lambda g, N=N: _series(TOY_H, g, N, TOY_V, 0.0)
        rows, paths = [], {}
        for name, rule in rules.items():  # TOY_STEPS steps of each rule; ∇f = Hθ
            theta, path = TOY_START.copy(), [TOY_START.copy()]
            for _ in range(TOY_STEPS):
                theta = theta - rule(TOY_H @ theta)
                path.append(theta.copy())
            paths[name] = np.array(path)
            for t, p in enumerate(path):
                rows.append(dict(method=name, step=t, x=p[0], y=p[1], f=toy_f(p)))

    fig, axes = figure(ncols=2, size=(5.8, 4.8))
    ax = axes[0, 0]
    xs, ys = np.meshgrid(np.linspace(-5, 3, 201), np.linspace(-3, 3, 201))
    contour = ax.contour(xs, ys, (2 * xs + ys) * (xs - ys) + 3 * xs * ys, levels=30,
                         cmap="coolwarm", linewidths=0.6)  # fmt: skip
    fig.colorbar(contour, ax=ax, label="f(x, y)")
    ax.plot(*TOY_START, "ko", label="start")
    for i, name in enumerate(list(rules)[:3]):
        ax.plot(*paths[name][1], "sD*"[i], color=f"C{i}", markersize=9, label=name)
    series = np.array([paths[f"series N = {N}"][1] for N in range(1, TOY_TERMS + 1)])
    ax.plot(series[:, 0], series[:, 1], "-^", color="C4", markersize=5,
            label=f"series N = 1…{TOY_TERMS} (V = {TOY_V:g})")  # fmt: skip
    ax.plot(0, 0, "k+", markersize=12, label="saddle (0, 0)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"one step from ({TOY_START[0]:g}, {TOY_START[1]:g})")
    ax.legend(fontsize=7, loc="lower left")
    ax = axes[0, 1]
    shown = [*list(rules)[:3], f"series N = {TOY_TERMS}"]
    for i, name in enumerate(shown):
        ax.plot(range(TOY_STEPS + 1), [toy_f(p) for p in paths[name]], "o-", color=f"C{i}",
                label=name)  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("f (symlog)")
    ax.set_yscale("symlog")
    ax.set_title(f"{TOY_STEPS} steps of each")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("SFN toy surface f = (2x + y)(x − y) + 3xy: Newton against saddle-free Newton")
    fig.tight_layout()

    newton = paths["Newton"][1]
    free = {n: [toy_f(p) for p in paths[n]] for n in ("exact SFN", f"series N = {TOY_TERMS}")}
    exact_point = paths["exact SFN"][1]
    gaps = [float(np.linalg.norm(p - exact_point)) for p in series]
    checks = [
        Check(
            "Newton is attracted to the saddle point (one step lands on it)",
            bool(np.linalg.norm(newton) < 1e-8),
            f"after one Newton step (x, y) = ({newton[0]:.2g}, {newton[1]:.2g}), "
            f"f = {toy_f(newton):.2g}",
        ),
        Check(
            "saddle-free Newton (exact and the series) escapes it: f decreases at every step",
            all(bool(np.all(np.diff(v) < 0)) for v in free.values()),
            "; ".join(
                f"{n}: f {v[0]:.3g} → " + " → ".join(f"{x:.3g}" for x in v[1:])
                for n, v in free.items()
            ),
        ),  # fmt: skip
        Check(
            f"the series' partial sums approach the exact SFN step (V = {TOY_V:g})",
            bool(np.all(np.diff(gaps) < 0)),
            "distance to the exact SFN point after N terms: "
            + ", ".join(f"N = {N}: {d:.3g}" for N, d in enumerate(gaps, 1)),
        ),
    ]
    return Result(rows, fig, checks)


# --------------------------------------------------------------------------------------------
# the accelerators (tinycurv.bench.sfn_experiments.accelerators)
# --------------------------------------------------------------------------------------------
ACC = {"full": dict(dim=100, terms=100, seeds=3), "quick": dict(dim=100, terms=30, seeds=1)}
ACC_V, ACC_DAMPING, ACC_KS = 1000.0, 0.0, (0, 1, 2)


def accelerators(ctx: Context) -> Result:
    from tinycurv.backend import asarray, asnumpy
    from tinycurv.curvature.sfn import series_coefficients, wynn_epsilon

    cfg = ACC["quick" if ctx.quick else "full"]
    rows = []
    bar = ctx.bar(cfg["seeds"] * cfg["terms"], "series")
    with default_dtype("float64"):
        for seed in range(cfg["seeds"]):
            rng = np.random.default_rng(seed)
            M = rng.standard_normal((cfg["dim"], cfg["dim"]))
            H = np.triu(M) + np.triu(M, 1).T  # symmetric, N(0, 1) entries
            g = rng.standard_normal(cfg["dim"])
            exact = _exact(H, g, ACC_DAMPING)
            eigenvalues = np.linalg.eigvalsh(H)
            c = series_coefficients(cfg["terms"], ACC_DAMPING / np.sqrt(ACC_V))
            v, S = g.copy(), c[0] * g
            sums = [S]
            for n in range(1, cfg["terms"]):  # (3): vₙ = vₙ₋₁ − H²vₙ₋₁/V, Sₙ = Sₙ₋₁ + cₙvₙ
                v = v - H @ (H @ v) / ACC_V
                S = S + c[n] * v
                sums.append(S)
            for N in range(1, cfg["terms"] + 1):
                for k in ACC_KS:
                    if N < 2 * k + 1:
                        continue
                    last = [[asarray(s)] for s in sums[N - 2 * k - 1 : N]]
                    u = np.asarray(asnumpy(wynn_epsilon(last, k)[0])) / np.sqrt(ACC_V)
                    nu, ne = np.linalg.norm(u), np.linalg.norm(exact)
                    rows.append(dict(seed=seed, N=N, k=k, hvps=2 * (N - 1),
                                     error=np.linalg.norm(u - exact) / ne,
                                     cosine=float(u @ exact / (nu * ne)), length_ratio=nu / ne,
                                     lam_max_squared=float(np.max(eigenvalues**2)),
                                     min_abs_eigenvalue=float(np.min(np.abs(eigenvalues))),
                                     V=ACC_V, damping=ACC_DAMPING))  # fmt: skip
                bar.update(1)
    bar.close()

    def mean(key: str, N: int, k: int) -> float:
        return float(np.mean([r[key] for r in rows if r["N"] == N and r["k"] == k]))

    fig, axes = figure(ncols=3, size=(4.4, 4.0))
    for k in ACC_KS:
        Ns = list(range(2 * k + 1, cfg["terms"] + 1))
        label = "plain series" if k == 0 else f"Wynn ε, k = {k}"
        for ax, key in zip(axes[0], ("error", "cosine", "length_ratio"), strict=True):
            ax.plot(Ns, [mean(key, N, k) for N in Ns], label=label)
    axes[0, 2].axhline(1.0, color="k", linewidth=0.8)
    for ax, ylabel in zip(axes[0], ("‖u − |H|⁻¹g‖ / ‖|H|⁻¹g‖", "cosine with |H|⁻¹g",
                                    "‖u‖ / ‖|H|⁻¹g‖"), strict=True):  # fmt: skip
        ax.set_xlabel("series terms N (2(N − 1) HVPs)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_yscale("log")
    fig.suptitle(f"SFN accelerators: {cfg['dim']}-D symmetric Gaussian H, V = {ACC_V:g}, "
                 f"λ = {ACC_DAMPING:g}, mean of {cfg['seeds']} seed(s)")  # fmt: skip
    fig.tight_layout()

    checks = []
    for N in (10, cfg["terms"]):
        err = {k: mean("error", N, k) for k in ACC_KS}
        cos = {k: mean("cosine", N, k) for k in ACC_KS}
        checks.append(Check(
            f"N = {N}: Wynn's ε (k = 1, 2) is closer to |H|⁻¹g than the plain series",
            bool(err[1] < err[0] and err[2] < err[0]),
            f"relative error plain {err[0]:.3g}, k = 1 {err[1]:.3g}, k = 2 {err[2]:.3g}; "
            f"cosine {cos[0]:.3f} / {cos[1]:.3f} / {cos[2]:.3f}",
        ))  # fmt: skip
    return Result(rows, fig, checks)


# --------------------------------------------------------------------------------------------
# full-batch regression on the diabetes data (tinycurv.bench.sfn_experiments.train_full_batch)
# --------------------------------------------------------------------------------------------
DIABETES = {"full": dict(steps=40), "quick": dict(steps=2)}
DIABETES_RUNS = {  # sfn_experiments' names -> the labels here
    "sgd": "SGD (lr 0.1, momentum 0.9)",
    "adam": "Adam (lr 1e-2)",
    "kfac": "K-FAC (lr 0.3, damping 1e-2)",
    "exact-sfn subspace": "ExactSFN",
    "series power subspace": "SeriesSFN",
}
DIABETES_SERIES_VS_EXACT = 1.5


def diabetes(ctx: Context) -> Result:
    from tinycurv.bench.sfn_experiments import train_full_batch

    steps = DIABETES["quick" if ctx.quick else "full"]["steps"]
    bar = ctx.bar(len(DIABETES_RUNS), "diabetes (one bar step per optimiser)")
    runs = {}
    with default_dtype("float64"):
        for name, label in DIABETES_RUNS.items():
            runs[label] = train_full_batch("diabetes", steps, names=[name])[name]
            bar.update(1)
    bar.close()
    rows = []
    for label, r in runs.items():
        for t, (loss, sec) in enumerate(zip(r["losses"], r["seconds"], strict=True)):
            rows.append(dict(method=label, step=t + 1, loss=loss, seconds=sec,
                             status=r["status"], parameters=r["params"]))  # fmt: skip

    fig, axes = figure(ncols=2, size=(5.4, 4.2))
    for i, (label, r) in enumerate(runs.items()):
        style = "-" if "SFN" in label else "--"
        axes[0, 0].plot(range(1, len(r["losses"]) + 1), r["losses"], style, color=f"C{i}",
                        label=label)  # fmt: skip
        axes[0, 1].plot(r["seconds"], r["losses"], style, color=f"C{i}", label=label)
    axes[0, 0].set_xlabel("full-batch step")
    axes[0, 1].set_xlabel("training time (s)")
    axes[0, 1].set_xscale("log")
    for ax in axes[0]:
        ax.set_yscale("log")
        ax.set_ylabel("training loss (MSE, standardised target)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    params = next(iter(runs.values()))["params"]
    fig.suptitle(f"SFN: diabetes regression, MLP 10–48–10–1 tanh ({params} parameters), "
                 "full batch")  # fmt: skip
    fig.tight_layout()

    best = {k: min(r["losses"]) if r["losses"] else float("inf") for k, r in runs.items()}
    series, exact = best["SeriesSFN"], best["ExactSFN"]
    sgd = best[DIABETES_RUNS["sgd"]]
    check = Check(
        "series SFN trains like exact SFN (best loss within 1.5×) and ahead of SGD",
        bool(series <= DIABETES_SERIES_VS_EXACT * exact and series < sgd),
        f"best training loss in {steps} steps: "
        + ", ".join(f"{k} {v:.4g} ({runs[k]['seconds'][-1] if runs[k]['seconds'] else 0:.1f} s"
                    f"{'' if runs[k]['status'] == 'ok' else ', ' + runs[k]['status']})"
                    for k, v in best.items()),
    )  # fmt: skip
    return Result(rows, fig, [check])


# --------------------------------------------------------------------------------------------
# the entries
# --------------------------------------------------------------------------------------------
ENTRIES = [
    Entry(
        name="sfn-toy",
        paper=PAPER,
        figure="the toy saddle (the reference code's play.py)",
        paper_setting="f(x, y) = (2x + y)(x − y) + 3xy from (0.75, 1): a step of SGD, Newton, "
        "exact SFN and the series' partial sums (V = 25, 5 terms)",
        full=f"the same, and then {TOY_STEPS} steps of each (SGD lr {TOY_SGD_LR:g}; unit steps "
        "for Newton, exact SFN and the series, λ = 0); the settings of "
        "tinycurv.bench.sfn_experiments.toy_surface",
        quick="the same (it takes milliseconds)",
        why="a 2-D problem: nothing to scale",
        claim="Newton is attracted to the saddle point; saddle-free Newton escapes it",
        run=toy,
    ),
    Entry(
        name="sfn-accelerators",
        paper=PAPER,
        figure="the series accelerators (Wynn's ε)",
        paper_setting="a 100-D symmetric Gaussian H, V = 1000: the plain series against Wynn's "
        "ε with k = 1, 2, cosine and length against the number of terms",
        full=f"H with N(0, 1) entries (symmetric, 100 × 100), g ~ N(0, I), V = {ACC_V:g}, λ = "
        f"{ACC_DAMPING:g}, N = 1…{ACC['full']['terms']}, seeds 0–2 (the settings of "
        "tinycurv.bench.sfn_experiments.accelerators)",
        quick=f"N = 1…{ACC['quick']['terms']}, one seed",
        why="dense 100-D linear algebra: the full setting takes seconds",
        claim="Wynn's ε (k = 1, 2) reaches the exact direction with fewer terms than the plain "
        "series",
        run=accelerators,
    ),
    Entry(
        name="sfn-diabetes",
        paper=PAPER,
        figure="a small full-batch regression (the SFN issue's experiment)",
        paper_setting="full-batch regression on scikit-learn's diabetes data with an MLP of "
        "≈ 1k parameters: SGD, Adam, K-FAC, exact SFN and the series",
        full=f"tinycurv.bench.sfn_experiments.train_full_batch('diabetes', "
        f"{DIABETES['full']['steps']}): 442 samples, standardised; MLP 10–48–10–1 tanh (1,029 "
        "parameters); SGD, Adam, K-FAC, ExactSFN and SeriesSFN (adaptive 'subspace', power "
        "scale, N = 20, k = 2)",
        quick=f"{DIABETES['quick']['steps']} steps",
        why="ExactSFN forms the 1,029 × 1,029 Hessian (1,029 HVPs) at every step: seconds per "
        "step on a CPU",
        claim="series SFN trains like exact SFN and ahead of SGD",
        run=diabetes,
    ),
]
