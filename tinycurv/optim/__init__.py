"""Optimisers, all behind one interface (``tinycurv.optim.base.Optimizer``)::

opt = Method(model, loss_fn, **hyperparameters)
loss = opt.step(x, y)
"""

from tinycurv.optim.adam import Adam
from tinycurv.optim.base import NonFiniteError, Optimizer
from tinycurv.optim.exact_sfn import ExactSFN
from tinycurv.optim.grouped_newton import GroupedNewton
from tinycurv.optim.hessian_free import HessianFree
from tinycurv.optim.isaac import ISAAC
from tinycurv.optim.kfac import KFAC
from tinycurv.optim.natural_gradient import NaturalGradient
from tinycurv.optim.sfn import SeriesSFN
from tinycurv.optim.sgd import SGD

__all__ = [
    "HessianFree",
    "NaturalGradient",
    "ISAAC",
    "KFAC",
    "SGD",
    "Adam",
    "ExactSFN",
    "GroupedNewton",
    "NonFiniteError",
    "Optimizer",
    "SeriesSFN",
]
