"""The one Levenberg–Marquardt rule and reduction ratio that K-FAC, Hessian-free and SFN share.

``tinycurv.curvature.damping``: the rule on Python numbers equals the rule on backend arrays
(a class of inputs, by hypothesis); the three optimisers' constants; and each optimiser's
adaptive damping goes through that one function (replacing it changes every optimiser's λ).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_matrix_free import mlp_problem

from tinycurv.backend import asarray, asnumpy
from tinycurv.curvature import damping
from tinycurv.optim import KFAC, HessianFree, SeriesSFN

rhos = st.one_of(st.floats(-10, 10), st.just(math.nan), st.sampled_from([0.25, 0.75]))


@settings(max_examples=200, deadline=None)
@given(lam=st.floats(1e-6, 1e3), rho=rhos, omega=st.floats(0.05, 0.99),
       floor=st.sampled_from([0.0, 1e-3]), nan_raises=st.booleans())  # fmt: skip
def test_the_rule_on_numbers_and_on_arrays(lam, rho, omega, floor, nan_raises):
    want = lam * omega if rho > 0.75 else lam / omega if rho < 0.25 else lam
    if rho != rho:
        want = lam / omega if nan_raises else lam
    want = max(want, floor)
    got = damping.levenberg_marquardt(lam, rho, omega, floor, nan_raises=nan_raises)
    assert isinstance(got, float) and got == want
    arr = damping.levenberg_marquardt(
        asarray([lam]), asarray([rho]), omega, floor, nan_raises=nan_raises
    )
    assert float(asnumpy(arr)[0]) == want


def test_the_optimisers_constants():
    from tinycurv.curvature import kfac, sfn
    from tinycurv.optim import hessian_free

    assert kfac.levenberg_marquardt is damping.levenberg_marquardt  # M&G §6.5: ω = (19/20)^T₁
    assert hessian_free.levenberg_marquardt(1.0, 0.1) == 1.5  # Martens 2010: ×3/2, ×2/3
    assert hessian_free.levenberg_marquardt(1.0, 0.9) == 2 / 3
    assert hessian_free.levenberg_marquardt(1.0, math.nan) == 1.5
    assert sfn.levenberg_marquardt(1.0, math.nan, 0.9) == 1.0  # the reference keeps λ
    assert sfn.levenberg_marquardt(1e-9, 0.9, 0.9, 1e-8) == 1e-8
    assert damping.reduction_ratio(0.5, 1.0, -1.0) == 0.5
    assert math.isnan(damping.reduction_ratio(0.5, 1.0, 0.0))
    ratio = damping.reduction_ratio(asarray(0.5), asarray(1.0), asarray([-2.0, 0.0]))
    got = asnumpy(ratio)
    assert got[0] == 0.25 and math.isnan(got[1])


def _adapted_damping(make, x, y, steps):
    opt = make()
    for _ in range(steps):
        opt.step(x, y)
    value = opt.state.get("damping")
    return float(np.ravel(asnumpy(value))[0]) if value is not None else None


@pytest.mark.parametrize("name", ["kfac", "hessian-free", "sfn-subspace", "sfn-reference"])
def test_every_adaptive_optimiser_calls_the_one_rule(name, monkeypatch):
    model, loss_fn, x, y = mlp_problem()
    init = [p.data.copy() for p in model.parameters()]

    def make():
        for p, v in zip(model.parameters(), init, strict=True):
            p.data = v.copy()
        if name == "kfac":
            return KFAC(model, loss_fn, lr=0.1, damping=0.3, mode="exact", adapt_damping=True,
                        adapt_every=1)  # fmt: skip
        if name == "hessian-free":
            return HessianFree(model, loss_fn, damping=2.0, cg_max_iter=5)
        adaptive = name.split("-")[1]
        return SeriesSFN(model, loss_fn, damping=1.0, adaptive=adaptive, order=5)

    honest = _adapted_damping(make, x, y, 3)
    real = damping.levenberg_marquardt
    monkeypatch.setattr(
        damping, "levenberg_marquardt", lambda lam, *a, **k: 7.0 * real(lam, *a, **k)
    )
    broken = _adapted_damping(make, x, y, 3)
    assert honest is not None and broken is not None
    assert broken != pytest.approx(honest, rel=1e-6), name
