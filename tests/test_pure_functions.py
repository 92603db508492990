"""Every optimiser trains with the pure functions of ``tinycurv.curvature``, looked up at call time.

Replacing a pure function — in its module (``tinycurv.curvature.kfac.kfac_direction``) or in
the package namespace (``tinycurv.curvature.kfac_direction``) — must change the optimiser's
step: the function that ``verify`` and the tests check is the one that trains
(``optim.base.PureFunctions``). The replacement returns the true result scaled by 1.5.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from test_matrix_free import mlp_problem

import tinycurv.curvature as curvature
from tinycurv.backend import asnumpy
from tinycurv.optim import ISAAC, KFAC, ExactSFN, SeriesSFN

CASES = [  # (optimiser, keyword arguments, module, function)
    (ISAAC, dict(lr=0.1, lam_a=1.0), "isaac", "zeta_star"),
    (ISAAC, dict(lr=0.1, lam_a=1.0, lam_g=1.0), "isaac", "zeta"),
    (KFAC, dict(lr=0.1, damping=0.1, mode="exact"), "kfac", "kfac_direction"),
    (KFAC, dict(lr=0.1, damping=0.1, mode="exact", damping_mode="exact"), "kfac",
     "kfac_direction_exact"),
    (KFAC, dict(lr=0.1, damping=0.1, mode="exact", eigen_correction=True), "kfac",
     "ekfac_direction"),
    (KFAC, dict(damping=0.1, mode="exact", step_rule="qmodel"), "kfac", "qmodel_coefficients"),
    (SeriesSFN, dict(damping=1.0, order=5), "sfn", "subspace_minimiser"),
    (ExactSFN, dict(lr=0.5, damping=1.0, adaptive=False), "sfn", "abs_hessian_inverse"),
]  # fmt: skip


def _scaled(value):
    if isinstance(value, tuple):  # (result, extra outputs): scale the result only
        return (_scaled(value[0]),) + value[1:]
    if isinstance(value, list):
        return [_scaled(v) for v in value]
    return 1.5 * value


def _after_two_steps(opt_class, kwargs):
    model, loss_fn, x, y = mlp_problem()
    opt = opt_class(model, loss_fn, **kwargs)
    opt.step(x, y)
    opt.step(x, y)
    return np.concatenate([asnumpy(p.data).ravel() for p in model.parameters()])


@pytest.mark.parametrize("where", ["module", "package"])
@pytest.mark.parametrize(("opt_class", "kwargs", "module", "name"), CASES)
def test_a_replaced_pure_function_changes_the_step(opt_class, kwargs, module, name, where,
                                                   monkeypatch):  # fmt: skip
    if name == "kfac_direction_exact" and where == "package":
        pytest.skip("reached through kfac_direction(damping_mode='exact'), the one entry point")
    honest = _after_two_steps(opt_class, kwargs)
    owner = (
        importlib.import_module(f"tinycurv.curvature.{module}") if where == "module" else curvature
    )
    real = getattr(owner, name)
    calls = []

    def broken(*args, **kw):
        calls.append(name)
        return _scaled(real(*args, **kw))

    monkeypatch.setattr(owner, name, broken)
    changed = _after_two_steps(opt_class, kwargs)
    assert calls, f"{opt_class.__name__} never called {where} {name}"
    assert not np.allclose(changed, honest, rtol=1e-9, atol=1e-12), (opt_class.__name__, name)
    monkeypatch.undo()
    np.testing.assert_array_equal(_after_two_steps(opt_class, kwargs), honest)
