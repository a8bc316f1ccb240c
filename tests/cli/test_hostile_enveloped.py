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


@pytest.mark.parametrize("version", [-5, 2**31, 2**200])
def test_absurd_rc2_parameter_names_the_file(
    cli: Cli, pki: Pki, tmp_path: Path, version: int
) -> None:
    """RC2 (RFC 2268 section 6): a parameter version that is no effective key length."""
    info = _encrypt(pki, tmp_path, "aes-128-cbc")
    content = info["content"]["encrypted_content_info"]
    iv = content["content_encryption_algorithm"]["parameters"].native[:8]
    params = {"rc2_parameter_version": version, "iv": iv}
    content["content_encryption_algorithm"] = {"algorithm": "rc2", "parameters": params}
    path = _mail(tmp_path, cms.ContentInfo.load(info.dump(force=True)))
    done = cli(["decrypt", path, "--key", pki.alice.key_pem])
    assert_error(done, 65, f"{path}: RC2 parameter version {version} is not valid")
    shown = cli(["inspect", path])
    assert shown.exit_code == 0, shown.output
    assert b"1.2.840.113549.3.2, not supported" in shown.stdout
