"""`python -m sdmorph` runs the CLI."""

from sdmorph.cli import main

main()
