"""``python -m tinycurv.reproduce [NAME] [--quick] [--list] …``: the ``reproduce`` command alone.

A declared host-side entry point (argument parsing, printing), as ``tinycurv reproduce``.
"""

import sys

from tinycurv.reproduce import run_cli

sys.exit(run_cli(sys.argv[1:]))
