"""The command line: ``tinycurv compare | verify | bench`` (also ``python -m tinycurv``).

A declared host-side module (argument parsing, printing, exit codes)::

    tinycurv compare --task digits-mlp --optimizers sgd,kfac --steps 300 --out runs/digits
    tinycurv verify                      # every numerical claim; exit status 1 on a failure
    tinycurv bench kfac --sizes 100,400 --markdown
    tinycurv bench all --backend cupy    # NumPy (CPU) and CuPy (GPU) tables, devices named
    tinycurv check 05.2 my_solution.py   # grade one exercise of the course
    tinycurv reproduce --list            # the papers' experiments in miniature, claims checked

Exit status: 0 on success, 1 when a check or a run failed, 2 for a bad request (unknown name,
bad number, missing data, unwritable output folder, unavailable backend), with a one-line
message and no traceback; 130 on Ctrl-C, 141 when the output pipe closed early (``| head``).
A bare ``tinycurv`` prints the help (status 0), ``tinycurv --version`` the version.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from collections.abc import Sequence

BENCHMARKS = ("engine", "pytorch", "isaac", "kfac", "grouped-newton", "sfn", "diagnostics")


def _names(choices: Sequence[str], what: str):
    """An argparse ``type`` for a comma-separated list of names from ``choices`` (or ``all``)."""

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if names == ["all"]:
            return list(choices)
        if not names:
            raise argparse.ArgumentTypeError(
                f"no {what} given: choose from {', '.join(choices)} (comma-separated) or all"
            )
        bad = [n for n in names if n not in choices]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, bad))}: "
                f"choose from {', '.join(choices)} (comma-separated) or all"
            )
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise argparse.ArgumentTypeError(f"{what} {', '.join(map(repr, twice))} given twice")
        return names

    return parse


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--sizes wants positive integers like 100,400: {text!r}")
    return sizes


def _count(minimum: int):
    """An argparse ``type`` for an integer ≥ ``minimum`` (argparse names the option)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer ≥ {minimum}, got {text!r}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line: the message and a pointer to -h."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its three subcommands."""
    from tinycurv import __version__
    from tinycurv.compare import BATCH_SIZE, DEFAULTS, STEPS, TASKS

    parser = _Parser(
        prog="tinycurv", description="Second-order optimisation for neural networks, verified."
    )
    parser.add_argument("--version", action="version", version=f"tinycurv {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="{compare,verify,bench,check,reproduce}", help="the command to run"
    )

    p = sub.add_parser("compare", help="train optimisers on a task; table, steps.csv, plots")
    p.add_argument(
        "--task",
        default="digits-mlp",
        choices=list(TASKS),
        help="data set and model (default digits-mlp)",
    )
    p.add_argument(
        "--optimizers",
        type=_names(list(DEFAULTS), "optimizer"),
        default=None,
        help=f"comma-separated from {','.join(DEFAULTS)} (default: all available)",
    )
    p.add_argument(
        "--steps", type=_count(1), default=STEPS, help=f"per optimiser (default {STEPS})"
    )
    p.add_argument(
        "--batch-size",
        type=_count(1),
        default=BATCH_SIZE,
        help=f"samples per mini-batch (default {BATCH_SIZE})",
    )
    p.add_argument(
        "--seed",
        type=_count(0),
        default=0,
        help="seed of the initial weights and the batch order, the same for every optimiser "
        "(default 0)",
    )
    p.add_argument("--out", default=None, help="output folder (default runs/<task>)")
    p.add_argument("--data", default=None, help="MNIST folder (default $TINYCURV_DATA)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("verify", help="check the library against the papers' claims")
    p.add_argument("--checks", default=None, help="comma-separated check names (default: all)")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")

    p = sub.add_parser("bench", help="run benchmarks (ratios measured in one run)")
    p.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=[*BENCHMARKS, "all"],
        help=f"the benchmark: {', '.join(BENCHMARKS)} or all (default all)",
    )
    p.add_argument("--sizes", type=_sizes, default=None, help="layer widths, e.g. 100,400,1600")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument(
        "--backend",
        default="numpy",
        choices=["numpy", "cupy"],
        help="numpy: CPU tables only; cupy: CPU and GPU tables (default numpy)",
    )
    p.add_argument(
        "--retain-memory",
        action="store_true",
        help="keep freed host memory for reuse (glibc; see tinycurv.backend.retain_freed_memory)",
    )

    from tinycurv.course import cli as course_cli  # `tinycurv check ID solution.py`

    course_cli.register(sub)
    from tinycurv import reproduce  # `tinycurv reproduce NAME [--quick]`

    reproduce.register(sub)
    return parser


def _fail(command: str, message: str) -> int:
    print(f"tinycurv {command}: error: {message}", file=sys.stderr)
    return 2


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------
def _compare(args: argparse.Namespace) -> int:
    from tinycurv.compare import TASKS, CompareError, available_optimizers, compare

    names = args.optimizers
    if names is None:
        names = available_optimizers()
        print(f"optimizers: {', '.join(names)}")
    out = args.out if args.out is not None else os.path.join("runs", args.task)
    try:
        results = compare(
            args.task,
            names,
            steps=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            out=out,
            data=args.data,
            progress=not args.quiet,
        )
    except (CompareError, FileNotFoundError) as err:
        return _fail("compare", str(err))
    except ValueError as err:  # a broken data file
        return _fail("compare", f"cannot load the data: {err}")
    print(f"\n{args.task} ({TASKS[args.task].description})")
    print(f"{args.steps} steps, batch {args.batch_size}, seed {args.seed}")
    print(results.table())
    for run in results.runs:
        if run.status != "ok":
            print(f"{run.optimizer}: {run.status}: {run.message}")
    print("wrote " + ", ".join(str(f) for f in results.files))
    return 1 if any(r.status == "failed" for r in results.runs) else 0


# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------
def _verify(args: argparse.Namespace) -> int:
    from tinycurv import verify

    if args.list:
        for check in verify.CHECKS.values():
            print(f"{check.name:24s} {check.claim}  [{check.source}]")
        return 0
    names = None
    if args.checks is not None:
        names = [n.strip() for n in args.checks.split(",") if n.strip()]
        if not names:
            return _fail("verify", "--checks is empty: name checks from tinycurv verify --list")
        bad = [n for n in names if n not in verify.CHECKS]
        if bad:
            return _fail("verify", f"unknown check(s) {', '.join(bad)}: see tinycurv verify --list")
    try:
        outcomes = verify.run(names)
    except ValueError as err:  # an unknown name in TINYCURV_VERIFY_BREAK
        return _fail("verify", str(err))
    print(verify.format_table(outcomes, markdown=args.markdown))
    failed = [o for o in outcomes if not o.passed]
    print(f"\n{len(outcomes) - len(failed)}/{len(outcomes)} checks passed")
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------
def device_name(backend: str) -> str:
    """The GPU's name under CuPy, the CPU's model name under NumPy."""
    if backend == "cupy":
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def _bench(args: argparse.Namespace) -> int:
    from tinycurv.backend import BackendError, set_backend

    backends = ["numpy", "cupy"] if args.backend == "cupy" else ["numpy"]
    if args.backend == "cupy":
        try:
            set_backend("cupy")  # fail early, before the CPU numbers, if there is no GPU
        except BackendError as err:
            return _fail("bench", str(err))
    if args.retain_memory:
        from tinycurv.backend import retain_freed_memory

        kept = retain_freed_memory()
        print(f"host memory: freed blocks {'kept for reuse' if kept else 'NOT kept (no glibc)'}")
    which = list(BENCHMARKS) if args.which == "all" else [args.which]
    kwargs = {"markdown": args.markdown} | ({"sizes": args.sizes} if args.sizes else {})
    missing = []
    try:
        for name in which:
            try:
                module = importlib.import_module(f"tinycurv.bench.{name.replace('-', '_')}")
            except ModuleNotFoundError as err:
                if err.name != f"tinycurv.bench.{name.replace('-', '_')}":
                    raise
                missing.append(name)
                continue
            for backend in backends:
                set_backend(backend)
                title = f"{name} — {backend} on {device_name(backend)}"
                print(f"\n## {title}\n" if args.markdown else f"\n{title}\n{'=' * len(title)}")
                print(module.run(**kwargs), flush=True)
    finally:
        set_backend("numpy")
    if missing:
        message = f"benchmark(s) not available yet: {', '.join(missing)}"
        if len(missing) == len(which):
            return _fail("bench", message)
        print(f"\n({message})")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from tinycurv import reproduce

    return reproduce.main(args)


def _check(args: argparse.Namespace) -> int:
    from tinycurv.course import cli as course_cli

    return course_cli.main(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it).

    Without a command it prints the help (exit status 0). A closed output pipe
    (``tinycurv verify --list | head -1``) ends quietly with status 141, as for SIGPIPE;
    Ctrl-C with status 130.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        commands = {
            "compare": _compare,
            "verify": _verify,
            "bench": _bench,
            "check": _check,
            "reproduce": _reproduce,
        }
        status = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        kept = " (steps.csv keeps the finished runs)" if args.command == "compare" else ""
        print(f"\ntinycurv {args.command}: interrupted{kept}", file=sys.stderr)
        return 130
    return status


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush cannot fail again.

    (What the Python documentation recommends for SIGPIPE; a stdout without a file descriptor,
    as under pytest's capture, is left alone.)
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
