"""The engine benchmark runs, and its hand-written NumPy gradient equals the engine's.

Only correctness is asserted here (float32, relative 1e-4 per array); times are not.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinycurv as tc
from tinycurv.bench import engine


def test_hand_written_gradient_equals_engine_gradient_float32():
    prob = engine.build(16)
    assert all(p.dtype == np.float32 for p in prob.params)
    assert prob.x.dtype == np.float32 and prob.x.shape == (engine.BATCH, 784)
    assert tc.get_default_dtype() == "float64"  # restored after building in float32
    got = tc.grad(prob.closure, prob.params)
    want = engine.hand_grad([p.data for p in prob.params], prob.x, prob.targets)
    assert [g.shape for g in got] == [w.shape for w in want] == [p.shape for p in prob.params]
    for g, w in zip(got, want, strict=True):
        g, w = tc.asnumpy(g), tc.asnumpy(w)
        assert g.dtype == w.dtype == np.float32
        assert np.max(np.abs(g - w)) <= 1e-4 * np.max(np.abs(w))
    assert engine.relative_difference(got, want) < 1e-4


def test_loss_is_the_mean_cross_entropy():
    prob = engine.build(16)
    with tc.no_grad():
        loss = prob.closure().item()
    h = tc.asnumpy(prob.x).astype(np.float64)
    weights = [tc.asnumpy(p.data).astype(np.float64) for p in prob.params]
    for i in range(engine.DEPTH):
        h = h @ weights[2 * i].T + weights[2 * i + 1]
        if i < engine.DEPTH - 1:
            h = np.maximum(h, 0.0)
    logp = h - h.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    labels = np.argmax(-tc.asnumpy(prob.targets), axis=1)
    assert loss == pytest.approx(-logp[np.arange(len(labels)), labels].mean(), rel=1e-5)


def test_relative_difference_detects_a_wrong_gradient():
    prob = engine.build(16)
    want = engine.hand_grad([p.data for p in prob.params], prob.x, prob.targets)
    wrong = [w.copy() for w in want]
    wrong[4] = wrong[4] * 1.01
    assert engine.relative_difference(wrong, want) > 5e-3


def test_run_tiny():
    out = engine.run(sizes=(16,), repeats=1)
    lines = out.splitlines()
    assert lines[0].split() == [
        "n",
        "hand",
        "grad",
        "ms",
        "engine",
        "grad",
        "ms",
        "HVP",
        "ms",
        "engine/hand",
        "HVP/grad",
    ]
    assert lines[2].split()[0] == "16" and len(lines[2].split()) == 6
    assert "Goals" in out
    assert tc.get_default_dtype() == "float64"
    assert engine.run(sizes=(8,), markdown=True, repeats=1).startswith("| n |")
