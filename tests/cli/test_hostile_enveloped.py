"""Hostile EnvelopedData/AuthEnvelopedData made from OpenSSL's output: truncated GCM tags,
ten thousand recipients. One clean line, bounded output and time."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import pytest
from asn1crypto import cms

from tests.conftest import Cli, Pki, assert_error, require_tool

PLAIN = b"From: a@example.com\nTo: alice@example.com\nSubject: x\n\nsecret\n"


def _encrypt(pki: Pki, tmp_path: Path, cipher: str) -> cms.ContentInfo:
    openssl = require_tool("openssl")
    src = tmp_path / "plain.eml"
    src.write_bytes(PLAIN)
    out = tmp_path / "enveloped.der"
    args: list[str | Path] = [openssl, "cms", "-encrypt", "-in", src, "-out", out]
    subprocess.run([*args, "-outform", "DER", f"-{cipher}", pki.alice.cert_pem], check=True)
    return cms.ContentInfo.load(out.read_bytes())


def _mail(tmp_path: Path, info: cms.ContentInfo) -> Path:
    path = tmp_path / "hostile.eml"
    path.write_bytes(
        b"From: a@example.com\nTo: alice@example.com\nSubject: t\nMIME-Version: 1.0\n"
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(info.dump())
    )
    return path


@pytest.mark.parametrize("size", [0, 4, 15])
def test_short_gcm_tag_is_refused(cli: Cli, pki: Pki, tmp_path: Path, size: int) -> None:
    info = _encrypt(pki, tmp_path, "aes-128-gcm")
    info["content"]["mac"] = info["content"]["mac"].native[:size]
    path = _mail(tmp_path, info)
    done = cli(["decrypt", path, "--key", pki.alice.key_pem])
    reason = "carries no authentication tag" if size == 0 else f"tag has {size} bytes"
    assert_error(done, 65, str(path), reason)
    assert done.stdout == b""


def test_ten_thousand_recipients_inspect_is_bounded(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    info = _encrypt(pki, tmp_path, "aes-128-cbc")
    first = info["content"]["recipient_infos"][0]
    info["content"]["recipient_infos"] = [first] * 10_000
    path = _mail(tmp_path, info)
    started = time.monotonic()
    done = cli(["inspect", path])
    assert done.exit_code == 0, done.output
    lines = done.stdout.decode().splitlines()
    assert "Recipients: 10000" in lines
    assert lines[-1] == "  ... and 9,900 more recipients (--json lists them all)"
    assert len(lines) < 400
    decrypted = cli(["decrypt", path, "--key", pki.alice.key_pem])
    assert decrypted.exit_code == 0, decrypted.output
    assert decrypted.stdout.endswith(b"secret\n")
    assert time.monotonic() - started < 60
