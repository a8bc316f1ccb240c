"""Reading inputs and writing outputs the way a mail gateway must.

Outputs are written to a temporary file in the destination folder and renamed into place
only when the whole output is good (no partial output file, ever). OS
errors are mapped to the sysexits statuses: 66 for inputs, 73 when an output cannot be
created, 74 for an I/O error while writing.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import stat
import threading
import time
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


# Our temporary files: ``.NAME.PID.RANDOM.tmp`` beside the target, PID the writer's.
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$")
# A temporary file is stale when its writer is gone and it has not changed for this long,
# or when it has not changed for a day (the pid may have been reused since).
STALE_AFTER = 60.0
STALE_ANYWAY = 86400.0
_CLEANED: set[str] = set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no permission to ask: alive
        return True
    return True


def clean_stale_temporaries(folder: str | Path) -> list[str]:
    """Remove temporary files of ours that a killed run (SIGKILL, power loss) left in
    ``folder``, once per folder and process. Only files of our exact naming, owned by this
    user, are touched, and only when their writer's process is gone and they have not
    changed for a minute (or for a day, whoever wrote them): a batch running at the same
    time keeps its temporaries. Returns the names removed."""
    key = os.path.abspath(folder)
    if key in _CLEANED:
        return []
    _CLEANED.add(key)
    removed: list[str] = []
    now = time.time()
    uid = os.geteuid()
    try:
        with os.scandir(key) as entries:
            candidates = [e for e in entries if _TEMPORARY.match(e.name)]
        for entry in candidates:
            match = _TEMPORARY.match(entry.name)
            assert match is not None
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:
                continue
            age = now - info.st_mtime
            pid = int(match.group(1))
            if age > STALE_ANYWAY or (age > STALE_AFTER and pid != os.getpid() and not _alive(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    except OSError:
        pass  # a folder we cannot list: the write itself will say what is wrong
    return removed


# Temporary files this process has created and not yet renamed or removed: a signal
# handler that must end the process at once removes them (remove_temporaries).
LIVE_TEMPORARIES: set[str] = set()


def _forget(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)
    LIVE_TEMPORARIES.discard(name)


def remove_temporaries() -> None:
    """Remove every temporary file this process still holds (before an abrupt exit)."""
    for name in list(LIVE_TEMPORARIES):
        _forget(name)


def remove_dead_temporaries(folder: str | Path, pid: int, name: str | None = None) -> None:
    """Remove the temporary files that the dead process ``pid`` left in ``folder`` (for
    the target ``name`` only, when given)."""
    prefix = f".{name}.{pid}." if name is not None else None
    try:
        with os.scandir(folder) as entries:
            doomed = [
                e.path
                for e in entries
                if (match := _TEMPORARY.match(e.name)) is not None
                and int(match.group(1)) == pid
                and (prefix is None or e.name.startswith(prefix))
            ]
    except OSError:
        return
    for path in doomed:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _create_temporary(folder: Path, name: str, mode: int | None) -> tuple[int, str]:
    """A new, empty file beside the target: a hidden name with our pid, created exclusively.

    Without ``mode`` the file gets 0666 less the umask, like any new file; with one it is
    created 0600 and then gets exactly that mode. One open(2), where mkstemp and a chmod
    took three system calls more, which a batch of small messages notices.
    """
    pid = os.getpid()
    for _ in range(100):
        candidate = os.path.join(folder, f".{name}.{pid}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(
                candidate,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                0o666 if mode is None else 0o600,
            )
        except FileExistsError:
            continue
        LIVE_TEMPORARIES.add(candidate)
        if mode is not None and mode != 0o600:  # exactly this mode, whatever the umask
            try:
                os.fchmod(fd, mode)
            except OSError:
                os.close(fd)
                _forget(candidate)
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
