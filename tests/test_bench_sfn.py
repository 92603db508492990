"""Smoke test of the SeriesSFN benchmark (tinycurv.bench.sfn): it runs and prints its table.

No timing is asserted (timings are measured in one run by ``python -m tinycurv bench``).
"""

from __future__ import annotations

from tinycurv.backend import get_default_dtype
from tinycurv.bench import sfn


def test_bench_sfn_runs_and_restores_dtype():
    out = sfn.run(sizes=(16,), orders=(3,), repeats=1, rounds=1, markdown=True)
    lines = out.splitlines()
    assert lines[0] == "| " + " | ".join(sfn.HEADERS) + " |"
    assert len(lines) == 3 and lines[2].startswith("| 16 | 3 |")
    assert all(float(cell) > 0 for cell in lines[2].strip("| ").split(" | ")[2:])
    assert get_default_dtype() == "float64"
