"""The PyTorch comparison benchmark: same problem, checked gradient, a table (no timing asserts)."""

from __future__ import annotations

import importlib.util

import pytest

from tinycurv.bench import pytorch


def test_without_pytorch_it_says_so(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert pytorch.available() is None
    assert "not installed" in pytorch.run(sizes=(8,), repeats=1)


def test_table_on_the_backend_device():
    pytest.importorskip("torch")
    if pytorch.available() is None:
        pytest.skip("PyTorch has no device for this backend (CuPy without a CUDA build of torch)")
    lines = pytorch.run(sizes=(16,), repeats=1).splitlines()
    assert lines[0].split()[0] == "n" and "grad/torch" in lines[0] and "HVP/torch" in lines[0]
    row = lines[2].split()
    assert row[0] == "16" and len(row) == len(pytorch.HEADERS)
    assert all(float(c) > 0 for c in row[1:])
    assert "Goals" in lines[-1]


def test_gradients_are_compared_before_timing(monkeypatch):
    """A PyTorch problem that differs from the engine's is refused, not timed."""
    pytest.importorskip("torch")
    device = pytorch.available()
    if device is None:
        pytest.skip("PyTorch has no device for this backend")
    build = pytorch._torch_problem

    def wrong(prob, device):
        loss, params, x = build(prob, device)
        return (lambda params: 1.01 * loss(params)), params, x

    monkeypatch.setattr(pytorch, "_torch_problem", wrong)
    with pytest.raises(AssertionError, match="differ"):
        pytorch.time_width(16, device, repeats=1)
