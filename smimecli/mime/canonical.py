"""Line endings and the canonical CRLF form (RFC 8551 section 3.1.1), chunk by chunk.

The entity to be encrypted or signed is converted to CRLF line endings; decrypted output
goes back to the input's line ending. Converters work on chunks of any size, so a message
of any length streams through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

CRLF = b"\r\n"
LF = b"\n"


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
