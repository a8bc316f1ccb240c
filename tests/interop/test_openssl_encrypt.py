"""Real peer: what smimecli encrypts, ``openssl cms -decrypt`` opens, for every cipher, key
transport and recipient identifier, RSA and EC recipients."""

from __future__ import annotations

import functools
import io
import subprocess
from pathlib import Path
from typing import Any

import pytest

from smimecli.cms.algorithms import CIPHER_NAMES
from smimecli.cms.envelope import Recipient
from smimecli.encrypt.message import encrypt_message
from tests.conftest import require_tool

pytestmark = pytest.mark.interop

MESSAGE = (
    b"From: Alice <alice@example.com>\n"
    b"To: bob@example.com\n"
    b"Subject: interop\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=us-ascii\n"
    b"\n"
    b"line one\n"
    b"line two\r\n"
    b"\n"
)
INNER = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nline one\r\nline two\r\n\r\n"
TRANSPORTS = [
    ("rsa", "sha256"),
    ("rsa-oaep", "sha1"),
    ("rsa-oaep", "sha256"),
    ("rsa-oaep", "sha384"),
    ("rsa-oaep", "sha512"),
]


@functools.cache
def _legacy_provider(openssl: str) -> bool:
    proc = subprocess.run(
        [openssl, "list", "-cipher-algorithms", "-provider", "legacy"],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0 and b"RC2" in proc.stdout.upper()


def openssl_decrypt(tmp_path: Path, message: bytes, identity: Any, cipher: str) -> bytes:
    openssl = require_tool("openssl")
    args = [openssl, "cms", "-decrypt", "-binary"]
    if cipher.startswith("rc2"):
        if not _legacy_provider(openssl):
            pytest.skip("openssl's legacy provider (needed for RC2) is not installed")
        args += ["-provider", "legacy", "-provider", "default"]
    src = tmp_path / "in.eml"
    src.write_bytes(message)
    args += ["-in", str(src), "-inkey", str(identity.key_pem), "-recip", str(identity.cert_pem)]
    proc = subprocess.run(args, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def encrypt(recipients: list[Recipient], cipher: str) -> bytes:
    out = io.BytesIO()
    encrypt_message(MESSAGE, out, recipients, cipher=cipher)
    return out.getvalue()


@pytest.mark.parametrize("recipient_id", ["issuer-serial", "ski"])
@pytest.mark.parametrize(("transport", "oaep_hash"), TRANSPORTS)
@pytest.mark.parametrize("cipher", CIPHER_NAMES)
def test_rsa_matrix(
    tmp_path: Path, pki: Any, cipher: str, transport: str, oaep_hash: str, recipient_id: str
) -> None:
    recipient = Recipient(
        pki.alice.cert, key_transport=transport, oaep_hash=oaep_hash, recipient_id=recipient_id
    )
    message = encrypt([recipient], cipher)
    assert openssl_decrypt(tmp_path, message, pki.alice, cipher) == INNER


@pytest.mark.parametrize("recipient_id", ["issuer-serial", "ski"])
@pytest.mark.parametrize("who", ["carol_ec", "dave_p384"])
@pytest.mark.parametrize("cipher", CIPHER_NAMES)
def test_ec_matrix(tmp_path: Path, pki: Any, cipher: str, who: str, recipient_id: str) -> None:
    identity = getattr(pki, who)
    message = encrypt([Recipient(identity.cert, recipient_id=recipient_id)], cipher)
    assert openssl_decrypt(tmp_path, message, identity, cipher) == INNER


def test_two_recipients_each_decrypt(tmp_path: Path, pki: Any) -> None:
    message = encrypt(
        [
            Recipient(pki.alice.cert),
            Recipient(pki.bob.cert, key_transport="rsa-oaep"),
            Recipient(pki.carol_ec.cert),
        ],
        "aes256",
    )
    for identity in (pki.alice, pki.bob, pki.carol_ec):
        assert openssl_decrypt(tmp_path, message, identity, "aes256") == INNER


def test_big_message_streams_through_openssl(tmp_path: Path, pki: Any) -> None:
    body = b"".join(b"%08d some text of a line\n" % i for i in range(120_000))  # ~3.4 MB
    message = b"From: a@example.com\nContent-Type: text/plain\n\n" + body
    out = io.BytesIO()
    encrypt_message(message, out, [Recipient(pki.alice.cert)])
    plain = openssl_decrypt(tmp_path, out.getvalue(), pki.alice, "aes256")
    assert plain == b"Content-Type: text/plain\r\n\r\n" + body.replace(b"\n", b"\r\n")


def test_openssl_verifies_der(tmp_path: Path, pki: Any) -> None:
    """``openssl asn1parse -strictpem`` style check: the DER re-encodes to itself."""
    openssl = require_tool("openssl")
    message = encrypt([Recipient(pki.alice.cert)], "aes128")
    src = tmp_path / "m.eml"
    src.write_bytes(message)
    proc = subprocess.run(
        [openssl, "cms", "-cmsout", "-in", str(src), "-outform", "DER"],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    import base64

    ours = base64.b64decode(message.split(b"\n\n", 1)[1])
    assert proc.stdout == ours
