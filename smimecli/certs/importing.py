"""Importing certificate files into the store: which certificate goes to which store.

A file is read by content (:func:`load_import`): signed mail is verified first and only the
signer's certificate and the issuers of it that the message carries are taken
(:func:`smimecli.certs.harvest.harvest_mail`); anything else is read by
:func:`smimecli.certs.formats.load_certificates`, which pairs PEM private keys with their
certificates and skips (with a notice) what it cannot parse.

Placement (:func:`target_store`), unless the caller forces one store: a certificate that
came as the CA chain of a .pfx goes to ``ca``, one with its private key to ``my``, any
other to ``other``. :func:`add_to_store` adds every certificate of every file in one
transaction (all or nothing) and records what verified signatures said about their
signers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smimecli.certs.formats import CertEntry, CertList, load_certificates
from smimecli.certs.harvest import SignerDetails, harvest_mail, is_signed_mail
from smimecli.certs.names import display_name
from smimecli.certs.store import Store
from smimecli.notices import Notice

__all__ = ["ImportFile", "Imported", "add_to_store", "load_import", "target_store"]


@dataclass
class ImportFile:
    """The certificates one file brings, and the signers' details of signed mail."""

    source: str
    entries: CertList
    signers: list[SignerDetails] = field(default_factory=list)

    @property
    def notices(self) -> list[Notice]:
        """What a person should hear about this file (certificates skipped, lone keys)."""
        return list(self.entries.notices)


@dataclass(frozen=True)
class Imported:
    """One certificate added to the store."""

    file: str
    thumbprint: str
    store: str
    subject: str
    has_key: bool
    friendly_name: str | None

    def to_json(self) -> dict[str, Any]:
        """The record as ``certs import --json`` shows it."""
        return {
            "file": self.file,
            "thumbprint": self.thumbprint,
            "store": self.store,
            "subject": self.subject,
            "has_key": self.has_key,
            "friendly_name": self.friendly_name,
        }


def load_import(data: bytes, source: str, password: bytes | None = None) -> ImportFile:
    """The certificates (and keys) of one file to import.

    Raises:
        DataError: not a certificate file, damaged, or signed mail whose signature does not
            hold (nothing is taken from it).
        AuthError: a PKCS#12 file or encrypted key needs another password.
    """
    if is_signed_mail(data):
        harvest = harvest_mail(data, source)
        return ImportFile(source, harvest.entries, list(harvest.signers))
    return ImportFile(source, load_certificates(data, password=password, source=source))


def target_store(entry: CertEntry, forced: str | None = None) -> str:
    """The store a certificate goes to: ``forced``, else ``ca`` for a .pfx's CA chain,
    ``my`` with a private key, ``other`` without."""
    if forced:
        return forced
    if entry.chain:
        return "ca"
    return "my" if entry.key is not None else "other"


def add_to_store(
    store: Store, files: list[ImportFile], forced: str | None = None
) -> list[Imported]:
    """Add every certificate of ``files`` to the store in one transaction, placed by
    :func:`target_store`, and record the harvested signers' details; returns what was
    added, in file order."""
    added: list[Imported] = []
    with store.transaction():
        for file in files:
            for entry in file.entries:
                target = target_store(entry, forced)
                store.add(
                    entry.cert, key=entry.key, store_name=target, friendly_name=entry.friendly_name
                )
                added.append(
                    Imported(
                        file=file.source,
                        thumbprint=entry.thumbprint,
                        store=target,
                        subject=str(display_name(entry.cert.subject)),
                        has_key=entry.key is not None,
                        friendly_name=entry.friendly_name,
                    )
                )
        for file in files:
            for details in file.signers:
                store.record_harvest(details.cert, details.capabilities, details.signing_time)
    return added
