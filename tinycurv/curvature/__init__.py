"""Curvature: dense references for small nets, Kronecker factors, ISAAC, GroupedNewton, SFN.

Math as pure functions; the optimisers in ``tinycurv.optim`` call the same functions.
"""

from tinycurv.curvature.damping import reduction_ratio
from tinycurv.curvature.dense import fisher, flatten, ggn, ggn_vp, hessian, unflatten
from tinycurv.curvature.estimators import (
    Estimate,
    SpectralDensity,
    fisher_output_matrix,
    ggn_diagonal,
    hutchinson_diagonal,
    hutchinson_trace,
    plot_spectral_density,
    smoothed_density,
    spectral_density,
)
from tinycurv.curvature.grouped import grouped_summary
from tinycurv.curvature.grouped_step import grouped_newton_step
from tinycurv.curvature.isaac import zeta, zeta_kron, zeta_star
from tinycurv.curvature.kfac import (
    ekfac_direction,
    ekfac_scaling,
    kfac_direction,
    kfac_direction_exact,
    kfac_eigen,
    kfac_factors,
    levenberg_marquardt,
    qmodel_coefficients,
)
from tinycurv.curvature.kfac_operator import KFACOperator
from tinycurv.curvature.matrix_free import (
    CGResult,
    GGNOperator,
    LanczosResult,
    conjugate_gradient,
    curvature_operator,
    lanczos,
    top_eigenvalues,
)
from tinycurv.curvature.sfn import abs_hessian_inverse, saddle_free_direction, subspace_minimiser

__all__ = [
    "KFACOperator",
    "ekfac_direction",
    "ekfac_scaling",
    "kfac_direction_exact",
    "kfac_eigen",
    "levenberg_marquardt",
    "qmodel_coefficients",
    "reduction_ratio",
    "CGResult",
    "Estimate",
    "GGNOperator",
    "LanczosResult",
    "SpectralDensity",
    "conjugate_gradient",
    "curvature_operator",
    "fisher_output_matrix",
    "ggn_diagonal",
    "hutchinson_diagonal",
    "hutchinson_trace",
    "lanczos",
    "plot_spectral_density",
    "smoothed_density",
    "spectral_density",
    "top_eigenvalues",
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
    "subspace_minimiser",
    "unflatten",
    "zeta",
    "zeta_kron",
    "zeta_star",
]
