"""Format detection and loading by content: PEM, DER, PKCS#7, PKCS#12, signed mail."""

from __future__ import annotations

import logging
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from smimecli.certs.formats import load_certificate_file, load_certificates
from smimecli.certs.names import thumbprint
from smimecli.certs.pfx import write_pfx
from smimecli.errors import AuthError, DataError, InputError, UsageError
from tests.conftest import Pki
from tests.pki import PASSWORD


def test_der_and_pem(pki: Pki) -> None:
    for path in (pki.alice.cert_der, pki.alice.cert_pem):
        loaded = load_certificate_file(path)
        assert [e.thumbprint for e in loaded] == [pki.alice.thumbprint]
        assert loaded[0].key is None


def test_pem_bundle_pairs_keys(pki: Pki) -> None:
    data = (
        pki.alice.cert_pem.read_bytes()
        + pki.bob.key_pem.read_bytes()
        + pki.bob.cert_pem.read_bytes()
    )
    loaded = load_certificates(data)
    assert [e.thumbprint for e in loaded] == [pki.alice.thumbprint, pki.bob.thumbprint]
    assert loaded[0].key is None and loaded[1].key is not None


def test_encrypted_pem_key(pki: Pki) -> None:
    key = pki.carol_ec.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pem-pass"),
    )
    data = pki.carol_ec.cert_pem.read_bytes() + key
    with pytest.raises(AuthError, match="encrypted"):
        load_certificates(data)
    with pytest.raises(AuthError, match="wrong password"):
        load_certificates(data, password=b"nope")
    assert load_certificates(data, password=b"pem-pass")[0].key is not None


@pytest.mark.parametrize("encoding", [serialization.Encoding.DER, serialization.Encoding.PEM])
def test_pkcs7(pki: Pki, encoding: serialization.Encoding) -> None:
    data = pkcs7.serialize_certificates([pki.alice.cert, pki.ca.cert], encoding)
    loaded = load_certificates(data)
    # certificates is a SET OF (RFC 5652 5.1): DER sorts it, so compare as sets.
    assert {e.thumbprint for e in loaded} == {pki.alice.thumbprint, thumbprint(pki.ca.cert)}


def test_pfx_from_fixture(pki: Pki) -> None:
    loaded = load_certificate_file(pki.alice.pfx, PASSWORD)
    assert loaded[0].thumbprint == pki.alice.thumbprint
    assert loaded[0].friendly_name == "Alice" and loaded[0].key is not None
    assert loaded[1].chain and loaded[1].key is None  # the CA goes to `ca`


@pytest.mark.parametrize("encryption", ["modern", "legacy"])
def test_write_pfx_round_trip(pki: Pki, encryption: str) -> None:
    data = write_pfx(
        pki.dave_p384.key,
        pki.dave_p384.cert,
        [pki.ca.cert],
        password=b"secret",
        encryption=encryption,
        friendly_name="Dave ä",
    )
    loaded = load_certificates(data, password=b"secret")
    assert loaded[0].friendly_name == "Dave ä"
    assert loaded[0].key is not None
    bundle = pkcs12.load_pkcs12(data, b"secret")
    assert bundle.cert is not None and bundle.cert.certificate == pki.dave_p384.cert


def test_write_pfx_refuses_empty_password(pki: Pki) -> None:
    with pytest.raises(UsageError, match="password"):
        write_pfx(pki.alice.key, pki.alice.cert, password=b"", encryption="modern")
    with pytest.raises(UsageError, match="legacy"):
        write_pfx(pki.alice.key, pki.alice.cert, password=b"x", encryption="rc4")


def test_pfx_password_errors(pki: Pki) -> None:
    data = pki.alice.pfx.read_bytes()
    with pytest.raises(AuthError, match="protected by a password"):
        load_certificates(data, source="alice.pfx")
    with pytest.raises(AuthError, match="wrong password"):
        load_certificates(data, password=b"wrong", source="alice.pfx")


def test_signed_mail(pki: Pki) -> None:
    body = b"Content-Type: text/plain\r\n\r\nhello\r\n"
    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(body)
        .add_signer(pki.bob.cert, pki.bob.key, hashes.SHA256())
        .add_certificate(pki.ca.cert)
        .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    )
    message = b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: hi\r\n" + signed
    loaded = load_certificates(message, source="signed.eml")
    assert {e.thumbprint for e in loaded} == {pki.bob.thumbprint, thumbprint(pki.ca.cert)}


def test_mail_without_signature_is_data_error() -> None:
    message = b"From: a@b\r\nContent-Type: multipart/signed; protocol=x\r\n\r\nnothing\r\n"
    with pytest.raises(DataError, match="the message: the multipart/signed Content-Type has no"):
        load_certificates(message)


@pytest.mark.parametrize(
    "data",
    [
        os.urandom(512),
        b"",
        b"hello world, not a certificate\n",
        b"-----BEGIN CERTIFICATE-----\n-----END NOTHING-----\n",
        b"\x30\x82\xff\xff\x30\x00",
    ],
    ids=["random", "empty", "text", "broken-pem", "der-length-past-end"],
)
def test_garbage_is_data_error(data: bytes) -> None:
    with pytest.raises(DataError):
        load_certificates(data, source="junk")


def test_truncated_containers(pki: Pki) -> None:
    der = pki.alice.cert_der.read_bytes()
    with pytest.raises(DataError):
        load_certificates(der[: len(der) // 2])
    p7 = pkcs7.serialize_certificates([pki.alice.cert], serialization.Encoding.DER)
    with pytest.raises(DataError):
        load_certificates(p7[:-40])
    pfx = pki.alice.pfx.read_bytes()
    with pytest.raises((DataError, AuthError)):
        load_certificates(pfx[: len(pfx) // 2], password=PASSWORD)


def test_bad_certificate_inside_pem_is_skipped(
    pki: Pki, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = b"-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n"
    with caplog.at_level(logging.DEBUG):
        loaded = load_certificates(junk + pki.bob.cert_pem.read_bytes(), source="mixed.pem")
    assert [e.thumbprint for e in loaded] == [pki.bob.thumbprint]
    assert len(loaded.skipped) == 1 and "mixed.pem" in loaded.skipped[0]
    # The skip is a returned notice: nothing logged, nothing printed.
    assert [(n.code, n.text) for n in loaded.notices] == [
        ("skipped-certificate", loaded.skipped[0])
    ]
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")


def test_key_without_certificate_is_a_notice(
    pki: Pki, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    key = pki.bob.key_pem.read_bytes()
    with caplog.at_level(logging.DEBUG):
        loaded = load_certificates(pki.alice.cert_pem.read_bytes() + key, source="pair.pem")
    assert [e.key for e in loaded] == [None]
    assert [(n.code, n.text) for n in loaded.notices] == [
        ("key-without-certificate", "private key without its certificate in pair.pem ignored")
    ]
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")


def test_missing_file_is_input_error(tmp_path: object) -> None:
    with pytest.raises(InputError):
        load_certificate_file("/nonexistent/file.cer")


def test_base64_without_armour(pki: Pki) -> None:
    import base64

    data = base64.encodebytes(pki.alice.cert_der.read_bytes())
    assert load_certificates(data)[0].thumbprint == pki.alice.thumbprint


def test_pem_body_skips_rfc1421_headers_and_crlf(pki: Pki) -> None:
    pem = pki.bob.cert_pem.read_bytes()
    head, rest = pem.split(b"\n", 1)
    with_header = head + b"\nComment: exported by hand\n\n" + rest
    loaded = load_certificates(with_header.replace(b"\n", b"\r\n"))
    assert [e.thumbprint for e in loaded] == [pki.bob.thumbprint]
    assert loaded.skipped == []


def test_unsupported_pem_key_type(pki: Pki) -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519

    key = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(DataError, match="unsupported private key type"):
        load_certificates(pki.bob.cert_pem.read_bytes() + key, source="x.pem")


def test_malformed_basic_constraints_is_not_a_ca() -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtensionOID, NameOID

    from smimecli.certs.formats import is_ca
    from smimecli.lab import Signer

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Broken CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        # An OCTET STRING where BasicConstraints needs a SEQUENCE.
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x04\x00"),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    assert is_ca(cert) is False
    # lab.Signer uses is_ca: a bad signer certificate is bad data (65), not a bug (70).
    with pytest.raises(DataError, match="not a CA"):
        Signer.checked(cert, key)


@pytest.mark.parametrize(
    "data",
    [
        b"-----BEGIN CERTIFICATE-----\n" * 14_000,
        b"".join(b"-----BEGIN L%d-----\n" % i for i in range(20_000)),
        b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n" * 7_000
        + b"-----BEGIN PRIVATE KEY-----\n" * 14_000,
    ],
    ids=["same-label", "distinct-labels", "mixed"],
)
def test_pem_scan_is_linear(data: bytes) -> None:
    # A backtracking BEGIN..END regex took 33-41 s on 392 KB of BEGIN lines.
    import time

    from smimecli.certs.keys import load_private_key

    started = time.monotonic()
    try:
        load_certificates(data, source="hostile.pem")
    except DataError:
        pass
    with pytest.raises(DataError):
        load_private_key(data)
    assert time.monotonic() - started < 3


def test_pem_blocks_pair_each_begin_with_its_own_end(pki: Pki) -> None:
    from smimecli.certs.pem import pem_blocks

    cert = pki.alice.cert_pem.read_bytes()
    data = b"-----BEGIN X509 CRL-----\njunk\n" + cert + b"-----END X509 CR-----\n" + cert
    blocks = list(pem_blocks(data))
    assert [b.label for b in blocks] == [b"CERTIFICATE", b"CERTIFICATE"]
    assert blocks[1].whole == blocks[0].whole == cert.strip()
    assert len(load_certificates(data)) == 2
