"""Secrets (SPEC sections 1, 6): passwords only from a file, the environment or a no-echo
prompt; exported keys always carry a password; private key files and the store are 0600;
the store passphrase encrypts keys at rest; errors never show key material or passwords;
RSA v1.5 implicit rejection leaves no oracle at the CLI."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from cryptography.hazmat.primitives import serialization

from smimecli.cms.envelope import EnvelopeBuilder
from smimecli.cms.recipients import Recipient
from tests.conftest import Pki, Result
from tests.pki import PASSWORD

Cli = Callable[..., Result]
SECRET = "s3cret-Pa55word-h9"


def _walk(command: Any, path: str = "smimecli") -> Iterator[tuple[str, Any]]:
    """Every (command path, parameter) of the Click tree Typer builds (Typer vendors Click)."""
    for param in command.params:
        yield path, param
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, f"{path} {name}")


def test_no_option_takes_a_plain_password() -> None:
    """Every option about a password or passphrase names a file or a variable, never the
    value (a value on the command line shows in ps and shell history)."""
    from smimecli.cli.app import app

    seen = []
    for path, param in _walk(typer.main.get_command(app)):
        for opt in [*param.opts, *param.secondary_opts]:
            lowered = opt.lower()
            if getattr(param, "is_flag", False):
                continue  # a flag (--no-key-password) carries no value at all
            if any(word in lowered for word in ("password", "passphrase", "passwd", "secret")):
                seen.append(f"{path} {opt}")
                assert lowered.endswith(("-file", "-env")), f"{path} {opt} takes a plain value"
    assert len(seen) >= 5, seen  # the walk did find the password options


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_pfx_without_password_is_refused(cli: Cli, tmp_path: Path) -> None:
    """gen-root --out-pfx and certs export pfx with no password: 64, no file written."""
    result = cli(["gen-root", "--no-store", "--out-pfx", tmp_path / "root.pfx"])
    assert result.exit_code == 64, result.output
    empty = tmp_path / "empty"
    empty.write_text("\n")
    result = cli(
        ["gen-root", "--no-store", "--out-pfx", tmp_path / "root.pfx", "--password-file", empty]
    )
    assert result.exit_code == 64, result.output
    assert not (tmp_path / "root.pfx").exists()

    pw = tmp_path / "pw"
    pw.write_text(PASSWORD.decode())
    result = cli(["gen-root", "--subject", "CN=Secret Root"])
    assert result.exit_code == 0, result.output
    result = cli(
        ["certs", "export", "Secret Root", "-o", tmp_path / "out.pfx", "--with-private-key"]
    )
    assert result.exit_code == 64, result.output
    assert list(tmp_path.glob("*.pfx")) == [] and list(tmp_path.glob(".*.tmp")) == []


def test_private_key_files_and_store_are_0600(cli: Cli, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(SECRET + "\n")
    result = cli(
        [
            "gen-root",
            "--subject",
            "CN=Perm Root",
            "--out-pfx",
            tmp_path / "root.pfx",
            "--out-key",
            tmp_path / "root.key",
            "--out-cer",
            tmp_path / "root.cer",
            "--password-file",
            pw,
        ]
    )
    assert result.exit_code == 0, result.output
    assert _mode(tmp_path / "root.pfx") == 0o600
    assert _mode(tmp_path / "root.key") == 0o600
    result = cli(
        [
            "issue-user",
            "--email",
            "perm@example.com",
            "--signer",
            "Perm Root",
            "--out-pfx",
            tmp_path / "user.pfx",
            "--password-file",
            pw,
        ]
    )
    assert result.exit_code == 0, result.output
    assert _mode(tmp_path / "user.pfx") == 0o600
    result = cli(
        [
            "certs",
            "export",
            "perm@example.com",
            "-o",
            tmp_path / "again.pfx",
            "--with-private-key",
            "--password-file",
            pw,
        ]
    )
    assert result.exit_code == 0, result.output
    assert _mode(tmp_path / "again.pfx") == 0o600
    store = tmp_path / "store"
    assert _mode(store) == 0o700
    for db in store.glob("store.sqlite3*"):
        assert _mode(db) == 0o600, db


def _pkcs8(pki: Pki) -> bytes:
    return pki.alice.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _store_bytes(store: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(store.glob("store.sqlite3*")))


def test_store_passphrase_encrypts_keys_at_rest(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """With SMIMECLI_STORE_PASSWORD the raw SQLite file holds no PKCS#8 plaintext; without
    it the plaintext is there (so this check can fail), and decrypt still finds the key."""
    pw = tmp_path / "pw"
    pw.write_bytes(PASSWORD)
    env = {"SMIMECLI_STORE_PASSWORD": SECRET}
    result = cli(["certs", "import", pki.alice.pfx, "--password-file", pw], env=env)
    assert result.exit_code == 0, result.output
    raw = _store_bytes(tmp_path / "store")
    plain = _pkcs8(pki)
    assert raw and plain not in raw and plain[-64:] not in raw
    assert SECRET.encode() not in raw

    message = tmp_path / "m.p7m"
    message.write_bytes(
        EnvelopeBuilder()
        .add_recipient(Recipient(pki.alice.cert))
        .encrypt(b"Content-Type: text/plain\r\n\r\nat rest\r\n")
    )
    result = cli(["decrypt", message], env=env)
    assert result.exit_code == 0, result.output
    assert b"at rest" in result.stdout
    result = cli(["decrypt", message], env={"SMIMECLI_STORE_PASSWORD": "Not-The-Pass-h9"})
    assert result.exit_code == 77, result.output
    assert "Not-The-Pass-h9" not in result.stderr and SECRET not in result.stderr

    other = tmp_path / "plainstore"
    result = cli(["--store", other, "certs", "import", pki.alice.pfx, "--password-file", pw])
    assert result.exit_code == 0, result.output
    assert plain in _store_bytes(other)  # the control: unencrypted keys are visible


def test_errors_show_no_password_or_key(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """Failing commands that read secrets never echo them."""
    pw = tmp_path / "pw"
    pw.write_text(SECRET + "\n")
    message = tmp_path / "m.p7m"
    # AES-GCM so that the wrong key (bob) always fails, never 1 in 256 garbage.
    message.write_bytes(
        EnvelopeBuilder()
        .set_cipher("aes256-gcm")
        .add_recipient(Recipient(pki.alice.cert))
        .encrypt(b"Content-Type: text/plain\r\n\r\nx\r\n")
    )
    broken_key = tmp_path / "broken.key"
    broken_key.write_bytes(pki.alice.key_pem.read_bytes()[:-200] + b"\n-----END PRIVATE KEY-----\n")
    runs = [
        cli(["decrypt", message, "--key", pki.alice.pfx, "--password-file", pw]),
        cli(
            ["decrypt", message, "--key", pki.alice.pfx, "--password-env", "H9_PW"],
            env={"H9_PW": SECRET},
        ),
        cli(["certs", "import", pki.alice.pfx, "--password-file", pw]),
        cli(["decrypt", message, "--key", broken_key]),
        cli(["decrypt", message, "--key", pki.bob.key_pem]),
        cli(["encrypt", "--cert", pki.alice.key_pem, "-o", tmp_path / "o"], input=b"To: x\n\nx"),
    ]
    key_text = pki.alice.key_pem.read_text().splitlines()[1]
    for result in runs:
        assert result.exit_code in (65, 77), result.output
        assert SECRET not in result.output
        assert "PRIVATE KEY" not in result.stderr
        assert key_text[:20] not in result.stderr


def test_implicit_rejection_has_no_oracle(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """A corrupted RSA v1.5 key-transport block looks exactly like a wrong key: same exit
    status, same stderr line (SPEC 1.2; RFC 8017 7.2.2 note, Bleichenbacher)."""
    from asn1crypto import cms

    # AES-GCM content: a pseudo-random content key always fails the tag, so the outcome is
    # deterministic (with CBC it passes the padding check once in about 256 tries).
    der = (
        EnvelopeBuilder()
        .set_cipher("aes256-gcm")
        .add_recipient(Recipient(pki.alice.cert))
        .encrypt(b"Content-Type: text/plain\r\n\r\noracle\r\n")
    )
    info = cms.ContentInfo.load(der)
    block = info["content"]["recipient_infos"][0].chosen["encrypted_key"].native
    at = der.index(block)
    message = tmp_path / "message.p7m"
    outcomes = []
    for flip in (0, 100, len(block) - 1):
        message.write_bytes(
            der[: at + flip] + bytes([der[at + flip] ^ 0x5A]) + der[at + flip + 1 :]
        )
        outcomes.append(cli(["decrypt", message, "--key", pki.alice.key_pem]))
    message.write_bytes(der)
    outcomes.append(cli(["decrypt", message, "--key", pki.bob.key_pem]))
    assert cli(["decrypt", message, "--key", pki.alice.key_pem]).exit_code == 0
    first = outcomes[-1]
    assert first.exit_code == 77, first.output
    for result in outcomes:
        assert (result.exit_code, result.stderr, result.stdout) == (77, first.stderr, b"")
