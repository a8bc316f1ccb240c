"""A downstream SMTP sink and a running filter for the serve tests."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from smimecli.serve.daemon import Daemon, Settings
from tests.conftest import Pki

RULES = """\
[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{alice}" }}

[[rule]]
name = "bob"
recipients = ["bob@example.com"]
source = {{ kind = "dir", path = "{empty}" }}
on_missing_cert = "reject"

[[rule]]
name = "carol"
recipients = ["carol@example.com"]
source = {{ kind = "dir", path = "{empty}" }}
on_missing_cert = "tempfail"

[[rule]]
name = "erin"
recipients = ["erin@example.com"]
source = {{ kind = "dir", path = "{empty}" }}
on_missing_cert = "pass"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_rules(folder: Path, pki: Pki) -> Path:
    (folder / "empty").mkdir(exist_ok=True)
    path = folder / "rules.toml"
    path.write_text(RULES.format(alice=pki.alice.cert_pem, empty=folder / "empty"))
    return path


@dataclass
class Received:
    sender: str
    recipients: list[str]
    content: bytes


@dataclass
class SinkHandler:
    """Collects every message; ``reply`` (when set) answers DATA instead of 250."""

    messages: list[Received] = field(default_factory=list)
    reply: str | None = None
    delay: float = 0.0
    started: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.started.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.reply is not None:
            return self.reply
        self.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 Ok: queued"


@contextmanager
def sink(**params: Any) -> Iterator[tuple[SinkHandler, int]]:
    """A downstream SMTP server collecting what it gets; ``params`` go to aiosmtpd's SMTP
    (``enable_SMTPUTF8=False`` for a relay without SMTPUTF8)."""
    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **params)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@contextmanager
def running(settings: Settings) -> Iterator[Daemon]:
    """The filter, serving in a thread of this process."""
    daemon = Daemon(settings)
    thread = threading.Thread(target=daemon.run, kwargs={"signals": False}, daemon=True)
    thread.start()
    assert daemon.ready.wait(10), "the filter did not start"
    try:
        yield daemon
    finally:
        daemon.request_stop()
        thread.join(30)


def listening_port(daemon: Daemon) -> int:
    """The port a running filter listens on (known once it is ready)."""
    assert daemon.port is not None, "the filter is not listening"
    return daemon.port


def message(to: str = "alice@example.com, erin@example.com", size: int = 0) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@example.org"
    msg["To"] = to
    msg["Subject"] = "quarterly figures"
    msg["Message-ID"] = "<figures-1@example.org>"
    msg.set_content("The figures are attached.\n.leading dot line\n" + "x" * size)
    return msg.as_bytes().replace(b"\n", b"\r\n")


def filter_settings(tmp_path: Path, pki: Pki, relay_port: int, **kwargs: Any) -> Settings:
    """The filter's settings for a test: the rules of :func:`write_rules`, no store, any
    free port, the given relay, a journal and a spool folder in ``tmp_path``."""
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    values: dict[str, Any] = {
        "rules": write_rules(tmp_path, pki),
        "store_dir": None,
        "listen": ("127.0.0.1", 0),
        "relay": ("127.0.0.1", relay_port),
        "journal": str(tmp_path / "journal.jsonl"),
        "spool_dir": str(spool),
    }
    values.update(kwargs)
    return Settings(**values)
