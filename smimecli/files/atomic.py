"""Outputs written atomically: a temporary file in the destination folder, synced, and
renamed into place only when the whole output is good (no partial output file, ever).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from smimecli.errors import OutputError
from smimecli.files.mapped import output_error
from smimecli.files.temporaries import (
    LIVE_TEMPORARIES,
    _create_temporary,
    _forget,
    clean_stale_temporaries,
)


class _WriteBehind:
    """Flushes a growing output file to disk in the background while it is being written.

    One ``fsync`` of a 33 MB file at the end costs about as long as encrypting it; a thread
    that calls ``fdatasync`` whenever another few MiB have reached the file lets the disk
    work while the encryption goes on, so the final ``fsync`` has little left to do. The
    thread only reads the file's size and syncs the descriptor: it never touches the
    Python file object.
    """

    STEP = 1 << 20
    POLL = 0.005

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._stop = threading.Event()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="smimecli-write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        synced = 0
        try:
            while not self._stop.wait(self.POLL):
                size = os.fstat(self._fd).st_size
                if size - synced >= self.STEP:
                    os.fdatasync(self._fd)
                    synced = size
        except OSError as exc:
            self._error = exc

    def stop(self, *, check: bool = True) -> None:
        """Stop the thread; a disk error it met is raised here unless ``check`` is false."""
        self._stop.set()
        self._thread.join()
        if check and self._error is not None:
            raise self._error


def _close_quietly(handle: BinaryIO) -> None:
    """Close after a failure: a flush that fails again (the disk is still full) must not
    replace the error already being raised."""
    with contextlib.suppress(OSError, ValueError):
        handle.close()


def _target_mode(target: Path, mode: int | None, private: bool) -> tuple[int | None, bool]:
    """The mode for the new file, and whether ``target`` is a special file (FIFO, device)
    to be written in place.

    Raises:
        OutputError: ``target`` is a folder (73).
    """
    try:
        info = os.stat(target)
    except OSError:
        return (0o600 if private and mode is None else mode), False
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(f"cannot write {target}: it is a folder; give a file name")
    if not stat.S_ISREG(info.st_mode):
        return None, True
    if mode is not None:
        return mode, False
    return stat.S_IMODE(info.st_mode), False  # never widen (nor narrow) an existing file


@contextlib.contextmanager
def _special_output(target: Path) -> Iterator[BinaryIO]:
    """Write into a FIFO or a device as it is: it cannot be replaced, and must not be."""
    try:
        handle = open(target, "wb")
    except OSError as exc:
        raise output_error(target, exc) from exc
    try:
        yield handle
        handle.close()
    except OSError as exc:
        _close_quietly(handle)
        raise output_error(target, exc) from exc
    except BaseException:
        _close_quietly(handle)
        raise


@contextlib.contextmanager
def atomic_output(
    path: str | Path, *, mode: int | None = None, fsync: bool = True, private: bool = False
) -> Iterator[BinaryIO]:
    """Write ``path`` atomically: a temporary file in the same folder, renamed on success.

    On any exception (including KeyboardInterrupt and SystemExit from a signal handler) the
    temporary file is removed and ``path`` is left untouched. A FIFO or a device (a pipe,
    /dev/null) is written directly, never replaced; a folder is refused (73).

    Args:
        path: the final file name.
        mode: permission bits for the new file (0600 for private keys); default 0666 &
            ~umask, or the mode of the file being replaced.
        fsync: flush the file to disk before the rename (written behind, see
            :class:`_WriteBehind`). A batch that writes many files turns this off and syncs
            the file system once at the end instead.
        private: plaintext: a new file (and its temporary file) is created 0600; an
            existing file keeps its mode.
    """
    target = Path(path)
    mode, special = _target_mode(target, mode, private)
    if special:
        with _special_output(target) as handle:
            yield handle
        return
    folder = target.parent if str(target.parent) else Path(".")
    clean_stale_temporaries(folder)
    try:
        fd, tmp_name = _create_temporary(folder, target.name, mode)
    except OSError as exc:
        raise output_error(path, exc) from exc
    try:
        handle = open(fd, "wb")
        behind = _WriteBehind(fd) if fsync else None
        try:
            yield handle
            handle.flush()
            if behind is not None:
                behind.stop()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise output_error(path, exc) from exc
        finally:
            if behind is not None:  # before the descriptor is closed
                behind.stop(check=False)
            _close_quietly(handle)
        try:
            os.replace(tmp_name, target)
        except OSError as exc:
            raise output_error(path, exc) from exc
        LIVE_TEMPORARIES.discard(tmp_name)
    except BaseException:
        _forget(tmp_name)
        raise


class PendingOutputs:
    """Several files written as one: every temporary file complete and synced first, then
    the caller's change elsewhere (a store insert), and only then the renames.

    ``add(path, data, mode)`` writes one temporary file (a full disk fails here, before
    anything else changed); ``commit()`` renames them all into place; ``discard()`` (also
    on leaving a ``with`` block with an exception) removes them.
    """

    def __init__(self) -> None:
        self._done: list[_HeldOutput] = []

    def add(self, path: str | Path, data: bytes, *, mode: int | None = None) -> None:
        held = _HeldOutput(Path(path), mode)
        self._done.append(held)
        held.write(data)

    def commit(self) -> None:
        for held in self._done:
            held.rename()
        self._done.clear()

    def discard(self) -> None:
        for held in self._done:
            held.discard()
        self._done.clear()

    def __enter__(self) -> PendingOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


class _HeldOutput:
    """One complete, synced temporary file waiting for its rename."""

    def __init__(self, target: Path, mode: int | None) -> None:
        self.target = target
        self.mode, special = _target_mode(target, mode, False)
        if special:
            raise OutputError(f"cannot write {target}: it is not a regular file")
        self.tmp_name: str | None = None

    def write(self, data: bytes) -> None:
        folder = self.target.parent if str(self.target.parent) else Path(".")
        clean_stale_temporaries(folder)
        try:
            fd, self.tmp_name = _create_temporary(folder, self.target.name, self.mode)
        except OSError as exc:
            raise output_error(self.target, exc) from exc
        try:
            with open(fd, "wb", buffering=0) as handle:
                view = memoryview(data)
                while view:
                    view = view[handle.write(view) or 0 :]
                os.fsync(fd)
        except OSError as exc:
            self.discard()
            raise output_error(self.target, exc) from exc
        except BaseException:
            self.discard()
            raise

    def rename(self) -> None:
        assert self.tmp_name is not None
        try:
            os.replace(self.tmp_name, self.target)
        except OSError as exc:
            self.discard()
            raise output_error(self.target, exc) from exc
        LIVE_TEMPORARIES.discard(self.tmp_name)
        self.tmp_name = None

    def discard(self) -> None:
        if self.tmp_name is not None:
            _forget(self.tmp_name)
            self.tmp_name = None


def write_atomic(
    path: str | Path, data: bytes, *, mode: int | None = None, private: bool = False
) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, mode=mode, private=private) as handle:
        handle.write(data)
