"""Store faults through the CLI: a missing store is never created by a command that reads
(78), a locked one is 75, a full disk 74, a read-only one is readable, a damaged one is 78
wherever it is opened."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from smimecli.certs.store import DB_NAME, Store
from smimecli.errors import IOFailedError
from tests.conftest import Pki, Result

Cli = Callable[..., Result]
MESSAGE = b"From: a@example.com\nTo: alice@example.com\nSubject: s\n\nhello\n"
ROOT = Path(__file__).resolve().parents[2]


def _store_rules(folder: Path) -> Path:
    path = folder / "store-rules.toml"
    path.write_text(
        '[[rule]]\nname = "all"\nrecipients = ["*"]\n'
        'source = { kind = "store", store = "other" }\non_missing_cert = "pass"\n'
    )
    return path


def _cer_rules(folder: Path, pki: Pki) -> Path:
    path = folder / "cer-rules.toml"
    path.write_text(
        '[[rule]]\nname = "alice"\nrecipients = ["alice@example.com"]\n'
        f'source = {{ kind = "cer", path = "{pki.alice.cert_der}" }}\n'
    )
    return path


def _encrypted(cli: Cli, pki: Pki, tmp_path: Path) -> Path:
    result = cli(["encrypt", "--cert", pki.alice.cert_pem], input=MESSAGE)
    assert result.exit_code == 0, result.stderr
    path = tmp_path / "msg.eml"
    path.write_bytes(result.stdout)
    return path


def test_reading_commands_never_create_a_store(cli: Cli, tmp_path: Path) -> None:
    store = tmp_path / "store"
    rules = _store_rules(tmp_path)
    for args, stdin in (
        (["certs", "list"], b""),
        (["certs", "list", "--json"], b""),
        (["rules", "check", "--rules", rules], b""),
        (["encrypt", "--rules", rules, "--recipient", "bob@example.com"], MESSAGE),
    ):
        result = cli(args, input=stdin)
        assert result.exit_code == 78, (args, result.stderr)
        assert f"no certificate store in {store}" in result.stderr, result.stderr
        assert result.stdout == b""  # never plaintext under a 'pass' rule
        assert not store.exists(), args


def test_rules_without_store_sources_need_no_store(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    rules = _cer_rules(tmp_path, pki)
    assert cli(["rules", "check", "--rules", rules]).exit_code == 0
    result = cli(["encrypt", "--rules", rules, "--recipient", "alice@example.com"], input=MESSAGE)
    assert result.exit_code == 0, result.stderr
    assert b"application/pkcs7-mime" in result.stdout
    assert not (tmp_path / "store").exists()


def test_locked_store_is_75_for_encrypt_rules(
    cli: Cli, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(Store.open.__func__.__kwdefaults__, "timeout", 0.3)  # type: ignore[attr-defined]
    with Store.open(tmp_path / "store", create=True) as store:
        store.add(pki.alice.cert)
    holder = sqlite3.connect(tmp_path / "store" / DB_NAME, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("DELETE FROM meta WHERE key = 'none'")
    try:
        rules = _store_rules(tmp_path)
        args = ["encrypt", "--rules", rules, "--recipient", "alice@example.com"]
        result = cli(args, input=MESSAGE)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 75, result.stderr
    assert "is locked by another process; retry later" in result.stderr
    assert result.stdout == b""


def test_full_disk_under_the_store_is_74(tmp_path: Path, pki: Pki) -> None:
    with Store.open(tmp_path / "store", create=True) as store:
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL
        with pytest.raises(IOFailedError, match="the disk is full; free space and retry"):
            for _ in range(3):
                store.add(pki.alice.cert, key=pki.alice.key, friendly_name="x" * 5000)
                store.add(pki.bob.cert, key=pki.bob.key, friendly_name="y" * 5000)
                store.add(pki.carol_ec.cert, friendly_name="z" * 5000)


def _state(folder: Path) -> tuple[list[str], str, int]:
    db = folder / DB_NAME
    return (
        sorted(os.listdir(folder)),
        hashlib.sha256(db.read_bytes()).hexdigest(),
        db.stat().st_mtime_ns,
    )


def test_reading_never_writes_the_store(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    folder = tmp_path / "store"
    with Store.open(folder, create=True) as store:
        store.add(pki.alice.cert)
    # A reader's first open may add SQLite's shared-memory index files; after that
    # nothing in the folder changes, the database file least of all.
    assert cli(["certs", "list"]).exit_code == 0
    before = _state(folder)
    for args in (["certs", "list", "--json"], ["certs", "show", pki.alice.thumbprint]):
        assert cli(args).exit_code == 0
        assert _state(folder) == before
    assert not any(name.endswith("-journal") for name in before[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a command as nobody")
def test_read_only_store_is_readable(pki: Pki, tmp_path: Path) -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="smimecli-ro-"))  # nobody cannot enter pytest's
    os.chmod(tmp_path, 0o755)
    folder = tmp_path / "ro"
    with Store.open(folder, create=True) as store:
        store.add(pki.alice.cert)
    rules = _store_rules(tmp_path)
    os.chmod(folder / DB_NAME, 0o444)
    os.chmod(folder, 0o555)
    before = _state(folder)
    env = {**os.environ, "SMIMECLI_STORE": str(folder), "PYTHONPATH": str(ROOT), "HOME": "/"}
    as_nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    smime = [sys.executable, "-m", "smimecli"]
    listed = subprocess.run(
        [*as_nobody, *smime, "certs", "list", "--json"], env=env, capture_output=True, cwd="/"
    )
    assert listed.returncode == 0, listed.stderr
    assert pki.alice.thumbprint.encode() in listed.stdout
    sent = subprocess.run(
        [*as_nobody, *smime, "encrypt", "--rules", rules, "--recipient", "alice@example.com"],
        env=env,
        input=MESSAGE,
        capture_output=True,
        cwd="/",
    )
    assert sent.returncode == 0, sent.stderr
    assert b"application/pkcs7-mime" in sent.stdout
    assert _state(folder) == before
    os.chmod(folder, 0o700)
    shutil.rmtree(tmp_path)


def _damage(folder: Path, pki: Pki, how: str) -> None:
    if how == "garbage":
        folder.mkdir()
        (folder / DB_NAME).write_bytes(os.urandom(8192))
        return
    with Store.open(folder, create=True) as store:
        for who in (pki.alice, pki.bob, pki.carol_ec):
            store.add(who.cert, key=who.key)
    db = folder / DB_NAME
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_damaged_store_is_78_wherever_opened(cli: Cli, pki: Pki, tmp_path: Path, how: str) -> None:
    message = _encrypted(cli, pki, tmp_path)
    _damage(tmp_path / "store", pki, how)
    rules = _store_rules(tmp_path)
    for args, stdin in (
        (["decrypt", message], b""),
        (["inspect", message], b""),
        (["certs", "list"], b""),
        (["certs", "import", pki.dave_p384.cert_pem], b""),
        (["encrypt", "--rules", rules, "--recipient", "alice@example.com"], MESSAGE),
    ):
        result = cli(args, input=stdin)
        assert result.exit_code == 78, (args, result.stderr)
        assert "is unreadable or corrupt" in result.stderr, result.stderr
