"""Rows of the store as values: :class:`StoredCert`, store names and the column formats."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from smimecli import choices
from smimecli.certs import names
from smimecli.certs.formats import load_der_certificate
from smimecli.errors import UsageError

STORE_NAMES: tuple[str, ...] = choices.names(choices.StoreName)

_COLUMNS = (
    "c.id, c.thumbprint, c.der, c.subject, c.issuer, c.not_after, c.friendly_name, "
    "c.private_key IS NOT NULL, "
    "(SELECT group_concat(m.store_name, ',') FROM memberships m WHERE m.cert_id = c.id), "
    "(SELECT group_concat(e.email, ',') FROM emails e WHERE e.cert_id = c.id), "
    "h.capabilities, h.signing_time"
)
_FROM = "certs c LEFT JOIN harvested h ON h.cert_id = c.id"


@dataclass
class StoredCert:
    """A certificate held in the store; ``cert`` is parsed on first use."""

    thumbprint: str
    der: bytes
    subject: str
    issuer: str
    not_after: str
    friendly_name: str | None
    has_key: bool
    store_names: tuple[str, ...]
    emails: tuple[str, ...] = field(default=())
    capabilities: tuple[str, ...] | None = None
    signing_time: str | None = None

    @cached_property
    def cert(self) -> x509.Certificate:
        """The parsed certificate."""
        return load_der_certificate(self.der)


def _row(row: tuple[Any, ...]) -> StoredCert:
    stores = tuple(s for s in STORE_NAMES if s in (row[8] or "").split(","))
    return StoredCert(
        thumbprint=row[1],
        der=row[2],
        subject=row[3],
        issuer=row[4],
        not_after=row[5],
        friendly_name=row[6],
        has_key=bool(row[7]),
        store_names=stores,
        emails=tuple(sorted(set((row[9] or "").split(",")) - {""})),
        capabilities=None if row[10] is None else tuple(filter(None, row[10].split(","))),
        signing_time=row[11],
    )


def iso(moment: dt.datetime) -> str:
    """A moment as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ski(cert: x509.Certificate) -> bytes | None:
    """The SKI a CMS recipient names this certificate by (the extension, else RFC 5280
    method 1: :func:`names.subject_key_identifier`, as ``encrypt --recipient-id ski``
    writes it); None when the public key is of a type cryptography cannot read."""
    try:
        return names.subject_key_identifier(cert)
    except (ValueError, UnsupportedAlgorithm):
        return None


def _serial_hex(serial: int) -> str:
    return format(serial, "x") if serial >= 0 else "-" + format(-serial, "x")


def check_store_name(store_name: str) -> str:
    """Validate a store name (my, other, root, ca); UsageError otherwise."""
    lowered = store_name.lower()
    if lowered not in STORE_NAMES:
        raise UsageError(f"unknown store name {store_name!r}: use one of {', '.join(STORE_NAMES)}")
    return lowered
