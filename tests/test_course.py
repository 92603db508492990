"""The graders of ``tinycurv.course``: right answers pass, typical wrong ones fail as intended.

* every registered exercise: the library's reference passes; each of its diagnostics (a
  transposed factor, a missing 1/b, a sign, …) fails with its own message; a stub is skipped;
* the reference solutions in ``tutorials/solutions`` pass (skipped where an instructor
  withheld that folder), and hand-written wrong answers get the intended diagnosis;
* ``check``'s API (functions, modules, files, ``globals()``), the restored backend, ``plug_in``
  (the library really calls the student's piece, and everything is restored), the registry's
  shape (3–5 exercises per tutorial, the track's pieces) and ``tinycurv check``'s exit codes.

Marked ``exercises``: ``pytest -m exercises`` runs this file alone.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import backend, course, nn, optim
from tinycurv.course import cli as course_cli
from tinycurv.course.grader import PLUGS, WrongAnswer, load_file

# grading runs on NumPy by design (a student's NumPy code cannot be plugged into a CuPy run)
pytestmark = [
    pytest.mark.exercises,
    pytest.mark.skipif(
        os.environ.get("TINYCURV_BACKEND", "numpy").strip().lower() == "cupy",
        reason="tinycurv.course grades on the NumPy backend",
    ),
]

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "tutorials" / "solutions"
IDS = list(course.EXERCISES)
DIAGNOSTICS = [(i, k) for i in IDS for k in range(len(course.EXERCISES[i].diagnostics))]


def _solution_module(exercise_id: str):
    ex = course.get(exercise_id)
    if exercise_id.startswith("T"):
        stem = {
            "T1": "track",
            "T2": "track",
            "T3": "exercises_02",
            "T4": "exercises_03",
            "T5": "exercises_05",
            "T6": "exercises_06",
            "T7": "exercises_07",
        }[exercise_id[:2]]
    else:
        stem = f"exercises_{exercise_id[:2]}"
    path = SOLUTIONS / f"{stem}.py"
    if not path.is_file():
        pytest.skip(f"{path} withheld")
    module = load_file(path)
    assert hasattr(module, ex.name), f"{path.name} has no {ex.name} ({exercise_id})"
    return module


# --------------------------------------------------------------------------------------------
# every grader: the reference passes, every diagnostic fails with its message, a stub skips
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exercise_id", IDS)
def test_the_library_reference_passes(exercise_id):
    verdict = course.check(exercise_id, course.get(exercise_id).reference, quiet=True)
    assert verdict.passed, verdict.message


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_reference_solution_passes(exercise_id):
    verdict = course.check(exercise_id, _solution_module(exercise_id), quiet=True)
    assert verdict.passed, verdict.message


@pytest.mark.parametrize(("exercise_id", "k"), DIAGNOSTICS)
def test_each_typical_mistake_fails_with_its_message(exercise_id, k):
    diagnostic = course.get(exercise_id).diagnostics[k]
    with pytest.raises(AssertionError) as info:
        course.check(exercise_id, diagnostic.wrong, quiet=True)
    assert diagnostic.message in str(info.value)
    assert f"Hint: {course.get(exercise_id).hint}" in str(info.value)


@pytest.mark.parametrize("exercise_id", IDS)
def test_a_stub_is_skipped_not_failed(exercise_id, capsys):
    ex = course.get(exercise_id)
    if isinstance(ex.reference, type):  # a primitive: the stub is a class
        stub = type(ex.name, (tc.Function,), {"forward": _raise, "backward": _raise})
    else:
        stub = _raise
    verdict = course.check(exercise_id, stub)
    assert verdict.skipped and not verdict.passed
    assert "not implemented yet (skipped)" in capsys.readouterr().out


def _raise(*args, **kwargs):
    raise NotImplementedError


def test_every_exercise_has_a_signature_a_hint_cases_and_a_diagnostic():
    for ex in course.EXERCISES.values():
        assert ex.signature.startswith((ex.name, f"class {ex.name}")), ex.id
        assert ex.hint and ex.title and ex.notebook, ex.id
        assert len(list(ex.cases(np.random.default_rng(0)))) >= 2, ex.id
        assert ex.diagnostics, f"{ex.id} explains no typical mistake"
        assert len({d.message for d in ex.diagnostics}) == len(ex.diagnostics), ex.id


def test_three_to_five_exercises_per_tutorial_and_the_track_pieces():
    tutorials = {}
    for exercise_id in course.EXERCISES:
        tutorials.setdefault(exercise_id.split(".")[0], []).append(exercise_id)
    for n in range(1, 10):
        assert 3 <= len(tutorials[f"{n:02d}"]) <= 5, tutorials.get(f"{n:02d}")
    track = {course.get(i).plug for i in course.EXERCISES if i.startswith("T")}
    # a primitive, a dual rule, HVP, a K-FAC factor, ζ*, the cubic step, the series, Wynn ε
    assert {
        "Tanh",
        "MatMul",
        "dual.tanh",
        "dual.mul",
        "hvp",
        "kfac_factors",
        "zeta_star",
        "grouped_newton_step",
        "series_coefficients",
        "series_operator",
        "wynn_epsilon",
    } <= track
    assert track <= set(PLUGS)


# --------------------------------------------------------------------------------------------
# hand-written wrong answers get the intended diagnosis
# --------------------------------------------------------------------------------------------
def _zeta_star_missing_1_over_b(g, a, lam_a):
    K = np.eye(a.shape[0], dtype=a.dtype) + a @ a.T / lam_a
    return g.T @ np.linalg.solve(K, a)


def _zeta_star_wrong_square_side(g, a, lam_a):
    b, n = a.shape
    if b > n:  # the n×n side without its 1/b
        return g.T @ a @ np.linalg.inv(np.eye(n, dtype=a.dtype) + a.T @ a / lam_a)
    K = np.eye(b, dtype=a.dtype) + a @ a.T / (b * lam_a)
    return g.T @ np.linalg.solve(K, a)


def _kfac_transposed(a, g_bar, bias=True):
    a = np.concatenate([a, np.ones((a.shape[0], 1), dtype=a.dtype)], axis=1) if bias else a
    return a @ a.T / a.shape[0], g_bar.T @ g_bar / a.shape[0]


def _div_wrong_sign(x, y):
    if not isinstance(x, tc.Dual) and not isinstance(y, tc.Dual):
        return x / y
    a, da = (x.primal, x.tangent) if isinstance(x, tc.Dual) else (x, 0.0)
    b, db = (y.primal, y.tangent) if isinstance(y, tc.Dual) else (y, 0.0)
    return tc.Dual(a / b, (da + a / b * db) / b)


def _series_without_root(hvp_fn, vectors, order, scale, damping=0.0):
    c = tc.curvature.sfn.series_coefficients(order, damping / math.sqrt(scale))
    v = list(vectors)
    S = [c[0] * x for x in v]
    for n in range(1, order):
        v = [x - h / scale for x, h in zip(v, hvp_fn(hvp_fn(v)), strict=True)]
        S = [s + c[n] * x for s, x in zip(S, v, strict=True)]
    return S


@pytest.mark.parametrize(
    ("exercise_id", "wrong", "expected"),
    [
        ("05.2", _zeta_star_missing_1_over_b, "missing 1/b"),
        (
            "05.2",
            _zeta_star_wrong_square_side,
            "at b > n (b=12, n=5, m=3): did you use the n×n side?",
        ),
        ("05.2", lambda g, a, lam_a: -course.get("05.2").reference(g, a, lam_a), "wrong sign"),
        ("05.2", lambda g, a, lam_a: g.T @ a, "differs by"),
        ("03.2", _kfac_transposed, "transposed factor"),
        ("01.4", lambda x, w, gy: (gy @ w, x.T @ gy), "transposed factor"),
        ("02.2", _div_wrong_sign, "minus sign"),
        ("07.3", _series_without_root, "1/√V"),
        ("08.2", lambda z, axis=-1: np.log(np.exp(z).sum(axis=axis)), "subtract the max"),
    ],
)
def test_hand_written_wrong_answers_get_the_intended_message(exercise_id, wrong, expected):
    with pytest.raises(WrongAnswer) as info:
        course.check(exercise_id, wrong)
    assert expected in str(info.value), str(info.value)


def test_a_wrong_dtype_and_a_forgotten_return_are_named(capsys):
    def upcasts(g, a, lam_a):  # np.eye without dtype: float64 for float32 inputs
        K = np.eye(a.shape[0]) + a @ a.T / (a.shape[0] * lam_a)
        return g.T @ np.linalg.solve(K, a)

    verdict = course.check("05.2", upcasts, raise_on_failure=False, quiet=True)
    assert verdict.failed and "float64 where float32 was expected" in verdict.message
    assert "float32 (b=5, n=8, m=4)" in verdict.message
    verdict = course.check("05.2", lambda g, a, lam_a: None, raise_on_failure=False, quiet=True)
    assert "forget `return`" in verdict.message


def test_an_error_in_the_students_code_is_reported_with_the_case():
    def broken(g, a, lam_a):
        return g @ a  # (b, m) @ (b, n)

    with pytest.raises(WrongAnswer, match=r"raised ValueError.*\(at b < n"):
        course.check("05.2", broken)


# --------------------------------------------------------------------------------------------
# check: where the function comes from, what is printed, what is restored
# --------------------------------------------------------------------------------------------
def test_check_takes_a_module_a_file_or_a_namespace(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "import numpy as np\n\ndef fd_step(dtype):\n"
        "    return float(np.finfo(dtype).eps) ** (1 / 3)\n"
    )
    assert course.check("08.1", str(path), quiet=True).passed
    assert course.check("08.1", load_file(path), quiet=True).passed
    namespace = {"fd_step": lambda dtype: float(np.finfo(dtype).eps) ** (1 / 3)}
    assert course.check("08.1", namespace, quiet=True).passed
    assert course.passed("08.1")
    with pytest.raises(LookupError, match="no 'softmax'"):
        course.check("08.3", namespace)
    with pytest.raises(KeyError, match="did you mean"):
        course.check("5.2", namespace)


def test_check_prints_passed_and_grades_on_numpy_float64(capsys):
    backend.set_default_dtype("float32")
    verdict = course.check("09.1", course.get("09.1").reference)
    assert verdict.passed and str(verdict).startswith("✓ 09.1 running_mean: passed")
    assert "passed" in capsys.readouterr().out
    assert backend.get_default_dtype() == "float32" and backend.backend_name() == "numpy"


def test_inputs_changed_in_place_do_not_change_the_reference():
    def scribbles(g, a, lam_a):
        out = course.get("05.2").reference(g, a, lam_a)
        a *= 0.0  # the reference still sees the original a
        return out

    assert course.check("05.2", scribbles, quiet=True).passed


def test_describe_and_hint_name_the_cases_and_the_idea(capsys):
    text = course.describe("05.2")
    assert "zeta_star(g, a, lam_a)" in text and "b > n (b=12, n=5, m=3)" in text
    assert "b×b solve" in course.hint("05.2")


# --------------------------------------------------------------------------------------------
# plug_in: the library calls the student's piece, and everything is restored
# --------------------------------------------------------------------------------------------
def test_plug_in_makes_isaac_call_the_students_zeta_star_and_restores_it():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 6)), rng.integers(0, 3, 16)

    def run(zeta_star=None):
        model = nn.Sequential(nn.Linear(6, 5, rng=1), nn.Tanh(), nn.Linear(5, 3, rng=2))
        opt = optim.ISAAC(model, nn.CrossEntropyLoss(), lr=0.5, lam_a=0.3)
        if zeta_star is None:
            return [opt.step(x, y) for _ in range(3)], 0
        with course.plug_in("zeta_star", zeta_star) as plugged:
            losses = [opt.step(x, y) for _ in range(3)]
        return losses, plugged.calls

    original = tc.curvature.zeta_star
    reference, _ = run()
    mine, calls = run(
        load_file(SOLUTIONS / "exercises_05.py").zeta_star
        if (SOLUTIONS / "exercises_05.py").is_file()
        else course.get("05.2").reference
    )
    np.testing.assert_allclose(mine, reference, rtol=1e-12)
    assert calls == 6  # two layers, three steps
    zero, calls = run(lambda g, a, lam_a: np.zeros((g.shape[1], a.shape[1])))
    assert calls == 6 and zero[0] == reference[0] and zero[1] != reference[1]
    assert tc.curvature.zeta_star is original and tc.curvature.isaac.zeta_star is original


def test_plug_in_restores_after_an_error_and_plugs_classes():
    original = tc.ops.Tanh
    with pytest.raises(RuntimeError, match="inside"):
        with course.plug_in("T1.1", course.get("T1.1").reference) as plugged:
            assert tc.ops.Tanh is not original and issubclass(tc.ops.Tanh, original)
            tc.Tensor(np.ones(3)).tanh()
            assert plugged.calls == 1
            raise RuntimeError("inside")
    assert tc.ops.Tanh is original
    with pytest.raises(KeyError, match="zeta_star"):
        with course.plug_in("no such piece", lambda: None):
            pass


TRAINS = {  # plug -> (the exercise whose reference stands in for the student, optimiser)
    "Tanh": ("T1.1", lambda m, f: optim.SGD(m, f, lr=0.5)),
    "MatMul": ("T1.2", lambda m, f: optim.SGD(m, f, lr=0.5)),
    "dual.tanh": ("T2.1", lambda m, f: optim.GroupedNewton(m, f, update_every=1)),
    "dual.mul": ("T2.2", lambda m, f: optim.GroupedNewton(m, f, update_every=1)),
    "hvp": ("T3.1", lambda m, f: optim.SeriesSFN(m, f, order=4, acceleration=1)),
    "kfac_factors": ("T4.1", lambda m, f: optim.KFAC(m, f, lr=0.3, damping=0.01, seed=0)),
    "zeta_star": ("T5.1", lambda m, f: optim.ISAAC(m, f, lr=0.5, lam_a=0.3)),
    "grouped_newton_step": ("T6.1", lambda m, f: optim.GroupedNewton(m, f, update_every=1)),
    "series_coefficients": ("T7.1", lambda m, f: optim.SeriesSFN(m, f, order=5, acceleration=2)),
    "series_operator": ("T7.2", lambda m, f: optim.SeriesSFN(m, f, order=4, acceleration=0)),
    "wynn_epsilon": ("T7.3", lambda m, f: optim.SeriesSFN(m, f, order=5, acceleration=2)),
}


@pytest.mark.parametrize("name", sorted(TRAINS))
def test_each_plugged_piece_trains_a_network_like_the_library(name):
    """The optimiser calls the plugged piece, and a right piece reproduces the library's run."""
    exercise_id, make = TRAINS[name]
    assert course.get(exercise_id).plug == name
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 6)), rng.integers(0, 3, 16)

    def run():
        model = nn.Sequential(nn.Linear(6, 5, rng=1), nn.Tanh(), nn.Linear(5, 3, rng=2))
        opt = make(model, nn.CrossEntropyLoss())
        return [opt.step(x, y) for _ in range(3)]

    reference = run()
    with course.plug_in(name, course.get(exercise_id).reference) as plugged:
        losses = run()
    assert plugged.calls > 0
    np.testing.assert_allclose(losses, reference, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(PLUGS))
def test_every_plug_names_existing_library_functions(name):
    import importlib

    for target in PLUGS[name].targets:
        module, attribute = target.split(":")
        assert hasattr(importlib.import_module(module), attribute), target


def test_plugged_hvp_handles_batched_directions():
    params, closure, vectors = course.exercises._mlp((3, 4, 2), seed=5, loss="mse", batch=4)
    batched = [np.stack([v, 2 * v]) for v in vectors]
    expected = tc.hvp(closure, params, batched, batched=True)
    with course.plug_in("hvp", tc.functional.hvp) as plugged:
        got = tc.hvp(closure, params, batched, batched=True)
    assert plugged.calls == 1
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------
# tinycurv check: exit statuses 0 / 1 / 2
# --------------------------------------------------------------------------------------------
def _file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "my_solution.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


RIGHT = """
    import numpy as np

    def zeta_star(g, a, lam_a):
        b = a.shape[0]
        K = np.eye(b, dtype=a.dtype) + a @ a.T / (b * lam_a)
        return g.T @ np.linalg.solve(K, a)
"""


def test_cli_exit_statuses(tmp_path, capsys):
    assert course_cli.main(["05.2", _file(tmp_path, RIGHT)]) == 0
    assert "✓ 05.2 zeta_star: passed" in capsys.readouterr().out
    wrong = RIGHT.replace("(b * lam_a)", "lam_a")
    assert course_cli.main(["05.2", _file(tmp_path, wrong)]) == 1
    assert "missing 1/b" in capsys.readouterr().out
    stub = "def zeta_star(g, a, lam_a):\n    raise NotImplementedError\n"
    assert course_cli.main(["05.2", _file(tmp_path, stub)]) == 2
    assert "not implemented yet (skipped)" in capsys.readouterr().out
    assert course_cli.main(["05.2", _file(tmp_path, "x = 1\n")]) == 2
    assert "defines no 'zeta_star'" in capsys.readouterr().err
    assert course_cli.main(["05.2", str(tmp_path / "absent.py")]) == 2
    assert course_cli.main(["99.9", _file(tmp_path, RIGHT)]) == 2
    assert course_cli.main(["05.2", _file(tmp_path, "def zeta_star(:\n")]) == 2
    assert "SyntaxError" in capsys.readouterr().err
    assert course_cli.main([]) == 2
    assert course_cli.main(["--list"]) == 0
    assert "05.2   zeta_star" in capsys.readouterr().out


def test_cli_grades_every_exercise_of_a_notebook_that_the_file_defines(tmp_path, capsys):
    if not (SOLUTIONS / "exercises_05.py").is_file():
        pytest.skip("tutorials/solutions withheld")
    assert course_cli.main(["05", str(SOLUTIONS / "exercises_05.py")]) == 0
    out = capsys.readouterr().out
    assert all(f"✓ 05.{k}" in out for k in (1, 2, 3, 4))
    assert course_cli.main(["05", _file(tmp_path, RIGHT)]) == 0  # only zeta_star is there


def test_cli_runs_as_a_script(tmp_path):
    wrong = RIGHT.replace("g.T @ np.linalg.solve(K, a)", "(g.T @ np.linalg.solve(K, a)).T")
    proc = subprocess.run(
        [sys.executable, "-m", "tinycurv.course.cli", "05.2", _file(tmp_path, wrong)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "transpose" in proc.stdout and "Traceback" not in proc.stderr


def test_register_adds_the_check_subcommand():
    import argparse

    parser = argparse.ArgumentParser(prog="tinycurv")
    course_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["check", "--hint", "05.2"])
    assert args.command == "check" and course_cli.main(args) == 0
