"""``tinycurv verify``: every check passes, a perturbed check fails, and planted bugs fail theirs.

The planted bugs are monkeypatches of stable public names (a one-line bug each, as
``tools/mutation.py`` plants them in the source): each must make the check of its claim fail,
so that a wrong optimiser rule or layer cannot pass ``verify``.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinycurv.curvature as curvature
import tinycurv.optim.adam as adam_module
import tinycurv.optim.grouped_newton as gn_module
import tinycurv.optim.sgd as sgd_module
from tinycurv import nn, optim, verify
from tinycurv.backend import xp


@pytest.fixture(autouse=True)
def _no_break_env(monkeypatch):
    monkeypatch.delenv(verify.BREAK_ENV, raising=False)


def _passed(name: str) -> bool:
    (outcome,) = verify.run([name])
    return outcome.passed


def test_every_check_passes():
    outcomes = verify.run()
    failed = [(o.check.name, o.error, o.tolerance, o.message) for o in outcomes if not o.passed]
    assert not failed
    assert {o.check.name for o in outcomes} == set(verify.CHECKS)


def test_every_optimiser_and_layer_has_a_check():
    names = set(verify.CHECKS)
    rules = {"sgd-rule", "adam-rule", "kfac-rule", "isaac-rule", "gn-rule", "sfn-rule"}
    layers = {"layer-linear", "layer-conv2d", "layer-maxpool", "layer-avgpool", "loss-values"}
    engine = {"grad-fd", "hvp-cnn", "hvp-ops", "hvp-batched", "kfac-ce-exact", "isaac-conv-eq20"}
    assert rules | layers | engine <= names
    for check in verify.CHECKS.values():
        assert check.claim and check.source and "\n" not in check.claim


def test_perturb_makes_a_check_fail():
    (ok,) = verify.run(["sgd-rule"])
    (broken,) = verify.run(["sgd-rule"], perturb={"sgd-rule": 1.0})
    assert ok.passed and not broken.passed
    assert broken.error == pytest.approx(ok.error + 1.0)


def test_break_environment_variable(monkeypatch):
    monkeypatch.setenv(verify.BREAK_ENV, "layer-maxpool=0.5")
    (outcome,) = verify.run(["layer-maxpool"])
    assert not outcome.passed and outcome.error == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# planted bugs: the relevant check must fail
# --------------------------------------------------------------------------------------------
def _damped_momentum(state, directions, beta, nesterov):
    """``momentum_directions`` with dampening: b ← μb + (1 − μ)d (PyTorch's dampening = μ)."""
    buffers = state.get("momentum_buffer")
    if buffers is None:
        buffers = [d.copy() for d in directions]
    else:
        buffers = [beta * b + (1 - beta) * d for b, d in zip(buffers, directions, strict=True)]
    state["momentum_buffer"] = buffers
    return [d + beta * b for d, b in zip(directions, buffers, strict=True)] if nesterov else buffers


def test_sgd_momentum_with_dampening_fails_sgd_rule(monkeypatch):
    monkeypatch.setattr(sgd_module, "momentum_directions", _damped_momentum)
    assert not _passed("sgd-rule")


def test_adam_without_bias_correction_fails_adam_rule(monkeypatch):
    original = adam_module.adam_steps
    monkeypatch.setattr(adam_module, "adam_steps", lambda *args: (original(*args)[0], args[4]))
    assert not _passed("adam-rule")


def test_maxpool_padding_with_zero_fails_layer_maxpool(monkeypatch):
    import tinycurv.nn.layers as layers

    original = layers.patches
    monkeypatch.setattr(layers, "patches", lambda *args, fill=0.0: original(*args, fill=0.0))
    assert not _passed("layer-maxpool")
    assert _passed("layer-avgpool")  # its padding is zero anyway


def test_avgpool_without_counting_the_padding_fails_layer_avgpool(monkeypatch):
    def exclude_pad(self, x):
        P = self.windows(x)
        ones = nn.AvgPool2d(self.kernel_size, self.stride, self.padding).windows(
            type(x)(xp.ones(x.shape, dtype=x.dtype))
        )
        return P.sum(axis=2) / ones.data.sum(axis=2)

    monkeypatch.setattr(nn.AvgPool2d, "forward", exclude_pad)
    assert not _passed("layer-avgpool")


def test_kfac_never_refreshing_its_inverses_fails_kfac_rule(monkeypatch):
    original = optim.KFAC.__init__

    def never_refresh(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.hyperparameters["inv_every"] = 10**9  # inverses from the first step only

    monkeypatch.setattr(optim.KFAC, "__init__", never_refresh)
    assert not _passed("kfac-rule")


def test_kfac_momentum_with_dampening_fails_kfac_rule(monkeypatch):
    import tinycurv.optim.kfac as kfac_module

    if not hasattr(kfac_module, "momentum_directions"):
        pytest.skip("K-FAC no longer uses optim.sgd.momentum_directions")
    monkeypatch.setattr(kfac_module, "momentum_directions", _damped_momentum)
    assert not _passed("kfac-rule")


def test_kfac_with_the_wrong_direction_fails_kfac_rule(monkeypatch):
    original = curvature.kfac_direction
    monkeypatch.setattr(curvature, "kfac_direction", lambda *a, **k: 1.01 * original(*a, **k))
    assert not _passed("kfac-rule")


def test_isaac_with_another_zeta_fails_isaac_rule(monkeypatch):
    monkeypatch.setattr(curvature, "zeta_star", lambda g, a, lam_a: g.T @ a)  # unconditioned
    assert not _passed("isaac-rule")


def test_grouped_newton_with_a_wrong_step_fails_gn_rule(monkeypatch):
    original = gn_module.grouped_newton_step
    monkeypatch.setattr(
        gn_module, "grouped_newton_step", lambda *a, **k: _scaled(original(*a, **k), 1.1)
    )
    assert not _passed("gn-rule")


def _scaled(result, factor):
    if isinstance(result, tuple):  # (eta, info)
        return (np.asarray(result[0]) * factor, *result[1:])
    return np.asarray(result) * factor


def test_sfn_fixed_step_without_momentum_fails_sfn_rule(monkeypatch):
    original = optim.SeriesSFN.apply_update

    def first_only(self, directions, scale=1.0):
        self.hyperparameters["momentum"] = 0.0
        return original(self, directions, scale)

    monkeypatch.setattr(optim.SeriesSFN, "apply_update", first_only)
    assert not _passed("sfn-rule")


def test_mse_without_the_half_fails_loss_values(monkeypatch):
    original = nn.MSELoss.__call__
    monkeypatch.setattr(nn.MSELoss, "__call__", lambda self, f, y: 2.0 * original(self, f, y))
    assert not _passed("loss-values")
