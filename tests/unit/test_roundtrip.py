"""smimecli encrypts, smimecli decrypts: every cipher x every key transport, and a
Hypothesis round trip over random MIME messages (text, binary, 8-bit, LF and CRLF)."""

from __future__ import annotations

import email
import email.policy
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smimecli.cms.algorithms import CIPHERS
from smimecli.cms.envelope import Recipient
from smimecli.cms.unwrap import KeyIdentity
from smimecli.decrypt.message import decrypt_message
from smimecli.encrypt.message import encrypt_message

TRANSPORTS = [
    ("alice", {"key_transport": "rsa"}),
    ("alice", {"key_transport": "rsa-oaep", "oaep_hash": "sha256"}),
    ("alice", {"key_transport": "rsa-oaep", "oaep_hash": "sha512", "recipient_id": "ski"}),
    ("carol_ec", {}),
    ("dave_p384", {"recipient_id": "ski"}),
]

MESSAGE = (
    b"From: sender@example.org\nTo: someone@example.com\nSubject: round trip\n"
    b"Content-Type: text/plain; charset=utf-8\n\nline one\nline two\n"
)


@pytest.mark.parametrize("cipher", sorted(CIPHERS))
@pytest.mark.parametrize(("who", "options"), TRANSPORTS, ids=lambda v: str(v))
def test_every_cipher_and_transport(
    pki: Any, cipher: str, who: str, options: dict[str, Any]
) -> None:
    identity = getattr(pki, who)
    encrypted = io.BytesIO()
    encrypt_message(MESSAGE, encrypted, [Recipient(identity.cert, **options)], cipher=cipher)
    decrypted = io.BytesIO()
    result = decrypt_message(
        io.BytesIO(encrypted.getvalue()), decrypted, KeyIdentity(identity.key, identity.cert)
    )
    assert result.cipher == cipher
    text = decrypted.getvalue()
    assert text.endswith(b"\n\nline one\nline two\n")
    assert b"Subject: round trip\n" in text


def _parts(raw: bytes) -> list[tuple[str, bytes]]:
    message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.compat32)
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        found.append((part.get_content_type(), payload if isinstance(payload, bytes) else b""))
    return found


_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\x00"),
    max_size=300,
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    head = [b"From: a@example.org", b"To: b@example.com", b"Subject: property"]
    kind = draw(st.sampled_from(["text", "8bit", "binary", "multipart"]))
    if kind == "text":
        body = draw(_text).encode("utf-8").replace(b"\n", newline)
        lines = [*head, b"Content-Type: text/plain; charset=utf-8"]
    elif kind == "8bit":
        body = draw(_text).encode("latin-1", "replace").replace(b"\n", newline)
        lines = [
            *head,
            b"Content-Type: text/plain; charset=iso-8859-1",
            b"Content-Transfer-Encoding: 8bit",
        ]
    elif kind == "binary":
        import base64

        blob = draw(st.binary(max_size=2000))
        encoded = base64.encodebytes(blob).replace(b"\n", newline)
        lines = [
            *head,
            b"Content-Type: application/octet-stream",
            b"Content-Transfer-Encoding: base64",
        ]
        body = encoded
    else:
        import base64

        text = draw(_text).encode("utf-8").replace(b"\n", newline)
        blob = base64.encodebytes(draw(st.binary(max_size=500))).replace(b"\n", newline)
        boundary = b"=_boundary_42"
        lines = [
            *head,
            b"MIME-Version: 1.0",
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"',
        ]
        body = newline.join(
            [
                b"--" + boundary,
                b"Content-Type: text/plain; charset=utf-8",
                b"",
                text,
                b"--" + boundary,
                b"Content-Type: application/octet-stream",
                b"Content-Transfer-Encoding: base64",
                b"",
                blob,
                b"--" + boundary + b"--",
                b"",
            ]
        )
    return newline.join(lines) + newline + newline + body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=messages(), cipher=st.sampled_from(["aes256", "aes128-gcm", "3des", "rc2-128"]))
def test_hypothesis_round_trip_gives_back_the_parts(pki: Any, raw: bytes, cipher: str) -> None:
    encrypted = io.BytesIO()
    encrypt_message(raw, encrypted, [Recipient(pki.alice.cert)], cipher=cipher)
    out = encrypted.getvalue()
    crlf_in = raw.startswith(b"From: a@example.org\r\n")
    assert out.count(b"\r\n") == (out.count(b"\n") if crlf_in else 0)
    decrypted = io.BytesIO()
    decrypt_message(
        io.BytesIO(encrypted.getvalue()), decrypted, KeyIdentity(pki.alice.key, pki.alice.cert)
    )
    assert _parts(decrypted.getvalue()) == _parts(raw)
