"""``tinycurv reproduce``: the list, every entry in its ``--quick`` setting, the paper's sampler.

Every entry must write its CSV and figure and print its claim with PASS or FAIL (a FAIL is a
finding about the paper, not a test failure). The whole ``--quick`` run takes about a minute and
a half of one CPU core; it is marked slow but stays in the default suite.
"""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import nn
from tinycurv.data import load_digits
from tinycurv.reproduce import entries, run_cli

#: At least these entries (the issue's list).
REQUIRED = (
    "isaac-fig1",
    "isaac-fig2",
    "isaac-fig5",
    "isaac-table2",
    "isaac-remark2",
    "grouped-newton-fig1-2",
    "grouped-newton-fig3",
    "grouped-newton-fig4",
    "sfn-toy",
    "sfn-accelerators",
    "sfn-diabetes",
)


def test_list_shows_every_entry(capsys):
    assert run_cli(["--list"]) == 0
    out = capsys.readouterr().out
    table = entries()
    assert set(REQUIRED) <= set(table)
    for name, entry in table.items():
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name
        assert entry.claim in out
        for field in ("paper", "figure", "paper_setting", "full", "quick", "why", "claim"):
            assert getattr(entry, field).strip(), (name, field)


def test_bad_requests_exit_2(capsys, tmp_path):
    assert run_cli(["no-such-entry", "--out", str(tmp_path)]) == 2
    assert "unknown entry" in capsys.readouterr().err
    assert run_cli([]) == 2


@pytest.mark.slow
def test_every_entry_quick_writes_csv_figure_and_verdict(capsys, tmp_path):
    assert run_cli(["all", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name, entry in entries().items():
        csv_path, png_path = tmp_path / f"{name}.csv", tmp_path / f"{name}.png"
        assert png_path.stat().st_size > 10_000, name
        assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with open(csv_path, newline="") as f:
            assert len(list(csv.DictReader(f))) > 0, name
        block = out.split(f"{name}: {entry.paper}")[1].split(f"{name}: PASS")[0]
        block = block.split(f"{name}: FAIL")[0]
        assert f"claim: {entry.claim}" in block, name
        assert re.search(r"^\s+(PASS|FAIL): ", block, re.M), name
        assert re.search(rf"^\s+{re.escape(name)}: (PASS|FAIL) \(\d+ s\); wrote ", out, re.M)


def test_without_mnist_quick_uses_digits_and_full_refuses(capsys, tmp_path, monkeypatch):
    from tinycurv.reproduce import common

    monkeypatch.setattr(common, "DEFAULT_MNIST", tmp_path / "nowhere")
    monkeypatch.delenv("TINYCURV_DATA", raising=False)
    assert run_cli(["isaac-fig1", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    assert "digits upsampled to 28×28 stand in" in capsys.readouterr().out
    assert (tmp_path / "isaac-fig1.png").is_file()
    assert run_cli(["isaac-fig1", "--quiet", "--out", str(tmp_path)]) == 2
    assert "MNIST not found" in capsys.readouterr().err
    assert run_cli(["isaac-fig1", "--quick", "--data", str(tmp_path / "no")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_remark2_as_printed_fails_and_corrected_holds(capsys, tmp_path):
    assert run_cli(["isaac-remark2", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "FAIL: Remark 2 as printed" in out
    assert "PASS: the corrected relation" in out


# --------------------------------------------------------------------------------------------
# GroupedNewton's curvature sampler (Algorithm 1: B′ = T·B from a separate sampler)
# --------------------------------------------------------------------------------------------
def _mlp(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(64, 8, rng=rng), nn.Tanh(), nn.Linear(8, 10, rng=rng))


def test_sampler_takes_the_next_T_times_B_samples_in_order_and_cycles():
    from tinycurv.optim import GroupedNewton

    X, y, _, _ = load_digits()
    data = (X[:70], y[:70])
    opt = GroupedNewton(
        _mlp(), nn.CrossEntropyLoss(), update_every=3, curvature_batch="sampler",
        curvature_data=data,
    )  # fmt: skip
    seen = []
    real = opt._curvature_batch
    opt._curvature_batch = lambda x, t: seen.append(real(x, t)) or seen[-1]
    for t in range(15):  # batches of 10: B′ = 30; updates at steps 0, 3, 6, 9, 12
        opt.step(X[10 * t : 10 * t + 10], y[10 * t : 10 * t + 10])
    starts = [0, 30, 60, 0, 30]  # the last batch of a pass is smaller (10), then it restarts
    sizes = [30, 30, 10, 30, 30]
    assert [len(xc) for xc, _ in seen] == sizes
    for (xc, yc), start, size in zip(seen, starts, sizes, strict=True):
        np.testing.assert_array_equal(tc.asnumpy(xc), X[start : start + size])
        np.testing.assert_array_equal(tc.asnumpy(yc), y[start : start + size])
    assert opt.state["curvature_cursor"] == 60


def test_sampler_resumes_exactly_from_state_dict():
    from tinycurv.optim import GroupedNewton

    X, y, _, _ = load_digits()
    hp = dict(update_every=2, curvature_batch="sampler", curvature_data=(X[:90], y[:90]))
    model = _mlp()
    opt = GroupedNewton(model, nn.CrossEntropyLoss(), **hp)
    for t in range(5):
        opt.step(X[20 * t : 20 * t + 20], y[20 * t : 20 * t + 20])
    state, weights = opt.state_dict(), model.state_dict()
    tail = [opt.step(X[20 * t : 20 * t + 20], y[20 * t : 20 * t + 20]) for t in range(5, 9)]
    model2 = _mlp(seed=5)
    model2.load_state_dict(weights)
    opt2 = GroupedNewton(model2, nn.CrossEntropyLoss(), **hp)
    opt2.load_state_dict(state)
    again = [opt2.step(X[20 * t : 20 * t + 20], y[20 * t : 20 * t + 20]) for t in range(5, 9)]
    assert again == tail


@pytest.mark.parametrize("data", [None, (np.zeros((0, 64)), np.zeros(0, int))])
def test_sampler_needs_curvature_data(data):
    from tinycurv.optim import GroupedNewton

    with pytest.raises(ValueError, match="sampler"):
        GroupedNewton(_mlp(), nn.CrossEntropyLoss(), curvature_batch="sampler",
                      curvature_data=data)  # fmt: skip
