"""Damping from the reduction ratio: the Levenberg–Marquardt rule K-FAC, HF and SFN share.

Martens & Grosse 2015 §6.5 (K-FAC), Martens 2010 §4.1 (Hessian-free) and Oldewage et al. 2024
eq. (8) (SFN) adapt the damping λ by how well the quadratic model M predicted the step δ::

    ρ = (h(θ + δ) − h(θ)) / (M(δ) − M(0))                     reduction_ratio
    λ ← ωλ if ρ > ¾,   λ/ω if ρ < ¼,   else λ   (ω < 1)       levenberg_marquardt

The optimisers differ only in ω (K-FAC: (19/20)^T₁; HF: 2/3; SFN: ``damping_decay``), in a
floor on λ, and in what a NaN ρ (no predicted change) does: K-FAC and HF raise λ, SFN keeps it
(as its reference code does). Python numbers give floats; backend arrays give arrays
(``xp.where``: no host transfer).
"""

from __future__ import annotations

import math
from typing import Any

from tinycurv.backend import quiet_float_errors, xp

__all__ = ["levenberg_marquardt", "reduction_ratio"]


def reduction_ratio(new_loss: Any, loss: Any, change: Any) -> Any:
    """ρ = (h(θ + δ) − h(θ)) / (M(δ) − M(0)), with ``change`` = M(δ) − M(0); NaN where it is 0."""
    if all(isinstance(v, int | float) for v in (new_loss, loss, change)):
        return (new_loss - loss) / change if change != 0 else math.nan
    with quiet_float_errors():
        return xp.where(change != 0, (new_loss - loss) / change, xp.nan)


def levenberg_marquardt(
    damping: Any,
    rho: Any,
    omega: float,
    min_damping: float = 0.0,
    boost: float | None = None,
    nan_raises: bool = True,
) -> Any:
    """λ ← ωλ if ρ > ¾, λ·boost if ρ < ¼ (boost = 1/ω by default), else λ; at least ``min_damping``.

    Parameters
    ----------
    damping, rho : floats, or backend arrays of one shape
        λ and the reduction ratio ρ.
    omega : float
        ω in (0, 1), the factor on λ after a good prediction.
    min_damping : float
        The floor on λ.
    boost : float, optional
        The factor after a poor prediction (HF's own ``damping_boost``); None: 1/ω.
    nan_raises : bool
        A NaN ρ raises λ (K-FAC, HF), or leaves it as it is (False: SFN's reference).
    """
    raised = (lambda lam: lam / omega) if boost is None else (lambda lam: lam * boost)
    if isinstance(damping, int | float) and isinstance(rho, int | float):
        if rho > 0.75:
            damping = omega * damping
        elif rho < 0.25 or (nan_raises and rho != rho):
            damping = raised(damping)
        return max(float(damping), min_damping)
    up = (rho < 0.25) | xp.isnan(rho) if nan_raises else rho < 0.25
    new = xp.where(rho > 0.75, omega * damping, xp.where(up, raised(damping), damping))
    return xp.maximum(new, min_damping) if min_damping else new
