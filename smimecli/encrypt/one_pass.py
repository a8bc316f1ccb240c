"""One-pass encryption: a big file in, an output that can be rewritten.

The DER lengths are written for the smallest canonical length the body can have, then the
base64 lines holding the DER header are written again with the true lengths.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Iterator
from io import BytesIO
from itertools import chain
from typing import Any

from smimecli.cms.envelope import EnvelopeBuilder, EnvelopeResult
from smimecli.encrypt.tnef_search import _TnefSearch
from smimecli.mime import (
    LINE_BYTES,
    Base64LineWriter,
    HeaderBlock,
    base64_lines,
    canonicalize,
    inner_entity_header,
    wrapper_header_block,
)
from smimecli.streams import THREADED_FROM, read_ahead, read_chunks


def _seekable(stream: Any) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


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
