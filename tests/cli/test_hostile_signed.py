"""Hostile SignedData built by hand (asn1crypto): many signers, repeated signed attributes,
unknown algorithms. Each answer is one clean error line, in bounded time."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from smimecli.certs.formats import load_certificates
from tests.conftest import Cli, Pki, assert_error, require_tool
from tests.pki import Identity

CONTENT = b"Content-Type: text/plain\r\n\r\nhello\r\n"


def _attributes(*extra: dict[str, Any], content: bytes = CONTENT) -> Any:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["data"]},
            {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
            {"type": "signing_time", "values": [cms.Time({"utc_time": now})]},
            *extra,
        ]
    )


def _signer_info(who: Identity, attrs: Any, *, spoil: bool = False) -> Any:
    assert isinstance(who.key, rsa.RSAPrivateKey)
    signed = b"\x31" + attrs.dump()[1:]
    signature = who.key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    if spoil:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    cert = asn1_x509.Certificate.load(who.cert.public_bytes(serialization.Encoding.DER))
    sid = {"issuer": cert.issuer, "serial_number": cert.serial_number}
    return cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": sid}),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attrs,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
            "signature": signature,
        }
    )


def _opaque(who: Identity, infos: Sequence[Any], digest: str = "sha256") -> bytes:
    cert = asn1_x509.Certificate.load(who.cert.public_bytes(serialization.Encoding.DER))
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": digest}],
            "encap_content_info": {"content_type": "data", "content": CONTENT},
            "certificates": [cert],
            "signer_infos": list(infos),
        }
    )
    der = cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    return (
        b"From: alice@example.com\nTo: bob@example.com\nSubject: t\nMIME-Version: 1.0\n"
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(der)
    )


def _verify(cli: Cli, pki: Pki, tmp_path: Path, mail: bytes) -> tuple[Any, Path, float]:
    path = tmp_path / "hostile.eml"
    path.write_bytes(mail)
    started = time.monotonic()
    done = cli(["verify", path, "--ca", pki.ca.cert_pem])
    return done, path, time.monotonic() - started


def test_well_formed_reference_is_valid(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    done, _path, _took = _verify(
        cli, pki, tmp_path, _opaque(pki.alice, [_signer_info(pki.alice, _attributes())])
    )
    assert done.exit_code == 0, done.output


def test_repeated_message_digest_is_invalid(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """Two messageDigest attributes, both right: RFC 5652 section 11 allows one."""
    again = {"type": "message_digest", "values": [hashlib.sha256(CONTENT).digest()]}
    info = _signer_info(pki.alice, _attributes(again))
    done, path, _took = _verify(cli, pki, tmp_path, _opaque(pki.alice, [info]))
    assert_error(done, 65, str(path), "must hold one messageDigest with one value, not 2")


def test_signing_time_with_two_values_is_invalid(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    attrs = _attributes()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    attrs[2]["values"] = [cms.Time({"utc_time": now}), cms.Time({"utc_time": now})]
    info = _signer_info(pki.alice, attrs)
    done, path, _took = _verify(cli, pki, tmp_path, _opaque(pki.alice, [info]))
    assert_error(done, 65, str(path), "one signingTime with one value, not 2")


def test_a_thousand_signers_refused_quickly(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """Every signer must hold (as OpenSSL's CMS_verify); more than MAX_SIGNERS are refused
    before any public-key operation, so the report stays one short line."""
    good = _signer_info(pki.alice, _attributes())
    bad = _signer_info(pki.alice, _attributes(), spoil=True)
    mail = _opaque(pki.alice, [good, bad] * 500)
    done, path, took = _verify(cli, pki, tmp_path, mail)
    line = assert_error(done, 65, str(path), "has 1000 signers, more than the 16")
    assert len(line) < 300 and took < 20


def test_one_bad_signer_of_two_fails_with_the_reason_once(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    good = _signer_info(pki.alice, _attributes())
    bad = _signer_info(pki.alice, _attributes(), spoil=True)
    done, path, _took = _verify(cli, pki, tmp_path, _opaque(pki.alice, [good, bad, bad, bad]))
    line = assert_error(done, 65, str(path), "the signature does not match")
    assert line.count("the signature does not match") == 1


def test_unknown_digest_names_the_file(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    info = _signer_info(pki.alice, _attributes())
    info["digest_algorithm"] = {"algorithm": "1.2.3.4.99"}
    done, path, _took = _verify(cli, pki, tmp_path, _opaque(pki.alice, [info], "1.2.3.4.99"))
    assert_error(done, 65, f"{path}: unsupported digest algorithm 1.2.3.4.99")


def test_unknown_signature_algorithm_names_the_file(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    info = _signer_info(pki.alice, _attributes())
    info["signature_algorithm"] = {"algorithm": "1.2.3.4.98"}
    done, path, _took = _verify(cli, pki, tmp_path, _opaque(pki.alice, [info]))
    assert_error(done, 65, f"{path}: unsupported signature algorithm 1.2.3.4.98")


def test_ten_thousand_addresses_give_short_report_lines(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """A signer certificate with 10,000 rfc822Name SANs: the report and the From: warning
    show ten addresses and how many more; --json keeps them all."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    sans = [x509.RFC822Name(f"u{n}@example.org") for n in range(10_000)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Many")]))
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(pki.ca.key, hashes.SHA256())
    )
    many = Identity("Many", "u0@example.org", key, cert, *[tmp_path / "unused"] * 4)
    mail = _opaque(many, [_signer_info(many, _attributes())])
    done, _path, took = _verify(cli, pki, tmp_path, mail)
    assert "Traceback" not in done.stderr and took < 30
    lines = done.stderr.splitlines()
    email = next(line for line in lines if line.startswith("email:"))
    assert email.endswith("u9@example.org and 9,990 more")
    assert all(len(line) < 1000 for line in lines), max(map(len, lines))
    doc = cli(["verify", "--json", tmp_path / "hostile.eml", "--ca", pki.ca.cert_pem])
    assert len(json.loads(doc.stdout)["signer"]["emails"]) == 10_000


def _rsa_signer(pki: Pki, tmp_path: Path, bits: int) -> Identity:
    """A signer with a short RSA key (OpenSSL makes the 512-bit one cryptography refuses)."""
    pem = tmp_path / f"rsa{bits}.pem"
    openssl = require_tool("openssl")
    subprocess.run([openssl, "genrsa", "-out", pem, str(bits)], check=True, capture_output=True)
    key = serialization.load_pem_private_key(pem.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    now = dt.datetime.now(dt.UTC)
    name = [
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "alice@example.com"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Short"),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(name))
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(pki.ca.key, hashes.SHA256())
    )
    return Identity("Short", "alice@example.com", key, cert, *[tmp_path / "unused"] * 4)


def test_512_bit_rsa_signer_is_not_trusted(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    short = _rsa_signer(pki, tmp_path, 512)
    done, path, _took = _verify(
        cli, pki, tmp_path, _opaque(short, [_signer_info(short, _attributes())])
    )
    assert_error(done, 77, str(path), "has a 512-bit RSA key, too weak to trust")


def test_1024_bit_rsa_signer_is_trusted_with_a_warning(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    short = _rsa_signer(pki, tmp_path, 1024)
    done, _path, _took = _verify(
        cli, pki, tmp_path, _opaque(short, [_signer_info(short, _attributes())])
    )
    assert done.exit_code == 0, done.output
    assert "smimecli: warning: the signer's RSA key has only 1024 bits" in done.stderr


def _tiny_certificates(count: int) -> list[Any]:
    """``count`` small self-signed certificates (one signed, re-serialled: not valid)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    one = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    parsed = asn1_x509.Certificate.load(one.public_bytes(serialization.Encoding.DER))
    out = []
    for serial in range(2, count + 2):
        tbs = parsed["tbs_certificate"].copy()
        tbs["serial_number"] = serial
        out.append(
            asn1_x509.Certificate(
                {
                    "tbs_certificate": tbs,
                    "signature_algorithm": parsed["signature_algorithm"],
                    "signature_value": parsed["signature_value"],
                }
            )
        )
    return out


def _with_certificates(mail: bytes, extra: list[Any]) -> bytes:
    """``mail`` (from :func:`_opaque`) with ``extra`` added to its certificate set."""
    from smimecli.cms.der import header

    head, body = mail.split(b"\n\n", 1)
    info = cms.ContentInfo.load(base64.b64decode(body))
    signed = info["content"]
    joined = b"".join(c.dump() for c in [*signed["certificates"], *extra])
    signed["certificates"] = cms.CertificateSet.load(header(0x31, len(joined)) + joined)
    return head + b"\n\n" + base64.encodebytes(info.dump(force=True))


def test_import_keeps_only_the_verified_signers_chain(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """5,000 certificates in the signature: the store (or a rules dir source) gets the
    signer only."""
    mail = _opaque(pki.alice, [_signer_info(pki.alice, _attributes())])
    path = tmp_path / "many.eml"
    path.write_bytes(_with_certificates(mail, _tiny_certificates(5_000)))
    started = time.monotonic()
    done = cli(["certs", "import", path])
    assert done.exit_code == 0, done.output
    assert time.monotonic() - started < 60
    listed = cli(["certs", "list", "--json"])
    assert [c["thumbprint"] for c in json.loads(listed.stdout)] == [pki.alice.thumbprint]
    loaded = load_certificates(path.read_bytes(), source=str(path))  # a rules 'dir' source
    assert [e.thumbprint for e in loaded] == [pki.alice.thumbprint]


def test_forwarded_signed_mail_is_not_harvested(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """A signed message inside a multipart/mixed forward is not verified by the importer:
    its certificates (here a forged signature's) are not taken."""
    forged = _opaque(pki.alice, [_signer_info(pki.alice, _attributes(), spoil=True)])
    inner = _with_certificates(forged, _tiny_certificates(1_000))
    path = tmp_path / "forward.eml"
    path.write_bytes(
        b"From: x@example.com\nTo: bob@example.com\nSubject: Fwd\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/mixed; boundary=ZZ\n\n--ZZ\nContent-Type: text/plain\n\n"
        b"see below\n--ZZ\nContent-Type: message/rfc822\n\n" + inner + b"\n--ZZ--\n"
    )
    done = cli(["certs", "import", path])
    assert_error(done, 65, str(path), "the S/MIME signature is inside another message")
    listed = cli(["certs", "list", "--json"])
    assert json.loads(listed.stdout or b"[]") == []


def test_quoted_printable_p7m_verifies(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """A relay that re-encoded the opaque signature as quoted-printable (RFC 2045 6.7)."""
    mail = _opaque(pki.alice, [_signer_info(pki.alice, _attributes())])
    head, body = mail.split(b"\n\n", 1)
    der = base64.b64decode(body)
    head = head.replace(b"Transfer-Encoding: base64", b"Transfer-Encoding: quoted-printable")
    done, _path, _took = _verify(
        cli, pki, tmp_path, head + b"\n\n" + binascii.b2a_qp(der, istext=False)
    )
    assert done.exit_code == 0, done.output


@pytest.mark.parametrize("body", [b"", b"\r\n  \r\n"])
def test_empty_signature_part_is_named(cli: Cli, pki: Pki, tmp_path: Path, body: bytes) -> None:
    mail = (
        b"From: alice@example.com\nTo: bob@example.com\nSubject: t\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'micalg=sha-256; boundary="BB"\n\n--BB\r\n' + CONTENT + b"\r\n--BB\r\n"
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n--BB--\r\n"
    )
    done, path, _took = _verify(cli, pki, tmp_path, mail)
    assert_error(done, 65, f"{path}: the signature part is empty")


def _with_key(pki: Pki, who: Identity, spki: Any) -> Identity:
    """``who`` with its certificate's public key replaced by ``spki`` (re-signed by the CA)."""
    parsed = asn1_x509.Certificate.load(who.cert.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"]
    tbs["subject_public_key_info"] = spki
    assert isinstance(pki.ca.key, rsa.RSAPrivateKey)
    sig = pki.ca.key.sign(tbs.dump(force=True), padding.PKCS1v15(), hashes.SHA256())
    whole = {
        "tbs_certificate": tbs,
        "signature_algorithm": parsed["signature_algorithm"],
        "signature_value": sig,
    }
    cert = x509.load_der_x509_certificate(asn1_x509.Certificate(whole).dump())
    return Identity(who.name, who.email, who.key, cert, *[Path("unused")] * 4)


_LEFT_OUT = {"no-digest": "message_digest", "no-type": "content_type"}


def _hostile_case(pki: Pki, case: str) -> bytes:
    """Held before this suite: each gives 65 with one line (see the parametrisation)."""
    from asn1crypto import keys

    alice = pki.alice
    attrs = _attributes()
    if case in ("no-digest", "no-type"):
        attrs = cms.CMSAttributes([a for a in attrs if a["type"].native != _LEFT_OUT[case]])
    elif case == "year-9999":
        attrs[2]["values"] = [
            cms.Time({"generalized_time": dt.datetime(9999, 1, 1, tzinfo=dt.UTC)})
        ]
    info = _signer_info(alice, attrs)
    if case == "unknown-sid":
        info["sid"] = cms.SignerIdentifier({"subject_key_identifier": b"\x01" * 20})
    modulus = alice.key.public_key().public_numbers().n  # type: ignore[union-attr]
    if case == "rsa-exponent-1":
        rsa_key = keys.RSAPublicKey({"modulus": modulus, "public_exponent": 1})
        spki = keys.PublicKeyInfo({"algorithm": {"algorithm": "rsa"}, "public_key": rsa_key})
        return _opaque(_with_key(pki, alice, spki), [info])
    if case == "ec-off-curve":
        params = keys.ECDomainParameters({"named": "secp256r1"})
        algorithm = {"algorithm": "ec", "parameters": params}
        spki = keys.PublicKeyInfo({"algorithm": algorithm, "public_key": b"\x04" + b"\x01" * 64})
        info["signature_algorithm"] = {"algorithm": "sha256_ecdsa"}
        return _opaque(_with_key(pki, alice, spki), [info])
    return _opaque(alice, [info])


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no-digest", "the signature has no messageDigest attribute"),
        ("no-type", "the contentType attribute does not name the signed content"),
        ("year-9999", "the signing time 9999-01-01 00:00 is in the future"),
        ("unknown-sid", "the signer's certificate is not in the message"),
        ("rsa-exponent-1", "a SignerInfo is damaged (e must be >= 3"),
        ("ec-off-curve", "a SignerInfo is damaged (Invalid key)"),
    ],
)
def test_hostile_signer_is_one_clean_line(
    cli: Cli, pki: Pki, tmp_path: Path, case: str, reason: str
) -> None:
    done, path, took = _verify(cli, pki, tmp_path, _hostile_case(pki, case))
    assert_error(done, 65, str(path), reason)
    assert took < 30
