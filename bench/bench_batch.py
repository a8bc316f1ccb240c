"""Benchmark: 1,000 messages of 4 KB in one ``smimecli encrypt --out-dir`` call against a
shell loop running ``openssl cms -encrypt`` once per message (SPEC section 5: at least 5x
faster). Run by hand; it reports and exits 0::

    python -m bench.bench_batch              # 1,000 messages, 5 rounds
    python -m bench.bench_batch --quick      # 200 messages, 2 rounds
    python -m bench.bench_batch --jobs default,1,2,4 --tmp /dev/shm

smimecli runs once per ``--jobs`` value given (``default``: no ``--jobs``, one worker per
CPU); every round runs each contender once
(interleaved) into an emptied output folder. ``--tmp`` picks the file system: a slow disk
makes creating and syncing 1,000 files dominate both sides.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    Run,
    interleave,
    machine,
    make_identity,
    make_message,
    openssl,
    report,
    run,
)
from bench.common import smimecli_command as smime_cmd


def main() -> int:
    """Build the spool folder, run the contenders interleaved, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 messages, 2 rounds")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096, help="bytes per message")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--jobs",
        default="default,1",
        help="smimecli --jobs values to time; 'default' runs without --jobs",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the files")
    args = parser.parse_args()
    count = 200 if args.quick else args.count
    rounds = 2 if args.quick else args.rounds
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="smimecli-bench-", dir=args.tmp) as name:
        folder = Path(name)
        cert, _ = make_identity(folder)
        spool = folder / "spool"
        spool.mkdir()
        for index in range(count):
            make_message(spool / f"msg{index:05d}.eml", args.size)
        out = folder / "out"

        def clean() -> None:
            # Empty output folder, and nothing left for the disk to write: smimecli syncs
            # the file system at the end of a batch (syncfs), which would otherwise also
            # wait for the previous contender's files and their removal.
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            os.sync()

        contenders: dict[str, Callable[[], Run]] = {}
        for jobs in (j.strip() for j in args.jobs.split(",") if j.strip()):
            command = [
                *smime_cmd(),
                "--quiet",
                "encrypt",
                "--cert",
                str(cert),
                "--out-dir",
                str(out),
                str(spool),
            ]
            label = "smimecli (default --jobs)"
            if jobs != "default":
                command[-1:-1] = ["--jobs", jobs]
                label = f"smimecli --jobs {jobs}"
            contenders[label] = functools.partial(run, command)
        tool = openssl()
        baseline = next(iter(contenders))
        targets: dict[str, tuple[float, float | None]] = {}
        if tool:
            loop = (
                f"for f in {shlex.quote(str(spool))}/*.eml; do "
                f'{shlex.quote(tool)} cms -encrypt -aes256 -in "$f" '
                f'-out {shlex.quote(str(out))}/"${{f##*/}}" {shlex.quote(str(cert))} '
                "|| exit 1; done"
            )
            contenders["shell loop of openssl"] = lambda: run([loop], shell=True)
            baseline = "shell loop of openssl"
            if count == 1000:  # SPEC 5 speaks of 1,000 messages; fewer amortise start-up less
                targets = {name: (0.2, None) for name in contenders if name.startswith("smimecli")}
        series = interleave(contenders, rounds, before=clean)
        report(
            f"{count} messages of {args.size} bytes, {rounds} interleaved rounds",
            series,
            baseline=baseline,
            targets=targets,
        )
        if tool:
            base = series[baseline].median
            for name, item in series.items():
                if name != baseline:
                    print(
                        f"  {name}: {base / item.median:.1f}x faster than the shell loop "
                        f"({item.median / count * 1000:.2f} ms per message)"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
