"""The aiosmtpd handler: recipient decisions at RCPT, split delivery at the end of DATA.

Replies (RFC 3463 enhanced status codes):

- RCPT: ``550 5.7.1`` for a recipient whose rule rejects (no usable certificate),
  ``450 4.7.1`` for one whose rule defers; the others are accepted;
- RCPT beyond :data:`MAX_RECIPIENTS` in one transaction: ``452 4.5.3`` (the client sends
  the rest in another transaction, RFC 5321 section 4.5.3.1.10);
- end of DATA: ``250`` only after the relay took every copy; ``451 4.3.0`` on any doubt
  (relay down, relay 4xx, timeout, worker crash, no memory, full disk, a rules or store
  fault); ``554 5.6.0`` for a message that can never be read (a header line over 1 MiB,
  MIME nested beyond the limits: what ``encrypt`` refuses with 65), since retrying would only
  hold it in the queue for days; the relay's own 5xx when it refused a copy for good;
- end of DATA over LMTP: one reply per accepted recipient, each for the copy that
  recipient was in (``250`` when the relay took it, ``451 4.3.0`` when it did not yet or
  was not tried, its ``5xx`` when it refused it for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

from smimecli.errors import DataError
from smimecli.serve.engine import ENCRYPT, REJECT, TEMPFAIL, RecipientDecision, Split
from smimecli.serve.journal import Journal
from smimecli.serve.relay import RelayReply
from smimecli.text import shown_list

log = logging.getLogger("smimecli")

RETRY = "451 4.3.0 temporary failure in the S/MIME filter; try again later"
# As Postfix's smtpd_recipient_limit: the recipients of one transaction (memory, log lines).
MAX_RECIPIENTS = 1000
# Recipients named in one log line; the rest are counted.
_NAMED = 5


class Service(Protocol):
    """What the handler needs from the daemon."""

    journal: Journal

    async def decide(self, address: str) -> RecipientDecision: ...

    async def split(self, path: str, recipients: list[str], sender: str | None) -> Split: ...

    async def relay(
        self,
        sender: str,
        copies: list[tuple[tuple[str, ...], str]],
        eightbit: bool,
        smtputf8: bool = False,
    ) -> list[RelayReply]: ...

    def track(self, task: asyncio.Future[Any]) -> None: ...


@dataclass
class _Result:
    reply: str
    replies: list[RelayReply]
    split: Split | None = None
    error: str | None = None


class FilterHandler:
    """aiosmtpd hooks (``handle_EHLO``, ``handle_RCPT``) and the spooled-DATA hook."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads pipelined commands in order; say so (RFC 2920).
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients; send the rest in another transaction"
        try:
            decision = await self.service.decide(address)
        except DataError as exc:  # an address no MTA delivers to (over 254 octets)
            return f"553 5.1.3 {' '.join(exc.message.split())[:200]}"
        except Exception as exc:
            log.error(f"cannot decide for {address}: {exc}")
            return RETRY
        rule = f"rule {decision.rule!r}" if decision.rule else "no rule"
        if decision.outcome == REJECT:
            envelope.decisions.append(decision)
            return f"550 5.7.1 <{address}>: no usable S/MIME certificate ({rule}); not sent"
        if decision.outcome == TEMPFAIL:
            envelope.decisions.append(decision)
            return f"450 4.7.1 <{address}>: no usable S/MIME certificate yet ({rule}); try later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        envelope.decisions.append(decision)
        return "250 2.1.5 OK"

    async def handle_spooled(
        self, server: Any, session: Any, envelope: Any, path: str
    ) -> str | list[str]:
        """The end of DATA: the message is in ``path``. Returns the reply to the client
        (LMTP: one per accepted recipient)."""
        queue_id = secrets.token_hex(6).upper()
        started = time.monotonic()
        # The work goes on (and its files are cleaned up) even if the client goes away:
        # a message the relay took is never left half done.
        task = asyncio.ensure_future(self._deliver(envelope, path))
        self.service.track(task)
        result = await asyncio.shield(task)
        elapsed = int((time.monotonic() - started) * 1000)
        if getattr(server, "lmtp", False):
            replies = _recipient_replies(list(envelope.rcpt_tos), result, queue_id)
            self._journal(envelope, path, queue_id, result, elapsed, replies)
            return replies
        self._journal(envelope, path, queue_id, result, elapsed)
        if result.reply.startswith("250"):
            return f"{result.reply} as {queue_id}"
        return result.reply

    async def _deliver(self, envelope: Any, path: str) -> _Result:
        recipients = list(envelope.rcpt_tos)
        try:
            split = await self.service.split(path, recipients, envelope.mail_from or None)
        except Exception as exc:
            log.error(f"cannot encrypt a message for {_named(recipients)}: {_why(exc)}")
            if isinstance(exc, DataError):  # the message itself: no retry can help
                reason = " ".join(exc.message.split())[:200]
                return _Result(f"554 5.6.0 message refused: {reason}", [], error=_why(exc))
            return _Result(RETRY, [], error=_why(exc))
        try:
            if split.refused:
                who = _named([d.address for d in split.refused])
                return _Result(f"451 4.7.1 the rules changed for {who}; try again later", [], split)
            copies = [(c.recipients, c.path) for c in split.copies]
            eightbit = "BODY=8BITMIME" in (o.upper() for o in envelope.mail_options)
            smtputf8 = bool(getattr(envelope, "smtp_utf8", False))
            replies = await self.service.relay(envelope.mail_from or "", copies, eightbit, smtputf8)
            return _Result(_final_reply(replies, len(copies)), replies, split)
        finally:
            for copy in split.copies:
                if copy.path != path:
                    with contextlib.suppress(OSError):
                        os.unlink(copy.path)

    def _journal(
        self,
        envelope: Any,
        path: str,
        queue_id: str,
        result: _Result,
        elapsed: int,
        lmtp: list[str] | None = None,
    ) -> None:
        """One record; over LMTP each accepted recipient's own reply too (``lmtp_reply``)."""
        split = result.split
        relayed: dict[str, tuple[str, str]] = {}
        signers: dict[str, dict[str, Any]] = {}
        if split is not None:
            for copy, reply in zip(split.copies, result.replies, strict=False):
                relayed.update((r, (copy.kind, str(reply))) for r in copy.recipients)
            for copy in split.copies:
                if copy.signed_by is not None:
                    signers.update((r, dict(copy.signed_by)) for r in copy.recipients)
        decisions = split.decisions if split is not None else []
        known = {d.address for d in decisions}
        answers = dict(zip(envelope.rcpt_tos, lmtp or [], strict=False))
        decisions = [d for d in envelope.decisions if d.address not in known] + decisions
        recipients = []
        for decision in decisions:
            entry = decision.to_json()
            kind, answer = relayed.get(decision.address, (None, None))
            entry["copy"] = kind
            entry["relay_reply"] = answer
            entry["signed_by"] = signers.get(decision.address)
            if decision.outcome == ENCRYPT and split is not None:
                entry["cipher"] = split.cipher
            if lmtp is not None:
                entry["lmtp_reply"] = answers.get(decision.address)
            recipients.append(entry)
        record: dict[str, Any] = {
            "queue_id": queue_id,
            "message_id": split.message_id if split else None,
            "from": envelope.mail_from,
            "size": _size(path),
            "reply": result.reply,
            "recipients": recipients,
            "elapsed_ms": elapsed,
            "notices": [n.to_json() for n in split.notices] if split else [],
        }
        if result.error:
            record["error"] = result.error
        if split is not None and split.subject is not None:
            record["subject"] = split.subject
        self.service.journal.write(record)


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _named(addresses: list[str]) -> str:
    """The first few addresses and how many more: one log line stays short."""
    return shown_list(addresses, empty="", limit=_NAMED)


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not hasattr(exc, "status") else text


def _final_reply(replies: list[RelayReply], copies: int) -> str:
    """250 when the relay took every copy; its 5xx when it refused one for good; else 451."""
    if len(replies) == copies and all(r.ok for r in replies):
        return "250 2.0.0 Ok: relayed"
    failed = replies[-1] if replies else RelayReply(451, "no reply from the relay")
    if failed.permanent:
        return f"{failed.code} {failed.text}"
    log.warning(f"relay did not take a copy: {failed}")
    return f"451 4.3.0 relay: {failed.text}"


def _recipient_replies(recipients: list[str], result: _Result, queue_id: str) -> list[str]:
    """LMTP: each accepted recipient's reply, from the relay's reply to its copy."""
    from smimecli.rules.patterns import normalize_address

    split = result.split
    if split is None or split.refused or not result.replies:
        return [result.reply] * len(recipients)
    took: dict[str, RelayReply] = {}
    for copy, answer in zip(split.copies, result.replies, strict=False):
        took.update((normalize_address(r), answer) for r in copy.recipients)
    replies = []
    for address in recipients:
        reply = took.get(normalize_address(address))
        if reply is None:  # its copy was not tried after another one failed
            replies.append(f"451 4.3.0 <{address}>: not relayed yet; try again later")
        elif reply.ok:
            replies.append(f"250 2.0.0 <{address}> Ok: relayed as {queue_id}")
        elif reply.permanent:
            replies.append(f"{reply.code} <{address}>: {reply.text}")
        else:
            replies.append(f"451 4.3.0 <{address}>: relay: {reply.text}")
    return replies
