"""``smimecli serve --lmtp``: LHLO, and after DATA one reply per accepted recipient
(RFC 2033), spoken to by Python's LMTP client (smtplib.LMTP)."""

from __future__ import annotations

import json
import smtplib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from smimecli.serve.daemon import Settings
from tests.conftest import Pki
from tests.serve.helpers import (
    SinkHandler,
    free_port,
    listening_port,
    message,
    running,
    write_rules,
)


class _Defers(SinkHandler):
    """A relay that takes the encrypted copy and defers the plaintext one (451)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if "erin@example.com" in envelope.rcpt_tos:
            return "451 4.3.0 queue file write error"
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def _relay(handler: SinkHandler) -> Iterator[int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def _settings(tmp_path: Path, pki: Pki, relay_port: int) -> Settings:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    return Settings(
        rules=write_rules(tmp_path, pki),
        store_dir=None,
        listen=("127.0.0.1", 0),
        relay=("127.0.0.1", relay_port),
        journal=str(tmp_path / "journal.jsonl"),
        spool_dir=str(spool),
        lmtp=True,
    )


def _lmtp(port: int) -> smtplib.LMTP:
    client = smtplib.LMTP("127.0.0.1", port, timeout=60)
    code, _ = client.ehlo()  # smtplib.LMTP sends LHLO
    assert code == 250
    return client


def test_split_delivery_gets_one_reply_per_recipient(tmp_path: Path, pki: Pki) -> None:
    handler = _Defers()
    with _relay(handler) as port, running(_settings(tmp_path, pki, port)) as daemon:
        client = _lmtp(daemon.port or 0)
        try:
            assert client.mail("sender@example.org")[0] == 250
            assert client.rcpt("alice@example.com")[0] == 250
            assert client.rcpt("bob@example.com")[0] == 550  # refused at RCPT: no DATA reply
            assert client.rcpt("erin@example.com")[0] == 250
            # One reply per accepted RCPT, in RCPT order: alice's copy was relayed,
            # erin's was deferred by the relay.
            first = client.data(message("alice@example.com, erin@example.com"))
            second = client.getreply()
            client.rset()  # the session is in step: exactly two replies came
        finally:
            client.close()
    assert first[0] == 250 and b"<alice@example.com>" in first[1], first
    assert second[0] == 451 and b"<erin@example.com>" in second[1], second
    assert b"4.3.0" in second[1] and b"queue file write error" in second[1]
    (delivered,) = handler.messages
    assert delivered.recipients == ["alice@example.com"]
    assert b"application/pkcs7-mime" in delivered.content
    record = json.loads((tmp_path / "journal.jsonl").read_text())
    replies = {r["recipient"]: r["relay_reply"] for r in record["recipients"]}
    assert replies["alice@example.com"].startswith("250")
    assert replies["erin@example.com"].startswith("451")
    answered = {r["recipient"]: r["lmtp_reply"] for r in record["recipients"]}
    assert answered["alice@example.com"].startswith("250 2.0.0 <alice@example.com>")
    assert answered["erin@example.com"].startswith("451 4.3.0 <erin@example.com>")
    assert answered["bob@example.com"] is None  # refused at RCPT


def test_a_relay_that_refuses_everything_gives_each_recipient_its_reply(
    tmp_path: Path, pki: Pki
) -> None:
    handler = SinkHandler(reply="421 4.3.2 shutting down")
    with _relay(handler) as port, running(_settings(tmp_path, pki, port)) as daemon:
        client = _lmtp(daemon.port or 0)
        try:
            client.mail("sender@example.org")
            client.rcpt("alice@example.com")
            client.rcpt("erin@example.com")
            replies = [client.data(message()), client.getreply()]
            client.rset()
        finally:
            client.close()
    # alice's copy was refused for now; erin's was not tried after it: both retried.
    assert [code for code, _ in replies] == [451, 451], replies
    assert b"<alice@example.com>: relay: 4.3.2 shutting down" in replies[0][1]
    assert b"<erin@example.com>: not relayed yet" in replies[1][1]
    assert handler.messages == []


def test_lmtp_speaks_lhlo_not_ehlo(tmp_path: Path, pki: Pki) -> None:
    with _relay(SinkHandler()) as port, running(_settings(tmp_path, pki, port)) as daemon:
        with smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=30) as smtp:
            code, text = smtp.ehlo()
        assert code == 500 and b"EHLO" in text
        client = _lmtp(daemon.port or 0)
        client.quit()


def test_serve_lmtp_as_a_process(tmp_path: Path, pki: Pki) -> None:
    import os
    import sys

    from tests.conftest import ROOT
    from tests.serve.test_serve_process import _wait_listening

    handler = SinkHandler()
    with _relay(handler) as relay_port:
        port = free_port()
        args = ["serve", "--lmtp", "--rules", str(write_rules(tmp_path, pki))]
        args += ["--listen", f"127.0.0.1:{port}", "--relay", f"127.0.0.1:{relay_port}"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SMIMECLI_STORE": str(tmp_path / "st")}
        proc = subprocess.Popen([sys.executable, "-m", "smimecli", *args], env=env)
        try:
            _wait_listening(port, proc)
            client = _lmtp(port)
            refused = client.sendmail("sender@example.org", ["alice@example.com"], message())
            client.quit()
        finally:
            proc.terminate()
            assert proc.wait(30) == 0
    assert refused == {}
    (delivered,) = handler.messages
    assert b"application/pkcs7-mime" in delivered.content
