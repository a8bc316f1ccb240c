"""The one place where ``smimecli serve`` calls the encryption library.

The SMTP side asks two questions: what happens to this envelope recipient (at RCPT time),
and which copies of this message go to whom (at the end of DATA). Everything else the
daemon does is SMTP; keeping the library calls here means a change of the library's API
touches this file only.

The encryption is the one of ``encrypt --rules``: the rules are planned once per message
(:func:`smimecli.rules.plan.plan_recipients`) and the encrypted copy is written by
:func:`smimecli.encrypt.request.encrypt_planned`, whose notices reach the message's journal
record. Anything the library still logs on ``smimecli`` (a certificate file a ``dir``
source skips) while a message is being worked on is captured by the thread doing it (and
kept off stderr) for the journal too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smimecli.mime import HeaderBlock
    from smimecli.notices import Notice
    from smimecli.rules.decision import Plan, RecipientPlan
    from smimecli.rules.model import RuleSet
    from smimecli.sign.signers import Signer

ENCRYPT = "encrypt"
PASS = "pass"
REJECT = "reject"
TEMPFAIL = "tempfail"

# The code of a notice that reached the journal as a warning the library logged.
LOGGED = "logged"

_OUTCOMES = {"ENCRYPTED": ENCRYPT, "PASSED": PASS, "REJECTED": REJECT, "TEMPFAIL": TEMPFAIL}


@dataclass(frozen=True)
class RecipientDecision:
    """What the rules say about one envelope recipient."""

    address: str
    outcome: str  # encrypt | pass | reject | tempfail
    rule: str | None
    reason: str
    thumbprint: str | None = None
    key_transport: str | None = None  # rsa, rsa-oaep/sha256, ecdh

    def to_json(self) -> dict[str, Any]:
        return {
            "recipient": self.address,
            "rule": self.rule,
            "outcome": self.outcome,
            "thumbprint": self.thumbprint,
            "key_transport": self.key_transport,
        }


@dataclass(frozen=True)
class Copy:
    """One copy of a message for the relay: these recipients get the bytes of ``path``.

    ``kind`` is ``encrypted``, ``original`` (pass recipients), ``signed`` (pass
    recipients, when the rules sign their copy) or ``already-encrypted``; ``signed_by``
    the signer's thumbprint and subject when the copy is signed.
    """

    kind: str
    recipients: tuple[str, ...]
    path: str
    signed_by: Mapping[str, Any] | None = None


@dataclass
class Split:
    """What one message becomes: its copies, the decisions and the library's warnings."""

    copies: list[Copy]
    decisions: list[RecipientDecision]
    cipher: str | None = None
    message_id: str | None = None
    subject: str | None = None
    notices: list[Notice] = field(default_factory=list)
    refused: list[RecipientDecision] = field(default_factory=list)
    elapsed_ms: int = 0


class _Capture(logging.Filter):
    """Keeps the records a capturing thread logs on ``smimecli`` (and off the handlers)."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        sink: list[str] | None = getattr(self.local, "sink", None)
        if sink is None:
            return True
        if record.levelno >= logging.WARNING:
            sink.append(record.getMessage())
        return False


_CAPTURE = _Capture()
logging.getLogger("smimecli").addFilter(_CAPTURE)


@contextlib.contextmanager
def captured(sink: list[str]) -> Iterator[list[str]]:
    """Collect the ``smimecli`` warnings this thread logs while the block runs."""
    previous = getattr(_CAPTURE.local, "sink", None)
    _CAPTURE.local.sink = sink
    try:
        yield sink
    finally:
        _CAPTURE.local.sink = previous


def _decision(plan: RecipientPlan) -> RecipientDecision:
    return RecipientDecision(
        address=plan.address,
        outcome=_OUTCOMES[str(plan.outcome)],
        rule=plan.rule.name if plan.rule is not None else None,
        reason=plan.reason,
        thumbprint=plan.thumbprint,
        key_transport=plan.algorithm,
    )


class Engine:
    """A loaded rules file (and the store it uses), answering the daemon's two questions."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        # The store's SQLite connection and the sources' caches are shared: one plan at a
        # time (planning is lookups; the encryption itself runs outside the lock).
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, rules_path: Path, store_dir: Path | None, store_passphrase: bytes | None = None
    ) -> Engine:
        """Load and check a rules file and open every source (ConfigError when bad);
        ``store_passphrase`` decrypts the store's private keys (None: the environment's)."""
        from smimecli.rules.load import load_rules

        rules = load_rules(rules_path, store_dir=store_dir, store_passphrase=store_passphrase)
        with captured([]):
            rules.open_all()
        return cls(rules)

    def decide(self, address: str) -> RecipientDecision:
        """The outcome for one envelope recipient (RCPT time)."""
        from smimecli.rules.plan import plan_recipients

        with self._lock, captured([]):
            plan = plan_recipients(self.rules, [address])
        return _decision(plan.recipients[0])

    def split_and_encrypt(
        self, src_path: str, recipients: Sequence[str], spool_dir: str, sender: str | None = None
    ) -> Split:
        """Decide every recipient again and write the copies of one message.

        The encrypted copy (and the signed copy, when the rules sign the pass recipients'
        copy) goes to a new 0600 file in ``spool_dir`` (the caller removes it); the
        original copy is ``src_path`` itself. A recipient who is now refused (a
        certificate expired since RCPT, the rules were reloaded) is listed in ``refused``
        and no copy is written. ``sender``, the envelope sender, chooses the
        ``[[signer]]`` (see :func:`smimecli.encrypt.request.plan_signer`).

        Raises:
            SmimeError: a signer the rules ask for cannot be loaded (nothing is written:
                a copy the rules sign is never sent unsigned), or the encryption failed.
        """
        from smimecli.notices import Notice, merge_notices

        started = time.monotonic()
        notices: list[Notice] = []
        logged: list[str] = []
        with captured(logged):
            split = self._split(src_path, recipients, spool_dir, sender, notices)
        split.notices = list(merge_notices(notices, (Notice(LOGGED, t) for t in logged)))
        split.elapsed_ms = int((time.monotonic() - started) * 1000)
        return split

    def _split(
        self,
        src_path: str,
        recipients: Sequence[str],
        spool_dir: str,
        sender: str | None,
        notices: list[Notice],
    ) -> Split:
        from smimecli import mime
        from smimecli.rules.plan import plan_recipients

        with self._lock:
            plan = plan_recipients(self.rules, recipients)
        decisions = [_decision(r) for r in plan.recipients]
        notices.extend(plan.all_notices())
        with open(src_path, "rb") as src:
            headers, rest = mime.read_header_block(src)
            split = Split([], decisions, message_id=headers.get("Message-ID"))
            split.subject = headers.get("Subject")
            # "Already encrypted" means a CMS EnvelopedData body, not a Content-Type that
            # claims it: a plaintext body under that claim follows the rules.
            already, rest = mime.sniff_encrypted(headers, rest)
        if already:
            from smimecli.encrypt.request import ALREADY_ENCRYPTED
            from smimecli.notices import Notice

            notices.append(Notice("already-encrypted", ALREADY_ENCRYPTED))
            split.copies.append(Copy("already-encrypted", tuple(recipients), src_path))
            return split
        split.refused = [d for d in decisions if d.outcome in (REJECT, TEMPFAIL)]
        if split.refused:
            return split
        try:
            self._write_copies(plan, headers, src_path, spool_dir, sender, split, notices)
        except BaseException:
            for copy in split.copies:
                if copy.path != src_path:
                    with contextlib.suppress(OSError):
                        os.unlink(copy.path)
            raise
        return split

    def _write_copies(
        self,
        plan: Plan,
        headers: HeaderBlock,
        src_path: str,
        spool_dir: str,
        sender: str | None,
        split: Split,
        notices: list[Notice],
    ) -> None:
        """The encrypted copy, then the pass recipients' copy: each signed as
        ``encrypt --rules`` signs a message to that copy's recipients."""
        from smimecli.rules.decision import Outcome, Plan

        passed = Plan([r for r in plan.recipients if r.outcome is Outcome.PASSED])
        # Both signers first: one that cannot be loaded fails the message before anything
        # is written (a copy the rules sign is never sent unsigned).
        sealed = self._signer(Plan(plan.encrypted), headers, sender) if plan.encrypted else None
        clear = self._signer(passed, headers, sender) if passed.recipients else None
        prefix = out_prefix(src_path)
        if plan.encrypted:
            split.cipher = plan.cipher
            path, by = self._write(plan, src_path, spool_dir, prefix, sealed, notices)
            encrypted = tuple(r.address for r in plan.encrypted)
            split.copies.append(Copy("encrypted", encrypted, path, by))
        if not passed.recipients:
            return
        addresses = tuple(r.address for r in passed.recipients)
        if clear is None:
            split.copies.append(Copy("original", addresses, src_path))
            return
        path, by = self._write(passed, src_path, spool_dir, prefix, clear, notices)
        split.copies.append(Copy("signed", addresses, path, by))

    def _signer(self, plan: Plan, headers: HeaderBlock, sender: str | None) -> Signer | None:
        """The signer of a copy, loaded from the store once per engine (SIGHUP: again)."""
        from smimecli.encrypt.request import plan_signer

        with self._lock:
            return plan_signer(self.rules, plan, headers, sender=sender)

    def _write(
        self,
        plan: Plan,
        src_path: str,
        spool_dir: str,
        prefix: str,
        signer: Signer | None,
        notices: list[Notice],
    ) -> tuple[str, Mapping[str, Any] | None]:
        """One copy as ``encrypt --rules`` writes it: encrypted to the plan's recipients
        with a certificate (signed first by ``signer``), or signed only when it has none.
        Returns the new file and the signer's description."""
        from smimecli import mime
        from smimecli.encrypt.request import encrypt_planned

        fd, path = _spool_file(spool_dir, prefix)
        try:
            with os.fdopen(fd, "wb") as dst, open(src_path, "rb") as src:
                headers, rest = mime.read_header_block(src)
                outcome = encrypt_planned(plan, headers, rest, dst, signer=signer)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        notices.extend(outcome.notices)
        return path, outcome.signed_by


def _spool_file(spool_dir: str, prefix: str) -> tuple[int, str]:
    import tempfile

    # mkstemp creates the file 0600: message content is never readable by others.
    return tempfile.mkstemp(prefix=prefix, suffix=".eml", dir=spool_dir)


SPOOL_PREFIX = "smimecli-in-"
_SPOOL_NAME = re.compile(rf"{SPOOL_PREFIX}(\d+)-[a-z0-9_]+(?:-out-[a-z0-9_]+)?\.eml")


def spool_file(spool_dir: str) -> tuple[int, str]:
    """A new 0600 file for an incoming message: (file descriptor, path).

    Its name holds the daemon's pid (``smimecli-in-PID-XXXXXXXX.eml``; its encrypted
    copies ``smimecli-in-PID-XXXXXXXX-out-XXXXXXXX.eml``), so that a daemon starting
    after a ``kill -9`` knows which leftovers are no one's (:func:`remove_stale`).
    """
    return _spool_file(spool_dir, f"{SPOOL_PREFIX}{os.getpid()}-")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        # At start-up this process has written nothing yet: a file with its pid was left
        # by an earlier process that had the same pid (pid 1 in a container, say).
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: alive, another user's
    return True


def remove_stale(spool_dir: str) -> list[str]:
    """Remove the spool files (incoming and encrypted copies) of daemons that are dead.

    Only files of this naming are looked at, and only those whose pid is not running:
    several daemons may share one spool folder. Returns the names removed.
    """
    removed: list[str] = []
    try:
        names = os.listdir(spool_dir)
    except OSError:
        return removed
    for name in sorted(names):
        found = _SPOOL_NAME.fullmatch(name)
        if found is None or _alive(int(found.group(1))):
            continue
        try:
            os.unlink(os.path.join(spool_dir, name))
        except OSError:
            continue  # gone already, or another user's file in a shared folder
        removed.append(name)
    return removed


def out_prefix(src_path: str) -> str:
    """The name prefix of the encrypted copies of the message in ``src_path``.

    A worker process that dies leaves its half-written copy behind; the daemon finds it
    by this prefix (the worker's own clean-up never ran) and removes it.
    """
    return f"{Path(src_path).stem}-out-"


def remove_outputs(src_path: str, spool_dir: str) -> None:
    """Remove every copy written for the message in ``src_path`` (after a failure)."""
    for path in Path(spool_dir).glob(f"{out_prefix(src_path)}*.eml"):
        with contextlib.suppress(OSError):
            path.unlink()


# --- worker processes -----------------------------------------------------------------------

_WORKER: Engine | None = None


def init_worker(
    rules_path: Path, store_dir: Path | None, store_passphrase: bytes | None = None
) -> None:
    """ProcessPoolExecutor initializer: this worker's own engine (and store connection)."""
    global _WORKER
    _WORKER = Engine.load(rules_path, store_dir, store_passphrase)


def worker_split(
    src_path: str, recipients: Sequence[str], spool_dir: str, sender: str | None = None
) -> Split:
    """:meth:`Engine.split_and_encrypt` in a worker process."""
    assert _WORKER is not None, "init_worker did not run"
    return _WORKER.split_and_encrypt(src_path, recipients, spool_dir, sender)
