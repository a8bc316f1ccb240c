"""What the rules read from a message: its recipients and sender, and who signs it; and
:func:`encrypt_with_rules`, one message through a rules file in one call."""

from __future__ import annotations

import email.utils
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from smimecli.encrypt.request import Outcome as EncryptOutcome
    from smimecli.mime import HeaderBlock
    from smimecli.rules.decision import Plan
    from smimecli.rules.model import RuleSet


def header_recipients(headers: HeaderBlock) -> list[str]:
    """The addresses of the To, Cc and Bcc headers (RFC 5322 section 3.6.3)."""
    values: list[str] = []
    for name in ("To", "Cc", "Bcc"):
        values.extend(headers.get_all(name))
    try:
        pairs = email.utils.getaddresses(values)
    except RecursionError:
        # The address parser recurses once per nested comment "(": a hostile header with
        # thousands of them is bad input (65), not a crash of the gateway.
        from smimecli.errors import DataError

        raise DataError(
            "To/Cc/Bcc header nests comments too deeply to read; the message is malformed"
        ) from None
    return [address for _, address in pairs if "@" in address]


def encrypt_with_rules(
    src: BinaryIO,
    dst: BinaryIO,
    rules_path: Path,
    envelope_recipients: list[str] | None,
    store_dir: Path | None,
    on_missing_cert: str | None = None,
    *,
    store_passphrase: bytes | None = None,
) -> EncryptOutcome:
    """Encrypt one message by a rules file: :func:`smimecli.encrypt.request.encrypt_one`
    with an :class:`~smimecli.encrypt.request.EncryptRequest` naming the file
    (``store_passphrase`` decrypts the store's keys for the rules' signers).

    Raises:
        ConfigError: a bad rules file or an unreadable source (78).
        RejectError: a ``reject`` recipient has no usable certificate (67).
        TempFailError: a ``tempfail`` recipient has no usable certificate (75).
    """
    from smimecli.encrypt.request import EncryptRequest, encrypt_one

    request = EncryptRequest(
        rules=Path(rules_path),
        store_dir=store_dir,
        envelope_recipients=None if envelope_recipients is None else tuple(envelope_recipients),
        on_missing_cert=on_missing_cert,
        store_passphrase=store_passphrase,
    )
    return encrypt_one(request, src, dst)


def choose_signer(rules: RuleSet, plan: Plan, headers: HeaderBlock) -> tuple[str, str] | None:
    """Who signs the message, as (selector, where it was asked for): the ``sign`` of the
    first rule in file order that matched a recipient, else the first ``[[signer]]`` whose
    sender pattern matches the From: address; None: no signature."""
    asked = [r.rule for r in plan.recipients if r.rule is not None and r.rule.sign]
    if asked:
        rule = min(asked, key=lambda r: r.index)
        assert rule.sign is not None
        return rule.sign, rules.where(rule, "sign")
    if not rules.signers:
        return None
    for sender in from_addresses(headers):
        found = rules.signer_for_sender(sender)
        if found is not None:
            line = f":{found.line}" if found.line else ""
            return found.signer, f"{rules.path}{line}: signer #{found.index + 1}"
    return None


def from_addresses(headers: HeaderBlock) -> list[str]:
    """The addresses of the From: header."""
    try:
        pairs = email.utils.getaddresses(headers.get_all("From"))
    except RecursionError:
        return []
    return [address for _, address in pairs if "@" in address]
