"""``smimecli serve`` against hostile clients and a misbehaving relay (real sockets)."""

from __future__ import annotations

import errno
import io
import json
import os
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from smimecli.certs.store import DB_NAME, Store
from smimecli.serve.daemon import Daemon, Settings
from tests.conftest import Pki, require_tool
from tests.serve.helpers import filter_settings, listening_port, message, running, sink, write_rules
from tests.serve.relays import CLOSE, HANG, scripted_relay


def _settings(tmp_path: Path, pki: Pki, relay_port: int, **kwargs: Any) -> Settings:
    return filter_settings(tmp_path, pki, relay_port, **kwargs)


def _journal(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _wait_for(check: Any, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def _send(
    daemon: Daemon, recipients: list[str], data: bytes | None = None
) -> tuple[int, bytes, smtplib.SMTP]:
    """One message through the filter; returns the end-of-DATA reply and the open session."""
    smtp = smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=60)
    smtp.ehlo()
    assert smtp.mail("sender@example.org")[0] == 250
    for rcpt in recipients:
        assert smtp.rcpt(rcpt)[0] == 250
    code, text = smtp.data(data or message(", ".join(recipients)))
    return code, text, smtp


def test_a_relay_that_never_answers_gets_451_not_a_dropped_session(
    tmp_path: Path, pki: Pki
) -> None:
    # The session timeout (1 s) is shorter than the relay's (2 s): the time spent waiting
    # for the relay must not count against the session, or the client sees a dropped
    # connection instead of the 451 (and the session is not free for the next message).
    with (
        scripted_relay(END=[HANG]) as relay,
        running(
            _settings(tmp_path, pki, relay.port, session_timeout=1.0, relay_timeout=2.0)
        ) as daemon,
    ):
        code, text, smtp = _send(daemon, ["alice@example.com"])
        with smtp:
            assert code == 451 and b"4.3.0" in text, (code, text)
            assert smtp.noop()[0] == 250  # the session goes on
        assert not list((tmp_path / "spool").iterdir())
    (record,) = _journal(tmp_path)
    assert str(record["reply"]).startswith("451")


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # After the relay took the copy, its answer to QUIT changes nothing.
        ({"QUIT": ["what?"]}, 250),
        ({"QUIT": ["554 5.0.0 no"]}, 250),
        # A reply smtplib cannot read is no refusal by the relay: retry, never bounce.
        ({"END": ["250 " + "x" * 9000]}, 451),
        ({"MAIL": ["250-" + "y" * 9000]}, 451),
        # A relay that wants STARTTLS or AUTH is a set-up fault: retry, never bounce.
        ({"MAIL": ["530 5.7.0 Must issue a STARTTLS command first"]}, 451),
        ({"RCPT": ["530 5.7.0 Authentication required"]}, 451),
        ({"EHLO": ["554 5.7.1 go away"]}, 451),
        ({"greeting": ["554 5.3.2 not now"]}, 451),
        ({"DATA": ["451 4.3.0 try later"]}, 451),
        ({"DATA": [CLOSE]}, 451),
        ({"END": [CLOSE]}, 451),
        ({"END": ["not a reply"]}, 451),
    ],
)
def test_a_misbehaving_relay_gets_250_only_for_a_taken_copy_and_never_a_false_bounce(
    tmp_path: Path, pki: Pki, script: dict[str, list[str]], expected: int
) -> None:
    with (
        scripted_relay(**script) as relay,
        running(_settings(tmp_path, pki, relay.port, relay_timeout=10.0)) as daemon,
    ):
        code, text, smtp = _send(daemon, ["alice@example.com"])
        smtp.close()
    assert code == expected, (code, text)
    assert not list((tmp_path / "spool").iterdir())


def test_split_delivery_refused_for_good_after_the_first_copy_is_the_relays_5xx(
    tmp_path: Path, pki: Pki
) -> None:
    # The relay takes the encrypted copy and refuses the original for good: one SMTP
    # reply for both can only be that 5xx (the sender learns of the failure; a 250 would
    # lose the second copy, a 451 would deliver the first again at every retry).
    with (
        scripted_relay(END=["250 2.0.0 Ok: queued", "554 5.7.1 content refused"]) as relay,
        running(_settings(tmp_path, pki, relay.port)) as daemon,
    ):
        code, text, smtp = _send(daemon, ["alice@example.com", "erin@example.com"])
        smtp.close()
    assert (code, text) == (554, b"5.7.1 content refused")
    assert len(relay.messages) == 2
    assert b"application/pkcs7-mime" in relay.messages[0]
    (record,) = _journal(tmp_path)
    replies = {r["recipient"]: r["relay_reply"] for r in record["recipients"]}
    assert replies == {
        "alice@example.com": "250 2.0.0 Ok: queued",
        "erin@example.com": "554 5.7.1 content refused",
    }


def _open(daemon: Daemon, recipients: list[str]) -> tuple[socket.socket, Any]:
    """A raw session up to the 354 of DATA."""
    sock = socket.create_connection(("127.0.0.1", listening_port(daemon)), timeout=30)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220")
    commands = b"EHLO hostile.test\r\nMAIL FROM:<sender@example.org>\r\n"
    commands += b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in recipients) + b"DATA\r\n"
    sock.sendall(commands)  # pipelined, as RFC 2920 allows
    while not (line := reader.readline()).startswith(b"354"):
        assert line[:1] in (b"2",), line
    return sock, reader


def test_a_client_that_stalls_in_data_is_dropped_and_leaves_nothing(
    tmp_path: Path, pki: Pki
) -> None:
    with (
        sink() as (sunk, port),
        running(_settings(tmp_path, pki, port, session_timeout=1.0)) as daemon,
    ):
        sock, reader = _open(daemon, ["alice@example.com"])
        started = time.monotonic()
        with sock, reader:
            sock.sendall(b"Subject: stalled\r\n\r\nsome text but never the end\r\n")
            assert _wait_for(lambda: list((tmp_path / "spool").iterdir()), 5)
            assert reader.readline() == b""  # the filter closed the connection
        assert time.monotonic() - started < 10
        assert _wait_for(lambda: not daemon.sessions)
        assert _wait_for(lambda: not list((tmp_path / "spool").iterdir()))
    assert not sunk.messages


def test_a_client_gone_in_the_middle_of_data_leaves_nothing(tmp_path: Path, pki: Pki) -> None:
    with sink() as (sunk, port), running(_settings(tmp_path, pki, port)) as daemon:
        sock, reader = _open(daemon, ["alice@example.com", "erin@example.com"])
        with sock, reader:
            sock.sendall(b"Subject: cut\r\n\r\n" + b"half a message\r\n" * 5000)
        assert _wait_for(lambda: not daemon.sessions)
        assert _wait_for(lambda: not list((tmp_path / "spool").iterdir()))
    assert not sunk.messages


def test_bare_lf_and_bare_cr_reach_both_copies_readable(tmp_path: Path, pki: Pki) -> None:
    openssl = require_tool("openssl")
    body = (
        b"From: sender@example.org\r\nTo: alice@example.com\r\nSubject: ends\r\n\r\n"
        b"bare LF line\nbare CR line\rCRLF line\r\n.\nnot the end\r\nlast\r\n"
    )
    with sink() as (sunk, port), running(_settings(tmp_path, pki, port)) as daemon:
        sock, reader = _open(daemon, ["alice@example.com", "erin@example.com"])
        with sock, reader:
            sock.sendall(body + b".\r\n")
            reply = reader.readline()
        assert reply.startswith(b"250"), reply
    encrypted, original = (m.content for m in sunk.messages)
    for line in (b"bare LF line", b"bare CR line", b"not the end", b"last"):
        assert line in original
    assert b"\n.\r\n" not in original.replace(b"\r\n.\r\n", b"")  # no early end of data
    path = tmp_path / "delivered.eml"
    path.write_bytes(encrypted)
    proc = subprocess.run(
        [openssl, "cms", "-decrypt", "-in", str(path), "-inkey", str(pki.alice.key_pem)],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    for line in (b"bare LF line", b"bare CR line", b"not the end", b"last"):
        assert line in proc.stdout


_LOCKER = """
import sqlite3, sys
holder = sqlite3.connect(sys.argv[1], isolation_level=None)
holder.execute("BEGIN IMMEDIATE")
for table in ("emails", "memberships", "certs"):
    holder.execute(f"DELETE FROM {table}")
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_store_being_written_by_another_process_at_data_time_never_gives_plaintext(
    tmp_path: Path, pki: Pki
) -> None:
    # Another process holds the store's write lock, in the middle of removing every
    # certificate (uncommitted), when the message arrives. The worst rule for this: a
    # lookup that fails or sees the half-done change must not read as "no certificate",
    # which on_missing_cert = "pass" would send in clear. (The store is in WAL mode: the
    # filter reads what was committed, so the message goes out encrypted.)
    store = tmp_path / "store"
    with Store.open(store, create=True) as opened:
        opened.add(pki.alice.cert)
    rules = tmp_path / "store-rules.toml"
    rules.write_text(
        '[[rule]]\nname = "all"\nrecipients = ["*"]\n'
        'source = { kind = "store", store = "other" }\non_missing_cert = "pass"\n'
    )
    settings = _settings(tmp_path, pki, 0, rules=rules, store_dir=store)
    with sink() as (sunk, port):
        settings.relay = ("127.0.0.1", port)
        with running(settings) as daemon:
            smtp = smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=60)
            with smtp:
                smtp.ehlo()
                assert smtp.mail("sender@example.org")[0] == 250
                assert smtp.rcpt("alice@example.com")[0] == 250
                locker = subprocess.Popen(
                    [sys.executable, "-c", _LOCKER, str(store / DB_NAME)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                try:
                    assert locker.stdout is not None
                    assert locker.stdout.readline() == b"locked\n"
                    code, text = smtp.data(message("alice@example.com"))
                finally:
                    locker.communicate(b"", timeout=30)
                assert code == 250, (code, text)
    (copy,) = sunk.messages
    assert b"application/pkcs7-mime" in copy.content
    assert b"The figures are attached" not in copy.content


def test_rules_reloaded_between_rcpt_and_data_to_reject_is_451_and_nothing_sent(
    tmp_path: Path, pki: Pki
) -> None:
    with sink() as (sunk, port), running(_settings(tmp_path, pki, port)) as daemon:
        smtp = smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=60)
        with smtp:
            smtp.ehlo()
            assert smtp.mail("sender@example.org")[0] == 250
            assert smtp.rcpt("alice@example.com")[0] == 250
            # alice's certificate is withdrawn and her rule now rejects: the new rules
            # decide at the end of DATA, not the RCPT-time answer.
            rules = tmp_path / "rules.toml"
            text = rules.read_text().replace(
                f'{{ kind = "cer", path = "{pki.alice.cert_pem}" }}',
                f'{{ kind = "dir", path = "{tmp_path / "empty"}" }}\non_missing_cert = "reject"',
            )
            assert text != rules.read_text()
            rules.write_text(text)
            assert daemon.reload()
            code, reply = smtp.data(message("alice@example.com"))
    assert (code, reply[:5]) == (451, b"4.7.1"), (code, reply)
    assert not sunk.messages


def test_a_cer_file_removed_after_start_still_encrypts_and_a_reload_keeps_it(
    tmp_path: Path, pki: Pki
) -> None:
    # The certificate was read at start: removing its file never turns alice's mail
    # into plaintext; a reload that cannot read it keeps the rules in use.
    cer = tmp_path / "alice.pem"
    cer.write_bytes(pki.alice.cert_pem.read_bytes())
    rules = tmp_path / "cer-rules.toml"
    text = write_rules(tmp_path, pki).read_text()
    rules.write_text(text.replace(str(pki.alice.cert_pem), str(cer)))
    with (
        sink() as (sunk, port),
        running(_settings(tmp_path, pki, port, rules=rules)) as daemon,
    ):
        cer.unlink()
        code, _, smtp = _send(daemon, ["alice@example.com"])
        smtp.close()
        assert code == 250
        assert not daemon.reload()
        code, _, smtp = _send(daemon, ["alice@example.com"])
        smtp.close()
        assert code == 250
    assert len(sunk.messages) == 2
    for copy in sunk.messages:
        assert b"application/pkcs7-mime" in copy.content
        assert b"The figures are attached" not in copy.content


def test_data_without_size_far_over_max_size_stops_spooling_at_the_limit(
    tmp_path: Path, pki: Pki
) -> None:
    limit = 300_000  # several times the spool's write buffer
    with sink() as (sunk, port), running(_settings(tmp_path, pki, port, max_size=limit)) as daemon:
        sock, reader = _open(daemon, ["alice@example.com"])
        with sock, reader:
            sock.sendall(b"Subject: big\r\n\r\n")
            for _ in range(100):  # 5 MB, no SIZE= announced
                sock.sendall(b"y" * 998 + b"\r\n" + (b"z" * 998 + b"\r\n") * 49)
            (spooled,) = (tmp_path / "spool").iterdir()
            assert _wait_for(lambda: spooled.stat().st_size > limit // 2)
            time.sleep(0.5)  # the filter reads the rest of the 5 MB
            assert limit // 2 < spooled.stat().st_size <= limit
            sock.sendall(b".\r\n")
            reply = reader.readline()
        assert reply.startswith(b"552 5.3.4"), reply
        assert _wait_for(lambda: not list((tmp_path / "spool").iterdir()))
    assert not sunk.messages


def test_long_lines_and_no_chunking(tmp_path: Path, pki: Pki) -> None:
    # A 5,000-octet line (SMTP allows 998) reaches the encrypted copy whole; BDAT is not
    # offered (aiosmtpd has no CHUNKING) and is refused as an unknown command.
    line = b"L" * 5000
    data = b"From: sender@example.org\r\nTo: alice@example.com\r\nSubject: long\r\n\r\n"
    data += b".dot first\r\n" + line + b"\r\nend\r\n"
    with sink() as (sunk, port), running(_settings(tmp_path, pki, port)) as daemon:
        smtp = smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=60)
        with smtp:
            smtp.ehlo()
            assert not smtp.has_extn("chunking")
            assert smtp.docmd("BDAT", "10 LAST")[0] == 500
            assert smtp.sendmail("sender@example.org", ["alice@example.com"], data) == {}
    (copy,) = sunk.messages
    path = tmp_path / "delivered.eml"
    path.write_bytes(copy.content)
    openssl = require_tool("openssl")
    proc = subprocess.run(
        [openssl, "cms", "-decrypt", "-in", str(path), "-inkey", str(pki.alice.key_pem)],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert line in proc.stdout.replace(b"\r\n", b"\n")
    assert b"\n.dot first" in proc.stdout.replace(b"\r\n", b"\n")


class _FullRaw(io.FileIO):
    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["incoming", "encrypted copy"])
def test_a_full_spool_disk_is_451_and_nothing_is_relayed(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # ENOSPC cannot be made for real without mounting a small file system: the spool
    # files' writes fail as a full disk fails them (the incoming message's, or the
    # encrypted copy's).
    real_fdopen = os.fdopen

    def fdopen(fd: int, mode: str = "r", buffering: int = -1, **kwargs: Any) -> Any:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name.startswith("smimecli-in-") and ("-out-" in name) == (where != "incoming"):
            raw = _FullRaw(fd, "wb")
            return io.BufferedWriter(raw, max(buffering, 1) if buffering > 0 else 8192)
        return real_fdopen(fd, mode, buffering, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)
    with sink() as (sunk, port), running(_settings(tmp_path, pki, port)) as daemon:
        smtp = smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=60)
        with smtp:
            smtp.ehlo()
            assert smtp.mail("sender@example.org")[0] == 250
            assert smtp.rcpt("alice@example.com")[0] == 250
            assert smtp.rcpt("erin@example.com")[0] == 250
            code, text = smtp.data(message(size=200_000))
        assert (code, text[:5]) == (451, b"4.3.0"), (code, text)
        assert _wait_for(lambda: not list((tmp_path / "spool").iterdir()))
    assert not sunk.messages
    if where != "incoming":  # a message never received whole has no journal record
        (record,) = _journal(tmp_path)
        assert str(record["reply"]).startswith("451")
        assert "No space left on device" in str(record["error"])


def test_internationalised_addresses_pass_with_smtputf8(tmp_path: Path, pki: Pki) -> None:
    # Postfix hands a message with a non-ASCII address only to a filter that offers
    # SMTPUTF8 (RFC 6531), else it bounces it; the filter asks the relay for it in turn.
    with sink(enable_SMTPUTF8=True) as (handler, port):
        with (
            running(_settings(tmp_path, pki, port)) as daemon,
            smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=30) as smtp,
        ):
            smtp.ehlo()
            assert smtp.has_extn("smtputf8")
            text = message("alice@example.com, dörte@example.net").replace(
                b"From: ", "From: jörg@example.org\nX-Was: ".encode(), 1
            )
            refused = smtp.sendmail(
                "jörg@example.org",
                ["alice@example.com", "dörte@example.net"],
                text,
                mail_options=["SMTPUTF8"],
            )
    assert refused == {}
    copies = {tuple(m.recipients): m for m in handler.messages}
    assert set(copies) == {("alice@example.com",), ("dörte@example.net",)}
    assert all(m.sender == "jörg@example.org" for m in handler.messages)
    assert b"enveloped-data" in copies[("alice@example.com",)].content
    assert copies[("dörte@example.net",)].content.replace(b"\r\n", b"\n") == text.replace(
        b"\r\n", b"\n"
    )


def test_a_relay_without_smtputf8_gets_no_internationalised_message(
    tmp_path: Path, pki: Pki
) -> None:
    with sink(enable_SMTPUTF8=False) as (handler, port):  # a relay without SMTPUTF8
        with (
            running(_settings(tmp_path, pki, port)) as daemon,
            smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=30) as smtp,
        ):
            with pytest.raises(smtplib.SMTPDataError) as failed:
                smtp.sendmail(
                    "jörg@example.org",
                    ["dörte@example.net"],
                    message("dörte@example.net"),
                    mail_options=["SMTPUTF8"],
                )
    assert failed.value.smtp_code == 451
    assert b"SMTPUTF8" in failed.value.smtp_error
    assert handler.messages == []
