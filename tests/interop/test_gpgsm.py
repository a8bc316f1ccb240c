"""Real peer: gpgsm (GnuPG's S/MIME tool) decrypts what smimecli encrypts."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smimecli.cms.envelope import Recipient
from smimecli.encrypt.message import encrypt_message
from tests.conftest import require_tool, stop_gnupg
from tests.pki import PASSWORD, import_into_gpgsm

pytestmark = pytest.mark.interop


def _gpgsm(home: Path, args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    gpgsm = require_tool("gpgsm")
    env = dict(os.environ, GNUPGHOME=str(home))
    return subprocess.run(
        [
            gpgsm,
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase-fd",
            "0",
            "--disable-crl-checks",
            "--disable-policy-checks",
            *args,
        ],
        input=data,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def gnupg_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    yield home
    stop_gnupg(home)


def test_gpgsm_decrypts_aes256_rsa(gnupg_home: Path, tmp_path: Path, pki: Any) -> None:

    imported = import_into_gpgsm(
        lambda args, data: _gpgsm(gnupg_home, args, data), pki.alice, pki.ca, PASSWORD, tmp_path
    )
    assert imported.returncode == 0, imported.stderr.decode()

    message = b"From: a@example.com\nSubject: gpgsm\nContent-Type: text/plain\n\nfor gpgsm\n"
    out = io.BytesIO()
    encrypt_message(message, out, [Recipient(pki.alice.cert)], cipher="aes256")
    # gpgsm reads the CMS object, not the MIME message around it: hand it the DER.
    body = out.getvalue().split(b"\n\n", 1)[1]
    (tmp_path / "m.der").write_bytes(base64.b64decode(body))
    done = _gpgsm(gnupg_home, ["--decrypt", str(tmp_path / "m.der")], PASSWORD + b"\n")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"Content-Type: text/plain\r\n\r\nfor gpgsm\r\n"


def _daemons(home: Path) -> list[str]:
    """The gpg-agent/dirmngr processes running for GNUPGHOME ``home``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        name = Path(argv[0].decode(errors="replace")).name
        if name in ("gpg-agent", "dirmngr", "keyboxd", "scdaemon") and (
            str(home).encode() in b" ".join(argv) or f"GNUPGHOME={home}".encode() in environ
        ):
            found.append(f"{proc.name} {name}")
    return found


def test_stop_gnupg_leaves_no_daemon(tmp_path: Path, pki: Any) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    # --import starts gpg-agent; the CRL check of an import starts dirmngr --daemon.
    subprocess.run(
        [require_tool("gpgsm"), "--batch", "--import", str(pki.alice.cert_pem)],
        env=dict(os.environ, GNUPGHOME=str(home)),
        capture_output=True,
        check=False,
        timeout=60,
    )
    subprocess.run(
        ["gpgconf", "--launch", "dirmngr"],
        env=dict(os.environ, GNUPGHOME=str(home)),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert _daemons(home), "gpgsm started no daemon: the test proves nothing"
    stop_gnupg(home)
    deadline = time.monotonic() + 10
    while _daemons(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _daemons(home) == []
