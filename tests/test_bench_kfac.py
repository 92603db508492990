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
    options = text.split("Options")[1].splitlines()  # the qmodel, EKFAC, exact-damping table
    assert options[2].split()[:2] == ["n", "qmodel"] and "EKFAC" in options[2]
    assert "exact damping" in options[2]
    cells = options[4].split()
    assert cells[0] == "16" and len(cells) == 9
    assert all(float(c) > 0 for c in cells[1:])
    assert get_default_dtype() == "float64"


def test_kfac_experiments_train_in_turn_table_and_figure(tmp_path):
    from tinycurv.bench import kfac_experiments as kx
    from tinycurv.compare import DEFAULTS

    kwargs = DEFAULTS["kfac-qmodel"][1]
    assert kwargs["step_rule"] == "qmodel" and kwargs["adapt_damping"] is True
    runs = kx.train_in_turn("digits-mlp", ["sgd", "kfac-qmodel"], steps=12, batch_size=32)
    for r in runs.values():
        assert r["status"] == "ok" and len(r["losses"]) == len(r["wall"]) == 12
        assert all(b >= a for a, b in zip(r["cpu"], r["cpu"][1:], strict=False))
    lam = runs["kfac-qmodel"]["damping"]
    assert all(v != v for v in lam[:4]) and all(v > 0 for v in lam[4:])  # λ from step 5 on
    assert all(v != v for v in runs["sgd"]["damping"])  # NaN: SGD has no λ
    text = kx.summary("digits-mlp", runs, target=100.0)
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["sgd", "kfac-qmodel"]
    assert all(row.split("|")[8].strip() == "10" for row in rows)  # the first full window
    path = kx.plot("digits-mlp", runs, tmp_path, batch_size=32)
    assert path.name == "kfac_qmodel_digits-mlp.png" and path.read_bytes()[:4] == b"\x89PNG"
