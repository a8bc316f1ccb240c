"""Whether a signer is trusted: a chain to a trusted root, judged the S/MIME way (RFC 8550).

Separate from checking the signature (:mod:`smimecli.cms.verify`): a good signature by an
unknown or expired certificate is *untrusted*, not malformed. The chain is built by name and
verified signature from the signer through the given intermediates (the ones the message
carries, the store's) to one of the given roots. Every certificate on it must be valid at
the signing time (when known) and now; issuers must be CAs (basicConstraints, RFC 5280
section 4.2.1.9) allowed to sign certificates (keyUsage keyCertSign), and the signer's
extendedKeyUsage, when present, must allow emailProtection (RFC 8550 section 4.4.4).
Revocation is not checked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = ["MIN_RSA_BITS", "WEAK_RSA_BITS", "TrustResult", "evaluate_trust", "rsa_bits"]

MAX_DEPTH = 8  # certificates between signer and root; hostile bundles must not loop
# Issuer candidates whose signature is checked, in all, for one chain. A message may carry
# any number of certificates with the same name (and key): depth-first search over them
# grows as N^depth, so the search is bounded and a bundle that exhausts it is untrusted.
MAX_CANDIDATES = 1000
# RSA signer keys: below MIN_RSA_BITS a signature is forgeable (512- and 768-bit moduli have
# been factored), so the signer is not trusted; below WEAK_RSA_BITS (RFC 8551 section 4.1
# asks for 2048) verify warns. Old mail signed with 1024-bit keys still verifies.
MIN_RSA_BITS = 1024
WEAK_RSA_BITS = 2048


@dataclass
class TrustResult:
    """The outcome of :func:`evaluate_trust`.

    Attributes:
        chain: signer first, then issuers; ends in a trusted root when one was reached.
        reasons: why the signer is not trusted; empty when it is.
    """

    chain: list[x509.Certificate]
    reasons: list[str] = field(default_factory=list)

    @property
    def trusted(self) -> bool:
        """True when a chain to a trusted root holds and nothing is wrong with it."""
        return not self.reasons


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, or a key type that cannot have signed it
        return False
    return True


def _same(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.fingerprint(hashes.SHA256()) == b.fingerprint(hashes.SHA256())


class _GaveUp(Exception):  # noqa: N818 - control flow inside this module, not an error
    """More than :data:`MAX_CANDIDATES` issuer candidates were checked."""


class _PathSearch:
    """Depth-first path building, bounded: candidates are looked up by issuer name, no
    certificate appears twice on a path, a certificate that led nowhere is not explored
    again (unless more depth is left this time), and at most :data:`MAX_CANDIDATES`
    signatures are checked in all."""

    def __init__(self, roots: Sequence[x509.Certificate], pool: Sequence[x509.Certificate]):
        self.roots = roots
        self.by_issuer: dict[x509.Name, list[tuple[bytes, x509.Certificate]]] = {}
        seen: set[bytes] = set()
        for cert in pool:
            digest = cert.fingerprint(hashes.SHA256())
            if digest not in seen:
                seen.add(digest)
                self.by_issuer.setdefault(cert.subject, []).append((digest, cert))
        self.dead: dict[bytes, int] = {}  # certificate -> most depth left when it led nowhere
        self.checked = 0

    def build(
        self, cert: x509.Certificate, digest: bytes, depth: int, on_path: frozenset[bytes]
    ) -> list[x509.Certificate] | None:
        """A path from ``cert`` to a root (excluding ``cert``); None if none."""
        for root in self.roots:
            if _same(cert, root):
                return []
            if _issued_by(cert, root):
                return [root]
        left = MAX_DEPTH - depth
        if left <= 0 or self.dead.get(digest, -1) >= left:
            return None
        for issuer_digest, issuer in self.by_issuer.get(cert.issuer, []):
            if issuer_digest == digest or issuer_digest in on_path:
                continue
            self.checked += 1
            if self.checked > MAX_CANDIDATES:
                raise _GaveUp
            if not _issued_by(cert, issuer):
                continue
            rest = self.build(issuer, issuer_digest, depth + 1, on_path | {issuer_digest})
            if rest is not None:
                return [issuer, *rest]
        self.dead[digest] = left
        return None


def _build(
    cert: x509.Certificate,
    roots: Sequence[x509.Certificate],
    pool: Sequence[x509.Certificate],
) -> list[x509.Certificate] | None:
    """A path from ``cert`` to a root (excluding ``cert``); None if none.

    Raises:
        _GaveUp: the bundle offered too many candidates to search.
    """
    digest = cert.fingerprint(hashes.SHA256())
    return _PathSearch(roots, pool).build(cert, digest, 0, frozenset({digest}))


def _validity(cert: x509.Certificate, when: dt.datetime, label: str) -> list[str]:
    if when < cert.not_valid_before_utc:
        start = f"{cert.not_valid_before_utc:%Y-%m-%d}"
        return [f"{_name(cert)} was not yet valid {label} (valid from {start})"]
    if when > cert.not_valid_after_utc:
        return [f"{_name(cert)} had expired {label} (on {cert.not_valid_after_utc:%Y-%m-%d})"]
    return []


def _issuer_problems(cert: x509.Certificate) -> list[str]:
    """An issuer must be a CA allowed to sign certificates."""
    out = []
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca:
            out.append(f"{_name(cert)} is not a CA (basicConstraints) but issued a certificate")
    except x509.ExtensionNotFound:
        out.append(f"{_name(cert)} has no basicConstraints: it cannot act as a CA")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            out.append(f"{_name(cert)} may not sign certificates (keyUsage)")
    except x509.ExtensionNotFound:
        pass
    return out


def rsa_bits(cert: x509.Certificate) -> int | None:
    """The size of ``cert``'s RSA key in bits; None for another key type."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = cert.public_key()
    except (ValueError, TypeError):
        return None
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


def _signer_problems(cert: x509.Certificate) -> list[str]:
    """RFC 8550 section 4.4: emailProtection (or anyExtendedKeyUsage) when EKU is present,
    and digitalSignature or nonRepudiation when keyUsage is present; an RSA key of at
    least :data:`MIN_RSA_BITS`."""
    out = []
    bits = rsa_bits(cert)
    if bits is not None and bits < MIN_RSA_BITS:
        out.append(
            f"{_name(cert)} has a {bits}-bit RSA key, too weak to trust "
            f"(at least {MIN_RSA_BITS} bits)"
        )
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        allowed = {ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
        if not allowed.intersection(eku):
            out.append(f"{_name(cert)} is not for email protection (extendedKeyUsage)")
    except x509.ExtensionNotFound:
        pass
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (ku.digital_signature or ku.content_commitment):
            out.append(f"{_name(cert)} may not sign (keyUsage lacks digitalSignature)")
    except x509.ExtensionNotFound:
        pass
    return out


def evaluate_trust(
    signer: x509.Certificate,
    roots: Iterable[x509.Certificate],
    intermediates: Iterable[x509.Certificate] = (),
    *,
    signing_time: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> TrustResult:
    """Build and judge the chain from ``signer`` to one of ``roots``.

    Args:
        signer: the signer's certificate (from :func:`smimecli.cms.verify.verify_signed_data`).
        roots: the trusted roots (trust anchors).
        intermediates: certificates that may complete the chain (the message's, a store's).
        signing_time: the signingTime attribute; the chain must have been valid then too.
        now: the time to judge against (default: now).
    """
    roots = list(roots)
    try:
        path = _build(signer, roots, list(intermediates))
    except _GaveUp:
        return TrustResult(
            [signer],
            [
                f"no chain to a trusted root: gave up after {MAX_CANDIDATES} candidate "
                "issuer certificates (the message carries too many with the same name)"
            ],
        )
    if path is None:
        issuer = signer.issuer.rfc4514_string()
        return TrustResult(
            [signer], [f"no chain to a trusted root: the issuer {issuer} is not trusted"]
        )
    chain = [signer, *path]
    reasons = _signer_problems(signer)
    moments = [(now or dt.datetime.now(dt.UTC), "now")]
    if signing_time is not None:
        moments.append((signing_time, "at signing time"))
    for index, cert in enumerate(chain):
        if index > 0 and not any(_same(cert, root) for root in roots):
            reasons += _issuer_problems(cert)
        for when, label in moments:
            reasons += _validity(cert, when, label)
    return TrustResult(chain, reasons)
