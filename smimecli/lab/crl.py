"""Lab CRLs (``gen-crl``): the certificates a lab CA revoked (RFC 5280 section 5)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimecli.certs import names
from smimecli.errors import DataError, UsageError
from smimecli.lab.issuing import Signer, authority_key_identifier
from smimecli.lab.options import DEFAULT_CRL_DAYS, check_hash

if TYPE_CHECKING:
    from smimecli.certs.store import Store, StoredCert


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
        .add_extension(authority_key_identifier(signer), critical=False)
        .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
            .build()
        )
    return builder.sign(signer.key, check_hash(hash_name))


def crl_bytes(crl: x509.CertificateRevocationList, *, der: bool = False) -> bytes:
    """The CRL as PEM, or DER with ``der``."""
    return crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)


def revoke_in_store(
    store: Store, ca: Signer, selectors: Iterable[str], now: dt.datetime
) -> list[StoredCert]:
    """Record the certificates ``selectors`` name as revoked by ``ca`` at ``now``, in one
    transaction; return those not revoked before.

    Raises:
        DataError: a certificate was not issued by ``ca`` (nothing is recorded then).
    """
    from smimecli.certs.usable import issued_by

    newly: list[StoredCert] = []
    with store.transaction():
        for selector in selectors:
            entry = store.select_one(selector)
            if not issued_by(entry.cert, ca.cert):
                raise DataError(
                    f"{entry.thumbprint} ({entry.subject}) was not issued by the CA "
                    f"{names.display_name(ca.cert.subject)}; give the CA that issued it as --signer"
                )
            if store.revoke(entry.cert, now):
                newly.append(entry)
    return newly


def stored_revocations(store: Store, ca: Signer) -> list[Revoked]:
    """Every certificate the store records as revoked by ``ca``, oldest first."""
    return [Revoked(serial, at) for serial, at in store.revocations(ca.cert.subject)]
