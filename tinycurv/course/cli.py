"""``tinycurv check``: grade a solution file from the shell, outside any notebook.

A declared host-side module (argument parsing, printing, exit codes)::

    tinycurv check 05.2 my_solution.py     # the function named in the registry (zeta_star)
    tinycurv check 05 my_solutions.py      # every exercise of notebook 05 that the file defines
    tinycurv check --list                  # all exercises: id, function, title
    tinycurv check --describe 05.2         # what to write, what is checked
    tinycurv check --hint 05.2

Exit status: 0 when every graded exercise passed; 1 when one is wrong (the diagnosis is
printed); 2 for a usage error (unknown exercise, missing file or function, a file that does not
import) or an exercise not implemented yet (its stub raises ``NotImplementedError``).
``register(subparsers)`` adds the subcommand to ``tinycurv``'s parser and ``main(args)`` runs
it; ``python -m tinycurv.course.cli …`` works on its own too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

USAGE = 2


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "check",
        help="grade your solution of an exercise (tinycurv check 05.2 my_solution.py)",
        description="Grade the function named by an exercise (see --list) in a Python file "
        "against the library's own, on random cases; explain what is wrong.",
    )
    _arguments(p)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("exercise", nargs="?", help="an exercise id (05.2, T5.1) or a notebook (05, T5)")
    p.add_argument("file", nargs="?", help="the Python file that defines your function(s)")
    p.add_argument("--list", action="store_true", help="list the exercises and exit")
    p.add_argument("--describe", metavar="ID", help="say what an exercise asks and checks")
    p.add_argument("--hint", metavar="ID", help="print an exercise's hint")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinycurv check", description=register.__doc__)
    _arguments(p)
    return p


def _fail(message: str) -> int:
    print(f"tinycurv check: error: {message}", file=sys.stderr)
    return USAGE


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run ``tinycurv check`` on parsed ``args`` (or an argv list); returns the exit status."""
    if not isinstance(args, argparse.Namespace):
        args = _parser().parse_args(args)
    from tinycurv import course

    if args.list:
        for ex in course.EXERCISES.values():
            print(f"{ex.id:6s} {ex.name:24s} {ex.title}")
        return 0
    for flag, show in (("describe", course.describe), ("hint", course.hint)):
        wanted = getattr(args, flag)
        if wanted:
            try:
                text = show(wanted) if flag == "describe" else course.get(wanted).hint
            except KeyError as err:
                return _fail(err.args[0])
            print(text)
            return 0
    if not args.exercise or not args.file:
        return _fail(
            "give an exercise and a file: tinycurv check 05.2 my_solution.py "
            "(tinycurv check --list shows the exercises)"
        )
    ids = _selected(args.exercise, course.EXERCISES)
    if not ids:
        try:
            course.get(args.exercise)
        except KeyError as err:
            return _fail(err.args[0])
    try:
        module = course.grader.load_file(args.file)
    except FileNotFoundError as err:
        return _fail(str(err))
    except Exception as err:  # the student's file does not import
        return _fail(f"cannot import {args.file}: {type(err).__name__}: {err}")
    return _grade(ids, module, single=len(ids) == 1 and ids[0] == args.exercise)


def _selected(text: str, exercises: dict) -> list[str]:
    """``[text]`` for an exercise id, or every id of a notebook (``"05"``, ``"T5"``)."""
    if text in exercises:
        return [text]
    return [i for i in exercises if i.split(".")[0] == text]


def _grade(ids: list[str], module: Any, single: bool) -> int:
    from tinycurv import course

    statuses = []
    for exercise_id in ids:
        ex = course.get(exercise_id)
        if not hasattr(module, ex.name):
            if single:
                return _fail(f"{module.__file__} defines no {ex.name!r} (exercise {ex.id})")
            continue
        verdict = course.check(
            exercise_id, getattr(module, ex.name), quiet=True, raise_on_failure=False
        )
        print(verdict, flush=True)
        statuses.append(verdict.status)
    if not statuses:
        return _fail(f"{module.__file__} defines none of the functions of {', '.join(ids)}")
    if "failed" in statuses:
        return 1
    return USAGE if "skipped" in statuses else 0


if __name__ == "__main__":
    sys.exit(main())
