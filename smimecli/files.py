"""Reading inputs and writing outputs the way a mail gateway must.

Outputs are written to a temporary file in the destination folder and renamed into place
only when the whole output is good (SPEC section 2: no partial output file, ever). OS
errors are mapped to the sysexits statuses: 66 for inputs, 73 when an output cannot be
created, 74 for an I/O error while writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from smimecli.errors import InputError, IOFailedError, OutputError

# Errors that mean "this output can never be created here" rather than "the device failed".
_CANTCREAT = {errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR}


_MISSING = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def input_error(path: str | Path, exc: OSError) -> InputError | IOFailedError:
    """The smimecli error for an OS error on an input: 66 if it is missing or unreadable,
    74 for a device error."""
    if isinstance(exc, _MISSING):
        return InputError(f"cannot read {path}: {exc.strerror or exc}")
    return IOFailedError(f"I/O error reading {path}: {exc.strerror or exc}")


def read_input(path: str | Path) -> bytes:
    """Read a whole input file, mapping failures to exit 66 (or 74 for device errors)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise input_error(path, exc) from exc


@contextlib.contextmanager
def open_input(path: str | Path) -> Iterator[BinaryIO]:
    """Open an input file for streaming, mapping failures to exit 66."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise input_error(path, exc) from exc
    with handle:
        yield handle


def output_error(path: str | Path, exc: OSError) -> OutputError | IOFailedError:
    """The smimecli error for an OS error on an output: 73 if it cannot be created, else 74."""
    if exc.errno in _CANTCREAT:
        return OutputError(f"cannot write {path}: {exc.strerror or exc}")
    return IOFailedError(f"I/O error writing {path}: {exc.strerror or exc}")


def _create_temporary(folder: Path, name: str, mode: int | None) -> tuple[int, str]:
    """A new, empty file beside the target: a hidden random name, created exclusively.

    Without ``mode`` the file gets 0666 less the umask, like any new file; with one it gets
    exactly that mode (0600 for private keys). One open(2), where mkstemp and a chmod took
    three system calls more, which a batch of small messages notices.
    """
    for _ in range(100):
        candidate = os.path.join(folder, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(
                candidate,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                0o666 if mode is None else 0o600,
            )
        except FileExistsError:
            continue
        if mode is not None:  # exactly this mode, whatever the umask
            try:
                os.fchmod(fd, mode)
            except OSError:
                os.close(fd)
                os.unlink(candidate)
                raise
        return fd, candidate
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(folder))


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


@contextlib.contextmanager
def atomic_output(
    path: str | Path, *, mode: int | None = None, fsync: bool = True
) -> Iterator[BinaryIO]:
    """Write ``path`` atomically: a temporary file in the same folder, renamed on success.

    On any exception (including KeyboardInterrupt and SystemExit from a signal handler) the
    temporary file is removed and ``path`` is left untouched.

    Args:
        path: the final file name.
        mode: permission bits for the new file (0600 for private keys); default 0666 & ~umask.
        fsync: flush the file to disk before the rename (written behind, see
            :class:`_WriteBehind`). A batch that writes many files turns this off and syncs
            the file system once at the end instead.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp_name = _create_temporary(folder, target.name, mode)
    except OSError as exc:
        raise output_error(path, exc) from exc
    try:
        with open(fd, "wb") as handle:
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
        try:
            os.replace(tmp_name, target)
        except OSError as exc:
            raise output_error(path, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def write_atomic(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, mode=mode) as handle:
        handle.write(data)
