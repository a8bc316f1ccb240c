"""winmail.dat (TNEF) parts turned into plain MIME before encryption.

Outlook and Exchange wrap rich-text mail in an ``application/ms-tnef`` part that only
Outlook reads; once the message is encrypted a gateway can no longer fix that for the
recipient, so the conversion happens before.

How the message is rebuilt: the MIME structure is located at the byte level (header blocks
and RFC 2046 section 5.1.1 boundary delimiters, with offsets into the input) and only the byte
range of each converted TNEF part is replaced. Everything else, that is the top-level headers
(order, folding, line endings), preambles, epilogues, delimiter lines and every other part,
is copied byte for byte and never re-encoded. A replaced part keeps its headers that are not
``Content-*`` and becomes a ``multipart/mixed`` entity in the input's line endings holding the
bodies (``multipart/alternative`` for plain + HTML, ``multipart/related`` when the HTML
references inline images by ``cid:``), the RTF body as ``body.rtf`` when there is no other
body, every attachment (base64, so its bytes are exact) and embedded messages as
``message/rfc822``.

The TNEF stream is read here (MS-OXTNEF) rather than with tnefparse, which strips trailing
NUL bytes from attachment data (corrupting .doc and OLE files) and can loop for a very long
time on a hostile property count. This reader checks every length against the bytes left,
so time and memory stay linear in the input; any malformed stream keeps its part unchanged.
"""

from __future__ import annotations

import binascii
import datetime as dt
import logging
import mimetypes
import re
import secrets
import struct
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import Header
from email.message import Message
from email.policy import compat32
from email.utils import format_datetime

from smimecli.mime import base64_lines

__all__ = ["TnefResult", "contains_tnef", "convert_message", "looks_like_message"]

log = logging.getLogger("smimecli")

TNEF_SIGNATURE = 0x223E9F78
TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})

# How deep MIME entities and embedded TNEF messages may nest before we stop looking.
MAX_MIME_DEPTH = 64
MAX_EMBED_DEPTH = 8
# Hostile TNEF (tiny empty attachments by the hundred thousand) must not turn a 10 MB
# message into gigabytes of memory: a TNEF part with more attachments than this (embedded
# messages' included), or whose MIME would be more than MAX_GROWTH times its own size plus
# GROWTH_ALLOWANCE bytes, is kept unchanged with a warning.
MAX_ATTACHMENTS = 10_000
MAX_GROWTH = 4
GROWTH_ALLOWANCE = 1 << 16

_TNEF_HINT = re.compile(rb"ms-tnef|winmail\.dat", re.IGNORECASE)
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")

# MS-OXTNEF 2.1.3.3 attribute ids (low 16 bits of the attribute id).
ATT_SUBJECT = 0x8004
ATT_DATE_SENT = 0x8005
ATT_MESSAGE_CLASS = 0x8008
ATT_BODY = 0x800C
ATT_ATTACH_DATA = 0x800F
ATT_ATTACH_TITLE = 0x8010
ATT_ATTACH_REND_DATA = 0x9002
ATT_MSG_PROPS = 0x9003
ATT_ATTACHMENT = 0x9005
ATT_OEM_CODEPAGE = 0x9007

LVL_MESSAGE = 1
LVL_ATTACHMENT = 2

# MAPI property tags ([MS-OXPROPS]) the conversion reads.
PR_MESSAGE_CLASS = 0x001A
PR_SUBJECT = 0x0037
PR_CLIENT_SUBMIT_TIME = 0x0039
PR_SENT_REPRESENTING_NAME = 0x0042
PR_SENT_REPRESENTING_EMAIL = 0x0065
PR_TRANSPORT_MESSAGE_HEADERS = 0x007D
PR_SENDER_NAME = 0x0C1A
PR_SENDER_EMAIL = 0x0C1F
PR_BODY = 0x1000
PR_RTF_COMPRESSED = 0x1009
PR_BODY_HTML = 0x1013
PR_INTERNET_MESSAGE_ID = 0x1035
PR_DISPLAY_NAME = 0x3001
PR_ATTACH_DATA = 0x3701
PR_ATTACH_FILENAME = 0x3704
PR_ATTACH_METHOD = 0x3705
PR_ATTACH_LONG_FILENAME = 0x3707
PR_ATTACH_MIME_TAG = 0x370E
PR_ATTACH_CONTENT_ID = 0x3712
PR_MESSAGE_CODEPAGE = 0x3FFD
PR_INTERNET_CPID = 0x3FDE

ATTACH_EMBEDDED_MSG = 5
# IID_IMessage in little-endian GUID form: the PtypObject prefix of an embedded message.
IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")

# MAPI property types ([MS-OXCDATA] 2.11.1): fixed sizes; 2-byte values are padded to 4.
PT_STRING8 = 0x001E
PT_UNICODE = 0x001F
PT_BINARY = 0x0102
PT_OBJECT = 0x000D
PT_SYSTIME = 0x0040
MV_FLAG = 0x1000
_FIXED_SIZES = {
    0x0002: 4,
    0x000B: 4,  # PtypInteger16, PtypBoolean (padded)
    0x0003: 4,
    0x0004: 4,
    0x000A: 4,  # Integer32, Floating32, ErrorCode
    0x0005: 8,
    0x0006: 8,
    0x0007: 8,
    0x0014: 8,
    0x0040: 8,  # Floating64, Currency, ...
    0x0048: 16,  # PtypGuid
}
_VARIABLE = frozenset({PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT, 0x00FB})

# Windows code page -> IANA charset name (the label written into Content-Type).
_CHARSETS = {
    437: "ibm437",
    850: "ibm850",
    866: "ibm866",
    874: "windows-874",
    932: "shift_jis",
    936: "gbk",
    949: "euc-kr",
    950: "big5",
    1200: "utf-16le",
    20127: "us-ascii",
    20866: "koi8-r",
    21866: "koi8-u",
    50220: "iso-2022-jp",
    51932: "euc-jp",
    54936: "gb18030",
    65001: "utf-8",
    **{cp: f"windows-{cp}" for cp in range(1250, 1259)},
    **{28590 + n: f"iso-8859-{n}" for n in range(1, 16)},
}
DEFAULT_CODEPAGE = 1252


class TnefFormatError(ValueError):
    """The TNEF stream is malformed; its part is kept unchanged."""


class _OverLimitError(TnefFormatError):
    """Over a limit (MAX_ATTACHMENTS, MAX_GROWTH): the whole TNEF part is kept unchanged."""


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
            work = _Work(output_left=MAX_GROWTH * (end - start) + GROWTH_ALLOWANCE)
            work.count_attachments(len(parsed.attachments))
            entity = _message_entity(parsed, self.eol, depth=0, work=work)
            rendered = entity.render(self.eol)
            work.charge(len(rendered))
        except Exception as exc:  # hostile input of any shape must not stop the message
            self.warn(f"{where} kept unchanged: {_reason(exc)}")
            return
        for note in work.notes:
            self.warn(f"{where}: {note}")
        kept = _non_content_headers(self.data[start:header_end], self.eol)
        top = start == 0
        if top and not any(_field_name(line) == b"mime-version" for line in kept):
            kept.append(b"MIME-Version: 1.0" + self.eol)
        self.replacements.append((start, end, b"".join(kept) + rendered))
        self.converted += 1

    def splice(self) -> bytes:
        """The message with every replacement applied; the rest copied byte for byte."""
        if not any(start == 0 for start, _, _ in self.replacements):
            # A Content-Length header (mbox) would now be wrong: it is the one top-level
            # header dropped when only a nested part changed.
            header_end, _ = _split_entity(self.data, 0, len(self.data))
            fields = _header_fields(self.data[:header_end])
            if any(_field_name(lines[0]) == b"content-length" for lines in fields):
                kept = [
                    b"".join(lines)
                    for lines in fields
                    if _field_name(lines[0]) != b"content-length"
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


def _field_name(line: bytes) -> bytes:
    return line.split(b":", 1)[0].strip().lower()


def _header_fields(block: bytes) -> list[list[bytes]]:
    """The header fields of a header block, each as its lines (folded ones included)."""
    fields: list[list[bytes]] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def _non_content_headers(block: bytes, eol: bytes) -> list[bytes]:
    """The header fields (with their folded lines) whose names do not start with Content-."""
    kept: list[bytes] = []
    for lines in _header_fields(block):
        if _field_name(lines[0]).startswith(b"content-"):
            continue
        text = b"".join(lines)
        kept.append(text if text.endswith(b"\n") else text + eol)
    return kept


def _reason(exc: Exception) -> str:
    if isinstance(exc, TnefFormatError):
        return str(exc)
    if isinstance(exc, (struct.error, IndexError, binascii.Error, UnicodeError)):
        return f"malformed TNEF data ({type(exc).__name__}: {exc})"
    return f"cannot convert ({type(exc).__name__}: {exc})"


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:80]


# --- reading TNEF (MS-OXTNEF) ----------------------------------------------------------------


@dataclass
class TnefAttachment:
    """One attachment of a TNEF message, with the raw bytes of its data."""

    data: bytes | None = None
    title: str | None = None  # attAttachTitle (8.3 or long name)
    props: dict[int, object] = field(default_factory=dict)

    def prop_str(self, tag: int) -> str | None:
        value = self.props.get(tag)
        return value if isinstance(value, str) and value else None

    @property
    def method(self) -> int:
        value = self.props.get(PR_ATTACH_METHOD)
        return value if isinstance(value, int) else 1

    @property
    def file_name(self) -> str | None:
        """PR_ATTACH_LONG_FILENAME, else the short name, the title or the display name."""
        for name in (
            self.prop_str(PR_ATTACH_LONG_FILENAME),
            self.prop_str(PR_ATTACH_FILENAME),
            self.title,
            self.prop_str(PR_DISPLAY_NAME),
        ):
            if name:
                return name
        return None

    @property
    def embedded(self) -> bytes | None:
        """The TNEF stream of an embedded message (PtypObject with IID_IMessage)."""
        value = self.props.get(PR_ATTACH_DATA)
        if isinstance(value, bytes) and value.startswith(IID_IMESSAGE):
            return value[len(IID_IMESSAGE) :]
        return None

    @property
    def content(self) -> bytes:
        value = self.props.get(PR_ATTACH_DATA)
        if isinstance(value, bytes):
            return value
        return self.data or b""


@dataclass
class TnefMessage:
    """What a TNEF stream holds, as far as MIME conversion needs it."""

    codepage: int = DEFAULT_CODEPAGE
    message_class: str | None = None
    subject: str | None = None
    date_sent: dt.datetime | None = None
    legacy_body: bytes | None = None  # attBody, in the OEM code page
    props: dict[int, object] = field(default_factory=dict)
    attachments: list[TnefAttachment] = field(default_factory=list)

    def prop_str(self, tag: int) -> str | None:
        value = self.props.get(tag)
        return value if isinstance(value, str) and value else None


class _Reader:
    """Little-endian reads over a memoryview; every length is checked against what is left."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def left(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int) -> memoryview:
        if n < 0 or n > self.left():
            raise TnefFormatError(f"length {n} runs past the end of the TNEF data")
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u16(self) -> int:
        return int(struct.unpack_from("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack_from("<I", self.take(4))[0])


def _text(raw: bytes, codepage: int) -> str:
    return raw.decode(_python_codec(codepage), "replace").split("\x00", 1)[0]


def _python_codec(codepage: int) -> str:
    label = _CHARSETS.get(codepage, f"cp{codepage}")
    try:
        import codecs

        codecs.lookup(label)
    except LookupError:
        return "cp1252"
    return label


def parse_tnef(data: bytes, *, limit: int = MAX_ATTACHMENTS) -> TnefMessage:
    """Read a TNEF stream (MS-OXTNEF 2.1.3) into a :class:`TnefMessage`.

    Raises:
        TnefFormatError: wrong signature, bad checksum, truncated attribute, trailing bytes,
            more than ``limit`` attachments.
    """
    reader = _Reader(memoryview(data))
    if reader.left() < 6 or reader.u32() != TNEF_SIGNATURE:
        raise TnefFormatError("no TNEF signature")
    reader.u16()  # legacy key
    message = TnefMessage()
    current: TnefAttachment | None = None
    while reader.left():
        if reader.left() < 11:
            if any(reader.take(reader.left())):  # zero padding after the last attribute is fine
                raise TnefFormatError("stray bytes at the end of the TNEF data")
            break
        level = reader.take(1)[0]
        attr_id = reader.u32() & 0xFFFF
        length = reader.u32()
        value = reader.take(length)
        checksum = reader.u16()
        if sum(value) & 0xFFFF != checksum:
            raise TnefFormatError(f"bad checksum in TNEF attribute {attr_id:#06x}")
        if level == LVL_MESSAGE:
            _message_attribute(message, attr_id, value)
        elif level == LVL_ATTACHMENT:
            if attr_id == ATT_ATTACH_REND_DATA or current is None:
                if len(message.attachments) >= limit:
                    raise _OverLimitError(f"more than {MAX_ATTACHMENTS:,} attachments")
                current = TnefAttachment()
                message.attachments.append(current)
            _attachment_attribute(current, attr_id, value, message.codepage)
        else:
            raise TnefFormatError(f"unknown TNEF attribute level {level}")
    return message


def _message_attribute(message: TnefMessage, attr_id: int, value: memoryview) -> None:
    if attr_id == ATT_OEM_CODEPAGE and len(value) >= 4:
        message.codepage = int(struct.unpack_from("<I", value)[0]) or DEFAULT_CODEPAGE
    elif attr_id == ATT_MESSAGE_CLASS:
        message.message_class = _text(bytes(value), message.codepage)
    elif attr_id == ATT_SUBJECT:
        message.subject = _text(bytes(value), message.codepage)
    elif attr_id == ATT_BODY:
        message.legacy_body = bytes(value)
    elif attr_id == ATT_DATE_SENT and len(value) >= 12:
        year, month, day, hour, minute, second = struct.unpack_from("<6H", value)
        try:
            message.date_sent = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
        except ValueError:
            pass
    elif attr_id == ATT_MSG_PROPS:
        message.props.update(_mapi_props(value, message.codepage))


def _attachment_attribute(
    attachment: TnefAttachment, attr_id: int, value: memoryview, codepage: int
) -> None:
    if attr_id == ATT_ATTACH_DATA:
        attachment.data = bytes(value)
    elif attr_id == ATT_ATTACH_TITLE:
        attachment.title = _text(bytes(value), codepage) or None
    elif attr_id == ATT_ATTACHMENT:
        attachment.props.update(_mapi_props(value, codepage))


def _mapi_props(buf: memoryview, codepage: int) -> dict[int, object]:
    """A MAPI property list (MS-OXTNEF 2.1.3.4); the first value of each property."""
    reader = _Reader(buf)
    count = reader.u32()
    if count > reader.left() // 8:
        raise TnefFormatError(f"MAPI property count {count} exceeds the attribute size")
    props: dict[int, object] = {}
    for _ in range(count):
        ptype = reader.u16()
        tag = reader.u16()
        if tag >= 0x8000:  # named property: GUID, kind, then a number or a name
            reader.take(16)
            if reader.u32() == 0:
                reader.u32()
            else:
                reader.take(_pad4(reader.u32()))
        multi = bool(ptype & MV_FLAG)
        base = ptype & ~MV_FLAG
        count_values = reader.u32() if multi else 1
        if base in _VARIABLE:
            if not multi:
                count_values = reader.u32()
            values = []
            for _ in range(_bounded(count_values, reader)):
                size = reader.u32()
                raw = reader.take(size)
                reader.take(_pad4(size) - size)
                values.append(raw)
            if values and tag < 0x8000:
                raw_first = bytes(values[0])
                # Body strings stay bytes: they are written out in their own code page.
                keep_raw = base == PT_STRING8 and tag in (PR_BODY, PR_BODY_HTML)
                props.setdefault(
                    tag, raw_first if keep_raw else _variable_value(base, raw_first, codepage)
                )
        elif base in _FIXED_SIZES:
            size = _FIXED_SIZES[base]
            first: memoryview | None = None
            for _ in range(_bounded(count_values, reader)):
                raw = reader.take(size)
                first = raw if first is None else first
            if first is not None and tag < 0x8000:
                props.setdefault(tag, _fixed_value(base, first))
        else:
            raise TnefFormatError(f"unknown MAPI property type {ptype:#06x}")
    return props


def _bounded(count: int, reader: _Reader) -> int:
    if count > reader.left():
        raise TnefFormatError(f"MAPI value count {count} exceeds the attribute size")
    return count


def _pad4(size: int) -> int:
    return (size + 3) & ~3


def _variable_value(base: int, raw: bytes, codepage: int) -> object:
    if base == PT_UNICODE:
        return raw.decode("utf-16-le", "replace").split("\x00", 1)[0]
    if base == PT_STRING8:
        return _text(raw, codepage)
    return raw


def _fixed_value(base: int, raw: memoryview) -> object:
    if base in (0x0002, 0x000B):
        value = int(struct.unpack_from("<h", raw)[0])
        return bool(value) if base == 0x000B else value
    if base in (0x0003, 0x000A):
        return int(struct.unpack_from("<i", raw)[0])
    if base == PT_SYSTIME:
        ticks = int(struct.unpack_from("<Q", raw)[0])  # 100 ns since 1601-01-01 UTC
        try:
            return dt.datetime(1601, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ticks // 10)
        except OverflowError:
            return None
    return bytes(raw)


# --- writing MIME ----------------------------------------------------------------------------


@dataclass
class _Entity:
    """A MIME entity to write: a leaf (body bytes) or a multipart (children)."""

    content_type: str
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: list[bytes] = field(default_factory=list)  # already formatted, no line end
    body: bytes = b""
    children: list[_Entity] = field(default_factory=list)

    def render(self, eol: bytes) -> bytes:
        """Content-Type and the other headers, a blank line, the body."""
        params = list(self.params)
        rendered = [child.render(eol) for child in self.children]
        if self.children:
            # A fresh boundary, checked against what it encloses (RFC 2046 5.1.1).
            while True:
                boundary = "=_smimecli_" + secrets.token_hex(12)
                if not any(boundary.encode("ascii") in part for part in rendered):
                    break
            params.append(("boundary", boundary))
        lines = [_header_with_params("Content-Type", self.content_type, params, eol)]
        lines.extend(header + eol for header in self.headers)
        out = [*lines, eol]
        if self.children:
            delimiter = b"--" + params[-1][1].encode("ascii")
            for part in rendered:
                out.extend([delimiter, eol, part, eol])
            out.extend([delimiter, b"--", eol])
        else:
            out.append(self.body)
        return b"".join(out)


_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z|~]+")
# RFC 2231 section 7 attribute-char: what may stay unescaped in an extended value.
_ATTR_CHAR = frozenset(
    b"!#$&+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


def _header_with_params(name: str, value: str, params: list[tuple[str, str]], eol: bytes) -> bytes:
    """A header with one parameter per folded line; RFC 2231 for non-ASCII or long values."""
    lines = [f"{name}: {value}"]
    for key, val in params:
        if val.isascii() and val.isprintable() and len(val) <= 60:
            quoted = val if _TOKEN.fullmatch(val) else '"' + re.sub(r'(["\\])', r"\\\1", val) + '"'
            lines.append(f"{key}={quoted}")
            continue
        # RFC 2231 sections 3 and 4: charset'', percent-encoding, numbered continuations.
        encoded = "".join(chr(b) if b in _ATTR_CHAR else f"%{b:02X}" for b in val.encode())
        chunks: list[str] = []
        rest = "utf-8''" + encoded
        while rest:
            cut = min(len(rest), 60)
            while cut < len(rest) and "%" in rest[max(0, cut - 2) : cut]:
                cut -= 1
            chunks.append(rest[:cut])
            rest = rest[cut:]
        for index, chunk in enumerate(chunks):
            lines.append(f"{key}*{index}*={chunk}" if len(chunks) > 1 else f"{key}*={chunk}")
    text = (";" + eol.decode() + "\t").join(lines) + eol.decode()
    return text.encode("ascii")


def _text_entity(subtype: str, raw: bytes, charset: str, eol: bytes) -> _Entity:
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if (
        raw.isascii()
        and b"\r" not in raw.replace(b"\r\n", b"")
        and b"\x00" not in raw
        and all(len(line) <= 998 and not line.startswith(b"--") for line in lines)
    ):
        # RFC 2045 section 2.7: short ASCII lines may go as 7bit, in the output's line ends.
        # A line starting with "--" could close an enclosing part (the boundary of the
        # message around the TNEF part is not ours to choose): base64 then.
        body = eol.join(lines)
        if not body.endswith(eol):
            body += eol
        cte = "7bit"
        charset = "us-ascii" if charset in ("windows-1252", "utf-8") else charset
    else:
        body, cte = base64_lines(raw, eol), "base64"
    return _Entity(
        f"text/{subtype}",
        [("charset", charset)],
        [f"Content-Transfer-Encoding: {cte}".encode()],
        body,
    )


def _charset(codepage: object) -> str:
    if isinstance(codepage, int) and codepage in _CHARSETS:
        return _CHARSETS[codepage]
    return _CHARSETS[DEFAULT_CODEPAGE]


def _body_bytes(value: object, codepage: int) -> tuple[bytes, str] | None:
    """A body property as (bytes, charset label): strings re-encoded, binary kept as is."""
    if isinstance(value, str):
        if not value.strip("\x00 \r\n"):
            return None
        return value.encode("utf-8"), "utf-8"
    if isinstance(value, bytes):
        raw = value.rstrip(b"\x00")  # string properties end with a NUL terminator
        return (raw, _charset(codepage)) if raw.strip() else None
    return None


@dataclass
class _Work:
    """What converting one TNEF part may still cost, and the notes it made."""

    output_left: int
    attachments: int = 0
    notes: list[str] = field(default_factory=list)

    def count_attachments(self, count: int) -> None:
        self.attachments += count
        if self.attachments > MAX_ATTACHMENTS:
            raise _OverLimitError(f"more than {MAX_ATTACHMENTS:,} attachments")

    def charge(self, size: int) -> None:
        self.output_left -= size
        if self.output_left < 0:
            raise _OverLimitError(
                f"its MIME would be more than {MAX_GROWTH} times the size of the TNEF part"
            )


def _message_entity(message: TnefMessage, eol: bytes, *, depth: int, work: _Work) -> _Entity:
    """The multipart/mixed entity that replaces a TNEF message (or its embedded copy)."""
    klass = message.prop_str(PR_MESSAGE_CLASS) or message.message_class or "IPM.Note"
    if not _is_note(klass):
        raise TnefFormatError(
            f"message class {klass!r} is not a plain note (meeting request, task, contact...)"
        )
    codepage = message.codepage
    cpid = message.props.get(PR_INTERNET_CPID)
    text_cp = message.props.get(PR_MESSAGE_CODEPAGE)
    text_cp = text_cp if isinstance(text_cp, int) and text_cp in _CHARSETS else codepage
    plain = _body_bytes(message.props.get(PR_BODY), text_cp)
    if plain is None and message.legacy_body:
        plain = _body_bytes(message.legacy_body, codepage)
    html_value = message.props.get(PR_BODY_HTML)
    html = _body_bytes(html_value, cpid if isinstance(cpid, int) else codepage)

    children: list[_Entity] = []
    related: list[_Entity] = []
    html_bytes = html[0] if html else b""
    for attachment in message.attachments:
        part = _attachment_entity(attachment, eol, depth=depth, work=work)
        work.charge(len(part.body) + 256)
        cid = attachment.prop_str(PR_ATTACH_CONTENT_ID)
        if cid and html and b"cid:" + cid.strip("<>").encode("utf-8", "replace") in html_bytes:
            related.append(part)
        else:
            children.append(part)

    bodies: list[_Entity] = []
    if plain:
        bodies.append(_text_entity("plain", plain[0], plain[1], eol))
    if html:
        html_part = _text_entity("html", html[0], html[1], eol)
        if related:
            html_part = _Entity(
                "multipart/related", [("type", "text/html")], children=[html_part, *related]
            )
        bodies.append(html_part)
    if len(bodies) == 2:
        bodies = [_Entity("multipart/alternative", children=bodies)]
    rtf = message.props.get(PR_RTF_COMPRESSED)
    if not bodies and isinstance(rtf, bytes):
        from compressed_rtf import decompress

        decompressed = bytes(decompress(rtf))
        bodies.append(_file_entity(decompressed, "body.rtf", "application/rtf", eol))
    if not bodies and not children:
        raise TnefFormatError("it holds neither a body nor an attachment")
    return _Entity("multipart/mixed", children=bodies + children)


def _is_note(message_class: str) -> bool:
    klass = message_class.strip().lower()
    return klass in ("ipm", "ipm.note", "ipm.microsoft mail.note") or klass.startswith(
        ("ipm.note.", "ipm.microsoft mail.note.")
    )


def _safe_name(name: str | None) -> str:
    """The last path component, without control characters (it becomes a file name)."""
    if not name:
        return "Untitled Attachment"
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base or "Untitled Attachment"


def _attachment_entity(
    attachment: TnefAttachment, eol: bytes, *, depth: int, work: _Work
) -> _Entity:
    name = _safe_name(attachment.file_name)
    embedded = attachment.embedded
    if embedded is not None and attachment.method == ATTACH_EMBEDDED_MSG:
        if depth < MAX_EMBED_DEPTH:
            try:
                inner = parse_tnef(embedded, limit=MAX_ATTACHMENTS - work.attachments)
                work.count_attachments(len(inner.attachments))
                return _embedded_entity(inner, name, eol, depth=depth + 1, work=work)
            except _OverLimitError:
                raise
            except Exception as exc:  # keep the embedded stream itself, as a TNEF file
                work.notes.append(f"embedded message {name!r} attached as TNEF: {_reason(exc)}")
        else:
            work.notes.append(f"embedded message {name!r} nested too deep: attached as TNEF")
        return _file_entity(embedded, name + ".dat", "application/ms-tnef", eol)
    mime_tag = (attachment.prop_str(PR_ATTACH_MIME_TAG) or "").strip().lower()
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", mime_tag):
        mime_tag = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    cid = attachment.prop_str(PR_ATTACH_CONTENT_ID)
    entity = _file_entity(attachment.content, name, mime_tag, eol)
    if cid and cid.isascii() and re.fullmatch(r"<?[^<>\s]+>?", cid):
        entity.headers.append(f"Content-ID: <{cid.strip('<>')}>".encode("ascii"))
    return entity


def _file_entity(data: bytes, name: str, content_type: str, eol: bytes) -> _Entity:
    disposition = _header_with_params(
        "Content-Disposition", "attachment", [("filename", name)], eol
    )
    return _Entity(
        content_type,
        [("name", name)],
        [b"Content-Transfer-Encoding: base64", disposition[: -len(eol)]],
        base64_lines(data, eol),
    )


def _embedded_entity(
    message: TnefMessage, name: str, eol: bytes, *, depth: int, work: _Work
) -> _Entity:
    """An embedded message as message/rfc822 (RFC 2046 section 5.2.1: 7bit only)."""
    body = _message_entity(message, eol, depth=depth, work=work)
    headers: list[bytes] = []
    transport = message.prop_str(PR_TRANSPORT_MESSAGE_HEADERS)
    if transport and transport.isascii():
        lines = transport.replace("\r\n", "\n").strip("\n").split("\n")
        lines = lines[: lines.index("")] if "" in lines else lines
        block = eol.join(line.encode("ascii") for line in lines) + eol
        headers = [
            field_lines[: -len(eol)]
            for field_lines in _non_content_headers(block, eol)
            if _field_name(field_lines) != b"mime-version"
            and b":" in field_lines
            and not field_lines.startswith(b"-")  # never a boundary line of the parts around
        ]
    if not headers:
        headers = _synthetic_headers(message, eol)
    headers.append(b"MIME-Version: 1.0")
    inner = eol.join(headers) + eol + body.render(eol)
    filename = name if name.lower().endswith(".eml") else name + ".eml"
    disposition = _header_with_params(
        "Content-Disposition", "attachment", [("filename", filename)], eol
    )
    return _Entity(
        "message/rfc822", [], [b"Content-Transfer-Encoding: 7bit", disposition[: -len(eol)]], inner
    )


def _encoded(name: str, value: str, eol: bytes) -> bytes:
    if value.isascii() and value.isprintable():
        return f"{name}: {value}".encode("ascii")
    # RFC 2047 encoded-words for non-ASCII header text.
    folded = Header(value, "utf-8", header_name=name).encode(linesep=eol.decode())
    return f"{name}: {folded}".encode("ascii")


def _synthetic_headers(message: TnefMessage, eol: bytes) -> list[bytes]:
    headers: list[bytes] = []
    sender = message.prop_str(PR_SENT_REPRESENTING_NAME) or message.prop_str(PR_SENDER_NAME)
    address = message.prop_str(PR_SENT_REPRESENTING_EMAIL) or message.prop_str(PR_SENDER_EMAIL)
    if address and "@" not in address:
        address = None  # an Exchange X.500 DN is no mail address
    if sender or address:
        shown = " ".join(filter(None, [sender, f"<{address}>" if address else None]))
        headers.append(_encoded("From", shown, eol))
    subject = message.prop_str(PR_SUBJECT) or message.subject
    if subject:
        headers.append(_encoded("Subject", subject, eol))
    when = message.props.get(PR_CLIENT_SUBMIT_TIME) or message.date_sent
    if isinstance(when, dt.datetime):
        headers.append(f"Date: {format_datetime(when)}".encode("ascii"))
    message_id = message.prop_str(PR_INTERNET_MESSAGE_ID)
    if message_id and message_id.isascii():
        headers.append(f"Message-ID: {message_id.strip()}".encode("ascii"))
    return headers
