"""Exact saddle-free Newton (ExactSFN) for small networks: the dense ``(|H| + λI)⁻¹g``.

Dauphin et al. (2014); the baseline of Oldewage, Clarke & Hernández-Lobato (TMLR 2024), the
reference code's ``SelectiveNewtonSGD`` with ``eigenvalue_transform_method: abs``. Per step::

    H = ∇²L (p×p, p HVPs: tinycurv.curvature.hessian),   H = QΛQᵀ (eigh)
    u = Q diag(1/(|Λ| + λ)) Qᵀ g                            tinycurv.curvature.abs_hessian_inverse
    δ = αu + μδ_prev,  θ ← θ − δ                            the step rules of SeriesSFN

Everything after u — the fixed step, ``adaptive="reference"`` and ``"subspace"``, the
Levenberg–Marquardt damping — is ``tinycurv.optim.sfn.SaddleFreeOptimizer`` (equations (6)–(8)
of ``tinycurv.curvature.sfn``), so ExactSFN is SeriesSFN with the series replaced by its limit.
Cost per step: p HVPs (p/64 batched sweeps), O(p³) for eigh, O(p²) memory; the Hessian and its
eigendecomposition stay on the device. Shapes: g, u, δ are lists shaped like the parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature import dense
from tinycurv.curvature import sfn as sfn_module
from tinycurv.optim.base import Hyperparameter, NonFiniteError, PureFunctions, integer
from tinycurv.optim.sfn import SaddleFreeOptimizer

sfn_math = PureFunctions(sfn_module)  # the pure functions, looked up at every call

Vector = list[Any]

#: The default ceiling on the parameter count: a 3000×3000 float64 Hessian is 72 MB and its
#: eigendecomposition takes seconds on a CPU.
MAX_PARAMS = 3000


class ExactSFN(SaddleFreeOptimizer):
    """Saddle-free Newton with the dense Hessian, for networks of at most ``max_params``.

    Parameters
    ----------
    model : Module
        The network; its ``parameters()`` are updated in place.
    loss_fn : callable
        ``loss_fn(outputs, targets)``, the scalar batch loss as a Tensor.
    lr : float
        α of the fixed step (``adaptive=False``).
    damping : float
        λ₀ ≥ 0 added to the absolute eigenvalues (the current one is ``state["damping"]``).
    adaptive : False, "reference", "subspace" or True
        The step rule, as in ``SeriesSFN``.
    momentum : float
        μ of the fixed step.
    damping_decay, min_damping, reject_uphill
        As in ``SeriesSFN``.
    max_params : int
        The largest parameter count accepted: the dense Hessian of p parameters costs p HVPs
        and p² memory, its eigendecomposition O(p³) time.
    chunk : int
        Hessian columns per batched HVP sweep.
    on_nonfinite : {"raise", "skip"}
        What a non-finite step does (``Optimizer``).

    Raises
    ------
    ValueError
        At construction, for a model with more than ``max_params`` parameters.
    """

    max_params = Hyperparameter(integer())
    chunk = Hyperparameter(integer())

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        lr: float = 1.0,
        damping: float = 1.0,
        adaptive: bool | str = True,
        momentum: float = 0.5,
        damping_decay: float = 0.9,
        min_damping: float = 1e-8,
        reject_uphill: bool = True,
        max_params: int = MAX_PARAMS,
        chunk: int = dense.CHUNK,
        on_nonfinite: str = "raise",
    ) -> None:
        super().__init__(
            model,
            loss_fn,
            on_nonfinite,
            lr=lr,
            damping=damping,
            adaptive=adaptive,
            momentum=momentum,
            damping_decay=damping_decay,
            min_damping=min_damping,
            reject_uphill=reject_uphill,
            max_params=max_params,
            chunk=chunk,
        )
        p = sum(param.size for param in self.params)
        if p > self.max_params:
            raise ValueError(
                f"ExactSFN: the model has p = {p} parameters, more than max_params = "
                f"{self.max_params}: the dense Hessian costs p HVPs and p² = {p * p:.3g} numbers "
                f"of memory, eigh O(p³) time. Use SeriesSFN, or raise max_params"
            )

    def _update(self, x: Any, y: Any) -> Any:
        return self._saddle_free_update(x, y)

    def _direction(self, closure: Callable[[], Any], g: Vector, lam: float) -> Vector:
        """``u = (|H| + λI)⁻¹ g`` exactly: dense Hessian, eigh, ``abs_hessian_inverse``."""
        H = dense.hessian(closure, self.params, chunk=self.chunk)
        try:
            u = sfn_math.abs_hessian_inverse(H, dense.flatten(g), lam)
        except getattr(xp.linalg, "LinAlgError", ArithmeticError) as err:  # eigh of NaN/inf
            raise NonFiniteError(f"the Hessian's eigendecomposition failed ({err})") from err
        except ValueError as err:  # |H| singular with λ = 0
            raise NonFiniteError(str(err)) from err
        return dense.unflatten(u, self.params)
