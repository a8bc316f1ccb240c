"""The smime.p7m wrapper (RFC 8551 section 3.3): the outer header block, the inner
entity's header in canonical form, and the base64 body lines (RFC 2045 section 6.8).

The wrapper is written with the input's line ending; the inner entity in CRLF.
"""

from __future__ import annotations

import binascii
import struct
from typing import Any, BinaryIO

from smimecli.mime.canonical import CRLF, canonical_bytes
from smimecli.mime.headers import HeaderBlock


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
