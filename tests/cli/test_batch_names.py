"""Batch inputs with hostile file names: a newline, an escape sequence, bytes that are not
UTF-8. Each failure is one printable line on stderr, and ``--json`` stays UTF-8 JSON whose
``input`` gives the name's bytes back (``os.fsencode``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
