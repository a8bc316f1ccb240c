"""A longer fuzzing run of tests/fuzz for maintainers (not part of CI).

The CI suite runs a fixed, derandomized 150-300 examples per parser in well under a minute.
This runs the same properties with fresh random examples, N per test, a relaxed
per-example deadline, and Hypothesis' example database (so a failure found here is replayed
first by the next run, including in CI on this machine).

    python tools/fuzz_long.py --examples 5000            # all parsers
    python tools/fuzz_long.py --examples 20000 -k cms    # only the CMS reader
    python tools/fuzz_long.py --examples 2000 --deadline-ms 0   # no deadline

Exit status: pytest's (0 when no property failed). Each test prints its example count and
how the examples ended (clean result or which SmimeError).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Run tests/fuzz with more examples; returns pytest's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="examples per fuzz test")
    parser.add_argument(
        "--deadline-ms", type=int, default=2000, help="per-example deadline in ms (0: none)"
    )
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression")
    args = parser.parse_args(argv)
    env = dict(
        os.environ,
        SMIMECLI_FUZZ_EXAMPLES=str(args.examples),
        SMIMECLI_FUZZ_DEADLINE_MS=str(args.deadline_ms),
    )
    command = [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-s", "-p", "no:randomly"]
    if args.select:
        command += ["-k", args.select]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
