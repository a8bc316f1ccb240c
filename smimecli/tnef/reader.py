"""Reading a TNEF stream (winmail.dat, MS-OXTNEF): attributes, MAPI properties, attachments.

The TNEF stream is read here rather than with tnefparse, which strips trailing NUL bytes
from attachment data (corrupting .doc and OLE files) and can loop for a very long time on a
hostile property count. This reader checks every length against the bytes left, so time
and memory stay linear in the input; any malformed stream keeps its part unchanged
(smimecli.tnef.splice turns what is read here into MIME).
"""

from __future__ import annotations

import binascii
import datetime as dt
import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TnefAttachment", "TnefFormatError", "TnefMessage", "parse_tnef"]

TNEF_SIGNATURE = 0x223E9F78

# Hostile TNEF (tiny empty attachments by the hundred thousand) must not turn a 10 MB
# message into gigabytes of memory: a TNEF part with more attachments than this (embedded
# messages' included), or whose MIME would be more than MAX_GROWTH times its own size plus
# GROWTH_ALLOWANCE bytes, is kept unchanged with a warning.
MAX_ATTACHMENTS = 10_000
MAX_GROWTH = 4
GROWTH_ALLOWANCE = 1 << 16

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
CHARSETS = {
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


class OverLimitError(TnefFormatError):
    """Over a limit (MAX_ATTACHMENTS, MAX_GROWTH): the whole TNEF part is kept unchanged."""


def failure_reason(exc: Exception) -> str:
    if isinstance(exc, TnefFormatError):
        return str(exc)
    if isinstance(exc, (struct.error, IndexError, binascii.Error, UnicodeError)):
        return f"malformed TNEF data ({type(exc).__name__}: {exc})"
    return f"cannot convert ({type(exc).__name__}: {exc})"


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
    label = CHARSETS.get(codepage, f"cp{codepage}")
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
                    raise OverLimitError(f"more than {MAX_ATTACHMENTS:,} attachments")
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


# The conversion moved to smimecli.tnef.splice; callers that still import it from here get
# it from there (lazily: splice imports this module).
_MOVED_TO_SPLICE = frozenset(
    {"TnefResult", "contains_tnef", "convert_message", "looks_like_message"}
)


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_SPLICE:
        from smimecli.tnef import splice

        return getattr(splice, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
