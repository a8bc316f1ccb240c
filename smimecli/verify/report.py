"""judge_message: a signed message judged as ``smimecli verify`` reports it.

The signature (:func:`smimecli.verify.message.verify_message`), the trust in its signer
(:func:`smimecli.cms.trust.evaluate_trust`: a chain to the given roots, valid at signing
time and now), and whether the signer's certificate names the From: address.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from cryptography import x509

from smimecli.mime import PKCS7_TYPES, HeaderBlock, parse_header_block
from smimecli.notices import Notice
from smimecli.text import shown_list
from smimecli.verify.message import ENCRYPTED_SMIME_TYPES, MessageSignature, verify_message

__all__ = ["VerifyReport", "judge_message"]


@dataclass
class VerifyReport:
    """A signed message judged: the signature, the trust in its signer, the From address.

    Attributes:
        signature: the message taken apart and its signature checked.
        trust: the chain of the first signer (None when the signature does not hold).
        from_addresses: the addresses of the ``From:`` field.
        notices: things worth saying that do not fail the check: ``from-mismatch`` (the
            signer's certificate does not name the From: address), ``encrypted-content``
            (the signed content is an encrypted message), ``weak-key`` (an RSA signer key
            of fewer than 2048 bits).
        nested: ``encrypted`` when the signed content is itself an encrypted entity.
    """

    signature: MessageSignature
    trust: Any
    from_addresses: list[str]
    notices: list[Notice] = field(default_factory=list)
    nested: str | None = None

    @property
    def warnings(self) -> list[str]:
        """The text of each notice (``--json`` shows them as ``warnings``)."""
        return [notice.text for notice in self.notices]

    @property
    def status(self) -> str:
        """``valid`` (signature holds, signer trusted), ``untrusted`` or ``invalid``."""
        if not self.signature.valid:
            return "invalid"
        return "valid" if self.trust is not None and self.trust.trusted else "untrusted"

    @property
    def reasons(self) -> list[str]:
        """Why the message is not valid and trusted; empty when it is."""
        if not self.signature.valid:
            return self.signature.check.problems
        return list(self.trust.reasons) if self.trust is not None else []

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (``verify --json``)."""
        from smimecli.certs import names

        signer = self.signature.check.signer
        cert = signer.signer
        time = signer.signing_time
        return {
            "status": self.status,
            "form": self.signature.form,
            "nested": self.nested,
            "signer": None
            if cert is None
            else {
                "subject": names.display_name(cert.subject),
                "issuer": names.display_name(cert.issuer),
                "thumbprint": names.thumbprint(cert),
                "emails": names.emails(cert),
            },
            "from": self.from_addresses,
            "signing_time": None if time is None else time.astimezone(dt.UTC).isoformat(),
            "digest_algorithm": signer.digest_algorithm,
            "signature_algorithm": signer.signature_algorithm,
            "capabilities": signer.capabilities,
            "chain": []
            if self.trust is None
            else [names.display_name(c.subject) for c in self.trust.chain],
            "reasons": self.reasons,
            "warnings": self.warnings,
        }


def _from_addresses(headers: HeaderBlock) -> list[str]:
    from email.utils import getaddresses

    values = headers.get_all("From")
    return [addr.strip().lower() for _name, addr in getaddresses(values) if "@" in addr]


_NESTED_HEADER_REACH = 1 << 20  # the signed entity's header block is looked for this far


def _nested(entity: bytes) -> str | None:
    head, _offset = parse_header_block(entity)
    ctype = head.content_type()
    smime_type = (ctype.param("smime-type") or "").strip().lower()
    if ctype.mime_type in PKCS7_TYPES and smime_type in ENCRYPTED_SMIME_TYPES:
        return "encrypted"
    return None


def _weak_key(cert: x509.Certificate) -> list[Notice]:
    """A ``weak-key`` notice for an RSA key that is trusted but short of 2048 bits."""
    from smimecli.cms.trust import MIN_RSA_BITS, WEAK_RSA_BITS, rsa_bits

    bits = rsa_bits(cert)
    if bits is None or not MIN_RSA_BITS <= bits < WEAK_RSA_BITS:
        return []
    text = (
        f"the signer's RSA key has only {bits} bits (fewer than {WEAK_RSA_BITS}): "
        "such a signature can be forged by a well-funded attacker"
    )
    return [Notice("weak-key", text)]


def judge_message(
    src: BinaryIO | bytes,
    *,
    roots: Iterable[x509.Certificate],
    intermediates: Iterable[x509.Certificate] = (),
    extra_certificates: Iterable[x509.Certificate] = (),
    now: dt.datetime | None = None,
    what: str = "the message",
) -> VerifyReport:
    """Verify a signed message and judge its signer: signature and digest
    (:func:`verify_message`), the chain to ``roots`` through the message's certificates and
    ``intermediates`` at the signing time and now, emailProtection, and whether the signer's
    certificate names the ``From:`` address (a warning when it does not).

    Raises:
        DataError: not a signed message (an encrypted one says to decrypt first), damaged.
    """
    from smimecli.certs import names
    from smimecli.cms.trust import evaluate_trust

    signature = verify_message(src, extra_certificates=extra_certificates, now=now, what=what)
    report = VerifyReport(signature, None, _from_addresses(signature.headers))
    report.nested = _nested(bytes(signature.signed_part[:_NESTED_HEADER_REACH]))
    if report.nested == "encrypted":
        report.notices.append(
            Notice(
                "encrypted-content",
                "the signed content is an encrypted message: "
                "decrypt the content (verify -o) to read it",
            )
        )
    signer = signature.check.signer
    if not signature.valid or signer.signer is None:
        return report
    cert = signer.signer
    report.trust = evaluate_trust(
        cert,
        roots,
        [*signature.check.certificates, *intermediates],
        signing_time=signer.signing_time,
        now=now,
    )
    report.notices += _weak_key(cert)
    own = set(names.emails(cert))
    if report.from_addresses and not own.intersection(report.from_addresses):
        named = shown_list(sorted(own), empty="no address")
        report.notices.append(
            Notice(
                "from-mismatch",
                f"the signer's certificate names {named}, not the From: address "
                f"{', '.join(report.from_addresses)}",
            )
        )
    return report
