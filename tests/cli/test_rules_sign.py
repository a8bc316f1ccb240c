"""Rules mode signing: ``sign = { signer = ... }`` per rule and ``[[signer]]`` per sender."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Pki, Result, assert_error
from tests.messages import message
from tests.pki import PASSWORD

Cli = Callable[..., Result]
SIGNER = '[[signer]]\nsenders = ["*@example.com"]\nsigner = "alice@example.com"\n\n'
RULE = (
    '[[rule]]\nname = "partners"\nrecipients = ["bob@example.com"]\n'
    'source = { kind = "store", store = "other" }\n'
)


def _message(sender: str, to: str) -> bytes:
    return message(to, b"hello by rules\n", sender=sender, subject="by rules")


@pytest.fixture
def store(cli: Cli, pki: Pki) -> None:
    """Alice's key in 'my' (the signer), Bob's certificate in 'other' (a recipient)."""
    done = cli(
        ["certs", "import", "--store-name", "my", pki.alice.pfx, "--password-env", "PW"],
        env={"PW": PASSWORD.decode()},
    )
    assert done.exit_code == 0, done.output
    assert cli(["certs", "import", pki.bob.cert_pem]).exit_code == 0


def _encrypt(cli: Cli, tmp_path: Path, text: str, message: bytes) -> tuple[Result, Path]:
    rules = tmp_path / "rules.toml"
    rules.write_text(text)
    out = tmp_path / "out.eml"
    return cli(["encrypt", "--rules", rules, "-o", out, "--json"], input=message), out


def _verify(cli: Cli, pki: Pki, path: Path) -> dict[str, object]:
    done = cli(["verify", "--json", path, "--ca", pki.ca.cert_pem])
    assert done.exit_code == 0, done.output
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_signer_table_signs_then_encrypts(cli: Cli, pki: Pki, tmp_path: Path, store: None) -> None:
    done, out = _encrypt(
        cli, tmp_path, SIGNER + RULE, _message("Alice <alice@example.com>", "bob@example.com")
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["action"] == "encrypted"
    assert report["signed_by"]["subject"].startswith("CN=Alice")
    key = tmp_path / "bob.key"
    key.write_bytes(pki.bob.key_pem.read_bytes())
    inner = tmp_path / "inner.eml"
    assert cli(["decrypt", out, "--key", key, "-o", inner]).exit_code == 0
    assert b"multipart/signed" in inner.read_bytes()
    assert _verify(cli, pki, inner)["status"] == "valid"


def test_signer_table_signs_only_when_nobody_is_encrypted(
    cli: Cli, pki: Pki, tmp_path: Path, store: None
) -> None:
    done, out = _encrypt(
        cli, tmp_path, SIGNER + RULE, _message("alice@example.com", "dan@example.org")
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["action"] == "signed"
    assert b"multipart/signed" in out.read_bytes()
    assert _verify(cli, pki, out)["status"] == "valid"
    # A sender no [[signer]] matches: the message passes unchanged.
    message = _message("eve@example.net", "dan@example.org")
    done, out = _encrypt(cli, tmp_path, SIGNER + RULE, message)
    assert json.loads(done.stdout)["action"] == "passed"
    assert out.read_bytes() == message


def test_rule_sign_key(cli: Cli, pki: Pki, tmp_path: Path, store: None) -> None:
    text = RULE + 'sign = { signer = "alice@example.com" }\n'
    done, _out = _encrypt(cli, tmp_path, text, _message("eve@example.net", "bob@example.com"))
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["signed_by"]["subject"].startswith("CN=Alice")
    assert json.loads(done.stdout)["action"] == "encrypted"


def test_reject_policy_signs_nothing(cli: Cli, pki: Pki, tmp_path: Path, store: None) -> None:
    text = SIGNER + RULE.replace("bob@", "*@") + 'on_missing_cert = "reject"\n'
    done, out = _encrypt(cli, tmp_path, text, _message("alice@example.com", "zed@example.com"))
    assert_error(done, 67, "no usable certificate for zed@example.com (rule 'partners', ")
    assert not out.exists()


def test_signer_without_key_is_77_naming_the_rules_file(
    cli: Cli, pki: Pki, tmp_path: Path, store: None
) -> None:
    text = SIGNER.replace('"alice@example.com"', '"bob@example.com"') + RULE
    done, out = _encrypt(cli, tmp_path, text, _message("alice@example.com", "bob@example.com"))
    assert done.exit_code == 78, done.output
    assert "rules.toml:1: signer #1: signer 'bob@example.com': no certificate in store 'my'" in (
        done.stderr
    )
    assert not out.exists()
    done = cli(["certs", "import", "--store-name", "my", pki.bob.cert_pem])
    assert done.exit_code == 0, done.output
    done, out = _encrypt(cli, tmp_path, text, _message("alice@example.com", "bob@example.com"))
    assert done.exit_code == 77, done.output
    assert "rules.toml:1: signer #1: signer 'bob@example.com': the certificate" in done.stderr
    assert "has no private key in the store" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            RULE + 'sign = "alice@example.com"\n',
            "rules.toml:5: rule 'partners', key 'sign': must be a table: "
            'sign = { signer = "alice@example.com" }',
        ),
        (
            RULE + 'sign = { signer = "a", pfx = "x" }\n',
            "rules.toml:5: rule 'partners', key 'sign.pfx': unknown key (allowed: signer)",
        ),
        (
            RULE + "\n" + '[[signer]]\nsigner = "alice@example.com"\n',
            "rules.toml:6: signer #1: missing key 'senders'",
        ),
        (
            '[[signer]]\nsenders = "*@example.com"\nsigner = "a"\n\n' + RULE,
            "rules.toml:2: signer #1, key 'senders': must be a list: senders = [\"*@example.com\"]",
        ),
        (
            '[[signer]]\nsenders = ["*@example.com"]\nsigner = ""\n\n' + RULE,
            "rules.toml:3: signer #1, key 'signer': must be a non-empty string",
        ),
    ],
)
def test_sign_validation_errors_78(cli: Cli, tmp_path: Path, text: str, message: str) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(text)
    done = cli(["rules", "check", "--rules", rules])
    assert done.exit_code == 78, done.output
    assert message in done.stderr


def test_batch_counts_signed_only(cli: Cli, pki: Pki, tmp_path: Path, store: None) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(SIGNER + RULE)
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.eml").write_bytes(_message("alice@example.com", "bob@example.com"))
    (inbox / "b.eml").write_bytes(_message("alice@example.com", "dan@example.org"))
    out = tmp_path / "out"
    out.mkdir()
    done = cli(["encrypt", "--rules", rules, "--out-dir", out, "--jobs", "1", inbox])
    assert done.exit_code == 0, done.output
    assert "2 messages: 1 encrypted, 0 passed, 0 failed, 1 signed only in" in done.stderr
    assert b"multipart/signed" in (out / "b.eml").read_bytes()
    assert b"enveloped-data" in (out / "a.eml").read_bytes()
