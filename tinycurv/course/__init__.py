"""Checkable exercises: graders for the tutorials and the build-it-yourself track.

A declared host-side package: grading compares a student's function with the library's own on
seeded host (NumPy) cases, on the NumPy backend in float64, and explains typical mistakes::

    from tinycurv import course

    def zeta_star(g, a, lam_a):
        raise NotImplementedError          # the stub: the check reports "skipped"

    verdict = course.check("05.2", zeta_star)   # ✓ passed, – skipped, or WrongAnswer raised
    course.hint("05.2")                         # the hint
    course.passed("05.2")                       # True once a check of 05.2 has passed
    with course.plug_in("zeta_star", zeta_star) as plugged:
        ...                                     # tinycurv.optim.ISAAC now calls your ζ*

From a shell: ``tinycurv check 05.2 my_solution.py`` (exit 0 passed, 1 wrong, 2 not implemented
or a usage error) and ``tinycurv check --list``. ``EXERCISES`` is the registry (ids ``"NN.k"``
for tutorial NN, ``"Tn.k"`` for the track); ``tinycurv.course.grader`` has the machinery,
``tinycurv.course.exercises`` the exercises, COURSE.md the syllabus.
"""

from tinycurv.course import exercises as _exercises  # noqa: F401  (fills the registry)
from tinycurv.course.grader import (
    PLUGS,
    Case,
    Diagnostic,
    Exercise,
    Mistake,
    PluggedIn,
    Verdict,
    WrongAnswer,
    check,
    describe,
    get,
    hint,
    passed,
    plug_in,
)
from tinycurv.course.grader import REGISTRY as EXERCISES

__all__ = [
    "EXERCISES",
    "PLUGS",
    "Case",
    "Diagnostic",
    "Exercise",
    "Mistake",
    "PluggedIn",
    "Verdict",
    "WrongAnswer",
    "check",
    "describe",
    "get",
    "hint",
    "passed",
    "plug_in",
]
