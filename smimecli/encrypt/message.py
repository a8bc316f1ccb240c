"""encrypt_message: one email in, one S/MIME enveloped email out.

The message is streamed: its header block is parsed, its body read once to measure the
canonical (CRLF) length of the inner entity and to look for winmail.dat parts, then read
again (or from a spool when the input is a pipe) through the encryptor into a base64 writer.
Memory stays flat whatever the message size.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from itertools import chain
from typing import Any, BinaryIO

from smimecli.choices import DEFAULT_CIPHER
from smimecli.cms import spool as cms_spool
from smimecli.cms.envelope import EnvelopeBuilder, EnvelopeResult, RecipientSummary
from smimecli.cms.recipients import Recipient
from smimecli.errors import UsageError
from smimecli.mime import (
    LINE_BYTES,
    MAX_LINE,
    Base64LineWriter,
    CanonicalCounter,
    HeaderBlock,
    base64_lines,
    canonicalize,
    inner_entity_header,
    not_a_message,
    read_header_block,
    sniff_encrypted,
    wrapper_header_block,
)
from smimecli.notices import Notice
from smimecli.streams import CHUNK, THREADED_FROM, read_ahead, read_chunks

__all__ = ["EncryptOutcome", "Recipient", "encrypt_message", "encrypt_parsed"]

# A TNEF part is application/ms-tnef, or an octet-stream named winmail.dat.
_TNEF_NEEDLES = (b"ms-tnef", b"winmail.dat")
# Only a part's own header names it: a Content-Type or Content-Disposition field (or a
# folded line of one) in a block of header lines that follows a boundary line, a blank
# line or the start of the body. A body that merely mentions the words is streamed, never
# loaded whole. The search looks back at most _HEADER_REACH bytes and _HEADER_LINES lines
# from a mention, and gives up (no TNEF) after _MAX_FALSE_MARKS mentions that are not a
# part's header, so its cost stays linear whatever the body says.
_TNEF_CANDIDATE = re.compile(
    rb"^(?:content-(?:type|disposition)[ \t]*:|[ \t])[^\n]*?(?:ms-tnef|winmail\.dat)",
    re.MULTILINE,
)
_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_CONTENT_FIELD = re.compile(rb"content-(?:type|disposition)[ \t]*:")
_HEADER_REACH = 1 << 16
_HEADER_LINES = 64
_MAX_FALSE_MARKS = 1000


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
        return {
            "action": self.action,
            "cipher": self.cipher,
            "content_type": self.content_type,
            "recipients": [
                {"recipient": r.label, "kind": r.kind, "key_encryption": r.key_encryption}
                for r in self.recipients
            ],
            "tnef_converted": self.tnef_converted,
            "warnings": self.warnings,
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


def _seekable(stream: Any) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _has_needle(lowered: bytes) -> bool:
    return any(lowered.find(needle) >= 0 for needle in _TNEF_NEEDLES)


def _tnef_marks(headers: HeaderBlock, convert_tnef: bool) -> tuple[bool, bool]:
    """(the header block names a TNEF part, the body must be searched for one)."""
    own = " ".join(headers.get_all("Content-Type") + headers.get_all("Content-Disposition"))
    has_tnef = convert_tnef and _has_needle(own.lower().encode("utf-8", "replace"))
    # A TNEF part below the top level needs a multipart (or message/rfc822) body to hold
    # it; a single-part body (text, a PDF...) is not searched. Any "multipart" or
    # "message" in the field, even a malformed one, means search.
    content_type = (headers.get("Content-Type") or "").lower()
    search = (
        convert_tnef and not has_tnef and ("multipart" in content_type or "message" in content_type)
    )
    return has_tnef, search


class _TnefSearch:
    """A search for a TNEF part's header, chunk by chunk (lines may span chunks): see
    _TNEF_CANDIDATE. Memory: one chunk and _HEADER_REACH bytes of the one before."""

    def __init__(self) -> None:
        self.found = False
        self._tail = b""
        self._truncated = False  # the tail no longer starts at the start of the body
        self._false_marks = 0

    def feed(self, chunk: bytes) -> bool:
        """Look at one more chunk; True once a TNEF part's header has been seen."""
        if self.found or self._false_marks > _MAX_FALSE_MARKS:
            return self.found
        # lower() + find is ~5x faster than a regex on big bodies: the regex runs only on
        # chunks that mention a mark at all.
        window = self._tail + chunk.lower()
        # Lines that started in the previous chunk are looked at again, whole.
        pos = self._tail.rfind(b"\n") + 1
        mentioned = any(window.find(needle, pos) >= 0 for needle in _TNEF_NEEDLES)
        for match in _TNEF_CANDIDATE.finditer(window, pos) if mentioned else ():
            if _part_header_at(window, match.start(), truncated=self._truncated):
                self.found = True
                return True
            self._false_marks += 1
            if self._false_marks > _MAX_FALSE_MARKS:
                break
        if len(window) > _HEADER_REACH:
            self._truncated = True
            self._tail = window[-_HEADER_REACH:]
        else:
            self._tail = window
        return False


def _part_header_at(text: bytes, line: int, *, truncated: bool) -> bool:
    """Whether the line starting at ``line`` (lower case) belongs to a Content-Type or
    Content-Disposition field of a part's header block (see _TNEF_CANDIDATE)."""
    stop = max(0, line - _HEADER_REACH)
    field: bool | None = None  # the field the mention is in: a Content-* one or not
    for _ in range(_HEADER_LINES):
        newline = text.find(b"\n", line)
        bare = text[line : newline if newline >= 0 else len(text)].rstrip(b"\r")
        if not bare or bare.startswith(b"--"):
            # A blank line or a boundary line: the header block starts below it.
            return bool(field)
        if bare[:1] not in (b" ", b"\t"):
            if not _FIELD_START.match(bare):
                return False  # body text, not a header block
            if field is None:
                field = _CONTENT_FIELD.match(bare) is not None
                if not field:
                    return False
        if line == 0:
            return bool(field) and not truncated  # the start of the body
        if line <= stop:
            return False
        line = text.rfind(b"\n", 0, line - 1) + 1
    return False


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


# --- one pass: a big file in, an output that can be rewritten --------------------------------


class _TnefFound(Exception):  # noqa: N818 - control flow inside this module, not an error
    """A TNEF mark turned up while encrypting in one pass: start again with two."""


class _HeadKeeper:
    """Passes writes on, keeping the first one (the DER header) and the bytes after it
    that share its base64 lines."""

    def __init__(self, dst: Base64LineWriter) -> None:
        self._dst = dst
        self.head_size = -1
        self.after = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.head_size < 0:
            self.head_size = len(data)
        elif len(self.after) < LINE_BYTES:
            self.after += bytes(data[: LINE_BYTES - len(self.after)])
        return self._dst.write(data)


def _is_file(stream: Any) -> bool:
    """Whether ``stream`` is an open file of the OS (``open(path, "rb")``, or its raw
    FileIO), whose ``tell()`` and ``fileno()`` speak of the same bytes. A gzip or
    spooled file is not: its position is in other bytes than its descriptor's, or asking
    for the descriptor changes it."""
    return isinstance(getattr(stream, "raw", stream), io.FileIO)


def _one_pass_size(body: Any, dst: Any) -> int | None:
    """The body's size when it can be encrypted in one pass: a big regular file in, and an
    output this process may seek back into (a regular file not opened for appending, or a
    BytesIO)."""
    if not (_is_file(body) and _seekable(body)):
        return None
    try:
        size = int(os.fstat(body.fileno()).st_size - body.tell())
    except (OSError, ValueError):
        return None
    if size < THREADED_FROM:
        return None
    if isinstance(dst, BytesIO):
        return size
    if not (_is_file(dst) and _seekable(dst)):
        return None
    try:
        import fcntl

        flags = fcntl.fcntl(dst.fileno(), fcntl.F_GETFL)
        regular = stat.S_ISREG(os.fstat(dst.fileno()).st_mode)
    except (ImportError, OSError, ValueError):
        return None
    return size if regular and not flags & os.O_APPEND else None


def _encrypt_one_pass(
    builder: EnvelopeBuilder,
    headers: HeaderBlock,
    body: Any,
    dst: Any,
    size: int,
    search: bool,
) -> EnvelopeResult | None:
    """Encrypt a big message in one read: the DER lengths are written for the smallest
    canonical length the body can have, then the base64 lines holding the DER header are
    written again with the true lengths (a first pass to count line endings
    costs a quarter of the work). None, with the output and input as they were, when the
    header's size is not fixed by the range, or a TNEF part turned up."""
    body_start, out_start = body.tell(), dst.tell()
    inner_head = inner_entity_header(headers)
    # Every body byte gives one canonical byte, or two (a bare LF becomes CRLF).
    low, high = len(inner_head) + size, len(inner_head) + 2 * size
    dst.write(wrapper_header_block(headers, authenticated=builder.cipher.authenticated))
    lines_start = dst.tell()
    b64 = Base64LineWriter(dst, headers.newline)
    keeper = _HeadKeeper(b64)
    searcher = _TnefSearch() if search else None

    def raw() -> Iterator[bytes]:
        with contextlib.closing(read_ahead(read_chunks(body))) as chunks:
            for chunk in chunks:
                if searcher is not None and searcher.feed(chunk):
                    raise _TnefFound
                yield chunk

    try:
        done = builder.encrypt_unmeasured(
            chain([inner_head], canonicalize(raw())), keeper, low=low, high=high
        )
    except _TnefFound:
        done = None
    if done is None:
        dst.seek(out_start)
        dst.truncate()
        body.seek(body_start)
        return None
    result, head = done
    b64.close()
    # The lines that hold the header: whole 57-byte groups (or the whole DER when it ends
    # within them), re-encoded with the true head.
    step = LINE_BYTES
    wanted = -len(head) % step
    prefix = head + bytes(keeper.after[:wanted])
    whole = len(keeper.after) < wanted  # the DER ended inside the header's last line
    if keeper.head_size != len(head) or (len(prefix) % step and not whole):  # pragma: no cover
        raise AssertionError("one-pass header rewrite out of step")
    end = dst.tell()
    dst.seek(lines_start)
    dst.write(base64_lines(prefix, headers.newline))
    dst.seek(end)
    return result


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
