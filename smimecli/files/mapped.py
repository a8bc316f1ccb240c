"""OS errors on inputs and outputs as smimecli errors, and streams that raise them.

66 for an input that is missing or unreadable, 73 when an output cannot be created, 74 for
an I/O error while reading or writing (a full disk, EIO, a closed pipe).
"""

from __future__ import annotations

import contextlib
import errno
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from smimecli.errors import InputError, IOFailedError, OutputError

# Errors that mean "this output can never be created here" rather than "the device failed".
_CANTCREAT = {errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR}


_MISSING = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def input_error(path: str | Path, exc: OSError) -> InputError | IOFailedError:
    """The smimecli error for an OS error on an input: 66 if it is missing or unreadable
    (or a closed standard input), 74 for a device error."""
    if isinstance(exc, _MISSING) or exc.errno == errno.EBADF:
        return InputError(f"cannot read {path}: {exc.strerror or exc}")
    return IOFailedError(f"I/O error reading {path}: {exc.strerror or exc}")


def read_input(path: str | Path) -> bytes:
    """Read a whole input file, mapping failures to exit 66 (or 74 for device errors)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise input_error(path, exc) from exc


class MappedReader(io.BufferedReader):
    """A buffered input file whose read errors (EIO on a failing disk or terminal) are
    smimecli errors naming the file, wherever in the library the read happens. It stays
    a BufferedReader over a FileIO, so the one-pass encryption still sees a plain file."""

    what: str = "input"

    def _mapped(self, exc: OSError) -> InputError | IOFailedError:
        return input_error(self.what, exc)

    def read(self, size: int | None = -1) -> bytes:
        try:
            return super().read(size)
        except OSError as exc:
            raise self._mapped(exc) from exc

    def read1(self, size: int = -1) -> bytes:
        try:
            return super().read1(size)
        except OSError as exc:
            raise self._mapped(exc) from exc

    def readline(self, size: int | None = -1) -> bytes:
        try:
            return super().readline(size)
        except OSError as exc:
            raise self._mapped(exc) from exc

    def readinto(self, buffer: Any) -> int:
        try:
            return super().readinto(buffer)
        except OSError as exc:
            raise self._mapped(exc) from exc

    def peek(self, size: int = 0) -> bytes:
        try:
            return super().peek(size)
        except OSError as exc:
            raise self._mapped(exc) from exc


def reader(raw: io.FileIO, what: str) -> MappedReader:
    """``raw`` buffered, its read errors named after ``what``."""
    handle = MappedReader(raw)
    handle.what = what
    return handle


@contextlib.contextmanager
def open_input(path: str | Path) -> Iterator[BinaryIO]:
    """Open an input file for streaming, mapping failures to exit 66 (74 for read errors)."""
    try:
        handle = reader(io.FileIO(path, "rb"), str(path))
    except OSError as exc:
        raise input_error(path, exc) from exc
    with handle:
        yield handle


class MappedWriter(io.BufferedWriter):
    """A buffered output stream (standard output) whose write errors are smimecli errors:
    74 for a full device, a device error or a reader that closed the pipe."""

    what: str = "standard output"

    def _mapped(self, exc: OSError) -> IOFailedError:
        if exc.errno == errno.EPIPE:
            return IOFailedError(
                f"cannot write {self.what}: the reader closed the pipe before the end "
                "(the output is incomplete)"
            )
        return IOFailedError(f"I/O error writing {self.what}: {exc.strerror or exc}")

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            raise self._mapped(exc) from exc

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            raise self._mapped(exc) from exc


def output_error(path: str | Path, exc: OSError) -> OutputError | IOFailedError:
    """The smimecli error for an OS error on an output: 73 if it cannot be created, else 74."""
    if exc.errno in _CANTCREAT:
        return OutputError(f"cannot write {path}: {exc.strerror or exc}")
    return IOFailedError(f"I/O error writing {path}: {exc.strerror or exc}")
