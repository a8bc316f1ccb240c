"""``smimecli serve`` signs as ``encrypt --rules`` does: ``[[signer]]`` by the envelope
sender, ``sign = { signer = ... }`` per rule; openssl decrypts and verifies what the relay got."""

from __future__ import annotations

import json
import smtplib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smimecli.serve.daemon import Settings
from tests.conftest import Pki, Result
from tests.pki import PASSWORD
from tests.serve.helpers import SinkHandler, listening_port, message, running, sink

Cli = Callable[..., Result]
SIGNER = '[[signer]]\nsenders = ["*@example.org"]\nsigner = "{signer}"\n\n'
RULES = """\
[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{alice}" }}

[[rule]]
name = "erin"
recipients = ["erin@example.com"]
source = {{ kind = "dir", path = "{empty}" }}
on_missing_cert = "pass"
"""


@pytest.fixture
def relay() -> Iterator[tuple[SinkHandler, int]]:
    with sink() as found:
        yield found


@pytest.fixture
def store(cli: Cli, pki: Pki, tmp_path: Path) -> Path:
    """Bob's key in 'my' (the signer), Carol's certificate in 'my' without its key."""
    done = cli(
        ["certs", "import", "--store-name", "my", pki.bob.pfx, "--password-env", "PW"],
        env={"PW": PASSWORD.decode()},
    )
    assert done.exit_code == 0, done.output
    done = cli(["certs", "import", "--store-name", "my", pki.carol_ec.cert_pem])
    assert done.exit_code == 0, done.output
    return tmp_path / "store"


def _settings(tmp_path: Path, pki: Pki, store: Path, port: int, text: str) -> Settings:
    (tmp_path / "empty").mkdir(exist_ok=True)
    rules = tmp_path / "rules.toml"
    rules.write_text(text + RULES.format(alice=pki.alice.cert_pem, empty=tmp_path / "empty"))
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    return Settings(
        rules=rules,
        store_dir=store,
        listen=("127.0.0.1", 0),
        relay=("127.0.0.1", port),
        journal=str(tmp_path / "journal.jsonl"),
        spool_dir=str(spool),
    )


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, timeout=60)


def _verify(pki: Pki, path: Path) -> bytes:
    content = path.with_suffix(".content")
    done = _openssl("cms", "-verify", "-in", path, "-CAfile", pki.ca.cert_pem, "-out", content)
    assert done.returncode == 0, done.stderr
    assert b"Verification successful" in done.stderr
    return content.read_bytes()


def _journal(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _send(port: int, sender: str, recipients: list[str], data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.sendmail(sender, recipients, data)


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_signer_by_envelope_sender_signs_both_copies(
    tmp_path: Path, pki: Pki, store: Path, relay: tuple[SinkHandler, int], pool: str
) -> None:
    sunk, port = relay
    settings = _settings(tmp_path, pki, store, port, SIGNER.format(signer="bob@example.com"))
    settings.worker_kind = pool  # in a process: its own signer, loaded there
    sent = message("alice@example.com, erin@example.com")
    with running(settings) as daemon:
        _send(
            daemon.port or 0, "sender@example.org", ["alice@example.com", "erin@example.com"], sent
        )
    encrypted = next(m for m in sunk.messages if m.recipients == ["alice@example.com"])
    clear = next(m for m in sunk.messages if m.recipients == ["erin@example.com"])
    # The encrypted copy: signed, then encrypted; openssl opens and verifies it.
    sealed = tmp_path / "sealed.eml"
    sealed.write_bytes(encrypted.content)
    inner = tmp_path / "inner.eml"
    done = _openssl("cms", "-decrypt", "-in", sealed, "-inkey", pki.alice.key_pem, "-out", inner)
    assert done.returncode == 0, done.stderr
    assert b"multipart/signed" in inner.read_bytes()
    assert b"The figures are attached" in _verify(pki, inner)
    # The pass copy: signed by the same signer, in clear.
    signed = tmp_path / "signed.eml"
    signed.write_bytes(clear.content)
    assert b"multipart/signed" in clear.content and clear.content != sent
    assert b"The figures are attached" in _verify(pki, signed)
    (record,) = _journal(tmp_path)
    copies = {r["recipient"]: (r["copy"], r["signed_by"]) for r in record["recipients"]}
    signer = {"thumbprint": pki.bob.thumbprint, "subject": copies["erin@example.com"][1]["subject"]}
    assert signer["subject"].startswith("CN=Bob")
    assert copies == {
        "alice@example.com": ("encrypted", signer),
        "erin@example.com": ("signed", signer),
    }


def test_the_envelope_sender_decides_not_the_from_header(
    tmp_path: Path, pki: Pki, store: Path, relay: tuple[SinkHandler, int]
) -> None:
    sunk, port = relay
    settings = _settings(tmp_path, pki, store, port, SIGNER.format(signer="bob@example.com"))
    # From: sender@example.org matches the [[signer]]; the envelope sender does not.
    sent = message("erin@example.com")
    with running(settings) as daemon:
        _send(daemon.port or 0, "list-bounces@example.net", ["erin@example.com"], sent)
    (clear,) = sunk.messages
    assert clear.content == sent, "no [[signer]] for the envelope sender: the original bytes"
    (record,) = _journal(tmp_path)
    assert record["recipients"][0]["copy"] == "original"
    assert record["recipients"][0]["signed_by"] is None


def test_rule_sign_signs_only_its_recipients_copy(
    tmp_path: Path, pki: Pki, store: Path, relay: tuple[SinkHandler, int]
) -> None:
    sunk, port = relay
    text = RULES.replace(
        'name = "alice"\n', 'name = "alice"\nsign = {{ signer = "bob@example.com" }}\n'
    )
    settings = _settings(tmp_path, pki, store, port, "")
    Path(settings.rules).write_text(text.format(alice=pki.alice.cert_pem, empty=tmp_path / "empty"))
    sent = message("alice@example.com, erin@example.com")
    with running(settings) as daemon:
        _send(
            daemon.port or 0, "sender@example.org", ["alice@example.com", "erin@example.com"], sent
        )
    clear = next(m for m in sunk.messages if m.recipients == ["erin@example.com"])
    assert clear.content == sent, "erin's rule does not sign: the original bytes"
    (record,) = _journal(tmp_path)
    signed_by = {r["recipient"]: r["signed_by"] for r in record["recipients"]}
    assert signed_by["alice@example.com"]["thumbprint"] == pki.bob.thumbprint
    assert signed_by["erin@example.com"] is None


def test_a_signer_without_its_key_is_451_and_nothing_is_sent(
    tmp_path: Path, pki: Pki, store: Path, relay: tuple[SinkHandler, int]
) -> None:
    sunk, port = relay
    settings = _settings(tmp_path, pki, store, port, SIGNER.format(signer="carol@example.com"))
    with (
        running(settings) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=60) as smtp,
    ):
        with pytest.raises(smtplib.SMTPDataError) as failed:
            smtp.sendmail("sender@example.org", ["erin@example.com"], message("erin@example.com"))
    assert failed.value.smtp_code == 451
    assert b"4.3.0" in failed.value.smtp_error
    assert sunk.messages == [], "a copy the rules sign must never go out unsigned"
    (record,) = _journal(tmp_path)
    assert "signer 'carol@example.com'" in record["error"]
    assert "has no private key in the store" in record["error"]
    assert list((tmp_path / "spool").iterdir()) == []


def test_the_signer_is_loaded_once_and_again_after_a_reload(
    tmp_path: Path,
    pki: Pki,
    store: Path,
    relay: tuple[SinkHandler, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import smimecli.sign.signers as signers

    loaded: list[str] = []
    real = signers.signer_from_store

    def counting(*args: Any, **kwargs: Any) -> signers.Signer:
        loaded.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(signers, "signer_from_store", counting)
    sunk, port = relay
    settings = _settings(tmp_path, pki, store, port, SIGNER.format(signer="bob@example.com"))
    with running(settings) as daemon:
        for _ in range(3):
            _send(daemon.port or 0, "sender@example.org", ["erin@example.com"], message())
        assert loaded == ["bob@example.com"]
        assert daemon.reload()
        _send(daemon.port or 0, "sender@example.org", ["erin@example.com"], message())
    assert loaded == ["bob@example.com", "bob@example.com"]
    assert len(sunk.messages) == 4
    assert all(b"multipart/signed" in m.content for m in sunk.messages)
