"""``tinycurv reproduce``: the papers' figures and tables, scaled to a CPU, each claim checked.

A declared host-side package (NumPy data, the clock, CSV files, matplotlib figures)::

    tinycurv reproduce --list                     # every entry: paper, figure, claim
    tinycurv reproduce isaac-fig1 --quick         # a few seconds; --out DIR (runs/reproduce)
    tinycurv reproduce all                        # every entry in its full setting

Each entry (``tinycurv.reproduce.common.Entry``) names the paper, the figure or table, the
paper's setting, the scaled-down setting run here and why, and the paper's claim in one
sentence. A run prints that, then the check of the claim as ``PASS`` or ``FAIL`` with the
numbers (a FAIL is a finding, and the exit status stays 0), and writes ``<out>/<name>.csv`` and
``<out>/<name>.png``. Entries: ``isaac`` (Petersen et al.), ``grouped_newton`` (Wolinski),
``sfn`` (Oldewage et al.). Full-setting results: REPRODUCTIONS.md.

The command line: ``register(subparsers)`` adds the ``reproduce`` sub-command to an argparse
parser, ``main(args)`` runs it and returns the exit status (2 for a bad request);
``python -m tinycurv.reproduce ARGS`` is the same command on its own.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tinycurv.reproduce.common import Context, Entry, ReproduceError, run_entry

__all__ = ["ENTRIES", "entries", "main", "register", "run_cli"]


def entries() -> dict[str, Entry]:
    """Every entry by name, in the order of ``--list``."""
    from tinycurv.reproduce import grouped_newton, isaac, sfn

    out: dict[str, Entry] = {}
    for module in (isaac, grouped_newton, sfn):
        for entry in module.ENTRIES:
            out[entry.name] = entry
    return out


def __getattr__(name: str):  # ENTRIES, built on first use (the modules import the engine)
    if name == "ENTRIES":
        return entries()
    raise AttributeError(name)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``reproduce`` to the sub-commands of an argparse parser; returns its parser."""
    p = subparsers.add_parser(
        "reproduce",
        help="reproduce the papers' figures and tables (scaled down); claims PASS/FAIL",
        description="Reproduce a paper's figure or table at CPU scale and check its claim.",
    )
    p.add_argument(
        "name", nargs="?", default=None, help="the entry (see --list), or 'all' for every entry"
    )
    p.add_argument("--list", action="store_true", help="list the entries and exit")
    p.add_argument("--quick", action="store_true", help="the few-seconds setting of each entry")
    p.add_argument(
        "--out", default="runs/reproduce", help="folder of the CSVs and PNGs (runs/reproduce)"
    )
    p.add_argument("--data", default=None, help="MNIST folder (default $TINYCURV_DATA)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads (default 1: single-threaded, repeatable timings; 0: the library's "
        "default)",
    )
    return p


def format_list(table: dict[str, Entry]) -> str:
    """The ``--list`` text: one line per entry, then the claim."""
    width = max(len(n) for n in table)
    lines = []
    for entry in table.values():
        lines.append(f"{entry.name:{width}s}  {entry.paper}, {entry.figure}")
        lines.append(f"{'':{width}s}  claim: {entry.claim}")
    return "\n".join(lines)


def _blas_threads(threads: int):
    """Limit the BLAS thread pools to ``threads`` inside the block (0: leave them alone).

    Single-threaded by default: on a shared machine an oversubscribed OpenBLAS is many times
    slower (a 785×785 Cholesky took 0.66 s with its default threads on a loaded 2-core machine,
    against 0.01 s with one), and one thread gives repeatable time ratios.
    """
    import contextlib

    if threads <= 0:
        return contextlib.nullcontext()
    try:
        import scipy.linalg  # noqa: F401  (SciPy's own BLAS: loaded before the limit is set)
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it the pools are left alone
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def main(args: argparse.Namespace) -> int:
    """Run ``tinycurv reproduce`` with parsed ``args``; the exit status (0, or 2 when refused)."""
    table = entries()
    if args.list:
        print(format_list(table))
        return 0
    if args.name is None:
        print(
            "tinycurv reproduce: error: name an entry (tinycurv reproduce --list) or 'all'",
            file=sys.stderr,
        )
        return 2
    names = list(table) if args.name == "all" else [n.strip() for n in args.name.split(",")]
    unknown = [n for n in names if n not in table]
    if unknown:
        print(
            f"tinycurv reproduce: error: unknown entry {', '.join(map(repr, unknown))}: see "
            "tinycurv reproduce --list",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"tinycurv reproduce: error: cannot write to {out}: {err}", file=sys.stderr)
        return 2
    ctx = Context(quick=args.quick, out=out, progress=not args.quiet, data=args.data)
    start, verdicts = time.perf_counter(), {}
    with _blas_threads(getattr(args, "threads", 1)):
        for name in names:
            try:
                result = run_entry(table[name], ctx)
            except ReproduceError as err:
                print(f"tinycurv reproduce {name}: error: {err}", file=sys.stderr)
                return 2
            verdicts[name] = all(c.passed for c in result.checks)
    if len(names) > 1:
        passed = sum(verdicts.values())
        print(
            f"{passed}/{len(names)} entries PASS, {len(names) - passed} FAIL "
            f"({time.perf_counter() - start:.0f} s); FAIL is a finding (see REPRODUCTIONS.md)"
        )
    return 0


def run_cli(argv: list[str] | None = None) -> int:
    """``tinycurv reproduce ARGV…`` on its own (``python -m tinycurv.reproduce``)."""
    parser = argparse.ArgumentParser(prog="tinycurv")
    register(parser.add_subparsers(dest="command"))
    return main(parser.parse_args(["reproduce", *(argv or [])]))
