"""S/MIME user certificates (``issue-user``): for a new key or for a PKCS#10 request, in the
``powershell`` profile (RFC 8550 section 4.4) or the CA/Browser Forum ``strict`` one."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from smimecli.certs import names
from smimecli.certs.keys import PrivateKey
from smimecli.errors import DataError, UsageError
from smimecli.lab.capabilities import SMIME_CAPABILITIES_OID, smime_capabilities_der
from smimecli.lab.issuing import (
    Issued,
    Signer,
    authority_key_identifier,
    crl_distribution_points,
    outlives_notice,
)
from smimecli.lab.options import (
    DEFAULT_USER_DAYS,
    PROFILES,
    RSA_MIN_BITS,
    STRICT_MAX_DAYS,
    KeySpec,
    check_crl_url,
    check_email,
    check_hash,
    random_serial,
    unique_addresses,
    validity,
)
from smimecli.lab.subjects import parse_subject
from smimecli.notices import Notice

# Microsoft's User Principal Name otherName (used by Windows logon and Exchange).
UPN_OID: Final = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
# CA/Browser Forum S/MIME Baseline Requirements 7.1.6.1: mailbox-validated, strict.
MAILBOX_STRICT_OID: Final = ObjectIdentifier("2.23.140.1.5.1.3")


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
    return unique_addresses(found)


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
        return unique_addresses(given + (csr_emails(self.csr) if self.csr is not None else []))

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
            check_email(email)
        if self.csr is not None and self.subject is None and len(self.csr.subject):
            name = self.csr.subject
        else:
            name = parse_subject(self.subject_text())
        if self.upn is not None and not self.upn.strip():
            raise UsageError("--upn is empty")
        if self.csr is None:
            self.key.validate()
        check_hash(self.hash)
        not_before, not_after = validity(self.days, now, self.not_before, self.not_after)
        check_crl_url(self.crl_url)
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
            check_email(email)
        # BR 6.3.2 counts notBefore to notAfter inclusive, so the period stays under 825 days.
        if period >= dt.timedelta(days=STRICT_MAX_DAYS):
            raise UsageError(
                f"--profile strict allows a validity under {STRICT_MAX_DAYS} days "
                "(notBefore lies 10 minutes back: use --days 824 or less)"
            )
        return unique_addresses(emails + in_subject)


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
    not_before, not_after = validity(spec.days, now, spec.not_before, spec.not_after)
    notices = outlives_notice(not_after, signer) + _subject_email_notice(name, emails)
    key: PrivateKey | None
    if spec.csr is not None:
        key = None
        public = spec.csr.public_key()
        assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    else:
        key = spec.key.generate()
        public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer.cert.subject)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    builder = _user_extensions(builder, spec, signer, public, emails)
    cert = builder.sign(signer.key, check_hash(spec.hash))
    return Issued(cert, key, (signer.cert, *signer.chain), tuple(notices))


def _subject_email_notice(name: x509.Name, emails: list[str]) -> list[Notice]:
    """A notice when the subject's E= names none of the subjectAltName addresses."""
    subject_emails = [
        str(attribute.value) for attribute in name.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    ]
    if subject_emails and not {e.lower() for e in subject_emails} & {e.lower() for e in emails}:
        return [
            Notice(
                "subject-email-differs",
                f"the subject's E= ({', '.join(subject_emails)}) differs from --email "
                f"{', '.join(emails)}; mail clients match the latter",
            )
        ]
    return []


def _user_extensions(
    builder: x509.CertificateBuilder,
    spec: UserSpec,
    signer: Signer,
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    emails: list[str],
) -> x509.CertificateBuilder:
    """The extensions of a user certificate, in the order issue_user() documents."""
    is_rsa = isinstance(public, rsa.RSAPublicKey)
    general_names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails]
    if spec.upn is not None:
        general_names.append(x509.OtherName(UPN_OID, _utf8_der(spec.upn.strip())))
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
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
    ).add_extension(authority_key_identifier(signer), critical=False)
    if spec.profile == "strict":
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(MAILBOX_STRICT_OID, None)]),
            critical=False,
        )
    if spec.crl_url is not None:
        builder = builder.add_extension(crl_distribution_points(spec.crl_url), critical=False)
    return builder
