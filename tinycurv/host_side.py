"""The declared host-side modules: the only modules besides ``tinycurv.backend`` that import NumPy.

Every other module does its array math through ``tinycurv.backend.xp``, so that it runs on
NumPy and CuPy alike. Each module listed here works on host data by design, and its docstring
says so; ``"pkg.*"`` admits a whole package (its ``__init__`` docstring says so).
``tests/test_backend_guard.py`` enforces the list.
"""

HOST_SIDE_MODULES = (
    "tinycurv.backend",  # the backend itself: NumPy is one of the two array modules
    "tinycurv.data",  # loaders and mini-batches return host NumPy arrays
    "tinycurv.checkpoint",  # .npz files: everything is copied to the host first
    "tinycurv.plotting",  # matplotlib on host data
    "tinycurv.cli",  # argument parsing, printing, exit codes
    "tinycurv.compare",  # data, clock, CSV and plots around whole training runs
    "tinycurv.verify",  # seeded host problems for the numerical claims
    "tinycurv.random",  # the seed (SeedSequence) and the replay log of a SavableGenerator
    "tinycurv.nn.init",  # one host generator gives the same initial weights on every backend
    "tinycurv.curvature.grouped_step",  # GroupedNewton's S-sized cubic solve (SciPy, host)
    "tinycurv.optim.grouped_newton",  # the S-sized summary and curvature-batch indices on host
    "tinycurv.bench.*",  # benchmarks: the clock, device syncs, host data, tables
    "tinycurv.course.*",  # graders: seeded host cases, grading on the NumPy backend, CLI
    "tinycurv.reproduce.*",  # reproductions: host data, the clock, CSV files, figures
    "tinycurv.testing.*",  # the CPU stand-in for CuPy: NumPy underneath, by design
)
