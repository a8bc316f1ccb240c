"""encrypt_message: one email in, one S/MIME enveloped email out.

The message is streamed: its header block is parsed, its body read once to measure the
canonical (CRLF) length of the inner entity and to look for winmail.dat parts, then read
again (or from a spool when the input is a pipe) through the encryptor into a base64 writer.
Memory stays flat whatever the message size. A big regular file going to an output that
can be rewritten is read once (:mod:`smimecli.encrypt.one_pass`); the search for
winmail.dat parts is :mod:`smimecli.encrypt.tnef_search`.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from itertools import chain
from typing import Any, BinaryIO

from smimecli.choices import DEFAULT_CIPHER
from smimecli.cms import spool as cms_spool
from smimecli.cms.envelope import EnvelopeBuilder, EnvelopeResult, RecipientSummary
from smimecli.cms.recipients import Recipient
from smimecli.encrypt.one_pass import _encrypt_one_pass, _one_pass_size, _seekable
from smimecli.encrypt.tnef_search import _tnef_marks, _TnefSearch
from smimecli.errors import UsageError
from smimecli.mime import (
    MAX_LINE,
    Base64LineWriter,
    CanonicalCounter,
    HeaderBlock,
    canonicalize,
    inner_entity_header,
    not_a_message,
    read_header_block,
    sniff_encrypted,
    wrapper_header_block,
)
from smimecli.notices import Notice
from smimecli.streams import CHUNK, read_ahead, read_chunks

__all__ = ["EncryptOutcome", "Recipient", "encrypt_message", "encrypt_parsed"]


@dataclass
class EncryptOutcome:
    """What :func:`encrypt_message` did with one message.

    Attributes:
        action: ``encrypted`` or ``already-encrypted`` (copied unchanged).
        cipher: the content cipher's name when encrypted.
        content_type: ``enveloped-data`` or ``authEnveloped-data`` when encrypted.
        recipients: who can decrypt it, and how their key was protected.
        notices: weak algorithms, TNEF parts kept as they were.
        tnef_converted: winmail.dat parts replaced by plain MIME.
    """

    action: str
    cipher: str | None = None
    content_type: str | None = None
    recipients: list[RecipientSummary] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    tnef_converted: int = 0

    @property
    def warnings(self) -> list[str]:
        """The notices' texts (``--json``'s ``warnings``)."""
        return [n.text for n in self.notices]

    @property
    def encrypted(self) -> bool:
        """True when the output is a new enveloped message."""
        return self.action == "encrypted"

    def to_json(self) -> dict[str, Any]:
        """The outcome as a JSON-ready dict."""
        return {**envelope_json(self), "warnings": self.warnings}


def envelope_json(outcome: Any) -> dict[str, Any]:
    """What ``--json`` says of an envelope: action, cipher, content type, recipients, TNEF
    parts converted (of an :class:`EncryptOutcome` or a direct-mode request's outcome)."""
    return {
        "action": outcome.action,
        "cipher": outcome.cipher,
        "content_type": outcome.content_type,
        "recipients": [
            {"recipient": r.label, "kind": r.kind, "key_encryption": r.key_encryption}
            for r in outcome.recipients
        ],
        "tnef_converted": outcome.tnef_converted,
    }


class _Body:
    """The message body, ready to be read again, with what the first pass learned."""

    __slots__ = ("canonical_length", "has_tnef", "spool", "start", "stream")

    def __init__(
        self, stream: Any, start: int, canonical_length: int, has_tnef: bool, spool: Any = None
    ) -> None:
        self.stream = stream
        self.start = start
        self.canonical_length = canonical_length
        self.has_tnef = has_tnef
        self.spool = spool

    def rewind(self) -> Any:
        self.stream.seek(self.start)
        return self.stream

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


def _measure_body(body: Any, has_tnef: bool, search: bool) -> _Body:
    """First pass over the body: canonical length and, if asked (``search``), a cheap
    search for TNEF (see :func:`_tnef_marks`)."""
    counter = CanonicalCounter()
    searcher = _TnefSearch() if search else None
    spool: Any = None
    if _seekable(body):
        start = body.tell()
        target = body
    else:
        spool = cms_spool()
        start = 0
        target = spool
    try:
        # A pipe is read here, not by the read-ahead thread: a signal must be able to end a
        # read that waits for a stalled producer, and a thread blocked in it cannot be joined.
        reads = read_chunks(body) if spool is not None else read_ahead(read_chunks(body))
        with contextlib.closing(reads) as chunks:
            for chunk in chunks:
                counter.feed(chunk)
                if searcher is not None:
                    has_tnef = searcher.feed(chunk)
                if spool is not None:
                    spool.write(chunk)
    except BaseException:
        if spool is not None:
            spool.close()
        raise
    return _Body(target, start, counter.length, has_tnef, spool)


def tnef_notices(warnings: Sequence[str]) -> list[Notice]:
    """The TNEF converter's lines (a part kept as it was) as notices."""
    return [Notice("tnef-kept", text) for text in warnings]


def _convert_tnef(headers: HeaderBlock, body: _Body) -> tuple[bytes, int, list[Notice]]:
    """Run the TNEF converter on the whole message."""
    from smimecli.tnef import reader as tnef

    data = headers.raw + body.rewind().read()
    result = tnef.convert_message(data)
    return result.data, result.converted, tnef_notices(result.warnings)


def encrypt_message(
    src: BinaryIO | bytes,
    dst: BinaryIO,
    recipients: Sequence[Recipient],
    *,
    cipher: str = DEFAULT_CIPHER,
    convert_tnef: bool = True,
) -> EncryptOutcome:
    """Encrypt one message to the given recipients, streaming from ``src`` to ``dst``.

    A message that is already encrypted is copied unchanged; a signed one is encrypted
    whole. The output keeps the outer headers (minus Content-*, MIME-Version and Bcc) in
    order, with the input's line ending.

    Args:
        src: the message (a binary stream read to its end, or bytes).
        dst: where the encrypted message goes.
        recipients: at least one; RSA certificates get key transport, EC key agreement.
        cipher: content cipher name (``aes256``, ``aes128-gcm``, ``3des``, ``rc2-40``...).
        convert_tnef: turn winmail.dat parts into plain MIME first.

    Raises:
        UsageError: no recipients or an unknown cipher (64).
        DataError: the input is not a message, or a certificate key is unusable (65).
    """
    builder = _builder(recipients, cipher)
    stream: Any = BytesIO(bytes(src)) if isinstance(src, bytes | bytearray | memoryview) else src
    headers, body_stream = read_header_block(stream)
    return _encrypt_parsed(builder, headers, body_stream, dst, convert_tnef)


def encrypt_parsed(
    headers: HeaderBlock,
    body_stream: Any,
    dst: BinaryIO,
    recipients: Sequence[Recipient],
    *,
    cipher: str = DEFAULT_CIPHER,
    convert_tnef: bool = True,
) -> EncryptOutcome:
    """:func:`encrypt_message` for a message whose header block the caller has already read.

    Args:
        headers: the message's header block (from :func:`smimecli.mime.read_header_block`).
        body_stream: the stream that call returned, positioned at the first body byte.
        dst, recipients, cipher, convert_tnef: as for :func:`encrypt_message`.

    Raises:
        UsageError, DataError: as :func:`encrypt_message`.
    """
    return _encrypt_parsed(_builder(recipients, cipher), headers, body_stream, dst, convert_tnef)


def _builder(recipients: Sequence[Recipient], cipher: str) -> EnvelopeBuilder:
    builder = EnvelopeBuilder().set_cipher(cipher)
    if not recipients:
        raise UsageError("no recipients: give at least one certificate")
    for recipient in recipients:
        builder.add_recipient(recipient)
    return builder


def _encrypt_parsed(
    builder: EnvelopeBuilder,
    headers: HeaderBlock,
    body_stream: Any,
    dst: BinaryIO,
    convert_tnef: bool,
) -> EncryptOutcome:
    if not headers.fields:
        raise not_a_message(headers.raw or body_stream.readline(MAX_LINE))
    encrypted, body_stream = sniff_encrypted(headers, body_stream)
    if encrypted:
        dst.write(headers.raw)
        shutil.copyfileobj(body_stream, dst, CHUNK)
        return EncryptOutcome(action="already-encrypted")

    has_tnef, search = _tnef_marks(headers, convert_tnef)
    size = None if has_tnef else _one_pass_size(body_stream, dst)
    if size is not None:
        result = _encrypt_one_pass(builder, headers, body_stream, dst, size, search)
        if result is not None:
            return _outcome(result, [])
    body = _measure_body(body_stream, has_tnef, search)
    try:
        tnef_warnings: list[Notice] = []
        if convert_tnef and body.has_tnef:
            data, count, tnef_warnings = _convert_tnef(headers, body)
            if count:
                body.close()
                converted, converted_body = read_header_block(BytesIO(data))
                outcome = _encrypt_parsed(builder, converted, converted_body, dst, False)
                outcome.tnef_converted = count
                outcome.notices[:0] = tnef_warnings
                return outcome
        inner_head = inner_entity_header(headers)
        length = len(inner_head) + body.canonical_length
        dst.write(wrapper_header_block(headers, authenticated=builder.cipher.authenticated))
        b64 = Base64LineWriter(dst, headers.newline)
        with contextlib.closing(read_ahead(read_chunks(body.rewind()))) as reads:
            chunks = chain([inner_head], canonicalize(reads))
            result = builder.encrypt_chunks(chunks, length, b64)
        b64.close()
    finally:
        body.close()
    return _outcome(result, tnef_warnings)


def _outcome(result: EnvelopeResult, tnef_warnings: list[Notice]) -> EncryptOutcome:
    return EncryptOutcome(
        action="encrypted",
        cipher=result.cipher,
        content_type=result.content_type,
        recipients=result.recipients,
        notices=tnef_warnings + result.notices,
    )
