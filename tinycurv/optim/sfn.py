"""Series saddle-free Newton (SeriesSFN) and the step rules it shares with ExactSFN.

Oldewage, Clarke & Hernández-Lobato (TMLR 2024, arXiv 2310.14901); reference code
rmclarke/SeriesOfHessianVectorProducts (``HessianSeriesOptimiser``). Equation numbers are those
of ``tinycurv.curvature.sfn``, where every equation lives; this module only calls them (through
the module, ``sfn_math.f(...)``) and keeps the state. Per step, on one batch (g, H of the loss)::

    u  ≈ (|H| + λI)⁻¹ g       SeriesSFN: series (1)–(4), V by (5) or the reference's running max
    δ  = αu + μδ_prev          (6): α = lr, μ = momentum (adaptive=False), or by (7)
    θ ← θ − δ,  λ by (8)       adaptive="reference" | "subspace" only

``adaptive="reference"``: the reference's 2×2 solve (α = 1, μ = 0) and LM rule, uphill steps
kept; ``"subspace"``: the exact saddle-free model on span{u, δ_prev}, uphill steps undone.
Shapes: parameters θ, g, u, δ are lists of arrays shaped like ``model.parameters()``. Cost,
host transfers, derivations and departures from the reference: docs/sfn.md.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from tinycurv import dual as D
from tinycurv.backend import asnumpy, xp
from tinycurv.curvature import sfn as sfn_module
from tinycurv.functional import hvp, value_and_grad
from tinycurv.optim.base import (
    Hyperparameter,
    NonFiniteError,
    Optimizer,
    PureFunctions,
    SkipStep,
    flag,
    integer,
    number,
)
from tinycurv.tensor import no_grad

sfn_math = PureFunctions(sfn_module)  # the pure functions, looked up at every call

Vector = list[Any]

#: The step rules: the fixed step and the two adaptive ones (``True`` means ``DEFAULT_ADAPTIVE``).
ADAPTIVE_RULES = (False, "reference", "subspace")
DEFAULT_ADAPTIVE = "subspace"
#: The default Wynn order k (docs/sfn.md, "Choosing the defaults").
DEFAULT_ACCELERATION = 2
#: The scale rules of SeriesSFN (or a float: V fixed); ``None`` means "running-max".
SCALE_RULES = ("running-max", "power")


def adaptive_rule(owner: str, name: str, value: Any) -> Any:
    """A ``Hyperparameter`` kind: False, "reference" or "subspace" (True: ``DEFAULT_ADAPTIVE``)."""
    if value is True:
        return DEFAULT_ADAPTIVE
    if value is False or (isinstance(value, str) and value in ADAPTIVE_RULES):
        return value
    raise ValueError(f"{owner}: {name} must be one of {ADAPTIVE_RULES} or True, got {value!r}")


def scale_rule(owner: str, name: str, value: Any) -> Any:
    """A ``Hyperparameter`` kind: "running-max" (or None), "power", or a finite float > 0."""
    if value is None:
        return "running-max"
    if isinstance(value, str):
        if value in SCALE_RULES:
            return value
    elif not isinstance(value, bool) and isinstance(value, numbers.Real):
        if math.isfinite(float(value)) and float(value) > 0:
            return float(value)
    raise ValueError(f"{owner}: {name} must be one of {SCALE_RULES}, None or > 0, got {value!r}")


class SaddleFreeOptimizer(Optimizer):
    """The step rules of saddle-free Newton; a subclass supplies ``_direction`` (u) and an
    ``_update`` that calls ``_saddle_free_update``.

    Hyperparameters shared by ``SeriesSFN`` and ``ExactSFN`` (see their docstrings).
    ``state``: ``"damping"`` (λ), ``"delta"`` (δ of the last step taken), ``"alpha"``, ``"mu"``,
    ``"rho"``, ``"momentum_buffer"`` (b of the reference rule) and ``"rejected"`` (subspace).
    """

    damping = Hyperparameter(number())
    adaptive = Hyperparameter(adaptive_rule)
    lr = Hyperparameter(number())
    momentum = Hyperparameter(number())
    damping_decay = Hyperparameter(number(high=1.0, low_open=True, high_open=True))
    min_damping = Hyperparameter(number())
    reject_uphill = Hyperparameter(flag)

    def _direction(self, closure: Callable[[], Any], g: Vector, lam: float) -> Vector:
        raise NotImplementedError

    def _saddle_free_update(self, x: Any, y: Any) -> Any:
        """One step: g, u = ``self._direction``, then the step rule; returns the loss L(θ).

        (Subclasses' ``_update`` call this, so that tests/test_backend_guard.py's scan of host
        transfers follows ``self._direction`` into the subclass.)
        """
        closure = self.closure(x, y)
        loss, g = value_and_grad(closure, self.params)  # one forward + backward
        lam = float(self.state.get("damping", self.damping))
        u = self._direction(closure, g, lam)
        if self.adaptive == "reference":
            self._reference_step(closure, loss, g, u, lam)
        elif self.adaptive == "subspace":
            self._subspace_step(closure, loss, g, u, lam)
        else:
            self._fixed_step(u, lam)
        return loss

    # -- adaptive=False: α = lr, μ = momentum, λ fixed ------------------------------------------

    def _fixed_step(self, u: Vector, lam: float) -> None:
        alpha, mu = self.lr, self.momentum
        delta = _combine(alpha, u, mu, self.state.get("delta"))  # (6)
        self.apply_update(delta)  # a non-finite δ: Optimizer.step restores everything
        self.state.update(delta=delta, damping=lam, alpha=alpha, mu=mu)

    # -- adaptive="reference": the reference code's rule, step for step ---------------------------

    def _reference_step(
        self, closure: Callable[[], Any], loss: Any, g: Vector, u: Vector, lam: float
    ) -> None:
        """(7, reference) then (8) with the reference's constants; an uphill step is kept."""
        delta_prev, b = self.state.get("delta"), self.state.get("momentum_buffer")
        alpha_prev = float(self.state.get("alpha", 0.0))
        products = [_dot(g, u)]
        if delta_prev is not None:
            products.append(_dot(g, delta_prev))
            products.append(_dot(delta_prev, b) if b is not None else xp.zeros_like(products[0]))
        numbers = _host(D.primal(loss), *products)  # L(θ), gᵀu, gᵀδ_prev, δ_prevᵀb: one read
        L, g_u = numbers[0], numbers[1]
        g_d, d_b = (numbers[2], numbers[3]) if delta_prev is not None else (0.0, 0.0)
        if not all(math.isfinite(v) for v in numbers):
            raise NonFiniteError("the quadratic model is not finite (non-finite direction)")
        alpha, mu = sfn_math.reference_coefficients(g_u, g_d, d_b, alpha_prev)
        if not (math.isfinite(alpha) and math.isfinite(mu)):
            raise NonFiniteError("the reference's 2×2 system is singular")
        delta = _combine(alpha, u, mu, delta_prev)  # (6)
        buffer = [alpha * gi for gi in g] if b is None else _axpby(mu, b, alpha, g)  # b ← μb + αg
        self.apply_update(delta)
        new_loss = self._loss_after(closure)
        if not math.isfinite(new_loss):
            raise NonFiniteError(f"the loss after the step is {new_loss}")
        change = sfn_math.reference_model_change(alpha, mu, g_u, g_d, d_b)
        rho = sfn_math.reduction_ratio(new_loss, L, change)
        lam = sfn_math.levenberg_marquardt(lam, rho, self.damping_decay, self.min_damping)
        self.state.update(
            delta=delta, momentum_buffer=buffer, damping=lam, alpha=alpha, mu=mu, rho=rho
        )

    # -- adaptive="subspace": the exact saddle-free model on span{u, δ_prev} ----------------------

    def _subspace_step(
        self, closure: Callable[[], Any], loss: Any, g: Vector, u: Vector, lam: float
    ) -> None:
        """(7, subspace) on ``DᵀHD`` from one batched HVP, then (8); uphill steps undone."""
        delta_prev = self.state.get("delta")
        k = 1 if delta_prev is None else 2
        if k == 1:
            Dm = [ui[None] for ui in u]
        else:
            Dm = [xp.stack([ui, di]) for ui, di in zip(u, delta_prev, strict=True)]
        HD = hvp(closure, self.params, Dm, batched=True)  # [H u, H δ_prev] in one sweep
        flat = lambda a: xp.reshape(a, (k, -1))  # noqa: E731
        A = sum(flat(d) @ flat(h).T for d, h in zip(Dm, HD, strict=True))  # DᵀHD
        G = sum(flat(d) @ flat(d).T for d in Dm)  # DᵀD
        b = sum(flat(d) @ xp.reshape(gi, (-1,)) for d, gi in zip(Dm, g, strict=True))  # Dᵀg
        numbers = _host(D.primal(loss), A, G, b)  # L(θ) and k² + k² + k numbers, one read
        if not all(math.isfinite(v) for v in numbers):
            raise NonFiniteError("the quadratic model is not finite (non-finite direction)")
        L = numbers[0]
        if k == 1:
            a11, g11, b1 = numbers[1:]
            c, change = sfn_math.subspace_minimiser([[a11]], [[g11]], [b1], lam)
            alpha, mu = c[0], 0.0
        else:
            a11, a12, _, a22, g11, g12, _, g22, b1, b2 = numbers[1:]
            c, change = sfn_math.subspace_minimiser(
                [[a11, a12], [a12, a22]], [[g11, g12], [g12, g22]], [b1, b2], lam
            )
            alpha, mu = c
        delta = _combine(alpha, u, mu, delta_prev)  # (6)
        theta = [p.data for p in self.params]
        self.apply_update(delta)
        new_loss = self._loss_after(closure)
        rho = sfn_math.reduction_ratio(new_loss, L, change)
        self.state["rho"] = rho
        finite = math.isfinite(new_loss)
        if not finite or (self.reject_uphill and new_loss > L):
            for p, old in zip(self.params, theta, strict=True):  # undo the step exactly
                p.data = old
            self.state["damping"] = max(lam / self.damping_decay, self.min_damping)
            self.state["rejected"] = int(self.state.get("rejected", 0)) + 1
            if not finite:
                self.warn_skip(f"the loss after the step is {new_loss}; step undone, λ raised")
            return
        lam = sfn_math.levenberg_marquardt(lam, rho, self.damping_decay, self.min_damping)
        self.state.update(delta=delta, damping=lam, alpha=alpha, mu=mu)

    def _loss_after(self, closure: Callable[[], Any]) -> float:
        """``L(θ − δ)`` on the same batch: one forward pass, one host transfer."""
        with no_grad():
            return _host(D.primal(closure().data))[0]


class SeriesSFN(SaddleFreeOptimizer):
    """Series saddle-free Newton: u by N terms of the series (1)–(4) (module docstring).

    Parameters
    ----------
    model : Module
        The network; its ``parameters()`` are updated in place.
    loss_fn : callable
        ``loss_fn(outputs, targets)``, the scalar batch loss as a Tensor.
    order : int
        N ≥ 1 series terms: ``2(N − 1)`` HVPs per step.
    acceleration : int or None
        k ≥ 0, Wynn's ε (4) over the last ``2k + 1`` partial sums (``N ≥ 2k + 1``); None:
        ``min(2, (N − 1)//2)``.
    damping : float
        λ₀ ≥ 0, the initial damping (the current one is ``state["damping"]``).
    scale : "power", "running-max" (or None) or float
        V: the larger of ``scale_margin`` × a power-iteration estimate of ``λ_max(H²)`` (5),
        refreshed every ``scale_every`` steps with ``power_iters`` HVPs from the last vector (and
        at once when ``‖H²g‖/‖g‖`` exceeds twice it), and this batch's ``‖H²g‖/‖g‖``; the
        reference's running maximum of ``‖H²g‖/‖g‖`` from ``initial_scale``; or fixed.
    adaptive : False, "reference", "subspace" or True (= ``DEFAULT_ADAPTIVE``)
        The step rule (module docstring).
    lr, momentum : float
        α, μ of the fixed step.
    damping_decay : float
        ω in (0, 1) of the Levenberg–Marquardt rule (8).
    min_damping : float
        The floor of λ.
    initial_scale : float
        Start of the running maximum (reference: 100).
    power_iters, scale_every : int
        HVPs per refresh of the power scale, and steps between refreshes.
    scale_margin : float
        V = scale_margin × estimate; (1) converges while the estimate is ≥ λ_max²/(2·margin).
    seed : int
        Seeds the power iteration's first start vector (``seed + t``).
    reject_uphill : bool
        ``adaptive="subspace"``: undo a step that increases the batch loss and raise λ by 1/ω.
    on_nonfinite : {"raise", "skip"}
        What a non-finite step does (``Optimizer``).

    Notes
    -----
    ``state["V"]`` is the scale of the last step; ``"V_power"`` and ``"power_vector"`` the last
    estimate of (5) times the margin, and its warm start.
    A series that grows (V too small) gets V enlarged and is retried once (RuntimeWarning):
    ``"power"`` refreshes its estimate at once (and takes at least the growth's lower bound on
    ``λ_max²``), ``"running-max"`` doubles that lower bound; growing again skips the step
    (``SkipStep``); with a fixed float scale it raises.
    """

    order = Hyperparameter(integer())
    acceleration = Hyperparameter(integer(low=0))
    scale = Hyperparameter(scale_rule)
    initial_scale = Hyperparameter(number(low_open=True))
    power_iters = Hyperparameter(integer())
    scale_every = Hyperparameter(integer())
    scale_margin = Hyperparameter(number(low_open=True))
    seed = Hyperparameter(integer(low=0))

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        order: int = 20,
        acceleration: int | None = None,
        damping: float = 1.0,
        scale: float | str | None = "power",
        adaptive: bool | str = True,
        lr: float = 1.0,
        momentum: float = 0.5,
        damping_decay: float = 0.9,
        min_damping: float = 1e-8,
        initial_scale: float = 100.0,
        power_iters: int = 20,
        scale_every: int = 10,
        scale_margin: float = 0.75,
        seed: int = 0,
        reject_uphill: bool = True,
        on_nonfinite: str = "raise",
    ) -> None:
        if int(order) != order or order < 1:
            raise ValueError(f"SeriesSFN: order N must be an integer ≥ 1, got {order!r}")
        if acceleration is None:  # the default: 2, or the most that N allows
            acceleration = min(DEFAULT_ACCELERATION, (int(order) - 1) // 2)
        if int(acceleration) != acceleration or not 0 <= 2 * acceleration + 1 <= order:
            raise ValueError(
                f"SeriesSFN: acceleration k must be an integer with 0 ≤ k and 2k + 1 ≤ N = {order},"
                f" got {acceleration!r}"
            )
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
            scale_every=scale_every,
            scale_margin=scale_margin,
            seed=seed,
            reject_uphill=reject_uphill,
        )

    def _update(self, x: Any, y: Any) -> Any:
        return self._saddle_free_update(x, y)

    def _direction(self, closure: Callable[[], Any], g: Vector, lam: float) -> Vector:
        """``u ≈ (|H| + λI)⁻¹ g`` by the series; enlarges V and retries once if it grows."""
        hvp_fn = lambda vs: hvp(closure, self.params, vs)  # noqa: E731
        V, first_products = self._scale(hvp_fn, g)
        products = _SeriesProducts(hvp_fn, first_products)
        try:
            return self._series(products, g, V, lam)
        except ValueError as err:
            if not str(err).startswith(sfn_math.SCALE_TOO_SMALL) or isinstance(self.scale, float):
                raise
            V_new = products.enlarged_scale(V)
        if self.scale == "power" and math.isfinite(V_new):  # refresh (5) now, from the last w
            self.state["V_power"] = self.scale_margin * _host(self._power_estimate(hvp_fn))[0]
            V_new = max(self.state["V_power"], 0.5 * V_new)  # ½ V_new: a lower bound on λ_max²
        if not math.isfinite(V_new):
            raise NonFiniteError("the series is not finite")
        warnings.warn(
            f"{type(self).__name__} step {self.t + 1}: scale V = {V:.4g} too small for the series "
            f"(a term grew); enlarged to V = {V_new:.4g} and retried",
            RuntimeWarning,
            stacklevel=5,
        )
        self.state["V"] = V_new
        try:
            return self._series(_SeriesProducts(hvp_fn, first_products), g, V_new, lam)
        except ValueError as err:
            if not str(err).startswith(sfn_math.SCALE_TOO_SMALL):
                raise
            # what was learned stays: the next step starts from the enlarged V
            keep = {k: self.state[k] for k in ("V", "V_power", "power_vector") if k in self.state}
            raise SkipStep(f"{err}; even after enlarging V once", keep=keep) from err

    def _power_estimate(self, hvp_fn: Callable[[Vector], Vector]) -> Any:
        """(5) from the last vector (a random one at first); the estimate stays on the device."""
        start = self.state.get("power_vector")
        if start is None:
            start = sfn_math.random_start([p.data for p in self.params], self.seed + self.t)
        estimate, self.state["power_vector"] = sfn_math.power_iteration(
            hvp_fn, start, self.power_iters
        )
        return estimate

    def _series(self, products: _SeriesProducts, g: Vector, V: float, lam: float) -> Vector:
        return sfn_math.series_operator(products, g, self.order, V, lam, self.acceleration)

    def _scale(self, hvp_fn: Callable[[Vector], Vector], g: Vector) -> tuple[float, list]:
        """V for this step and the products already made (``[Hg, H²g]`` for the running max).

        Raises ``NonFiniteError`` if g (or its curvature) is not finite.
        """
        scale = self.scale
        if scale == "running-max":
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
        if scale == "power":
            Hg = hvp_fn(g)
            H2g = hvp_fn(Hg)  # the first term of the series: reused there
            refresh = "V_power" not in self.state or self.t % self.scale_every == 0
            estimate = self._power_estimate(hvp_fn) if refresh else None
            numbers = _host(_sumsq(g), _sumsq(H2g), *([] if estimate is None else [estimate]))
            g2, H2g2 = numbers[0], numbers[1]
            if not all(math.isfinite(v) for v in numbers):
                raise NonFiniteError("the gradient or its curvature is not finite")
            ratio = math.sqrt(H2g2 / g2) if g2 > 0 else 0.0  # ‖H²g‖/‖g‖ ≤ λ_max(H²)
            if refresh:
                self.state["V_power"] = self.scale_margin * numbers[2]  # (5)
            elif ratio > 2.0 * self.state["V_power"]:  # this batch's curvature outgrew V: (5) now
                self.state["V_power"] = self.scale_margin * _host(self._power_estimate(hvp_fn))[0]
            tiny = float(xp.finfo(g[0].dtype).tiny)
            V = max(float(self.state["V_power"]), ratio, tiny)  # the free lower bound as a floor
            self.state["V"] = V
            return V, [Hg, H2g]
        if not math.isfinite(_host(_sumsq(g))[0]):
            raise NonFiniteError("the gradient is not finite")
        V = float(scale)
        self.state["V"] = V
        return V, []


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

        The larger of (a) ``(1 + r)V`` where ``r = ‖vₙ‖/‖vₙ₋₁‖ > 1`` (Y symmetric: some
        ``|1 − λᵢ²/V| ≥ r``) and (b) the Rayleigh quotient ``‖Hvₙ‖²/‖vₙ‖²`` (one more HVP).
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
# small helpers (lists of arrays; no equations here)
# --------------------------------------------------------------------------------------------
def _sumsq(vectors: Sequence[Any]) -> Any:
    """``‖v‖²`` of a list of arrays as a 0-d backend array (no host transfer)."""
    return sum(xp.sum(v * v) for v in vectors)


def _dot(a: Sequence[Any], b: Sequence[Any]) -> Any:
    """``aᵀb`` of two lists of arrays as a 0-d backend array (no host transfer)."""
    return sum(xp.sum(x * y) for x, y in zip(a, b, strict=True))


def _host(*arrays: Any) -> list[float]:
    """The entries of several small backend arrays (row-major) as Python floats, in one
    device-to-host transfer."""
    flat = xp.concatenate([xp.reshape(xp.asarray(a), (-1,)) for a in arrays])
    return [float(v) for v in asnumpy(flat)]


def _combine(alpha: float, u: Vector, mu: float, delta_prev: Vector | None) -> Vector:
    """``δ = α u + μ δ_prev`` (6) (``α u`` before the first step)."""
    if delta_prev is None or mu == 0:
        return [alpha * ui for ui in u]
    return _axpby(alpha, u, mu, delta_prev)


def _axpby(a: float, x: Vector, b: float, y: Vector) -> Vector:
    """``a x + b y`` for lists of arrays."""
    return [a * xi + b * yi for xi, yi in zip(x, y, strict=True)]
