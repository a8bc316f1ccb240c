"""The signatures ``decrypt`` meets, verified: outside the envelope and inside it.

Outlook and Thunderbird sign, then encrypt (the signature is inside the envelope); some
gateways encrypt, then sign (outside). ``decrypt`` checks both the way ``verify`` does
(:func:`smimecli.verify.report.judge_message`: digest, signature, the signer's chain to the
store's roots) and says so in one warning line per signature. With ``--require-signature``
the message must carry one that holds and is trusted: 65 when none holds or there is none,
77 when a valid one comes from a signer that is not trusted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from smimecli.errors import AuthError, DataError, SmimeError
from smimecli.notices import Notice

__all__ = ["Verdict", "judge", "judge_layers", "require_signature"]

MAX_LAYERS = 8  # as many as decrypt unwraps: hostile input must not loop without end
PLACES = {"outer": "outside the envelope", "inner": "inside the envelope"}


@dataclass
class Verdict:
    """One signature judged: ``valid``, ``untrusted`` or ``invalid``."""

    place: str  # "outer" or "inner"
    status: str
    signer: str
    reasons: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one warning line that reports it."""
        head = f"the signature {PLACES[self.place]} (signed by {self.signer})"
        why = "; ".join(self.reasons)
        if self.status == "valid":
            return f"{head} is valid and trusted"
        if self.status == "untrusted":
            return f"{head} is valid but the signer is not trusted: {why}"
        return f"{head} does not hold: {why}"

    def notice(self) -> Notice:
        """The verdict as a notice: ``signature-valid``, ``signature-untrusted`` or
        ``signature-invalid``, with :meth:`line` as its text."""
        return Notice(f"signature-{self.status}", self.line())

    def to_json(self) -> dict[str, Any]:
        return {
            "place": self.place,
            "status": self.status,
            "signer": self.signer,
            "reasons": list(self.reasons),
        }


def is_signed(data: bytes) -> bool:
    """A message whose top-level entity is an S/MIME signature."""
    from smimecli.certs.harvest import is_signed_mail

    return is_signed_mail(data)


def judge(
    data: bytes,
    place: str,
    *,
    roots: Iterable[Any],
    intermediates: Iterable[Any] = (),
    extra_certificates: Iterable[Any] = (),
    what: str = "the message",
) -> Verdict:
    """Verify a signed message and judge its signer; a damaged signature is ``invalid``."""
    from smimecli.certs.names import display_name
    from smimecli.verify.message import MAX_MESSAGE
    from smimecli.verify.report import judge_message

    if len(data) > MAX_MESSAGE:
        limit = f"larger than {MAX_MESSAGE >> 20} MiB, too large to verify"
        return Verdict(place, "invalid", "someone", [limit])
    try:
        report = judge_message(
            data,
            roots=roots,
            intermediates=intermediates,
            extra_certificates=extra_certificates,
            what=what,
        )
    except DataError as exc:
        return Verdict(place, "invalid", "someone", [exc.message])
    cert = report.signature.check.signer.signer
    signer = display_name(cert.subject) if cert is not None else "someone"
    return Verdict(place, report.status, signer, report.reasons)


def judge_layers(
    data: bytes,
    place: str,
    *,
    roots: Iterable[Any],
    intermediates: Iterable[Any] = (),
    extra_certificates: Iterable[Any] = (),
    what: str = "the message",
) -> list[Verdict]:
    """Every signature layer of a signed message, outermost first, each judged as
    :func:`judge` does: a signed message signed again (Dave signs what Alice signed) has
    two verdicts, so a broken inner layer is not hidden by a good outer one."""
    from smimecli.verify.message import unsigned_message, verify_message

    trust: dict[str, Any] = {
        "roots": list(roots),
        "intermediates": list(intermediates),
        "extra_certificates": list(extra_certificates),
    }
    verdicts = [judge(data, place, **trust, what=what)]
    for _ in range(MAX_LAYERS - 1):
        try:
            signature = verify_message(
                data, extra_certificates=trust["extra_certificates"], what=what
            )
        except DataError:
            break
        data = unsigned_message(signature)
        if not is_signed(data):
            break
        verdicts.append(judge(data, place, **trust, what=what))
    return verdicts


def require_signature(verdicts: list[Verdict], what: str) -> None:
    """``--require-signature``: raise as ``verify`` exits unless a signature holds and is
    trusted and none fails.

    Raises:
        DataError: not signed, or a signature does not hold (65).
        AuthError: a valid signature by a signer that is not trusted (77).
    """
    error: SmimeError
    if not verdicts:
        raise DataError(
            f"{what} is not signed (--require-signature): nothing was written; ask the "
            "sender to sign, or decrypt without --require-signature"
        )
    for verdict in verdicts:
        if verdict.status == "invalid":
            error = DataError(f"{what}: {verdict.line()}; nothing was written")
            raise error
    for verdict in verdicts:
        if verdict.status == "untrusted":
            raise AuthError(
                f"{what}: {verdict.line()}; nothing was written (add its root with "
                "'certs import --store-name root')"
            )
