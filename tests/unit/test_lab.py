"""smimecli.lab: subject strings, options, and every field of the root and user
certificates."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, TypeVar

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from smimecli import lab
from smimecli.certs import names
from smimecli.errors import DataError, UsageError

NOW = dt.datetime(2030, 1, 15, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def root() -> lab.Issued:
    return lab.make_root(lab.RootSpec(), now=NOW)


@pytest.fixture(scope="module")
def signer(root: lab.Issued) -> lab.Signer:
    return lab.Signer.checked(root.cert, root.key)


@pytest.fixture(scope="module")
def rsa_user(signer: lab.Signer) -> lab.Issued:
    spec = lab.UserSpec(
        email="test@example.net",
        subject="E=test@example.net,CN=SMIME Tester 2048",
        upn="tester@corp.example",
    )
    return lab.issue_user(spec, signer, now=NOW)


@pytest.fixture(scope="module")
def ec_user(signer: lab.Signer) -> lab.Issued:
    spec = lab.UserSpec(email="ec@example.net", key=lab.KeySpec("ecdsa-p256"))
    return lab.issue_user(spec, signer, now=NOW)


_E = TypeVar("_E", bound=x509.ExtensionType)


def ext(cert: x509.Certificate, kind: type[_E]) -> x509.Extension[_E]:
    return cert.extensions.get_extension_for_class(kind)


# --- subject strings ----------------------------------------------------------------------


def test_lab_subject_is_encoded_in_windows_order() -> None:
    name = lab.parse_subject("E=test@example.net,CN=SMIME Tester 2048")
    # The string lists the most specific first; the encoding starts from the other end.
    assert [rdn.get_attributes_for_oid(NameOID.COMMON_NAME) != [] for rdn in name.rdns] == [
        True,
        False,
    ]
    assert name.rdns[1].get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == (
        "test@example.net"
    )
    assert name.rfc4514_string() == "1.2.840.113549.1.9.1=test@example.net,CN=SMIME Tester 2048"


def test_subject_all_windows_keys() -> None:
    name = lab.parse_subject("E=a@b.c, CN=Ann, OU=IT, O=Example, L=Town, S=State, C=DE")
    oids = [
        rdn.get_attributes_for_oid(oid)
        for rdn, oid in zip(
            name.rdns,
            [
                NameOID.COUNTRY_NAME,
                NameOID.STATE_OR_PROVINCE_NAME,
                NameOID.LOCALITY_NAME,
                NameOID.ORGANIZATION_NAME,
                NameOID.ORGANIZATIONAL_UNIT_NAME,
                NameOID.COMMON_NAME,
                NameOID.EMAIL_ADDRESS,
            ],
            strict=True,
        )
    ]
    assert [attrs[0].value for attrs in oids] == [
        "DE",
        "State",
        "Town",
        "Example",
        "IT",
        "Ann",
        "a@b.c",
    ]


def test_subject_quoting() -> None:
    name = lab.parse_subject('CN=Ann, O="Example, Inc.", OU="say ""hi""; bye"')
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example, Inc."
    assert name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        'say "hi"; bye'
    )


def test_subject_semicolon_plus_and_oid() -> None:
    name = lab.parse_subject("CN=Ann+SN=Smith; OID.2.5.4.10=Org; 2.5.4.11=Unit")
    assert len(name.rdns) == 3
    assert len(name.rdns[2]) == 2
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Org"
    assert name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "Unit"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Test Root",
        "CN=",
        "CN=a,",
        "CN=a,,O=b",
        "XX=a",
        'CN="unclosed',
        'CN="a" b',
        'CN=a"b',
        "C=USA",
        "E=jörg@example.net",
        "=a",
        "CN=" + "x" * 65,
    ],
)
def test_unparsable_subject(text: str) -> None:
    with pytest.raises(UsageError, match="unparsable subject"):
        lab.parse_subject(text)


def test_subjects_show_the_windows_way_with_rfc4514_escapes() -> None:
    name = lab.parse_subject('E=a@b.c,CN=Ann,O="Example, Inc.",S=Bavaria,C=DE')
    shown = r"E=a@b.c, CN=Ann, O=Example\, Inc., S=Bavaria, C=DE"
    assert names.display_name(name) == shown
    # The same formatter for names read from a CMS message (asn1crypto), e.g. by inspect.
    der = name.public_bytes()
    assert names.display_asn1_name(asn1_x509.Name.load(der)) == shown


def test_printed_subject_with_a_comma_reads_back() -> None:
    name = lab.parse_subject('CN=Ann+SN=Lee,O="Org, Inc.";C=DE')
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Org, Inc."
    shown = names.display_name(name)
    assert shown == r"CN=Ann+SN=Lee, O=Org\, Inc., C=DE"
    assert lab.parse_subject(shown) == name


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r"CN=Org\, Inc.", "Org, Inc."),
        (r"CN=\ padded\ ", " padded "),
        (r"CN=\#1 \+ \; \\ \"q\" \<x\>", '#1 + ; \\ "q" <x>'),
        (r"CN=caf\C3\A9\2C ok", "café, ok"),
        (r"CN=C:\Users", "C:Users"),
    ],
)
def test_subject_backslash_escapes(text: str, value: str) -> None:
    name = lab.parse_subject(text)
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == value
    assert lab.parse_subject(names.display_name(name)) == name


@pytest.mark.parametrize("text", ["CN=a\\", r"CN=\FF\FE"])
def test_bad_subject_escapes(text: str) -> None:
    with pytest.raises(UsageError, match="unparsable subject"):
        lab.parse_subject(text)


def test_unknown_attributes_show_as_oid_and_read_back() -> None:
    name = lab.parse_subject("OID.1.2.3.4=x, CN=Ann")
    assert names.display_name(name) == "OID.1.2.3.4=x, CN=Ann"
    assert lab.parse_subject(names.display_name(name)) == name


_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20
).filter(lambda v: v.strip() != "")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["CN", "O", "OU", "L", "S"]), _values), min_size=1, max_size=5
    )
)
def test_format_then_parse_round_trip(pairs: list[tuple[str, str]]) -> None:
    oids = {
        "CN": NameOID.COMMON_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "L": NameOID.LOCALITY_NAME,
        "S": NameOID.STATE_OR_PROVINCE_NAME,
    }
    name = x509.Name([x509.NameAttribute(oids[key], value) for key, value in pairs])
    assert lab.parse_subject(names.display_name(name)) == name


# --- options ------------------------------------------------------------------------------


def test_default_key_usage_is_all_six() -> None:
    usage = lab.parse_key_usage(lab.DEFAULT_ROOT_KEY_USAGE)
    assert usage == x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=True,
        key_agreement=True,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def test_key_usage_none_and_case() -> None:
    assert lab.parse_key_usage("None") is None
    usage = lab.parse_key_usage("certsign, CRLSIGN")
    assert usage is not None and usage.key_cert_sign and usage.crl_sign
    assert not usage.digital_signature


@pytest.mark.parametrize("text", ["", "CertSign,Bogus", "EncipherOnly", " , "])
def test_bad_key_usage(text: str) -> None:
    with pytest.raises(UsageError):
        lab.parse_key_usage(text)


@pytest.mark.parametrize(
    ("algorithm", "length"),
    [
        ("rsa", 1024),
        ("rsa", 2047),
        ("rsa", 2049),
        ("rsa", 16392),
        ("rsa", 0),
        ("ecdsa-p256", 384),
        ("ecdsa-p384", 2048),
        ("dsa", None),
    ],
)
def test_bad_key_spec(algorithm: str, length: int | None) -> None:
    with pytest.raises(UsageError):
        lab.KeySpec(algorithm, length).validate()


def test_key_spec_defaults() -> None:
    assert lab.KeySpec().bits == 2048
    assert lab.KeySpec("ecdsa-p384").bits == 384
    lab.KeySpec("ecdsa-p256", 256).validate()
    lab.KeySpec("rsa", 3072).validate()


@pytest.mark.parametrize("days", [0, -1, 10**7, 10**12])
def test_bad_days(days: int) -> None:
    with pytest.raises(UsageError, match="--days"):
        lab.make_root(lab.RootSpec(days=days), now=NOW)


def test_bad_hash() -> None:
    with pytest.raises(UsageError, match="--hash"):
        lab.make_root(lab.RootSpec(hash="md5"), now=NOW)


@pytest.mark.parametrize(
    "email", ["", "nobody", "@example.net", "a@", "a b@c.d", "jö@x.de", "<a@b.c>"]
)
def test_bad_email(email: str, signer: lab.Signer) -> None:
    with pytest.raises(UsageError, match="--email"):
        lab.issue_user(lab.UserSpec(email=email), signer, now=NOW)


def test_random_serial_is_positive_16_bytes() -> None:
    serials = {lab.random_serial() for _ in range(2000)}
    assert len(serials) == 2000
    for serial in serials:
        assert 0 < serial < 2**127
        assert (serial.bit_length() + 8) // 8 == 16  # DER INTEGER content length


# --- the root -----------------------------------------------------------------------------


def test_root_fields(root: lab.Issued) -> None:
    cert = root.cert
    assert cert.version == x509.Version.v3
    assert cert.subject == cert.issuer == lab.parse_subject("CN=Test Root V1")
    assert root.subject == "CN=Test Root V1"
    assert cert.not_valid_before_utc == NOW - dt.timedelta(minutes=10)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=7300)
    assert 0 < cert.serial_number and (cert.serial_number.bit_length() + 8) // 8 == 16
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert isinstance(root.key, rsa.RSAPrivateKey) and root.key.key_size == 2048
    cert.verify_directly_issued_by(cert)
    assert len(cert.extensions) == 3
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=None)
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value == lab.parse_key_usage(lab.DEFAULT_ROOT_KEY_USAGE)
    ski = ext(cert, x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(root.key.public_key())
    assert root.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert root.chain == ()


def test_root_options() -> None:
    spec = lab.RootSpec(
        subject="CN=Lab EC Root,O=Example,C=DE",
        key=lab.KeySpec("ecdsa-p384"),
        hash="sha384",
        days=30,
        key_usage="CertSign,CRLSign",
    )
    root = lab.make_root(spec, now=NOW)
    assert isinstance(root.key, ec.EllipticCurvePrivateKey)
    assert root.key.curve.name == "secp384r1"
    assert isinstance(root.cert.signature_hash_algorithm, hashes.SHA384)
    assert root.cert.not_valid_after_utc == NOW + dt.timedelta(days=30)
    usage = ext(root.cert, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert root.subject == "CN=Lab EC Root, O=Example, C=DE"


def test_root_without_key_usage() -> None:
    root = lab.make_root(lab.RootSpec(key=lab.KeySpec("ecdsa-p256"), key_usage="None"), now=NOW)
    with pytest.raises(x509.ExtensionNotFound):
        ext(root.cert, x509.KeyUsage)


# --- the user -----------------------------------------------------------------------------


def test_rsa_user_fields(rsa_user: lab.Issued, root: lab.Issued) -> None:
    cert = rsa_user.cert
    assert cert.subject == lab.parse_subject("E=test@example.net,CN=SMIME Tester 2048")
    assert cert.issuer == root.cert.subject
    assert cert.not_valid_before_utc == NOW - dt.timedelta(minutes=10)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert 0 < cert.serial_number and (cert.serial_number.bit_length() + 8) // 8 == 16
    assert cert.serial_number != root.cert.serial_number
    cert.verify_directly_issued_by(root.cert)
    assert rsa_user.chain == (root.cert,)
    assert [e.oid.dotted_string for e in cert.extensions] == [
        "2.5.29.19",
        "2.5.29.15",
        "2.5.29.37",
        "2.5.29.17",
        "1.2.840.113549.1.9.15",
        "2.5.29.14",
        "2.5.29.35",
    ]
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=False, path_length=None)
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value == x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical and list(eku.value) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert isinstance(san.value, x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.RFC822Name) == ["test@example.net"]
    (upn,) = san.value.get_values_for_type(x509.OtherName)
    assert upn.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3"
    assert asn1_core.UTF8String.load(upn.value).native == "tester@corp.example"
    ski = ext(cert, x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert rsa_user.key is not None
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(rsa_user.key.public_key())
    aki = ext(cert, x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert isinstance(aki.value, x509.AuthorityKeyIdentifier)
    root_ski = ext(root.cert, x509.SubjectKeyIdentifier).value
    assert isinstance(root_ski, x509.SubjectKeyIdentifier)
    assert aki.value.key_identifier == root_ski.digest
    assert aki.value.authority_cert_issuer is None


def test_smime_capabilities_extension(rsa_user: lab.Issued) -> None:
    caps = rsa_user.cert.extensions.get_extension_for_oid(lab.SMIME_CAPABILITIES_OID)
    assert not caps.critical
    assert isinstance(caps.value, x509.UnrecognizedExtension)
    parsed = asn1_cms.SMIMECapabilites.load(caps.value.value)
    assert [(c["capability_id"].dotted, c["parameters"].native) for c in parsed] == [
        ("2.16.840.1.101.3.4.1.46", None),  # aes256-GCM
        ("2.16.840.1.101.3.4.1.6", None),  # aes128-GCM
        ("2.16.840.1.101.3.4.1.42", None),  # aes256-CBC
        ("2.16.840.1.101.3.4.1.22", None),  # aes192-CBC
        ("2.16.840.1.101.3.4.1.2", None),  # aes128-CBC
        ("1.2.840.113549.1.1.7", None),  # RSAES-OAEP
    ]


def test_smime_capabilities_extension_matches_signatures(rsa_user: lab.Issued) -> None:
    """The extension is the signed attribute that ``sign`` writes: one list, one order."""
    from smimecli.cms.signed import SMIME_CAPABILITIES

    caps = rsa_user.cert.extensions.get_extension_for_oid(lab.SMIME_CAPABILITIES_OID)
    assert isinstance(caps.value, x509.UnrecognizedExtension)
    parsed = asn1_cms.SMIMECapabilites.load(caps.value.value)
    assert [c["capability_id"].native for c in parsed] == [n for n, _ in SMIME_CAPABILITIES]


def test_ec_user_key_agreement(ec_user: lab.Issued, root: lab.Issued) -> None:
    cert = ec_user.cert
    assert isinstance(ec_user.key, ec.EllipticCurvePrivateKey)
    assert ec_user.key.curve.name == "secp256r1"
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value == x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=True,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    # Default subject: E=ADDR,CN=ADDR; no UPN unless asked.
    assert ec_user.subject == "E=ec@example.net, CN=ec@example.net"
    san = ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert list(san) == [x509.RFC822Name("ec@example.net")]
    cert.verify_directly_issued_by(root.cert)


def test_default_subject_of_a_long_address(signer: lab.Signer) -> None:
    email = "a" * 60 + "@" + "example.net"
    user = lab.issue_user(lab.UserSpec(email=email, key=lab.KeySpec("ecdsa-p256")), signer)
    assert user.subject == f"E={email}, CN={'a' * 60}"


def test_user_options(signer: lab.Signer) -> None:
    spec = lab.UserSpec(
        email="p384@example.net",
        key=lab.KeySpec("ecdsa-p384"),
        hash="sha512",
        days=7,
        smime_capabilities=False,
    )
    user = lab.issue_user(spec, signer, now=NOW)
    assert isinstance(user.cert.signature_hash_algorithm, hashes.SHA512)
    assert user.cert.not_valid_after_utc == NOW + dt.timedelta(days=7)
    with pytest.raises(x509.ExtensionNotFound):
        user.cert.extensions.get_extension_for_oid(lab.SMIME_CAPABILITIES_OID)


def test_ec_signer_issues_rsa_user() -> None:
    ec_root = lab.make_root(lab.RootSpec(key=lab.KeySpec("ecdsa-p256")), now=NOW)
    user = lab.issue_user(
        lab.UserSpec(email="u@example.net"),
        lab.Signer.checked(ec_root.cert, ec_root.key),
        now=NOW,
    )
    user.cert.verify_directly_issued_by(ec_root.cert)
    assert isinstance(user.cert.signature_hash_algorithm, hashes.SHA256)


def test_notices_outlive_issuer_and_email_mismatch(signer: lab.Signer) -> None:
    """Warnings come back as notices in the result; the library logs nothing."""
    handler = _Collect()
    logger = logging.getLogger("smimecli")
    logger.addHandler(handler)
    try:
        user = lab.issue_user(
            lab.UserSpec(email="a@example.net", subject="E=b@example.net,CN=B", days=9000),
            signer,
            now=NOW,
        )
    finally:
        logger.removeHandler(handler)
    assert handler.messages == []
    assert [n.code for n in user.notices] == ["outlives-issuer", "subject-email-differs"]
    assert "outlives its issuer" in user.notices[0].text
    assert user.notices[1].text == (
        "the subject's E= (b@example.net) differs from --email a@example.net; "
        "mail clients match the latter"
    )


def test_notice_ca_outlives_issuer(root: lab.Issued, signer: lab.Signer) -> None:
    ca = lab.make_ca(lab.CASpec(days=9000), signer, now=NOW)
    assert [n.code for n in ca.notices] == ["outlives-issuer"]
    assert ca.notices[0].text == (
        f"the new certificate (until {ca.cert.not_valid_after_utc.date()}) outlives its "
        f"issuer (until {root.cert.not_valid_after_utc.date()}); "
        "clients stop trusting it when the issuer expires"
    )
    assert lab.make_ca(lab.CASpec(days=30), signer, now=NOW).notices == ()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# --- signers ------------------------------------------------------------------------------


def test_signer_not_a_ca(rsa_user: lab.Issued) -> None:
    with pytest.raises(DataError, match="not a CA"):
        lab.Signer.checked(rsa_user.cert, rsa_user.key)


def test_signer_without_key(root: lab.Issued) -> None:
    with pytest.raises(DataError, match="no private key"):
        lab.Signer.checked(root.cert, None)


def test_signer_with_foreign_key(root: lab.Issued, rsa_user: lab.Issued) -> None:
    with pytest.raises(DataError, match="does not belong"):
        lab.Signer.checked(root.cert, rsa_user.key)


def test_signer_ca_without_cert_sign() -> None:
    crl_only = lab.make_root(
        lab.RootSpec(key=lab.KeySpec("ecdsa-p256"), key_usage="CRLSign"), now=NOW
    )
    with pytest.raises(DataError, match="keyCertSign"):
        lab.Signer.checked(crl_only.cert, crl_only.key)


# --- absolute dates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2031-02-03", dt.datetime(2031, 2, 3, tzinfo=dt.UTC)),
        ("2031-02-03T04:05:06Z", dt.datetime(2031, 2, 3, 4, 5, 6, tzinfo=dt.UTC)),
        ("2031-02-03T04:05:06", dt.datetime(2031, 2, 3, 4, 5, 6, tzinfo=dt.UTC)),
        ("2031-02-03T06:05:06+02:00", dt.datetime(2031, 2, 3, 4, 5, 6, tzinfo=dt.UTC)),
    ],
)
def test_parse_date_reads_iso_8601_in_utc(text: str, expected: dt.datetime) -> None:
    assert lab.parse_date(text, "--not-after") == expected


@pytest.mark.parametrize("text", ["", "tomorrow", "2031-13-01", "31.01.2031", "2031-02-30"])
def test_parse_date_refuses_other_text(text: str) -> None:
    with pytest.raises(UsageError, match=r"--not-before .* is not an ISO 8601 date"):
        lab.parse_date(text, "--not-before")


def test_absolute_dates_are_used_exactly() -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
    root = lab.make_root(lab.RootSpec(not_before=start, not_after=end), now=NOW)
    assert root.cert.not_valid_before_utc == start
    assert root.cert.not_valid_after_utc == end


def test_days_count_from_not_before(signer: lab.Signer) -> None:
    start = dt.datetime(2030, 3, 1, tzinfo=dt.UTC)
    user = lab.issue_user(
        lab.UserSpec(email="a@example.net", days=10, not_before=start), signer, now=NOW
    )
    assert user.cert.not_valid_before_utc == start
    assert user.cert.not_valid_after_utc == start + dt.timedelta(days=10)


def test_not_after_must_follow_not_before(signer: lab.Signer) -> None:
    start = dt.datetime(2030, 3, 1, tzinfo=dt.UTC)
    with pytest.raises(UsageError, match="--not-after 2030-03-01T00:00:00Z must lie after"):
        lab.make_root(lab.RootSpec(not_before=start, not_after=start), now=NOW)
    with pytest.raises(UsageError, match="must lie after"):
        lab.issue_user(
            lab.UserSpec(email="a@example.net", not_after=NOW - dt.timedelta(days=1)),
            signer,
            now=NOW,
        )
    with pytest.raises(UsageError, match="must lie after"):
        lab.make_ca(lab.CASpec(not_after=NOW - dt.timedelta(hours=1)), signer, now=NOW)


# --- intermediate CA ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def intermediate(signer: lab.Signer) -> lab.Issued:
    return lab.make_ca(lab.CASpec(crl_url="http://crl.example/root.crl"), signer, now=NOW)


def test_intermediate_ca_profile(intermediate: lab.Issued, root: lab.Issued) -> None:
    cert = intermediate.cert
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = root.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest
    assert cert.issuer == root.cert.subject
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for n in points[0].full_name or []] == ["http://crl.example/root.crl"]
    cert.verify_directly_issued_by(root.cert)
    assert intermediate.chain == (root.cert,)


def test_intermediate_ca_issues_users(intermediate: lab.Issued, root: lab.Issued) -> None:
    ca = lab.Signer.checked(intermediate.cert, intermediate.key, intermediate.chain)
    user = lab.issue_user(lab.UserSpec(email="a@example.net"), ca, now=NOW)
    user.cert.verify_directly_issued_by(intermediate.cert)
    assert user.chain == (intermediate.cert, root.cert)


def test_ca_key_usage_needs_cert_sign(signer: lab.Signer) -> None:
    with pytest.raises(UsageError, match="must include CertSign"):
        lab.make_ca(lab.CASpec(key_usage="DigitalSignature"), signer, now=NOW)
    with pytest.raises(UsageError, match="must include CertSign"):
        lab.make_ca(lab.CASpec(key_usage="None"), signer, now=NOW)


@pytest.mark.parametrize("url", ["ftp://x/crl", "crl.example/x.crl", "http://ex\u00e4mple/x"])
def test_crl_url_must_be_http(signer: lab.Signer, url: str) -> None:
    with pytest.raises(UsageError, match="--crl-url"):
        lab.issue_user(lab.UserSpec(email="a@example.net", crl_url=url), signer, now=NOW)


# --- CSR ----------------------------------------------------------------------------------


def _csr(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    subject: str = "E=req@example.net,CN=Requester",
    emails: tuple[str, ...] = ("req@example.net",),
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(lab.parse_subject(subject))
    if emails:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(e) for e in emails]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def test_csr_key_and_names_are_certified(signer: lab.Signer) -> None:
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    data = _csr(key, emails=("req@example.net", "alias@example.net")).public_bytes(
        serialization.Encoding.DER
    )
    request = lab.load_csr(data, "req.der")
    user = lab.issue_user(lab.UserSpec(email=None, csr=request), signer, now=NOW)
    assert user.key is None
    assert user.cert.public_key() == key.public_key()
    assert user.cert.subject == request.subject
    san = user.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["req@example.net", "alias@example.net"]
    usage = user.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_agreement and not usage.key_encipherment


def test_csr_with_email_and_subject_options(signer: lab.Signer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    request = _csr(key, subject="CN=Nobody", emails=())
    spec = lab.UserSpec(email="given@example.net", subject="E=given@example.net,CN=G", csr=request)
    user = lab.issue_user(spec, signer, now=NOW)
    assert user.subject == "E=given@example.net, CN=G"
    san = user.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["given@example.net"]
    with pytest.raises(UsageError, match="names no mail address"):
        lab.issue_user(lab.UserSpec(email=None, csr=request), signer, now=NOW)


def test_csr_with_a_bad_signature_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = bytearray(_csr(key).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    with pytest.raises(DataError, match=r"req\.der: the request's signature does not verify"):
        lab.load_csr(bytes(der), "req.der")


def test_csr_garbage_and_short_keys_are_refused() -> None:
    from cryptography.hazmat.primitives import serialization

    with pytest.raises(DataError, match=r"x\.csr is not a PKCS#10 certificate request"):
        lab.load_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "x.csr")
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = _csr(short).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(DataError, match="1024 bits is too short"):
        lab.load_csr(pem, "short.csr")


# --- strict profile -----------------------------------------------------------------------


def test_strict_profile_extensions(signer: lab.Signer) -> None:
    spec = lab.UserSpec(
        email="a@example.net",
        subject="E=b@example.net,CN=c@example.net",
        profile="strict",
        key=lab.KeySpec("ecdsa-p256"),
    )
    cert = lab.issue_user(spec, signer, now=NOW).cert
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.23.140.1.5.1.3"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # Every address of the subject is repeated in the SAN.
    addresses = san.get_values_for_type(x509.RFC822Name)
    assert addresses[0] == "a@example.net"
    assert sorted(addresses) == ["a@example.net", "b@example.net", "c@example.net"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_agreement and usage.value.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_powershell_profile_has_no_policies(rsa_user: lab.Issued) -> None:
    with pytest.raises(x509.ExtensionNotFound):
        rsa_user.cert.extensions.get_extension_for_class(x509.CertificatePolicies)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"upn": "u@corp.example"}, "leave out --upn"),
        ({"subject": "E=a@example.net,CN=A,O=Org"}, "not O"),
        ({"subject": "E=a@example.net,CN=Alice"}, "CN to be a mail address"),
        ({"days": 825}, "under 825 days"),
        ({"profile": "windows"}, "unknown --profile 'windows'"),
    ],
)
def test_strict_profile_refusals(signer: lab.Signer, changes: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"profile": "strict", **changes}
    spec = lab.UserSpec(email="a@example.net", **options)
    with pytest.raises(UsageError, match=message):
        lab.issue_user(spec, signer, now=NOW)


def test_strict_profile_allows_824_days(signer: lab.Signer) -> None:
    spec = lab.UserSpec(email="a@example.net", profile="strict", days=824)
    cert = lab.issue_user(spec, signer, now=NOW).cert
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < dt.timedelta(days=825)


# --- CRL ----------------------------------------------------------------------------------


def test_crl_lists_revoked_serials(signer: lab.Signer, root: lab.Issued) -> None:
    revoked = [lab.Revoked(12345, NOW - dt.timedelta(days=1)), lab.Revoked(99, NOW)]
    crl = lab.make_crl(signer, revoked, next_update_days=7, now=NOW)
    root_key = root.cert.public_key()
    assert isinstance(root_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(root_key)
    assert crl.issuer == root.cert.subject
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + dt.timedelta(days=7)
    assert sorted(r.serial_number for r in crl) == [99, 12345]
    assert crl.get_revoked_certificate_by_serial_number(12345) is not None
    crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    later = lab.make_crl(signer, [], now=NOW + dt.timedelta(seconds=1))
    assert later.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number


def test_crl_needs_crl_sign(signer: lab.Signer) -> None:
    ca = lab.make_ca(lab.CASpec(key_usage="CertSign"), signer, now=NOW)
    with pytest.raises(DataError, match="may not sign CRLs"):
        lab.make_crl(lab.Signer.checked(ca.cert, ca.key), [], now=NOW)
    with pytest.raises(UsageError, match="--next-update must be at least 1"):
        lab.make_crl(signer, [], next_update_days=0, now=NOW)
