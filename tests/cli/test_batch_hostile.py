"""Hostile batches: file names with a newline, an escape sequence, bytes that are not
UTF-8 (each failure is one printable line on stderr, and ``--json`` stays UTF-8 JSON whose
``input`` gives the name's bytes back, ``os.fsencode``); an output folder whose disk is
full (each message 74, no file, no temporary left); FIFOs and devices."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smimecli.files import atomic
from tests.conftest import ROOT, Pki

NAMES = [b"bad\xff\xfename.eml", b"new\nline.eml", b"esc\x1b[31mred.eml"]
GOOD = b"ok\xff.eml"


@pytest.mark.parametrize("locale", ["C.UTF-8", "C"])
def test_hostile_names_give_one_printable_line_each_and_utf8_json(
    pki: Pki, tmp_path: Path, locale: str
) -> None:
    spool, out = tmp_path / "in", tmp_path / "out"
    spool.mkdir()
    out.mkdir()
    for name in NAMES:
        Path(os.fsdecode(os.fsencode(spool) + b"/" + name)).write_bytes(b"not a message")
    message = b"From: a@example.com\nTo: alice@example.com\nSubject: s\n\nbody\n"
    Path(os.fsdecode(os.fsencode(spool) + b"/" + GOOD)).write_bytes(message)
    env = dict(os.environ, PYTHONPATH=str(ROOT), LC_ALL=locale, SMIMECLI_STORE=str(tmp_path))
    command = ["encrypt", "--cert", str(pki.alice.cert_pem), "--out-dir", str(out), "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "smimecli", *command, str(spool)],
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 65, proc.stderr
    records = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    names = {os.fsencode(r["input"]).rsplit(b"/", 1)[1]: r for r in records}
    assert sorted(names) == sorted([*NAMES, GOOD])
    assert names[GOOD]["status"] == 0
    assert all(names[n]["status"] == 65 for n in NAMES)
    errors = [line for line in proc.stderr.split(b"\n") if line.startswith(b"smimecli: error:")]
    assert len(errors) == len(NAMES)
    for line in errors:
        assert line.isascii() and all(32 <= c < 127 for c in line), line
        assert b"input is not an email message" in line
    assert [p.name for p in out.iterdir()] == [os.fsdecode(GOOD)]


class _FullRaw(io.FileIO):
    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def _full_open(fd: int, mode: str = "rb", buffering: int = -1, **kwargs: Any) -> Any:
    raw = _FullRaw(fd, "wb")
    return raw if buffering == 0 else io.BufferedWriter(raw)


def test_a_full_disk_under_out_dir_fails_each_message_with_74_and_leaves_nothing(
    cli: Any, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ENOSPC cannot be made for real without mounting a small file system: the output
    # files' writes fail as a full disk fails them.
    spool, out = tmp_path / "in", tmp_path / "out"
    spool.mkdir()
    out.mkdir()
    for number in range(3):
        (spool / f"m{number}.eml").write_bytes(
            b"From: a@example.com\nTo: alice@example.com\nSubject: s\n\nbody\n"
        )
    monkeypatch.setattr(atomic, "open", _full_open, raising=False)
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, "--out-dir", out, "--jobs", "1", spool])
    assert result.exit_code == 74, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("smimecli: error:")]
    assert len(errors) == 3, result.stderr
    assert all("No space left on device" in line for line in errors)
    assert list(out.iterdir()) == []


def test_devices_and_fifos_in_a_folder_are_skipped_and_a_named_dev_zero_is_bounded(
    cli: Any, pki: Pki, tmp_path: Path
) -> None:
    spool, out = tmp_path / "in", tmp_path / "out"
    spool.mkdir()
    out.mkdir()
    (spool / "a.eml").write_bytes(b"From: a@example.com\nTo: alice@example.com\n\nbody\n")
    (spool / "zero.eml").symlink_to("/dev/zero")
    os.mkfifo(spool / "fifo.eml")  # nobody writes it: taking it would hang the batch
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, "--out-dir", out, spool])
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in out.iterdir()] == ["a.eml"]
    named = tmp_path / "named.eml"
    named.symlink_to("/dev/zero")
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, "--out-dir", out, named])
    assert result.exit_code == 65, result.stderr
    assert "named.eml: message header line is longer than 1 MiB" in result.stderr
    assert [p.name for p in out.iterdir()] == ["a.eml"]
