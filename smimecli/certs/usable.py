"""The "usable certificate" test of the rules, as a list of reasons a user can read.

A certificate is usable for encrypting to a recipient when it is within its validity, has
an RSA or EC key, allows keyEncipherment (RSA) or keyAgreement (EC) when it has a key-usage
extension (RFC 8550 4.4.2), allows emailProtection when it has an EKU extension (RFC 8550
4.4.4), names the recipient when asked (SAN rfc822Name or subject emailAddress,
case-insensitive), and chains to a trusted root when that is required. :func:`problems`
returns every reason it is not; an empty list means usable. :func:`best` picks, among
usable certificates, the one valid the longest.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from smimecli.certs import names

MAX_CHAIN = 8
_ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")

T = TypeVar("T")


def _validity_and_key(
    cert: x509.Certificate, at: dt.datetime | None
) -> tuple[str | None, list[str], dt.datetime]:
    """The key type, the problems every use shares (validity at ``at``, a key type smimecli
    cannot use), and the time they were judged at (``at`` in UTC, default now)."""
    found: list[str] = []
    now = at or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    if cert.not_valid_after_utc < now:
        found.append(f"expired {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        found.append(f"not yet valid (from {cert.not_valid_before_utc:%Y-%m-%d})")
    kind, key_problem = _key_type_problem(cert)
    if key_problem:
        found.append(key_problem)
    return kind, found, now


def _key_type_problem(cert: x509.Certificate) -> tuple[str | None, str | None]:
    """Return (kind, problem): kind is 'rsa' or 'ec' when supported."""
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        key = cert.public_key()
    except UnsupportedAlgorithm:  # a key type cryptography does not know (GOST, ...)
        return None, "unsupported key type"
    except (ValueError, TypeError) as exc:
        return None, f"unreadable public key ({exc})"
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", None
    label = type(key).__name__.replace("PublicKey", "").replace("_", "") or "unknown"
    return None, f"unsupported key type {label.upper()}"


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


@names.quiet()
def problems(
    cert: x509.Certificate,
    *,
    email: str | None = None,
    at: dt.datetime | None = None,
    roots: Sequence[x509.Certificate] | None = None,
    intermediates: Sequence[x509.Certificate] | None = None,
    require_trusted: bool = False,
) -> list[str]:
    """Every reason ``cert`` cannot be used to encrypt (empty when usable).

    Args:
        cert: the recipient certificate.
        email: the recipient address the certificate must name (``match = "email"``).
        at: the time to check validity at (default now).
        roots: trusted root certificates (the store's ``root``).
        intermediates: CA certificates to build the chain through (the store's ``ca``).
        require_trusted: whether the certificate must chain to one of ``roots``.
    """
    kind, found, now = _validity_and_key(cert, at)
    try:
        usage = _ext(cert, x509.KeyUsage)
        if isinstance(usage, x509.KeyUsage):
            if kind == "rsa" and not usage.key_encipherment:
                found.append("key usage does not allow key encipherment")
            if kind == "ec" and not usage.key_agreement:
                found.append("key usage does not allow key agreement")
        eku = _ext(cert, x509.ExtendedKeyUsage)
        if isinstance(eku, x509.ExtendedKeyUsage):
            oids = list(eku)
            if ExtendedKeyUsageOID.EMAIL_PROTECTION not in oids and _ANY_EKU not in oids:
                found.append("no emailProtection in extended key usage")
    except ValueError as exc:
        found.append(f"unreadable extensions ({exc})")
    if email is not None and email.strip().lower() not in names.emails(cert):
        found.append(f"does not name {email}")
    if require_trusted and not chains_to_root(cert, roots or (), intermediates or (), at=now):
        found.append("does not chain to a trusted root")
    return found


@functools.lru_cache(maxsize=256)
def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``cert`` (names match and the signature verifies).

    Cached: the answer depends on the two certificates only, and ``require_trusted``
    checks the same chains for every recipient of every message of a batch. Validity
    times depend on the clock and are checked by the callers, uncached.
    """
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@names.quiet()
def chain_to_root(
    cert: x509.Certificate,
    roots: Iterable[x509.Certificate],
    intermediates: Iterable[x509.Certificate] = (),
    *,
    at: dt.datetime | None = None,
) -> list[x509.Certificate] | None:
    """The chain from ``cert`` through CA certificates to one of ``roots`` (cert first,
    root last), or None when signatures lead to no root.

    Each CA on the way must be within its validity; the root itself is trusted as given
    (it was put in ``root`` on purpose).
    """
    now = at or dt.datetime.now(dt.UTC)
    root_list = list(roots)
    for root in root_list:
        if cert.tbs_certificate_bytes == root.tbs_certificate_bytes:
            return [cert]
    cas = [c for c in intermediates if c.not_valid_before_utc <= now <= c.not_valid_after_utc]
    current = cert
    path = [cert]
    for _ in range(MAX_CHAIN):
        top = next((r for r in root_list if issued_by(current, r)), None)
        if top is not None:
            return [*path, top]
        found = next((c for c in cas if c is not current and issued_by(current, c)), None)
        if found is None or found.tbs_certificate_bytes == current.tbs_certificate_bytes:
            return None
        current = found
        path.append(found)
    return None


def chains_to_root(
    cert: x509.Certificate,
    roots: Iterable[x509.Certificate],
    intermediates: Iterable[x509.Certificate] = (),
    *,
    at: dt.datetime | None = None,
) -> bool:
    """Whether signatures lead from ``cert`` through CA certificates to one of ``roots``."""
    return chain_to_root(cert, roots, intermediates, at=at) is not None


@names.quiet()
def signing_problems(cert: x509.Certificate, *, at: dt.datetime | None = None) -> list[str]:
    """Every reason ``cert`` cannot sign mail (RFC 8550 4.4.2 and 4.4.4); empty when it can."""
    _kind, found, _now = _validity_and_key(cert, at)
    try:
        usage = _ext(cert, x509.KeyUsage)
        if (
            isinstance(usage, x509.KeyUsage)
            and not usage.digital_signature
            and not usage.content_commitment
        ):
            found.append("key usage does not allow digital signature")
        eku = _ext(cert, x509.ExtendedKeyUsage)
        if isinstance(eku, x509.ExtendedKeyUsage):
            oids = list(eku)
            if ExtendedKeyUsageOID.EMAIL_PROTECTION not in oids and _ANY_EKU not in oids:
                found.append("no emailProtection in extended key usage")
    except ValueError as exc:
        found.append(f"unreadable extensions ({exc})")
    return found


def best(certs: Iterable[T]) -> T | None:
    """The certificate valid the longest (latest notAfter), or None for an empty list.

    Works on ``x509.Certificate`` or anything with a ``.cert`` attribute (CertEntry,
    StoredCert). Ties keep the first given.
    """
    chosen: T | None = None
    chosen_after: dt.datetime | None = None
    for item in certs:
        cert = item if isinstance(item, x509.Certificate) else getattr(item, "cert")  # noqa: B009
        after = cert.not_valid_after_utc
        if chosen_after is None or after > chosen_after:
            chosen, chosen_after = item, after
    return chosen
