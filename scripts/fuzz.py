"""Run the loader fuzz properties (tests/test_fuzz.py) with many more examples than CI.

    .venv/bin/python scripts/fuzz.py --examples 10000

`--examples` is the total the properties share, in proportion to their CI counts; every run
draws new inputs (CI's run is derandomized). Prints how many examples ran, and how long it
took; exits non-zero if a property failed, with hypothesis' minimal failing input above.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_COUNTS = re.compile(r"- (\d+) passing, (\d+) failing, and (\d+) invalid")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000,
                        help="total examples over all properties (default 10000)")
    parser.add_argument("-k", dest="select", help="only the properties pytest -k selects")
    parser.add_argument("--seed", help="hypothesis seed, to repeat a run")
    args = parser.parse_args(argv)
    command = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_fuzz.py"), "-q",
               "-p", "no:cacheprovider", "--hypothesis-show-statistics"]
    if args.select:
        command += ["-k", args.select]
    if args.seed:
        command += [f"--hypothesis-seed={args.seed}"]
    env = {**os.environ, "SDMORPH_FUZZ_EXAMPLES": str(args.examples)}
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    sys.stdout.write(proc.stdout[-20_000:])
    sys.stderr.write(proc.stderr[-5_000:])
    runs = [tuple(map(int, m)) for m in _COUNTS.findall(proc.stdout)]
    passing = sum(r[0] for r in runs)
    failing = sum(r[1] for r in runs)
    print(f"\nfuzz: {passing} passing and {failing} failing examples "
          f"({passing + failing} inputs) in {seconds:.0f}s; pytest exit code {proc.returncode}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
