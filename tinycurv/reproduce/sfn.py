"""Series saddle-free Newton (Oldewage, Clarke & Hernández-Lobato, TMLR 2024): three entries.

A declared host-side helper (NumPy on the host). The experiments themselves, their numbers and
their figures, are ``tinycurv.bench.sfn_experiments``' (the one implementation, also behind
BENCHMARKS_SFN.md); an entry here picks the setting, turns the result into CSV rows and checks
the claim:

* ``sfn-toy``: the reference's surface f(x, y) = (2x + y)(x − y) + 3xy = 2x² + 2xy − y², a
  saddle at 0 (H eigenvalues 1 ± √13): SGD, Newton, exact SFN and the series' partial sums
  (V = 25, 5 terms), one step and five (``toy_paths``, ``toy_figure``);
* ``sfn-accelerators``: a 100-D symmetric Gaussian H, V = 1000: the plain series against
  Wynn's ε with k = 1 and 2, error, cosine and length against the number of terms N
  (``accelerator_rows``, ``accelerator_figure``);
* ``sfn-diabetes``: full-batch regression on scikit-learn's diabetes data (an MLP of ≈ 1k
  parameters): SGD, Adam, K-FAC, ExactSFN and SeriesSFN, every one for the same number of
  steps (``train_full_batch``, ``training_figure``).
"""

from __future__ import annotations

import numpy as np

from tinycurv.bench import sfn_experiments as experiments
from tinycurv.reproduce.common import Check, Context, Entry, Result, default_dtype

PAPER = "Oldewage, Clarke & Hernández-Lobato, Series of Hessian-vector products for tractable " \
    "saddle-free Newton optimisation (TMLR 2024)"  # fmt: skip


# --------------------------------------------------------------------------------------------
# the toy surface
# --------------------------------------------------------------------------------------------
def toy(ctx: Context) -> Result:
    with default_dtype("float64"):
        paths = experiments.toy_paths(experiments.TOY_STEPS)
    f = experiments.toy_f
    rows = [dict(method=name, step=t, x=p[0], y=p[1], f=float(f(p)))
            for name, path in paths.items() for t, p in enumerate(path)]  # fmt: skip
    terms = experiments.TOY_TERMS
    newton = paths["Newton"][1]
    free = {n: [float(f(p)) for p in paths[n]] for n in ("exact SFN", f"series N={terms}")}
    exact_point = paths["exact SFN"][1]
    gaps = [float(np.linalg.norm(paths[f"series N={N}"][1] - exact_point))
            for N in range(1, terms + 1)]  # fmt: skip
    checks = [
        Check(
            "Newton is attracted to the saddle point (one step lands on it)",
            bool(np.linalg.norm(newton) < 1e-8),
            f"after one Newton step (x, y) = ({newton[0]:.2g}, {newton[1]:.2g}), "
            f"f = {float(f(newton)):.2g}",
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
            f"the series' partial sums approach the exact SFN step (V = {experiments.TOY_V:g})",
            bool(np.all(np.diff(gaps) < 0)),
            "distance to the exact SFN point after N terms: "
            + ", ".join(f"N = {N}: {d:.3g}" for N, d in enumerate(gaps, 1)),
        ),
    ]
    return Result(rows, experiments.toy_figure(paths), checks)


# --------------------------------------------------------------------------------------------
# the accelerators
# --------------------------------------------------------------------------------------------
ACC = {"full": dict(terms=experiments.ACC_TERMS, seeds=(0, 1, 2)),
       "quick": dict(terms=30, seeds=(0,))}  # fmt: skip


def accelerators(ctx: Context) -> Result:
    cfg = ACC["quick" if ctx.quick else "full"]
    bar = ctx.bar(len(cfg["seeds"]) * cfg["terms"], "series")
    with default_dtype("float64"):
        rows = experiments.accelerator_rows(terms=cfg["terms"], seeds=cfg["seeds"], bar=bar)
    bar.close()
    mean = experiments.accelerator_mean
    checks = []
    for N in (10, cfg["terms"]):
        err = {k: mean(rows, "error", N, k) for k in experiments.ACC_KS}
        cos = {k: mean(rows, "cosine", N, k) for k in experiments.ACC_KS}
        checks.append(Check(
            f"N = {N}: Wynn's ε (k = 1, 2) is closer to |H|⁻¹g than the plain series",
            bool(err[1] < err[0] and err[2] < err[0]),
            f"relative error plain {err[0]:.3g}, k = 1 {err[1]:.3g}, k = 2 {err[2]:.3g}; "
            f"cosine {cos[0]:.3f} / {cos[1]:.3f} / {cos[2]:.3f}",
        ))  # fmt: skip
    return Result(rows, experiments.accelerator_figure(rows), checks)


# --------------------------------------------------------------------------------------------
# full-batch regression on the diabetes data
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
    steps = DIABETES["quick" if ctx.quick else "full"]["steps"]
    bar = ctx.bar(len(DIABETES_RUNS), "diabetes (one bar step per optimiser)")
    with default_dtype("float64"):
        runs = experiments.train_full_batch(
            "diabetes", steps, names=list(DIABETES_RUNS), same_steps=True, bar=bar
        )
    bar.close()
    rows = experiments.training_rows(runs, DIABETES_RUNS)
    fig = experiments.training_figure("diabetes", runs, DIABETES_RUNS)

    best = {DIABETES_RUNS[k]: min(r["losses"]) if r["losses"] else float("inf")
            for k, r in runs.items()}  # fmt: skip
    seconds = {DIABETES_RUNS[k]: r["seconds"][-1] if r["seconds"] else 0.0
               for k, r in runs.items()}  # fmt: skip
    status = {DIABETES_RUNS[k]: r["status"] for k, r in runs.items()}
    series, exact, sgd = best["SeriesSFN"], best["ExactSFN"], best[DIABETES_RUNS["sgd"]]
    check = Check(
        f"series SFN trains like exact SFN (best loss within {DIABETES_SERIES_VS_EXACT:g}× in "
        "the same steps) and ahead of SGD",
        bool(series <= DIABETES_SERIES_VS_EXACT * exact and series < sgd),
        f"best training loss in {steps} steps: "
        + ", ".join(f"{k} {v:.4g} ({seconds[k]:.1f} s"
                    f"{'' if status[k] == 'ok' else ', ' + status[k]})"
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
        full=f"the same, and then {experiments.TOY_STEPS} steps of each (SGD lr "
        f"{experiments.TOY_SGD_LR:g}; unit steps for Newton, exact SFN and the series, λ = 0): "
        "tinycurv.bench.sfn_experiments.toy_paths",
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
        full=f"H with N(0, 1) entries (symmetric, {experiments.ACC_DIM} × {experiments.ACC_DIM}"
        f"), g ~ N(0, I), V = {experiments.ACC_V:g}, λ = 0, N = 1…{ACC['full']['terms']}, "
        "seeds 0–2: tinycurv.bench.sfn_experiments.accelerator_rows",
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
        f"{DIABETES['full']['steps']}, same_steps=True): 442 samples, standardised; MLP "
        "10–48–10–1 tanh (1,029 parameters); SGD, Adam, K-FAC, ExactSFN and SeriesSFN (adaptive "
        f"'subspace', power scale, N = 20, k = 2), {DIABETES['full']['steps']} full-batch steps "
        "each",
        quick=f"{DIABETES['quick']['steps']} steps",
        why="ExactSFN forms the 1,029 × 1,029 Hessian (1,029 HVPs) at every step: seconds per "
        "step on a CPU",
        claim="series SFN trains like exact SFN and ahead of SGD",
        run=diabetes,
    ),
]
