"""The certificates a signature is judged against: the store's roots and CAs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StoreTrust:
    """The store's certificates for verification.

    Attributes:
        roots: the certificates in the store's ``root`` store (trust anchors).
        intermediates: those in its ``ca`` store.
        every: every certificate of the store (a signer's chain may use any of them).
    """

    roots: list[Any] = field(default_factory=list)
    intermediates: list[Any] = field(default_factory=list)
    every: list[Any] = field(default_factory=list)


def store_trust(folder: Path) -> StoreTrust:
    """The store in ``folder``, read-only; a missing store trusts nothing."""
    from smimecli.certs.store import DB_NAME, Store

    if not (Path(folder) / DB_NAME).exists():
        return StoreTrust()
    with Store.open(folder, readonly=True) as store:
        rows = store.certificates()
        roots = [r.cert for r in rows if "root" in r.store_names]
        cas = [r.cert for r in rows if "ca" in r.store_names]
        return StoreTrust(roots, cas, [r.cert for r in rows])


def load_certificate_files(paths: list[Path], notices: list[Any] | None = None) -> list[Any]:
    """Every certificate of the files given with ``--ca`` (PEM, DER, .p7b); what was skipped
    in them goes to ``notices``."""
    from smimecli.certs.formats import load_certificate_file
    from smimecli.errors import DataError

    out: list[Any] = []
    for path in paths:
        entries = load_certificate_file(path)
        if notices is not None:
            notices.extend(entries.notices)
        if not entries:
            raise DataError(f"--ca {path} holds no certificate")
        out.extend(e.cert for e in entries)
    return out
