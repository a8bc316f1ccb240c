"""The decision for one message, as values: what happens to each recipient and why.

:func:`smimecli.rules.plan.plan_recipients` makes a :class:`Plan`; ``encrypt --rules``,
batch mode, ``serve`` and ``rules test`` read it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from smimecli.errors import RejectError, TempFailError
from smimecli.notices import Notice

if TYPE_CHECKING:
    from cryptography import x509

    from smimecli.cms.envelope import Recipient
    from smimecli.rules.model import Rule


class Outcome(StrEnum):
    """What happens to one recipient."""

    ENCRYPTED = "ENCRYPTED"
    PASSED = "PASSED"
    REJECTED = "REJECTED"
    TEMPFAIL = "TEMPFAIL"


@dataclass(frozen=True)
class Turndown:
    """A certificate the source offered that was not chosen, and why."""

    subject: str
    thumbprint: str
    not_after: dt.datetime
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "thumbprint": self.thumbprint,
            "not_after": self.not_after.isoformat(),
            "reasons": list(self.reasons),
        }


@dataclass
class RecipientPlan:
    """The decision for one recipient."""

    address: str
    rule: Rule | None
    outcome: Outcome
    reason: str
    cert: x509.Certificate | None = None
    thumbprint: str | None = None
    key_transport: str | None = None
    oaep_hash: str | None = None
    turned_down: list[Turndown] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """The notices' texts."""
        return [n.text for n in self.notices]

    @property
    def key_kind(self) -> str | None:
        """``rsa`` or ``ec`` for the chosen certificate."""
        if self.cert is None:
            return None
        from cryptography.hazmat.primitives.asymmetric import ec

        return "ec" if isinstance(self.cert.public_key(), ec.EllipticCurvePublicKey) else "rsa"

    @property
    def algorithm(self) -> str | None:
        """How the content key reaches this recipient: ``rsa``, ``rsa-oaep/sha256``, ``ecdh``."""
        if self.cert is None:
            return None
        if self.key_kind == "ec":
            return "ecdh"
        if self.key_transport == "rsa-oaep":
            return f"rsa-oaep/{self.oaep_hash}"
        return "rsa"

    def to_json(self) -> dict[str, Any]:
        cert = None
        if self.cert is not None:
            from smimecli.certs.names import display_name

            cert = {
                "subject": display_name(self.cert.subject),
                "thumbprint": self.thumbprint,
                "not_after": self.cert.not_valid_after_utc.isoformat(),
            }
        return {
            "recipient": self.address,
            "rule": self.rule.name if self.rule else None,
            "outcome": str(self.outcome),
            "reason": self.reason,
            "certificate": cert,
            "key_transport": self.key_transport if self.cert is not None else None,
            "oaep_hash": self.oaep_hash if self.key_transport == "rsa-oaep" else None,
            "algorithm": self.algorithm,
            "turned_down": [t.to_json() for t in self.turned_down],
            "warnings": list(self.warnings),
        }


@dataclass
class Plan:
    """The decision for one message."""

    recipients: list[RecipientPlan]
    cipher: str | None = None
    cipher_rule: Rule | None = None
    cipher_reason: str | None = None  # why cipher = "auto" chose this cipher
    convert_tnef: bool = False
    notices: list[Notice] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """The notices' texts."""
        return [n.text for n in self.notices]

    def all_notices(self) -> list[Notice]:
        """Every recipient's notices, then the message's."""
        return [n for r in self.recipients for n in r.notices] + self.notices

    @property
    def encrypted(self) -> list[RecipientPlan]:
        return [r for r in self.recipients if r.outcome is Outcome.ENCRYPTED]

    @property
    def decision(self) -> str:
        """``reject``, ``tempfail``, ``encrypt`` or ``pass`` for the whole message."""
        outcomes = {r.outcome for r in self.recipients}
        if Outcome.REJECTED in outcomes:
            return "reject"
        if Outcome.TEMPFAIL in outcomes:
            return "tempfail"
        return "encrypt" if Outcome.ENCRYPTED in outcomes else "pass"

    def raise_for_policy(self) -> None:
        """RejectError (67) or TempFailError (75) when a policy refuses the message."""
        decision = self.decision
        if decision == "reject":
            bad = [r for r in self.recipients if r.outcome is Outcome.REJECTED]
            raise RejectError(
                f"no usable certificate for {_addresses(bad)} (rule {_rules(bad)}, "
                f"on_missing_cert = reject): {_why(bad[0])}; nothing was written"
            )
        if decision == "tempfail":
            bad = [r for r in self.recipients if r.outcome is Outcome.TEMPFAIL]
            raise TempFailError(
                f"no usable certificate for {_addresses(bad)} (rule {_rules(bad)}, "
                f"on_missing_cert = tempfail): {_why(bad[0])}; nothing was written, retry later"
            )

    def envelope_recipients(self) -> list[Recipient]:
        """The CMS recipients of the enveloped message, each with its rule's key transport."""
        from smimecli.cms.envelope import Recipient

        return [
            Recipient(
                cert=r.cert,
                key_transport=r.key_transport or "rsa",
                oaep_hash=r.oaep_hash or "sha256",
            )
            for r in self.encrypted
            if r.cert is not None
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "cipher": self.cipher if self.encrypted else None,
            "cipher_rule": self.cipher_rule.name if self.cipher_rule else None,
            "cipher_reason": self.cipher_reason if self.encrypted else None,
            "convert_tnef": self.convert_tnef,
            "recipients": [r.to_json() for r in self.recipients],
            "warnings": list(self.warnings),
        }


def _addresses(recipients: Sequence[RecipientPlan]) -> str:
    return ", ".join(r.address for r in recipients)


def _why(recipient: RecipientPlan) -> str:
    return recipient.reason.rsplit("; on_missing_cert = ", 1)[0]


def _rules(recipients: Sequence[RecipientPlan]) -> str:
    names = dict.fromkeys(repr(r.rule.name) for r in recipients if r.rule is not None)
    return ", ".join(names)
