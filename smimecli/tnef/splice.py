"""winmail.dat (TNEF) parts turned into plain MIME before encryption.

Outlook and Exchange wrap rich-text mail in an ``application/ms-tnef`` part that only
Outlook reads; once the message is encrypted a gateway can no longer fix that for the
recipient, so the conversion happens before.

How the message is rebuilt: the MIME structure is located at the byte level (header blocks
and RFC 2046 section 5.1.1 boundary delimiters, with offsets into the input) and only the byte
range of each converted TNEF part is replaced. Everything else, that is the top-level headers
(order, folding, line endings), preambles, epilogues, delimiter lines and every other part,
is copied byte for byte and never re-encoded. A replaced part keeps its headers that are not
``Content-*`` and becomes the MIME that smimecli.tnef.entities builds from the TNEF stream
that smimecli.tnef.reader reads.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

from smimecli.tnef.entities import (
    Work,
    field_name,
    header_fields,
    message_entity,
    non_content_headers,
)
from smimecli.tnef.reader import (
    GROWTH_ALLOWANCE,
    MAX_GROWTH,
    TnefFormatError,
    failure_reason,
    parse_tnef,
)

__all__ = ["TnefResult", "contains_tnef", "convert_message", "looks_like_message"]


TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})

# How deep MIME entities and embedded TNEF messages may nest before we stop looking.
MAX_MIME_DEPTH = 64

_TNEF_HINT = re.compile(rb"ms-tnef|winmail\.dat", re.IGNORECASE)
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


@dataclass
class TnefResult:
    """The outcome of :func:`convert_message`.

    Attributes:
        data: the converted message, or the input object itself when nothing was converted.
        converted: how many TNEF parts were replaced by plain MIME.
        warnings: one line per TNEF part kept unchanged (the caller shows them).
    """

    data: bytes
    converted: int = 0
    warnings: list[str] = field(default_factory=list)


def contains_tnef(data: bytes) -> bool:
    """A cheap test: may this message hold a TNEF part at all (no parsing, no copy)?"""
    return _TNEF_HINT.search(data) is not None


def looks_like_message(data: bytes) -> bool:
    """Whether ``data`` starts like an RFC 5322 message: a header field or an mbox From line."""
    return bool(_FIELD_LINE.match(data)) or data.startswith(b"From ")


def convert_message(data: bytes) -> TnefResult:
    """Replace every winmail.dat part of a message with plain MIME.

    Args:
        data: the whole message, LF or CRLF line endings.

    Returns:
        The new message (line endings follow the input's), how many parts were converted,
        and a warning for each TNEF part that was kept as it was.
    """
    result = TnefResult(data)
    if not contains_tnef(data) or not looks_like_message(data):
        return result
    converter = _Converter(data, _eol_of(data))
    converter.walk(0, len(data), depth=0)
    result.warnings = converter.warnings
    if converter.replacements:
        result.data = converter.splice()
        result.converted = converter.converted
    return result


# --- locating the MIME entities --------------------------------------------------------------


def _eol_of(data: bytes) -> bytes:
    newline = data.find(b"\n")
    return b"\r\n" if newline > 0 and data[newline - 1] == 0x0D else b"\n"


def _split_entity(data: bytes, start: int, end: int) -> tuple[int, int]:
    """Offsets (end of the header block, start of the body) of one entity."""
    if data.startswith((b"\r\n", b"\n"), start):
        return start, start + (2 if data[start] == 0x0D else 1)
    match = _BLANK_LINE.search(data, start, end)
    if match is None:
        return end, end
    return match.start() + (2 if data[match.start()] == 0x0D else 1), match.end()


class _Converter:
    """Walks the MIME tree by byte offsets and records replacements for TNEF parts."""

    def __init__(self, data: bytes, eol: bytes) -> None:
        self.data = data
        self.eol = eol
        self.replacements: list[tuple[int, int, bytes]] = []
        self.warnings: list[str] = []
        self.seen = 0
        self.converted = 0

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def walk(self, start: int, end: int, *, depth: int) -> None:
        if depth > MAX_MIME_DEPTH:
            return
        header_end, body_start = _split_entity(self.data, start, end)
        headers = message_from_bytes(self.data[start:header_end] + self.eol, policy=compat32)
        ctype = headers.get_content_type()
        if ctype.startswith("multipart/"):
            boundary = headers.get_boundary()
            if boundary:
                for part_start, part_end in _parts(self.data, body_start, end, boundary):
                    self.walk(part_start, part_end, depth=depth + 1)
            return
        cte = str(headers.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if ctype == "message/rfc822" and cte in ("7bit", "8bit", "binary"):
            self.walk(body_start, end, depth=depth + 1)
            return
        if _is_tnef_part(headers, ctype):
            self.seen += 1
            self._convert_part(start, header_end, body_start, end, headers, cte)

    def _convert_part(
        self, start: int, header_end: int, body_start: int, end: int, headers: Message, cte: str
    ) -> None:
        name = headers.get_filename() or "winmail.dat"
        where = f"TNEF part {self.seen} ({_printable(name)})"
        try:
            stream = _decode_body(self.data[body_start:end], cte)
            parsed = parse_tnef(stream)
            work = Work(output_left=MAX_GROWTH * (end - start) + GROWTH_ALLOWANCE)
            work.count_attachments(len(parsed.attachments))
            entity = message_entity(parsed, self.eol, depth=0, work=work)
            rendered = entity.render(self.eol)
            work.charge(len(rendered))
        except Exception as exc:  # hostile input of any shape must not stop the message
            self.warn(f"{where} kept unchanged: {failure_reason(exc)}")
            return
        for note in work.notes:
            self.warn(f"{where}: {note}")
        kept = non_content_headers(self.data[start:header_end], self.eol)
        top = start == 0
        if top and not any(field_name(line) == b"mime-version" for line in kept):
            kept.append(b"MIME-Version: 1.0" + self.eol)
        self.replacements.append((start, end, b"".join(kept) + rendered))
        self.converted += 1

    def splice(self) -> bytes:
        """The message with every replacement applied; the rest copied byte for byte."""
        if not any(start == 0 for start, _, _ in self.replacements):
            # A Content-Length header (mbox) would now be wrong: it is the one top-level
            # header dropped when only a nested part changed.
            header_end, _ = _split_entity(self.data, 0, len(self.data))
            fields = header_fields(self.data[:header_end])
            if any(field_name(lines[0]) == b"content-length" for lines in fields):
                kept = [
                    b"".join(lines) for lines in fields if field_name(lines[0]) != b"content-length"
                ]
                self.replacements.append((0, header_end, b"".join(kept)))
        pieces: list[bytes] = []
        offset = 0
        for start, end, new in sorted(self.replacements):
            pieces.append(self.data[offset:start])
            pieces.append(new)
            offset = end
        pieces.append(self.data[offset:])
        return b"".join(pieces)


def _parts(data: bytes, start: int, end: int, boundary: str) -> list[tuple[int, int]]:
    """Byte ranges of the body parts of a multipart body (RFC 2046 section 5.1.1).

    A delimiter is ``--boundary`` at the start of a line, optionally ``--`` (the close
    delimiter), then only white space to the end of the line. The line break before a
    delimiter belongs to the delimiter, so a part ends there; the preamble and the
    epilogue are not parts.
    """
    marker = b"--" + boundary.encode("ascii", "replace")
    ranges: list[tuple[int, int]] = []
    part_start: int | None = None
    pos = start
    while True:
        found = data.find(marker, pos, end)
        if found < 0:
            break
        pos = found + len(marker)
        if found > start and data[found - 1] != 0x0A:
            continue  # not at the start of a line
        line_end = data.find(b"\n", pos, end)
        line_end = end if line_end < 0 else line_end
        rest = data[pos:line_end].rstrip(b" \t\r")
        if rest not in (b"", b"--"):
            continue  # a longer boundary that merely starts with ours
        if part_start is not None:
            part_end = found
            if part_end > part_start and data[part_end - 1] == 0x0A:
                part_end -= 2 if part_end - 2 >= part_start and data[part_end - 2] == 0x0D else 1
            ranges.append((part_start, max(part_start, part_end)))
        if rest == b"--":
            return ranges
        part_start = min(line_end + 1, end)
        pos = part_start
    if part_start is not None and part_start < end:
        ranges.append((part_start, end))  # no close delimiter: be lenient, like email
    return ranges


def _is_tnef_part(headers: Message, ctype: str) -> bool:
    if ctype in TNEF_TYPES:
        return True
    for name in (headers.get_filename(), headers.get_param("name")):
        if isinstance(name, str) and name.strip().lower() == "winmail.dat":
            return True
    return False


def _decode_body(body: bytes, cte: str) -> bytes:
    if cte == "base64":
        return binascii.a2b_base64(body)
    if cte == "quoted-printable":
        return binascii.a2b_qp(body)
    if cte in ("7bit", "8bit", "binary"):
        return body
    raise TnefFormatError(f"unsupported Content-Transfer-Encoding {cte!r}")


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:80]
