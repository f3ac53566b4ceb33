"""The `sdmorph` command line: parses, calls the stages, presents their reports."""
