"""Finding certificates in the store: by store name, address, selector, issuer and serial,
subject key identifier."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cryptography import x509

from smimecli.certs import names
from smimecli.certs.store.connection import Connection
from smimecli.certs.store.rows import (
    _COLUMNS,
    _FROM,
    StoredCert,
    _row,
    _serial_hex,
    _ski,
    check_store_name,
)
from smimecli.errors import DataError, UsageError

_HEX = re.compile(r"^[0-9a-fA-F]+$")


class Lookups(Connection):
    """The store's queries; each returns :class:`StoredCert` rows in the order added."""

    def _select(self, where: str, params: Iterable[Any] = ()) -> list[StoredCert]:
        rows = self._query(f"SELECT {_COLUMNS} FROM {_FROM} WHERE {where} ORDER BY c.id", params)
        return [_row(r) for r in rows]

    def certificates(self, store_name: str | None = None) -> list[StoredCert]:
        """Every certificate, or those of one store, in the order they were added."""
        if store_name is None:
            return self._select("1")
        return self._select(
            "c.id IN (SELECT cert_id FROM memberships WHERE store_name = ?)",
            (check_store_name(store_name),),
        )

    def by_email(self, address: str, store_name: str | None = None) -> list[StoredCert]:
        """Certificates naming ``address`` (SAN rfc822Name or subject emailAddress)."""
        sql = "c.id IN (SELECT cert_id FROM emails WHERE email = ?)"
        params: list[Any] = [address.strip().lower()]
        if store_name is not None:
            # EXISTS probes the (store_name, cert_id) key per match; IN would list the store.
            sql += (
                " AND EXISTS (SELECT 1 FROM memberships m2"
                " WHERE m2.cert_id = c.id AND m2.store_name = ?)"
            )
            params.append(check_store_name(store_name))
        return self._select(sql, params)

    def find(self, selector: str, store_name: str | None = None) -> list[StoredCert]:
        """Certificates a selector names (see the module docstring); each counted once."""
        text = selector.strip()
        if not text:
            raise UsageError("empty certificate selector")
        found: list[StoredCert] = []
        compact = re.sub(r"[\s:]", "", text)
        if len(compact) >= 8 and _HEX.match(compact):
            prefix = compact.upper()
            found = self._select(
                "c.thumbprint >= ? AND c.thumbprint < ?", (prefix, prefix + "\uffff")
            )
        if not found and "@" in text:
            found = self.by_email(text)
        if not found:
            found = self._select("c.subject_cn = ?", (text.lower(),))
        if store_name is not None:
            wanted = check_store_name(store_name)
            found = [c for c in found if wanted in c.store_names]
        return found

    def select_one(self, selector: str, store_name: str | None = None) -> StoredCert:
        """The one certificate a selector names: 65 when none, 64 listing them when several."""
        found = self.find(selector, store_name)
        if not found:
            where = f" in store '{store_name}'" if store_name else ""
            compact = re.sub(r"[\s:]", "", selector)
            if 0 < len(compact) < 8 and _HEX.match(compact):
                raise DataError(
                    f"no certificate{where} matches {selector!r}: a thumbprint prefix needs "
                    "8 or more hex digits (see 'smimecli certs list')"
                )
            raise DataError(
                f"no certificate{where} matches {selector!r} (see 'smimecli certs list')"
            )
        if len(found) > 1:
            listing = "; ".join(f"{c.thumbprint} {c.subject}" for c in found[:10])
            more = f" and {len(found) - 10} more" if len(found) > 10 else ""
            raise UsageError(
                f"{selector!r} matches {len(found)} certificates: {listing}{more}; "
                "give a thumbprint"
            )
        return found[0]

    @names.quiet()
    def find_by_issuer_serial(self, issuer: Any, serial: int) -> list[StoredCert]:
        """Certificates with this issuer and serial (a CMS IssuerAndSerialNumber).

        Args:
            issuer: the issuer as DER bytes, a cryptography ``x509.Name`` or an asn1crypto
                ``Name`` (anything with ``.dump()``).
            serial: the serial number.
        """
        from asn1crypto import x509 as a_x509

        if isinstance(issuer, x509.Name):
            raw = issuer.public_bytes()
        elif isinstance(issuer, bytes | bytearray):
            raw = bytes(issuer)
        else:
            raw = issuer.dump()
        rows = self._query(
            "SELECT id, issuer_der FROM certs WHERE serial = ?", (_serial_hex(serial),)
        )
        ids: list[int] = []
        for row_id, stored in rows:
            if stored == raw:
                ids.append(row_id)
                continue
            # RFC 5280 7.1 name comparison (case-insensitive, whitespace-folded).
            try:
                if a_x509.Name.load(stored) == a_x509.Name.load(raw):
                    ids.append(row_id)
            except (ValueError, TypeError):
                continue
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        return self._select(f"c.id IN ({marks})", ids)

    @names.quiet()
    def find_by_ski(self, ski: bytes) -> list[StoredCert]:
        """Certificates with this subjectKeyIdentifier (CMS SubjectKeyIdentifier recipients).

        Stores written before the method 1 value was recorded hold no ``ski`` for a
        certificate without the extension: such rows are checked against their DER.
        """
        wanted = bytes(ski)
        found = self._select("(c.ski = ? OR c.ski IS NULL)", (wanted,))
        return [c for c in found if _ski(c.cert) == wanted]
