"""Smoke test of the ISAAC benchmark (no timing assertions)."""

from __future__ import annotations

from tinycurv.bench import isaac


def test_bench_runs_and_formats():
    text = isaac.run(sizes=(16,), rounds=1, repeats=1)
    lines = text.splitlines()
    assert "ζ*/SGD" in lines[0] and "K-FAC/SGD" in lines[0] and "mem ζ*/SGD" in lines[0]
    assert len(lines) == 3 and lines[2].split()[0] == "16"
    ratios = [float(c) for c in lines[2].split()[1:]]
    assert len(ratios) == len(isaac.HEADERS) - 1 and all(r > 0 for r in ratios)


def test_markdown_table(monkeypatch):
    monkeypatch.setattr(isaac, "_measure", lambda n, rounds, repeats: [n] + [1.0] * 8)
    md = isaac.run(sizes=(16, 32), markdown=True)
    assert md.startswith("| n |") and md.count("\n") == 3
