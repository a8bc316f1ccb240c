"""Benchmark: one big message, smimecli against ``openssl cms -encrypt`` (SPEC section 5).

Targets: 25 MB within 1.5x OpenSSL's wall time and at most 64 MiB peak; 1 GB at most
100 MiB peak; stretch: 250 MB no slower than ``openssl cms -encrypt -stream``, at most
32 MiB. Run by hand (it reports, it is not a test; exit status 0)::

    python -m bench.bench_large            # 25 MB x5, 250 MB x3, 1 GB x1
    python -m bench.bench_large --quick    # 25 MB x3 only
    python -m bench.bench_large --sizes 25,250 --rounds 5

Every contender reads the same LF-ended file and writes its own output file, AES-256-CBC
to the same RSA-2048 certificate; runs are interleaved (A B C A B C ...). OpenSSL without
``-stream`` reads the whole message into memory, so at 1 GB only ``-stream`` runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.common import (
    MIB,
    Run,
    interleave,
    machine,
    make_identity,
    make_message,
    openssl,
    report,
    run,
    smimecli_command,
)

MB = 1_000_000


def bench_size(folder: Path, cert: Path, size_mb: int, rounds: int) -> None:
    """Time one message size and print the report."""
    message = make_message(folder / f"m{size_mb}.eml", size_mb * MB)
    out = folder / "out.eml"
    smime = [*smimecli_command(), "encrypt", "--cert", str(cert), str(message), "-o", str(out)]
    contenders = {"smimecli encrypt": lambda: run(smime)}
    tool = openssl()
    targets: dict[str, tuple[float, float | None]] = {}
    if tool:
        base = [tool, "cms", "-encrypt", "-aes256", "-in", str(message), "-out", str(out)]
        if size_mb <= 300:
            contenders["openssl cms -encrypt"] = lambda: run([*base, str(cert)])
        contenders["openssl cms -encrypt -stream"] = lambda: run([*base, "-stream", str(cert)])
    if size_mb <= 50:
        targets["smimecli encrypt"] = (1.5, 64)
        baseline = "openssl cms -encrypt" if tool else "smimecli encrypt"
    elif size_mb <= 300:
        targets["smimecli encrypt"] = (1.0, 32)  # the stretch target
        baseline = "openssl cms -encrypt -stream" if tool else "smimecli encrypt"
    else:
        targets["smimecli encrypt"] = (float("inf"), 100)
        baseline = "openssl cms -encrypt -stream" if tool else "smimecli encrypt"
    # Every run starts with nothing left for the disk to write (os.sync): smimecli fsyncs
    # its output, and should not also wait for the previous contender's 33 MB.
    series = interleave(contenders, rounds, before=os.sync)
    report(
        f"{size_mb} MB message, {rounds} interleaved rounds",
        series,
        baseline=baseline,
        targets=targets,
    )
    runs: list[Run] = series["smimecli encrypt"].runs
    mbps = size_mb / min(r.seconds for r in runs)
    print(f"  smimecli best throughput {mbps:.0f} MB/s; output {out.stat().st_size / MIB:.0f} MiB")
    message.unlink()
    out.unlink(missing_ok=True)


def main() -> int:
    """Parse the options, build the inputs in a temporary folder, run, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="25 MB, 3 rounds")
    parser.add_argument("--sizes", default="25,250,1000", help="sizes in MB, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="rounds below 300 MB")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the inputs")
    args = parser.parse_args()
    sizes = [25] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="smimecli-bench-", dir=args.tmp) as name:
        folder = Path(name)
        cert, _ = make_identity(folder)
        for size in sizes:
            rounds = 3 if args.quick else (args.rounds if size < 300 else 1)
            if 100 <= size < 300 and not args.quick:
                rounds = min(rounds, 3)
            bench_size(folder, cert, size, rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
