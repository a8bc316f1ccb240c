"""Handing copies to the downstream MTA over SMTP (smtplib, run in a thread).

One SMTP transaction per copy. The message is streamed from its spool file with the
dot-stuffing of RFC 5321 section 4.5.2, so a large message never sits in memory.
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1 << 16


@dataclass(frozen=True)
class RelayReply:
    """The relay's answer to one copy: ``code`` 250 when it took the copy."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())


def _stream_data(smtp: smtplib.SMTP, src: BinaryIO) -> None:
    """Send the message body of DATA: CRLF line ends, leading dots doubled, then "."."""
    at_line_start = True
    out = bytearray()
    while True:
        line = src.readline(CHUNK)
        if not line:
            break
        if at_line_start and line.startswith(b"."):
            out += b"."
        if line.endswith(b"\n"):
            body = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            out += body + b"\r\n"
            at_line_start = True
        else:
            out += line
            at_line_start = False
        if len(out) >= CHUNK:
            smtp.send(bytes(out))
            out.clear()
    if not at_line_start:
        out += b"\r\n"
    out += b".\r\n"
    smtp.send(bytes(out))


def _transaction(
    smtp: smtplib.SMTP,
    sender: str,
    recipients: Sequence[str],
    path: str,
    eightbit: bool,
    smtputf8: bool = False,
) -> RelayReply:
    options = ["BODY=8BITMIME"] if eightbit and smtp.has_extn("8bitmime") else []
    if smtputf8:
        if not smtp.has_extn("smtputf8"):
            return RelayReply(451, "the relay does not offer SMTPUTF8, which this message needs")
        options.append("SMTPUTF8")  # smtplib then sends the commands as UTF-8
    code, text = smtp.mail(sender, options)
    if code != 250:
        return RelayReply(code, _text(text))
    worst: RelayReply | None = None
    for rcpt in recipients:
        code, text = smtp.rcpt(rcpt)
        if code not in (250, 251) and (worst is None or code < worst.code):
            # A temporary refusal of one recipient outweighs a permanent one: the whole
            # message is retried rather than bounced for recipients that may yet succeed.
            worst = RelayReply(code, f"<{rcpt}>: {_text(text)}")
    if worst is not None:
        smtp.rset()
        return worst
    code, text = smtp.docmd("DATA")
    if code != 354:
        return RelayReply(code, _text(text))
    with open(path, "rb") as src:
        _stream_data(smtp, src)
    code, text = smtp.getreply()
    return RelayReply(code, _text(text))


def relay_copies(
    host: str,
    port: int,
    sender: str,
    copies: Sequence[tuple[Sequence[str], str]],
    *,
    eightbit: bool = False,
    smtputf8: bool = False,
    timeout: float = 300.0,
    helo: str | None = None,
) -> list[RelayReply]:
    """Send each (recipients, file) copy in its own transaction over one connection.

    Stops at the first copy the relay does not take (the rest would only be retried
    with it). Only a reply the relay gave to a transaction is passed on as it is; anything
    else is a ``451``: a connection failure, a timeout, a reply smtplib cannot read (too
    long, not a reply), a relay that refuses to talk (a ``5xx`` greeting or reply to
    EHLO) or asks for STARTTLS or AUTH first (``530``: the filter's set-up, not the
    message, is at fault).
    Once every copy is taken, what the relay says to ``QUIT`` changes nothing.
    """
    replies: list[RelayReply] = []
    broken = True  # after a timeout or a garbled reply, QUIT would only wait again
    try:
        smtp = smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout)
    except smtplib.SMTPResponseException as exc:
        return [
            RelayReply(451, f"relay {host}:{port} refused the connection: {_text(exc.smtp_error)}")
        ]
    except (OSError, smtplib.SMTPException) as exc:  # a timeout is an OSError
        return [RelayReply(451, f"relay {host}:{port} unreachable: {exc}")]
    try:
        code, text = smtp.ehlo()
        if code != 250:
            broken = False
            return [RelayReply(451, f"relay {host}:{port} refused EHLO: {code} {_text(text)}")]
        for recipients, path in copies:
            reply = _transaction(smtp, sender, recipients, path, eightbit, smtputf8)
            if reply.code == 530:
                reply = RelayReply(451, f"relay {host}:{port} wants STARTTLS or AUTH: {reply}")
            replies.append(reply)
            if not reply.ok:
                break
        broken = False
    except smtplib.SMTPResponseException as exc:  # smtplib's own: a reply it cannot read
        replies.append(RelayReply(451, f"relay {host}:{port}: {_text(exc.smtp_error)}"))
    except (OSError, smtplib.SMTPException) as exc:
        replies.append(RelayReply(451, f"relay {host}:{port} unreachable: {exc}"))
    finally:
        if not broken:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.quit()
        smtp.close()
    return replies
