"""`python -m sdmorph` runs the CLI."""

import sys

try:
    from sdmorph.cli import main
except KeyboardInterrupt:  # Ctrl-C while the CLI is still importing: nothing started yet
    print("interrupted before anything started", file=sys.stderr)
    sys.exit(130)

main()
