"""Lab CAs: a self-signed root (``gen-root``) and intermediate CAs (``gen-ca``), built like
PowerShell's ``New-SelfSignedCertificate`` with the extensions RFC 5280 asks of a CA."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509

from smimecli.errors import UsageError
from smimecli.lab.issuing import (
    Issued,
    Signer,
    authority_key_identifier,
    crl_distribution_points,
    outlives_notice,
)
from smimecli.lab.options import (
    DEFAULT_CA_DAYS,
    DEFAULT_CA_KEY_USAGE,
    DEFAULT_CA_SUBJECT,
    DEFAULT_ROOT_DAYS,
    DEFAULT_ROOT_KEY_USAGE,
    DEFAULT_ROOT_SUBJECT,
    KeySpec,
    check_crl_url,
    check_hash,
    parse_key_usage,
    random_serial,
    validity,
)
from smimecli.lab.subjects import parse_subject


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
        check_hash(self.hash)
        validity(self.days, now, self.not_before, self.not_after)
        return name, parse_key_usage(self.key_usage)


def make_root(spec: RootSpec, *, now: dt.datetime | None = None) -> Issued:
    """Build a self-signed root CA certificate with a new key.

    Extensions (RFC 5280 section 4.2.1): basicConstraints CA:TRUE (critical, 4.2.1.9),
    keyUsage (critical, 4.2.1.3), subjectKeyIdentifier (4.2.1.2).
    """
    now = now or dt.datetime.now(dt.UTC)
    name, usage = spec.validate(now)
    not_before, not_after = validity(spec.days, now, spec.not_before, spec.not_after)
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
    cert = builder.sign(key, check_hash(spec.hash))
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
        check_hash(self.hash)
        validity(self.days, now, self.not_before, self.not_after)
        check_crl_url(self.crl_url)
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
    not_before, not_after = validity(spec.days, now, spec.not_before, spec.not_after)
    notices = outlives_notice(not_after, signer)
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
        .add_extension(authority_key_identifier(signer), critical=False)
    )
    if spec.crl_url is not None:
        builder = builder.add_extension(crl_distribution_points(spec.crl_url), critical=False)
    cert = builder.sign(signer.key, check_hash(spec.hash))
    return Issued(cert, key, (signer.cert, *signer.chain), tuple(notices))
