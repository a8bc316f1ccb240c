"""The store's schema: tables, version, migrations of older stores and read-only opens.

Schema 1 held ``certs``, ``memberships`` and ``emails``; an older store gains the later
tables on opening, and a store read where it cannot be changed gets empty temporary
stand-ins for them.
"""

from __future__ import annotations

from pathlib import Path

from smimecli.certs.store.connection import Connection
from smimecli.errors import ConfigError

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


class Schema(Connection):
    """Creating, checking and migrating the schema of a just-opened store."""

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
