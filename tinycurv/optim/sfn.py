"""Series saddle-free Newton (SFN) as an optimiser: ``θ ← θ − δ``, ``δ = α u + μ δ_prev``.

Each step, on one mini-batch (curvature on the same batch as the gradient g)::

    u  ≈ (|H| + λI)⁻¹ g                  N terms of the series in Y = I − H²/V (+ Wynn's ε)
    δ  = α u + μ δ_prev                  fixed α = lr, μ = momentum, or adaptive (below)
    θ ← θ − δ

The series itself (coefficients, Wynn's ε-algorithm, convergence condition ``V ≥ λ_max(H)²/2``)
is ``tinycurv.curvature.sfn``; this module adds what makes it an optimiser: the scale V, the
step coefficients α and μ, the adaptation of the damping λ, and the guards.

Source: Oldewage, Clarke & Hernández-Lobato, "Series of Hessian-vector products for tractable
saddle-free Newton optimisation of neural networks" (TMLR 2024, arXiv 2310.14901); reference
code rmclarke/SeriesOfHessianVectorProducts (JAX, ``optimisers.HessianSeriesOptimiser``). The
paper's text was not available when this was written, so its equations are named, not numbered.

The scale V (``scale=``)
------------------------
* ``None`` (the reference's ``lower_bound`` rule, its default): ``V ← max(V, ‖H²g‖/‖g‖)``, a
  running maximum starting from ``initial_scale = 100``. ``H²g`` is the first term of the series
  anyway, so the estimate is free. ``‖H²g‖/‖g‖ ≤ λ_max(H²)`` is a *lower* bound on what the
  series needs (``V ≥ λ_max²/2``), so convergence is **not** guaranteed: when the series detects
  growth (``series_operator`` raises "scale V too small"), V is enlarged to twice a lower bound
  on ``λ_max²`` read from the term that grew (``_SeriesProducts.enlarged_scale``: one more HVP)
  and the series is retried once, with a ``RuntimeWarning``; if it grows again the step is
  skipped (``SkipStep``: nothing else changes). The enlarged V stays in the running maximum.
* ``"power"``: V = a power-iteration estimate of ``λ_max(H)²`` on this batch
  (``power_iteration_scale``, ``power_iters`` HVPs per step, seeded by ``seed + t``): safe up
  to the factor-2 margin discussed there; enlarged and retried like ``None`` if it falls short.
* a float: V fixed. A series that grows raises ``ValueError`` (the user's choice of V is wrong).

The adaptive step (``adaptive=True``: α, μ and λ as in K-FAC, Martens & Grosse 2015, §6–7)
------------------------------------------------------------------------------------------
α and μ minimise a quadratic model of the loss over ``δ ∈ span{u, δ_prev}`` (a 2×2 solve), and
λ follows the Levenberg–Marquardt rule on the reduction ratio::

    M(δ)  = L − gᵀδ + ½ δᵀ C δ                                   (θ ← θ − δ, so −gᵀδ)
    ρ     = (L(θ − δ) − L(θ)) / (M(δ) − M(0))                    on the same batch
    λ ← ω λ  if ρ > ¾,    λ ← λ / ω  if ρ < ¼,    λ ≥ min_damping   (ω = damping_decay = 0.9)

*Which curvature C.* The reference uses the damped approximate SFN matrix ``C = |H| + λI``
("SFN Hessian already has damping included"), with ``C u = g`` (u is its inverse applied to g)
and ``C δ_prev`` replaced by a momentum-like buffer. With ``C u = g`` the first column of its
2×2 system equals the right-hand side, so the solve returns ``(α, μ) = (1, 0)`` whatever the data:
the exact minimiser of a model whose curvature is the preconditioner itself is the
preconditioned step, and momentum never enters. (K-FAC avoids this by using the *exact* curvature
in the model, not its approximation.) Here C keeps the reference's choice — absolute
eigenvalues, damping included — but is evaluated exactly on the subspace: ``H u`` and
``H δ_prev`` come from ONE batched HVP (k = 2), the 2×2 matrix ``DᵀHD`` (``D = [u, δ_prev]``) is
expressed in an orthonormal basis of the span, its eigenvalues are replaced by their absolute
values, and ``λ`` is added: the saddle-free model restricted to the span. Where H is positive
definite on the span this is exactly K-FAC's rule with ``H + λI``; where it is not, the model is
still bounded below (a model with H itself would be unbounded along negative curvature, the very
directions SFN wants to follow). The same model gives ρ's denominator, evaluated at the current
θ for the chosen δ: ``M(δ) − M(0) = −½ (α gᵀu + μ gᵀδ_prev)`` at the minimiser. (The
reference evaluates it *after* updating its buffers, mixing this step's α into the previous
step's curvature term; we do what the paper intends.) The extra cost is that HVP (k = 2) and
one forward pass for ``L(θ − δ)``. If ``L(θ − δ) > L(θ)`` (ρ < 0; ``reject_uphill=True``, the
default) or is not finite, the step is undone and λ grows by ``1/ω`` — the acceptance test of a
trust-region method, added here: the subspace model can still underestimate the curvature (a
direction whose positive and negative curvature cancel looks flat, ``|uᵀHu| ≤ uᵀ|H|u``), and on
MNIST a single such step with λ ≈ 2e-3 raised the batch loss from 0.28 to 3.6 and the run never
recovered within the epoch.

Host transfers per step: the loss (by the base class); ``‖g‖²`` and ``‖H²g‖²`` together (the
finiteness check and the scale); in adaptive mode the ten numbers of the 2×2 model together and
``L(θ − δ)``; in fixed mode ``‖δ‖²`` (the finiteness check). The series itself transfers two
norms per term for its growth check (``tinycurv.curvature.sfn``).

Reference defaults and departures
---------------------------------
Reference configurations ``OursAdaptive`` / ``OursUnadaptive``: ``num_update_steps`` N = 20,
Shanks (Wynn's ε, Samelson inverse) of order 1, ``initial_scale_factor`` 100 with the
``lower_bound`` rule, the ``damped`` series; adaptive: ``initial_damping`` 1,
``hessian_damping_factor`` 0.9, ``damping_min`` 1e-8; unadaptive: ``learning_rate`` 1,
``momentum`` 0.5, damping 0 (1e-4 in ``OursDampedUnadaptive``). The defaults here are the
adaptive ones; ``adaptive=False`` keeps ``damping=1.0`` unless told otherwise. Departures:

1. the 2×2 model's curvature (above): the reference's is degenerate (α = 1, μ = 0 always);
2. ρ's model reduction is computed before the update (the reference computes it after);
3. the LM adaptation of λ runs exactly when ``adaptive=True`` (in the reference it is switched
   separately by ``hessian_damping_factor``); with ``adaptive=False`` λ stays fixed;
4. the reference's acceleration option ``modifier: sablonniere`` never takes effect (the code
   tests for ``'sabblonniere'``), so plain Wynn ε is used, as the reference effectively did;
5. "scale V too small" enlarges V and retries once instead of producing a diverging step;
6. ``scale="power"`` uses ``V = λ̂²`` from power iteration on H (the reference: ``(λ̂ + tol)² + λ``);
7. non-finite gradients or steps are skipped with a warning; in adaptive mode a step that
   increases the batch loss, or makes it non-finite, is undone and λ raised.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from tinycurv import dual as D
from tinycurv.backend import asnumpy, xp
from tinycurv.curvature.sfn import SCALE_TOO_SMALL, power_iteration_scale, series_operator
from tinycurv.functional import hvp, value_and_grad
from tinycurv.optim.base import (
    Hyperparameter,
    NonFiniteError,
    Optimizer,
    SkipStep,
    flag,
    integer,
    number,
)
from tinycurv.tensor import no_grad

Vector = list[Any]


class SeriesSFN(Optimizer):
    """Series saddle-free Newton with momentum, optionally adaptive (see the module docstring).

    Parameters
    ----------
    model : Module
        The network; its ``parameters()`` are updated in place.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the scalar batch loss as a Tensor.
    order : int
        N ≥ 1, series terms; each step makes ``2(N − 1)`` HVPs for the direction.
    acceleration : int
        k ≥ 0, order of Wynn's ε-algorithm over the last ``2k + 1`` partial sums (N ≥ 2k + 1).
    damping : float
        λ₀ ≥ 0, the initial damping (the current λ is ``state["damping"]``).
    scale : None, "power" or float
        The scale V: running max of ``‖H²g‖/‖g‖`` from ``initial_scale`` (None), a
        power-iteration estimate of ``λ_max(H)²`` each step (``"power"``), or fixed (float > 0).
    adaptive : bool
        If True, α and μ from the 2×2 model and λ by Levenberg–Marquardt; else ``α = lr``,
        ``μ = momentum`` and λ fixed.
    lr : float
        α of the fixed step.
    momentum : float
        μ of the fixed step.
    damping_decay : float
        ω in (0, 1): the factor of the Levenberg–Marquardt adjustment.
    min_damping : float
        The floor of λ, ≥ 0.
    initial_scale : float
        The starting value of V for ``scale=None`` (reference: 100).
    power_iters : int
        Power iterations (HVPs) per step for ``scale="power"``.
    seed : int
        Seeds the power iteration's start vector (``seed + t`` at step t, so resuming is exact).
    reject_uphill : bool
        Adaptive mode only: undo a step that increases the batch loss (ρ < 0) and raise λ by
        ``1/ω`` (the acceptance test of a trust-region / Levenberg–Marquardt method; neither
        K-FAC nor the reference rejects steps). A step to a non-finite loss is always undone.
    on_nonfinite : {"raise", "skip"}
        What a step with a non-finite loss, gradient or update does (``Optimizer``).

    Notes
    -----
    ``state`` holds ``"V"`` (the scale of the last step, the running maximum for
    ``scale=None``), ``"damping"`` (λ), ``"delta"`` (δ of the last step taken, one array per
    parameter) and, for inspection, ``"alpha"``, ``"mu"`` (of the last step taken), ``"rho"``
    (of the last step tried) and ``"rejected"`` (the number of steps undone).
    """

    order = Hyperparameter(integer())
    acceleration = Hyperparameter(integer(low=0))
    damping = Hyperparameter(number())
    scale = Hyperparameter()
    adaptive = Hyperparameter(flag)
    lr = Hyperparameter(number())
    momentum = Hyperparameter(number())
    damping_decay = Hyperparameter(number(high=1.0, low_open=True, high_open=True))
    min_damping = Hyperparameter(number())
    initial_scale = Hyperparameter(number(low_open=True))
    power_iters = Hyperparameter(integer())
    seed = Hyperparameter(integer(low=0))
    reject_uphill = Hyperparameter(flag)

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        order: int = 20,
        acceleration: int = 1,
        damping: float = 1.0,
        scale: float | str | None = None,
        adaptive: bool = True,
        lr: float = 1.0,
        momentum: float = 0.5,
        damping_decay: float = 0.9,
        min_damping: float = 1e-8,
        initial_scale: float = 100.0,
        power_iters: int = 20,
        seed: int = 0,
        reject_uphill: bool = True,
        on_nonfinite: str = "raise",
    ) -> None:
        if int(order) != order or order < 1:
            raise ValueError(f"SeriesSFN: order N must be an integer ≥ 1, got {order!r}")
        if int(acceleration) != acceleration or not 0 <= 2 * acceleration + 1 <= order:
            raise ValueError(
                f"SeriesSFN: acceleration k must be an integer with 0 ≤ k and 2k + 1 ≤ N = {order},"
                f" got {acceleration!r}"
            )
        if not (isinstance(scale, str) and scale == "power") and scale is not None:
            if isinstance(scale, str) or not (math.isfinite(float(scale)) and float(scale) > 0):
                raise ValueError(f"SeriesSFN: scale must be None, 'power' or > 0, got {scale!r}")
            scale = float(scale)
        super().__init__(
            model,
            loss_fn,
            on_nonfinite,
            order=order,
            acceleration=acceleration,
            damping=damping,
            scale=scale,
            adaptive=adaptive,
            lr=lr,
            momentum=momentum,
            damping_decay=damping_decay,
            min_damping=min_damping,
            initial_scale=initial_scale,
            power_iters=power_iters,
            seed=seed,
            reject_uphill=reject_uphill,
        )

    # -- one step --------------------------------------------------------------------------------

    def _update(self, x: Any, y: Any) -> Any:
        closure = self.closure(x, y)
        loss, g = value_and_grad(closure, self.params)  # one forward + backward
        hvp_fn = lambda vs: hvp(closure, self.params, vs)  # one forward + backward on duals
        lam = float(self.state.get("damping", self.damping))

        V, first_products = self._scale(hvp_fn, g)
        u = self._direction(hvp_fn, g, V, lam, first_products)

        delta_prev = self.state.get("delta")
        if self.adaptive:
            model = self._adaptive_coefficients(closure, g, u, delta_prev, lam)
            if model is None:
                raise NonFiniteError("the quadratic model is not finite (non-finite direction)")
            alpha, mu, model_change = model
        else:
            alpha, mu, model_change = self.lr, self.momentum, None
        delta = _combine(alpha, u, mu, delta_prev)  # δ = α u + μ δ_prev
        if model_change is None and not math.isfinite(_host(_sumsq(delta))[0]):
            raise NonFiniteError("the step δ is not finite")

        theta = [p.data for p in self.params]
        self.apply_update(delta)  # θ ← θ − δ
        if self.adaptive:
            lam = self._adapt_damping(closure, float(loss), model_change, theta, lam)
            if lam is None:  # the step was undone
                return loss
        self.state.update(delta=delta, damping=lam, alpha=float(alpha), mu=float(mu))
        return loss

    # -- the scale V ---------------------------------------------------------------------------

    def _scale(self, hvp_fn: Callable[[Vector], Vector], g: Vector) -> tuple[float, list]:
        """V for this step and the products already made (``[Hg, H²g]`` for ``scale=None``).

        Raises ``NonFiniteError`` if g (or its curvature) is not finite.
        """
        scale = self.scale
        if scale is None:
            Hg = hvp_fn(g)
            H2g = hvp_fn(Hg)  # the first term of the series: reused there
            g2, H2g2 = _host(_sumsq(g), _sumsq(H2g))
            if not (math.isfinite(g2) and math.isfinite(H2g2)):
                raise NonFiniteError("the gradient or its curvature is not finite")
            V = float(self.state.get("V", self.initial_scale))
            if g2 > 0:
                V = max(V, math.sqrt(H2g2 / g2))  # running max of ‖H²g‖/‖g‖ (reference rule)
            self.state["V"] = V
            return V, [Hg, H2g]
        if not math.isfinite(_host(_sumsq(g))[0]):
            raise NonFiniteError("the gradient is not finite")
        if scale == "power":
            V = power_iteration_scale(
                hvp_fn, [p.data for p in self.params], self.power_iters, rng=self.seed + self.t
            )
            if not math.isfinite(V):
                raise NonFiniteError("the power-iteration scale is not finite")
        else:
            V = float(scale)
        self.state["V"] = V
        return V, []

    # -- the direction u -------------------------------------------------------------------------

    def _direction(
        self,
        hvp_fn: Callable[[Vector], Vector],
        g: Vector,
        V: float,
        lam: float,
        first_products: list,
    ) -> Vector | None:
        """``u ≈ (|H| + λI)⁻¹ g`` by the series; enlarges V and retries once if it grows."""
        products = _SeriesProducts(hvp_fn, first_products)
        try:
            return self._series(products, g, V, lam)
        except ValueError as err:
            if not str(err).startswith(SCALE_TOO_SMALL) or isinstance(self.scale, float):
                raise
            V_new = products.enlarged_scale(V)
        if not math.isfinite(V_new):
            raise NonFiniteError("the series is not finite")
        warnings.warn(
            f"{type(self).__name__} step {self.t + 1}: scale V = {V:.4g} too small for the series "
            f"(a term grew); enlarged to V = {V_new:.4g} and retried",
            RuntimeWarning,
            stacklevel=4,
        )
        self.state["V"] = V_new
        try:
            return self._series(_SeriesProducts(hvp_fn, first_products), g, V_new, lam)
        except ValueError as err:
            if not str(err).startswith(SCALE_TOO_SMALL):
                raise
            # what was learned stays: the next step starts from the enlarged V
            raise SkipStep(f"{err}; even after enlarging V once", keep={"V": V_new}) from err

    def _series(self, products: _SeriesProducts, g: Vector, V: float, lam: float) -> Vector:
        return series_operator(products, g, self.order, V, lam, self.acceleration)

    # -- the adaptive step -----------------------------------------------------------------------

    def _adaptive_coefficients(
        self,
        closure: Callable[[], Any],
        g: Vector,
        u: Vector,
        delta_prev: Vector | None,
        lam: float,
    ) -> tuple[float, float, float] | None:
        """α, μ minimising the damped saddle-free model on span{u, δ_prev}, and M(δ) − M(0).

        One batched HVP (k = 2, or k = 1 before the first step) and one host transfer of the
        k×k matrices ``A = DᵀHD``, ``G = DᵀD`` and ``b = Dᵀg`` (D = [u, δ_prev]).
        """
        k = 1 if delta_prev is None else 2
        if k == 1:
            D = [ui[None] for ui in u]
        else:
            D = [xp.stack([ui, di]) for ui, di in zip(u, delta_prev, strict=True)]
        HD = hvp(closure, self.params, D, batched=True)  # [H u, H δ_prev] in one sweep
        flat = lambda a: xp.reshape(a, (k, -1))
        A = sum(flat(d) @ flat(h).T for d, h in zip(D, HD, strict=True))  # DᵀHD
        G = sum(flat(d) @ flat(d).T for d in D)  # DᵀD
        b = sum(flat(d) @ xp.reshape(gi, (-1,)) for d, gi in zip(D, g, strict=True))  # Dᵀg
        numbers = _host(A, G, b)  # k² + k² + k numbers, one transfer
        if not all(math.isfinite(v) for v in numbers):
            return None
        if k == 1:
            a11, g11, b1 = numbers
            coefficients, change = _subspace_minimiser([[a11]], [[g11]], [b1], lam)
            return coefficients[0], 0.0, change
        a11, a12, _, a22, g11, g12, _, g22, b1, b2 = numbers
        coefficients, change = _subspace_minimiser(
            [[a11, a12], [a12, a22]], [[g11, g12], [g12, g22]], [b1, b2], lam
        )
        return coefficients[0], coefficients[1], change

    def _adapt_damping(
        self,
        closure: Callable[[], Any],
        loss: float,
        model_change: float,
        theta: Vector,
        lam: float,
    ) -> float | None:
        """Levenberg–Marquardt: λ by the reduction ratio ρ; ``None`` if the step was undone."""
        with no_grad():
            new_loss = _host(D.primal(closure().data))[0]  # L(θ − δ), one forward pass
        omega = self.damping_decay
        # ρ = (L(θ − δ) − L(θ)) / (M(δ) − M(0)), the model reduction predicted at θ for this δ
        rho = (new_loss - loss) / model_change if model_change < 0 else float("nan")
        self.state["rho"] = rho
        finite = math.isfinite(new_loss)
        if not finite or (self.reject_uphill and new_loss > loss):
            for p, old in zip(self.params, theta, strict=True):  # undo the step exactly
                p.data = old
            self.state["damping"] = max(lam / omega, self.min_damping)
            self.state["rejected"] = int(self.state.get("rejected", 0)) + 1
            if not finite:
                self.warn_skip(f"the loss after the step is {new_loss}; step undone, λ raised")
            return None
        if rho > 0.75:  # the model is trustworthy: less damping
            lam = omega * lam
        elif rho < 0.25:  # the model overestimated the reduction: more damping
            lam = lam / omega
        return max(lam, self.min_damping)


class _SeriesProducts:
    """``hvp_fn`` for ``series_operator`` that replays products made already, and remembers the
    last term so that a growing series can estimate a larger V.

    ``series_operator`` calls ``hvp_fn(hvp_fn(v))`` for each term: even calls receive ``vₙ``,
    odd calls return ``H²vₙ``. The first ``len(cached)`` calls return ``cached`` instead of
    computing (``[Hg, H²g]`` when the scale rule has made them).
    """

    def __init__(self, hvp_fn: Callable[[Vector], Vector], cached: Sequence[Vector] = ()) -> None:
        self.hvp_fn, self.cached, self.calls = hvp_fn, list(cached), 0
        self.v: Vector | None = None
        self.H2v: Vector | None = None

    def __call__(self, vs: Vector) -> Vector:
        out = self.cached[self.calls] if self.calls < len(self.cached) else self.hvp_fn(vs)
        if self.calls % 2 == 0:
            self.v = vs
        else:
            self.H2v = out
        self.calls += 1
        return out

    def enlarged_scale(self, V: float) -> float:
        """Twice a lower bound on ``λ_max(H)²`` from the term ``vₙ = vₙ₋₁ − H²vₙ₋₁/V`` that grew.

        Two lower bounds, the larger is doubled: (a) as ``Y = I − H²/V`` is symmetric,
        ``‖vₙ‖ = r‖vₙ₋₁‖`` with ``r > 1`` needs an eigenvalue ``|1 − λᵢ²/V| ≥ r``, i.e.
        ``λᵢ² ≥ (1 + r)V``; (b) the Rayleigh quotient of ``H²`` at ``vₙ``, ``‖Hvₙ‖²/‖vₙ‖²`` (one
        more HVP), in which the growing components have been amplified by ``|1 − λᵢ²/V| > 1``.
        """
        if self.v is None or self.H2v is None:
            return float("nan")
        v_new = [vi - hi / V for vi, hi in zip(self.v, self.H2v, strict=True)]
        Hv_new = self.hvp_fn(v_new)
        v2, v_new2, Hv_new2 = _host(_sumsq(self.v), _sumsq(v_new), _sumsq(Hv_new))
        if not (v2 > 0 and v_new2 > 0):
            return float("nan")
        growth_bound = (1.0 + math.sqrt(v_new2 / v2)) * V  # (a)
        rayleigh = Hv_new2 / v_new2  # (b)
        return 2.0 * max(growth_bound, rayleigh)


# --------------------------------------------------------------------------------------------
# the 2×2 (or 1×1) saddle-free model, in Python floats on the host
# --------------------------------------------------------------------------------------------
def _subspace_minimiser(
    A: list[list[float]], G: list[list[float]], b: list[float], lam: float
) -> tuple[list[float], float]:
    """Minimise ``m(c) = −bᵀc + ½ cᵀ(|A|_G + λG)c`` over ``c``; return c and ``m(c*) − m(0)``.

    ``A = DᵀHD``, ``G = DᵀD`` and ``b = Dᵀg`` describe H and g on the span of the columns of D.
    With the Cholesky factor ``G = LLᵀ``, ``Q = D L⁻ᵀ`` is an orthonormal basis of the span and
    ``c = L⁻ᵀz`` turns the model into ``−βᵀz + ½ zᵀ(M + λI)z`` with ``β = L⁻¹b`` and
    ``M = L⁻¹AL⁻ᵀ`` (H on the span). The saddle-free model takes ``|M|`` (absolute
    eigenvalues); its minimiser is ``z = (|M| + λI)⁻¹β`` and the reduction ``−½ βᵀz``.

    A second column that is (numerically) parallel to the first, or zero, is dropped (μ = 0).
    Eigen-directions with ``|νᵢ| + λ = 0`` are left out (pseudo-inverse).
    """
    if len(b) == 2:
        g11, g12, g22 = G[0][0], G[0][1], G[1][1]
        if g22 <= 0 or g11 * g22 - g12 * g12 <= 1e-12 * g11 * g22:  # δ_prev ∥ u, or zero
            c, change = _subspace_minimiser([[A[0][0]]], [[g11]], [b[0]], lam)
            return [c[0], 0.0], change
    if len(b) == 1:
        g11 = G[0][0]
        if not g11 > 0:
            return [0.0], 0.0
        denominator = abs(A[0][0]) + lam * g11  # (|uᵀHu| + λ uᵀu)
        alpha = b[0] / denominator if denominator > 0 else 0.0
        return [alpha], -0.5 * alpha * b[0]
    # Cholesky of G (2×2)
    l11 = math.sqrt(g11)
    l21 = g12 / l11
    l22 = math.sqrt(g22 - l21 * l21)
    # β = L⁻¹ b
    beta1 = b[0] / l11
    beta2 = (b[1] - l21 * beta1) / l22
    # M = L⁻¹ A L⁻ᵀ: first W = L⁻¹A (rows), then M = W L⁻ᵀ (columns)
    w11, w12 = A[0][0] / l11, A[0][1] / l11
    w21, w22 = (A[1][0] - l21 * w11) / l22, (A[1][1] - l21 * w12) / l22
    m11 = w11 / l11
    m12 = (w12 - l21 * m11) / l22
    m22 = (w22 - l21 * (w21 / l11)) / l22
    # eigen-decomposition of the symmetric [[m11, m12], [m12, m22]]
    mean, radius = 0.5 * (m11 + m22), math.hypot(0.5 * (m11 - m22), m12)
    angle = 0.5 * math.atan2(2.0 * m12, m11 - m22)
    q1, q2 = (math.cos(angle), math.sin(angle)), (-math.sin(angle), math.cos(angle))
    z1 = z2 = 0.0
    for nu, q in ((mean + radius, q1), (mean - radius, q2)):
        denominator = abs(nu) + lam
        if denominator > 0:
            coefficient = (q[0] * beta1 + q[1] * beta2) / denominator
            z1, z2 = z1 + coefficient * q[0], z2 + coefficient * q[1]
    # c = L⁻ᵀ z
    mu = z2 / l22
    alpha = (z1 - l21 * mu) / l11
    return [alpha, mu], -0.5 * (beta1 * z1 + beta2 * z2)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _sumsq(vectors: Sequence[Any]) -> Any:
    """``‖v‖²`` of a list of arrays as a 0-d backend array (no host transfer)."""
    return sum(xp.sum(v * v) for v in vectors)


def _host(*arrays: Any) -> list[float]:
    """The entries of several small backend arrays (row-major) as Python floats, in one
    device-to-host transfer."""
    flat = xp.concatenate([xp.reshape(xp.asarray(a), (-1,)) for a in arrays])
    return [float(v) for v in asnumpy(flat)]


def _combine(alpha: float, u: Vector, mu: float, delta_prev: Vector | None) -> Vector:
    """``δ = α u + μ δ_prev`` (``α u`` before the first step)."""
    if delta_prev is None or mu == 0:
        return [alpha * ui for ui in u]
    return [alpha * ui + mu * di for ui, di in zip(u, delta_prev, strict=True)]
