"""The lab commands' options: defaults, key specs, key usage, hashes, dates and validity.

Everything here is checked before any key is generated, so a bad option costs nothing and
writes nothing.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Final, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from smimecli.certs.keys import PrivateKey
from smimecli.errors import UsageError

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

# Clock skew allowance: notBefore lies this far in the past.
BACKDATE: Final = dt.timedelta(minutes=10)

PROFILES: Final = ("powershell", "strict")
# S/MIME BR 6.3.2: a strict certificate's validity period is at most 825 days.
STRICT_MAX_DAYS: Final = 825
DEFAULT_CA_SUBJECT: Final = "CN=Test Intermediate CA V1"
DEFAULT_CA_KEY_USAGE: Final = "CertSign,CRLSign,DigitalSignature"
DEFAULT_CA_DAYS: Final = 3650
DEFAULT_CRL_DAYS: Final = 30


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

    @classmethod
    def of_certificate(cls, cert: x509.Certificate) -> KeySpec:
        """The key spec that describes ``cert``'s public key (for a certificate issued for
        a request, whose key the options did not choose)."""
        public = cert.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            return cls("rsa", public.key_size)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        return cls("ecdsa-p384" if public.curve.key_size == 384 else "ecdsa-p256")


def check_hash(name: str) -> SignatureHash:
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


def validity(
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


def check_email(email: str) -> None:
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


def check_crl_url(url: str | None) -> None:
    if url is not None and not (url.startswith(("http://", "https://")) and url.isascii()):
        raise UsageError(f"--crl-url {url!r} must be an http:// or https:// URL")


def unique_addresses(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    kept: list[str] = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            kept.append(address)
    return kept
