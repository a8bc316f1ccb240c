"""``certs import`` of signed mail: verified first, signer details recorded, found by rules."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Pki, Result
from tests.pki import PASSWORD

Cli = Callable[..., Result]
MESSAGE = b"From: alice@example.com\nTo: bob@example.com\nSubject: hi\n\nhello\n"


def _signed(cli: Cli, pki: Pki, tmp_path: Path, name: str = "signed.eml", *extra: str) -> Path:
    out = tmp_path / name
    done = cli(
        ["sign", "--signer-pfx", pki.alice.pfx, "--password-env", "PW", "-o", out, *extra],
        input=MESSAGE,
        env={"PW": PASSWORD.decode()},
    )
    assert done.exit_code == 0, done.output
    return out


def _rows(cli: Cli) -> dict[str, dict[str, Any]]:
    done = cli(["certs", "list", "--json"])
    assert done.exit_code == 0, done.output
    return {row["thumbprint"]: row for row in json.loads(done.stdout)}


def test_signed_mail_harvests_signer_with_capabilities(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    signed = _signed(cli, pki, tmp_path)
    done = cli(["certs", "import", signed])
    assert done.exit_code == 0, done.output
    rows = _rows(cli)
    alice = rows[pki.alice.thumbprint]
    assert alice["stores"] == ["other"]
    assert alice["capabilities"][:3] == ["aes256_gcm", "aes128_gcm", "aes256_cbc"]
    assert str(alice["signing_time"]).endswith("Z")
    assert len(rows) == 1  # sign leaves the root out of the message
    table = cli(["certs", "list"]).stdout.decode()
    assert "capabilities" in table.splitlines()[0]
    assert "aes256-gcm,aes128-gcm,aes256,aes192,aes128,rsa-oaep" in table
    shown = cli(["certs", "show", pki.alice.thumbprint]).stdout.decode()
    assert "capabilities:" in shown and "aes256_gcm" in shown
    assert "signing time:" in shown


def test_tampered_signed_mail_imports_nothing(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    good = _signed(cli, pki, tmp_path)
    bad = tmp_path / "bad.eml"
    bad.write_bytes(good.read_bytes().replace(b"\nhello", b"\nhellO"))
    pem = tmp_path / "bob.pem"
    pem.write_bytes(pki.bob.cert_pem.read_bytes())
    done = cli(["certs", "import", pem, bad])
    assert done.exit_code == 65, done.output
    assert "the message digest does not match" in done.stderr
    assert "no certificate taken from it" in done.stderr
    assert not (tmp_path / "store").exists() or _rows(cli) == {}


def test_newer_signing_time_wins(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    first = _signed(cli, pki, tmp_path, "first.eml")
    assert cli(["certs", "import", first]).exit_code == 0
    db = tmp_path / "store" / "store.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("UPDATE harvested SET signing_time = '2000-01-01T00:00:00Z', capabilities = 'x'")
    conn.commit()
    conn.close()
    second = _signed(cli, pki, tmp_path, "second.eml")
    assert cli(["certs", "import", second]).exit_code == 0
    alice = _rows(cli)[pki.alice.thumbprint]
    assert alice["capabilities"][0] == "aes256_gcm"
    # An older message does not overwrite what a newer one said.
    conn = sqlite3.connect(db)
    conn.execute("UPDATE harvested SET signing_time = '2999-01-01T00:00:00Z', capabilities = 'y'")
    conn.commit()
    conn.close()
    assert cli(["certs", "import", second]).exit_code == 0
    assert _rows(cli)[pki.alice.thumbprint]["capabilities"] == ["y"]


def test_schema_2_store_reads_read_only_and_upgrades(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    assert cli(["certs", "import", pki.bob.cert_pem]).exit_code == 0
    db = tmp_path / "store" / "store.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE harvested")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    db.chmod(0o400)  # a read-only open must not need to write
    try:
        rows = _rows(cli)
        assert rows[pki.bob.thumbprint]["capabilities"] is None
    finally:
        db.chmod(0o600)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
    conn.close()
    assert cli(["certs", "import", _signed(cli, pki, tmp_path)]).exit_code == 0
    assert _rows(cli)[pki.alice.thumbprint]["capabilities"]


def test_rule_store_source_finds_harvested_certificate(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    assert cli(["certs", "import", _signed(cli, pki, tmp_path)]).exit_code == 0
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "harvested"\nrecipients = ["*@example.com"]\n'
        'source = { kind = "store", store = "other" }\n'
    )
    out = tmp_path / "enc.eml"
    msg = b"From: bob@example.com\nTo: alice@example.com\nSubject: back\n\nreply\n"
    done = cli(["encrypt", "--rules", rules, "-o", out, "--json"], input=msg)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["action"] == "encrypted", report
    assert b"smime-type=enveloped-data" in out.read_bytes()
    key = tmp_path / "alice.key"
    key.write_bytes(pki.alice.key_pem.read_bytes())
    plain = cli(["decrypt", out, "--key", key])
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.endswith(b"reply\n")
