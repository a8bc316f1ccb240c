"""Judging the signatures a decrypted message had: around the envelope and inside it.

``smimecli decrypt`` and ``inspect`` verify them the way ``smimecli verify`` does, against
the store's certificates. The input is read once, to decrypt: :class:`Recorder` keeps a
copy of what passes (standard input, the plaintext) in a spool, for the checks afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smimecli.certs.keys import PrivateKey
from smimecli.cms.unwrap import KeyIdentity
from smimecli.decrypt.inspect import InspectReport
from smimecli.decrypt.keys import KeyLookup, StoreFinder
from smimecli.decrypt.message import DecryptResult, decrypt_message
from smimecli.notices import Notice, merge_notices
from smimecli.verify.trust import store_trust
from smimecli.verify.verdicts import Verdict


@dataclass
class JudgedDecrypt:
    """A message decrypted and its signatures judged.

    Attributes:
        result: what :func:`decrypt_message` returned.
        verdicts: the signature around the envelope, then the one inside, if any.
    """

    result: DecryptResult
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def notices(self) -> tuple[Notice, ...]:
        """The decryption's notices, then one ``signature-*`` notice per verdict."""
        return merge_notices(self.result.notices, [v.notice() for v in self.verdicts])


def decrypt_and_judge(
    src: Any,
    dst: Any,
    key: PrivateKey | KeyIdentity | Iterable[KeyIdentity] | None = None,
    *,
    input: Path | None,
    store_dir: Path,
    key_lookup: KeyLookup | None = None,
    store_finder: StoreFinder | None = None,
    what: str = "the message",
) -> JudgedDecrypt:
    """Decrypt ``src`` into ``dst`` (:func:`decrypt_message`), then verify the signatures
    around the envelope and inside it against the store in ``store_dir``.

    ``src`` is the file ``input``, or (``input`` None) a :class:`Recorder` of standard
    input; ``dst`` is a :class:`Recorder` of the output, whose copy of the plaintext shows a
    signature inside.
    """
    layers: list[Any] = []
    result = decrypt_message(
        src,
        dst,
        key,
        key_lookup=key_lookup,
        what=what,
        store_finder=store_finder,
        on_signature_layers=layers.extend,
    )
    verdicts = judge_signatures(src, input, dst.copy, bool(layers), what, store_dir)
    return JudgedDecrypt(result, verdicts)


@dataclass
class JudgedInspect:
    """A message described (:func:`inspect_message`) and the signature around its
    envelope, if any, judged."""

    report: InspectReport
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def notices(self) -> tuple[Notice, ...]:
        """One ``signature-*`` notice per verdict."""
        return merge_notices([v.notice() for v in self.verdicts])


def inspect_and_judge(
    src: Any, input: Path | None, *, store_dir: Path, what: str = "the message"
) -> JudgedInspect:
    """What ``smimecli inspect`` runs: describe ``src`` with the store in ``store_dir``
    naming each recipient's certificate, then verify the signature around the envelope.

    ``src`` is the file ``input``, or (``input`` None) a seekable copy of standard input.
    """
    from smimecli.decrypt.inspect import inspect_message
    from smimecli.decrypt.keys import open_store_if_exists, store_finder

    store = open_store_if_exists(store_dir)
    try:
        report = inspect_message(src, store_finder=store_finder(store), what=what)
    finally:
        if store is not None:
            store.close()
    verdicts = judge_outer(src, input, what, store_dir) if report.signature_layers else []
    return JudgedInspect(report, verdicts)


class Recorder:
    """A stream whose reads or writes pass through, with a copy of the first
    ``MAX_MESSAGE + 1`` bytes kept in ``copy`` (a spool: memory stays flat), for the
    signature checks after decryption. ``limit=-1``: the stream is its own copy."""

    def __init__(self, stream: Any, copy: Any, limit: int | None = None) -> None:
        from smimecli.verify.message import MAX_MESSAGE

        self.stream = stream
        self.copy = copy
        self.limit = MAX_MESSAGE + 1 if limit is None else limit
        self.kept = 0

    def _keep(self, data: bytes | bytearray | memoryview) -> None:
        if 0 <= self.kept < self.limit:
            chunk = bytes(data[: self.limit - self.kept])
            self.copy.write(chunk)
            self.kept += len(chunk)

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.stream.read(size)
        self._keep(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data: bytes = self.stream.readline(size)
        self._keep(data)
        return data

    def write(self, data: bytes | bytearray | memoryview) -> int:
        written: int = self.stream.write(data)
        self._keep(data)
        return written

    def flush(self) -> None:
        self.stream.flush()


def judge_outer(src: Any, input: Path | None, name: str, store_dir: Path) -> list[Verdict]:
    """inspect: verify each signature layer around the envelope of ``src`` (read again from
    the file ``input``; None: ``src`` is a seekable copy of standard input)."""
    from smimecli.files import open_input
    from smimecli.verify.message import MAX_MESSAGE
    from smimecli.verify.verdicts import judge_layers

    trust = store_trust(store_dir)
    if input is None:
        src.seek(0)
        data = src.read(MAX_MESSAGE + 1)
    else:
        with open_input(input) as again:
            data = again.read(MAX_MESSAGE + 1)
    return judge_layers(
        data,
        "outer",
        roots=trust.roots,
        intermediates=trust.intermediates,
        extra_certificates=trust.every,
        what=name,
    )


def judge_signatures(
    src: Any, input: Path | None, plaintext_copy: Any, outer: bool, name: str, store_dir: Path
) -> list[Verdict]:
    """Verify the signature around the envelope (``outer``: the input had one) and the one
    inside (a signed plaintext), with the store in ``store_dir``; a verdict each."""
    from smimecli.verify.verdicts import is_signed, judge, judge_layers

    plaintext_copy.seek(0)
    inner = is_signed(plaintext_copy.read(1 << 20))
    if not outer and not inner:
        return []
    store = store_trust(store_dir)
    trust: dict[str, Any] = {
        "roots": store.roots,
        "intermediates": store.intermediates,
        "extra_certificates": store.every,
        "what": name,
    }
    verdicts = []
    if outer:
        verdicts.extend(judge_layers(input_copy(src, input), "outer", **trust))
    if inner:
        plaintext_copy.seek(0)
        verdicts.append(judge(plaintext_copy.read(), "inner", **trust))
    return verdicts


def input_copy(src: Any, input: Path | None) -> bytes:
    """The input again (up to the size verify reads): its file, or the recorded stdin."""
    from smimecli.files import open_input
    from smimecli.verify.message import MAX_MESSAGE

    if isinstance(src, Recorder):
        src.copy.seek(0)
        return bytes(src.copy.read())
    assert input is not None
    with open_input(input) as again:
        return bytes(again.read(MAX_MESSAGE + 1))
