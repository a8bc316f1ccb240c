"""aiosmtpd's SMTP server, with DATA streamed to a spool file instead of kept in memory.

aiosmtpd does the ESMTP dialogue (EHLO, MAIL, RCPT, PIPELINING of commands, SIZE,
8BITMIME); this subclass changes three things a content filter needs:

- DATA is written line by line to a 0600 file, so a session's memory stays flat
  whatever the message size; the handler gets the file's path;
- ``MAIL FROM:<...> SIZE=n`` above the limit gets ``552 5.3.4`` (RFC 3463), as does DATA
  that grows beyond it;
- every session is counted (for ``--max-sessions`` and the drain at SIGTERM);
- the session timeout (aiosmtpd's ``timeout``: between two commands, and from ``DATA``
  to the end of the message's data) stops while the filter works on a received message
  (encryption, relay), so a slow relay gets its own ``relay_timeout`` and the client its
  ``451`` instead of a dropped connection.

:class:`FilterLMTP` speaks LMTP (RFC 2033) instead: ``LHLO`` for ``EHLO``, and after DATA
one reply per accepted recipient, in RCPT order, so that one group of recipients can be
delivered while another is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope

from smimecli.serve.engine import RecipientDecision, spool_file

log = logging.getLogger("smimecli")

_SIZE = re.compile(r"\bSIZE=(\d+)", re.IGNORECASE)
TOO_BIG = "552 5.3.4 message size exceeds the fixed maximum message size"
WRITE_BUFFER = 1 << 16


class FilterEnvelope(Envelope):
    """An envelope that also keeps the decision for every recipient (journal)."""

    def __init__(self) -> None:
        super().__init__()
        self.decisions: list[RecipientDecision] = []


class FilterSMTP(SMTP):
    """One SMTP session of the filter."""

    def __init__(
        self,
        handler: Any,
        *,
        max_size: int | None,
        spool_dir: str,
        sessions: set[FilterSMTP],
        **kwargs: Any,
    ) -> None:
        # SMTPUTF8 (RFC 6531): Postfix hands internationalised addresses only to a filter
        # that offers it (else it bounces them); the relay is asked for it in turn.
        super().__init__(
            handler, data_size_limit=max_size, decode_data=False, enable_SMTPUTF8=True, **kwargs
        )
        self.max_size = max_size
        self.spool_dir = spool_dir
        self.sessions = sessions

    def _create_envelope(self) -> Envelope:
        return FilterEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.sessions.discard(self)
        super().connection_lost(error)

    def close(self) -> None:
        """Close the connection (SIGTERM, after the messages in flight are done)."""
        if self.transport is not None:
            self.transport.close()

    async def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        found = _SIZE.search(arg or "")
        if found and self.max_size and int(found.group(1)) > self.max_size:
            await self.push(TOO_BIG)
            return
        await super().smtp_MAIL(arg)

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's name
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        fd, path = spool_file(self.spool_dir)
        try:
            spool = os.fdopen(fd, "wb", buffering=WRITE_BUFFER)
            try:
                await self.push("354 End data with <CR><LF>.<CR><LF>")
                status = await self._receive(spool)
                if status is None:
                    status = self._flush(spool)
            finally:
                with contextlib.suppress(OSError):
                    spool.close()
            if status is None:
                self._pause_timeout()
                try:
                    status = await self.event_handler.handle_spooled(
                        self, self.session, self.envelope, path
                    )
                finally:
                    if self.transport is not None:  # the client is still there
                        self._reset_timeout()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        replies = self.per_recipient(status, len(self.envelope.rcpt_tos))
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        for reply in replies:
            await self.push(reply)

    lmtp = False

    def _pause_timeout(self) -> None:
        """No session timeout while the message is worked on (the relay has its own)."""
        handle = getattr(self, "_timeout_handle", None)
        if handle is not None:
            handle.cancel()

    def per_recipient(self, status: str | list[str], recipients: int) -> list[str]:
        """The replies after DATA: SMTP gives one; LMTP one per accepted recipient (the
        same reply for each, unless the handler gave one each)."""
        if isinstance(status, str):
            return [status] * (recipients if self.lmtp else 1)
        assert self.lmtp and len(status) == recipients, "one reply per recipient is LMTP's"
        return status

    def _flush(self, spool: Any) -> str | None:
        try:
            spool.flush()
        except OSError as exc:
            return self._spool_failed(exc)
        return None

    def _spool_failed(self, exc: OSError) -> str:
        log.error(f"cannot spool the message in {self.spool_dir}: {exc.strerror or exc}")
        return "451 4.3.0 cannot spool the message here; try again later"

    async def _receive(self, spool: Any) -> str | None:
        """Read DATA up to the lone dot into ``spool``; an error reply, or None when good.

        RFC 5321 section 4.5.2: a leading dot of a line is removed; section 4.2.5: an
        over-size message is read to its end before the 552 reply.
        """
        size = 0
        at_line_start = True
        status: str | None = None
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:
                # A line longer than the reader's limit: take what is there, go on.
                line = await self._reader.read(exc.consumed)
            if at_line_start and line == b".\r\n":
                return status
            size += len(line)
            if at_line_start and line.startswith(b"."):
                line = line[1:]
            at_line_start = line.endswith(b"\r\n")
            if status is not None:
                continue
            if self.max_size and size > self.max_size:
                status = TOO_BIG
                continue
            try:
                spool.write(line)
            except OSError as exc:
                status = self._spool_failed(exc)
        raise ConnectionResetError("connection lost during DATA")


class FilterLMTP(FilterSMTP, LMTP):
    """One LMTP session of the filter: aiosmtpd's ``LHLO`` (``HELO`` and ``EHLO`` get
    ``500``), the filter's DATA with one reply per accepted recipient."""

    lmtp = True
