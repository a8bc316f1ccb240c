"""Benchmark: start-up time against a hello-world Typer program on the same Python
(SPEC section 5: ``smimecli --version`` within 1.3x, one 4 KB encrypt within 2x).

Run by hand; it reports and exits 0::

    python -m bench.bench_startup            # 15 interleaved rounds
    python -m bench.bench_startup --quick    # 5 rounds

To see where start-up time goes::

    python -X importtime -m smimecli --version 2>&1 | sort -t'|' -k2 -n | tail
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.common import interleave, machine, make_identity, make_message, report, run
from bench.common import smimecli_command as smime_cmd

HELLO = '''\
import typer

app = typer.Typer()


@app.command()
def main(name: str = "world") -> None:
    """Say hello."""
    print(f"hello {name}")


if __name__ == "__main__":
    app()
'''


def main() -> int:
    """Write the hello-world program and a 4 KB message, run interleaved, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rounds = 5 if args.quick else args.rounds
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="smimecli-bench-") as name:
        folder = Path(name)
        hello = folder / "hello.py"
        hello.write_text(HELLO)
        cert, _ = make_identity(folder)
        message = make_message(folder / "m.eml", 4096)
        out = folder / "out.eml"
        smime = smime_cmd()
        contenders = {
            "hello-world typer": lambda: run([sys.executable, str(hello), "--name", "x"]),
            "smimecli --version": lambda: run([*smime, "--version"]),
            "smimecli --help": lambda: run([*smime, "--help"]),
            "smimecli encrypt 4 KB": lambda: run(
                [*smime, "encrypt", "--cert", str(cert), str(message), "-o", str(out)]
            ),
        }
        series = interleave(contenders, rounds)
        report(
            f"start-up, {rounds} interleaved rounds",
            series,
            baseline="hello-world typer",
            targets={"smimecli --version": (1.3, None), "smimecli encrypt 4 KB": (2.0, None)},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
