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

The worker processes and their supervision are in :mod:`smimecli.encrypt.pool`, the files
(inputs, outputs, ``--done-dir``) in :mod:`smimecli.encrypt.spool`. The notices of a message
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

import os
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
from smimecli.encrypt.spool import (
    expand_inputs,
    move_done,
    plan_outputs,
    remove_stale_output,
    sync_entry,
    sync_folder,
)
from smimecli.errors import ExitStatus, IOFailedError, SmimeError
from smimecli.files import remove_temporaries
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
                sync_entry(dst_path.parent)
                done = str(move_done(src_path, done_dir))
        except _Stopped:
            # The temporary output is gone (atomic_output cleaned up); leave quietly.
            remove_temporaries()
            os._exit(int(ExitStatus.TEMPFAIL))
        except SmimeError as exc:
            if done is None:
                remove_stale_output(dst_path)
            return MessageResult(
                str(src_path),
                None if done is None else str(dst_path),
                "failed",
                int(exc.status),
                exc.message,
            )
        except Exception as exc:  # a bug must not stop the other messages
            remove_stale_output(dst_path)
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


_BUSY = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _BUSY:
        raise _Stopped()  # unwinds through atomic_output, which removes the temporary file
    remove_temporaries()
    os._exit(int(ExitStatus.TEMPFAIL))


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
        try:
            worker = _Worker(settings)
        except SmimeError as exc:  # as a worker process that cannot start: each message fails
            for source, _target in pairs:
                error = f"{exc.message}; nothing was written for it"
                handle(MessageResult(str(source), None, "failed", int(exc.status), error))
        else:
            for pair in pairs:
                handle(worker.run(pair))
    else:
        from smimecli.encrypt.pool import run_pool

        run_pool(pairs, settings, jobs, handle)
    if summary.counts["failed"] < summary.total:
        try:
            sync_folder(pairs[0][1].parent)
        except IOFailedError as exc:
            summary.notices.append(Notice("sync-failed", exc.message))
            summary.status = worst_status((summary.status, int(exc.status)))
    summary.seconds = time.monotonic() - started
    return summary
