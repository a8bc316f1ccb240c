"""``smimecli sign`` killed with SIGTERM while it spools a big message from a slow
producer: exit 75, and neither the output, its temporary file nor the spool is left. The
spool is a 0600 file without a name in $TMPDIR (it has none to leave behind)."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.test_signals import LINE, _assert_interrupted, _feed_until_temp, _finish
from tests.conftest import ROOT, Pki
from tests.pki import PASSWORD


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
