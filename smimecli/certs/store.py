"""The certificate store: one SQLite database in the store folder.

Layout: ``certs`` holds each distinct certificate once (DER, SHA-1 thumbprint, subject,
issuer, serial, SKI, validity, friendly name, the private key as PKCS#8), ``memberships``
says which Windows-named stores (``my``, ``other``, ``root``, ``ca``) hold it, and
``emails`` indexes the lower-cased addresses it names, so a lookup by address reads a few
index pages and parses only the certificates it returns, however large the store.

Every change is one transaction (``BEGIN IMMEDIATE``), the journal is WAL so readers never
see half an import, the folder is 0700 and the database 0600. Private keys are encrypted
with the store passphrase (``SMIMECLI_STORE_PASSWORD``) when one is set.

Selectors (:meth:`Store.find`): a SHA-1 thumbprint or a unique prefix of 8+ hex digits
(spaces and colons ignored, as copied from Windows), an e-mail address, or a subject CN
(case-insensitive). :meth:`Store.select_one` raises :class:`UsageError` (64) listing the
matches when a selector matches several certificates and :class:`DataError` (65) when it
matches none: the certificate the command needs is not there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from smimecli import choices
from smimecli.certs import names
from smimecli.certs.formats import PrivateKey, load_der_certificate
from smimecli.errors import (
    AuthError,
    ConfigError,
    DataError,
    IOFailedError,
    TempFailError,
    UsageError,
)

STORE_NAMES: tuple[str, ...] = choices.names(choices.StoreName)
DB_NAME = "store.sqlite3"
PASSWORD_ENV = "SMIMECLI_STORE_PASSWORD"
LOCK_TIMEOUT = 10.0  # seconds a writer waits for another before giving up (exit 75)
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certs (
    id INTEGER PRIMARY KEY,
    thumbprint TEXT NOT NULL UNIQUE,
    der BLOB NOT NULL,
    subject TEXT NOT NULL,
    subject_cn TEXT,
    issuer TEXT NOT NULL,
    issuer_der BLOB NOT NULL,
    serial TEXT NOT NULL,
    ski BLOB,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    friendly_name TEXT,
    private_key BLOB,
    key_encrypted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS certs_serial ON certs (serial);
CREATE INDEX IF NOT EXISTS certs_ski ON certs (ski);
CREATE INDEX IF NOT EXISTS certs_cn ON certs (subject_cn);
CREATE TABLE IF NOT EXISTS memberships (
    cert_id INTEGER NOT NULL REFERENCES certs (id) ON DELETE CASCADE,
    store_name TEXT NOT NULL,
    PRIMARY KEY (store_name, cert_id)
);
CREATE INDEX IF NOT EXISTS memberships_cert ON memberships (cert_id);
CREATE TABLE IF NOT EXISTS emails (
    cert_id INTEGER NOT NULL REFERENCES certs (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    PRIMARY KEY (email, cert_id)
);
CREATE INDEX IF NOT EXISTS emails_cert ON emails (cert_id);
CREATE TABLE IF NOT EXISTS revocations (
    issuer_der BLOB NOT NULL,
    serial TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    thumbprint TEXT,
    PRIMARY KEY (issuer_der, serial)
);
CREATE TABLE IF NOT EXISTS harvested (
    cert_id INTEGER PRIMARY KEY REFERENCES certs (id) ON DELETE CASCADE,
    capabilities TEXT NOT NULL,
    signing_time TEXT
);
"""
# Schema 2 added ``revocations`` (gen-crl), schema 3 ``harvested`` (what a verified signed
# message said about its signer: SMIMECapabilities and signing time): an older store gains
# the tables on opening.
_MIGRATIONS: dict[int, str] = {
    2: _SCHEMA[
        _SCHEMA.index("CREATE TABLE IF NOT EXISTS revocations") : _SCHEMA.index(
            "CREATE TABLE IF NOT EXISTS harvested"
        )
    ],
    3: _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS harvested") :],
}

_COLUMNS = (
    "c.id, c.thumbprint, c.der, c.subject, c.issuer, c.not_after, c.friendly_name, "
    "c.private_key IS NOT NULL, "
    "(SELECT group_concat(m.store_name, ',') FROM memberships m WHERE m.cert_id = c.id), "
    "(SELECT group_concat(e.email, ',') FROM emails e WHERE e.cert_id = c.id), "
    "h.capabilities, h.signing_time"
)
_FROM = "certs c LEFT JOIN harvested h ON h.cert_id = c.id"
_HEX = re.compile(r"^[0-9a-fA-F]+$")


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


def default_store_dir() -> Path:
    """The store folder when --store is not given: $SMIMECLI_STORE, else
    $XDG_DATA_HOME/smimecli (``~/.local/share/smimecli``)."""
    env = os.environ.get("SMIMECLI_STORE")
    if env:
        return Path(env)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "smimecli"


def _translate(exc: sqlite3.Error, path: Path) -> Exception:
    """An SQLite error as the smimecli error a caller can act on: locked 75, full disk or
    I/O error 74, read-only or unopenable 78, anything else (damage) 78."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return TempFailError(f"certificate store {path} is locked by another process; retry later")
    if name == "SQLITE_FULL" or "disk is full" in text:
        return IOFailedError(
            f"cannot write the certificate store {path}: the disk is full; free space and retry"
        )
    if name.startswith("SQLITE_IOERR") or "disk i/o" in text:
        return IOFailedError(f"I/O error on the certificate store {path}: {exc}")
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return ConfigError(f"certificate store {path} is read-only: cannot change it ({exc})")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return ConfigError(f"cannot open certificate store {path}: {exc}")
    return ConfigError(f"certificate store {path} is unreadable or corrupt: {exc}")


def _connect(path: Path, timeout: float, *, readonly: bool, immutable: bool = False) -> Any:
    target: str | Path = path
    if readonly:
        # A URI opens the file O_RDONLY: reading never needs (or uses) write access.
        target = path.absolute().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")
    return sqlite3.connect(
        target, timeout=timeout, isolation_level=None, check_same_thread=False, uri=readonly
    )


def _create_file(folder: Path, path: Path) -> None:
    """Make the store folder (0700) and an empty database file (0600); 78 when refused."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    except OSError as exc:
        raise ConfigError(f"cannot create certificate store {path}: {exc.strerror or exc}") from exc


class Store:
    """The SQLite certificate store. Open it with :meth:`Store.open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, passphrase: bytes | None) -> None:
        self._conn = conn
        self.path = path
        self._passphrase = passphrase
        self._depth = 0
        self.created = False  # this open made the store (a failed first command removes it)

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

    def _setup(self, *, readonly: bool = False) -> None:
        conn = self._conn
        conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            self._check_readable()
            return
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        have = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'certs'"
        ).fetchone()[0]
        if not have:
            with self.transaction():
                # executescript() would commit on its own: one statement at a time.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                    (str(SCHEMA_VERSION),),
                )
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if version is None or int(version[0]) > SCHEMA_VERSION:
            raise ConfigError(
                f"certificate store {self.path} has an unknown schema version "
                f"({version[0] if version else 'none'}); upgrade smimecli"
            )
        if int(version[0]) < SCHEMA_VERSION:
            self._migrate(int(version[0]))
        self._check_size()

    def _migrate(self, version: int) -> None:
        """Bring an older store up to SCHEMA_VERSION; each step only adds tables."""
        with self.transaction():
            # Another process may have migrated while this one waited for the lock.
            current = int(
                self._conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
            )
            for step in range(max(version, current) + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
            self._conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),)
            )

    def _check_readable(self) -> None:
        """A read-only open: the schema must be there (nothing is created)."""
        have = self._conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'certs'"
        ).fetchone()[0]
        version = self._conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if not have or version is None:
            raise ConfigError(
                f"certificate store {self.path} is unreadable or corrupt: no certificate table"
            )
        if int(version[0]) > SCHEMA_VERSION:
            raise ConfigError(
                f"certificate store {self.path} has an unknown schema version "
                f"({version[0]}); upgrade smimecli"
            )
        if int(version[0]) < SCHEMA_VERSION:
            # An older store read where it cannot be upgraded: the tables a later schema
            # added are empty, so stand in for them with empty temporary tables.
            for step in range(int(version[0]) + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self._conn.execute(
                            statement.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE")
                        )
        self._check_size()

    def _check_size(self) -> None:
        """A truncated database file is damage (78), not a smaller store: with no pending
        write-ahead log the file must hold every page its header counts."""
        wal = Path(f"{self.path}-wal")
        if wal.exists() and wal.stat().st_size:
            return
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        if self.path.stat().st_size < pages * size:
            raise ConfigError(
                f"certificate store {self.path} is unreadable or corrupt: the file is truncated"
            )

    def close(self) -> None:
        """Close the database."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions -----------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise _translate(exc, self.path) from exc

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    def _select(self, where: str, params: Iterable[Any] = ()) -> list[StoredCert]:
        rows = self._query(f"SELECT {_COLUMNS} FROM {_FROM} WHERE {where} ORDER BY c.id", params)
        return [_row(r) for r in rows]

    # --- changes ----------------------------------------------------------------------------

    def _key_blob(self, key: PrivateKey) -> tuple[bytes, int]:
        encryption: serialization.KeySerializationEncryption
        if not self._passphrase and self._query(
            "SELECT 1 FROM certs WHERE key_encrypted = 1 LIMIT 1"
        ):
            raise AuthError(f"this store's keys are encrypted: set {PASSWORD_ENV}")
        if self._passphrase:
            encryption = serialization.BestAvailableEncryption(self._passphrase)
        else:
            encryption = serialization.NoEncryption()
        blob = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, encryption
        )
        return blob, 1 if self._passphrase else 0

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

    # --- lookups ----------------------------------------------------------------------------

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

    def private_key(self, thumbprint: str) -> PrivateKey | None:
        """The private key held for a certificate, or None.

        Raises AuthError when the key is encrypted and the store passphrase is missing or
        wrong.
        """
        row = self._query(
            "SELECT private_key, key_encrypted FROM certs WHERE thumbprint = ?",
            (thumbprint.upper(),),
        )
        if not row or row[0][0] is None:
            return None
        blob, encrypted = row[0]
        if encrypted and not self._passphrase:
            raise AuthError(
                f"the private key of {thumbprint.upper()} is encrypted: "
                f"set {PASSWORD_ENV} to the store passphrase"
            )
        try:
            key = serialization.load_der_private_key(blob, self._passphrase if encrypted else None)
        except ValueError as exc:
            raise AuthError(
                f"cannot decrypt the private key of {thumbprint.upper()}: "
                f"wrong store passphrase ({PASSWORD_ENV})"
            ) from exc
        return key  # type: ignore[return-value]

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
