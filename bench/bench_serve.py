"""Benchmark: ``smimecli serve`` against spawning ``smimecli encrypt --rules`` per message.

Both sides encrypt the same 4 KB message to one RSA-2048 certificate, 8 at a time: 8
parallel SMTP connections through the daemon (relaying to an in-process SMTP sink), and 8
parallel ``smimecli encrypt --rules`` processes (what a pipe(8) filter runs per message).
Then one 100 MB message goes through the daemon and its peak resident memory is read from
/proc (VmHWM). Run by hand; it reports and exits 0::

    python -m bench.bench_serve                    # 800 messages through serve, 80 piped
    python -m bench.bench_serve --quick
    python -m bench.bench_serve --pool thread,process   # compare the worker pools
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import make_identity, make_message, smimecli_command

ROOT = Path(__file__).resolve().parent.parent
RECIPIENT = "bench@example.com"
PARALLEL = 8

_LAUNCH = (
    "import sys; from pathlib import Path; "
    "from smimecli.serve.daemon import Daemon, Settings; "
    "sys.exit(Daemon(Settings(rules=Path(sys.argv[1]), store_dir=None, "
    "listen=('127.0.0.1', int(sys.argv[2])), relay=('127.0.0.1', int(sys.argv[3])), "
    "workers=2, worker_kind=sys.argv[4], max_size=None, spool_dir=sys.argv[5])).run())"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Sink:
    """Counts what the relay receives and forgets it."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += 1
        return "250 2.0.0 Ok"


def _start_serve(rules: Path, relay_port: int, pool: str, spool: Path) -> tuple[Any, int]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [str(rules), str(port), str(relay_port), pool, str(spool)]
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, *args], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("smimecli serve did not start")


def _through_serve(port: int, message: bytes, count: int) -> tuple[float, list[float]]:
    per_connection = count // PARALLEL

    def connection(_: int) -> list[float]:
        latencies = []
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            for _ in range(per_connection):
                started = time.perf_counter()
                smtp.sendmail("sender@example.org", [RECIPIENT], message)
                latencies.append(time.perf_counter() - started)
        return latencies

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        latencies = [x for found in pool.map(connection, range(PARALLEL)) for x in found]
    return time.perf_counter() - started, latencies


def _through_pipe(rules: Path, source: Path, out: Path, count: int) -> tuple[float, list[float]]:
    command = [*smimecli_command(), "encrypt", "--rules", str(rules), "--recipient", RECIPIENT]

    def one(index: int) -> float:
        started = time.perf_counter()
        with source.open("rb") as src, (out / f"{index}.eml").open("wb") as dst:
            subprocess.run(command, stdin=src, stdout=dst, stderr=subprocess.DEVNULL, check=True)
        return time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        latencies = list(pool.map(one, range(count)))
    return time.perf_counter() - started, latencies


def _percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pool", default="thread", help="thread, process or both (comma)")
    parser.add_argument("--large-mb", type=int, default=100)
    options = parser.parse_args()
    serve_count, pipe_count = (160, 24) if options.quick else (800, 80)
    from aiosmtpd.controller import Controller

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as name:
        folder = Path(name)
        cert, _ = make_identity(folder, "bench")
        rules = folder / "rules.toml"
        rules.write_text(
            f'[[rule]]\nname = "bench"\nrecipients = ["{RECIPIENT}"]\n'
            f'source = {{ kind = "cer", path = "{cert}" }}\n'
        )
        source = make_message(folder / "in.eml", 4096)
        message = source.read_bytes().replace(b"\n", b"\r\n")
        (folder / "out").mkdir()
        (folder / "spool").mkdir()
        sink = _Sink()
        relay_port = _free_port()
        controller = Controller(sink, hostname="127.0.0.1", port=relay_port, data_size_limit=None)
        controller.start()
        try:
            pipe_seconds, pipe_lat = _through_pipe(rules, source, folder / "out", pipe_count)
            pipe_rate = pipe_count / pipe_seconds
            print(
                f"pipe  ({pipe_count} x smimecli encrypt --rules, {PARALLEL} parallel): "
                f"{pipe_rate:.1f} msg/s, {_percentiles(pipe_lat)}"
            )
            for pool in options.pool.split(","):
                proc, port = _start_serve(rules, relay_port, pool, folder / "spool")
                try:
                    _through_serve(port, message, PARALLEL * 2)  # warm up
                    seconds, latencies = _through_serve(port, message, serve_count)
                    rate = serve_count / seconds
                    print(
                        f"serve ({pool} workers, {serve_count} messages over {PARALLEL} "
                        f"connections): {rate:.1f} msg/s, {_percentiles(latencies)}, "
                        f"{rate / pipe_rate:.1f}x the pipe"
                    )
                    if options.large_mb:
                        big = make_message(folder / "big.eml", options.large_mb << 20)
                        data = big.read_bytes().replace(b"\n", b"\r\n")
                        big.unlink()
                        started = time.perf_counter()
                        with smtplib.SMTP("127.0.0.1", port, timeout=600) as smtp:
                            smtp.sendmail("sender@example.org", [RECIPIENT], data)
                        del data
                        print(
                            f"serve ({pool}): one {options.large_mb} MB message in "
                            f"{time.perf_counter() - started:.1f} s, peak RSS "
                            f"{_peak_rss_kib(proc.pid) / 1024:.0f} MiB"
                        )
                finally:
                    proc.terminate()
                    proc.wait(60)
        finally:
            controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
