"""Lab certificates built like PowerShell's ``New-SelfSignedCertificate``.

A self-signed root CA and S/MIME user certificates issued from it, with the extensions
Outlook, Thunderbird, OpenSSL and gpgsm expect (RFC 5280 profile, RFC 8550 section 4.4 for
S/MIME end-entity certificates). Everything is validated before any key is generated, so a
bad option costs nothing and writes nothing.

Subject strings are read the Windows way (``CertStrToName`` with X.500 names): the most
specific attribute first, ``E=`` for emailAddress, ``S=`` for stateOrProvinceName, values
quoted with double quotes (Windows) or escaped with backslashes (RFC 4514, the way smimecli
shows subjects) when they hold a separator. The certificate encodes the RDNs in
the reverse order (country first), exactly as Windows does, so that ``openssl x509 -subject``
shows ``CN = SMIME Tester 2048, emailAddress = test@example.net`` for the lab subject
``E=test@example.net,CN=SMIME Tester 2048``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from smimecli.certs import names
from smimecli.certs.formats import is_ca
from smimecli.certs.keys import PrivateKey, cert_matches_key
from smimecli.errors import DataError, UsageError

log = logging.getLogger("smimecli")


DEFAULT_ROOT_SUBJECT: Final = "CN=Test Root V1"
DEFAULT_ROOT_KEY_USAGE: Final = (
    "CRLSign,CertSign,KeyAgreement,DataEncipherment,KeyEncipherment,DigitalSignature"
)
DEFAULT_ROOT_DAYS: Final = 7300
DEFAULT_USER_DAYS: Final = 365
RSA_MIN_BITS: Final = 2048
RSA_MAX_BITS: Final = 16384

KEY_ALGORITHMS: Final = ("rsa", "ecdsa-p256", "ecdsa-p384")
_CURVES: Final[dict[str, tuple[type[ec.EllipticCurve], int]]] = {
    "ecdsa-p256": (ec.SECP256R1, 256),
    "ecdsa-p384": (ec.SECP384R1, 384),
}
SignatureHash: TypeAlias = hashes.SHA256 | hashes.SHA384 | hashes.SHA512
HASHES: Final[dict[str, type[SignatureHash]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# Microsoft's User Principal Name otherName (used by Windows logon and Exchange).
UPN_OID: Final = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
# RFC 8551 section 2.5.2: sMIMECapabilities, here as a certificate extension the way
# Windows CAs write it, so that senders pick a cipher the recipient reads.
SMIME_CAPABILITIES_OID: Final = ObjectIdentifier("1.2.840.113549.1.9.15")

# Clock skew allowance: notBefore lies this far in the past.
BACKDATE: Final = dt.timedelta(minutes=10)

# --- subject strings ----------------------------------------------------------------------

# The attribute names --subject takes: the labels subjects are shown with (one table, in
# smimecli.certs.names), plus other common spellings of the same attributes.
_NAME_KEYS: Final[dict[str, ObjectIdentifier]] = {
    **{label: ObjectIdentifier(oid) for oid, label in names.NAME_LABELS.items()},
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "TITLE": NameOID.TITLE,
    "GN": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
}
# Attributes encoded as IA5String, which only holds ASCII (RFC 5280 appendix A.1).
_ASCII_ONLY: Final = {NameOID.EMAIL_ADDRESS, NameOID.DOMAIN_COMPONENT}
_SEPARATORS: Final = ",;+"


def _subject_error(text: str, why: str) -> UsageError:
    return UsageError(
        f"unparsable subject {text!r}: {why} "
        '(write it like "E=user@example.net,CN=Name,O=\\"Example, Inc.\\",C=US")'
    )


def _split_subject(text: str) -> list[list[tuple[str, str]]]:
    """Cut a Windows X.500 string into RDNs of (key, value) pairs, in string order.

    ``,`` and ``;`` separate RDNs, ``+`` separates the attributes of a multi-valued RDN. A
    value in double quotes may hold separators; ``""`` inside quotes is one quote character.
    Outside quotes, RFC 4514 section 3 escapes work too (``O=Example\\, Inc.``, ``\\2C``), so
    that every subject smimecli prints (smimecli.certs.names.display_name) reads back.
    """
    rdns: list[list[tuple[str, str]]] = [[]]
    i, n = 0, len(text)
    while True:
        eq = text.find("=", i)
        if eq < 0:
            raise _subject_error(text, f"{text[i:].strip()!r} has no '='")
        key = text[i:eq].strip()
        if not key or any(sep in key for sep in _SEPARATORS):
            bad = key.split(",")[0].split(";")[0].split("+")[0].strip() or key
            raise _subject_error(text, f"{bad!r} has no '=' or an empty name")
        j = eq + 1
        while j < n and text[j] == " ":
            j += 1
        if j < n and text[j] == '"':
            chars: list[str] = []
            j += 1
            while True:
                if j >= n:
                    raise _subject_error(text, f"the quoted value of {key} is not closed")
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        chars.append('"')
                        j += 2
                        continue
                    j += 1
                    break
                chars.append(text[j])
                j += 1
            value = "".join(chars)
            while j < n and text[j] == " ":
                j += 1
            if j < n and text[j] not in _SEPARATORS:
                raise _subject_error(text, f"unexpected text after the quoted value of {key}")
        else:
            value, j = _unquoted_value(text, j, key)
        if not value:
            raise _subject_error(text, f"{key} has an empty value")
        rdns[-1].append((key, value))
        if j >= n:
            return rdns
        if text[j] != "+":
            rdns.append([])
        i = j + 1
        if not text[i:].strip():
            raise _subject_error(text, "it ends with a separator")


_HEX_PAIR: Final = re.compile(r"(?:\\[0-9A-Fa-f]{2})+")


def _unquoted_value(text: str, j: int, key: str) -> tuple[str, int]:
    """The value that starts at ``text[j]`` up to the next unescaped separator, and where it
    ends. A backslash takes the next character literally, or a run of ``\\XX`` hex pairs
    as UTF-8 (RFC 4514 section 3); spaces around the value go, escaped ones stay."""
    chars: list[str] = []
    escaped: list[int] = []  # where escaped characters went: spaces there are kept
    n = len(text)
    while j < n and text[j] not in _SEPARATORS:
        if text[j] == '"':
            raise _subject_error(text, f"a quote inside the value of {key}")
        if text[j] == "\\":
            pairs = _HEX_PAIR.match(text, j)
            if pairs:
                raw = bytes.fromhex(pairs.group().replace("\\", ""))
                try:
                    decoded = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise _subject_error(text, f"the escapes in {key} are not UTF-8") from None
                j = pairs.end()
            elif j + 1 < n:
                decoded = text[j + 1]
                j += 2
            else:
                raise _subject_error(text, f"the value of {key} ends with a backslash")
            escaped.extend(range(len(chars), len(chars) + len(decoded)))
            chars.extend(decoded)
            continue
        chars.append(text[j])
        j += 1
    first = escaped[0] if escaped else len(chars)
    last = escaped[-1] + 1 if escaped else 0
    start = 0
    while start < first and chars[start] == " ":
        start += 1
    end = len(chars)
    while end > max(start, last) and chars[end - 1] == " ":
        end -= 1
    return "".join(chars[start:end]), j


def _name_oid(text: str, key: str) -> ObjectIdentifier:
    upper = key.upper()
    if upper in _NAME_KEYS:
        return _NAME_KEYS[upper]
    dotted = key[4:] if upper.startswith("OID.") else key
    parts = dotted.split(".")
    if len(parts) >= 2 and all(part.isdigit() for part in parts):
        return ObjectIdentifier(dotted)
    known = ", ".join(sorted(set(names.NAME_LABELS.values())))
    raise _subject_error(text, f"unknown attribute {key!r} (use {known} or OID.n.n.n)")


def parse_subject(text: str) -> x509.Name:
    """Parse a Windows-style subject string into a certificate Name.

    The string lists the most specific attribute first (as Windows and RFC 4514 show it);
    the Name holds the RDNs in the reverse, encoded order, as ``New-SelfSignedCertificate``
    writes them.

    Raises:
        UsageError: the string cannot be parsed (exit 64).
    """
    if not text.strip():
        raise _subject_error(text, "it is empty")
    rdns: list[x509.RelativeDistinguishedName] = []
    for pairs in _split_subject(text):
        attributes = []
        for key, value in pairs:
            oid = _name_oid(text, key)
            if oid in _ASCII_ONLY and not value.isascii():
                raise _subject_error(text, f"{key} must be ASCII")
            try:
                attributes.append(x509.NameAttribute(oid, value))
            except ValueError as exc:
                raise _subject_error(text, f"bad {key} value: {exc}") from None
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(list(reversed(rdns)))


# --- options ------------------------------------------------------------------------------

# New-SelfSignedCertificate -KeyUsage names -> x509.KeyUsage fields.
_KEY_USAGE_NAMES: Final[dict[str, str]] = {
    "digitalsignature": "digital_signature",
    "nonrepudiation": "content_commitment",
    "keyencipherment": "key_encipherment",
    "dataencipherment": "data_encipherment",
    "keyagreement": "key_agreement",
    "certsign": "key_cert_sign",
    "crlsign": "crl_sign",
    "encipheronly": "encipher_only",
    "decipheronly": "decipher_only",
}


def parse_key_usage(text: str) -> x509.KeyUsage | None:
    """Parse a comma list of Windows key usage names; ``None`` alone means no extension.

    Raises:
        UsageError: an unknown name, or EncipherOnly/DecipherOnly without KeyAgreement.
    """
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError("--key-usage is empty (give names like CertSign,CRLSign, or None)")
    if [name.lower() for name in names] == ["none"]:
        return None
    flags = dict.fromkeys(_KEY_USAGE_NAMES.values(), False)
    for name in names:
        attribute = _KEY_USAGE_NAMES.get(name.lower())
        if attribute is None:
            known = (
                "CRLSign, CertSign, KeyAgreement, DataEncipherment, KeyEncipherment, "
                "DigitalSignature, NonRepudiation, EncipherOnly, DecipherOnly, None"
            )
            raise UsageError(f"unknown key usage {name!r} in --key-usage (use {known})")
        flags[attribute] = True
    try:
        return x509.KeyUsage(**flags)
    except ValueError as exc:
        raise UsageError(f"bad --key-usage {text!r}: {exc}") from None


@dataclass(frozen=True)
class KeySpec:
    """Which key pair to generate: ``rsa`` with a length, or an ECDSA curve.

    ``length`` None means 2048 for RSA and the curve size for ECDSA; for ECDSA a given
    length must equal the curve size (256 or 384).
    """

    algorithm: str = "rsa"
    length: int | None = None

    def validate(self) -> None:
        """Raise UsageError (64) for an unknown algorithm or an unsupported length."""
        if self.algorithm not in KEY_ALGORITHMS:
            raise UsageError(
                f"unknown --key-algorithm {self.algorithm!r} (use {', '.join(KEY_ALGORITHMS)})"
            )
        if self.algorithm == "rsa":
            bits = self.bits
            if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS or bits % 8:
                raise UsageError(
                    f"--key-length {bits} is not supported for RSA "
                    f"(use {RSA_MIN_BITS} to {RSA_MAX_BITS}, a multiple of 8)"
                )
        else:
            size = _CURVES[self.algorithm][1]
            if self.length is not None and self.length != size:
                raise UsageError(
                    f"--key-length {self.length} does not fit {self.algorithm} "
                    f"(leave it out or give {size})"
                )

    @property
    def bits(self) -> int:
        """The key size in bits."""
        if self.algorithm in _CURVES:
            return _CURVES[self.algorithm][1]
        return RSA_MIN_BITS if self.length is None else self.length

    def generate(self) -> PrivateKey:
        """A new private key (validate() first)."""
        if self.algorithm == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=self.bits)
        return ec.generate_private_key(_CURVES[self.algorithm][0]())


def _check_hash(name: str) -> SignatureHash:
    try:
        return HASHES[name]()
    except KeyError:
        raise UsageError(f"unknown --hash {name!r} (use {', '.join(HASHES)})") from None


def parse_date(text: str, option: str) -> dt.datetime:
    """Read an ISO 8601 date (``2030-01-31``, midnight) or date-time, in UTC.

    A date-time without an offset is UTC; one with an offset is converted to UTC.

    Raises:
        UsageError: the text is not an ISO 8601 date or date-time (exit 64).
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        if len(value) == 10:
            moment = dt.datetime.combine(dt.date.fromisoformat(value), dt.time())
        else:
            moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not an ISO 8601 date or date-time "
            "(write 2030-01-31 or 2030-01-31T12:00:00Z; times are UTC)"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _validity(
    days: int,
    now: dt.datetime,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tuple[dt.datetime, dt.datetime]:
    """notBefore 10 minutes back (clock skew), notAfter ``days`` from now.

    ``not_before`` / ``not_after`` (``--not-before`` / ``--not-after``) replace either end;
    with only ``--not-before``, ``days`` count from it.
    """
    if days <= 0:
        raise UsageError(f"--days must be at least 1 (got {days})")
    start = now - BACKDATE if not_before is None else not_before
    if not_after is None:
        try:
            end: dt.datetime | None = (now if not_before is None else not_before) + dt.timedelta(
                days=days
            )
        except OverflowError:
            end = None
        # RFC 5280 section 4.1.2.5: GeneralizedTime ends with the year 9999.
        if end is None or end.year > 9999:
            raise UsageError(f"--days {days} reaches beyond the year 9999")
    else:
        end = not_after
    if end <= start:
        raise UsageError(
            f"--not-after {end:%Y-%m-%dT%H:%M:%SZ} must lie after "
            f"--not-before {start:%Y-%m-%dT%H:%M:%SZ}"
        )
    return start, end


def random_serial() -> int:
    """A random positive serial number of exactly 16 bytes (RFC 5280 section 4.1.2.2).

    The first byte is in 0x01..0x7F: the high bit clear keeps the INTEGER positive without
    a leading zero byte, and a non-zero first byte keeps the DER length at 16.
    """
    raw = bytearray(os.urandom(16))
    raw[0] = raw[0] % 0x7F + 1
    return int.from_bytes(raw, "big")


def _check_email(email: str) -> None:
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or not email.isascii()
        or any(ch.isspace() or ch in '<>,;"' for ch in email)
    ):
        raise UsageError(
            f"--email {email!r} is not a plain ASCII mail address like user@example.net"
        )


# --- results and signers ------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A new certificate with its private key and the CA certificates above it.

    ``key`` is None for a certificate issued for a CSR: its key stays with the requester.
    """

    cert: x509.Certificate
    key: PrivateKey | None
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def thumbprint(self) -> str:
        """The SHA-1 thumbprint in upper-case hex, as Windows shows it."""
        return names.thumbprint(self.cert)

    @property
    def subject(self) -> str:
        """The subject in the Windows order."""
        return names.display_name(self.cert.subject)


@dataclass(frozen=True)
class Signer:
    """A CA certificate with its private key, checked to be able to issue."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = field(default=())

    @classmethod
    def checked(
        cls,
        cert: x509.Certificate,
        key: object,
        chain: tuple[x509.Certificate, ...] = (),
        *,
        where: str = "the signer",
    ) -> Signer:
        """Return a Signer after checking that ``cert`` is a CA whose key is ``key``.

        Raises:
            DataError: not a CA, no usable private key, or a key of another certificate (65).
        """
        what = f"{where} ({names.display_name(cert.subject)})"
        if not is_ca(cert):
            raise DataError(f"{what} is not a CA certificate (basicConstraints CA:TRUE missing)")
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.key_cert_sign:
            raise DataError(f"{what} may not sign certificates (keyUsage lacks keyCertSign)")
        if key is None:
            raise DataError(f"{what} has no private key; give a .pfx with the key")
        if not isinstance(key, PrivateKey):
            raise DataError(f"{what} has a {type(key).__name__}; only RSA and EC keys can sign")
        if not cert_matches_key(cert, key):
            raise DataError(f"{what}: the private key does not belong to the certificate")
        return cls(cert, key, chain)


# --- building -----------------------------------------------------------------------------

PROFILES: Final = ("powershell", "strict")
# CA/Browser Forum S/MIME Baseline Requirements 7.1.6.1: mailbox-validated, strict.
MAILBOX_STRICT_OID: Final = ObjectIdentifier("2.23.140.1.5.1.3")
# S/MIME BR 6.3.2: a strict certificate's validity period is at most 825 days.
STRICT_MAX_DAYS: Final = 825
DEFAULT_CA_SUBJECT: Final = "CN=Test Intermediate CA V1"
DEFAULT_CA_KEY_USAGE: Final = "CertSign,CRLSign,DigitalSignature"
DEFAULT_CA_DAYS: Final = 3650
DEFAULT_CRL_DAYS: Final = 30


def _check_crl_url(url: str | None) -> None:
    if url is not None and not (url.startswith(("http://", "https://")) and url.isascii()):
        raise UsageError(f"--crl-url {url!r} must be an http:// or https:// URL")


def _crl_distribution_points(url: str) -> x509.CRLDistributionPoints:
    """RFC 5280 section 4.2.1.13: one distribution point with a full URI name."""
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def _authority_key_identifier(signer: Signer) -> x509.AuthorityKeyIdentifier:
    """The issuer's SKI when it has one, else one computed from its key (RFC 5280 4.2.1.1)."""
    try:
        issuer_ski = signer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key())


def _warn_outlives(not_after: dt.datetime, signer: Signer) -> None:
    if not_after > signer.cert.not_valid_after_utc:
        log.warning(
            "the new certificate (until %s) outlives its issuer (until %s); "
            "clients stop trusting it when the issuer expires",
            not_after.date(),
            signer.cert.not_valid_after_utc.date(),
        )


@dataclass(frozen=True)
class RootSpec:
    """What ``gen-root`` builds; validate() checks every option before any key exists."""

    subject: str = DEFAULT_ROOT_SUBJECT
    key: KeySpec = field(default_factory=KeySpec)
    hash: str = "sha256"
    days: int = DEFAULT_ROOT_DAYS
    key_usage: str = DEFAULT_ROOT_KEY_USAGE
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None

    def validate(self, now: dt.datetime) -> tuple[x509.Name, x509.KeyUsage | None]:
        """Check the options; return the parsed subject and key usage."""
        name = parse_subject(self.subject)
        self.key.validate()
        _check_hash(self.hash)
        _validity(self.days, now, self.not_before, self.not_after)
        return name, parse_key_usage(self.key_usage)


def make_root(spec: RootSpec, *, now: dt.datetime | None = None) -> Issued:
    """Build a self-signed root CA certificate with a new key.

    Extensions (RFC 5280 section 4.2.1): basicConstraints CA:TRUE (critical, 4.2.1.9),
    keyUsage (critical, 4.2.1.3), subjectKeyIdentifier (4.2.1.2).
    """
    now = now or dt.datetime.now(dt.UTC)
    name, usage = spec.validate(now)
    not_before, not_after = _validity(spec.days, now, spec.not_before, spec.not_after)
    key = spec.key.generate()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    )
    cert = builder.sign(key, _check_hash(spec.hash))
    return Issued(cert, key)


@dataclass(frozen=True)
class CASpec:
    """What ``gen-ca`` builds: an intermediate CA signed by a CA of the store."""

    subject: str = DEFAULT_CA_SUBJECT
    key: KeySpec = field(default_factory=KeySpec)
    hash: str = "sha256"
    days: int = DEFAULT_CA_DAYS
    key_usage: str = DEFAULT_CA_KEY_USAGE
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    crl_url: str | None = None

    def validate(self, now: dt.datetime) -> tuple[x509.Name, x509.KeyUsage]:
        """Check the options; return the parsed subject and key usage (with keyCertSign)."""
        name = parse_subject(self.subject)
        self.key.validate()
        _check_hash(self.hash)
        _validity(self.days, now, self.not_before, self.not_after)
        _check_crl_url(self.crl_url)
        usage = parse_key_usage(self.key_usage)
        if usage is None or not usage.key_cert_sign:
            raise UsageError("--key-usage of a CA must include CertSign")
        return name, usage


def make_ca(spec: CASpec, signer: Signer, *, now: dt.datetime | None = None) -> Issued:
    """Build an intermediate CA certificate with a new key, signed by ``signer``.

    Extensions (RFC 5280 section 4.2.1): basicConstraints CA:TRUE with pathLenConstraint 0
    (critical; it issues end-entity certificates only), keyUsage (critical), SKI, AKI, and
    the CRL distribution point of its issuer's CRL when ``crl_url`` is given.
    """
    now = now or dt.datetime.now(dt.UTC)
    name, usage = spec.validate(now)
    not_before, not_after = _validity(spec.days, now, spec.not_before, spec.not_after)
    _warn_outlives(not_after, signer)
    key = spec.key.generate()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer.cert.subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_identifier(signer), critical=False)
    )
    if spec.crl_url is not None:
        builder = builder.add_extension(_crl_distribution_points(spec.crl_url), critical=False)
    cert = builder.sign(signer.key, _check_hash(spec.hash))
    return Issued(cert, key, (signer.cert, *signer.chain))


def smime_capabilities_der() -> bytes:
    """The SMIMECapabilities value: AES-256/192/128-CBC, 3DES, RC2-128, strongest first.

    RFC 8551 section 2.5.2 orders by preference; RFC 3565 section 5 says AES capabilities
    carry no parameters; RC2's parameter is the key length in bits (RFC 8551 2.7.1).
    """
    from asn1crypto import cms, core

    value = cms.SMIMECapabilites(
        [
            {"capability_id": "2.16.840.1.101.3.4.1.42"},  # aes256-CBC
            {"capability_id": "2.16.840.1.101.3.4.1.22"},  # aes192-CBC
            {"capability_id": "2.16.840.1.101.3.4.1.2"},  # aes128-CBC
            {"capability_id": "1.2.840.113549.3.7"},  # des-ede3-cbc
            {"capability_id": "1.2.840.113549.3.2", "parameters": core.Integer(128)},  # rc2
        ]
    )
    data: bytes = value.dump()
    return data


def _utf8_der(text: str) -> bytes:
    from asn1crypto import core

    data: bytes = core.UTF8String(text).dump()
    return data


def load_csr(data: bytes, source: str) -> x509.CertificateSigningRequest:
    """Read a PKCS#10 request (PEM or DER) and check its self-signature (RFC 2986).

    Raises:
        DataError: not a CSR, a bad signature, or a key that cannot be an S/MIME key (65).
    """
    try:
        if b"-----BEGIN" in data:
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise DataError(
            f"{source} is not a PKCS#10 certificate request (PEM or DER); "
            "create one with 'openssl req -new'"
        ) from None
    try:
        valid = csr.is_signature_valid
        public = csr.public_key()
    except Exception as exc:  # unsupported algorithms raise several types
        raise DataError(f"{source}: cannot check the request's signature ({exc})") from None
    if not valid:
        raise DataError(f"{source}: the request's signature does not verify (altered request?)")
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < RSA_MIN_BITS:
            raise DataError(
                f"{source}: an RSA key of {public.key_size} bits is too short "
                f"(at least {RSA_MIN_BITS})"
            )
    elif not isinstance(public, ec.EllipticCurvePublicKey):
        raise DataError(f"{source}: only RSA and EC keys can be S/MIME keys")
    return csr


def csr_emails(csr: x509.CertificateSigningRequest) -> list[str]:
    """The addresses a request asks for: SAN rfc822Names, then subject emailAddress."""
    found: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found.extend(san.get_values_for_type(x509.RFC822Name))
    for attribute in csr.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        found.append(str(attribute.value))
    return _unique(found)


def _unique(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    kept: list[str] = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            kept.append(address)
    return kept


# S/MIME BR 7.1.4.2.2: a mailbox-validated subject holds only these attributes.
_STRICT_SUBJECT: Final = {NameOID.COMMON_NAME, NameOID.EMAIL_ADDRESS, NameOID.SERIAL_NUMBER}


@dataclass(frozen=True)
class UserSpec:
    """What ``issue-user`` builds; validate() checks every option before any key exists.

    ``subject`` None means the CSR's subject when there is one, else
    ``E=<email>,CN=<email>`` (CN the local part when the address is longer than the 64
    characters a CN may hold). ``email`` may be None with a ``csr`` naming addresses.
    """

    email: str | None
    subject: str | None = None
    upn: str | None = None
    key: KeySpec = field(default_factory=KeySpec)
    hash: str = "sha256"
    days: int = DEFAULT_USER_DAYS
    smime_capabilities: bool = True
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    profile: str = "powershell"
    crl_url: str | None = None
    csr: x509.CertificateSigningRequest | None = None

    def emails(self) -> list[str]:
        """The addresses for the SAN: --email first, then those the CSR asks for."""
        given = [self.email] if self.email is not None else []
        return _unique(given + (csr_emails(self.csr) if self.csr is not None else []))

    def subject_text(self) -> str:
        """The subject string to use, the default filled in."""
        if self.subject is not None:
            return self.subject
        if self.csr is not None and len(self.csr.subject):
            return names.display_name(self.csr.subject)
        emails = self.emails()
        email = emails[0] if emails else ""
        # RFC 5280 appendix A.1: ub-common-name is 64 characters. A strict subject's CN
        # must be a mailbox address (S/MIME BR 7.1.4.2.2), so there it is left out.
        if len(email) > 64 and self.profile == "strict":
            return f"E={names.escape_value(email)}"
        common_name = email if len(email) <= 64 else email.split("@")[0][:64]
        return f"E={names.escape_value(email)},CN={names.escape_value(common_name)}"

    def validate(self, now: dt.datetime) -> tuple[x509.Name, list[str]]:
        """Check the options; return the parsed subject and the SAN addresses."""
        if self.profile not in PROFILES:
            raise UsageError(f"unknown --profile {self.profile!r} (use {', '.join(PROFILES)})")
        emails = self.emails()
        if not emails:
            raise UsageError("give --email ADDR (the request names no mail address)")
        for email in emails:
            _check_email(email)
        if self.csr is not None and self.subject is None and len(self.csr.subject):
            name = self.csr.subject
        else:
            name = parse_subject(self.subject_text())
        if self.upn is not None and not self.upn.strip():
            raise UsageError("--upn is empty")
        if self.csr is None:
            self.key.validate()
        _check_hash(self.hash)
        not_before, not_after = _validity(self.days, now, self.not_before, self.not_after)
        _check_crl_url(self.crl_url)
        if self.profile == "strict":
            emails = self._check_strict(name, emails, not_after - not_before)
        return name, emails

    def _check_strict(self, name: x509.Name, emails: list[str], period: dt.timedelta) -> list[str]:
        """S/MIME Baseline Requirements, mailbox-validated strict: return the SAN list."""
        if self.upn is not None:
            raise UsageError(
                "--profile strict allows mail addresses only in the subjectAltName: leave out --upn"
            )
        for attribute in name:
            if attribute.oid not in _STRICT_SUBJECT:
                label = names.NAME_LABELS.get(
                    attribute.oid.dotted_string, attribute.oid.dotted_string
                )
                raise UsageError(
                    f"--profile strict (mailbox-validated) allows only CN, E and "
                    f"SERIALNUMBER in the subject, not {label}"
                )
        for attribute in name.get_attributes_for_oid(NameOID.COMMON_NAME):
            if "@" not in str(attribute.value):
                raise UsageError(
                    f"--profile strict needs the subject CN to be a mail address "
                    f"(got {attribute.value!r})"
                )
        # BR 7.1.4.2.1: every address in the subject appears in the subjectAltName.
        in_subject = [
            str(a.value) for a in name if a.oid in (NameOID.EMAIL_ADDRESS, NameOID.COMMON_NAME)
        ]
        for email in in_subject:
            _check_email(email)
        # BR 6.3.2 counts notBefore to notAfter inclusive, so the period stays under 825 days.
        if period >= dt.timedelta(days=STRICT_MAX_DAYS):
            raise UsageError(
                f"--profile strict allows a validity under {STRICT_MAX_DAYS} days "
                "(notBefore lies 10 minutes back: use --days 824 or less)"
            )
        return _unique(emails + in_subject)


def issue_user(spec: UserSpec, signer: Signer, *, now: dt.datetime | None = None) -> Issued:
    """Issue an S/MIME user certificate, signed by ``signer``.

    The key is new, or the public key of ``spec.csr`` (then the result has no private key).

    Profile ``powershell`` (RFC 8550 section 4.4, RFC 5280 section 4.2.1): basicConstraints
    CA:FALSE (critical), keyUsage digitalSignature + keyEncipherment for RSA (key transport)
    or digitalSignature + keyAgreement for EC (ECDH, RFC 5753), critical as RFC 5280 4.2.1.3
    recommends; extendedKeyUsage emailProtection; subjectAltName rfc822Name (+ UPN
    otherName); SMIMECapabilities; subjectKeyIdentifier; authorityKeyIdentifier.
    Profile ``strict`` adds what the CA/Browser Forum S/MIME Baseline Requirements ask of a
    mailbox-validated strict certificate: every subject address in the subjectAltName,
    certificatePolicies 2.23.140.1.5.1.3, at most 825 days (checked by validate()).
    """
    now = now or dt.datetime.now(dt.UTC)
    name, emails = spec.validate(now)
    not_before, not_after = _validity(spec.days, now, spec.not_before, spec.not_after)
    _warn_outlives(not_after, signer)
    subject_emails = [
        str(attribute.value) for attribute in name.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    ]
    if subject_emails and not {e.lower() for e in subject_emails} & {e.lower() for e in emails}:
        log.warning(
            "the subject's E= (%s) differs from --email %s; mail clients match the latter",
            ", ".join(subject_emails),
            ", ".join(emails),
        )
    key: PrivateKey | None
    if spec.csr is not None:
        key = None
        public = spec.csr.public_key()
        assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    else:
        key = spec.key.generate()
        public = key.public_key()
    is_rsa = isinstance(public, rsa.RSAPublicKey)
    general_names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails]
    if spec.upn is not None:
        general_names.append(x509.OtherName(UPN_OID, _utf8_der(spec.upn.strip())))
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer.cert.subject)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=not is_rsa,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    )
    if spec.smime_capabilities:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(SMIME_CAPABILITIES_OID, smime_capabilities_der()),
            critical=False,
        )
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(public), critical=False
    ).add_extension(_authority_key_identifier(signer), critical=False)
    if spec.profile == "strict":
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(MAILBOX_STRICT_OID, None)]),
            critical=False,
        )
    if spec.crl_url is not None:
        builder = builder.add_extension(_crl_distribution_points(spec.crl_url), critical=False)
    cert = builder.sign(signer.key, _check_hash(spec.hash))
    return Issued(cert, key, (signer.cert, *signer.chain))


# --- revocation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Revoked:
    """One revoked certificate: its serial and when it was revoked."""

    serial: int
    revoked_at: dt.datetime


def make_crl(
    signer: Signer,
    revoked: list[Revoked],
    *,
    next_update_days: int = DEFAULT_CRL_DAYS,
    hash_name: str = "sha256",
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL signed by ``signer`` listing ``revoked`` (RFC 5280 section 5).

    thisUpdate is now, nextUpdate ``next_update_days`` later; extensions: the issuer's
    authorityKeyIdentifier (5.2.1) and a cRLNumber (5.2.3) taken from the clock, so each
    new CRL of a CA has a larger number than the one before.
    """
    if next_update_days <= 0:
        raise UsageError(f"--next-update must be at least 1 day (got {next_update_days})")
    usage = None
    with contextlib.suppress(x509.ExtensionNotFound):
        usage = signer.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    if usage is not None and not usage.crl_sign:
        raise DataError(
            f"{names.display_name(signer.cert.subject)} may not sign CRLs (keyUsage lacks cRLSign)"
        )
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    try:
        next_update = now + dt.timedelta(days=next_update_days)
    except OverflowError:
        next_update = dt.datetime.max.replace(tzinfo=dt.UTC)
    if next_update.year > 9999:
        raise UsageError(f"--next-update {next_update_days} reaches beyond the year 9999")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.cert.subject)
        .last_update(now)
        .next_update(next_update)
        .add_extension(_authority_key_identifier(signer), critical=False)
        .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
            .build()
        )
    return builder.sign(signer.key, _check_hash(hash_name))
