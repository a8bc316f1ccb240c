"""Reading a message in chunks, and reading ahead for big messages.

Encrypting a big message is a chain of steps in one Python thread: read, convert line
endings, encrypt, base64-encode, write. Reads release the GIL, so a thread that reads the
next chunks runs while the main thread converts and encodes, and the AES thread of
:func:`smimecli.cms.envelope.encrypted_pieces` encrypts. At most four chunks are in
flight, so memory stays flat; an error in the thread is raised in the caller's thread.

Writing behind in a thread was measured too and left out: each 300 KB write then waits
for the GIL held by the base64 encoder, and a 25 MB message got 10-20% slower.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from typing import IO, Any

__all__ = ["CHUNK", "THREADED_FROM", "read_ahead", "read_chunks"]

CHUNK = 1 << 20  # bytes per read of a message

# Below this many bytes everything stays in the calling thread: starting a thread would
# cost more than the overlap it buys (a batch of 4 KB messages).
THREADED_FROM = 4 << 20

_DEPTH = 4  # chunks in flight per thread
_DONE = object()


def read_chunks(src: IO[bytes], size: int = CHUNK) -> Generator[bytes, None, None]:
    """The stream's bytes, ``size`` at a time, to its end."""
    while chunk := src.read(size):
        yield chunk


def read_ahead(
    chunks: Iterator[bytes], *, after: int = THREADED_FROM
) -> Generator[bytes, None, None]:
    """The chunks of ``chunks`` (an iterator over reads); once ``after`` bytes have gone by,
    a thread reads up to four chunks ahead. The consumer must not touch the underlying
    stream until this iterator is exhausted or closed; closing it early stops the thread."""
    seen = 0
    for chunk in chunks:
        yield chunk
        seen += len(chunk)
        if seen >= after:
            break
    else:
        return
    yield from _threaded(chunks)


def _threaded(chunks: Iterator[bytes]) -> Iterator[bytes]:
    import queue

    items: queue.Queue[Any] = queue.Queue(_DEPTH)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer's thread
            put(exc)

    thread = threading.Thread(target=produce, name="smimecli-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
