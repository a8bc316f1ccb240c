"""MIME primitives both directions share, written for streams of any size.

Only the top-level header block of a message is ever parsed; bodies are streamed. Header
fields are kept as their raw lines (folding and line endings untouched) so that outer headers
pass through byte for byte. The encrypted inner entity is converted to CRLF line endings
(RFC 8551 section 3.1.1, canonical form), and the smime.p7m wrapper (RFC 8551 section 3.3) is
written with the input's line ending.
"""

from __future__ import annotations

import binascii
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from smimecli.errors import DataError

CRLF = b"\r\n"
LF = b"\n"

MAX_LINE = 1 << 20  # one header line (folded lines count separately)
MAX_HEADER_BLOCK = 8 << 20  # hostile input must not make the header block unbounded

_FIELD_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


@dataclass(frozen=True)
class HeaderField:
    """One header field as it was written.

    Attributes:
        name: the field name as written (case kept).
        raw: the whole field, continuation lines and line endings included.
    """

    name: str
    raw: bytes

    @property
    def lname(self) -> str:
        """The field name in lower case, for comparisons."""
        return self.name.lower()

    @property
    def value(self) -> str:
        """The unfolded value without the name (RFC 5322 section 2.2.3)."""
        body = self.raw.split(b":", 1)[1] if b":" in self.raw else b""
        unfolded = re.sub(rb"\r?\n(?=[ \t])", b"", body).rstrip(b"\r\n")
        return unfolded.strip().decode("utf-8", "replace")

    def with_newline(self, newline: bytes) -> bytes:
        """The raw field ending in ``newline`` (a last field may lack one at end of file)."""
        if self.raw.endswith(LF):
            return self.raw
        return self.raw + newline


@dataclass(frozen=True)
class ContentType:
    """A parsed Content-Type: lower-case type/subtype and lower-case parameter names."""

    mime_type: str = "text/plain"
    params: dict[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        """A parameter value by (case-insensitive) name."""
        return self.params.get(name.lower())


@dataclass
class HeaderBlock:
    """The top-level header block of a message.

    Attributes:
        fields: the header fields in order.
        newline: the input's line ending, ``b"\\n"`` or ``b"\\r\\n"``.
        raw: the header block exactly as read, including the blank separator line.
        has_separator: whether a blank line ended the block (else the body or EOF did).
    """

    fields: list[HeaderField]
    newline: bytes
    raw: bytes
    has_separator: bool

    def get(self, name: str) -> str | None:
        """The unfolded value of the first field called ``name``, or None."""
        lname = name.lower()
        for item in self.fields:
            if item.lname == lname:
                return item.value
        return None

    def get_all(self, name: str) -> list[str]:
        """The values of every field called ``name``, in order."""
        lname = name.lower()
        return [item.value for item in self.fields if item.lname == lname]

    def content_type(self) -> ContentType:
        """The Content-Type (``text/plain`` when absent, RFC 2045 section 5.2)."""
        return parse_content_type(self.get("Content-Type"))

    def content_fields(self) -> list[HeaderField]:
        """The ``Content-*`` fields: they describe the body and go inside the envelope."""
        return [item for item in self.fields if item.lname.startswith("content-")]

    def outer_fields(self) -> list[HeaderField]:
        """The fields kept outside an encrypted message: all but ``Content-*``,
        ``MIME-Version`` and ``Bcc``."""
        return [
            item
            for item in self.fields
            if not item.lname.startswith("content-") and item.lname not in ("mime-version", "bcc")
        ]


def _newline_of(line: bytes) -> bytes | None:
    if line.endswith(CRLF):
        return CRLF
    if line.endswith(LF):
        return LF
    return None


class _HeaderParser:
    """Line-by-line header block state machine shared by the bytes and stream readers."""

    def __init__(self) -> None:
        self.fields: list[HeaderField] = []
        self.raw = bytearray()
        self.newline: bytes | None = None
        self._current: list[bytes] = []
        self._name = ""
        self.done = False
        self.has_separator = False

    def _close_field(self) -> None:
        if self._current:
            self.fields.append(HeaderField(self._name, b"".join(self._current)))
            self._current = []

    def feed(self, line: bytes) -> bool:
        """Take one line; returns False when it belongs to the body (not consumed)."""
        if self.newline is None:
            self.newline = _newline_of(line)
        if line in (CRLF, LF):
            self._close_field()
            self.raw += line
            self.done = True
            self.has_separator = True
            return True
        if line[:1] in (b" ", b"\t") and self._current:
            self._current.append(line)
            self.raw += line
            return True
        match = _FIELD_NAME.match(line)
        if match is None:
            # Not a header field: the body starts here (RFC 5322 section 2.1 expects a blank
            # line, but real mail sometimes lacks it).
            self._close_field()
            self.done = True
            return False
        self._close_field()
        self._name = match.group(1).decode("ascii")
        self._current = [line]
        self.raw += line
        if len(self.raw) > MAX_HEADER_BLOCK:
            raise DataError("message header block is larger than 8 MiB: not a usable message")
        return True

    def result(self) -> HeaderBlock:
        self._close_field()
        return HeaderBlock(self.fields, self.newline or LF, bytes(self.raw), self.has_separator)


def parse_header_block(data: bytes) -> tuple[HeaderBlock, int]:
    """Parse the header block at the start of ``data``.

    Returns:
        the header block and the offset where the body starts.
    """
    parser = _HeaderParser()
    pos = 0
    size = len(data)
    while pos < size and not parser.done:
        end = data.find(LF, pos)
        end = size if end < 0 else end + 1
        if not parser.feed(data[pos:end]):
            break
        pos = end
    return parser.result(), pos


class LineReader(Protocol):
    """What the header reader needs of a stream: ``read`` and ``readline``."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...


class PeekedStream:
    """A read-only stream that first returns pushed-back bytes, then the source."""

    def __init__(self, head: bytes, source: Any) -> None:
        self._head = head
        self._source = source

    def read(self, size: int = -1) -> bytes:
        """Read like ``BinaryIO.read``."""
        if self._head:
            if size < 0:
                data, self._head = self._head + self._source.read(), b""
                return bytes(data)
            data, self._head = self._head[:size], self._head[size:]
            return data
        return bytes(self._source.read(size))

    def readline(self, size: int = -1) -> bytes:
        """Read like ``BinaryIO.readline``."""
        if self._head:
            cut = self._head.find(LF)
            if cut >= 0 and (size < 0 or cut < size):
                data, self._head = self._head[: cut + 1], self._head[cut + 1 :]
                return data
            if size >= 0 and len(self._head) >= size:
                data, self._head = self._head[:size], self._head[size:]
                return data
            data, self._head = self._head, b""
            more = self._source.readline(-1 if size < 0 else size - len(data))
            return data + bytes(more)
        return bytes(self._source.readline(size))


def read_header_block(src: LineReader) -> tuple[HeaderBlock, LineReader]:
    """Read the header block from a stream without reading the body.

    Returns:
        the header block and a stream positioned at the first body byte (``src`` itself,
        or a wrapper holding back the first body line when no blank line ended the block).
    """
    parser = _HeaderParser()
    while not parser.done:
        line = src.readline(MAX_LINE)
        if not line:
            break
        if len(line) >= MAX_LINE and not line.endswith(LF):
            raise DataError("message header line is longer than 1 MiB: not a usable message")
        if not parser.feed(line):
            return parser.result(), PeekedStream(line, src)
    return parser.result(), src


def not_a_message(first_line: bytes) -> DataError:
    """The error for an input without a header block, with a hint for what it looks like.

    Args:
        first_line: the input's first line (what stood where the header fields should be).
    """
    if first_line.startswith(b"From "):
        # The mbox separator line (RFC 4155): a mailbox of many messages, not one message.
        return DataError(
            "input is not an email message but looks like an mbox file with many messages: "
            "split it first (formail -s, git mailsplit) or give one message"
        )
    if not first_line:
        return DataError("input is empty: not an email message")
    if not first_line.strip():
        return DataError("input is not an email message: it starts with an empty line")
    return DataError("input is not an email message: it does not start with header fields")


# --- Content-Type and friends ----------------------------------------------------------------

_TOKEN = re.compile(r'\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*(?:;|$)', re.S)


def parse_parameters(text: str) -> dict[str, str]:
    """Parse ``; name=value`` parameters (quoted strings, RFC 2231 ``name*`` forms)."""
    params: dict[str, str] = {}
    parts: dict[str, dict[int, str]] = {}
    pos = 0
    while pos < len(text):
        if text[pos] in "; \t":
            pos += 1
            continue
        match = _TOKEN.match(text, pos)
        if match is None:
            nxt = text.find(";", pos)
            if nxt < 0:
                break
            pos = nxt + 1
            continue
        pos = match.end()
        name, value = match.group(1).lower(), match.group(2).strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        extended = name.endswith("*")
        base = name.rstrip("*")
        if extended and "''" in value:
            # RFC 2231 section 4: charset'language'percent-encoded
            charset, _, encoded = value.partition("'")
            encoded = encoded.partition("'")[2]
            raw = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), encoded).encode(
                "latin-1"
            )
            try:
                value = raw.decode(charset or "us-ascii")
            except (LookupError, UnicodeDecodeError):
                value = raw.decode("utf-8", "replace")
        section = re.fullmatch(r"(.+)\*(\d+)", base)
        if section:
            parts.setdefault(section.group(1), {})[int(section.group(2))] = value
        else:
            params.setdefault(base, value)
    for name, pieces in parts.items():
        params.setdefault(name, "".join(pieces[i] for i in sorted(pieces)))
    return params


def parse_content_type(value: str | None) -> ContentType:
    """Parse a Content-Type value; absent or unparsable gives ``text/plain`` (RFC 2045 5.2)."""
    if not value:
        return ContentType()
    main, _, rest = value.partition(";")
    mime_type = main.strip().lower()
    if "/" not in mime_type:
        return ContentType("text/plain", parse_parameters(rest))
    return ContentType(mime_type, parse_parameters(rest))


PKCS7_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_ENCRYPTED_SMIME_TYPES = ("enveloped-data", "authenveloped-data")


def has_p7m_name(headers: HeaderBlock, ctype: ContentType) -> bool:
    """Whether the Content-Type name or the Content-Disposition filename ends in ``.p7m``."""
    disposition = parse_parameters((headers.get("Content-Disposition") or "").partition(";")[2])
    names = [ctype.param("name"), disposition.get("filename")]
    return any(name and name.strip().lower().endswith(".p7m") for name in names)


def is_encrypted(headers: HeaderBlock) -> bool:
    """Whether a message is already encrypted and must pass through unchanged.

    True for application/(x-)pkcs7-mime with smime-type enveloped-data or
    authEnveloped-data, or with no smime-type but a ``.p7m`` name (RFC 8551 section 3.2.2),
    and for multipart/encrypted (RFC 1847).
    """
    ctype = headers.content_type()
    if ctype.mime_type == "multipart/encrypted":
        return True
    if ctype.mime_type not in PKCS7_TYPES:
        return False
    smime_type = ctype.param("smime-type")
    if smime_type is not None:
        return smime_type.strip().lower() in _ENCRYPTED_SMIME_TYPES
    return has_p7m_name(headers, ctype)


# What "already encrypted" means: the body really is a CMS EnvelopedData or
# AuthEnvelopedData, not merely a Content-Type that says so. Only the first bytes are read.
_SNIFF_LIMIT = 64 << 10  # bytes of body read at most to find the first DER octets
_SNIFF_DER = 48  # DER octets decoded and checked
_OID_ENVELOPED = bytes.fromhex("2a864886f70d010703")  # 1.2.840.113549.1.7.3
_OID_AUTH_ENVELOPED = bytes.fromhex("2a864886f70d0109100117")  # 1.2.840.113549.1.9.16.1.23
_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _der_header(data: bytes, pos: int, tag: int) -> int | None:
    """The position after a DER/BER tag ``tag`` and its length octets at ``pos``, or None."""
    if pos + 2 > len(data) or data[pos] != tag:
        return None
    first = data[pos + 1]
    if first < 0x80:
        return pos + 2
    if first == 0x80:  # BER indefinite length (streamed CMS)
        return pos + 2
    count = first & 0x7F
    if count > 4 or pos + 2 + count > len(data):
        return None
    if data[pos + 2] == 0:  # not minimal: no encoder writes it
        return None
    return pos + 2 + count


def looks_like_enveloped_cms(der: bytes) -> bool:
    """Whether DER/BER bytes start like a CMS ContentInfo of EnvelopedData (RFC 5652) or
    AuthEnvelopedData (RFC 5083): SEQUENCE, the content type OID, [0], SEQUENCE, version."""
    pos = _der_header(der, 0, 0x30)
    if pos is None or pos + 2 > len(der) or der[pos] != 0x06:
        return False
    size = der[pos + 1]
    oid = der[pos + 2 : pos + 2 + size]
    if oid not in (_OID_ENVELOPED, _OID_AUTH_ENVELOPED):
        return False
    pos = _der_header(der, pos + 2 + size, 0xA0)
    if pos is None:
        return False
    pos = _der_header(der, pos, 0x30)
    if pos is None or pos + 3 > len(der):
        return False
    # CMSVersion: INTEGER 0..4 (RFC 5652 section 6.1), 0 for AuthEnvelopedData.
    return der[pos : pos + 2] == b"\x02\x01" and der[pos + 2] <= 4


def sniff_encrypted(headers: HeaderBlock, body: LineReader) -> tuple[bool, LineReader]:
    """Whether a message is already encrypted, checking the body and not only the claim.

    True only when :func:`is_encrypted` says so for the headers *and* the body (base64 or
    binary) starts like a CMS EnvelopedData or AuthEnvelopedData. A multipart/encrypted
    (PGP/MIME) message is never counted: it is not S/MIME, and its claim cannot be checked
    here, so it is treated as plaintext. At most 64 KiB of the body are read.

    Returns:
        the answer and a stream that reads the whole body again from its first byte.
    """
    ctype = headers.content_type()
    if ctype.mime_type not in PKCS7_TYPES or not is_encrypted(headers):
        return False, body
    head = bytearray()
    clean = bytearray()
    binary = False
    while len(head) < _SNIFF_LIMIT and len(clean) < _SNIFF_DER * 4 // 3 + 4:
        line = body.readline(_SNIFF_LIMIT - len(head))
        if not line:
            break
        head += line
        if not clean and not binary and line.lstrip()[:1] == b"\x30":
            binary = True
        if binary:
            if len(head) >= _SNIFF_DER:
                break
            continue
        stripped = bytes(line.strip())
        if stripped and not set(stripped) <= _B64_CHARS:
            break
        clean += stripped
    rest = PeekedStream(bytes(head), body)
    if binary:
        return looks_like_enveloped_cms(bytes(head.lstrip())[:_SNIFF_DER]), rest
    usable = len(clean) - len(clean) % 4
    try:
        der = binascii.a2b_base64(bytes(clean[:usable]))
    except binascii.Error:
        return False, rest
    return looks_like_enveloped_cms(der[:_SNIFF_DER]), rest


# --- canonical CRLF ------------------------------------------------------------------------


class Canonicalizer:
    """Converts a byte stream to CRLF line endings (or, given ``LF``, to LF), chunk by chunk.

    To CRLF: bare LF becomes CRLF; CRLF stays. To LF: CRLF becomes LF. A lone CR is kept as
    it is. A CR at the end of one chunk is held back so a CRLF split across chunks is seen
    whole.
    """

    def __init__(self, newline: bytes = CRLF) -> None:
        self._to_lf = newline == LF
        self._held_cr = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> bytes:
        """Convert one chunk; may hold back a final CR."""
        data = bytes(chunk)
        if self._held_cr:
            data = b"\r" + data
            self._held_cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._held_cr = True
        if LF not in data:
            return data
        if self._to_lf:
            return data.replace(CRLF, LF)
        if b"\r" not in data:  # LF-only input, the usual case on Unix: one pass, not two
            return data.replace(LF, CRLF)
        return data.replace(CRLF, LF).replace(LF, CRLF)

    def flush(self) -> bytes:
        """The held-back CR, if any, at end of input."""
        if self._held_cr:
            self._held_cr = False
            return b"\r"
        return b""


def canonicalize(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the chunks converted to CRLF line endings (see :class:`Canonicalizer`)."""
    canon = Canonicalizer()
    for chunk in chunks:
        out = canon.feed(chunk)
        if out:
            yield out
    tail = canon.flush()
    if tail:
        yield tail


class CanonicalCounter:
    """Counts the canonical (CRLF) length of a stream without converting it."""

    def __init__(self) -> None:
        self.length = 0
        self._last_cr = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Account for one chunk."""
        data = bytes(chunk)
        if not data:
            return
        # Counting one byte is a fast C loop; the two-byte CRLF search only runs when the
        # chunk holds a CR at all.
        bare_lf = data.count(LF) - (data.count(CRLF) if b"\r" in data else 0)
        if self._last_cr and data[:1] == LF:
            bare_lf -= 1
        self.length += len(data) + bare_lf
        self._last_cr = data.endswith(b"\r")


def canonical_bytes(data: bytes) -> bytes:
    """``data`` with CRLF line endings."""
    return data.replace(CRLF, LF).replace(LF, CRLF)


# --- the smime.p7m wrapper -------------------------------------------------------------------


def smime_headers(newline: bytes, *, authenticated: bool = False) -> bytes:
    """The four header fields of an S/MIME enveloped message."""
    smime_type = "authEnveloped-data" if authenticated else "enveloped-data"
    lines = (
        b"MIME-Version: 1.0",
        b"Content-Type: application/pkcs7-mime; smime-type="
        + smime_type.encode("ascii")
        + b"; name=smime.p7m",
        b"Content-Transfer-Encoding: base64",
        b"Content-Disposition: attachment; filename=smime.p7m",
    )
    return b"".join(line + newline for line in lines)


def wrapper_header_block(headers: HeaderBlock, *, authenticated: bool = False) -> bytes:
    """The outer header block: kept fields in order, the S/MIME fields, a blank line."""
    newline = headers.newline
    kept = b"".join(item.with_newline(newline) for item in headers.outer_fields())
    return kept + smime_headers(newline, authenticated=authenticated) + newline


def inner_entity_header(headers: HeaderBlock) -> bytes:
    """The header block of the entity to encrypt: the Content-* fields and a blank line,
    in canonical CRLF form."""
    content = b"".join(item.with_newline(CRLF) for item in headers.content_fields())
    return canonical_bytes(content) + CRLF


LINE_BYTES = 57  # RFC 2045 section 6.8: 76 characters per line, 57 bytes of input
LINE_CHARS = 76
BATCH_LINES = 4096
BATCH_BYTES = LINE_BYTES * BATCH_LINES
_SPLIT = struct.Struct(f"{LINE_CHARS}s" * BATCH_LINES)


def base64_lines(data: bytes | bytearray | memoryview, newline: bytes) -> bytes:
    """``data`` as base64 lines of 76 characters, each ended by ``newline``; every line is
    full but the last. A whole batch (:data:`BATCH_BYTES`) is encoded with one C call and
    split by one precompiled struct (about twice as fast as slicing in a loop)."""
    encoded = binascii.b2a_base64(data, newline=False)
    if len(data) == BATCH_BYTES:
        lines = list(_SPLIT.unpack(encoded))
    else:
        lines = [encoded[i : i + LINE_CHARS] for i in range(0, len(encoded), LINE_CHARS)]
    lines.append(b"")
    return newline.join(lines)


class Base64LineWriter:
    """Writes base64 of everything written to it, in lines of 76 characters, a batch of
    4096 lines at a time (:func:`base64_lines`)."""

    def __init__(self, dst: BinaryIO | Any, newline: bytes = CRLF) -> None:
        self._dst = dst
        self._newline = newline
        self._pending = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Encode ``data`` (whole batches now, the rest later)."""
        size = len(data)
        batch = BATCH_BYTES
        pending = self._pending
        with memoryview(data) as view:
            done = 0
            if pending:
                # Complete the batch begun by earlier writes first.
                done = min(batch - len(pending), size)
                pending += view[:done]
                if len(pending) < batch:
                    return size
                self._dst.write(base64_lines(pending, self._newline))
                pending.clear()
            # Whole batches straight from the caller's buffer: no copy into ``pending``.
            while size - done >= batch:
                self._dst.write(base64_lines(view[done : done + batch], self._newline))
                done += batch
            pending += view[done:]
        return size

    def close(self) -> None:
        """Encode what is left (whole lines, then the last one with its ``=`` padding)."""
        if self._pending:
            self._dst.write(base64_lines(self._pending, self._newline))
            self._pending = bytearray()
