"""Library-level decryption of messages written by an independent peer (cryptography's
PKCS7EnvelopeBuilder): recipients, implicit rejection, header restoration, errors."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, Any, cast

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from smimecli.cms.ber import BerReader
from smimecli.cms.open import EnvelopeHead, decrypt_content, read_head
from smimecli.cms.unwrap import KeyIdentity, rsa_v15_unwrap
from smimecli.decrypt.inspect import inspect_message
from smimecli.decrypt.message import decrypt_message
from smimecli.errors import AuthError, DataError
from tests.conftest import Pki

ENTITY = b"Content-Type: text/plain; charset=us-ascii\r\nSubject: inner\r\n\r\nHello Bob.\r\n"


def _envelope(
    *certs: x509.Certificate,
    encoding: serialization.Encoding = serialization.Encoding.DER,
    data: bytes = ENTITY,
    aes: pkcs7.ContentEncryptionAlgorithm = algorithms.AES256,
) -> bytes:
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(data).set_content_encryption_algorithm(aes)
    for cert in certs:
        builder = builder.add_recipient(cert)
    return builder.encrypt(encoding, [pkcs7.PKCS7Options.Binary])


def _open(der: bytes, identities: list[KeyIdentity]) -> bytes:
    reader = BerReader(io.BytesIO(der))
    head = read_head(reader)
    return b"".join(decrypt_content(reader, head, identities))


def test_decrypts_with_key_and_certificate(pki: Pki) -> None:
    der = _envelope(pki.alice.cert)
    assert _open(der, [KeyIdentity(pki.alice.key, pki.alice.cert)]) == ENTITY


def test_decrypts_with_key_alone(pki: Pki) -> None:
    der = _envelope(pki.alice.cert, aes=algorithms.AES128)
    assert _open(der, [KeyIdentity(pki.alice.key)]) == ENTITY


def test_each_of_two_recipients(pki: Pki) -> None:
    der = _envelope(pki.alice.cert, pki.bob.cert)
    for who in (pki.alice, pki.bob):
        assert _open(der, [KeyIdentity(who.key, who.cert)]) == ENTITY
        assert _open(der, [KeyIdentity(who.key)]) == ENTITY  # spooled, candidates tried


def test_wrong_key_is_auth_error(pki: Pki) -> None:
    from smimecli.cms.envelope import EnvelopeBuilder, Recipient

    der = _envelope(pki.alice.cert)
    with pytest.raises(AuthError, match="no private key for any recipient") as with_cert:
        _open(der, [KeyIdentity(pki.bob.key, pki.bob.cert)])
    # A key alone is tried on the recipient; AES-GCM makes the outcome deterministic (with
    # CBC a wrong key passes the padding check once in about 256 tries).
    gcm = (
        EnvelopeBuilder()
        .set_cipher("aes256-gcm")
        .add_recipient(Recipient(pki.alice.cert))
        .encrypt(ENTITY)
    )
    with pytest.raises(AuthError) as key_only:
        _open(gcm, [KeyIdentity(pki.bob.key)])
    assert str(with_cert.value) == str(key_only.value)


def test_key_without_certificate_prefers_the_recipient_that_gives_text(pki: Pki) -> None:
    # Two recipients, Bob's key alone: Alice's recipient comes first and yields a
    # pseudo-random key; whenever that passes the CBC padding check its binary
    # plaintext must not win over Bob's real one.
    for _ in range(40):
        der = _envelope(pki.alice.cert, pki.bob.cert)
        assert _open(der, [KeyIdentity(pki.bob.key)]) == ENTITY


def _corrupt_encrypted_key(der: bytes, offset: int = 5) -> bytes:
    info = cms.ContentInfo.load(der)
    ktri = info["content"]["recipient_infos"][0].chosen
    block = bytearray(ktri["encrypted_key"].native)
    block[offset] ^= 0x55
    ktri["encrypted_key"] = bytes(block)
    return cast(bytes, info.dump(force=True))


def test_implicit_rejection_same_error_as_wrong_key(pki: Pki) -> None:
    # With CBC content a pseudo-random key passes the padding check about once in 256
    # tries and yields garbage (no MAC can tell); every attempt that fails must fail
    # exactly like a wrong key, and almost all of them fail. The wrong-key error is taken
    # from a key whose certificate names no recipient, which is deterministic.
    with pytest.raises(AuthError) as wrong_key:
        _open(_envelope(pki.alice.cert), [KeyIdentity(pki.bob.key, pki.bob.cert)])
    failures = 0
    for offset in range(5, 37):
        bad = _corrupt_encrypted_key(_envelope(pki.alice.cert), offset)
        try:
            _open(bad, [KeyIdentity(pki.alice.key, pki.alice.cert)])
        except AuthError as corrupted:
            assert type(corrupted) is type(wrong_key.value)
            assert str(corrupted) == str(wrong_key.value)
            failures += 1
    assert failures >= 28


def test_implicit_rejection_with_gcm_always_fails_like_a_wrong_key(pki: Pki) -> None:
    from smimecli.cms.envelope import EnvelopeBuilder, Recipient

    der = (
        EnvelopeBuilder()
        .set_cipher("aes256-gcm")
        .add_recipient(Recipient(pki.alice.cert))
        .encrypt(ENTITY)
    )
    info = cms.ContentInfo.load(der)
    ktri = info["content"]["recipient_infos"][0].chosen
    block = bytearray(ktri["encrypted_key"].native)
    block[5] ^= 0x55
    ktri["encrypted_key"] = bytes(block)
    bad = info.dump(force=True)
    with pytest.raises(AuthError) as corrupted:
        _open(bad, [KeyIdentity(pki.alice.key, pki.alice.cert)])
    with pytest.raises(AuthError) as wrong_key:
        _open(der, [KeyIdentity(pki.bob.key)])
    assert str(corrupted.value) == str(wrong_key.value)


def test_implicit_rejection_key_is_deterministic(pki: Pki) -> None:
    block = bytes(range(256))
    assert isinstance(pki.alice.key, rsa.RSAPrivateKey)
    assert isinstance(pki.bob.key, rsa.RSAPrivateKey)
    first = rsa_v15_unwrap(pki.alice.key, block, 32)
    assert len(first) == 32
    assert rsa_v15_unwrap(pki.alice.key, block, 32) == first
    assert rsa_v15_unwrap(pki.bob.key, block, 32) != first  # bound to the private key
    assert rsa_v15_unwrap(pki.alice.key, block[::-1], 32) != first


def test_message_headers_restored_lf(pki: Pki) -> None:
    smime = _envelope(pki.alice.cert, encoding=serialization.Encoding.SMIME)
    smime = smime.replace(b"\r\n", b"\n")
    message = b"From: a@example.com\nSubject: outer\nTo: b@example.com\n" + smime
    out = io.BytesIO()
    result = decrypt_message(io.BytesIO(message), out, pki.alice.key, pki.alice.cert)
    assert result.cipher == "aes256"
    # Outer headers in order, minus Content-*/MIME-Version and the Subject the entity
    # repeats; then the entity in the input's LF line endings.
    assert out.getvalue() == (
        b"From: a@example.com\nTo: b@example.com\n"
        b"Content-Type: text/plain; charset=us-ascii\nSubject: inner\n\nHello Bob.\n"
    )


def test_message_headers_restored_crlf(pki: Pki) -> None:
    smime = _envelope(pki.alice.cert, encoding=serialization.Encoding.SMIME)
    smime = smime.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    message = b"From: a@example.com\r\n" + smime
    out = io.BytesIO()
    decrypt_message(io.BytesIO(message), out, KeyIdentity(pki.alice.key, pki.alice.cert))
    assert out.getvalue() == b"From: a@example.com\r\n" + ENTITY


def test_pem_and_bare_der(pki: Pki) -> None:
    for encoding in (serialization.Encoding.PEM, serialization.Encoding.DER):
        out = io.BytesIO()
        decrypt_message(io.BytesIO(_envelope(pki.bob.cert, encoding=encoding)), out, pki.bob.key)
        assert out.getvalue() == ENTITY


def test_octet_stream_p7m_binary(pki: Pki) -> None:
    der = _envelope(pki.bob.cert)
    message = (
        b'Subject: x\nContent-Type: application/octet-stream; name="smime.p7m"\n'
        b"Content-Transfer-Encoding: binary\n\n" + der
    )
    out = io.BytesIO()
    decrypt_message(io.BytesIO(message), out, pki.bob.key)
    assert out.getvalue().endswith(b"Hello Bob.\n")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"From: a\nSubject: plain\n\nhello\n", "not an S/MIME encrypted message"),
        (b"", "empty"),
        (b"\x30\x03\x02\x01\x00", "not valid BER/DER"),
        (b"\x30\x84\xff\xff\xff\xff\x06", "not valid BER/DER"),
        (b"-----BEGIN PKCS7-----\n!!!!\n-----END PKCS7-----\n", "base64"),
        (
            b"Content-Type: application/pkcs7-mime\nContent-Transfer-Encoding: base64\n\n"
            b"MIAGCSqGSIb3DQEHAqCAMIACAQEx\n",
            "signed-data",
        ),
    ],
)
def test_not_a_usable_message(pki: Pki, data: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        decrypt_message(io.BytesIO(data), io.BytesIO(), pki.alice.key)


def test_truncated_message_is_data_error(pki: Pki) -> None:
    der = _envelope(pki.alice.cert)
    for cut in (20, len(der) // 2, len(der) - 3):
        with pytest.raises(DataError):
            decrypt_message(io.BytesIO(der[:cut]), io.BytesIO(), pki.alice.key)


def test_signed_data_is_not_encrypted(pki: Pki) -> None:
    from cryptography.hazmat.primitives import hashes

    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(b"x")
        .add_signer(pki.alice.cert, pki.alice.key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [])
    )
    with pytest.raises(DataError, match="signed-data, not an encrypted"):
        decrypt_message(io.BytesIO(signed), io.BytesIO(), pki.alice.key)
    report = inspect_message(io.BytesIO(signed))
    assert report.content_type == "signed-data"
    assert report.recipients == []


def test_inspect_lists_recipients(pki: Pki) -> None:
    report = inspect_message(io.BytesIO(_envelope(pki.alice.cert, pki.bob.cert)))
    assert report.content_type == "enveloped-data"
    assert report.cipher == {
        "name": "aes256",
        "oid": "2.16.840.1.101.3.4.1.42",
        "key_bits": 256,
        "supported": True,
    }
    serials = {r["id"]["serial"] for r in report.recipients}
    assert serials == {f"{pki.alice.cert.serial_number:X}", f"{pki.bob.cert.serial_number:X}"}
    assert all(
        r["kind"] == "ktri" and r["key_encryption"] == "rsaEncryption" for r in report.recipients
    )
    assert "CN=Test Root V1" in report.recipients[0]["id"]["issuer"]


def _certificates_for(key: Any, count: int) -> list[Any]:
    """``count`` different certificates for one RSA key (the envelope builder keeps one
    RecipientInfo per recipient, so many recipients need many certificates)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bob copy")])
    now = dt.datetime.now(dt.UTC)
    return [
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
        for serial in range(1, count + 1)
    ]


@pytest.mark.parametrize("cipher", ["aes256", "aes128-gcm", "3des"])
def test_key_alone_reads_the_content_once_whatever_the_recipients(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, cipher: str
) -> None:
    # A bare key made one whole pass over the content per recipient: 8,000 recipients
    # took 17 s. Now each candidate key is judged from the first and last blocks.
    import time

    from smimecli.cms import open as cms_open
    from smimecli.cms.envelope import EnvelopeBuilder, Recipient

    passes: list[bytes] = []
    real_cbc, real_gcm = cms_open._cbc_pass, cms_open._gcm_pass

    def cbc_spy(head: EnvelopeHead, cek: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
        passes.append(cek)
        return real_cbc(head, cek, chunks)

    def gcm_spy(head: EnvelopeHead, cek: bytes, *args: Any) -> IO[bytes]:
        passes.append(cek)
        return real_gcm(head, cek, *args)

    monkeypatch.setattr(cms_open, "_cbc_pass", cbc_spy)
    monkeypatch.setattr(cms_open, "_gcm_pass", gcm_spy)
    entity = ENTITY + b"x" * (1 << 20) + b"\r\n"
    builder = EnvelopeBuilder().set_cipher(cipher)
    for cert in _certificates_for(pki.bob.key, 60):
        builder = builder.add_recipient(Recipient(cert))
    der = builder.add_recipient(Recipient(pki.alice.cert)).encrypt(entity)
    started = time.monotonic()
    assert _open(der, [KeyIdentity(pki.alice.key)]) == entity
    assert time.monotonic() - started < 5
    assert len(passes) == 1
    passes.clear()
    with pytest.raises(AuthError):
        _open(der, [KeyIdentity(pki.carol_ec.key)])  # no recipient of its kind: no pass
    assert passes == []
