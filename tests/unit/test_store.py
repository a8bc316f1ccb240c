"""The SQLite store: merging, selectors, key lookups, permissions, WAL, locking."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from smimecli.certs.names import thumbprint
from smimecli.certs.store import DB_NAME, SCHEMA_VERSION, Store
from smimecli.errors import AuthError, ConfigError, DataError, TempFailError, UsageError
from tests.conftest import Pki


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "store", create=True)
    yield opened
    opened.close()


def test_created_private_with_wal(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "store"
    with Store.open(folder, create=True) as store:
        assert store.journal_mode() == "wal"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / DB_NAME).stat().st_mode) == 0o600


def test_open_missing_without_create(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no certificate store"):
        Store.open(tmp_path / "absent", create=False)


def test_corrupt_database_is_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / DB_NAME).write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(ConfigError, match="corrupt"):
        Store.open(folder, create=True)


def test_default_store_and_merge(store: Store, pki: Pki) -> None:
    thumb = store.add(pki.alice.cert)
    assert thumb == pki.alice.thumbprint
    assert store.certificates("other")[0].thumbprint == thumb
    assert not store.certificates("my")
    # The same certificate again with its key and a name: still one row, now with both.
    store.add(pki.alice.cert, key=pki.alice.key, store_name="other", friendly_name="Alice")
    rows = store.certificates()
    assert len(rows) == 1
    assert rows[0].has_key and rows[0].friendly_name == "Alice"
    assert store.add(pki.bob.cert, key=pki.bob.key) == pki.bob.thumbprint
    assert [c.thumbprint for c in store.certificates("my")] == [pki.bob.thumbprint]


def test_by_email_case_insensitive(store: Store, pki: Pki) -> None:
    store.add(pki.alice.cert)
    store.add(pki.bob.cert, store_name="my")
    assert [c.thumbprint for c in store.by_email("ALICE@Example.com")] == [pki.alice.thumbprint]
    assert store.by_email("alice@example.com", "my") == []
    assert store.by_email("nobody@example.com") == []
    assert store.by_email("bob@example.com")[0].emails == ("bob@example.com",)


def test_selectors(store: Store, pki: Pki) -> None:
    store.add(pki.alice.cert)
    store.add(pki.bob.cert)
    assert store.select_one(pki.alice.thumbprint[:8].lower()).thumbprint == pki.alice.thumbprint
    spaced = " ".join(pki.bob.thumbprint[i : i + 2] for i in range(0, 40, 2))
    assert store.select_one(spaced).thumbprint == pki.bob.thumbprint
    assert store.select_one("bob@example.com").thumbprint == pki.bob.thumbprint
    assert store.select_one("alice").thumbprint == pki.alice.thumbprint  # subject CN
    with pytest.raises(DataError, match="no certificate"):
        store.select_one("nobody@example.com")
    with pytest.raises(UsageError):
        store.select_one("   ")


def test_ambiguous_selector_lists_matches(store: Store, pki: Pki) -> None:
    second = pki.ca.issue("H3 Alice Second", "alice@example.com")
    store.add(pki.alice.cert)
    store.add(second.cert)
    with pytest.raises(UsageError) as info:
        store.select_one("alice@example.com")
    assert pki.alice.thumbprint in info.value.message
    assert second.thumbprint in info.value.message


def test_same_certificate_in_two_stores_is_one_match(store: Store, pki: Pki) -> None:
    store.add(pki.ca.cert, store_name="my")
    store.add(pki.ca.cert, store_name="root")
    found = store.select_one("Test Root V1")
    assert found.store_names == ("my", "root")


def test_remove(store: Store, pki: Pki) -> None:
    store.add(pki.ca.cert, store_name="root")
    store.add(pki.ca.cert, store_name="ca")
    root_thumb = thumbprint(pki.ca.cert)
    assert store.remove(root_thumb, "ca") == 1
    assert store.certificates()[0].store_names == ("root",)
    assert store.remove(root_thumb.lower()) == 1
    assert store.certificates() == []
    assert store.dump() == []
    assert store.remove(root_thumb) == 0


def test_unknown_store_name(store: Store, pki: Pki) -> None:
    with pytest.raises(UsageError, match="unknown store name"):
        store.add(pki.alice.cert, store_name="trusted")


def test_private_key_round_trip(store: Store, pki: Pki) -> None:
    store.add(pki.alice.cert, key=pki.alice.key)
    key = store.private_key(pki.alice.thumbprint)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.private_numbers() == pki.alice.key.private_numbers()
    store.add(pki.bob.cert)
    assert store.private_key(pki.bob.thumbprint) is None


def test_key_encrypted_with_passphrase(tmp_path: Path, pki: Pki) -> None:
    folder = tmp_path / "store"
    with Store.open(folder, create=True, passphrase=b"store secret") as store:
        store.add(pki.carol_ec.cert, key=pki.carol_ec.key)
        assert store.private_key(pki.carol_ec.thumbprint) is not None
    blob = sqlite3.connect(folder / DB_NAME).execute("SELECT private_key FROM certs").fetchone()
    with pytest.raises(TypeError):  # encrypted PKCS#8: needs a password
        serialization.load_der_private_key(blob[0], None)
    with Store.open(folder, create=True, passphrase=b"wrong") as store, pytest.raises(AuthError):
        store.private_key(pki.carol_ec.thumbprint)


def test_key_encrypted_needs_passphrase(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "store"
    monkeypatch.setenv("SMIMECLI_STORE_PASSWORD", "from-env")
    with Store.open(folder, create=True) as store:
        store.add(pki.alice.cert, key=pki.alice.key)
    monkeypatch.delenv("SMIMECLI_STORE_PASSWORD")
    with (
        Store.open(folder, create=True) as store,
        pytest.raises(AuthError, match="SMIMECLI_STORE_PASSWORD"),
    ):
        store.private_key(pki.alice.thumbprint)


def test_find_by_issuer_serial_and_ski(store: Store, pki: Pki) -> None:
    store.add(pki.alice.cert, key=pki.alice.key)
    store.add(pki.bob.cert)
    cert = pki.alice.cert
    by_name = store.find_by_issuer_serial(cert.issuer, cert.serial_number)
    assert [c.thumbprint for c in by_name] == [pki.alice.thumbprint]
    by_der = store.find_by_issuer_serial(cert.issuer.public_bytes(), cert.serial_number)
    assert [c.thumbprint for c in by_der] == [pki.alice.thumbprint]
    asn1_name = a_x509.Name.load(cert.issuer.public_bytes())
    assert store.find_by_issuer_serial(asn1_name, cert.serial_number)[0].has_key
    assert store.find_by_issuer_serial(cert.issuer, cert.serial_number + 1) == []
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert [c.thumbprint for c in store.find_by_ski(ski)] == [pki.alice.thumbprint]
    assert store.find_by_ski(b"\x00" * 20) == []


def test_failed_transaction_changes_nothing(store: Store, pki: Pki) -> None:
    store.add(pki.alice.cert)
    before = store.dump()
    with pytest.raises(RuntimeError), store.transaction():
        store.add(pki.bob.cert)
        store.add(pki.alice.cert, key=pki.alice.key)
        raise RuntimeError("boom")
    assert store.dump() == before


def test_locked_store_is_tempfail(tmp_path: Path, pki: Pki) -> None:
    folder = tmp_path / "store"
    Store.open(folder, create=True).close()
    holder = sqlite3.connect(folder / DB_NAME, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Store.open(folder, timeout=0.2) as store, pytest.raises(TempFailError):
            store.add(pki.alice.cert)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _without_ski(pki: Pki) -> x509.Certificate:
    """A user certificate with no subjectKeyIdentifier extension (as some CAs issue)."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes

    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "No SKI")]))
        .issuer_name(pki.ca.cert.subject)
        .public_key(pki.alice.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(pki.ca.key, hashes.SHA256())
    )


def test_find_by_ski_without_the_extension(store: Store, pki: Pki) -> None:
    # CMS recipients name such a certificate by the RFC 5280 method 1 value.
    cert = _without_ski(pki)
    method_1 = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    store.add(cert)
    store.add(pki.bob.cert)
    assert [c.thumbprint for c in store.find_by_ski(method_1)] == [thumbprint(cert)]


def test_find_by_ski_in_a_store_written_before_method_1(store: Store, pki: Pki) -> None:
    cert = _without_ski(pki)
    method_1 = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    store.add(cert)
    store.add(pki.bob.cert)
    # Older versions stored NULL when the extension was missing.
    with store.transaction():
        store._conn.execute("UPDATE certs SET ski = NULL")
    assert [c.thumbprint for c in store.find_by_ski(method_1)] == [thumbprint(cert)]
    bob_ski = pki.bob.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert [c.thumbprint for c in store.find_by_ski(bob_ski.value.digest)] == [pki.bob.thumbprint]
    assert store.find_by_ski(b"\x00" * 20) == []


def test_schema_1_store_gains_the_revocations_table(tmp_path: Path) -> None:
    """A store written before gen-crl existed opens, keeps its rows and records revocations."""
    import datetime as dt

    from smimecli import lab

    root = lab.make_root(lab.RootSpec())
    with Store.open(tmp_path, create=True) as store:
        store.add(root.cert, store_name="root")
        before = store.dump()
    conn = sqlite3.connect(tmp_path / "store.sqlite3")
    conn.execute("DROP TABLE revocations")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with Store.open(tmp_path, readonly=True) as store:
        # Read where it cannot be upgraded: no revocations, nothing written.
        assert not store.is_revoked(root.cert)
        assert store.revocations(root.cert.issuer) == []
    conn = sqlite3.connect(tmp_path / "store.sqlite3")
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("1",)
    conn.close()
    with Store.open(tmp_path) as store:
        assert store.dump() == before
        assert store.revoke(root.cert, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        assert not store.revoke(root.cert, dt.datetime(2030, 1, 2, tzinfo=dt.UTC))
        assert store.is_revoked(root.cert)
        assert store.revocations(root.cert.issuer) == [
            (root.cert.serial_number, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        ]
    conn = sqlite3.connect(tmp_path / "store.sqlite3")
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    conn.close()
