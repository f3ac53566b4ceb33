"""`python -m sdmorph` runs the CLI."""

import os
import sys

try:
    from sdmorph.cli.app import main
except KeyboardInterrupt:  # Ctrl-C while the CLI is still importing: nothing started yet
    print("interrupted before anything started", file=sys.stderr)
    sys.stderr.flush()
    os._exit(130)  # not sys.exit: see cli.exit_after_ctrl_c

main()
