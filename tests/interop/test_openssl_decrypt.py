"""What `openssl cms -encrypt` writes, smimecli decrypts (real peer, no mocks)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from smimecli.cms.unwrap import KeyIdentity
from smimecli.decrypt.inspect import inspect_message
from smimecli.decrypt.message import decrypt_message
from tests.conftest import Pki, require_tool
from tests.pki import Identity

pytestmark = pytest.mark.interop

ENTITY = b"Content-Type: text/plain\r\n\r\nhello from openssl\r\n" + b"x" * 5000 + b"\r\n"


def _openssl_encrypt(tmp_path: Path, args: list[str], certs: list[Path]) -> bytes:
    openssl = require_tool("openssl")
    src = tmp_path / "in.txt"
    src.write_bytes(ENTITY)
    out = tmp_path / "out.der"
    proc = subprocess.run(
        [
            openssl,
            "cms",
            "-encrypt",
            "-binary",
            "-outform",
            "DER",
            "-in",
            str(src),
            "-out",
            str(out),
            *args,
            *[str(c) for c in certs],
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        if "unsupported" in proc.stderr or "legacy" in proc.stderr.lower():
            pytest.skip(f"this openssl cannot encrypt with {args}: {proc.stderr.strip()[:200]}")
        raise AssertionError(proc.stderr)
    return out.read_bytes()


def _decrypt(data: bytes, who: Identity, *, with_cert: bool = True) -> bytes:
    out = io.BytesIO()
    decrypt_message(io.BytesIO(data), out, KeyIdentity(who.key, who.cert if with_cert else None))
    return out.getvalue()


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["-aes128"], "aes128"),
        (["-aes192"], "aes192"),
        (["-aes256"], "aes256"),
        (["-des3"], "3des"),
        (["-aes256", "-stream"], "aes256"),
        (["-aes128", "-keyid"], "aes128"),
    ],
)
def test_rsa_ciphers(pki: Pki, tmp_path: Path, args: list[str], name: str) -> None:
    data = _openssl_encrypt(tmp_path, args, [pki.alice.cert_pem])
    assert _decrypt(data, pki.alice) == ENTITY
    assert _decrypt(data, pki.alice, with_cert=False) == ENTITY
    cipher = inspect_message(io.BytesIO(data)).cipher
    assert cipher is not None and cipher["name"] == name


@pytest.mark.parametrize(
    ("flag", "name"), [("-rc2-40", "rc2-40"), ("-rc2-64", "rc2-64"), ("-rc2-128", "rc2-128")]
)
def test_rc2_with_legacy_provider(pki: Pki, tmp_path: Path, flag: str, name: str) -> None:
    data = _openssl_encrypt(
        tmp_path, ["-provider", "legacy", "-provider", "default", flag], [pki.alice.cert_pem]
    )
    cipher = inspect_message(io.BytesIO(data)).cipher
    assert cipher is not None and cipher["name"] == name
    assert _decrypt(data, pki.alice) == ENTITY


@pytest.mark.parametrize("md", ["sha1", "sha256", "sha384", "sha512"])
def test_rsa_oaep(pki: Pki, tmp_path: Path, md: str) -> None:
    data = _openssl_encrypt(
        tmp_path,
        [
            "-aes256",
            "-recip",
            str(pki.bob.cert_pem),
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-keyopt",
            f"rsa_oaep_md:{md}",
        ],
        [],
    )
    rec = inspect_message(io.BytesIO(data)).recipients[0]
    assert rec["key_encryption"] == "rsaes-oaep" and rec["oaep_hash"] == md
    assert _decrypt(data, pki.bob) == ENTITY


@pytest.mark.parametrize(
    ("who", "cipher", "wrap"),
    [
        ("carol_ec", "-aes256", "aes256-wrap"),
        ("dave_p384", "-aes256", "aes256-wrap"),
        ("dave_p384", "-aes128", "aes128-wrap"),
        # OpenSSL wraps a 3DES content key with the RFC 3217 Triple-DES key wrap.
        ("carol_ec", "-des3", "des3-wrap"),
    ],
)
def test_ec_recipients(pki: Pki, tmp_path: Path, who: str, cipher: str, wrap: str) -> None:
    identity = getattr(pki, who)
    data = _openssl_encrypt(tmp_path, [cipher], [identity.cert_pem])
    recipient = inspect_message(io.BytesIO(data)).recipients[0]
    assert (recipient["kind"], recipient["key_wrap"]) == ("kari", wrap)
    assert _decrypt(data, identity) == ENTITY
    assert _decrypt(data, identity, with_cert=False) == ENTITY


@pytest.mark.parametrize(
    ("flag", "name"), [("-aes-128-gcm", "aes128-gcm"), ("-aes-256-gcm", "aes256-gcm")]
)
def test_aes_gcm_auth_enveloped(pki: Pki, tmp_path: Path, flag: str, name: str) -> None:
    data = _openssl_encrypt(tmp_path, [flag], [pki.alice.cert_pem])
    report = inspect_message(io.BytesIO(data))
    assert report.cipher is not None
    assert (report.content_type, report.cipher["name"]) == ("authEnveloped-data", name)
    assert _decrypt(data, pki.alice) == ENTITY
    # A flipped ciphertext byte fails the tag: no plaintext, the same error as a wrong key.
    from smimecli.errors import AuthError

    damaged = bytearray(data)
    damaged[-40] ^= 1
    with pytest.raises(AuthError, match="no private key for any recipient"):
        _decrypt(bytes(damaged), pki.alice)


def test_two_recipients_rsa_and_ec(pki: Pki, tmp_path: Path) -> None:
    data = _openssl_encrypt(
        tmp_path, ["-aes256", "-stream"], [pki.alice.cert_pem, pki.carol_ec.cert_pem]
    )
    kinds = [r["kind"] for r in inspect_message(io.BytesIO(data)).recipients]
    assert kinds == ["ktri", "kari"]
    assert _decrypt(data, pki.alice) == ENTITY
    assert _decrypt(data, pki.carol_ec) == ENTITY


def test_smime_message_with_headers(pki: Pki, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    src = tmp_path / "in.txt"
    src.write_bytes(ENTITY)
    proc = subprocess.run(
        [
            openssl,
            "cms",
            "-encrypt",
            "-in",
            str(src),
            "-aes256",
            "-from",
            "a@example.com",
            "-to",
            "alice@example.com",
            "-subject",
            "Hi",
            str(pki.alice.cert_pem),
        ],
        capture_output=True,
        check=True,
    )
    out = _decrypt(proc.stdout, pki.alice)
    assert out.startswith(b"To: alice@example.com\nFrom: a@example.com\nSubject: Hi\n")
    assert out.endswith(b"hello from openssl\n" + b"x" * 5000 + b"\n")
