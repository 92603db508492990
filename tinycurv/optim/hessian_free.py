"""Hessian-free optimisation (Martens 2010): truncated Newton on the damped Gauss–Newton model.

Each step, on one mini-batch (gradient g and GGN G on the same batch)::

    x  ≈ (G + λI)⁻¹ g        CG on GGN-vector products, warm-started from ζ·x_prev   (§4.5)
    p  = x_i                 CG backtracking: the iterate i = ⌈γʲ⌉ (or the last) that
                             minimises L(θ − x_i), searched backwards from the last    (§4.6)
    ρ  = (L(θ − p) − L(θ)) / (M(p) − M(0)),  M(p) − M(0) = −gᵀp + ½ pᵀGp             (§4.1)
    λ ← λ·3/2 if ρ < ¼,  λ ← λ·2/3 if ρ > ¾                      (Levenberg–Marquardt)
    θ ← θ − α p              α = 1, shrunk by 0.8 until Armijo L(θ − αp) ≤ L(θ) − c·α·gᵀp

Source: J. Martens, "Deep learning via Hessian-free optimization", ICML 2010 (§ above); the line
search and ζ from Martens & Sutskever, "Training deep and recurrent networks with Hessian-free
optimization" (2012; §8.8: c = 10⁻², factor 0.8; §10: ζ = 0.95). CG stops by Martens' relative
progress test (§4.4: k = max(10, i/10), ε = 5·10⁻⁴) or after 250 iterations. ρ uses the
undamped model (M&S 2012): pᵀGp = 2φ(p) + 2gᵀp − λ‖p‖² from CG's own φ, so no extra product.
Departures: no preconditioner (Martens: diagonal empirical Fisher^0.75) and no separate, smaller
curvature batch (§4.7); a floor ``min_damping`` on λ; a line search that finds no α gives α = 0.

Host transfers per step: the CG checks (one per ``check_every`` iterations: ‖r‖², φ, pᵀAp);
one per backtracking candidate and per line-search trial (L(θ − αp) with ‖p‖², gᵀp); the loss.
"""

from __future__ import annotations

import math
from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature import damping as damping_module
from tinycurv.curvature.matrix_free import GGNOperator, conjugate_gradient
from tinycurv.dual import primal
from tinycurv.optim.base import (
    Hyperparameter,
    NonFiniteError,
    Optimizer,
    PureFunctions,
    flag,
    integer,
    number,
)
from tinycurv.tensor import no_grad

damping_rule = PureFunctions(damping_module)  # looked up at every call

Vector = list[Any]


def levenberg_marquardt(
    damping: float,
    rho: float,
    drop: float = 2 / 3,
    boost: float = 3 / 2,
    min_damping: float = 0.0,
) -> float:
    """Martens' (2010, §4.1) constants for ``curvature.damping.levenberg_marquardt``: ``λ·boost``
    if ρ < ¼ (or NaN), ``λ·drop`` if ρ > ¾, else λ."""
    return damping_rule.levenberg_marquardt(damping, rho, drop, min_damping, boost=boost)


def backtracking_grid(gamma: float, max_iter: int) -> list[int]:
    """The CG iterations ``⌈γʲ⌉`` (j = 0, 1, …) up to ``max_iter``: the iterates kept (§4.6)."""
    grid, j = set(), 0
    while math.ceil(gamma**j) <= max_iter:
        grid.add(math.ceil(gamma**j))
        j += 1
    return sorted(grid)


class HessianFree(Optimizer):
    """Martens' Hessian-free optimiser on GGN-vector products (see the module docstring).

    Parameters
    ----------
    model : Module
        Outputs (b, m); its ``parameters()`` are updated in place.
    loss_fn : MSELoss or CrossEntropyLoss
        Its ``hessian`` gives the GGN.
    damping : float
        λ₀ ≥ 0 (the current λ is ``state["damping"]``).
    adapt_damping : bool
        Adjust λ by the reduction ratio (``levenberg_marquardt``).
    damping_drop, damping_boost : float
        The rule's factors (2/3 and 3/2).
    min_damping : float
        Floor on λ (ours; 0 in the paper).
    cg_max_iter : int
        At most this many CG iterations (250).
    cg_tol : float
        Also stop CG when ``‖r‖ ≤ cg_tol·‖g‖`` (0: off).
    progress_tol : float
        ε of Martens' progress test (5e-4; 0: off).
    cg_decay : float
        ζ in [0, 1]: CG starts from ζ·(the previous step's final CG iterate) (0.95).
    check_every : int
        CG's stopping tests every this many iterations (one host transfer each).
    backtracking : bool
        CG backtracking over the iterates ⌈γʲ⌉.
    backtrack_ratio : float
        γ > 1 (1.3).
    line_search : bool
        Armijo backtracking line search on α.
    lr : float
        The first α tried (1).
    armijo : float
        c of the Armijo test (1e-2).
    shrink : float
        α ← shrink·α per failed trial (0.8).
    max_line_search : int
        Trials before α = 0 (no move).
    on_nonfinite : {"raise", "skip"}

    Notes
    -----
    ``state`` holds ``"damping"`` (λ for the next step), ``"delta"`` (the last final CG
    iterate, per parameter: the warm start), and for inspection ``"rho"``, ``"alpha"``,
    ``"cg_iterations"`` and ``"cg_chosen"`` (the iteration that backtracking chose).
    """

    damping = Hyperparameter(number())
    adapt_damping = Hyperparameter(flag)
    damping_drop = Hyperparameter(number(high=1.0, low_open=True))
    damping_boost = Hyperparameter(number(low=1.0))
    min_damping = Hyperparameter(number())
    cg_max_iter = Hyperparameter(integer())
    cg_tol = Hyperparameter(number())
    progress_tol = Hyperparameter(number())
    cg_decay = Hyperparameter(number(high=1.0))
    check_every = Hyperparameter(integer())
    backtracking = Hyperparameter(flag)
    backtrack_ratio = Hyperparameter(number(low=1.0, low_open=True))
    line_search = Hyperparameter(flag)
    lr = Hyperparameter(number(low_open=True))
    armijo = Hyperparameter(number(high=1.0, high_open=True))
    shrink = Hyperparameter(number(high=1.0, low_open=True, high_open=True))
    max_line_search = Hyperparameter(integer())

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        damping: float = 1.0,
        adapt_damping: bool = True,
        damping_drop: float = 2 / 3,
        damping_boost: float = 3 / 2,
        min_damping: float = 1e-8,
        cg_max_iter: int = 250,
        cg_tol: float = 0.0,
        progress_tol: float = 5e-4,
        cg_decay: float = 0.95,
        check_every: int = 1,
        backtracking: bool = True,
        backtrack_ratio: float = 1.3,
        line_search: bool = True,
        lr: float = 1.0,
        armijo: float = 1e-2,
        shrink: float = 0.8,
        max_line_search: int = 20,
        on_nonfinite: str = "raise",
    ) -> None:
        super().__init__(
            model, loss_fn, on_nonfinite, damping=damping, adapt_damping=adapt_damping,
            damping_drop=damping_drop, damping_boost=damping_boost, min_damping=min_damping,
            cg_max_iter=cg_max_iter, cg_tol=cg_tol, progress_tol=progress_tol, cg_decay=cg_decay,
            check_every=check_every, backtracking=backtracking, backtrack_ratio=backtrack_ratio,
            line_search=line_search, lr=lr, armijo=armijo, shrink=shrink,
            max_line_search=max_line_search,
        )  # fmt: skip

    def _update(self, x: Any, y: Any) -> Any:
        G = GGNOperator(self.model, self.loss_fn, x)  # one taped forward, shared by all sweeps
        loss, g = G.loss_and_grad(y)
        lam = self.state.get("damping", self.damping)
        previous = self.state.get("delta")
        warm = previous is not None and self.cg_decay > 0
        x0 = [self.cg_decay * d for d in previous] if warm else None
        grid = backtracking_grid(self.backtrack_ratio, self.cg_max_iter)
        kept = grid if self.backtracking else ()
        cg = conjugate_gradient(
            lambda v: [gv + lam * vi for gv, vi in zip(G(v), v, strict=True)],  # (G + λI) v
            g,
            tol=self.cg_tol,
            max_iter=self.cg_max_iter,
            x0=x0,
            check_every=self.check_every,
            progress_tol=self.progress_tol or None,
            keep=kept,
        )
        if cg.reason == "not finite":
            raise NonFiniteError("the gradient or the curvature is not finite (CG)")
        candidates = {i: v for i, v in cg.iterates.items() if i > 0} | {cg.iterations: cg.x}

        theta = [p.data for p in self.params]
        closure = self.closure(x, y)
        chosen, (new_loss, p2, gp, old_loss) = self._backtrack(closure, theta, g, candidates, loss)
        p = candidates[chosen]
        # M(p) − M(0) = −gᵀp + ½pᵀGp = φ(p) − ½λ‖p‖² (undamped), φ from CG
        rho = self._reduction_ratio(old_loss, new_loss, cg.values[chosen] - 0.5 * lam * p2)
        if self.adapt_damping:
            lam = levenberg_marquardt(
                lam, rho, self.damping_drop, self.damping_boost, self.min_damping
            )
        alpha = self._step_size(closure, theta, p, old_loss, new_loss, gp)
        for param, t, d in zip(self.params, theta, p, strict=True):
            param.data = t - alpha * d if alpha else t
        self.state.update(
            damping=lam, delta=cg.x, rho=rho, alpha=alpha, cg_iterations=cg.iterations,
            cg_chosen=chosen,
        )  # fmt: skip
        return loss

    # -- the pieces of a step ------------------------------------------------------------------

    def _loss_at(self, closure: Any, theta: Vector, p: Vector, alpha: float) -> Any:
        """``L(θ − αp)`` as a 0-d backend array (one forward pass; the parameters are left at
        θ − αp)."""
        for param, t, d in zip(self.params, theta, p, strict=True):
            param.data = t - alpha * d
        with no_grad():
            return xp.reshape(primal(closure().data), ())

    def _backtrack(
        self, closure: Any, theta: Vector, g: Vector, candidates: dict[int, Vector], loss: Any
    ) -> tuple[int, list[float]]:
        """The iterate chosen by CG backtracking (Martens §4.6), and ``[L(θ − p), ‖p‖², gᵀp,
        L(θ)]`` for it as floats: from the last iterate backwards while the loss decreases.

        One forward pass and one host transfer per candidate tried (the first also reads L(θ)).
        """
        best = None
        for i in sorted(candidates, reverse=True):
            p = candidates[i]
            p2 = sum(xp.vdot(d, d) for d in p)
            gp = sum(xp.vdot(gi, d) for gi, d in zip(g, p, strict=True))
            values = _host([self._loss_at(closure, theta, p, 1.0), p2, gp, loss])
            values[0] = values[0] if math.isfinite(values[0]) else math.inf
            if best is not None and not values[0] < best[1][0]:
                break
            best = (i, values)
        return best

    def _reduction_ratio(self, old_loss: float, new_loss: float, model_change: float) -> float:
        """``ρ = (L(θ − p) − L(θ)) / (M(p) − M(0))``; NaN if the model predicts no decrease."""
        if not (model_change < 0 and math.isfinite(new_loss)):
            return math.nan
        return damping_rule.reduction_ratio(new_loss, old_loss, model_change)

    def _step_size(
        self, closure: Any, theta: Vector, p: Vector, old_loss: float, new_loss: float, gp: float
    ) -> float:
        """α by the Armijo backtracking line search (M&S 2012 §8.8); 0 if none is found.

        One forward pass and one host transfer per trial (none for α = 1, evaluated already).
        """
        alpha = self.lr
        if not self.line_search:
            return alpha
        value = new_loss if alpha == 1.0 else _host([self._loss_at(closure, theta, p, alpha)])[0]
        for _ in range(self.max_line_search):
            if value <= old_loss - self.armijo * alpha * gp:
                return alpha
            alpha *= self.shrink
            value = _host([self._loss_at(closure, theta, p, alpha)])[0]
        return 0.0


def _host(values: list[Any]) -> list[float]:
    """Several 0-d backend arrays (or numbers) as Python floats: ONE device-to-host transfer."""
    return xp.stack([xp.asarray(v, dtype=xp.float64) for v in values]).tolist()
