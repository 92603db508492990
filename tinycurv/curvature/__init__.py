"""Curvature: dense references for small nets, Kronecker factors, ISAAC, GroupedNewton, SFN.

Math as pure functions; the optimisers in ``tinycurv.optim`` call the same functions.
"""

from tinycurv.curvature.dense import fisher, flatten, ggn, ggn_vp, hessian, unflatten
from tinycurv.curvature.grouped import grouped_summary
from tinycurv.curvature.grouped_step import grouped_newton_step
from tinycurv.curvature.isaac import zeta, zeta_kron, zeta_star
from tinycurv.curvature.kfac import kfac_direction, kfac_factors
from tinycurv.curvature.sfn import abs_hessian_inverse, saddle_free_direction

__all__ = [
    "abs_hessian_inverse",
    "fisher",
    "flatten",
    "ggn",
    "ggn_vp",
    "grouped_newton_step",
    "grouped_summary",
    "hessian",
    "kfac_direction",
    "kfac_factors",
    "saddle_free_direction",
    "unflatten",
    "zeta",
    "zeta_kron",
    "zeta_star",
]
