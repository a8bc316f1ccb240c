"""Making a MIME entity safe to sign: 7-bit, CRLF, and unchanged by any relay (RFC 8551 3.1).

A signature covers the exact bytes of the entity, so anything a mail relay may rewrite must
be encoded before signing (RFC 8551 section 3.1.2, RFC 3156 section 3): 8-bit and binary
bodies (a relay may downgrade them to quoted-printable), lines over 998 octets, lines ending
in white space (stripped by some relays) and lines starting with ``From `` (mangled to
``>From `` by mbox writers). Such a leaf part is re-encoded as quoted-printable (text) or
base64 (anything else); multipart and message/rfc822 entities are walked part by part.

The fast path, a body with none of those, is only scanned and then passed through; an
entity that needs re-encoding is held in memory while it is rewritten, and written out
part by part (:func:`write_transport_safe`), so only the part being re-encoded is copied.
"""

from __future__ import annotations

import binascii
import io
import quopri
import re
from collections.abc import Callable, Iterator
from typing import Any

from smimecli.mime import CRLF, HeaderBlock, parse_content_type, parse_header_block

__all__ = [
    "SafetyScan",
    "canonical_openssl",
    "make_transport_safe",
    "needs_encoding",
    "write_transport_safe",
]

_SMALL = 4096  # below this the one regular expression is quicker than SafetyScan
_SCAN_CHUNK = 1 << 20
_UNSAFE = re.compile(rb"[\x00\x80-\xff]|[ \t]\r?\n|[ \t]\Z|(?:^|\n)From |[^\n]{999}")
_ENCODED = ("base64",)
MAX_NESTING = 32


def needs_encoding(data: bytes | memoryview) -> bool:
    """True when ``data`` holds something a relay could change (see the module text)."""
    if len(data) <= _SMALL:
        return _UNSAFE.search(data) is not None
    scan = SafetyScan()
    view = memoryview(data)
    for pos in range(0, len(view), _SCAN_CHUNK):
        scan.feed(bytes(view[pos : pos + _SCAN_CHUNK]))
    return scan.finish()


_LONG_LINE = re.compile(rb"\n[^\n]{999}")
_SPACE_BEFORE_EOL = (b" \n", b"\t\n", b" \r\n", b"\t\r\n")


class SafetyScan:
    """:func:`needs_encoding` of a stream, chunk by chunk: feed every chunk, then
    :meth:`finish` says whether the whole would need encoding. Whole lines are looked at
    with a few C-speed searches (about 20 times faster than the one regular expression);
    memory is one chunk and the line it ends in."""

    def __init__(self) -> None:
        self.unsafe = False
        self._carry = b""  # the bytes after the last LF so far: a line not yet ended

    def feed(self, chunk: bytes) -> None:
        """Look at one more chunk."""
        if self.unsafe:
            return
        data = self._carry + chunk if self._carry else bytes(chunk)
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        if len(self._carry) >= _MAX_LINE_BYTES:
            self.unsafe = True
        elif cut:
            self.unsafe = _lines_unsafe(data[:cut] if cut < len(data) else data)

    def finish(self) -> bool:
        """True when the bytes fed need encoding (``needs_encoding`` of their whole)."""
        tail, self._carry = self._carry, b""
        if not self.unsafe and tail:
            self.unsafe = _lines_unsafe(tail) or tail[-1:] in (b" ", b"\t")
        return self.unsafe


_MAX_LINE_BYTES = 999


def _lines_unsafe(lines: bytes) -> bool:
    """needs_encoding of whole lines that start at a line start (``From `` at the start
    of ``lines`` counts)."""
    return (
        not lines.isascii()
        or b"\x00" in lines
        or any(mark in lines for mark in _SPACE_BEFORE_EOL)
        or lines.startswith(b"From ")
        or b"\nFrom " in lines
        or (lines.find(b"\n") if b"\n" in lines else len(lines)) >= _MAX_LINE_BYTES
        or _LONG_LINE.search(lines) is not None
    )


def canonical_openssl(data: bytes | memoryview) -> bytes:
    """CRLF line endings the way OpenSSL canonicalises a signed part before verifying:
    every run of CRs before an LF, or a bare LF, becomes one CRLF (``SMIME_crlf_copy``).
    Replacing every line ending with the regular expression is slow on a big part, so
    ``bytes.replace`` does it when the runs of CRs are short (the usual case)."""
    data = bytes(data)
    for _ in range(4):
        if b"\r\n" not in data:
            return data.replace(b"\n", CRLF)
        data = data.replace(b"\r\n", b"\n")
    return re.sub(rb"\r*\n", CRLF, data)


# Re-encoding works on this much at a time (quoted-printable: whole lines from here to the
# next line end), so a part of a million short lines costs a block, not a copy per step.
_BLOCK = 1 << 20
_BASE64_BLOCK = 57 * 1024  # 1,024 lines of 76 characters


def _qp(data: bytes) -> Iterator[bytes]:
    """Quoted-printable of text with CRLF line ends and no other CR (RFC 2045 section 6.7),
    with ``From `` and a leading dot protected, a block of whole lines at a time (the
    encoding is line by line; a line longer than two blocks is cut with a soft line break)."""
    pos = 0
    while pos < len(data):
        cut = data.find(b"\n", pos + _BLOCK, pos + 2 * _BLOCK)
        end = cut + 1 if cut >= 0 else min(len(data), pos + 2 * _BLOCK)
        if end < len(data) and data[end - 1] == 0x0D:
            end -= 1  # never between the CR and LF of a line end
        text = data[pos:end].replace(CRLF, b"\n")
        encoded = binascii.b2a_qp(text, quotetabs=False, istext=True, header=False)
        if not text.endswith(b"\n") and end < len(data):
            encoded += b"=\n"  # a line longer than two blocks: a soft line break here
        if encoded.startswith(b"From "):  # each block starts a line
            encoded = b"=46rom " + encoded[5:]
        if encoded.startswith(b"."):
            encoded = b"=2E" + encoded[1:]
        encoded = encoded.replace(b"\nFrom ", b"\n=46rom ").replace(b"\n.", b"\n=2E")
        yield encoded.replace(b"\n", CRLF)
        pos = end


def _base64(data: bytes) -> Iterator[bytes]:
    """Base64 in lines of 76 characters, a block of lines at a time."""
    for start in range(0, len(data), _BASE64_BLOCK):
        encoded = binascii.b2a_base64(data[start : start + _BASE64_BLOCK], newline=False)
        yield CRLF.join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + CRLF


def _set_cte(header: bytes, value: bytes) -> bytes:
    """The header block with its Content-Transfer-Encoding replaced (or added)."""
    block, _ = parse_header_block(header)
    kept = [f.raw for f in block.fields if f.lname != "content-transfer-encoding"]
    return b"".join(kept) + b"Content-Transfer-Encoding: " + value + CRLF + CRLF


def _decoded(cte: str, body: bytes) -> bytes:
    if cte == "quoted-printable":
        return quopri.decodestring(body)
    return body


def _leaf(
    header: bytes, mime_type: str, cte: str, body: bytes, write: Callable[[Any], Any]
) -> None:
    if cte in _ENCODED or not needs_encoding(body):
        write(header + body)
        return
    raw = _decoded(cte, body)
    # Quoted-printable for text; but binascii leaves a bare CR (one not ending a line) as it
    # is, and relays turn bare CRs into line ends: such text goes as base64.
    text = mime_type.startswith("text/") and raw.count(b"\r") == raw.count(CRLF)
    write(_set_cte(header, b"quoted-printable" if text else b"base64"))
    for piece in _qp(raw) if text else _base64(raw):
        write(piece)


def _multipart(
    header: bytes, boundary: str, body: memoryview, depth: int, write: Callable[[Any], Any]
) -> None:
    delimiter = re.compile(
        rb"(?:^|\r\n)--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?=\r\n|\Z)"
    )
    matches = delimiter.finditer(body)
    first = next(matches, None)
    second = None if first is None or first.group(1) else next(matches, None)
    if first is None or second is None:
        write(header + bytes(body))  # not a real multipart: leave it as written
        return
    block, _ = parse_header_block(header)
    if (block.get("Content-Transfer-Encoding") or "").strip().lower() in ("8bit", "binary"):
        header = _set_cte(header, b"7bit")  # RFC 2045 6.4: a multipart's encoding is its parts'
    mark = b"--" + boundary.encode()
    preamble = body[: first.start()]
    write(header)
    write(preamble)
    write((CRLF if len(preamble) else b"") + mark)
    # Each part between two delimiters, written as soon as it is re-encoded; the last
    # delimiter ends the parts (its "--" kept when it is the closing one).
    before: re.Match[bytes] = first
    current: re.Match[bytes] | None = second
    while current is not None:
        part = body[before.end() : current.start()]
        write(CRLF)
        write_transport_safe(part[2:] if part[:2] == CRLF else part, write, depth + 1)
        write(CRLF + mark)
        if current.group(1):
            write(b"--")
            break
        before, current = current, next(matches, None)
    write(body[current.end() if current is not None else before.end() :])


def _split_header(entity: bytes | memoryview) -> tuple[HeaderBlock, int]:
    """parse_header_block of an entity that may be a view: a prefix of whole lines is
    parsed, grown until the header block ends inside it."""
    reach = 1 << 16
    while reach < len(entity):
        prefix = bytes(entity[:reach])
        cut = prefix.rfind(b"\n") + 1
        if cut:
            block, offset = parse_header_block(prefix[:cut])
            if offset < cut:
                return block, offset
        reach *= 4
    return parse_header_block(bytes(entity))


def write_transport_safe(
    entity: bytes | memoryview, write: Callable[[Any], Any], depth: int = 0
) -> None:
    """:func:`make_transport_safe`, written part by part to ``write``: memory is the
    entity and the part being re-encoded, whatever the number of parts."""
    if depth > MAX_NESTING or not needs_encoding(entity):
        write(entity)
        return
    block, offset = _split_header(entity)
    view = memoryview(entity)
    header, body = bytes(view[:offset]), view[offset:]
    ctype = parse_content_type(block.get("Content-Type"))
    cte = (block.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    boundary = ctype.param("boundary")
    if ctype.mime_type.startswith("multipart/") and boundary:
        _multipart(header, boundary, body, depth, write)
    elif ctype.mime_type == "message/rfc822" and cte not in _ENCODED:
        write(header)
        write_transport_safe(body, write, depth + 1)
    else:
        _leaf(header, ctype.mime_type, cte, bytes(body), write)


def make_transport_safe(entity: bytes, depth: int = 0) -> bytes:
    """``entity`` (CRLF line endings) with every unsafe leaf part re-encoded.

    Args:
        entity: a MIME entity: its header block, a blank line, the body.
    """
    if depth > MAX_NESTING or not needs_encoding(entity):
        return entity
    out = io.BytesIO()
    write_transport_safe(entity, out.write, depth)
    return out.getvalue()
