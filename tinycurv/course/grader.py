"""The grader: run a student's function and the library's on the same random cases, and explain.

An ``Exercise`` names the function the student writes, the library's ``reference``, a generator
of ``Case``s (random shapes and dtypes, edge cases such as b > n) and a list of ``Diagnostic``s:
typical wrong implementations (a transposed factor, a missing 1/b, a sign) with the message
that explains each. ``check`` runs the cases in order; at the first mismatch it looks for the
diagnostic whose wrong implementation gives the student's output, else for a sign, a constant
factor or a transpose, and raises ``WrongAnswer`` (an ``AssertionError``) with the message::

    your zeta_star differs by 3.1e-02 at b > n (b=12, n=5, m=3): did you use the n×n side? …

A stub that raises ``NotImplementedError`` gives a "not implemented yet (skipped)" verdict and
no error: student notebooks execute in CI with their stubs. ``plug_in`` swaps a student's
function into the library for the length of a ``with`` block. Grading runs on the NumPy backend
in float64 (restored after). A declared host-side module: cases are host NumPy arrays.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import importlib
import importlib.util
import os
import sys
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from tinycurv import backend
from tinycurv.dual import Dual

__all__ = [
    "PLUGS",
    "REGISTRY",
    "Case",
    "Diagnostic",
    "Exercise",
    "Mistake",
    "Plug",
    "PluggedIn",
    "Verdict",
    "WrongAnswer",
    "check",
    "describe",
    "get",
    "hint",
    "load_file",
    "passed",
    "plug_in",
    "resolve",
]


class WrongAnswer(AssertionError):
    """The student's function gives a wrong result; the message says where and why."""


class Mistake(Exception):
    """Raised by an exercise's runner for a mistake it sees directly (a parameter not restored,
    a tuple not returned); its message is the diagnosis."""


@dataclass(frozen=True)
class Case:
    """One input: ``args``/``kwargs`` for the function, a ``label`` for messages ("b > n (b=12,
    n=5)"), and a ``note`` added to any failure at this case (what is special about it)."""

    label: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Diagnostic:
    """A typical mistake: ``wrong`` implements it, ``message`` explains it.

    With ``match=True`` a student's output equal to ``wrong``'s at the failing case (or the same
    error raised there) gets this message; with ``match=False`` the exercise's runner detects
    the mistake itself (``Mistake``), and ``wrong`` only serves the tests, which check that it
    fails with ``message``.
    """

    message: str
    wrong: Any
    match: bool = True


def call(fn: Any, case: Case) -> Any:
    """The default runner: ``fn(*case.args, **case.kwargs)``."""
    return fn(*case.args, **dict(case.kwargs))


@dataclass(frozen=True)
class Exercise:
    """One checkable exercise (see the module docstring).

    ``run(fn, case)`` turns a function (the student's, the reference or a diagnostic's) and a
    case into the output that is compared: arrays, numbers, None, Duals, tuples and lists of
    them. ``rtol``/``atol`` hold for float64 results, ``rtol32`` where a result is float32.
    ``squeeze`` treats one-element arrays as scalars; ``check_dtype`` compares float dtypes.
    ``plug`` names the ``PLUGS`` entry that puts this function into the library.
    """

    id: str
    title: str
    name: str
    signature: str
    reference: Any
    cases: Callable[[np.random.Generator], Iterable[Case]]
    hint: str
    diagnostics: tuple[Diagnostic, ...] = ()
    run: Callable[[Any, Case], Any] = call
    rtol: float = 1e-9
    atol: float = 1e-12
    rtol32: float = 2e-4
    squeeze: bool = False
    check_dtype: bool = True
    notebook: str = ""
    plug: str = ""


@dataclass(frozen=True)
class Verdict:
    """The outcome of ``check``: ``status`` is "passed", "failed" or "skipped"."""

    exercise: str
    status: str
    message: str
    error: float = 0.0

    passed = property(lambda self: self.status == "passed")
    failed = property(lambda self: self.status == "failed")
    skipped = property(lambda self: self.status == "skipped")

    def __str__(self) -> str:
        mark = {"passed": "✓", "failed": "✗", "skipped": "–"}[self.status]
        return f"{mark} {self.message}"


REGISTRY: dict[str, Exercise] = {}  # filled by tinycurv.course.exercises
LAST: dict[str, Verdict] = {}  # the latest verdict of every exercise checked in this session


def register(exercise: Exercise) -> Exercise:
    """Add ``exercise`` to ``REGISTRY`` (its id must be new)."""
    if exercise.id in REGISTRY:
        raise ValueError(f"exercise {exercise.id!r} is registered twice")
    REGISTRY[exercise.id] = exercise
    return exercise


def get(exercise_id: str) -> Exercise:
    """The registered exercise ``exercise_id`` (KeyError naming the closest ids otherwise)."""
    if exercise_id in REGISTRY:
        return REGISTRY[exercise_id]
    close = difflib.get_close_matches(str(exercise_id), list(REGISTRY), n=3, cutoff=0.3)
    raise KeyError(
        f"no exercise {exercise_id!r}"
        + (f"; did you mean {', '.join(close)}?" if close else "")
        + " (tinycurv check --list shows them all)"
    )


def passed(exercise_id: str) -> bool:
    """Whether the latest ``check`` of ``exercise_id`` in this session passed (gates the
    notebook cells that plug the student's piece into the library)."""
    verdict = LAST.get(get(exercise_id).id)
    return verdict is not None and verdict.passed


def hint(exercise_id: str) -> str:
    """Print and return the hint of an exercise."""
    text = f"{exercise_id} {get(exercise_id).name}: {get(exercise_id).hint}"
    print(text)
    return text


def describe(exercise_id: str) -> str:
    """A few lines on an exercise: title, what to write, what is checked."""
    ex = get(exercise_id)
    labels = [c.label for c in ex.cases(np.random.default_rng(_seed(ex.id)))]
    lines = [
        f"{ex.id}  {ex.title}",
        f"    write:   {ex.signature}",
        f"    checked: against the library's {_qualname(ex.reference)} on {len(labels)} cases: "
        + "; ".join(labels),
    ]
    if ex.diagnostics:
        lines.append(f"    explains {len(ex.diagnostics)} typical mistakes")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# finding the student's function
# --------------------------------------------------------------------------------------------
def load_file(path: str | os.PathLike) -> ModuleType:
    """Import a Python file as a fresh module (its top level runs once)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    name = f"tinycurv_course_solution_{zlib.crc32(os.path.abspath(path).encode()):08x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def resolve(exercise: Exercise, fn_or_module: Any) -> Any:
    """The function to grade: ``fn_or_module`` itself, or its attribute ``exercise.name`` when it
    is a module, a namespace mapping (``globals()``) or the path of a ``.py`` file."""
    source = fn_or_module
    if isinstance(source, str | os.PathLike) and os.fspath(source).endswith(".py"):
        source = load_file(source)
    if isinstance(source, ModuleType):
        if not hasattr(source, exercise.name):
            raise LookupError(f"{source.__name__} defines no {exercise.name!r} ({exercise.id})")
        return getattr(source, exercise.name)
    if isinstance(source, Mapping):
        if exercise.name not in source:
            raise LookupError(f"no {exercise.name!r} defined ({exercise.id})")
        return source[exercise.name]
    if not callable(source):
        raise TypeError(f"{exercise.id}: expected a function, a module or a file, got {source!r}")
    return source


# --------------------------------------------------------------------------------------------
# grading
# --------------------------------------------------------------------------------------------
def check(
    exercise_id: str, fn_or_module: Any, *, quiet: bool = False, raise_on_failure: bool = True
) -> Verdict:
    """Grade the student's function for exercise ``exercise_id`` against the library's.

    Parameters
    ----------
    exercise_id : str
        E.g. ``"05.2"`` (notebook 05, exercise 2) or ``"T5.1"`` (the build-it-yourself track).
    fn_or_module : function, class, module, mapping or path
        The student's function, or where to find it by the exercise's name (a module,
        ``globals()``, or a ``.py`` file).
    quiet : bool
        Do not print the verdict (it is printed by default, except a failure that is raised).
    raise_on_failure : bool
        Raise ``WrongAnswer`` for a wrong result (default), or return the failed verdict.

    Returns
    -------
    Verdict
        ``passed``, or ``skipped`` for a stub that raises ``NotImplementedError``.

    Raises
    ------
    WrongAnswer
        (an ``AssertionError``) with the diagnosis, when the result is wrong.
    """
    exercise = get(exercise_id)
    fn = resolve(exercise, fn_or_module)
    with _numpy_float64():
        verdict = _grade(exercise, fn)
    LAST[exercise.id] = verdict
    if verdict.failed and raise_on_failure:
        raise WrongAnswer(verdict.message)
    if not quiet:
        print(verdict)
    return verdict


def _grade(ex: Exercise, fn: Any) -> Verdict:
    with np.errstate(all="ignore"):  # an overflow is explained by the verdict, not a warning
        return _grade_cases(ex, fn)


def _grade_cases(ex: Exercise, fn: Any) -> Verdict:
    rng = np.random.default_rng(_seed(ex.id))
    worst, count = 0.0, 0
    for case in ex.cases(rng):
        count += 1
        try:
            out = ex.run(fn, copy.deepcopy(case))  # a fresh copy: inputs changed in place stay
        except NotImplementedError:
            where = "" if count == 1 else f" for {case.label}"
            return Verdict(
                ex.id, "skipped", f"{ex.id} {ex.name}: not implemented yet{where} (skipped)"
            )
        except Mistake as mistake:
            return _failed(ex, case, f"{mistake} (at {case.label})")
        except Exception as err:  # the student's code raised: say what, where, and maybe why
            head = f"your {ex.name} raised {type(err).__name__}: {err} (at {case.label})"
            why = _explain_error(ex, case, err)
            return _failed(ex, case, f"{head}: {why}" if why else head)
        expected = ex.run(ex.reference, copy.deepcopy(case))
        problem, error = _compare(out, expected, ex)
        if problem is None:
            worst = max(worst, error)
            continue
        return _failed(ex, case, _diagnose(ex, case, out, expected, problem))
    return Verdict(
        ex.id,
        "passed",
        f"{ex.id} {ex.name}: passed ({count} cases, largest relative difference {worst:.1e})",
        worst,
    )


def _failed(ex: Exercise, case: Case, message: str) -> Verdict:
    parts = [message]
    if case.note:
        parts.append(f"Note on this case: {case.note}")
    parts.append(f"Hint: {ex.hint}")
    return Verdict(ex.id, "failed", f"{ex.id} {ex.name}: " + "\n".join(parts))


def _diagnose(ex: Exercise, case: Case, out: Any, expected: Any, problem: str) -> str:
    """The message for a mismatch: the first diagnostic whose wrong implementation gives the
    same output, else a generic pattern (sign, factor, transpose), else the difference."""
    head = f"your {ex.name} {problem} at {case.label}"
    for diagnostic in ex.diagnostics:
        if diagnostic.match:
            outcome = _attempt(ex, diagnostic.wrong, case)
            if not isinstance(outcome, Exception) and _compare(out, outcome, ex)[0] is None:
                return f"{head}: {diagnostic.message}"
    pattern = _pattern(out, expected, ex)
    return f"{head}: {pattern}" if pattern else head


def _explain_error(ex: Exercise, case: Case, err: Exception) -> str | None:
    """The message of the first diagnostic whose wrong implementation raises the same error."""
    for diagnostic in ex.diagnostics:
        if diagnostic.match:
            outcome = _attempt(ex, diagnostic.wrong, case)
            if type(outcome) is type(err) and str(outcome) == str(err):
                return diagnostic.message
    return None


def _attempt(ex: Exercise, wrong: Any, case: Case) -> Any:
    """A wrong implementation's output on ``case``, or the exception it raised (quietly)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return ex.run(wrong, copy.deepcopy(case))
        except Exception as err:
            return err


def _pattern(out: Any, expected: Any, ex: Exercise) -> str | None:
    """A sign, a constant factor or a transpose that explains the mismatch of arrays."""
    try:
        o, e = np.asarray(out, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if o.dtype == object or e.dtype == object or not np.all(np.isfinite(o)):
        return None
    if o.shape != e.shape:
        if o.ndim == 2 and o.shape == e.shape[::-1]:
            return (
                f"returned shape {o.shape}, expected {e.shape}: your result is transposed "
                "(check which factor is transposed, and the order of the product)"
            )
        return None
    if o.ndim == 2 and o.shape[0] == o.shape[1] and _close(o, e.T, ex.rtol32):
        return "your result is the transpose of the expected one"
    if _close(o, -e, ex.rtol32):
        return "your result has the wrong sign (it is −1 × the expected one)"
    denominator = float(np.vdot(e, e))
    if denominator > 0:
        c = float(np.vdot(o, e)) / denominator
        if abs(c - 1) > 1e-3 and c != 0 and _close(o, c * e, ex.rtol32):
            return (
                f"your result is {c:.4g} × the expected one: a missing or extra factor "
                "(1/b, 2, λ, √V, …)?"
            )
    return None


def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    return bool(np.linalg.norm(a - b) <= rtol * max(np.linalg.norm(b), 1e-300))


def _compare(out: Any, expected: Any, ex: Exercise, path: str = "") -> tuple[str | None, float]:
    """``(None, relative error)`` if ``out`` matches ``expected``, else ``(problem, 0)``."""
    where = f" ({path.strip()})" if path else ""
    if isinstance(expected, Dual):
        if not isinstance(out, Dual):
            return f"returned {type(out).__name__}{where} where a Dual was expected", 0.0
        p, ep = _compare(out.primal, expected.primal, ex, path + " primal")
        if p:
            return p, 0.0
        t, et = _compare(out.tangent, expected.tangent, ex, path + " tangent")
        return (t, 0.0) if t else (None, max(ep, et))
    if isinstance(out, Dual):
        return f"returned a Dual{where} where a plain value was expected", 0.0
    if expected is None or out is None:
        if out is None and expected is None:
            return None, 0.0
        if out is None:
            return f"returned None{where}: did you forget `return`?", 0.0
        return f"returned {_brief(out)}{where}, expected None", 0.0
    if isinstance(expected, tuple | list):
        if not isinstance(out, tuple | list):
            return (
                f"returned {type(out).__name__}{where}, expected a {type(expected).__name__}"
                f" of {len(expected)} values"
            ), 0.0
        if len(out) != len(expected):
            return f"returned {len(out)} values{where}, expected {len(expected)}", 0.0
        worst = 0.0
        for i, (o, e) in enumerate(zip(out, expected, strict=True)):
            problem, error = _compare(o, e, ex, f"{path} [{i}]")
            if problem:
                return problem, 0.0
            worst = max(worst, error)
        return None, worst
    return _compare_arrays(out, expected, ex, where)


def _compare_arrays(out: Any, expected: Any, ex: Exercise, where: str) -> tuple[str | None, float]:
    try:
        o = np.asarray(backend.asnumpy(out))
    except Exception:
        return f"returned {_brief(out)}{where}, expected an array or a number", 0.0
    e = np.asarray(backend.asnumpy(expected))
    if ex.squeeze:
        o = o.reshape(()) if o.size == 1 else o
        e = e.reshape(()) if e.size == 1 else e
    if o.dtype == object:
        return f"returned {_brief(out)}{where}, expected an array or a number", 0.0
    if o.shape != e.shape:
        return f"returned shape {o.shape}{where}, expected {e.shape}", 0.0
    if e.dtype.kind == "b" or e.dtype.kind in "iu":
        same = np.array_equal(o, e)
        return (
            (None, 0.0) if same else (f"returned {o.tolist()}{where}, expected {e.tolist()}", 0.0)
        )
    if ex.check_dtype and e.dtype.kind == "f" and isinstance(expected, np.ndarray | np.generic):
        if o.dtype != e.dtype:
            return (
                f"returns {o.dtype}{where} where {e.dtype} was expected: keep the dtype of "
                "the inputs (an np.eye or np.zeros without dtype= is float64)"
            ), 0.0
    rtol = ex.rtol32 if e.dtype == np.float32 else ex.rtol
    o64, e64 = o.astype(np.float64), e.astype(np.float64)
    finite = np.isfinite(e64)
    if not np.array_equal(np.isfinite(o64), finite):
        return f"is not finite{where} (NaN or inf) where the expected result is", 0.0
    if not np.array_equal(o64[~finite], e64[~finite], equal_nan=True):
        return f"has the wrong infinities{where}", 0.0
    diff = float(np.linalg.norm(o64[finite] - e64[finite]))
    size = float(np.linalg.norm(e64[finite]))
    error = diff / size if size > 0 else diff
    if diff <= ex.atol + rtol * size:
        return None, error
    return f"differs by {error:.1e}{where}", 0.0


def _brief(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else f"a {type(x).__name__}"


def _seed(exercise_id: str) -> int:
    return zlib.crc32(exercise_id.encode())


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", "") or ""
    return f"{module}.{getattr(obj, '__qualname__', repr(obj))}".lstrip(".")


@contextlib.contextmanager
def _numpy_float64() -> Iterator[None]:
    """Grade on the NumPy backend in float64 (the student's NumPy code and host cases)."""
    name, dtype = backend.backend_name(), backend.get_default_dtype()
    backend.set_backend("numpy")
    backend.set_default_dtype("float64")
    try:
        yield
    finally:
        backend.set_backend(name)
        backend.set_default_dtype(dtype)


# --------------------------------------------------------------------------------------------
# plugging a student's function into the library
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plug:
    """Where a student's function goes: ``targets`` ("module:attribute", every name the library
    calls it by) and ``adapt``, which gives the function the library's signature."""

    name: str
    targets: tuple[str, ...]
    adapt: Callable[[Any], Any] = lambda fn: fn
    doc: str = ""


PLUGS: dict[str, Plug] = {}  # filled by tinycurv.course.exercises


@dataclass
class PluggedIn:
    """What ``plug_in`` yields: the plug's ``name`` and how often the library ``calls`` it."""

    name: str
    calls: int = 0


@contextlib.contextmanager
def plug_in(name: str, fn: Any) -> Iterator[PluggedIn]:
    """Within the block the library calls the student's ``fn`` instead of its own ``name``.

    ``name`` is a ``PLUGS`` entry (``"zeta_star"``, ``"kfac_factors"``, ``"Tanh"``, …) or an
    exercise id. Every target is restored on exit, also after an error. Yields a ``PluggedIn``
    whose ``calls`` counts the calls the library made (proof that the piece was used).

    Examples
    --------
    >>> with course.plug_in("zeta_star", zeta_star) as plugged:
    ...     for x, y in batches:
    ...         opt.step(x, y)                     # ISAAC now calls the student's ζ*
    >>> plugged.calls
    """
    if name in REGISTRY and REGISTRY[name].plug:
        name = REGISTRY[name].plug
    if name not in PLUGS:
        raise KeyError(f"nothing to plug in under {name!r}; choose one of {', '.join(PLUGS)}")
    plug, report = PLUGS[name], PluggedIn(name)
    replacement = _counting(plug.adapt(fn), report)
    saved = []
    try:
        for target in plug.targets:
            module_name, attribute = target.split(":")
            module = importlib.import_module(module_name)
            if hasattr(module, attribute):
                saved.append((module, attribute, getattr(module, attribute)))
                setattr(module, attribute, replacement)
        if not saved:
            raise LookupError(f"plug {name!r}: none of its targets {plug.targets} exists")
        yield report
    finally:
        for module, attribute, original in reversed(saved):
            setattr(module, attribute, original)


def _counting(fn: Any, report: PluggedIn) -> Any:
    """``fn`` that counts its calls in ``report`` (for a class: the calls of ``forward``)."""
    if isinstance(fn, type):
        forward = fn.forward

        def counted_forward(self: Any, *xs: Any) -> Any:
            report.calls += 1
            return forward(self, *xs)

        return type(fn.__name__, (fn,), {"forward": counted_forward, "__module__": fn.__module__})

    def counted(*args: Any, **kwargs: Any) -> Any:
        report.calls += 1
        return fn(*args, **kwargs)

    counted.__wrapped__ = fn  # type: ignore[attr-defined]
    counted.__name__ = getattr(fn, "__name__", "plugged")
    return counted


def replace(exercise: Exercise, **changes: Any) -> Exercise:
    """A copy of ``exercise`` with ``changes`` (a track exercise reusing a notebook's)."""
    return dataclasses.replace(exercise, **changes)
