"""The command line: ``tinycurv compare | verify | bench`` on tiny settings, and plots.

Most tests call ``cli.main([...])`` in-process; a few run ``python -m tinycurv`` to check real
exit statuses and that errors print a message, not a traceback. ``test_compare_defaults`` runs
``tinycurv compare`` with no arguments at all (every optimiser, default steps), as CI must.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import struct
import subprocess
import sys
import types
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from tinycurv import cli, verify
from tinycurv.compare import DEFAULTS, TASKS, CompareError, available_optimizers, compare
from tinycurv.data import MNIST_FILES
from tinycurv.plotting import plot_losses, read_steps_csv, running_mean

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def _python(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120):
    """Run ``python -m tinycurv ARGS`` and return the completed process (text output)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("TINYCURV_DATA", "TINYCURV_BACKEND", verify.BREAK_ENV):
        full_env.pop(name, None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tinycurv", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.shape[2] in (3, 4)


def _write_fake_mnist(folder: Path, n_train: int = 80, n_test: int = 20) -> None:
    """The four IDX files with random 28×28 images and labels."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        magic = 0x800 + array.ndim
        header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
        (folder / MNIST_FILES[key]).write_bytes(header + array.tobytes())


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------
def test_compare_writes_csv_and_valid_pngs(tmp_path, capsys):
    out = tmp_path / "run"
    status = cli.main(
        [
            "compare",
            "--optimizers",
            "sgd,adam",
            "--steps",
            "12",
            "--batch-size",
            "32",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert status == 0
    text = capsys.readouterr().out
    assert "sgd" in text and "adam" in text and "accuracy" in text and "ms/step" in text
    with open(out / "steps.csv", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["optimizer", "step", "wall_time", "loss"]
        rows = list(reader)
    assert len(rows) == 24
    assert [r[0] for r in rows] == ["sgd"] * 12 + ["adam"] * 12
    assert [int(r[1]) for r in rows[:12]] == list(range(1, 13))
    times = [float(r[2]) for r in rows[:12]]
    assert times == sorted(times) and times[0] > 0
    assert all(np.isfinite(float(r[3])) and float(r[3]) > 0 for r in rows)
    for name in ("loss_per_step.png", "loss_per_second.png"):
        _assert_png(out / name)


def test_compare_function_results_and_table():
    results = compare("teacher-student", ["sgd"], steps=15, batch_size=16, progress=False)
    (run,) = results.runs
    assert run.status == "ok" and len(run.losses) == 15 and len(run.wall_times) == 15
    assert run.final_loss == pytest.approx(np.mean(run.losses[-10:]))
    assert results.metric == "test loss" and np.isfinite(run.test_metric)
    assert results.files == [] and results.out is None
    assert "test loss" in results.table() and results.table(markdown=True).startswith("| ")


def test_compare_digits_cnn_runs(tmp_path):
    results = compare("digits-cnn", ["sgd"], steps=3, batch_size=8, progress=False)
    assert results.runs[0].status == "ok" and 0.0 <= results.runs[0].test_metric <= 1.0


def test_compare_same_start_and_batches_for_every_optimiser():
    results = compare("digits-mlp", ["sgd", "adam"], steps=1, progress=False)
    first = [r.losses[0] for r in results.runs]
    assert first[0] == first[1]  # same initial weights, same first batch


def test_diverged_run_is_marked_and_the_others_go_on(tmp_path):
    results = compare(
        "teacher-student",
        ["sgd", "adam"],
        steps=30,
        batch_size=16,
        progress=False,
        out=tmp_path,
        hyperparameters={"sgd": {"lr": 1e6}},
    )
    sgd, adam = results.runs
    assert sgd.status == "diverged" and len(sgd.losses) < 30
    assert adam.status == "ok" and len(adam.losses) == 30
    assert "diverged" in results.table()
    _assert_png(tmp_path / "loss_per_step.png")


def test_unknown_optimizer_fails_listing_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", "--optimizers", "sgd,newton9000"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "newton9000" in err and all(name in err for name in DEFAULTS)
    with pytest.raises(CompareError, match="choose from"):
        compare("digits-mlp", ["newton9000"], steps=1, progress=False)


def test_unknown_task_fails_listing_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", "--task", "imagenet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "imagenet" in err and "digits-mlp" in err and "mnist-autoencoder" in err
    with pytest.raises(CompareError, match="digits-cnn"):
        compare("imagenet", ["sgd"], progress=False)


def test_mnist_without_data_exits_2_with_a_message(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    argv = ["compare", "--optimizers", "sgd", "--steps", "1", "--data", missing]
    proc = _python(*argv, "--task", "mnist-mlp")  # a real process: status, and no traceback
    assert proc.returncode == 2
    assert "MNIST" in proc.stderr and "nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert cli.main([*argv, "--task", "mnist-autoencoder", "--out", str(tmp_path)]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_mnist_without_data_dir_or_env_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TINYCURV_DATA", raising=False)
    status = cli.main(
        [
            "compare",
            "--task",
            "mnist-mlp",
            "--optimizers",
            "sgd",
            "--steps",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert status == 2
    assert "TINYCURV_DATA" in capsys.readouterr().err


def test_mnist_tasks_with_data_from_the_environment(tmp_path, monkeypatch):
    _write_fake_mnist(tmp_path / "mnist")
    monkeypatch.setenv("TINYCURV_DATA", str(tmp_path / "mnist"))
    mlp = compare("mnist-mlp", ["sgd"], steps=2, batch_size=16, progress=False)
    assert mlp.runs[0].status == "ok" and mlp.metric == "accuracy"
    ae = compare(
        "mnist-autoencoder",
        ["sgd"],
        steps=2,
        batch_size=8,
        progress=False,
        hyperparameters={"sgd": {"lr": 1e-3}},
    )
    assert ae.runs[0].status == "ok" and ae.metric == "test loss"
    assert ae.runs[0].test_metric > 0


def test_task_hyperparameters_override_defaults_and_callers_override_both(tmp_path, monkeypatch):
    _write_fake_mnist(tmp_path / "mnist")
    monkeypatch.setenv("TINYCURV_DATA", str(tmp_path / "mnist"))
    tuned = TASKS["mnist-autoencoder"].hyperparameters
    assert set(tuned) <= set(DEFAULTS) and tuned["kfac"]["lr"] != DEFAULTS["kfac"][1]["lr"]
    run = compare("mnist-autoencoder", ["kfac"], steps=1, batch_size=8, progress=False).runs[0]
    assert run.hyperparameters == {**DEFAULTS["kfac"][1], **tuned["kfac"]}
    mine = {"kfac": {"lr": 1e-4}}
    run = compare(
        "mnist-autoencoder", ["kfac"], steps=1, batch_size=8, progress=False, hyperparameters=mine
    ).runs[0]
    assert run.hyperparameters == {**DEFAULTS["kfac"][1], **tuned["kfac"], "lr": 1e-4}
    assert TASKS["digits-mlp"].hyperparameters == {}


def test_every_default_resolves_or_is_reported_unavailable():
    names = available_optimizers()
    assert {"sgd", "adam"} <= set(names)
    for path, kwargs, why in DEFAULTS.values():
        assert path.startswith("tinycurv.optim.") and isinstance(kwargs, dict) and why


# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------
def test_verify_all_checks_pass(capsys, monkeypatch):
    monkeypatch.delenv(verify.BREAK_ENV, raising=False)
    assert cli.main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    for check in verify.CHECKS.values():
        assert check.name in out and check.claim in out
    assert f"{len(verify.CHECKS)}/{len(verify.CHECKS)} checks passed" in out


def test_verify_covers_every_method():
    names = " ".join(verify.CHECKS)
    for prefix in (
        "hvp",
        "kfac",
        "isaac-thm1",
        "isaac-thm2",
        "isaac-thm3",
        "isaac-thm4",
        "gn-newton",
        "gn-cauchy",
        "gn-invariance",
        "gn-fixed-point",
        "sfn-series",
        "sfn-coefficients",
    ):
        assert prefix in names


def test_a_broken_check_makes_verify_fail(monkeypatch, capsys):
    monkeypatch.setenv(verify.BREAK_ENV, "isaac-thm3")
    assert cli.main(["verify", "--checks", "isaac-thm3,hvp-symmetry"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "1/2 checks passed" in out


def test_a_broken_check_gives_a_non_zero_exit_status():
    proc = _python(
        "verify", "--checks", "sfn-coefficients", env={verify.BREAK_ENV: "sfn-coefficients=1e-6"}
    )
    assert proc.returncode == 1 and "FAIL" in proc.stdout


def test_verify_run_perturb_argument_and_errors(monkeypatch):
    monkeypatch.delenv(verify.BREAK_ENV, raising=False)
    (ok,) = verify.run(["hvp-symmetry"])
    (broken,) = verify.run(["hvp-symmetry"], perturb={"hvp-symmetry": 1e-9})
    assert ok.passed and not broken.passed
    assert broken.error == pytest.approx(ok.error + 1e-9)
    with pytest.raises(ValueError, match="unknown"):
        verify.run(["no-such-check"])
    with pytest.raises(ValueError, match="unknown"):
        verify.run(["hvp-symmetry"], perturb={"no-such-check": 1.0})


def test_a_crashing_check_is_a_failure(monkeypatch):
    def crash() -> tuple[float, float]:
        raise RuntimeError("boom")

    monkeypatch.setitem(verify.CHECKS, "crash", verify.Check("crash", "c", "s", crash))
    (outcome,) = verify.run(["crash"])
    assert not outcome.passed and "boom" in verify.format_table([outcome])


def test_verify_unknown_names(monkeypatch, capsys):
    assert cli.main(["verify", "--checks", "nope"]) == 2
    monkeypatch.setenv(verify.BREAK_ENV, "nope")
    assert cli.main(["verify", "--checks", "hvp-symmetry"]) == 2
    assert cli.main(["verify", "--list"]) == 0
    assert "hvp-fd" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------
def test_bench_dispatches_sizes_and_markdown(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("tinycurv.bench.sfn")
    fake.run = lambda **kw: calls.append(kw) or "| fake | table |"
    monkeypatch.setitem(sys.modules, "tinycurv.bench.sfn", fake)
    assert cli.main(["bench", "sfn", "--sizes", "3,5", "--markdown"]) == 0
    assert calls == [{"sizes": [3, 5], "markdown": True}]
    out = capsys.readouterr().out
    assert "| fake | table |" in out and "numpy on" in out


def test_bench_retain_memory_calls_the_backend_helper(monkeypatch, capsys):
    from tinycurv import backend

    calls = []
    monkeypatch.setattr(backend, "retain_freed_memory", lambda: calls.append(1) or False)
    fake = types.ModuleType("tinycurv.bench.sfn")
    fake.run = lambda **kw: "| fake | table |"
    monkeypatch.setitem(sys.modules, "tinycurv.bench.sfn", fake)
    assert cli.main(["bench", "sfn", "--retain-memory"]) == 0
    assert calls == [1] and "NOT kept" in capsys.readouterr().out


def test_retain_freed_memory_reports_what_glibc_said():
    """On glibc both settings are accepted; elsewhere the helper says False, never raises.
    (In a subprocess: the setting is process-wide.)"""
    import ctypes.util

    code = "from tinycurv.backend import retain_freed_memory as r; print(r(), r(1 << 20, 1 << 20))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.split()
    assert first == second and first in ("True", "False")
    if sys.platform.startswith("linux") and "libc.so" in (ctypes.util.find_library("c") or ""):
        assert first == "True"


def test_bench_bad_sizes_and_names_exit_2(capsys):
    for argv in (["bench", "engine", "--sizes", "a,b"], ["bench", "warp-drive"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2


@pytest.mark.skipif(
    importlib.util.find_spec("tinycurv.bench.engine") is None,
    reason="tinycurv/bench/engine.py not written yet",
)
def test_bench_engine_smoke(capsys):
    assert cli.main(["bench", "engine", "--sizes", "8"]) == 0
    assert "engine" in capsys.readouterr().out


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_bench_cupy_unavailable_is_a_clear_error(capsys):
    assert cli.main(["bench", "engine", "--backend", "cupy"]) == 2
    err = capsys.readouterr().err
    assert "cupy" in err.lower() and "Traceback" not in err


def test_device_name_names_the_cpu():
    assert cli.device_name("numpy")


# --------------------------------------------------------------------------------------------
# plotting and the module entry point
# --------------------------------------------------------------------------------------------
def test_plot_losses_from_a_mapping_and_from_csv_rows(tmp_path):
    records = {
        "a": {"step": [1, 2, 3], "wall_time": [0.1, 0.2, 0.3], "loss": [3.0, 2.0, 1.0]},
        "b": {"step": [1, 2], "wall_time": [0.5, 1.0], "loss": [2.0, float("nan")]},
    }
    backend = matplotlib.get_backend()
    plot_losses(records, x="time", path=tmp_path / "t.png", title="toy")
    _assert_png(tmp_path / "t.png")
    assert matplotlib.get_backend() == backend  # saving leaves pyplot's backend alone
    with pytest.raises(ValueError, match="step"):
        plot_losses(records, x="epoch")
    results = compare("digits-mlp", ["sgd"], steps=3, progress=False, out=tmp_path / "c")
    rows = read_steps_csv(tmp_path / "c" / "steps.csv")
    assert rows == [
        {**r, "wall_time": pytest.approx(r["wall_time"], abs=1e-6)} for r in results.rows()
    ]


def test_running_mean():
    assert np.allclose(running_mean([1.0, 3.0, 5.0, 7.0], 2), [1.0, 2.0, 4.0, 6.0])
    assert np.allclose(running_mean([1.0, 2.0], 1), [1.0, 2.0])


def test_python_dash_m_help():
    proc = _python("--help")
    assert proc.returncode == 0
    assert all(word in proc.stdout for word in ("compare", "verify", "bench"))


# --------------------------------------------------------------------------------------------
# the default run (required in CI): every optimiser, default steps, digits-mlp
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_compare_defaults(tmp_path):
    proc = _python("compare", cwd=tmp_path, timeout=600)  # no timed assertion: see bench
    assert proc.returncode == 0, proc.stderr[-3000:]
    out_dir = tmp_path / "runs" / "digits-mlp"
    rows = read_steps_csv(out_dir / "steps.csv")
    names = available_optimizers()
    for name in names:
        steps = [r["step"] for r in rows if r["optimizer"] == name]
        assert steps == list(range(1, 301)), name  # every default trains to the end
        assert f"{name} " in proc.stdout
    assert "diverged" not in proc.stdout and "failed" not in proc.stdout
    for png in ("loss_per_step.png", "loss_per_second.png"):
        _assert_png(out_dir / png)


# --------------------------------------------------------------------------------------------
# help, version, usage errors, pipes and the output folder
# --------------------------------------------------------------------------------------------
def test_bare_tinycurv_prints_the_help_and_exits_0(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tinycurv") and all(w in out for w in ("compare", "verify"))
    proc = _python()
    assert proc.returncode == 0 and proc.stdout == out and proc.stderr == ""


def test_version(capsys):
    import tinycurv

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"tinycurv {tinycurv.__version__}\n" == "tinycurv 0.1.0\n"


def _actions(parser, prog="tinycurv"):
    """(program, action) for every action of ``parser`` and of its subcommands' parsers."""
    import argparse

    for action in parser._actions:
        yield prog, action
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from _actions(subparser, f"{prog} {name}")


def test_every_option_of_every_command_has_help():
    import argparse

    seen = set()
    for prog, action in _actions(cli.build_parser()):
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        seen.add(f"{prog} {name}")
        assert action.help and action.help.strip(), f"{prog} {name} has no help text"
    assert {
        "tinycurv --version",
        "tinycurv compare --batch-size",
        "tinycurv compare --seed",
        "tinycurv compare --task",
        "tinycurv verify --markdown",
        "tinycurv bench which",
        "tinycurv bench --backend",
    } <= seen


def test_a_closed_pipe_ends_quietly():
    """``tinycurv verify --list | head -1``: no BrokenPipeError traceback, status 0 or 141."""
    env = {k: v for k, v in os.environ.items() if k not in ("TINYCURV_BACKEND", verify.BREAK_ENV)}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinycurv", "verify", "--list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # before the command writes anything: its writes must hit EPIPE
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) in (0, 141), err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    shell = subprocess.run(
        f"{sys.executable} -m tinycurv verify --list | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert len(shell.stdout.splitlines()) == 1 and "hvp" in shell.stdout
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr


def test_a_broken_pipe_in_process_returns_141(monkeypatch):
    def verify_into_a_closed_pipe(args):
        raise BrokenPipeError

    monkeypatch.setattr(cli, "_verify", verify_into_a_closed_pipe)
    assert cli.main(["verify", "--list"]) == 141


@pytest.mark.parametrize(
    "option, value, bound",
    [
        ("--seed", "-1", "≥ 0"),
        ("--steps", "0", "≥ 1"),
        ("--steps", "-5", "≥ 1"),
        ("--steps", "ten", "≥ 1"),
        ("--batch-size", "0", "≥ 1"),
        ("--batch-size", "2.5", "≥ 1"),
    ],
)
def test_bad_counts_are_one_line_usage_errors(option, value, bound, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", "--optimizers", "sgd", option, value])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == "", captured.err
    assert option in lines[0] and bound in lines[0] and repr(value) in lines[0]
    assert lines[0].startswith("tinycurv compare: error:")


def test_a_negative_seed_is_a_usage_error_in_a_real_process():
    """Was "cannot load the data" (from NumPy's generator) after the model was built."""
    proc = _python("compare", "--optimizers", "sgd", "--steps", "1", "--seed", "-1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--seed" in proc.stderr and "≥ 0" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "text, message", [(",", "no optimizer given"), ("sgd,adam,sgd", "'sgd' given twice")]
)
def test_empty_or_repeated_optimizer_lists_are_usage_errors(text, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", "--optimizers", text])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": -1}, "seed must be an integer ≥ 0, got -1"),
        ({"steps": 0}, "steps must be an integer ≥ 1, got 0"),
        ({"steps": 2.5}, "steps must be an integer ≥ 1, got 2.5"),
        ({"batch_size": 0}, "batch_size must be an integer ≥ 1, got 0"),
        ({"batch_size": True}, "batch_size must be an integer ≥ 1, got True"),
        ({"optimizers": ["sgd", "sgd"]}, "'sgd' given twice"),
        ({"optimizers": []}, "no optimizer given"),
        ({"hyperparameters": {"sgdd": {"lr": 1.0}}}, "unknown optimizer 'sgdd'"),
    ],
)
def test_compare_checks_its_arguments_before_training(kwargs, message, monkeypatch):
    import tinycurv.compare as compare_module

    monkeypatch.setattr(compare_module, "_train", lambda *a, **k: pytest.fail("trained"))
    kwargs = {"optimizers": ["sgd"], "steps": 1, **kwargs}
    with pytest.raises(CompareError) as info:
        compare("teacher-student", progress=False, **kwargs)
    assert message in str(info.value)


def test_optimizers_as_one_string_is_a_type_error():
    with pytest.raises(TypeError, match=r"optimizers must be a list of names.*'sgd,adam'"):
        compare("teacher-student", "sgd,adam", steps=1, progress=False)


@pytest.mark.parametrize("checks", ["", ","])
def test_verify_with_an_empty_check_list_exits_2(checks, capsys):
    assert cli.main(["verify", "--checks", checks]) == 2
    err = capsys.readouterr().err
    assert "--checks" in err and "verify --list" in err and len(err.strip().splitlines()) == 1


def test_an_unwritable_out_folder_fails_before_training(tmp_path, monkeypatch, capsys):
    """A path under a regular file (tests may run as root, so no read-only folder)."""
    import tinycurv.compare as compare_module

    monkeypatch.setattr(compare_module, "_train", lambda *a, **k: pytest.fail("trained"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker / "run", blocker):
        argv = ["compare", "--task", "teacher-student", "--optimizers", "sgd,adam"]
        assert cli.main([*argv, "--steps", "1", "--quiet", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tinycurv compare: error: cannot write to the output folder")
        assert str(out) in err and len(err.strip().splitlines()) == 1
        with pytest.raises(CompareError, match="output folder"):
            compare("teacher-student", ["sgd"], steps=1, progress=False, out=out)
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_steps_csv_keeps_the_finished_runs_when_a_later_run_breaks(error, tmp_path, monkeypatch):
    import tinycurv.compare as compare_module

    real_train, calls = compare_module._train, []

    def train(name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            raise error("stopped in the second run")
        return real_train(name, *args, **kwargs)

    monkeypatch.setattr(compare_module, "_train", train)
    with pytest.raises(error):
        compare("teacher-student", ["sgd", "adam"], steps=4, progress=False, out=tmp_path)
    assert calls == ["sgd", "adam"]
    rows = read_steps_csv(tmp_path / "steps.csv")
    assert [(r["optimizer"], r["step"]) for r in rows] == [("sgd", s) for s in range(1, 5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["steps.csv"]  # no plots, no temp file


def test_ctrl_c_in_compare_exits_130_and_keeps_the_finished_runs(tmp_path, monkeypatch, capsys):
    import tinycurv.compare as compare_module

    real_train = compare_module._train

    def train(name, *args, **kwargs):
        if name == "adam":
            raise KeyboardInterrupt
        return real_train(name, *args, **kwargs)

    monkeypatch.setattr(compare_module, "_train", train)
    argv = ["compare", "--task", "teacher-student", "--optimizers", "sgd,adam", "--steps", "3"]
    assert cli.main([*argv, "--quiet", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "steps.csv" in err and "Traceback" not in err
    with open(tmp_path / "steps.csv", newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == ["optimizer", "step", "wall_time", "loss"]
    assert [r[:2] for r in lines[1:]] == [["sgd", "1"], ["sgd", "2"], ["sgd", "3"]]
