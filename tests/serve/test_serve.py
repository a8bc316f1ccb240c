"""``smimecli serve`` over real SMTP: smtplib in front, an aiosmtpd sink behind."""

from __future__ import annotations

import json
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smimecli.serve.daemon import Settings
from tests.conftest import Pki, require_tool
from tests.serve.helpers import (
    SinkHandler,
    filter_settings,
    free_port,
    listening_port,
    message,
    running,
    sink,
)


@pytest.fixture
def relay() -> Iterator[tuple[SinkHandler, int]]:
    with sink() as found:
        yield found


def _settings(tmp_path: Path, pki: Pki, relay_port: int, **kwargs: Any) -> Settings:
    return filter_settings(tmp_path, pki, relay_port, **kwargs)


def _decrypt(pki: Pki, data: bytes, tmp_path: Path) -> bytes:
    openssl = require_tool("openssl")
    path = tmp_path / "delivered.eml"
    path.write_bytes(data)
    proc = subprocess.run(
        [openssl, "cms", "-decrypt", "-in", str(path), "-inkey", str(pki.alice.key_pem)],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _journal(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_split_delivery_encrypts_for_holders_and_passes_the_rest(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    sunk, port = relay
    sent = message("alice@example.com, erin@example.com, dora@example.net, bob@example.com")
    with (
        running(_settings(tmp_path, pki, port)) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=30) as smtp,
    ):
        refused = smtp.sendmail(
            "sender@example.org",
            ["alice@example.com", "erin@example.com", "dora@example.net", "bob@example.com"],
            sent,
        )
    # bob's rule rejects: 550 5.7.1 at RCPT, the others are delivered.
    assert refused["bob@example.com"][0] == 550
    assert b"5.7.1" in refused["bob@example.com"][1]
    assert len(sunk.messages) == 2
    encrypted = next(m for m in sunk.messages if m.recipients == ["alice@example.com"])
    clear = next(m for m in sunk.messages if m is not encrypted)
    assert clear.recipients == ["erin@example.com", "dora@example.net"]
    assert clear.content == sent, "a pass recipient must get the original bytes"
    assert b"application/pkcs7-mime" in encrypted.content
    assert b"The figures are attached" not in encrypted.content
    inner = _decrypt(pki, encrypted.content, tmp_path)
    assert b"The figures are attached." in inner
    assert b"\n.leading dot line" in inner
    assert not list((tmp_path / "spool").iterdir()), "spool files were left behind"


def test_journal_records_decisions_without_content(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    _, port = relay
    with (
        running(_settings(tmp_path, pki, port)) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon)) as smtp,
    ):
        smtp.sendmail("sender@example.org", ["alice@example.com", "erin@example.com"], message())
    (record,) = _journal(tmp_path)
    text = json.dumps(record)
    assert "figures are attached" not in text and "quarterly" not in text
    assert record["message_id"] == "<figures-1@example.org>"
    assert str(record["reply"]).startswith("250")
    assert isinstance(record["elapsed_ms"], int) and isinstance(record["size"], int)
    alice, erin = record["recipients"]
    assert alice["rule"] == "alice" and alice["outcome"] == "encrypt"
    assert alice["thumbprint"] == pki.alice.thumbprint
    assert alice["cipher"] == "aes256" and alice["key_transport"] == "rsa"
    assert alice["relay_reply"].startswith("250")
    assert erin["outcome"] == "pass" and erin["copy"] == "original"
    # The library's warning reaches the journal instead of stderr.
    # Each notice as an object: a program tests the code, a person reads the text.
    assert {
        "code": "plaintext-recipient",
        "text": "erin@example.com gets the message without encryption",
        "address": "erin@example.com",
    } in record["notices"]
    assert all(set(n) <= {"code", "text", "address"} for n in record["notices"])


def test_journal_subject_only_on_request(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    _, port = relay
    settings = _settings(tmp_path, pki, port, journal_subject=True)
    with running(settings) as daemon, smtplib.SMTP("127.0.0.1", listening_port(daemon)) as smtp:
        smtp.sendmail("sender@example.org", ["erin@example.com"], message())
    assert _journal(tmp_path)[0]["subject"] == "quarterly figures"


def test_tempfail_recipient_gets_450(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    sunk, port = relay
    with (
        running(_settings(tmp_path, pki, port)) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon)) as smtp,
    ):
        smtp.ehlo()
        smtp.mail("sender@example.org")
        code, text = smtp.rcpt("carol@example.com")
        assert code == 450 and b"4.7.1" in text
        assert smtp.rcpt("alice@example.com")[0] == 250
        code, _ = smtp.data(message("alice@example.com"))
        assert code == 250
    assert [m.recipients for m in sunk.messages] == [["alice@example.com"]]


def test_relay_down_is_451_and_nothing_is_kept(tmp_path: Path, pki: Pki) -> None:
    with (
        running(_settings(tmp_path, pki, free_port())) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon)) as smtp,
    ):
        with pytest.raises(smtplib.SMTPDataError) as caught:
            smtp.sendmail("sender@example.org", ["alice@example.com"], message())
    assert caught.value.smtp_code == 451
    assert b"4.3.0" in caught.value.smtp_error
    assert not list((tmp_path / "spool").iterdir())
    (record,) = _journal(tmp_path)
    assert str(record["reply"]).startswith("451")


@pytest.mark.parametrize(
    ("reply", "code"), [("554 5.7.1 content refused", 554), ("452 4.3.1 queue full", 451)]
)
def test_relay_refusal_reaches_the_client(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int], reply: str, code: int
) -> None:
    sunk, port = relay
    sunk.reply = reply
    with (
        running(_settings(tmp_path, pki, port)) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon)) as smtp,
    ):
        with pytest.raises(smtplib.SMTPDataError) as caught:
            smtp.sendmail("sender@example.org", ["alice@example.com"], message())
    assert caught.value.smtp_code == code
    assert reply.split(" ", 2)[2].encode() in caught.value.smtp_error


def test_size_limit_at_mail_and_at_data(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    sunk, port = relay
    with (
        running(_settings(tmp_path, pki, port, max_size=4000)) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon)) as smtp,
    ):
        smtp.ehlo()
        assert smtp.has_extn("size") and smtp.has_extn("pipelining")
        code, text = smtp.mail("sender@example.org", ["SIZE=5000"])
        assert code == 552 and b"5.3.4" in text
        smtp.rset()
        assert smtp.mail("sender@example.org")[0] == 250
        assert smtp.rcpt("alice@example.com")[0] == 250
        code, text = smtp.data(message("alice@example.com", size=6000))
        assert code == 552 and b"5.3.4" in text
    assert not sunk.messages


def test_beyond_max_sessions_421(tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]) -> None:
    _, port = relay
    with (
        running(_settings(tmp_path, pki, port, max_sessions=1)) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon)) as first,
    ):
        assert first.noop()[0] == 250
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=10)
        assert caught.value.smtp_code == 421
        assert b"4.7.0" in caught.value.smtp_error


def test_already_encrypted_goes_unchanged_to_all(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    sunk, port = relay
    with running(_settings(tmp_path, pki, port)) as daemon:
        with smtplib.SMTP("127.0.0.1", listening_port(daemon)) as smtp:
            smtp.sendmail("sender@example.org", ["alice@example.com"], message())
        encrypted = sunk.messages[0].content
        with smtplib.SMTP("127.0.0.1", listening_port(daemon)) as smtp:
            smtp.sendmail(
                "sender@example.org", ["alice@example.com", "erin@example.com"], encrypted
            )
    again = sunk.messages[1]
    assert again.recipients == ["alice@example.com", "erin@example.com"]
    assert again.content == encrypted


def test_only_the_serve_package_imports_aiosmtpd() -> None:
    package = Path(__file__).resolve().parents[2] / "smimecli"
    users = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "aiosmtpd" in path.read_text()
    )
    assert users and all(u.startswith("serve/") for u in users), users


def _claims_encrypted(to: str) -> bytes:
    """A plaintext body under an ``enveloped-data`` Content-Type: a claim, not CMS."""
    return (
        "From: sender@example.org\r\n"
        f"To: {to}\r\n"
        "Subject: quarterly figures\r\n"
        "Message-ID: <claim-1@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "The figures are attached, in plain text.\r\n"
    ).encode()


def test_a_mere_claim_of_encryption_follows_the_rules(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    sunk, port = relay
    recipients = ["alice@example.com", "erin@example.com", "bob@example.com"]
    sent = _claims_encrypted(", ".join(recipients))
    with (
        running(_settings(tmp_path, pki, port)) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=30) as smtp,
    ):
        refused = smtp.sendmail("sender@example.org", recipients, sent)
    # bob's rule rejects: refused at RCPT, and nothing reaches the relay for him.
    assert refused["bob@example.com"][0] == 550
    assert all("bob@example.com" not in m.recipients for m in sunk.messages)
    # alice holds a certificate: a real envelope, not the plaintext under the claim.
    encrypted = next(m for m in sunk.messages if m.recipients == ["alice@example.com"])
    assert b"in plain text" not in encrypted.content
    assert b"in plain text" in _decrypt(pki, encrypted.content, tmp_path)
    # erin's rule passes: the original bytes, as for any plaintext message.
    clear = next(m for m in sunk.messages if m is not encrypted)
    assert clear.recipients == ["erin@example.com"] and clear.content == sent
    (record,) = _journal(tmp_path)
    codes = [n["code"] for n in record["notices"]]
    assert "already-encrypted" not in codes
    outcomes = {r["recipient"]: r["copy"] for r in record["recipients"]}
    assert outcomes == {
        "bob@example.com": None,
        "alice@example.com": "encrypted",
        "erin@example.com": "original",
    }


def test_process_worker_killed_mid_message_is_451_and_the_next_goes_through(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    import os
    import signal
    import threading
    import time

    sunk, port = relay
    spool = tmp_path / "spool"
    settings = _settings(tmp_path, pki, port, worker_kind="process", workers=1)
    with running(settings) as daemon:
        replies: list[tuple[int, bytes]] = []

        def send_big() -> None:
            with smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=60) as smtp:
                smtp.ehlo()
                smtp.mail("sender@example.org")
                smtp.rcpt("alice@example.com")
                replies.append(smtp.data(message("alice@example.com", size=20 << 20)))

        client = threading.Thread(target=send_big)
        client.start()
        # The worker is encrypting when its output file appears in the spool.
        deadline = time.monotonic() + 60
        while not list(spool.glob("smimecli-in-*-out-*")) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert list(spool.glob("smimecli-in-*-out-*")), "the worker never started encrypting"
        workers = list(daemon._cpu._processes)  # type: ignore[attr-defined]
        assert workers, "no worker process is running"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        client.join(60)
        assert replies, "no reply to the end of DATA"
        code, text = replies[0]
        assert code == 451 and b"4.3.0" in text, replies
        assert not sunk.messages, "a copy reached the relay from a killed worker"
        # A new worker takes the next message.
        with smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=60) as smtp:
            smtp.sendmail("sender@example.org", ["alice@example.com"], message("alice@example.com"))
    (delivered,) = sunk.messages
    assert b"The figures are attached" in _decrypt(pki, delivered.content, tmp_path)
    assert not list(spool.iterdir()), "the killed message's spool files were left"
    first, second = _journal(tmp_path)
    assert str(first["reply"]).startswith("451") and "BrokenProcessPool" in str(first["error"])
    assert str(second["reply"]).startswith("250")


def test_a_message_that_can_never_be_read_is_refused_for_good_not_deferred(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    # A header line over 1 MiB is what `encrypt` refuses with 65: retrying cannot help, so
    # the filter answers 554 5.6.0 (Postfix bounces now) instead of 451 (five days queued).
    sunk, port = relay
    broken = b"Subject: x\r\nX-Long: " + b"a" * (1 << 21) + b"\r\n\r\nbody\r\n"
    with (
        running(_settings(tmp_path, pki, port)) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=60) as smtp,
    ):
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("sender@example.org", ["alice@example.com"], broken)
    assert refused.value.smtp_code == 554
    assert b"5.6.0" in refused.value.smtp_error
    assert b"header line is longer than 1 MiB" in refused.value.smtp_error
    assert sunk.messages == []
    (record,) = _journal(tmp_path)
    assert record["reply"].startswith("554 5.6.0")
    assert list((tmp_path / "spool").iterdir()) == []


def test_recipients_beyond_the_limit_wait_for_another_transaction(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    from smimecli.serve.handler import MAX_RECIPIENTS

    _sunk, port = relay
    with (
        running(_settings(tmp_path, pki, port)) as daemon,
        smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=60) as smtp,
    ):
        smtp.ehlo()
        smtp.mail("sender@example.org")
        codes = [smtp.rcpt(f"user{n}@example.net")[0] for n in range(MAX_RECIPIENTS)]
        code, text = smtp.rcpt("one.more@example.net")
        overlong = "a" * 250 + "@example.net"
        smtp.rset()
        smtp.mail("sender@example.org")
        too_long = smtp.rcpt(overlong)
    assert set(codes) == {250}
    assert (code, text[:5]) == (452, b"4.5.3")
    assert too_long[0] == 553 and b"5.1.3" in too_long[1]
