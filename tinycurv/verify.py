"""``tinycurv verify``: every numerical claim the library rests on, checked on seeded problems.

Each check is a small function that calls the library on a small float64 problem and returns
``(error, tolerance)``; it passes when ``error <= tolerance``. The registry ``CHECKS`` keeps, for
each, the claim and where it is stated::

    from tinycurv import verify
    outcomes = verify.run()                       # all checks
    print(verify.format_table(outcomes))
    verify.run(["hvp-fd"], perturb={"hvp-fd": 1.0})   # a deliberately broken check: FAIL

``perturb`` (or the environment variable ``TINYCURV_VERIFY_BREAK=name[=amount][,name…]``) adds
``amount`` (default 1.0) to the measured error of the named checks — the hook that tests use to
see the command fail, without touching the library.

Relative errors are ``‖measured − expected‖ / ‖expected‖``; tolerances are a few hundred
rounding errors where the claim is an identity, and the proven bound where it is a limit.
A declared host-side module: references are computed with NumPy on the host.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from tinycurv import nn
from tinycurv.backend import asarray, asnumpy, get_default_dtype, set_default_dtype
from tinycurv.curvature.dense import ggn, hessian
from tinycurv.curvature.grouped import check_groups, grouped_summary
from tinycurv.curvature.grouped_step import grouped_newton_step
from tinycurv.curvature.isaac import zeta, zeta_kron, zeta_star
from tinycurv.curvature.kfac import kfac_factors, layer_indices
from tinycurv.curvature.sfn import (
    abs_hessian_inverse,
    saddle_free_direction,
    series_coefficients,
    series_coefficients_closed_form,
)
from tinycurv.functional import grad, hvp
from tinycurv.tensor import Tensor

__all__ = ["CHECKS", "Check", "Outcome", "format_table", "run"]

BREAK_ENV = "TINYCURV_VERIFY_BREAK"


@dataclass(frozen=True)
class Check:
    """A claim, its source, and the function measuring ``(error, tolerance)``."""

    name: str
    claim: str
    source: str
    fn: Callable[[], tuple[float, float]]


@dataclass(frozen=True)
class Outcome:
    """The result of one check; ``message`` holds an exception's text if it raised."""

    check: Check
    error: float
    tolerance: float
    message: str = ""

    @property
    def passed(self) -> bool:
        return not self.message and math.isfinite(self.error) and self.error <= self.tolerance


CHECKS: dict[str, Check] = {}


def check(name: str, claim: str, source: str) -> Callable:
    """Register the decorated function as the check ``name``."""

    def register(fn: Callable[[], tuple[float, float]]) -> Callable[[], tuple[float, float]]:
        CHECKS[name] = Check(name, claim, source, fn)
        return fn

    return register


# --------------------------------------------------------------------------------------------
# small helpers (host NumPy; library inputs go through asarray, outputs through asnumpy)
# --------------------------------------------------------------------------------------------
def _rel(x: object, ref: object) -> float:
    x, ref = np.asarray(asnumpy(x), dtype=float), np.asarray(asnumpy(ref), dtype=float)
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def _flat(arrays: Iterable[object]) -> np.ndarray:
    return np.concatenate([np.ravel(asnumpy(a)) for a in arrays])


def _mlp(seed: int) -> tuple[nn.Module, Callable[[], Tensor]]:
    """A 4–5–3 tanh network and the closure of its cross-entropy on a random batch of 6."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(4, 5, rng=rng), nn.Tanh(), nn.Linear(5, 3, rng=rng))
    x, y = asarray(rng.standard_normal((6, 4))), asarray(rng.integers(0, 3, size=6))
    return model, lambda: nn.CrossEntropyLoss()(model(x), y)


def _random_like(params: list[Tensor], seed: int) -> list[object]:
    rng = np.random.default_rng(seed)
    return [asarray(rng.standard_normal(p.shape)) for p in params]


def _isaac_problem(b: int, seed: int, m: int = 7, n: int = 5, r: int = 1):
    """g (b, m), a (b, n), g_bar (r·b, m) as backend arrays."""
    rng = np.random.default_rng(seed)
    return (
        asarray(rng.standard_normal((b, m)) / b),
        asarray(rng.standard_normal((b, n))),
        asarray(rng.standard_normal((r * b, m))),
    )


# --------------------------------------------------------------------------------------------
# engine and dense curvature
# --------------------------------------------------------------------------------------------
@check(
    "hvp-fd",
    "HVP = central finite differences of gradients (float64)",
    "Pearlmutter 1994 (forward-over-reverse)",
)
def _hvp_fd() -> tuple[float, float]:
    model, closure = _mlp(seed=0)
    params = model.parameters()
    v = _random_like(params, 1)
    hv = hvp(closure, params, v)
    eps, saved, grads = 1e-4, [p.data for p in params], []
    for sign in (1.0, -1.0):
        for p, s, vi in zip(params, saved, v, strict=True):
            p.data = s + sign * eps * vi
        grads.append(_flat(grad(closure, params)))
    for p, s in zip(params, saved, strict=True):
        p.data = s
    return _rel(_flat(hv), (grads[0] - grads[1]) / (2 * eps)), 1e-6  # O(eps²) truncation


@check("hvp-symmetry", "HVP symmetry u·Hv = v·Hu", "Schwarz's theorem (H = Hᵀ)")
def _hvp_symmetry() -> tuple[float, float]:
    model, closure = _mlp(seed=2)
    params = model.parameters()
    u, v = _random_like(params, 3), _random_like(params, 4)
    uHv = float(_flat(u) @ _flat(hvp(closure, params, v)))
    vHu = float(_flat(v) @ _flat(hvp(closure, params, u)))
    return abs(uHv - vHu) / max(abs(uHv), abs(vHu)), 1e-12


@check(
    "ggn-linear",
    "GGN = Hessian for a linear model (cross-entropy)",
    "Schraudolph 2002 (H − GGN involves ∇²f = 0)",
)
def _ggn_linear() -> tuple[float, float]:
    rng = np.random.default_rng(5)
    model = nn.Sequential(nn.Linear(4, 3, rng=rng))
    x, y = asarray(rng.standard_normal((6, 4))), asarray(rng.integers(0, 3, size=6))
    loss_fn = nn.CrossEntropyLoss()
    H = hessian(lambda: loss_fn(model(x), y), model.parameters())
    return _rel(ggn(model, loss_fn, x), H), 1e-12


# --------------------------------------------------------------------------------------------
# K-FAC
# --------------------------------------------------------------------------------------------
@check(
    "kfac-linear-mse",
    "K-FAC G ⊗ A is exact for one Linear layer with MSE",
    "Martens & Grosse 2015 §3; exact as G = I for every sample",
)
def _kfac_linear() -> tuple[float, float]:
    rng = np.random.default_rng(6)
    layer = nn.Linear(5, 3, rng=rng)
    model = nn.Sequential(layer)
    x, y = asarray(rng.standard_normal((7, 5))), asarray(rng.standard_normal((7, 3)))
    ((A, G),) = kfac_factors(model, nn.MSELoss(), x, y, mode="exact")
    idx = asnumpy(layer_indices(model, layer))
    block = asnumpy(ggn(model, nn.MSELoss(), x))[np.ix_(idx, idx)]
    return _rel(np.kron(asnumpy(G), asnumpy(A)), block), 1e-12


@check(
    "kfac-conv-mse",
    "KFC G ⊗ A is exact for one Conv2d layer with MSE",
    "Grosse & Martens 2016 (KFC) §3; exact when no other layer mixes locations",
)
def _kfac_conv() -> tuple[float, float]:
    rng = np.random.default_rng(7)
    layer = nn.Conv2d(2, 3, 3, padding=1, rng=rng)
    model = nn.Sequential(layer, nn.Flatten())
    x, y = asarray(rng.standard_normal((3, 2, 4, 4))), asarray(rng.standard_normal((3, 48)))
    ((A, G),) = kfac_factors(model, nn.MSELoss(), x, y, mode="exact")
    idx = asnumpy(layer_indices(model, layer))
    block = asnumpy(ggn(model, nn.MSELoss(), x))[np.ix_(idx, idx)]
    return _rel(np.kron(asnumpy(G), asnumpy(A)), block), 1e-12


# --------------------------------------------------------------------------------------------
# ISAAC (Petersen et al., ICLR 2023)
# --------------------------------------------------------------------------------------------
@check(
    "isaac-thm1-eq20",
    "ISAAC Thm 1: eq. 17 (Kronecker) = eq. 20 (Woodbury)",
    "Petersen et al. 2023, Thm 1, eqs. 17 and 20",
)
def _isaac_eq20() -> tuple[float, float]:
    errors = []
    for b, r, lam in ((3, 1, 0.1), (3, 7, 1.0), (9, 1, 10.0), (9, 7, 0.3)):
        g, a, g_bar = _isaac_problem(b, seed=b + r, r=r)
        errors.append(_rel(zeta(g, a, g_bar, lam, lam), zeta_kron(g, a, g_bar, lam, lam)))
    return max(errors), 1e-12


def _full_rank_factors(seed: int):
    g, a, g_bar = _isaac_problem(12, seed=seed, r=2)  # b ≥ n and r·b ≥ m: A, G invertible
    G, A = (asnumpy(g_bar.T @ g_bar) / 12, asnumpy(a.T @ a) / 12)
    return g, a, g_bar, G, A


@check(
    "isaac-thm1-i",
    "ISAAC Thm 1(i): ζ/(λ_gλ_a) → G⁻¹ gᵀa A⁻¹ as λ → 0",
    "Petersen et al. 2023, Thm 1(i) (K-FAC / Gauss–Newton limit)",
)
def _isaac_thm1_i() -> tuple[float, float]:
    g, a, g_bar, G, A = _full_rank_factors(7)
    grad = asnumpy(g.T @ a)
    kfac = np.linalg.solve(G, np.linalg.solve(A, grad.T).T)
    lam = 1e-6
    bound = lam * (np.linalg.norm(np.linalg.inv(G), 2) + np.linalg.norm(np.linalg.inv(A), 2))
    return _rel(asnumpy(zeta(g, a, g_bar, lam, lam)) / lam**2, kfac), 1.1 * bound + 1e-9


@check(
    "isaac-thm1-ii",
    "ISAAC Thm 1(ii): ζ → gᵀa (the gradient) as λ → ∞",
    "Petersen et al. 2023, Thm 1(ii)",
)
def _isaac_thm1_ii() -> tuple[float, float]:
    g, a, g_bar, G, A = _full_rank_factors(8)
    lam = 1e8
    bound = (np.linalg.norm(G, 2) + np.linalg.norm(A, 2)) / lam  # ‖λ(M + λI)⁻¹ − I‖ ≤ ‖M‖/λ
    return _rel(zeta(g, a, g_bar, lam, lam), g.T @ a), 1.01 * bound + 1e-14


@check(
    "isaac-thm2",
    "ISAAC Thm 2: ⟨ζ, ∇L⟩ > 0 for all dampings (a descent direction for −ζ)",
    "Petersen et al. 2023, Thm 2",
)
def _isaac_thm2() -> tuple[float, float]:
    rng, worst = np.random.default_rng(9), 0.0
    for i in range(40):
        g, a, g_bar = _isaac_problem(
            int(rng.integers(1, 12)), seed=100 + i, r=int(rng.choice([1, 7]))
        )
        lam_g, lam_a = 10.0 ** rng.uniform(-4, 4, size=2)
        z, grad = asnumpy(zeta(g, a, g_bar, lam_g, lam_a)), asnumpy(g.T @ a)
        cosine = float(np.sum(z * grad)) / (np.linalg.norm(z) * np.linalg.norm(grad))
        worst = max(worst, -cosine)
    return max(worst, 0.0), 0.0  # error: how far the worst cosine is below 0


@check(
    "isaac-thm3",
    "ISAAC Thm 3: ζ → ζ* (eq. 21, inputs only) as λ_g → ∞",
    "Petersen et al. 2023, Thm 3, eq. 21",
)
def _isaac_thm3() -> tuple[float, float]:
    g, a, g_bar, G, _ = _full_rank_factors(10)
    lam_g = 1e8
    bound = np.linalg.norm(G, 2) / lam_g  # ζ = λ_g (G + λ_g I)⁻¹ ζ*
    return _rel(zeta(g, a, g_bar, lam_g, 0.5), zeta_star(g, a, 0.5)), 1.01 * bound + 1e-13


@check(
    "isaac-thm4",
    "ISAAC Thm 4: ζ*/λ_a = (GGN + λ_a I)⁻¹ ∇L for linear regression (MSE)",
    "Petersen et al. 2023, Thm 4 (damped Gauss–Newton)",
)
def _isaac_thm4() -> tuple[float, float]:
    rng, b, lam_a = np.random.default_rng(11), 4, 0.3
    model = nn.Sequential(nn.Linear(6, 3, bias=False, rng=rng))
    a, y = rng.standard_normal((b, 6)), rng.standard_normal((b, 3))
    g = (a @ asnumpy(model[0].weight.data).T - y) / b  # ∇_z of (1/b) Σ ½‖z − y‖²
    GGN = asnumpy(ggn(model, nn.MSELoss(), asarray(a)))
    step = np.linalg.solve(GGN + lam_a * np.eye(GGN.shape[0]), (g.T @ a).ravel())
    return _rel(asnumpy(zeta_star(asarray(g), asarray(a), lam_a)).ravel() / lam_a, step), 1e-12


# --------------------------------------------------------------------------------------------
# GroupedNewton (Wolinski 2023, arXiv 2312.03885)
# --------------------------------------------------------------------------------------------
def _lse_problem(p: int = 5, k: int = 4, seed: int = 12):
    """L(θ) = log Σₖ exp(cₖᵀθ) + 0.05‖θ‖², θ as p scalar tensors; analytic g and H."""
    rng = np.random.default_rng(seed)
    C, theta = rng.standard_normal((k, p)), rng.standard_normal(p)
    params = [Tensor(asarray(theta[i : i + 1]), requires_grad=True) for i in range(p)]

    def closure() -> Tensor:
        z = sum(params[i] * Tensor(asarray(C[:, i])) for i in range(p))
        return z.logsumexp(axis=0) + 0.05 * sum((q * q).sum() for q in params)

    z = C @ theta
    prob = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    g = C.T @ prob + 0.1 * theta
    H = C.T @ (np.diag(prob) - np.outer(prob, prob)) @ C + 0.1 * np.eye(p)
    return params, closure, g, H


def _grouped_step(closure, params, direction, groups, lam_int):
    """The GroupedNewton update Σ_s η_s u_s (flattened) for one summary."""
    g_bar, H_bar, D = grouped_summary(closure, params, direction, groups)
    eta = grouped_newton_step(g_bar, H_bar, D, lam_int)
    owner = {i: s for s, grp in enumerate(check_groups(groups, len(params))) for i in grp}
    return _flat([eta[owner[i]] * asnumpy(u) for i, u in enumerate(direction)])


@check(
    "gn-newton",
    "GroupedNewton, one group per scalar (λ_int = 0) = Newton's step H⁻¹g",
    "Wolinski 2023, App. C (finest partition)",
)
def _gn_newton() -> tuple[float, float]:
    params, closure, g, H = _lse_problem()
    u = [asarray(g[i : i + 1]) for i in range(len(params))]
    return _rel(_grouped_step(closure, params, u, None, 0.0), np.linalg.solve(H, g)), 1e-10


@check(
    "gn-cauchy",
    "GroupedNewton, one group, u = g (λ_int = 0) = Cauchy step (gᵀg/gᵀHg)·g",
    "Wolinski 2023, App. C (coarsest partition)",
)
def _gn_cauchy() -> tuple[float, float]:
    params, closure, g, H = _lse_problem(seed=13)
    u = [asarray(g[i : i + 1]) for i in range(len(params))]
    step = _grouped_step(closure, params, u, [list(range(len(params)))], 0.0)
    return _rel(step, (g @ g) / (g @ H @ g) * g), 1e-10


@check(
    "gn-invariance",
    "GroupedNewton update unchanged by rescaling each group's direction",
    "Wolinski 2023, App. E (invariance)",
)
def _gn_invariance() -> tuple[float, float]:
    model, closure = _mlp(seed=14)
    params = model.parameters()
    u = grad(closure, params)
    c = np.random.default_rng(15).choice([-1.0, 1.0], len(u)) * 10.0 ** np.linspace(-1, 1, len(u))
    scaled = [ci * ui for ci, ui in zip(c, u, strict=True)]
    return _rel(
        _grouped_step(closure, params, scaled, None, 1.0),
        _grouped_step(closure, params, u, None, 1.0),
    ), 1e-8


@check(
    "gn-fixed-point",
    "Cubic step: η = (H̄ + (λ/2) r diag(d)²)⁻¹ ḡ, r = ‖dη‖, matrix ⪰ 0",
    "Wolinski 2023, App. D (cubic model minimiser)",
)
def _gn_fixed_point() -> tuple[float, float]:
    model, closure = _mlp(seed=16)
    params, lam = model.parameters(), 2.0
    g_bar, H_bar, D = (asnumpy(t) for t in grouped_summary(closure, params, grad(closure, params)))
    eta = grouped_newton_step(g_bar, H_bar, D, lam)
    d = np.cbrt(np.abs(D))
    M = H_bar + 0.5 * lam * np.linalg.norm(d * eta) * np.diag(d**2)
    size = np.linalg.norm(M, 2)
    scale = size * np.linalg.norm(eta) + np.linalg.norm(g_bar)
    residual = np.linalg.norm(M @ eta - g_bar) / scale
    return max(residual, -np.linalg.eigvalsh(M)[0] / size), 1e-9


# --------------------------------------------------------------------------------------------
# series saddle-free Newton (Oldewage et al., TMLR 2024)
# --------------------------------------------------------------------------------------------
@check(
    "sfn-series",
    "SFN series (HVPs only) → (|H| + λI)⁻¹ v (eigendecomposition)",
    "Oldewage et al. 2024 (series in Y = I − H²/V)",
)
def _sfn_series() -> tuple[float, float]:
    rng, p = np.random.default_rng(17), 8
    Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    spectrum = np.array([-2.0, -1.2, -0.5, 0.5, 0.8, 1.1, 1.6, 2.0])  # indefinite, |λ| ∈ [½, 2]
    M = (Q * spectrum) @ Q.T
    theta = Tensor(asarray(rng.standard_normal(p)), requires_grad=True)
    closure = lambda: 0.5 * (theta * (Tensor(asarray(M)) @ theta)).sum()
    v = rng.standard_normal(p)
    V, lam = (0.25 + 4.0) / 2, 0.1  # the optimal scale for |λ| ∈ [½, 2]: ρ = 15/17
    series = saddle_free_direction(closure, [theta], [asarray(v)], order=300, scale=V, damping=lam)
    return _rel(series[0], abs_hessian_inverse(asarray(M), asarray(v), lam)), 1e-10


@check(
    "sfn-coefficients",
    "SFN coefficients: recurrence = closed form = Taylor coefficients",
    "Oldewage et al. 2024 (damped-series recurrence)",
)
def _sfn_coefficients() -> tuple[float, float]:
    errors, y = [], 0.3
    for d in (0.0, 0.3, 0.9, 1.0, 1.5, 3.0):
        rec, closed = series_coefficients(60, d), series_coefficients_closed_form(60, d)
        errors.append(_rel(rec, closed))
        total = sum(c * y**n for n, c in enumerate(rec))  # tail ≤ y⁶⁰: negligible
        errors.append(abs(total - 1 / (d + math.sqrt(1 - y))) * (d + math.sqrt(1 - y)))
    return max(errors), 1e-13


# --------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------
def _perturbations(perturb: Mapping[str, float] | None) -> dict[str, float]:
    """``perturb`` merged with ``$TINYCURV_VERIFY_BREAK`` (``name[=amount]``, comma-separated)."""
    out = dict(perturb or {})
    for item in filter(None, (s.strip() for s in os.environ.get(BREAK_ENV, "").split(","))):
        name, _, amount = item.partition("=")
        out[name.strip()] = float(amount) if amount else 1.0
    unknown = sorted(set(out) - set(CHECKS))
    if unknown:
        raise ValueError(f"cannot perturb unknown check(s) {unknown}: choose from {list(CHECKS)}")
    return out


def run(
    checks: Iterable[str] | None = None, perturb: Mapping[str, float] | None = None
) -> list[Outcome]:
    """Run checks (default: all, in registry order) in float64 and return their outcomes.

    Parameters
    ----------
    checks : list of str, optional
        Names from ``CHECKS``.
    perturb : dict, optional
        ``{name: amount}`` added to the measured error of those checks (a test hook); merged
        with the environment variable ``TINYCURV_VERIFY_BREAK``.

    Returns
    -------
    list of Outcome
        An exception inside a check is reported as a failure with its message.
    """
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}: choose from {list(CHECKS)}")
    extra = _perturbations(perturb)
    saved_dtype, outcomes = get_default_dtype(), []
    set_default_dtype("float64")
    try:
        for name in names:
            c = CHECKS[name]
            try:
                error, tol = c.fn()
                outcomes.append(Outcome(c, float(error) + extra.get(name, 0.0), float(tol)))
            except Exception as err:  # a crash is a failure of the claim, reported in the table
                outcomes.append(Outcome(c, math.nan, math.nan, f"{type(err).__name__}: {err}"))
    finally:
        set_default_dtype(saved_dtype)
    return outcomes


def format_table(outcomes: Iterable[Outcome], markdown: bool = False) -> str:
    """Claim, source, error, tolerance and PASS/FAIL per check (messages of crashes below)."""
    outcomes = list(outcomes)
    headers = ["check", "claim", "source", "error", "tolerance", "result"]
    rows = [
        [
            o.check.name,
            o.check.claim,
            o.check.source,
            f"{o.error:.2e}",
            f"{o.tolerance:.1e}",
            "PASS" if o.passed else "FAIL",
        ]
        for o in outcomes
    ]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
    lines = [line(headers), line(["-" * w for w in widths]), *map(line, rows)]
    return "\n".join(lines + [f"{o.check.name}: {o.message}" for o in outcomes if o.message])
