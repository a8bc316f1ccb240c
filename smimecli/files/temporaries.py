"""Our temporary files beside each output: created exclusively, tracked while alive, and
removed when a killed run (SIGKILL, power loss) or a dead worker left them behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from pathlib import Path

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
