"""The :class:`Store` class: opening the store, adding and removing certificates, and
recording harvested signer details and revocations (see the package docstring)."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimecli.certs import names
from smimecli.certs.formats import PrivateKey
from smimecli.certs.store.connection import (
    DB_NAME,
    LOCK_TIMEOUT,
    _connect,
    _create_file,
    _translate,
)
from smimecli.certs.store.lookups import Lookups
from smimecli.certs.store.rows import _serial_hex, _ski, check_store_name, iso
from smimecli.certs.store.schema import Schema
from smimecli.certs.store.sealing import PASSWORD_ENV, Sealing
from smimecli.errors import ConfigError


class Store(Lookups, Sealing, Schema):
    """The SQLite certificate store. Open it with :meth:`Store.open`."""

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        folder: Path | str,
        *,
        create: bool = False,
        readonly: bool = False,
        passphrase: bytes | None = None,
        timeout: float = LOCK_TIMEOUT,
    ) -> Store:
        """Open the store in ``folder``; only commands that add certificates create it.

        Args:
            folder: the store folder (created 0700 when ``create``).
            create: create a missing store; otherwise a missing store is a ConfigError (78,
                ``no certificate store in DIR``), so a mistyped folder never looks like an
                empty store.
            readonly: open the database read-only (``mode=ro``): nothing in the folder is
                written, so a read-only folder or mount can be read. When SQLite cannot
                set up its shared-memory file there and no write-ahead log is pending,
                the database is read as immutable.
            passphrase: encrypts private keys; default ``$SMIMECLI_STORE_PASSWORD``.
            timeout: seconds to wait for a lock held by another process (then exit 75).
        """
        folder = Path(folder)
        path = folder / DB_NAME
        if passphrase is None:
            env = os.environ.get(PASSWORD_ENV)
            passphrase = env.encode("utf-8") if env else None
        try:
            present = path.exists()
        except OSError as exc:
            raise ConfigError(
                f"cannot open certificate store {path}: {exc.strerror or exc}"
            ) from exc
        if not present:
            if not create or readonly:
                raise ConfigError(
                    f"no certificate store in {folder} (check --store or SMIMECLI_STORE; "
                    "'smimecli certs import' creates one)"
                )
            _create_file(folder, path)
        try:
            store = cls._connect_setup(path, passphrase, timeout, readonly=readonly)
            store.created = not present
            return store
        except sqlite3.Error as exc:
            wal = Path(f"{path}-wal")
            if not (
                readonly
                and str(getattr(exc, "sqlite_errorname", "")).startswith(
                    ("SQLITE_CANTOPEN", "SQLITE_READONLY")
                )
            ) or (wal.exists() and wal.stat().st_size):
                raise _translate(exc, path) from exc
        # A read-only folder or mount: no shared-memory file can be made, and no log is
        # pending, so the database file alone is the whole store.
        try:
            return cls._connect_setup(path, passphrase, timeout, readonly=True, immutable=True)
        except sqlite3.Error as exc:
            raise _translate(exc, path) from exc

    @classmethod
    def _connect_setup(
        cls,
        path: Path,
        passphrase: bytes | None,
        timeout: float,
        *,
        readonly: bool,
        immutable: bool = False,
    ) -> Store:
        conn = _connect(path, timeout, readonly=readonly, immutable=immutable)
        store = cls(conn, path, passphrase)
        try:
            store._setup(readonly=readonly)
        except BaseException:
            conn.close()
            raise
        return store

    # --- changes ----------------------------------------------------------------------------

    def add(
        self,
        cert: x509.Certificate,
        *,
        key: PrivateKey | None = None,
        store_name: str | None = None,
        friendly_name: str | None = None,
    ) -> str:
        """Add a certificate (merging with the copy already held) and return its thumbprint.

        The default store is ``my`` with a key and ``other`` without. Adding a certificate
        the store holds adds no row; a newly given key or friendly name is recorded.
        """
        name = check_store_name(store_name or ("my" if key is not None else "other"))
        thumb = names.thumbprint(cert)
        with self.transaction():
            try:
                existing = self._conn.execute(
                    "SELECT id, private_key IS NOT NULL, friendly_name FROM certs "
                    "WHERE thumbprint = ?",
                    (thumb,),
                ).fetchone()
                if existing is None:
                    cert_id = self._insert(cert, thumb, key, friendly_name)
                else:
                    cert_id = existing[0]
                    if key is not None and not existing[1]:
                        blob, encrypted = self._key_blob(key)
                        self._conn.execute(
                            "UPDATE certs SET private_key = ?, key_encrypted = ? WHERE id = ?",
                            (blob, encrypted, cert_id),
                        )
                    if friendly_name and friendly_name != existing[2]:
                        self._conn.execute(
                            "UPDATE certs SET friendly_name = ? WHERE id = ?",
                            (friendly_name, cert_id),
                        )
                self._conn.execute(
                    "INSERT OR IGNORE INTO memberships (cert_id, store_name) VALUES (?, ?)",
                    (cert_id, name),
                )
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc
        return thumb

    @names.quiet()
    def _insert(
        self,
        cert: x509.Certificate,
        thumb: str,
        key: PrivateKey | None,
        friendly_name: str | None,
    ) -> int:
        blob, encrypted = self._key_blob(key) if key is not None else (None, 0)
        issuer_der = cert.issuer.public_bytes()
        cursor = self._conn.execute(
            "INSERT INTO certs (thumbprint, der, subject, subject_cn, issuer, issuer_der, "
            "serial, ski, not_before, not_after, friendly_name, private_key, key_encrypted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                thumb,
                cert.public_bytes(serialization.Encoding.DER),
                names.display_name(cert.subject),
                (names.common_name(cert) or "").lower() or None,
                names.display_name(cert.issuer),
                issuer_der,
                _serial_hex(cert.serial_number),
                _ski(cert),
                iso(cert.not_valid_before_utc),
                iso(cert.not_valid_after_utc),
                friendly_name,
                blob,
                encrypted,
            ),
        )
        cert_id = int(cursor.lastrowid or 0)
        self._conn.executemany(
            "INSERT OR IGNORE INTO emails (cert_id, email) VALUES (?, ?)",
            [(cert_id, address) for address in names.emails(cert)],
        )
        return cert_id

    def remove(self, thumbprint: str, store_name: str | None = None) -> int:
        """Remove a certificate from one store (or all); returns how many memberships went.

        A certificate left in no store is deleted with its key.
        """
        thumb = thumbprint.upper()
        with self.transaction():
            try:
                row = self._conn.execute(
                    "SELECT id FROM certs WHERE thumbprint = ?", (thumb,)
                ).fetchone()
                if row is None:
                    return 0
                if store_name is None:
                    cursor = self._conn.execute(
                        "DELETE FROM memberships WHERE cert_id = ?", (row[0],)
                    )
                else:
                    cursor = self._conn.execute(
                        "DELETE FROM memberships WHERE cert_id = ? AND store_name = ?",
                        (row[0], check_store_name(store_name)),
                    )
                left = self._conn.execute(
                    "SELECT count(*) FROM memberships WHERE cert_id = ?", (row[0],)
                ).fetchone()[0]
                if not left:
                    self._conn.execute("DELETE FROM certs WHERE id = ?", (row[0],))
                return int(cursor.rowcount)
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc

    # --- harvested signer details (certs import of signed mail) -------------------------

    def record_harvest(
        self,
        cert: x509.Certificate,
        capabilities: Iterable[str],
        signing_time: dt.datetime | None,
    ) -> bool:
        """Record what a verified signature said about its signer: the SMIMECapabilities
        (strongest first) and the signing time. The certificate must be in the store; a
        record with a newer signing time wins (one without a time loses to one with).
        Returns True when this one was recorded."""
        moment = None if signing_time is None else iso(signing_time)
        with self.transaction():
            try:
                row = self._conn.execute(
                    "SELECT c.id, h.signing_time FROM certs c "
                    "LEFT JOIN harvested h ON h.cert_id = c.id WHERE c.thumbprint = ?",
                    (names.thumbprint(cert),),
                ).fetchone()
                if row is None or (row[1] is not None and (moment is None or row[1] >= moment)):
                    return False
                self._conn.execute(
                    "INSERT OR REPLACE INTO harvested (cert_id, capabilities, signing_time) "
                    "VALUES (?, ?, ?)",
                    (row[0], ",".join(capabilities), moment),
                )
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc
        return True

    # --- revocations (gen-crl) --------------------------------------------------------------

    def revoke(self, cert: x509.Certificate, at: dt.datetime) -> bool:
        """Record that ``cert`` is revoked (by its issuer and serial); False if it was."""
        with self.transaction():
            try:
                cursor = self._conn.execute(
                    "INSERT OR IGNORE INTO revocations (issuer_der, serial, revoked_at, "
                    "thumbprint) VALUES (?, ?, ?, ?)",
                    (
                        cert.issuer.public_bytes(),
                        _serial_hex(cert.serial_number),
                        iso(at),
                        names.thumbprint(cert),
                    ),
                )
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc
        return cursor.rowcount > 0

    def revocations(self, issuer: x509.Name) -> list[tuple[int, dt.datetime]]:
        """(serial, revocation time) of every certificate ``issuer`` revoked, oldest first."""
        rows = self._query(
            "SELECT serial, revoked_at FROM revocations WHERE issuer_der = ? "
            "ORDER BY revoked_at, serial",
            (issuer.public_bytes(),),
        )
        return [
            (
                int(serial, 16),
                dt.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC),
            )
            for serial, at in rows
        ]

    def is_revoked(self, cert: x509.Certificate) -> bool:
        """Whether the store recorded ``cert`` as revoked."""
        return bool(
            self._query(
                "SELECT 1 FROM revocations WHERE issuer_der = ? AND serial = ?",
                (cert.issuer.public_bytes(), _serial_hex(cert.serial_number)),
            )
        )

    def dump(self) -> list[tuple[Any, ...]]:
        """Every row of every table in a stable order (tests compare stores with it)."""
        rows: list[tuple[Any, ...]] = []
        for table, order in (
            ("certs", "id"),
            ("memberships", "cert_id, store_name"),
            ("emails", "cert_id, email"),
            ("revocations", "issuer_der, serial"),
            ("harvested", "cert_id"),
        ):
            rows.extend((table, *r) for r in self._query(f"SELECT * FROM {table} ORDER BY {order}"))
        return rows

    def journal_mode(self) -> str:
        """The SQLite journal mode (``wal``)."""
        return str(self._query("PRAGMA journal_mode")[0][0]).lower()
