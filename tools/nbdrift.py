"""Notebook drift: re-execute a tutorial once and compare its fresh outputs with the saved ones.

What is compared, per code cell:

* the text of the cell's outputs: ``stdout``, ``stderr`` and the ``text/plain`` of results and
  displays, each stream joined over its chunks (a stream may arrive in pieces); images are not
  compared (a display that carries one is left out entirely);
* the numbers in that text are parsed and compared at a relative tolerance ``RTOL = 1e-6``; the
  text between them must be equal up to white space (NumPy pads columns by the widest entry);
* two numbers below ``SMALL = 1e-9`` in size are equal: in these float64 notebooks such numbers
  are errors and residuals that measure rounding (a finite-difference error, the distance between
  two exact formulas); one that grows past 1e-9 is compared at ``RTOL`` and fails;
* masked before comparing, as they name a machine or a run rather than a result: a number with a
  unit of time (``3.1 ms``, ``0.67 ms per step``, ``9.2 s``, ``12it/s``), memory addresses
  (``0x7f...``), Python files with their line numbers (``/tmp/ipykernel_1/2.py:6``,
  ``optim/base.py:54``) and the source line a warning quotes.

Cell tags: ``timing`` (timings without a unit, such as a speed-up) and ``machine`` (the output
depends on the machine, e.g. whether it has a GPU): not compared; ``roundoff`` (every number of
the cell measures rounding, e.g. float32 errors): its numbers agree within ``FACTOR = 10``.

Why these tolerances (measured by re-executing the tutorials with other BLAS kernels,
``OPENBLAS_CORETYPE=SandyBridge`` against the Haswell kernels they were saved with): every
training loss, eigenvalue and accuracy agreed to better than 1e-6 relative, while intended
changes show at 1e-4 or more (the notebooks print 3-8 digits; tutorial 04's damping sweep once
drifted from 15.89 to 9.94). Rounding-level numbers moved by up to 26x (a finite-difference error
9.2e-11 -> 3.5e-12; float32 errors 3.7e-5 -> 4.3e-5), while a bug moves them by orders of
magnitude. Unstable runs (a learning rate too large) amplify the last bit without bound: the
tutorials print such runs as "unstable" rather than their final loss.

Also here: the check that a notebook's jupytext pair (``NAME.py``, py:percent, configured by
``tutorials/jupytext.toml``) holds the same notebook.

Command line (from the repository root)::

    python tools/nbdrift.py check tutorials/05_isaac.ipynb     # execute, compare, write nothing
    python tools/nbdrift.py resave tutorials/05_isaac.ipynb    # execute, save outputs and the .py
    python tools/nbdrift.py sync tutorials/05_isaac.ipynb      # write the .py pair only
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

RTOL = 1e-6  # relative tolerance on every printed number (see the module docstring)
SMALL = 1e-9  # two numbers below this in size measure rounding: equal
FACTOR = 10.0  # cells tagged LOOSE_TAG: numbers agree within this factor
TIMING_TAG = "timing"  # a cell with this tag prints timings: its outputs are not compared
SKIP_TAGS = (TIMING_TAG, "machine")  # "machine": the output depends on the machine (a GPU or not)
LOOSE_TAG = "roundoff"  # every number of the cell measures rounding: compared within FACTOR
CELL_TIMEOUT = 600  # seconds per cell
PAIR_FORMAT = "py:percent"
# BLAS threads: one, as the notebooks are saved (see the repository's rules for notebooks)
KERNEL_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])"  # 3, -0.5, 1e-05, 2.
)
_MASKS = [
    (re.compile(r"0x[0-9a-fA-F]{4,}"), "0x<address>"),
    (
        re.compile(
            r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
            r"\s?(?:ns|µs|us|ms|s|sec|seconds|it/s|s/it)(?![A-Za-z])"
        ),
        "<time>",
    ),
    (re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\w.~/\\-]*\.py\b(?::\d+|\", line \d+)?"), "<file.py>"),
    # the source line that a warning quotes after "file.py:12: SomeWarning: ..." (it moves with
    # every edit of that file)
    (re.compile(r"(<file\.py>: \w*Warning: [^\n]*\n)[ \t]+[^\n]*(\n|$)"), r"\1  <source>\2"),
]
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Drift:
    """One cell whose fresh output differs from the saved one."""

    cell: int  # index in ``nb.cells``
    kind: str  # "stdout", "stderr", "text/plain", "outputs" (a kind present in one only)
    message: str

    def __str__(self) -> str:
        return f"cell {self.cell} ({self.kind}): {self.message}"


def mask(text: str) -> str:
    """``text`` with memory addresses and file paths replaced by placeholders."""
    for pattern, placeholder in _MASKS:
        text = pattern.sub(placeholder, text)
    return text


def split_numbers(text: str) -> tuple[list[str], list[float]]:
    """The text between the numbers (white space removed) and the numbers, in order."""
    pieces, numbers, last = [], [], 0
    for m in _NUMBER.finditer(text):
        pieces.append(text[last : m.start()])
        numbers.append(float(m.group()))
        last = m.end()
    pieces.append(text[last:])
    return [_SPACE.sub("", p) for p in pieces], numbers


def _line_of_number(text: str, k: int) -> str:
    """The line of ``text`` that holds its ``k``-th number."""
    m = list(_NUMBER.finditer(text))[k]
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.end())
    return text[start : len(text) if end < 0 else end]


def numbers_close(a: float, b: float, loose: bool = False) -> bool:
    """Whether two printed numbers agree: within ``RTOL``; both below ``SMALL`` in size (rounding);
    or, when ``loose``, within a factor ``FACTOR`` with the same sign."""
    if abs(a) < SMALL and abs(b) < SMALL:
        return True
    if loose:
        return a * b > 0 and max(abs(a), abs(b)) <= FACTOR * min(abs(a), abs(b))
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=0.0)


def _numbers_differ(saved: str, fresh: str, loose: bool) -> str | None:
    """For two texts with the same words: the first number beyond tolerance; "words" when the
    words differ; None when they match."""
    s_text, s_num = split_numbers(saved)
    f_text, f_num = split_numbers(fresh)
    if s_text != f_text:
        return "words"
    for k, (a, b) in enumerate(zip(s_num, f_num, strict=True)):
        if not numbers_close(a, b, loose):
            rel = abs(a - b) / max(abs(a), abs(b))
            line = _line_of_number(fresh, k)
            return f"saved {a!r}, now {b!r} (relative change {rel:.1e}) in line {line!r}"
    return None


def compare_text(saved: str, fresh: str, loose: bool = False) -> str | None:
    """Why ``fresh`` differs from ``saved`` (first difference, with its line), or None."""
    saved, fresh = mask(saved), mask(fresh)
    if saved == fresh:
        return None
    why = _numbers_differ(saved, fresh, loose)
    if why != "words":
        return why
    s_lines, f_lines = saved.splitlines(), fresh.splitlines()
    for k in range(max(len(s_lines), len(f_lines))):
        if k >= len(s_lines) or k >= len(f_lines):
            s = repr(s_lines[k]) if k < len(s_lines) else "nothing"
            f = repr(f_lines[k]) if k < len(f_lines) else "nothing"
            return f"line {k + 1}: saved {s}, now {f}"
        if _numbers_differ(s_lines[k], f_lines[k], loose):
            return f"line {k + 1}: saved {s_lines[k]!r}, now {f_lines[k]!r}"
    return "the white space between lines differs"


def cell_texts(cell) -> dict[str, str]:
    """A code cell's compared outputs: kind -> text (streams joined; displays with images left
    out; an error as 'ename: evalue')."""
    texts: dict[str, str] = {}
    for out in cell.get("outputs", []):
        kind = out["output_type"]
        if kind == "stream":
            key, text = out["name"], out["text"]
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            if any(mime.startswith("image/") for mime in data) or "text/plain" not in data:
                continue
            key, text = "text/plain", data["text/plain"] + "\n"
        elif kind == "error":
            key, text = "error", f"{out['ename']}: {out['evalue']}\n"
        else:
            continue
        texts[key] = texts.get(key, "") + "".join(text)
    return texts


def compare_notebooks(saved, fresh) -> list[Drift]:
    """The drifted cells of ``fresh`` (the same notebook re-executed) against ``saved``."""
    if [c.source for c in saved.cells] != [c.source for c in fresh.cells]:
        return [Drift(-1, "source", "the cells differ: not the same notebook")]
    drifts = []
    for i, (s, f) in enumerate(zip(saved.cells, fresh.cells, strict=True)):
        tags = set(s.get("metadata", {}).get("tags", []))
        if s.cell_type != "code" or tags & set(SKIP_TAGS):
            continue
        s_texts, f_texts = cell_texts(s), cell_texts(f)
        for kind in sorted(set(s_texts) | set(f_texts)):
            if kind not in s_texts or kind not in f_texts:
                where = "now only" if kind in f_texts else "saved only"
                text = (f_texts.get(kind) or s_texts.get(kind, "")).strip().splitlines()
                drifts.append(Drift(i, kind, f"{where}: {text[0] if text else ''!r}"))
                continue
            why = compare_text(s_texts[kind], f_texts[kind], loose=LOOSE_TAG in tags)
            if why:
                drifts.append(Drift(i, kind, why))
    return drifts


def execute(path: Path, timeout: int = CELL_TIMEOUT):
    """The notebook at ``path`` executed top to bottom in a fresh kernel (cwd = its folder)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    env = {**os.environ, **KERNEL_ENV}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False)
    client.execute(cwd=str(path.parent), env=env)
    return nb


def pair_path(path: Path) -> Path:
    """The notebook's jupytext pair: ``NAME.py`` beside ``NAME.ipynb``."""
    return path.with_suffix(".py")


def pair_text(path: Path, nb=None) -> str:
    """The py:percent text that jupytext writes for the notebook at ``path`` (its config)."""
    import jupytext
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(path.parent))
    nb = jupytext.read(path) if nb is None else nb
    return jupytext.writes(nb, fmt=PAIR_FORMAT, config=config)


def pair_mismatch(path: Path) -> str | None:
    """Why the jupytext pair of ``path`` is missing or stale, or None when it matches."""
    py = pair_path(path)
    if not py.is_file():
        return f"{py} is missing: run `jupytext --sync {path}`"
    if py.read_text(encoding="utf-8") != pair_text(path):
        return (
            f"{py} and {path.name} differ: run `jupytext --sync {path}` (the newer one wins) "
            f"or `python tools/nbdrift.py sync {path}` (the .ipynb wins)"
        )
    return None


def write_pair(path: Path) -> Path:
    """Write the notebook's py:percent pair from the .ipynb; return its path."""
    py = pair_path(path)
    py.write_text(pair_text(path), encoding="utf-8")
    return py


def resave(path: Path) -> None:
    """Execute the notebook, save it with its new outputs, and rewrite its pair."""
    nb = execute(path)
    nbformat.write(nb, path)
    write_pair(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["check", "resave", "sync"])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--fresh", type=Path, help="check: also write the executed notebooks here")
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        if args.command == "sync":
            print(f"wrote {write_pair(path)}")
        elif args.command == "resave":
            resave(path)
            print(f"executed and saved {path} and {pair_path(path)}")
        else:
            saved, fresh = nbformat.read(path, as_version=4), execute(path)
            if args.fresh:
                args.fresh.mkdir(parents=True, exist_ok=True)
                nbformat.write(fresh, args.fresh / path.name)
            drifts = compare_notebooks(saved, fresh)
            problems = [str(d) for d in drifts] + list(filter(None, [pair_mismatch(path)]))
            print(f"{path}: " + ("no drift" if not problems else "\n  ".join(["", *problems])))
            status |= bool(problems)
    return status


if __name__ == "__main__":
    sys.exit(main())
