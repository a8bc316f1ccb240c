"""Making a MIME entity safe to sign: 7-bit, CRLF, and unchanged by any relay (RFC 8551 3.1).

A signature covers the exact bytes of the entity, so anything a mail relay may rewrite must
be encoded before signing (RFC 8551 section 3.1.2, RFC 3156 section 3): 8-bit and binary
bodies (a relay may downgrade them to quoted-printable), lines over 998 octets, lines ending
in white space (stripped by some relays) and lines starting with ``From `` (mangled to
``>From `` by mbox writers). Such a leaf part is re-encoded as quoted-printable (text) or
base64 (anything else); multipart and message/rfc822 entities are walked part by part.

The fast path, a body with none of those, is only scanned and then passed through; a body
that needs re-encoding is held in memory while it is rewritten.
"""

from __future__ import annotations

import binascii
import quopri
import re

from smimecli.mime import CRLF, parse_content_type, parse_header_block

__all__ = ["SafetyScan", "canonical_openssl", "make_transport_safe", "needs_encoding"]

_UNSAFE = re.compile(rb"[\x00\x80-\xff]|[ \t]\r?\n|[ \t]\Z|(?:^|\n)From |[^\n]{999}")
_ENCODED = ("base64",)
MAX_NESTING = 32


def needs_encoding(data: bytes) -> bool:
    """True when ``data`` holds something a relay could change (see the module text)."""
    return _UNSAFE.search(data) is not None


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


def _qp(data: bytes) -> bytes:
    """Quoted-printable of text (RFC 2045 section 6.7), with ``From `` protected."""
    text = data.replace(CRLF, b"\n")
    encoded = binascii.b2a_qp(text, quotetabs=False, istext=True, header=False)
    encoded = re.sub(rb"(^|\n)From ", rb"\1=46rom ", encoded)
    encoded = re.sub(rb"(^|\n)\.", rb"\1=2E", encoded)
    return encoded.replace(b"\n", CRLF)


def _base64(data: bytes) -> bytes:
    lines = [binascii.b2a_base64(data[i : i + 57], newline=False) for i in range(0, len(data), 57)]
    return b"".join(line + CRLF for line in lines)


def _set_cte(header: bytes, value: bytes) -> bytes:
    """The header block with its Content-Transfer-Encoding replaced (or added)."""
    block, _ = parse_header_block(header)
    kept = [f.raw for f in block.fields if f.lname != "content-transfer-encoding"]
    return b"".join(kept) + b"Content-Transfer-Encoding: " + value + CRLF + CRLF


def _decoded(cte: str, body: bytes) -> bytes:
    if cte == "quoted-printable":
        return quopri.decodestring(body)
    return body


def _leaf(header: bytes, mime_type: str, cte: str, body: bytes) -> bytes:
    if cte in _ENCODED or not needs_encoding(body):
        return header + body
    raw = _decoded(cte, body)
    if mime_type.startswith("text/"):
        return _set_cte(header, b"quoted-printable") + _qp(raw)
    return _set_cte(header, b"base64") + _base64(raw)


def _multipart(header: bytes, boundary: str, body: bytes, depth: int) -> bytes:
    delimiter = re.compile(
        rb"(?:^|\r\n)--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?=\r\n|\Z)"
    )
    pieces = []
    pos = 0
    closed = False
    for match in delimiter.finditer(body):
        pieces.append(body[pos : match.start()])
        pos = match.end()
        if match.group(1):
            closed = True
            break
    if len(pieces) < 2:
        return header + body  # not a real multipart: leave it as written
    tail = body[pos:]
    parts = [make_transport_safe(p.removeprefix(CRLF), depth + 1) for p in pieces[1:]]
    mark = b"--" + boundary.encode()
    out = pieces[0] + b"".join(CRLF + mark + CRLF + p for p in parts)
    out += CRLF + mark + (b"--" if closed else b"") + tail
    if not pieces[0]:
        out = out.removeprefix(CRLF)
    block, _ = parse_header_block(header)
    if (block.get("Content-Transfer-Encoding") or "").strip().lower() in ("8bit", "binary"):
        header = _set_cte(header, b"7bit")  # RFC 2045 6.4: a multipart's encoding is its parts'
    return header + out


def make_transport_safe(entity: bytes, depth: int = 0) -> bytes:
    """``entity`` (CRLF line endings) with every unsafe leaf part re-encoded.

    Args:
        entity: a MIME entity: its header block, a blank line, the body.
    """
    if depth > MAX_NESTING or not needs_encoding(entity):
        return entity
    block, offset = parse_header_block(entity)
    header, body = entity[:offset], entity[offset:]
    ctype = parse_content_type(block.get("Content-Type"))
    cte = (block.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    boundary = ctype.param("boundary")
    if ctype.mime_type.startswith("multipart/") and boundary:
        return _multipart(header, boundary, body, depth)
    if ctype.mime_type == "message/rfc822" and cte not in _ENCODED:
        return header + make_transport_safe(body, depth + 1)
    return _leaf(header, ctype.mime_type, cte, body)
