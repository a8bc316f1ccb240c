"""Batch encryption: many messages to ``--out-dir``, in worker processes.

A cron job over a spool folder wants three things: every message handled even when one is
bad, no half-written file ever (each output is a temporary file in the output folder,
renamed when complete), and one exit status that says how bad the worst failure was.

Certificates, keys, signers and rules are loaded once per process, not once per message:
direct mode ships the certificates to the workers as DER (cryptography's objects do not
pickle) and rebuilds the recipients once in each worker; a signer travels as a
:class:`smimecli.sign.signers.SignerSource` (a store selector, or a .pfx and its password)
and each worker loads it once; rules mode loads the rules file once in each worker, which
opens its own store connection.

Worker processes are forked (``fork`` on Linux, where it is cheap and safe here: the parent
holds no threads and no open store), else ``forkserver``/``spawn``. The notices of a message
(:class:`smimecli.notices.Notice`) travel back with its result; the caller shows them (the
command prefixes each with the input's name), so output from several workers never
interleaves.

Exit status of a batch: the worst per-message status, in this order (most severe first)::

    70 > 74 > 73 > 78 > 77 > 75 > 67 > 65 > 66 > 64 > 0

A bug (70) outranks everything; I/O (74) and cannot-create (73) come next because they
usually hit every message (disk full, folder not writable); then configuration (78) and
keys (77); then 75 before 67 because a retry can still cure a temporary failure, which the
caller must be told, while a rejected message (67) stays rejected; bad or missing inputs
(65, 66) concern only themselves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from smimecli.choices import (
    DEFAULT_CIPHER,
    DEFAULT_KEY_TRANSPORT,
    DEFAULT_OAEP_HASH,
    DEFAULT_RECIPIENT_ID,
)
from smimecli.encrypt.request import EncryptRequest, encrypt_one
from smimecli.errors import (
    ExitStatus,
    InputError,
    IOFailedError,
    OutputError,
    SmimeError,
    UsageError,
)
from smimecli.files import remove_dead_temporaries, remove_temporaries
from smimecli.notices import Notice

if TYPE_CHECKING:
    from smimecli.sign.signers import SignerSource

__all__ = [
    "STATUS_ORDER",
    "BatchSettings",
    "BatchSummary",
    "MessageResult",
    "RecipientSpec",
    "default_jobs",
    "expand_inputs",
    "move_done",
    "plan_outputs",
    "run_batch",
    "worst_status",
]

# Most severe first; see the module docstring for the reasons.
STATUS_ORDER: tuple[int, ...] = (70, 74, 73, 78, 77, 75, 67, 65, 66, 64)

# Files a folder input skips: hidden files (our own ``.name.XXXX.tmp`` temporaries among
# them), editor backups and temporaries that another program is still writing.
_SKIPPED_SUFFIXES = ("~", ".tmp", ".swp", ".part")


# Below this many messages per worker, forking and loading a worker costs more than it saves.
MESSAGES_PER_WORKER = 16
# Past a few workers the disk (creating and renaming files) is the limit, and each worker
# holds the interpreter and the crypto libraries (about 35 MiB).
MAX_DEFAULT_JOBS = 8


def default_jobs(messages: int) -> int:
    """``--jobs`` when it is not given: one worker per CPU this process may run on, at most
    :data:`MAX_DEFAULT_JOBS`, and no more than one per :data:`MESSAGES_PER_WORKER` messages
    (a handful of messages is encrypted in this process)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_JOBS, messages // MESSAGES_PER_WORKER))


def worst_status(statuses: Iterable[int]) -> int:
    """The batch's exit status: the most severe of ``statuses`` (0 when all are 0)."""
    found = {int(s) for s in statuses if int(s) != 0}
    if not found:
        return 0
    for status in STATUS_ORDER:
        if status in found:
            return status
    return max(found)  # a status outside the table is still a failure


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


@dataclass(frozen=True)
class RecipientSpec:
    """A direct-mode recipient in a form that crosses process boundaries (DER bytes)."""

    cert_der: bytes
    key_transport: str = DEFAULT_KEY_TRANSPORT
    oaep_hash: str = DEFAULT_OAEP_HASH
    recipient_id: str = DEFAULT_RECIPIENT_ID

    @classmethod
    def of(cls, recipient: Any) -> RecipientSpec:
        """From a :class:`smimecli.cms.recipients.Recipient`."""
        from cryptography.hazmat.primitives.serialization import Encoding

        return cls(
            recipient.cert.public_bytes(Encoding.DER),
            recipient.key_transport,
            recipient.oaep_hash,
            recipient.recipient_id,
        )


@dataclass(frozen=True)
class BatchSettings:
    """How every message of a batch is encrypted: direct recipients or a rules file.

    Attributes:
        recipients: direct mode (``--cert``): encrypt every message to these.
        cipher: direct mode content cipher.
        convert_tnef: direct mode TNEF conversion (rules mode reads it from the rules).
        rules: rules mode (``--rules``): the rules file.
        store_dir: rules mode: the certificate store folder.
        store_passphrase: rules mode: decrypts the store's private keys (the rules'
            signers); None reads ``$SMIMECLI_STORE_PASSWORD``.
        envelope_recipients: rules mode ``--recipient`` values (None: To, Cc, Bcc).
        on_missing_cert: rules mode ``--on-missing-cert`` override.
        signer: direct mode ``--sign-with``/``--sign-with-pfx``: sign every message first.
        done_dir: ``--done-dir``: each input whose output is written and synced is moved
            here (see :func:`move_done`).
    """

    recipients: tuple[RecipientSpec, ...] = ()
    cipher: str = DEFAULT_CIPHER
    convert_tnef: bool = True
    rules: Path | None = None
    store_dir: Path | None = None
    store_passphrase: bytes | None = field(default=None, repr=False)
    envelope_recipients: tuple[str, ...] | None = None
    on_missing_cert: str | None = None
    signer: SignerSource | None = None
    done_dir: Path | None = None


@dataclass
class MessageResult:
    """What happened to one message of a batch.

    Attributes:
        input: the input file.
        output: the output file, or None when nothing was written.
        outcome: ``encrypted``, ``passed``, ``already-encrypted`` or ``failed``.
        status: 0, or the message's exit status.
        error: the one-line error message of a failure.
        report: the encryption report (recipients, cipher...) of a success.
        notices: what the library had to say about this message.
    """

    input: str
    output: str | None
    outcome: str
    status: int = 0
    error: str | None = None
    report: dict[str, Any] = field(default_factory=dict)
    notices: tuple[Notice, ...] = ()
    done: str | None = None

    @property
    def warnings(self) -> list[str]:
        """The notices' texts."""
        return [n.text for n in self.notices]

    def to_json(self) -> dict[str, Any]:
        """One ``--json`` record: input, output, outcome, status, error, where the input
        was moved (``done``, with --done-dir), then the report."""
        document: dict[str, Any] = {
            "input": self.input,
            "output": self.output,
            "outcome": self.outcome,
            "status": self.status,
            "error": self.error,
            "done": self.done,
        }
        document.update(self.report)
        document["action"] = self.outcome
        document.setdefault("recipients", [])
        return document


@dataclass
class BatchSummary:
    """Counts per outcome, the batch exit status, and the wall time."""

    counts: Counter[str] = field(default_factory=Counter)
    status: int = 0
    seconds: float = 0.0
    notices: list[Notice] = field(default_factory=list)  # about the batch as a whole

    @property
    def total(self) -> int:
        """Messages handled."""
        return sum(self.counts.values())

    def line(self) -> str:
        """``12 messages: 10 encrypted, 1 passed, 1 failed (exit 65) in 0.4 s``."""
        passed = self.counts["passed"] + self.counts["already-encrypted"]
        text = (
            f"{self.total} messages: {self.counts['encrypted']} encrypted, {passed} passed, "
            f"{self.counts['failed']} failed"
        )
        if self.counts["signed"]:  # rules mode: signed only, nobody to encrypt to
            text += f", {self.counts['signed']} signed only"
        if self.status:
            text += f" (exit {self.status})"
        return f"{text} in {self.seconds:.1f} s"


class _Stopped(BaseException):
    """Raised in a worker by SIGTERM (``Pool.terminate``) so atomic writes clean up."""


class _Worker:
    """One process's encryption state: recipients, signer or rules, loaded once."""

    def __init__(self, settings: BatchSettings) -> None:
        self.settings = settings
        recipients: list[Any] = []
        rules: Any = None
        if settings.rules is not None:
            from smimecli.rules.load import load_rules

            rules = load_rules(
                settings.rules,
                store_dir=settings.store_dir,
                store_passphrase=settings.store_passphrase,
            )
        else:
            from cryptography import x509

            from smimecli.cms.recipients import Recipient

            recipients = [
                Recipient(
                    x509.load_der_x509_certificate(spec.cert_der),
                    key_transport=spec.key_transport,
                    oaep_hash=spec.oaep_hash,
                    recipient_id=spec.recipient_id,
                )
                for spec in settings.recipients
            ]
        self.request = EncryptRequest(
            recipients=tuple(recipients),
            rules=rules,
            store_dir=settings.store_dir,
            envelope_recipients=settings.envelope_recipients,
            cipher=settings.cipher,
            convert_tnef=settings.convert_tnef,
            on_missing_cert=settings.on_missing_cert,
            signer=settings.signer.load() if settings.signer is not None else None,
        )

    def run(self, pair: tuple[Path, Path]) -> MessageResult:
        """Encrypt one message; never raises for a per-message failure."""
        from smimecli.files import atomic_output, open_input

        src_path, dst_path = pair
        global _BUSY
        _BUSY = True
        done_dir = self.settings.done_dir
        done: str | None = None
        try:
            # With --done-dir the input is moved away: its output must be on disk first.
            with (
                open_input(src_path) as src,
                atomic_output(dst_path, fsync=done_dir is not None) as dst,
            ):
                outcome = encrypt_one(self.request, src, dst)
            if done_dir is not None:
                _sync_entry(dst_path.parent)
                done = str(move_done(src_path, done_dir))
        except _Stopped:
            # The temporary output is gone (atomic_output cleaned up); leave quietly.
            remove_temporaries()
            os._exit(int(ExitStatus.TEMPFAIL))
        except SmimeError as exc:
            if done is None:
                _remove_stale(dst_path)
            return MessageResult(
                str(src_path),
                None if done is None else str(dst_path),
                "failed",
                int(exc.status),
                exc.message,
            )
        except Exception as exc:  # a bug must not stop the other messages
            _remove_stale(dst_path)
            return MessageResult(
                str(src_path),
                None,
                "failed",
                int(ExitStatus.SOFTWARE),
                f"internal error: {type(exc).__name__}: {exc} (a bug)",
            )
        finally:
            _BUSY = False
        report = outcome.to_json()
        del report["action"]
        return MessageResult(
            str(src_path), str(dst_path), outcome.action, 0, None, report, outcome.notices, done
        )


def _remove_stale(dst_path: Path) -> None:
    """A message that failed now must not leave the output of an earlier run under its
    name, looking like this run's: that output is removed (a regular file only)."""
    import stat

    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.lstat(dst_path).st_mode):
            os.unlink(dst_path)


def _sync_entry(folder: Path) -> None:
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
        _sync_entry(target.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(target)
        if isinstance(exc, OSError):
            raise output_error(target, exc) from exc
        raise
    return True


def _sync_folder(folder: Path) -> None:
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


_WORKER: _Worker | None = None
_BUSY = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _BUSY:
        raise _Stopped()  # unwinds through atomic_output, which removes the temporary file
    remove_temporaries()
    os._exit(int(ExitStatus.TEMPFAIL))


def _init_worker(settings: BatchSettings) -> None:
    global _WORKER
    # Ctrl-C reaches the whole process group: the parent decides and terminates the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _WORKER = _Worker(settings)


def _worker_main(conn: Any, settings: BatchSettings) -> None:
    """A worker process: (index, pair) in, (index, result) out, until None or EOF."""
    _init_worker(settings)
    assert _WORKER is not None
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break
        if task is None:
            break
        index, pair = task
        conn.send((index, _WORKER.run(pair)))
    os._exit(0)


# Messages handed to one worker at a time: one at work, one waiting in the pipe.
_IN_FLIGHT = 2


def _died(pair: tuple[Path, Path], exitcode: int | None) -> MessageResult:
    how = f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else "died"
    return MessageResult(
        str(pair[0]),
        None,
        "failed",
        int(ExitStatus.TEMPFAIL),
        f"the worker process encrypting this message {how} (out of memory?); "
        "nothing was written for it: retry later",
    )


def _run_pool(
    pairs: Sequence[tuple[Path, Path]],
    settings: BatchSettings,
    jobs: int,
    handle: Callable[[MessageResult], None],
) -> None:
    """Encrypt ``pairs`` in ``jobs`` worker processes, reporting results in input order.

    Each worker holds at most :data:`_IN_FLIGHT` messages, so when one dies (the OOM
    killer, ``kill -9``) the parent knows which message it was at: that message fails
    with 75 (retry later), its temporary file is removed, the others it held go back in
    the queue, and a new worker takes its place.
    """
    from collections import deque
    from multiprocessing.connection import wait

    ctx = _context()
    queue: deque[int] = deque(range(len(pairs)))
    results: dict[int, MessageResult] = {}
    workers: dict[Any, tuple[Any, deque[int]]] = {}  # connection -> (process, held)
    next_out = 0

    def start() -> None:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker_main, args=(child, settings), daemon=True)
        process.start()
        child.close()
        workers[parent] = (process, deque())

    def feed(conn: Any, up_to: int = _IN_FLIGHT) -> None:
        held = workers[conn][1]
        while queue and len(held) < up_to:
            index = queue.popleft()
            held.append(index)
            conn.send((index, pairs[index]))

    def receive(conn: Any) -> bool:
        try:
            index, result = conn.recv()
        except (EOFError, OSError):
            return False
        workers[conn][1].remove(index)
        results[index] = result
        return True

    try:
        for _ in range(jobs):
            start()
        for up_to in range(1, _IN_FLIGHT + 1):  # one each first: a short batch spreads
            for conn in list(workers):
                feed(conn, up_to)
        while next_out < len(pairs):
            sentinels = {process.sentinel: conn for conn, (process, _held) in workers.items()}
            for ready in wait([*workers, *sentinels]):
                conn = sentinels.get(ready, ready)
                if conn not in workers:
                    continue
                if ready is conn and receive(conn):
                    feed(conn)
                    continue
                # The worker is gone: collect what it finished, then judge what it held.
                while conn.poll() and receive(conn):
                    pass
                process, held = workers.pop(conn)
                process.join()
                conn.close()
                if held:
                    culprit = held.popleft()
                    results[culprit] = _died(pairs[culprit], process.exitcode)
                    target = pairs[culprit][1]
                    remove_dead_temporaries(target.parent, process.pid, target.name)
                    queue.extendleft(reversed(held))
                if queue:
                    start()
                    feed(next(reversed(workers)))
            while next_out in results:
                handle(results.pop(next_out))
                next_out += 1
        for conn in workers:
            with contextlib.suppress(OSError):
                conn.send(None)
    except BaseException:
        for process, _held in workers.values():
            process.terminate()  # SIGTERM: each busy worker removes its temporary file
        for process, _held in workers.values():
            process.join()
            remove_dead_temporaries(pairs[0][1].parent, process.pid)
        raise
    finally:
        for conn, (process, _held) in workers.items():
            process.join()
            conn.close()


def _context() -> Any:
    # Imported here, its only user: a small batch (one worker, in this process) never starts
    # a pool, and importing multiprocessing costs a few milliseconds of start-up.
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    for method in ("fork", "forkserver", "spawn"):
        if method in methods:
            return multiprocessing.get_context(method)
    return multiprocessing.get_context()  # pragma: no cover


def run_batch(
    pairs: Sequence[tuple[Path, Path]],
    settings: BatchSettings,
    *,
    jobs: int | None = None,
    on_result: Callable[[MessageResult], None] | None = None,
) -> BatchSummary:
    """Encrypt every (input, output) pair; failures are reported, never raised.

    Args:
        pairs: from :func:`plan_outputs`.
        settings: recipients or rules, shared by every message.
        jobs: worker processes; 1 runs in this process; None: :func:`default_jobs`.
        on_result: called in this process for each result, in input order (progress bars,
            JSON lines, the result's notices).

    Returns:
        the counts per outcome and the worst status (see the module docstring).
    """
    started = time.monotonic()
    summary = BatchSummary()

    def handle(result: MessageResult) -> None:
        summary.counts[result.outcome] += 1
        summary.status = worst_status((summary.status, result.status))
        if on_result is not None:
            on_result(result)

    if jobs is None:
        jobs = default_jobs(len(pairs))
    jobs = max(1, min(jobs, len(pairs)))
    if jobs == 1:
        worker = _Worker(settings)
        for pair in pairs:
            handle(worker.run(pair))
    else:
        _run_pool(pairs, settings, jobs, handle)
    if summary.counts["failed"] < summary.total:
        try:
            _sync_folder(pairs[0][1].parent)
        except IOFailedError as exc:
            summary.notices.append(Notice("sync-failed", exc.message))
            summary.status = worst_status((summary.status, int(exc.status)))
    summary.seconds = time.monotonic() - started
    return summary
