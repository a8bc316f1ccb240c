"""The store's database connection: where it lives, opening the SQLite file, one write
transaction at a time, and SQLite errors as the smimecli errors a caller can act on."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Self

from smimecli.errors import ConfigError, IOFailedError, TempFailError

DB_NAME = "store.sqlite3"
LOCK_TIMEOUT = 10.0  # seconds a writer waits for another before giving up (exit 75)


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


class Connection:
    """The open database under a :class:`~smimecli.certs.store.Store`: transactions and
    queries with SQLite errors translated."""

    def __init__(self, conn: sqlite3.Connection, path: Path, passphrase: bytes | None) -> None:
        self._conn = conn
        self.path = path
        self._passphrase = passphrase
        self._depth = 0
        self.created = False  # this open made the store (a failed first command removes it)

    def close(self) -> None:
        """Close the database."""
        self._conn.close()

    def __enter__(self) -> Self:
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
