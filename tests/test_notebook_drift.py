"""The notebooks' drift check (``tools/nbdrift.py``): a drifted number fails, noise does not.

* a changed printed number fails (15.89 -> 9.94, as tutorial 04's damping sweep once drifted),
  and so does a changed word, a missing line or a new output;
* last-bit BLAS noise (relative 1e-12), rounding-level numbers below 1e-9 (a finite-difference
  error 9.2e-11 vs 3.5e-12, a residual 3e-16 vs 1e-15), re-aligned NumPy columns, memory
  addresses, file paths, a warning's quoted source line and a stream split into chunks pass;
* a number with a unit of time (``0.57 s``, ``1.7 ms/step``) is not compared, the rest of its line
  is; a cell tagged ``timing`` or ``machine`` is not compared at all; images are ignored;
* the jupytext pair check notices a stale or missing ``.py``, and every saved tutorial is paired.

Plain Python on saved notebooks: nothing is executed here (pytest tutorials/ executes them).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

pytestmark = pytest.mark.skipif(
    os.environ.get("TINYCURV_BACKEND", "numpy").strip().lower() == "cupy",
    reason="the notebooks' outputs are NumPy's; their check runs on the NumPy backend",
)

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("nbdrift", ROOT / "tools" / "nbdrift.py")
nbdrift = sys.modules.setdefault("nbdrift", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(nbdrift)


def _stdout(*chunks: str):
    return [new_output("stream", name="stdout", text=c) for c in chunks]


def _notebook(*cells):
    return new_notebook(cells=list(cells))


def _cell(outputs, tags=(), source="print(x)"):
    cell = new_code_cell(source, outputs=outputs)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _drifts(saved_outputs, fresh_outputs, tags=()):
    saved = _notebook(_cell(saved_outputs, tags))
    fresh = _notebook(_cell(fresh_outputs, tags))
    return nbdrift.compare_notebooks(saved, fresh)


# ---- the comparison of texts


@pytest.mark.parametrize(
    ("saved", "fresh"),
    [
        ("damping 1e-3: loss 15.89, acc 2.19\n", "damping 1e-3: loss 9.94, acc 2.38\n"),
        ("loss 0.6550\n", "loss 0.6551\n"),  # the 4th digit
        ("step 25\n", "step 26\n"),  # an integer
        ("max |error| 3e-16\n", "max |error| 2e-08\n"),  # a check that got worse
        ("fd error 2.4e-11\n", "fd error 3.1e-09\n"),  # worse, past 1e-9
        ("D = -1.0544e-06\n", "D = -1.0600e-06\n"),  # a small value, but above SMALL
        ("K-FAC is ahead\n", "K-FAC is behind\n"),  # a word
        ("a\nb\n", "a\n"),  # a line fewer
        ("x = 1.0\n", "x = -1.0\n"),  # a sign
    ],
)
def test_a_real_change_fails(saved, fresh):
    assert nbdrift.compare_text(saved, fresh) is not None
    assert len(_drifts(_stdout(saved), _stdout(fresh))) == 1


def test_the_message_names_the_number_and_its_line():
    why = nbdrift.compare_text("a 1\nloss 15.89 here\n", "a 1\nloss 9.94 here\n")
    assert "15.89" in why and "9.94" in why and "loss 9.94 here" in why


@pytest.mark.parametrize(
    ("saved", "fresh"),
    [
        ("loss 0.123456789012\n", "loss 0.123456789013\n"),  # last-bit noise, amplified
        ("loss 1.2345678901234567e+03\n", "loss 1.2345678901234589e+03\n"),
        ("residual 3.1e-16\n", "residual 1.2e-15\n"),  # round-off: both "zero"
        ("fd error 9.2e-11\n", "fd error 3.5e-12\n"),  # measured across BLAS kernels
        ("[ 0.5 -0. ]\n", "[0.5 0. ]\n"),  # a signed zero, NumPy's re-aligned column
        ("<Linear at 0x7f3a2b1c0d90>\n", "<Linear at 0x7fe0aa001234>\n"),
        (
            "/tmp/ipykernel_10293/1481047821.py:6: RuntimeWarning: V = 0.7963 enlarged\n",
            "/tmp/ipykernel_387/3477425279.py:26: RuntimeWarning: V = 0.7963 enlarged\n",
        ),
        ('  File "/work/main/tinycurv/x.py", line 3\n', '  File "/venv/tinycurv/x.py", line 9\n'),
        (
            "/w/tinycurv/compare.py:342: RuntimeWarning: V = 0.94 enlarged\n  loss = opt.step(x)\n",
            "/v/tinycurv/compare.py:350: RuntimeWarning: V = 0.94 enlarged\n  try:\n",
        ),
    ],
)
def test_noise_passes(saved, fresh):
    assert nbdrift.compare_text(saved, fresh) is None


def test_the_tolerances():
    assert nbdrift.numbers_close(1.0, 1.0 + 5e-7)
    assert not nbdrift.numbers_close(1.0, 1.0 + 5e-6)
    assert nbdrift.numbers_close(9.2e-11, 3.5e-12)  # both below SMALL: rounding
    assert nbdrift.numbers_close(1e-13, -4e-13)
    assert not nbdrift.numbers_close(1e-10, 2e-9)  # one of them above SMALL: relative
    assert nbdrift.numbers_close(3.7e-05, 4.3e-05, loose=True)
    assert not nbdrift.numbers_close(3.7e-05, 4.3e-05)
    assert not nbdrift.numbers_close(3.7e-05, 3.8e-04, loose=True)  # a factor 10.3
    assert not nbdrift.numbers_close(46, -46, loose=True)  # a sign


def test_a_roundoff_cell_compares_within_a_factor_10():
    saved, fresh = _stdout("float32 error 3.7e-05\n"), _stdout("float32 error 4.3e-05\n")
    assert _drifts(saved, fresh, tags=["roundoff"]) == []
    assert len(_drifts(saved, fresh)) == 1
    worse = _stdout("float32 error 4.3e-03\n")
    assert len(_drifts(saved, worse, tags=["roundoff"])) == 1


def test_numbers_are_parsed_whole():
    assert nbdrift.split_numbers("step 12: 1.5e-03, -2.0 and x2 v1.2.3")[1] == [12, 1.5e-3, -2.0]


# ---- cells and notebooks


def test_a_number_with_a_unit_of_time_is_not_compared_but_its_line_is():
    assert (
        nbdrift.compare_text("5 epochs in 0.57 s, loss 0.01\n", "5 epochs in 0.91 s, loss 0.01\n")
        is None
    )
    assert nbdrift.compare_text("SGD 1.7 ms/step, 27.1ms\n", "SGD 2.9 ms/step, 8.0ms\n") is None
    assert nbdrift.compare_text("in 0.57 s, loss 0.0138\n", "in 0.57 s, loss 0.0200\n") is not None
    assert nbdrift.compare_text("5 steps, 3 samples\n", "6 steps, 3 samples\n") is not None


@pytest.mark.parametrize("tag", ["timing", "machine"])
def test_a_cell_tagged_timing_or_machine_is_not_compared(tag):
    saved, fresh = _stdout("speed-up 1.04, no GPU\n"), _stdout("speed-up 1.26, CuPy on H100\n")
    assert _drifts(saved, fresh, tags=[tag]) == []
    assert len(_drifts(saved, fresh)) == 1


def test_streams_split_differently_and_images_pass():
    image = new_output(
        "display_data", data={"image/png": "AAAA", "text/plain": "<Figure size 640x480>"}
    )
    other = new_output(
        "display_data", data={"image/png": "BBBB", "text/plain": "<Figure size 800x600>"}
    )
    assert _drifts([*_stdout("a 1\n", "b 2\n"), image], [*_stdout("a 1\nb", " 2\n"), other]) == []


def test_a_new_or_missing_output_fails():
    warning = new_output("stream", name="stderr", text="RuntimeWarning: V too small\n")
    assert [d.kind for d in _drifts(_stdout("a\n"), [*_stdout("a\n"), warning])] == ["stderr"]
    result = new_output("execute_result", data={"text/plain": "0.25"}, execution_count=1)
    assert [d.kind for d in _drifts([result], [])] == ["text/plain"]


def test_different_sources_are_not_compared_as_the_same_notebook():
    saved = _notebook(_cell(_stdout("1\n"), source="print(1)"))
    fresh = _notebook(_cell(_stdout("1\n"), source="print(2)"))
    assert nbdrift.compare_notebooks(saved, fresh)[0].kind == "source"


# ---- the jupytext pairs


def test_a_stale_or_missing_pair_is_found(tmp_path):
    (tmp_path / "jupytext.toml").write_text((ROOT / "tutorials" / "jupytext.toml").read_text())
    path = tmp_path / "nb.ipynb"
    nbformat.write(_notebook(_cell(_stdout("1\n"), source="print(1)")), path)
    assert "missing" in nbdrift.pair_mismatch(path)
    nbdrift.write_pair(path)
    assert nbdrift.pair_mismatch(path) is None
    assert "# %%\nprint(1)" in path.with_suffix(".py").read_text()
    nbformat.write(_notebook(_cell(_stdout("1\n"), source="print(2)")), path)
    assert "differ" in nbdrift.pair_mismatch(path)


def test_every_saved_tutorial_is_paired():
    notebooks = sorted((ROOT / "tutorials").rglob("*.ipynb"))
    notebooks = [p for p in notebooks if ".ipynb_checkpoints" not in p.parts]
    assert len(notebooks) >= 11
    stale = [str(p.relative_to(ROOT)) for p in notebooks if nbdrift.pair_mismatch(p)]
    assert stale == []
