"""Reading a message's header block from a stream without reading its body.

Only the top-level header block is ever parsed; the body is left in the stream, to be
streamed by whoever reads on.
"""

from __future__ import annotations

from typing import Any, Protocol

from smimecli.errors import DataError
from smimecli.mime.canonical import LF
from smimecli.mime.headers import HeaderBlock, _HeaderParser

MAX_LINE = 1 << 20  # one header line (folded lines count separately)


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
