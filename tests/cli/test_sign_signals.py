"""``smimecli sign`` killed with SIGTERM while it spools a big message from a slow
producer: exit 75, and neither the output, its temporary file nor the spool is left. The
spool is a 0600 file without a name in $TMPDIR (it has none to leave behind). A full
$TMPDIR is an I/O error (74) that names it."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.test_signals import LINE, _assert_interrupted, _feed_until_temp, _finish
from tests.conftest import ROOT, Pki, Result
from tests.pki import PASSWORD

Cli = Callable[..., Result]


def _spool_fds(pid: int, folder: Path) -> list[os.stat_result]:
    """The files in ``folder`` the process holds open (unnamed ones show as deleted)."""
    found = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith(str(folder)):
                    found.append(os.stat(f"/proc/{pid}/fd/{fd}"))
    return found


def test_sigterm_while_spooling_leaves_nothing(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spool = tmp_path / "spool"
    out.mkdir()
    spool.mkdir()
    env = dict(
        os.environ,
        SMIMECLI_STORE=str(tmp_path / "store"),
        PYTHONPATH=str(ROOT),
        TMPDIR=str(spool),
        SIGN_PASSWORD=PASSWORD.decode(),
    )
    signer = ["--signer-pfx", str(pki.alice.pfx), "--password-env", "SIGN_PASSWORD"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "smimecli", "sign", *signer, "-o", str(out / "signed.eml")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdin is not None
    _feed_until_temp(proc, proc.stdin, out)
    deadline = time.monotonic() + 30
    while not (files := _spool_fds(proc.pid, spool)):  # past 2 MiB: on disk now
        assert proc.poll() is None and time.monotonic() < deadline
        proc.stdin.write(LINE * 64)
        proc.stdin.flush()
    assert [stat.S_IMODE(f.st_mode) for f in files] == [0o600]
    assert [f.st_nlink for f in files] == [0]
    assert os.listdir(spool) == []
    status, err = _finish(proc, signal.SIGTERM, proc.stdin)
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    _assert_interrupted(signal.SIGTERM, status, err)
    assert list(out.iterdir()) == []
    assert os.listdir(spool) == []


class _FullSpool:
    """A spool file on a full file system (ENOSPC cannot be made for real here)."""

    def __init__(self, *args: object) -> None:
        self.closed = False

    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self.closed = True


def test_full_spool_is_74_and_names_the_folder(
    cli: Cli, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full $TMPDIR while signing: exit 74, one line naming the spool's folder and what
    to do, no output file."""
    import tempfile

    import smimecli.sign.message as sign_module

    monkeypatch.setattr(sign_module, "spool", _FullSpool)
    out = tmp_path / "signed.eml"
    (tmp_path / "msg.eml").write_bytes(b"From: a@example.com\nSubject: s\n\nbody\n")
    for command in (
        ["sign", "--signer-pfx", str(pki.alice.pfx)],
        ["encrypt", "--cert", str(pki.bob.cert_pem), "--sign-with-pfx", str(pki.alice.pfx)],
    ):
        done = cli(
            [*command, "--password-env", "PW", str(tmp_path / "msg.eml"), "-o", str(out)],
            env={"PW": PASSWORD.decode()},
        )
        assert done.exit_code == 74, done.stderr
        assert done.stderr.strip().splitlines() == [
            "smimecli: error: I/O error writing the signing spool in "
            f"{tempfile.gettempdir()}: No space left on device; free space there or set "
            "TMPDIR to another folder"
        ]
        assert not out.exists()
