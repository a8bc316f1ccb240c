"""The top-level header block of a message and the Content-Type rules.

Header fields are kept as their raw lines (folding and line endings untouched) so that outer
headers pass through byte for byte; values are unfolded only when read (RFC 5322 section
2.2.3). Content-Type parameters follow RFC 2045 and RFC 2231.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from smimecli.errors import DataError
from smimecli.mime.canonical import CRLF, LF

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
