"""Run every benchmark in turn and print their reports (SPEC section 5).

    python -m bench.run_all           # full runs (several minutes, 1 GB)
    python -m bench.run_all --quick   # short runs of each

Each benchmark runs as its own process so that one failing does not stop the others;
the exit status is always 0 (the benchmarks report, they are not tests).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCHMARKS = ("bench_startup", "bench_batch", "bench_large", "bench_sign", "bench_store")


def main() -> int:
    """Run the benchmark modules, with --quick when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    for name in BENCHMARKS:
        command = [sys.executable, "-m", f"bench.{name}"]
        if args.quick:
            if name == "bench_store":
                command += ["--count", "10000", "--runs", "5"]
            else:
                command.append("--quick")
        print(f"\n#### {' '.join(command[1:])}", flush=True)
        result = subprocess.run(command, cwd=here.parent, check=False)
        if result.returncode:
            print(f"  ! {name} exited {result.returncode}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
