"""The root ``--store-password-env`` reaches the store that rules mode opens itself (a
``[[signer]]`` key, ``store`` sources): in ``encrypt --rules``, batch workers and ``serve``,
as a value, never through ``$SMIMECLI_STORE_PASSWORD``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Pki, Result
from tests.messages import message
from tests.pki import PASSWORD

Cli = Callable[..., Result]
SECRET = "store secret"
ENV = {"LAB_PASS": SECRET, "PW": PASSWORD.decode()}
RULES = (
    '[[signer]]\nsenders = ["*@example.com"]\nsigner = "alice@example.com"\n\n'
    '[[rule]]\nname = "partners"\nrecipients = ["bob@example.com"]\n'
    'source = { kind = "store", store = "other" }\n'
)
MESSAGE = message("bob@example.com", b"signed by rules\n", sender="alice@example.com", subject="pw")


@pytest.fixture
def rules(cli: Cli, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Alice's key in 'my', encrypted with the store passphrase; Bob's certificate in
    'other'; SMIMECLI_STORE_PASSWORD unset."""
    monkeypatch.delenv("SMIMECLI_STORE_PASSWORD", raising=False)
    done = cli(
        [
            *("--store-password-env", "LAB_PASS", "certs", "import", "--store-name", "my"),
            *(pki.alice.pfx, "--password-env", "PW"),
        ],
        env=ENV,
    )
    assert done.exit_code == 0, done.output
    assert cli(["certs", "import", pki.bob.cert_pem]).exit_code == 0
    # Without the passphrase the key cannot be read: the store really is encrypted.
    plain = cli(
        [
            *("certs", "export", "alice@example.com", "-o", tmp_path / "a.pfx"),
            *("--with-private-key", "--password-env", "PW"),
        ],
        env=ENV,
    )
    assert plain.exit_code == 77, plain.output
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


def _assert_signed_for_bob(cli: Cli, pki: Pki, tmp_path: Path, encrypted: Path) -> None:
    key = tmp_path / "bob.key"
    key.write_bytes(pki.bob.key_pem.read_bytes())
    inner = tmp_path / f"{encrypted.stem}.inner.eml"
    done = cli(["decrypt", encrypted, "--key", key, "-o", inner])
    assert done.exit_code == 0, done.output
    assert b"multipart/signed" in inner.read_bytes()
    done = cli(["verify", "--json", inner, "--ca", pki.ca.cert_pem])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["status"] == "valid"


def test_encrypt_rules_signs_with_the_global_store_passphrase(
    cli: Cli, pki: Pki, tmp_path: Path, rules: Path
) -> None:
    out = tmp_path / "out.eml"
    done = cli(
        ["--store-password-env", "LAB_PASS", "encrypt", "--rules", rules, "-o", out, "--json"],
        input=MESSAGE,
        env=ENV,
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["signed_by"]["subject"].startswith("CN=Alice")
    _assert_signed_for_bob(cli, pki, tmp_path, out)


def test_without_the_passphrase_the_signer_key_is_77(cli: Cli, tmp_path: Path, rules: Path) -> None:
    out = tmp_path / "out.eml"
    done = cli(["encrypt", "--rules", rules, "-o", out], input=MESSAGE, env=ENV)
    assert done.exit_code == 77, done.output
    assert "signer 'alice@example.com'" in done.stderr and "SMIMECLI_STORE_PASSWORD" in done.stderr
    assert not out.exists()


def test_batch_workers_get_the_global_store_passphrase(
    cli: Cli, pki: Pki, tmp_path: Path, rules: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name in ("a.eml", "b.eml", "c.eml"):
        (inbox / name).write_bytes(MESSAGE)
    out = tmp_path / "out"
    out.mkdir()
    done = cli(
        [
            *("--store-password-env", "LAB_PASS", "encrypt", "--rules", rules),
            *("--out-dir", out, "--jobs", "2", inbox),
        ],
        env=ENV,
    )
    assert done.exit_code == 0, done.output
    assert "3 messages: 3 encrypted, 0 passed, 0 failed" in done.stderr
    for name in ("a.eml", "b.eml", "c.eml"):
        _assert_signed_for_bob(cli, pki, tmp_path, out / name)


def test_library_takes_the_store_passphrase_as_a_value(
    pki: Pki, tmp_path: Path, rules: Path
) -> None:
    from smimecli.encrypt.request import EncryptRequest, encrypt_one
    from smimecli.rules.load import load_rules

    store = tmp_path / "store"
    loaded = load_rules(rules, store_dir=store, store_passphrase=SECRET.encode())
    assert loaded.load_signer("alice@example.com", "here").thumbprint
    assert SECRET not in repr(loaded)
    request = EncryptRequest(rules=rules, store_dir=store, store_passphrase=SECRET.encode())
    assert SECRET not in repr(request)
    outcome = encrypt_one(request, io.BytesIO(MESSAGE), io.BytesIO())
    assert outcome.action == "encrypted"
    assert outcome.signed_by is not None


def test_serve_engine_and_workers_get_the_store_passphrase(tmp_path: Path, rules: Path) -> None:
    from smimecli.serve import engine

    store = tmp_path / "store"
    loaded = engine.Engine.load(rules, store, SECRET.encode())
    assert loaded.rules.load_signer("alice@example.com", "here").thumbprint
    engine.init_worker(rules, store, SECRET.encode())
    assert engine._WORKER is not None
    assert engine._WORKER.rules.load_signer("alice@example.com", "here").thumbprint


def test_serve_settings_carry_the_store_passphrase(tmp_path: Path, rules: Path) -> None:
    from smimecli.serve.daemon import Daemon, Settings

    settings = Settings(
        rules=rules,
        store_dir=tmp_path / "store",
        listen=("127.0.0.1", 0),
        relay=("127.0.0.1", 1),
        store_passphrase=SECRET.encode(),
    )
    assert SECRET not in repr(settings)
    daemon = Daemon(settings)
    assert daemon.engine.rules.load_signer("alice@example.com", "here").thumbprint
    assert daemon.reload()
    assert daemon.engine.rules.load_signer("alice@example.com", "here").thumbprint


def test_batch_sign_with_gets_the_global_store_passphrase(
    cli: Cli, pki: Pki, tmp_path: Path, rules: Path
) -> None:
    # Direct mode: --sign-with names the store's key, which each batch worker loads again.
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name in ("a.eml", "b.eml"):
        (inbox / name).write_bytes(MESSAGE)
    out = tmp_path / "out"
    out.mkdir()
    done = cli(
        [
            *("--store-password-env", "LAB_PASS", "encrypt", "--sign-with", "alice@example.com"),
            *("--cert", pki.bob.cert_pem, "--out-dir", out, "--jobs", "2", inbox),
        ],
        env=ENV,
    )
    assert done.exit_code == 0, done.output
    assert "2 messages: 2 encrypted, 0 passed, 0 failed" in done.stderr
    for name in ("a.eml", "b.eml"):
        _assert_signed_for_bob(cli, pki, tmp_path, out / name)
