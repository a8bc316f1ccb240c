"""Certificates harvested from signed mail: only those a verified signature vouches for.

``certs import`` of a signed message (multipart/signed or opaque signed-data) first checks
the signature (:func:`smimecli.verify.message.verify_message`); when it holds, the signer's
certificate and the issuers of it that the message carries are taken, together with what
the signature says about the signer: its SMIMECapabilities (the ciphers it reads, strongest
first) and the signing time. A signature that does not hold, a damaged message, or a
message whose content was changed yields nothing (:class:`DataError`, 65). Trust is not
judged here: a correspondent's certificate is worth keeping whoever issued it, and
``encrypt`` checks usability when it uses it.

A ``certs-only`` message (application/pkcs7-mime; smime-type=certs-only) carries no
signature and is read as a certificate bundle (:func:`smimecli.certs.formats.load_certificates`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509

from smimecli.certs.formats import CertEntry, CertList, is_ca
from smimecli.errors import DataError

__all__ = ["Harvest", "SignerDetails", "harvest_mail", "is_signed_mail"]


@dataclass
class SignerDetails:
    """What a verified signature said about its signer."""

    cert: x509.Certificate
    capabilities: list[str]
    signing_time: dt.datetime | None


@dataclass
class Harvest:
    """The certificates a verified signed message vouches for, and its signers' details."""

    entries: CertList
    signers: list[SignerDetails] = field(default_factory=list)


def is_signed_mail(data: bytes) -> bool:
    """A message whose top-level entity is an S/MIME signature (not certs-only)."""
    from smimecli.mime import PKCS7_TYPES, parse_header_block

    head = data[:16384].lower()
    if b"content-type:" not in head:
        return False
    try:
        headers, _offset = parse_header_block(data[: 1 << 20])
    except DataError:
        return False
    ctype = headers.content_type()
    if ctype.mime_type == "multipart/signed":
        return True
    smime_type = (ctype.param("smime-type") or "").strip().lower()
    return ctype.mime_type in PKCS7_TYPES and smime_type == "signed-data"


def _issuers(cert: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    """The CA certificates of ``pool`` that issued ``cert``, its issuer, and so on."""
    from smimecli.certs.usable import issued_by

    out: list[x509.Certificate] = []
    current = cert
    for _ in range(8):
        issuer = next(
            (
                c
                for c in pool
                if c != current and c not in out and is_ca(c) and issued_by(current, c)
            ),
            None,
        )
        if issuer is None:
            break
        out.append(issuer)
        if issuer.subject == issuer.issuer:
            break
        current = issuer
    return out


def harvest_mail(data: bytes, source: str) -> Harvest:
    """Verify a signed message and return the certificates its signatures vouch for.

    Raises:
        DataError: not a signed message, damaged, or a signature does not hold.
    """
    from smimecli.verify.message import verify_message

    signature = verify_message(data, what=source)
    check = signature.check
    if not check.valid:
        raise DataError(
            f"{source}: the signature does not hold ({'; '.join(check.problems)}): "
            "no certificate taken from it"
        )
    entries = CertList()
    seen: set[str] = set()
    harvest = Harvest(entries)
    for signer in check.signers:
        assert signer.signer is not None  # a valid signature was checked with its certificate
        for cert in (signer.signer, *_issuers(signer.signer, check.certificates)):
            entry = CertEntry(cert)
            if entry.thumbprint not in seen:
                seen.add(entry.thumbprint)
                entries.append(entry)
        harvest.signers.append(
            SignerDetails(signer.signer, list(signer.capabilities), signer.signing_time)
        )
    return harvest
