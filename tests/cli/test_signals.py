"""Interruption and full-disk safety (SPEC sections 2 and 6): ``smimecli encrypt`` killed
with SIGTERM or SIGINT while it reads a slow producer exits 75 (cli/app.py maps both to
EX_TEMPFAIL: the caller should retry) and leaves neither the output nor its temporary file;
a full file system gives 74 and no partial file."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import ROOT, Pki

# SIGTERM and SIGINT -> 75 with "smimecli: error: interrupted; ..." (cli/app.py installs
# one handler for both, so Typer never turns Ctrl-C into 130). Nothing may be left behind.
STATUS: dict[int, tuple[int, ...]] = {signal.SIGTERM: (75,), signal.SIGINT: (75,)}

HEAD = b"From: a@example.com\nTo: alice@example.com\nSubject: slow\n\n"
LINE = b"x" * 1023 + b"\n"


def _smimecli(*args: object, stdin: int | None = None, store: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SMIMECLI_STORE=str(store), PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "smimecli", *map(str, args)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )


def _wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for smimecli to start writing")


def _feed_until_temp(proc: subprocess.Popen[bytes], pipe: IO[bytes] | None, out: Path) -> None:
    """Write the message slowly until smimecli has its temporary output file open."""
    assert pipe is not None
    pipe.write(HEAD)
    deadline = time.monotonic() + 30
    while not list(out.glob(".*.tmp")):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no temporary output file appeared"
        pipe.write(LINE * 64)
        pipe.flush()
        time.sleep(0.02)
    for _ in range(20):  # a little more: it is mid-message now
        pipe.write(LINE * 64)
        pipe.flush()


def _finish(proc: subprocess.Popen[bytes], sig: int, pipe: IO[bytes] | None) -> tuple[int, str]:
    """Send ``sig``, and keep producing slowly until smimecli exits.

    A signal interrupts a blocked read at once (test_signal_while_the_producer_stalls); one
    that lands in the microseconds between two raw reads of a buffered read(1 MiB) is acted
    on when that read returns, so these tests keep producing, as a real producer does.
    """
    assert pipe is not None
    proc.send_signal(sig)
    deadline = time.monotonic() + 30
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("smimecli did not stop after the signal")
        with contextlib.suppress(BrokenPipeError, OSError):
            pipe.write(LINE * 64)
            pipe.flush()
        time.sleep(0.05)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode()


def _assert_interrupted(sig: int, status: int, err: str) -> None:
    assert status in STATUS[sig], err
    assert "Traceback" not in err
    if status == 75:
        assert err.strip().splitlines() == [
            "smimecli: error: interrupted; no partial output was left, retry later"
        ], err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_during_stdin_to_output(pki: Pki, tmp_path: Path, sig: int) -> None:
    """-o OUTPUT: a signal mid-way leaves no output and no temporary file; status 75."""
    out = tmp_path / "out"
    out.mkdir()
    proc = _smimecli(
        "encrypt",
        "--cert",
        pki.alice.cert_pem,
        "-o",
        out / "msg.eml",
        stdin=subprocess.PIPE,
        store=tmp_path / "store",
    )
    assert proc.stdin is not None
    _feed_until_temp(proc, proc.stdin, out)
    status, err = _finish(proc, sig, proc.stdin)
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    _assert_interrupted(sig, status, err)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("more", [0, 100], ids=["1MiB", "7MiB"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_while_the_producer_stalls(pki: Pki, tmp_path: Path, sig: int, more: int) -> None:
    """Standard input stops arriving but stays open: the signal interrupts the blocked read
    and ends smimecli at once, with status 75 and nothing left behind. Past 4 MiB too,
    where big messages get helper threads: standard input is still read in the main thread."""
    out = tmp_path / "out"
    out.mkdir()
    proc = _smimecli(
        "encrypt",
        "--cert",
        pki.alice.cert_pem,
        "-o",
        out / "msg.eml",
        stdin=subprocess.PIPE,
        store=tmp_path / "store",
    )
    assert proc.stdin is not None
    _feed_until_temp(proc, proc.stdin, out)
    for _ in range(more):  # 64 KiB each
        proc.stdin.write(LINE * 64)
    proc.stdin.flush()
    time.sleep(1.0)  # smimecli has read everything and now waits for more
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)  # standard input stays open (communicate() would close it)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("smimecli did not act on the signal while its input stalled") from None
    _, err = proc.communicate()
    _assert_interrupted(sig, proc.returncode, err.decode())
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_during_batch_to_out_dir(pki: Pki, tmp_path: Path, sig: int) -> None:
    """--out-dir: the input is a FIFO fed slowly; a signal mid-way leaves the folder empty."""
    out = tmp_path / "out"
    out.mkdir()
    fifo = tmp_path / "slow.eml"
    os.mkfifo(fifo)
    proc = _smimecli(
        "encrypt", fifo, "--cert", pki.alice.cert_pem, "--out-dir", out, store=tmp_path / "store"
    )
    with open(fifo, "wb") as pipe:  # blocks until smimecli opens the FIFO
        _feed_until_temp(proc, pipe, out)
        status, err = _finish(proc, sig, pipe)
        with contextlib.suppress(BrokenPipeError):
            pipe.close()
    _assert_interrupted(sig, status, err)
    assert list(out.iterdir()) == []


@contextlib.contextmanager
def _small_tmpfs(folder: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk is simulated with a 1 MiB tmpfs: needs root and mount")
    folder.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_full_disk_gives_74_and_no_partial_file(pki: Pki, tmp_path: Path) -> None:
    """A 2 MiB message into a 1 MiB file system: 74, one error line, nothing left."""
    message = tmp_path / "big.eml"
    message.write_bytes(HEAD + LINE * 2048)
    with _small_tmpfs(tmp_path / "small") as small:
        proc = _smimecli(
            "encrypt",
            message,
            "--cert",
            pki.alice.cert_pem,
            "-o",
            small / "big.eml",
            store=tmp_path / "store",
        )
        _, err = proc.communicate(timeout=60)
        leftover = sorted(p.name for p in small.iterdir())
    text = err.decode()
    assert proc.returncode == 74, text
    assert len(text.splitlines()) == 1 and "Traceback" not in text, text
    assert leftover == []
