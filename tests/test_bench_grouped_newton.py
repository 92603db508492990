"""Smoke test of the GroupedNewton benchmark (no timing assertions)."""

from __future__ import annotations

from tinycurv.bench import grouped_newton


def test_bench_runs_and_formats():
    text = grouped_newton.run(sizes=(16,), repeats=1)
    lines = text.splitlines()
    assert "gH/grad" in lines[0] and "step/target" in lines[0]
    assert len(lines) == 3 and lines[2].split()[0] == "16"
    md = grouped_newton.run(sizes=(16,), markdown=True, repeats=1)
    assert md.startswith("| n |") and md.count("\n") == 2
