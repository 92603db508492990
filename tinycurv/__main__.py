"""``python -m tinycurv``: the command line of ``tinycurv.cli``."""

import sys

from tinycurv.cli import main

sys.exit(main())
