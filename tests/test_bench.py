"""The benchmarks still run (at a tiny size): they are not timed tests, but a benchmark that
breaks when the library changes would go unnoticed until someone needs its numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("module", "args", "says"),
    [
        ("bench.bench_store", ["--count", "30", "--runs", "1"], "smimecli encrypt --rules:"),
        ("bench.bench_startup", ["--rounds", "1"], "smimecli --version"),
    ],
)
def test_benchmark_runs(module: str, args: list[str], says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert says in done.stdout
