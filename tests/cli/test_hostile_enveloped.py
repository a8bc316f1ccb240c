"""Hostile EnvelopedData/AuthEnvelopedData made from OpenSSL's output: truncated GCM tags,
ten thousand recipients. One clean line, bounded output and time."""

from __future__ import annotations

import base64
import binascii
import subprocess
import time
from pathlib import Path

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization

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


def test_quoted_printable_signature_around_the_envelope(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """multipart/signed around the envelope, its signature part re-encoded as
    quoted-printable by a relay: the signature is still read (and holds)."""
    from tests.cli.test_hostile_signed import _attributes, _signer_info

    envelope = _mail(tmp_path, _encrypt(pki, tmp_path, "aes-128-cbc")).read_bytes()
    head, body = envelope.split(b"\n\n", 1)
    entity = b"\r\n".join(head.split(b"\n")[-3:]) + b"\r\n\r\n" + body.replace(b"\n", b"\r\n")
    info = _signer_info(pki.alice, _attributes(content=entity))
    cert = asn1_x509.Certificate.load(pki.alice.cert.public_bytes(serialization.Encoding.DER))
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "data"},
            "certificates": [cert],
            "signer_infos": [info],
        }
    )
    der = cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    path = tmp_path / "signed-envelope.eml"
    path.write_bytes(
        b"From: alice@example.com\r\nTo: alice@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'micalg=sha-256; boundary="BB"\r\n\r\n--BB\r\n' + entity + b"\r\n--BB\r\n"
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + binascii.b2a_qp(der, istext=False)
        + b"\r\n--BB--\r\n"
    )
    done = cli(["decrypt", path, "--key", pki.alice.key_pem, "--require-signature"])
    # The signature holds; its root is not in the store, so nothing is written (77).
    assert_error(done, 77, "(signed by CN=Alice, E=alice@example.com) is valid but the signer")
    assert done.stdout == b""
