"""Signing and verifying S/MIME messages in-process: round trips, tampering, trust."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from asn1crypto import cms

from smimecli.cms.signed import SMIME_CAPABILITIES, SignedDataBuilder
from smimecli.cms.trust import evaluate_trust
from smimecli.cms.verify import verify_signed_data
from smimecli.errors import DataError, UsageError
from smimecli.mime.transport import make_transport_safe
from smimecli.sign.message import SignOptions, sign_message
from smimecli.verify.message import verify_message
from tests.conftest import Pki

MESSAGE = (
    b"From: Alice <alice@example.com>\n"
    b"To: Bob <bob@example.com>\n"
    b"Bcc: secret@example.com\n"
    b"Subject: signed\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"\n"
    b"Hello Bob,\nFrom here on it is signed.\n"
)


def _sign(pki: Pki, *, detached: bool = True, who: str = "alice", **kw: Any) -> bytes:
    ident = getattr(pki, who)
    out = io.BytesIO()
    sign_message(
        MESSAGE, out, cert=ident.cert, key=ident.key, options=SignOptions(detached=detached, **kw)
    )
    return out.getvalue()


@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize(
    ("who", "scheme"), [("alice", "pkcs1v15"), ("alice", "pss"), ("carol_ec", "pkcs1v15")]
)
def test_round_trip(pki: Pki, detached: bool, who: str, scheme: str) -> None:
    signed = _sign(pki, detached=detached, who=who, scheme=scheme, hash="sha384")
    result = verify_message(signed)
    assert result.valid, result.check.problems
    signer = result.check.signer
    assert signer.signer == getattr(pki, who).cert
    assert signer.digest_algorithm == "sha384"
    assert signer.capabilities[:5] == [name for name, _ in SMIME_CAPABILITIES[:5]]
    assert signer.signing_time is not None
    assert b"Hello Bob,\r\n=46rom here on it is signed." in result.entity
    assert result.form == ("multipart/signed" if detached else "signed-data")


def test_outer_headers_stay_outside_and_bcc_is_dropped(pki: Pki) -> None:
    signed = _sign(pki)
    head = signed.split(b"\n\n", 1)[0]
    assert head.startswith(b"From: Alice <alice@example.com>\nTo: Bob")
    assert b"Bcc:" not in signed  # base64 has no colon
    assert b"micalg=sha-256" in head and b"\r\n" not in head
    entity = verify_message(signed).entity
    assert entity.startswith(b"Content-Type: text/plain; charset=utf-8\r\n")
    assert b"Subject" not in entity


def test_signing_attributes(pki: Pki) -> None:
    der = (
        SignedDataBuilder()
        .set_signer(pki.alice.cert, pki.alice.key)
        .set_content(io.BytesIO(b"x" * 3_000_000))
        .add_chain([pki.ca.cert])
        .sign()
    )
    signed = cms.ContentInfo.load(der)["content"]
    assert len(signed["certificates"]) == 1  # the root is left out
    names = {a["type"].native for a in signed["signer_infos"][0]["signed_attrs"]}
    assert {"signing_certificate_v2", "encrypt_key_pref", "smime_capabilities"} <= names
    assert verify_signed_data(der, b"x" * 3_000_000).valid


def test_builder_validates(pki: Pki) -> None:
    with pytest.raises(UsageError, match="no signer"):
        SignedDataBuilder().set_content(b"x").sign()
    with pytest.raises(UsageError, match="does not belong"):
        SignedDataBuilder().set_signer(pki.alice.cert, pki.bob.key).set_content(b"x").sign()
    with pytest.raises(UsageError, match="unknown hash"):
        SignedDataBuilder().set_hash("md5")


def test_builder_refuses_a_second_choice(pki: Pki) -> None:
    # One negative test per rule: each choice is made once, as cryptography's builders do.
    alice = pki.alice
    with pytest.raises(UsageError, match="signer is already set"):
        SignedDataBuilder().set_signer(alice.cert, alice.key).set_signer(alice.cert, alice.key)
    with pytest.raises(UsageError, match="content is already set"):
        SignedDataBuilder().set_content(b"x").set_content(b"y")
    with pytest.raises(UsageError, match="hash is already set"):
        SignedDataBuilder().set_hash("sha256").set_hash("sha512")
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    with pytest.raises(UsageError, match="signing time is already set"):
        SignedDataBuilder().set_signing_time(when).set_signing_time(when)
    with pytest.raises(UsageError, match="unknown signature scheme"):
        SignedDataBuilder().set_signer(alice.cert, alice.key, scheme="raw")
    with pytest.raises(UsageError, match="no content to sign"):
        SignedDataBuilder().set_signer(alice.cert, alice.key).sign()


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"Hello Bob", b"Hello Bib"), (b"charset=utf-8\n", b"charset=utf-7\n")],
)
def test_tampered_content_is_detected(pki: Pki, old: bytes, new: bytes) -> None:
    signed = _sign(pki)
    body_start = signed.index(b"\n\n") + 2
    tampered = signed[:body_start] + signed[body_start:].replace(old, new, 1)
    result = verify_message(tampered)
    assert not result.valid
    assert "message digest does not match" in result.check.problems[0]


def test_tampered_signature_is_detected(pki: Pki) -> None:
    der = SignedDataBuilder().set_signer(pki.alice.cert, pki.alice.key).set_content(b"x").sign()
    broken = bytearray(der)
    broken[-10] ^= 0x01  # inside the signature value, the last field
    result = verify_signed_data(bytes(broken), b"x")
    assert result.problems == ["the signature does not match: the message was changed"]


def test_lf_message_verifies_like_openssl(pki: Pki) -> None:
    """A sloppy client re-wrote the signed part with LF: canonicalised back to CRLF."""
    signed = _sign(pki).replace(b"\r\n", b"\n")
    assert verify_message(signed).valid


def test_malformed_is_data_error(pki: Pki) -> None:
    signed = _sign(pki, detached=False)
    head, _, body = signed.partition(b"\n\n")
    with pytest.raises(DataError, match="not a valid CMS"):
        verify_message(head + b"\n\nAAAA" + body[40:])
    with pytest.raises(DataError, match="not a signed message"):
        verify_message(MESSAGE)
    with pytest.raises(DataError, match="no signed content"):
        der = SignedDataBuilder().set_signer(pki.alice.cert, pki.alice.key).set_content(b"x").sign()
        verify_signed_data(der)


def test_trust_good_expired_untrusted(pki: Pki) -> None:
    result = verify_message(_sign(pki))
    assert result.check.signer.signer is not None
    trust = evaluate_trust(result.check.signer.signer, [pki.ca.cert])
    assert trust.trusted, trust.reasons
    assert trust.chain == [pki.alice.cert, pki.ca.cert]
    untrusted = evaluate_trust(pki.alice.cert, [])
    assert not untrusted.trusted and "no chain to a trusted root" in untrusted.reasons[0]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    expired = evaluate_trust(pki.alice.cert, [pki.ca.cert], now=later)
    assert any("had expired now" in r for r in expired.reasons)


def test_expired_signer_is_untrusted_not_malformed(pki: Pki) -> None:
    now = dt.datetime.now(dt.UTC)
    old = pki.ca.issue(
        "Old",
        "old@example.com",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    out = io.BytesIO()
    sign_message(MESSAGE, out, cert=old.cert, key=old.key)
    result = verify_message(out.getvalue())
    assert result.valid  # the signature itself holds
    trust = evaluate_trust(old.cert, [pki.ca.cert], signing_time=result.check.signer.signing_time)
    assert not trust.trusted
    assert any("had expired at signing time" in r for r in trust.reasons)


def test_signer_without_email_protection_is_untrusted(pki: Pki) -> None:
    no_eku = pki.ca.issue("NoEku", "noeku@example.com", eku=False)
    assert evaluate_trust(no_eku.cert, [pki.ca.cert]).trusted  # absent EKU allows all
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    server = (
        x509.CertificateBuilder()
        .subject_name(no_eku.cert.subject)
        .issuer_name(pki.ca.cert.subject)
        .public_key(no_eku.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(no_eku.cert.not_valid_before_utc)
        .not_valid_after(no_eku.cert.not_valid_after_utc)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(pki.ca.key, hashes.SHA256())
    )
    reasons = evaluate_trust(server, [pki.ca.cert]).reasons
    assert reasons == [
        f"{server.subject.rfc4514_string()} is not for email protection (extendedKeyUsage)"
    ]


def test_transport_safe_reencodes_8bit_parts() -> None:
    entity = (
        b"Content-Type: multipart/mixed; boundary=b1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\nGr\xc3\xbc\xc3\x9fe \r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\n"
        b"\x00\xff\r\n--b1--\r\n"
    )
    safe = make_transport_safe(entity)
    assert safe.isascii()
    assert b"Gr=C3=BC=C3=9Fe=20\r\n" in safe
    assert b"Content-Transfer-Encoding: base64\r\n\r\nAP8=\r\n" in safe
    assert safe.startswith(
        b"Content-Type: multipart/mixed; boundary=b1\r\nContent-Transfer-Encoding: 7bit"
    )


def test_chain_through_an_included_intermediate(pki: Pki) -> None:
    """Signer <- intermediate (carried in the message) <- trusted root; a non-CA in the
    middle is reported."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    now = dt.datetime.now(dt.UTC)

    def cert(
        name: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        signer: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256())
        )

    mid_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    mid = cert("Mid CA", mid_key, pki.ca.cert.subject, pki.ca.key, True)
    leaf = cert("Leaf", leaf_key, mid.subject, mid_key, False)
    out = io.BytesIO()
    sign_message(
        MESSAGE, out, cert=leaf, key=leaf_key, options=SignOptions(chain=[mid, pki.ca.cert])
    )
    check = verify_message(out.getvalue()).check
    assert check.valid and check.certificates == [leaf, mid]  # root left out
    trust = evaluate_trust(leaf, [pki.ca.cert], check.certificates)
    assert trust.trusted, trust.reasons
    assert trust.chain == [leaf, mid, pki.ca.cert]
    not_ca = cert("Mid CA", mid_key, pki.ca.cert.subject, pki.ca.key, False)
    reasons = evaluate_trust(leaf, [pki.ca.cert], [not_ca]).reasons
    assert reasons == ["CN=Mid CA is not a CA (basicConstraints) but issued a certificate"]
