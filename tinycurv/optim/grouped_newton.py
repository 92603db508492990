"""GroupedNewton: one learning rate per group of parameters, from a summary of the loss.

P. Wolinski, "Adapting Newton's method to neural networks through a summary of higher-order
derivatives" (Algorithm 1), as the reference code ``p-wol/GroupedNewton`` runs it. With S
groups (default: every weight and every bias), gradient ``g_t`` and ``T = update_every``::

    u_t = momentum · u_{t−1} + (1 − dampening) · g_t        (u_0 = g_0)
    every T steps:  (g_bar, H_bar, D) = grouped_summary(loss, θ, u_t)          (Alg. 1)
                    eta_star = grouped_newton_step(g_bar, H_bar, D, lam_int)   (App. D)
                    eta ← lr_momentum · eta + (1 − lr_momentum) · eta_star  (eta_star at first)
                    rates = lr · max(eta, 0)
    θ_s ← θ_s − rates_s · u_{t,s}                             every step, every group s

``lr`` is the reference's ``damping``, ``lam_int`` its ``damping_int``. ``end_epoch(loss)``
runs the plateau schedule; ``curvature_batch`` picks the summary's batch (the paper's sampler:
``"sampler"``). Host-side: the S-sized summary is solved on the host. Defaults, sampler,
plateau schedule and the invariance of Appendix E: docs/grouped_newton.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinycurv.backend import asarray, asnumpy, is_array
from tinycurv.curvature.grouped import check_groups, grouped_summary
from tinycurv.curvature.grouped_step import grouped_newton_step
from tinycurv.optim.base import Hyperparameter, Optimizer, integer, number


class GroupedNewton(Optimizer):
    """GroupedNewton (Wolinski, Algorithm 1): per-group learning rates from a cubic model.

    Parameters
    ----------
    model : Module
        The network; its ``parameters()`` are updated in place.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the scalar batch loss as a Tensor.
    lr : float
        Global factor on the computed rates, > 0 (the reference's ``damping``; 0.1).
    lam_int : float
        Internal damping of the cubic model, ≥ 0 (the reference's ``damping_int``; 1.0).
    momentum : float
        Momentum of the direction u, in [0, 1] (0.9).
    dampening : float
        Dampening of the momentum, in [0, 1]: ``u ← momentum·u + (1 − dampening)·g`` (0.9).
    lr_momentum : float
        Exponential smoothing of the rates eta between updates, in [0, 1) (the reference's
        ``mom_lrs``; 0.5).
    update_every : int
        T ≥ 1: steps between two computations of the summary (the reference's ``period_hg``; 10).
    curvature_batch : None, int, (X_c, y_c) or "sampler"
        Where the summary is computed: the current training batch (None), a fixed batch,
        that many samples drawn from ``curvature_data`` at each update, or the paper's sampler
        (the next B′ = ``update_every`` × batch size samples of an in-order, cycling pass over
        ``curvature_data``).
    curvature_data : (X, y), optional
        The data set to draw from when ``curvature_batch`` is an int or ``"sampler"`` (host or
        backend arrays).
    groups : list of lists of int, optional
        A partition of the indices of ``model.parameters()`` into S groups; None: one group
        per parameter tensor.
    plateau_factor : float
        Factor in (0, 1) applied to ``lr`` and the rates by ``end_epoch`` on a plateau (0.5).
    plateau_patience : int
        Epochs without improvement tolerated before a reduction, ≥ 0 (0).
    plateau_threshold : float
        Relative improvement needed to count as better, ≥ 0 (1e-4).
    seed : int
        Seeds ``self.rng``, used to draw curvature batches.
    on_nonfinite : {"raise", "skip"}
        What a step with a non-finite loss, gradient or update does (``Optimizer``).

    Notes
    -----
    ``state`` holds ``"u"`` (the direction, one array per parameter), ``"eta"`` (the smoothed
    eta, S floats), ``"eta_star"`` (the last solve's eta), ``"rates"`` (the current per-group
    learning rates ``lr·max(eta, 0)``), ``"summary"`` (the last ``g_bar``, ``H_bar``, ``D`` as
    lists), ``"best_loss"`` and ``"bad_epochs"`` (the plateau schedule) and, with
    ``curvature_batch="sampler"``, ``"curvature_cursor"`` (the sampler's position).
    ``history["rates"]`` lists the rates used at every step (plot
    ``numpy.array(opt.history["rates"])``, shape (steps, S)); ``history["updates"]`` one dict
    per summary update (step, eta_star, eta, rates, the solver's case).
    """

    lr = Hyperparameter(number(low_open=True))
    lam_int = Hyperparameter(number())
    momentum = Hyperparameter(number(high=1.0))
    dampening = Hyperparameter(number(high=1.0))
    lr_momentum = Hyperparameter(number(high=1.0, high_open=True))
    update_every = Hyperparameter(integer())
    curvature_batch = Hyperparameter()
    groups = Hyperparameter()
    plateau_factor = Hyperparameter(number(high=1.0, low_open=True, high_open=True))
    plateau_patience = Hyperparameter(integer(low=0))
    plateau_threshold = Hyperparameter(number())
    seed = Hyperparameter(integer(low=0))

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        lr: float = 0.1,
        lam_int: float = 1.0,
        momentum: float = 0.9,
        dampening: float = 0.9,
        lr_momentum: float = 0.5,
        update_every: int = 10,
        curvature_batch: int | tuple[Any, Any] | str | None = None,
        curvature_data: tuple[Any, Any] | None = None,
        groups: Sequence[Sequence[int]] | None = None,
        plateau_factor: float = 0.5,
        plateau_patience: int = 0,
        plateau_threshold: float = 1e-4,
        seed: int = 0,
        on_nonfinite: str = "raise",
    ) -> None:
        params = model.parameters()
        groups = check_groups(groups, len(params))

        # where the curvature batch comes from: "current", "fixed", "sampler" or an int size
        self._fixed_batch: tuple[Any, Any] | None = None
        self._curvature_data: tuple[Any, Any] | None = None
        if curvature_batch is None:
            source: str | int = "current"
        elif isinstance(curvature_batch, str) and curvature_batch == "sampler":
            if curvature_data is None or len(curvature_data) != 2 or len(curvature_data[0]) < 1:
                raise ValueError(
                    "GroupedNewton: curvature_batch='sampler' needs curvature_data=(X, y), "
                    "the data set its in-order pass cycles over"
                )
            source = "sampler"
            self._curvature_data = (curvature_data[0], curvature_data[1])
        elif isinstance(curvature_batch, tuple | list):
            if len(curvature_batch) != 2:
                raise ValueError("GroupedNewton: curvature_batch must be None, an int or (X, y)")
            source = "fixed"
            self._fixed_batch = (_to_backend(curvature_batch[0]), _to_backend(curvature_batch[1]))
        elif isinstance(curvature_batch, int | np.integer) and not isinstance(
            curvature_batch, bool
        ):
            if curvature_batch < 1:
                raise ValueError(
                    f"GroupedNewton: curvature_batch must be ≥ 1, got {curvature_batch}"
                )
            if curvature_data is None or len(curvature_data) != 2:
                raise ValueError(
                    "GroupedNewton: curvature_batch=int needs curvature_data=(X, y) to draw from"
                )
            if int(curvature_batch) > len(curvature_data[0]):
                raise ValueError(
                    f"GroupedNewton: curvature_batch={curvature_batch} exceeds the "
                    f"{len(curvature_data[0])} samples of curvature_data"
                )
            source = int(curvature_batch)
            self._curvature_data = (curvature_data[0], curvature_data[1])
        else:
            raise ValueError(
                "GroupedNewton: curvature_batch must be None, an int, (X_c, y_c) or 'sampler', "
                f"got {_describe(curvature_batch)}"
            )

        super().__init__(
            model,
            loss_fn,
            on_nonfinite,
            lr=lr,
            lam_int=lam_int,
            momentum=momentum,
            dampening=dampening,
            lr_momentum=lr_momentum,
            update_every=update_every,
            curvature_batch=source,
            groups=groups,
            plateau_factor=plateau_factor,
            plateau_patience=plateau_patience,
            plateau_threshold=plateau_threshold,
            seed=seed,
        )
        self.rng = np.random.default_rng(self.seed)
        self.history: dict[str, list[Any]] = {"rates": [], "updates": []}

    # -- one step --------------------------------------------------------------------------------

    def _update(self, x: Any, y: Any) -> Any:
        loss, g = self.loss_and_grad(x, y)  # one forward + backward on the training batch
        u = self.state.get("u")
        if u is None:
            u = list(g)  # Alg. 1: u_0 = g_0
        else:
            m, keep = self.momentum, 1.0 - self.dampening
            u = [m * ui + keep * gi for ui, gi in zip(u, g, strict=True)]  # Alg. 1: momentum
        self.state["u"] = u

        if self.t % self.update_every == 0:
            self._update_rates(x, y, u)

        rates = self.state["rates"]
        for s, group in enumerate(self.groups):  # Alg. 1: θ_s ← θ_s − rates_s · u_s
            if rates[s] != 0.0:
                for i in group:
                    p = self.params[i]
                    p.data = p.data - rates[s] * u[i]
        self.history["rates"].append(tuple(rates))
        return loss

    def _update_rates(self, x: Any, y: Any, u: list[Any]) -> None:
        """Compute the summary along u, solve for eta_star, smooth, set the rates."""
        xc, yc = self._curvature_batch(x, y)
        closure = self.closure(xc, yc)
        g_bar, H_bar, D = grouped_summary(closure, self.params, u, self.groups)
        g_bar, H_bar, D = asnumpy(g_bar), asnumpy(H_bar), asnumpy(D)  # the S-sized transfer
        self.state["summary"] = {"g_bar": g_bar.tolist(), "H_bar": H_bar.tolist(), "D": D.tolist()}
        if np.all(np.isfinite(g_bar)) and np.all(np.isfinite(H_bar)) and np.all(np.isfinite(D)):
            eta_star, info = grouped_newton_step(g_bar, H_bar, D, self.lam_int, return_info=True)
            eta_star, case = [float(e) for e in eta_star], info["case"]
        else:  # treated like a failed solve: eta_star = 0 (warned)
            warnings.warn(
                f"GroupedNewton step {self.t + 1}: the curvature summary is not finite; "
                "eta_star = 0 at this update",
                RuntimeWarning,
                stacklevel=3,
            )
            eta_star, case = [0.0] * len(self.groups), "not finite"

        eta = self.state.get("eta")
        r = self.lr_momentum if eta is not None else 0.0  # the first update takes eta_star
        eta = (
            eta_star
            if eta is None
            else [r * e + (1.0 - r) * es for e, es in zip(eta, eta_star, strict=True)]
        )
        rates = [self.lr * max(e, 0.0) for e in eta]  # App. F: negative rates removed
        self.state.update(eta=eta, eta_star=eta_star, rates=rates)
        self.history["updates"].append(
            {"step": self.t, "eta_star": eta_star, "eta": eta, "rates": rates, "case": case}
        )

    def _curvature_batch(self, x: Any, y: Any) -> tuple[Any, Any]:
        source = self.curvature_batch
        if source == "current":
            return x, y
        if source == "fixed":
            assert self._fixed_batch is not None
            return self._fixed_batch
        X, Y = self._curvature_data  # type: ignore[misc]
        if source == "sampler":  # Alg. 1: B′ = T·B, the next samples of a separate pass
            size = self.update_every * len(x)
            start = self.state.get("curvature_cursor", 0)  # a Python int (host)
            if start >= len(X):
                start = 0
            stop = min(start + size, len(X))
            self.state["curvature_cursor"] = stop if stop < len(X) else 0
            return _take(X, np.arange(start, stop)), _take(Y, np.arange(start, stop))
        idx = self.rng.choice(len(X), size=int(source), replace=False)
        return _take(X, idx), _take(Y, idx)

    # -- the plateau schedule ------------------------------------------------------------------

    def end_epoch(self, mean_loss: float) -> bool:
        """Tell the optimiser an epoch ended; halve ``lr`` and the rates on a plateau.

        Call once per epoch with the epoch's mean training loss. If the loss is not below
        ``best · (1 − plateau_threshold)`` for more than ``plateau_patience`` consecutive
        epochs, ``lr`` and the current rates are multiplied by ``plateau_factor`` and the best
        loss is reset to ``mean_loss``.

        Returns
        -------
        bool
            Whether ``lr`` was reduced.
        """
        current = float(mean_loss)
        best = self.state.get("best_loss")
        bad = int(self.state.get("bad_epochs", 0))
        if best is None or current < best * (1.0 - self.plateau_threshold):
            best, bad = current, 0
        else:
            bad += 1
        reduced = bad > self.plateau_patience
        if reduced:
            factor = self.plateau_factor
            self.lr = self.lr * factor
            if "rates" in self.state:
                self.state["rates"] = [factor * r for r in self.state["rates"]]
            best, bad = current, 0
        self.state.update(best_loss=best, bad_epochs=bad)
        return reduced


def _describe(value: Any) -> str:
    """A string as its repr, anything else by its type's name (no array printed in full)."""
    return repr(value) if isinstance(value, str) else type(value).__name__


def _to_backend(a: Any) -> Any:
    """``a`` as a backend array, its dtype kept (backend arrays pass through)."""
    if is_array(a) and not isinstance(a, np.ndarray):
        return a
    a = np.asarray(a)
    return asarray(a, dtype=a.dtype)


def _take(a: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a host or backend array, as a backend array."""
    if isinstance(a, np.ndarray):
        rows = a[idx]
        return asarray(rows, dtype=rows.dtype)
    return a[asarray(idx)]
