"""Smoke test of the K-FAC benchmark: it runs and prints its table (no timing assertions)."""

from __future__ import annotations

from tinycurv.backend import get_default_dtype
from tinycurv.bench import kfac


def test_bench_kfac_runs_and_restores_the_dtype():
    text = kfac.run(sizes=(16,))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["n", "SGD", "ms"]
    assert lines[2].split()[0] == "16" and len(lines[2].split()) == 6
    assert "Goals" in text
    assert get_default_dtype() == "float64"
