"""The files of a batch: which inputs, which outputs, and moving inputs to ``--done-dir``.

A folder input becomes its regular files (hidden, backup and temporary files skipped); each
input is paired with its output in ``--out-dir`` after checking that no two inputs share an
output and no output overwrites its input. With ``--done-dir`` an input whose output is on
disk (synced) is moved away, never over an existing file. Nothing here encrypts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from smimecli.errors import InputError, IOFailedError, OutputError, UsageError

__all__ = [
    "expand_inputs",
    "move_done",
    "plan_outputs",
    "remove_stale_output",
    "sync_entry",
    "sync_folder",
]

# Files a folder input skips: hidden files (our own ``.name.XXXX.tmp`` temporaries among
# them), editor backups and temporaries that another program is still writing.
_SKIPPED_SUFFIXES = ("~", ".tmp", ".swp", ".part")


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.endswith(_SKIPPED_SUFFIXES)


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Files as given; a folder becomes its regular files, sorted by name, not recursive.

    Hidden files and temporary or backup files (``~``, ``.tmp``, ``.swp``, ``.part``) in a
    folder are skipped; a file named explicitly is always taken.

    Raises:
        InputError: a folder cannot be listed (66).
    """
    found: list[Path] = []
    for path in inputs:
        if not path.is_dir():
            found.append(path)
            continue
        try:
            # scandir knows each entry's type without a stat per file (1,000-file spools).
            with os.scandir(path) as entries:
                names = sorted(e.name for e in entries if not _skipped(e.name) and e.is_file())
        except OSError as exc:
            raise InputError(f"cannot read folder {path}: {exc.strerror or exc}") from exc
        found.extend(path / name for name in names)
    return found


def plan_outputs(inputs: Sequence[Path], out_dir: Path) -> list[tuple[Path, Path]]:
    """Pair each input with ``out_dir / input.name``, checking the batch can run at all.

    Raises:
        OutputError: ``out_dir`` is missing or not a folder (73); it is not created, so that
            a mistyped path in a cron job fails loudly instead of filling a new folder.
        UsageError: two inputs share a name, or an output would overwrite its input (64).
    """
    if not out_dir.is_dir():
        if out_dir.exists():
            what = "is a file" if out_dir.is_file() else "exists"
            raise OutputError(
                f"--out-dir {out_dir} {what}, not a folder: give a folder "
                "(or -o FILE for one message)"
            )
        raise OutputError(f"output folder {out_dir} does not exist: create it first")
    pairs: list[tuple[Path, Path]] = []
    seen: dict[str, Path] = {}
    out_real = out_dir.resolve()
    folders: dict[Path, Path] = {}  # each input folder resolved once

    def real_folder(path: Path) -> Path:
        if path.is_symlink():
            return path.resolve().parent  # a link to a file elsewhere: where it points
        if path.parent not in folders:
            folders[path.parent] = path.parent.resolve()
        return folders[path.parent]

    for path in inputs:
        other = seen.get(path.name)
        if other is not None:
            raise UsageError(
                f"{other} and {path} would both be written to {out_dir / path.name}: "
                "encrypt them in separate runs"
            )
        seen[path.name] = path
        target = out_dir / path.name
        try:
            same = real_folder(path) == out_real
        except OSError:
            same = False
        if same:
            raise UsageError(f"--out-dir {out_dir} holds the input {path}: choose another folder")
        pairs.append((path, target))
    return pairs


def remove_stale_output(dst_path: Path) -> None:
    """A message that failed now must not leave the output of an earlier run under its
    name, looking like this run's: that output is removed (a regular file only)."""
    import stat

    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.lstat(dst_path).st_mode):
            os.unlink(dst_path)


def sync_entry(folder: Path) -> None:
    """fsync a folder, so that a file just renamed into it survives a power cut."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise IOFailedError(f"I/O error syncing {folder}: {exc.strerror or exc}") from exc


def move_done(src: Path, done_dir: Path) -> Path:
    """Move the input ``src`` into ``done_dir``, never over an existing file: ``NAME``,
    else ``NAME.1``, ``NAME.2``... Within one file system a hard link and an unlink (the
    new name is taken atomically, or not at all); across file systems a copy, synced,
    then the unlink of ``src``.

    Raises:
        OutputError: ``done_dir`` cannot take the file (73).
        IOFailedError: a device error (74).
    """
    from smimecli.files import output_error

    for number in range(10000):
        target = done_dir / (src.name if number == 0 else f"{src.name}.{number}")
        try:
            os.link(src, target, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise output_error(target, exc) from exc
            if not _copy_new(src, target):
                continue
        try:
            os.unlink(src)
        except OSError as exc:
            raise output_error(src, exc) from exc
        return target
    raise OutputError(f"cannot move {src} into {done_dir}: too many files of that name")


def _copy_new(src: Path, target: Path) -> bool:
    """Copy ``src`` to the new file ``target`` (False if it exists), synced to disk."""
    from smimecli.files import output_error

    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise output_error(target, exc) from exc
    try:
        with open(src, "rb") as source, open(fd, "wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
            copy.flush()
            os.fsync(copy.fileno())
        shutil.copymode(src, target)
        sync_entry(target.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(target)
        if isinstance(exc, OSError):
            raise output_error(target, exc) from exc
        raise
    return True


def sync_folder(folder: Path) -> None:
    """Flush the file system holding ``folder`` (syncfs(2) on Linux, else sync(2)).

    Raises:
        IOFailedError: the file system reports a write error (74).
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise IOFailedError(f"cannot open {folder} to sync it: {exc.strerror or exc}") from exc
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise IOFailedError(f"I/O error syncing {folder}: {os.strerror(err)}")
    except (OSError, AttributeError):
        os.sync()
    finally:
        os.close(fd)
