"""pytest runs every notebook under tutorials/ once and fails when its outputs drifted.

Each ``*.ipynb`` is one test (``pytest tutorials``, ``pytest tutorials/05_isaac.ipynb``) that

1. checks that its jupytext pair ``NAME.py`` (py:percent) holds the same notebook;
2. executes it top to bottom in a fresh kernel, in its own folder (a cell that raises fails the
   test, unless it is tagged ``raises-exception``; cells tagged ``skip-execution`` are skipped);
   the student notebooks run with their stubs, whose checks report "skipped";
3. compares the fresh outputs with the saved ones (``tools/nbdrift.py``: text and numbers at a
   relative tolerance of 1e-6, images ignored, timings and cells tagged ``timing`` or
   ``machine`` left out).

This replaces nbmake for the tutorials (``--nbmake``, where nbmake is installed, changes nothing:
each notebook still runs once). Under ``TINYCURV_BACKEND=cupy`` the notebooks execute but are not
compared: their outputs are saved from NumPy runs. After an intended change, re-save with
``python tools/nbdrift.py resave tutorials/NAME.ipynb``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

_TOOL = Path(__file__).resolve().parents[1] / "tools" / "nbdrift.py"
_spec = importlib.util.spec_from_file_location("nbdrift", _TOOL)
nbdrift = sys.modules.setdefault("nbdrift", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(nbdrift)

_ON_CUPY = os.environ.get("TINYCURV_BACKEND", "numpy").strip().lower() == "cupy"


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "nbmake", False):  # nbmake would execute every notebook again
        config.option.nbmake = False


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.suffix == ".ipynb" and ".ipynb_checkpoints" not in file_path.parts:
        return NotebookFile.from_parent(parent, path=file_path)
    return None


class NotebookFile(pytest.File):
    def collect(self):
        yield NotebookItem.from_parent(self, name=self.path.name)


class NotebookError(Exception):
    """A notebook stale, failing or drifted: the message says which and how to fix it."""


class NotebookItem(pytest.Item):
    def runtest(self) -> None:
        import nbformat
        from nbclient.exceptions import CellExecutionError

        stale = nbdrift.pair_mismatch(self.path)
        if stale:
            raise NotebookError(f"jupytext pair: {stale}")
        saved = nbformat.read(self.path, as_version=4)
        try:
            fresh = nbdrift.execute(self.path)
        except CellExecutionError as err:
            raise NotebookError(f"a cell failed:\n{err}") from None
        if _ON_CUPY:
            return  # the saved outputs are NumPy's
        drifts = nbdrift.compare_notebooks(saved, fresh)
        if drifts:
            lines = "\n".join(f"  {d}" for d in drifts)
            try:
                where = self.path.relative_to(self.config.rootpath)
            except ValueError:
                where = self.path
            raise NotebookError(
                f"{len(drifts)} output(s) drifted from the saved notebook:\n{lines}\n"
                f"intended? re-save it: python tools/nbdrift.py resave {where}\n"
                "a timing, or output of this machine? tag its cell 'timing' or 'machine'; "
                "numbers that measure rounding: 'roundoff' (tutorials/README.md)"
            )

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, NotebookError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"notebook {self.path.name}"
