"""The decision for one message: recipient -> rule -> certificate -> outcome.

Shared by ``encrypt --rules``, ``rules test`` and batch mode. For each recipient the first
rule in file order whose pattern matches decides; recipients no rule matches are left alone.
The rule's source is asked for the recipient's certificates, each is checked with the
usable test (:func:`smimecli.certs.usable.problems`) and among the usable ones the one valid
the longest wins; the others are kept with the reasons they were turned down, so that
``rules test`` can say why.

Message outcome:

- every recipient with a certificate becomes a recipient of one enveloped message; the
  content cipher is that of the first rule in file order that found a certificate; each
  recipient keeps its own rule's key transport and OAEP hash;
- a recipient without a certificate follows its rule's ``on_missing_cert`` (overridden by
  ``encrypt --on-missing-cert``): ``pass`` lets the message go, ``reject`` raises
  :class:`~smimecli.errors.RejectError` (67), ``tempfail``
  :class:`~smimecli.errors.TempFailError` (75), before anything is written. When recipients
  ask for both, ``reject`` wins: a retry cannot cure a permanent refusal;
- nobody has a certificate: the output is the input, byte for byte;
- an input that is already encrypted passes unchanged, whatever the policy (no plaintext
  can leak from it);
- TNEF conversion happens when any rule that found a certificate for this message asks for
  it (conversion never loses content, so one rule asking is enough).
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from smimecli.errors import DataError, RejectError, TempFailError
from smimecli.notices import Notice
from smimecli.rules.model import (
    AUTO_CIPHER,
    Rule,
    RuleSet,
    SourceSpec,
    address_problem,
    check_any_source,
    example_address,
    normalize_address,
    pattern_regex,
    shadow_warning,
    shadowed_patterns,
)

if TYPE_CHECKING:
    from cryptography import x509

    from smimecli.cms.envelope import Recipient
    from smimecli.encrypt.request import Outcome as EncryptOutcome
    from smimecli.mime import HeaderBlock

EXPIRY_WARNING_DAYS = 30


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


# --- choosing certificates ------------------------------------------------------------------


def _now(at: dt.datetime | None) -> dt.datetime:
    return at if at is not None else dt.datetime.now(dt.UTC)


def choose_certificate(
    rules: RuleSet, rule: Rule, address: str, *, at: dt.datetime | None = None
) -> tuple[Any | None, list[Turndown], str]:
    """Pick the rule's certificate for one address (usable, then valid the longest).

    Returns:
        (the chosen source entry or None, the certificates turned down with their reasons,
        a one-line reason: why this certificate, or why none).
    """
    from smimecli.certs.formats import is_ca
    from smimecli.certs.names import display_name
    from smimecli.certs.usable import best, problems

    at = _now(at)
    source = rules.source(rule)
    spec = rule.source
    if rule.match == "any":
        check_any_source(rules, rule)
        if spec.kind == "store" and spec.thumbprint:
            candidates = _store_by_thumbprint(rules, spec)
        else:
            candidates = [e for e in source.certificates() if not is_ca(e.cert)]
    else:
        candidates = list(source.for_address(address))
        if not candidates and spec.kind != "store":
            # A file source is small: offer its certificates so that the reasons say
            # "does not name ..." instead of a bare "not found".
            candidates = [e for e in source.certificates() if not is_ca(e.cert)]
    if spec.thumbprint:
        candidates = [e for e in candidates if e.thumbprint.startswith(spec.thumbprint)]
    if not candidates:
        if spec.thumbprint:
            return None, [], f"{spec.describe()} holds no certificate {spec.thumbprint}"
        where = spec.describe()
        return None, [], f"no certificate for {address} in {where}"
    roots, intermediates = rules.trust() if rule.require_trusted else ([], [])
    usable: list[Any] = []
    turned_down: list[Turndown] = []
    seen: set[str] = set()
    for entry in candidates:
        print_ = entry.thumbprint
        if print_ in seen:
            continue
        seen.add(print_)
        reasons = problems(
            entry.cert,
            email=address if rule.match == "email" else None,
            at=at,
            roots=roots,
            intermediates=intermediates,
            require_trusted=rule.require_trusted,
        )
        if reasons:
            turned_down.append(
                Turndown(
                    subject=display_name(entry.cert.subject),
                    thumbprint=print_,
                    not_after=entry.cert.not_valid_after_utc,
                    reasons=tuple(reasons),
                )
            )
        else:
            usable.append(entry)
    if not usable:
        detail = "; ".join(f"{t.thumbprint[:8]} {', '.join(t.reasons)}" for t in turned_down)
        return None, turned_down, f"no usable certificate in {spec.describe()} ({detail})"
    chosen = best(usable)
    for entry in usable:
        if entry is chosen:
            continue
        turned_down.append(
            Turndown(
                subject=display_name(entry.cert.subject),
                thumbprint=entry.thumbprint,
                not_after=entry.cert.not_valid_after_utc,
                reasons=("usable, but another certificate is valid longer",),
            )
        )
    if len(usable) > 1:
        how = f"valid the longest of {len(usable)} usable certificates in"
    elif rule.match == "any":
        how = "the certificate of"
    else:
        how = "the usable certificate naming it in"
    return chosen, turned_down, f"{how} {spec.describe()}"


def _store_by_thumbprint(rules: RuleSet, spec: SourceSpec) -> list[Any]:
    """The end-entity certificates of a store source whose thumbprint starts with the
    source's: the store's thumbprint index answers, instead of a listing of the whole store
    for every message."""
    from smimecli.certs.formats import CertEntry, is_ca

    assert spec.thumbprint is not None
    found = rules.store().find(spec.thumbprint, spec.store or "other")
    return [CertEntry(c.cert, None, c.friendly_name) for c in found if not is_ca(c.cert)]


def plan_recipients(
    rules: RuleSet,
    addresses: Iterable[str],
    *,
    on_missing_cert: str | None = None,
    at: dt.datetime | None = None,
) -> Plan:
    """Decide every recipient of one message.

    Args:
        rules: the rule set (its sources are opened on first use and kept).
        addresses: the message's recipients (duplicates, in any case, count once).
        on_missing_cert: overrides every rule's ``on_missing_cert`` (``encrypt --on-missing-cert``).
        at: the time at which certificates must be valid (default: now).
    """
    at = _now(at)
    plans: list[RecipientPlan] = []
    for given, address in unique_addresses(addresses):
        rule = rules.first_match(address)
        if rule is None:
            plans.append(RecipientPlan(given, None, Outcome.PASSED, "no rule matches; left alone"))
            continue
        entry, turned_down, reason = choose_certificate(rules, rule, address, at=at)
        if entry is None:
            policy = on_missing_cert or rule.on_missing_cert
            outcome = {
                "pass": Outcome.PASSED,
                "reject": Outcome.REJECTED,
                "tempfail": Outcome.TEMPFAIL,
            }[policy]
            plan = RecipientPlan(
                given,
                rule,
                outcome,
                f"{reason}; on_missing_cert = {policy}",
                turned_down=turned_down,
            )
            if policy == "pass":
                text = f"{given} gets the message without encryption"
                plan.notices.append(Notice("plaintext-recipient", text, given))
            plans.append(plan)
            continue
        cert = entry.cert
        plan = RecipientPlan(
            given,
            rule,
            Outcome.ENCRYPTED,
            reason,
            cert=cert,
            thumbprint=entry.thumbprint,
            key_transport=rule.key_transport,
            oaep_hash=rule.oaep_hash,
            turned_down=turned_down,
        )
        plan.notices.extend(_recipient_notices(plan, at))
        plans.append(plan)
    return _finish(Plan(plans), rules)


def unique_addresses(addresses: Iterable[str]) -> list[tuple[str, str]]:
    """Each address once, in order: (as given, as rules compare it).

    Rules compare :func:`~smimecli.rules.model.normalize_address`'s form, as the MTA does:
    ``bob@Partner.Example.`` is ``bob@partner.example``; reports show the address as given.

    Raises:
        DataError: an address longer than SMTP allows (65): no MTA delivers to it, so no
            rule can be said to cover it.
    """
    unique: dict[str, tuple[str, str]] = {}
    for raw in addresses:
        given = raw.strip()
        address = normalize_address(given)
        if not address:
            continue
        problem = address_problem(address)
        if problem is not None:
            raise DataError(f"{problem}; nothing was written")
        unique.setdefault(address.casefold(), (given, address))
    return list(unique.values())


def _recipient_notices(plan: RecipientPlan, at: dt.datetime) -> list[Notice]:
    assert plan.cert is not None and plan.rule is not None
    notices = []
    left = plan.cert.not_valid_after_utc - at
    if left < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        text = (
            f"certificate {plan.thumbprint} of {plan.address} expires "
            f"{plan.cert.not_valid_after_utc:%Y-%m-%d} (in {left.days} days)"
        )
        notices.append(Notice("cert-expiring", text, plan.address))
    if plan.key_kind == "ec":
        if plan.rule.key_transport != "rsa":
            text = (
                f"{plan.address} has an EC certificate: ECDH key agreement is used "
                f"(key_transport = {plan.rule.key_transport} applies to RSA only)"
            )
            notices.append(Notice("ec-key-agreement", text, plan.address))
    elif plan.algorithm == "rsa-oaep/sha1":
        notices.append(Notice("oaep-sha1", _oaep_sha1_warning(plan.address), plan.address))
    return notices


def _oaep_sha1_warning(address: str) -> str:
    return f"RSA-OAEP with SHA-1 for {address} is weak (old clients only)"


def _finish(plan: Plan, rules: RuleSet) -> Plan:
    encrypted = plan.encrypted
    unmatched = [r.address for r in plan.recipients if r.rule is None]
    if unmatched:
        what = (
            "gets the encrypted message, which it may not be able to read"
            if encrypted
            else "gets the message without encryption"
        )
        each = "each" if len(unmatched) > 1 else "it"
        text = f"no rule matches {', '.join(unmatched)}: {each} {what}"
        plan.notices.append(Notice("unmatched-recipient", text))
    if not encrypted:
        return plan
    # the cipher of the first rule in file order that found a certificate.
    first = min((r.rule for r in encrypted if r.rule is not None), key=lambda rule: rule.index)
    plan.cipher = first.cipher
    if first.cipher == AUTO_CIPHER:
        plan.cipher, plan.cipher_reason = auto_cipher(rules, encrypted)
    plan.cipher_rule = first
    plan.convert_tnef = any(r.rule is not None and r.rule.convert_tnef for r in encrypted)
    for rule in dict.fromkeys(r.rule for r in encrypted if r.rule is not None):
        if rule.cipher != first.cipher:
            text = (
                f"rule {rule.name!r} asks for {rule.cipher}, but the message uses "
                f"{plan.cipher} from rule {first.name!r} (the first rule that found a "
                "certificate)"
            )
            plan.notices.append(Notice("cipher-overridden", text))
    plan.notices.extend(cipher_notices(plan.cipher))
    return plan


# cipher = "auto": AES-GCM names as SMIMECapabilities give them (asn1crypto's names, as
# harvested, or dotted OIDs), strongest first.
_AUTO_CANDIDATES = (
    ("aes256-gcm", frozenset({"aes256_gcm", "2.16.840.1.101.3.4.1.46"})),
    ("aes128-gcm", frozenset({"aes128_gcm", "2.16.840.1.101.3.4.1.6"})),
)
_AUTO_FALLBACK = "aes256"
SMIME_CAPABILITIES_OID = "1.2.840.113549.1.9.15"


def announced_capabilities(rules: RuleSet, recipient: RecipientPlan) -> list[str] | None:
    """What a recipient announced it reads: the SMIMECapabilities harvested from its verified
    signed mail (the store's record), else its certificate's SMIMECapabilities extension;
    None when neither says anything."""
    if recipient.thumbprint and rules.store_dir is not None:
        from smimecli.certs.store import DB_NAME

        if (rules.store_dir / DB_NAME).exists():
            for stored in rules.store().find(recipient.thumbprint):
                if stored.capabilities is not None:
                    return list(stored.capabilities)
    if recipient.cert is None:
        return None
    return certificate_capabilities(recipient.cert)


def certificate_capabilities(cert: x509.Certificate) -> list[str] | None:
    """The SMIMECapabilities extension of a certificate (dotted OIDs), or None."""
    from asn1crypto import cms
    from cryptography import x509 as _x509

    try:
        ext = cert.extensions.get_extension_for_oid(_x509.ObjectIdentifier(SMIME_CAPABILITIES_OID))
    except (_x509.ExtensionNotFound, ValueError):
        return None
    value = ext.value
    if not isinstance(value, _x509.UnrecognizedExtension):
        return None
    try:
        parsed = cms.SMIMECapabilites.load(value.value)
        return [c["capability_id"].dotted for c in parsed]
    except (ValueError, TypeError):
        return None


def auto_cipher(rules: RuleSet, encrypted: Sequence[RecipientPlan]) -> tuple[str, str]:
    """``cipher = "auto"``: the strongest AES-GCM every encrypted recipient announced, else
    aes256 (CBC), which every S/MIME client reads. Returns the cipher and why (one line)."""
    announced = {r.address: set(announced_capabilities(rules, r) or ()) for r in encrypted}
    for name, ids in _AUTO_CANDIDATES:
        if all(caps & ids for caps in announced.values()):
            who = "the recipient" if len(announced) == 1 else f"all {len(announced)} recipients"
            return name, f"auto: {who} announced {name}"
    missing = [a for a, caps in announced.items() if not caps & _AUTO_CANDIDATES[0][1]]
    if not missing:  # each announced some AES-GCM, but not one size they all share
        return _AUTO_FALLBACK, "auto: the recipients announced no AES-GCM size in common"
    silent = [a for a in missing if not announced[a]]
    said = [a for a in missing if announced[a]]
    parts = []
    if said:
        parts.append(f"{', '.join(said)} did not announce AES-GCM")
    if silent:
        parts.append(f"{', '.join(silent)} announced no capabilities")
    return _AUTO_FALLBACK, f"auto: {'; '.join(parts)}"


def cipher_notices(cipher: str) -> list[Notice]:
    """Notices about recipients who may not be able to read this content cipher.

    Which ciphers are weak or authenticated is the CMS layer's table; the wording is the
    plan's own (the CMS layer gives its own ``weak-cipher`` notice when it encrypts).
    """
    from smimecli.cms.algorithms import CIPHERS

    found = CIPHERS.get(cipher)
    if found is None:
        return []
    if found.weak:
        return [Notice("weak-cipher", _weak_cipher_warning(cipher))]
    if found.authenticated:
        text = (
            f"{cipher} makes AuthEnvelopedData (RFC 5083), which many deployed clients "
            "(older Outlook versions, for example) cannot read; aes256 (CBC) reads everywhere"
        )
        return [Notice("auth-enveloped", text)]
    return []


def cipher_warnings(cipher: str) -> list[str]:
    """The texts of :func:`cipher_notices`."""
    return [n.text for n in cipher_notices(cipher)]


def _weak_cipher_warning(cipher: str) -> str:
    return f"weak content cipher {cipher}: use it only for clients that read nothing else"


# --- messages -------------------------------------------------------------------------------


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
) -> EncryptOutcome:
    """Encrypt one message by a rules file: :func:`smimecli.encrypt.request.encrypt_one`
    with an :class:`~smimecli.encrypt.request.EncryptRequest` naming the file.

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


# --- rules test -----------------------------------------------------------------------------

TEST_SENDER = "test@localhost"


@dataclass
class RuleReport:
    """``rules test`` for one rule: its virtual message's plan."""

    rule: Rule
    plan: Plan
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"rule": self.rule.name if self.rule.index >= 0 else None}
        document.update(self.plan.to_json())
        document["warnings"] = [*self.warnings, *self.plan.warnings]
        return document


@dataclass
class RulesTestReport:
    """``rules test``: one report per tested rule."""

    rules: RuleSet
    reports: list[RuleReport]
    warnings: list[str] = field(default_factory=list)

    @property
    def tested(self) -> list[RecipientPlan]:
        """Every tested recipient, rule after rule."""
        return [r for report in self.reports for r in report.plan.recipients]

    @property
    def all_encrypted(self) -> bool:
        recipients = self.tested
        return bool(recipients) and all(r.outcome is Outcome.ENCRYPTED for r in recipients)

    def to_json(self) -> dict[str, Any]:
        return {
            "rules_file": str(self.rules.path),
            "sender": TEST_SENDER,
            "all_encrypted": self.all_encrypted,
            "rules": [r.to_json() for r in self.reports],
            "warnings": list(self.warnings),
        }


def source_addresses(rules: RuleSet, rule: Rule, pattern: str, at: dt.datetime) -> list[str]:
    """Addresses in the rule's source whose usable certificate matches a wildcard pattern."""
    from smimecli.certs.names import emails
    from smimecli.certs.usable import problems

    regex = pattern_regex(normalize_address(pattern))
    roots, intermediates = rules.trust() if rule.require_trusted else ([], [])
    found: dict[str, str] = {}
    for entry in rules.source(rule).certificates():
        for address in emails(entry.cert):
            if address.casefold() in found or not regex.fullmatch(normalize_address(address)):
                continue
            if not problems(
                entry.cert,
                email=address,
                at=at,
                roots=roots,
                intermediates=intermediates,
                require_trusted=rule.require_trusted,
            ):
                found[address.casefold()] = address
    return sorted(found.values(), key=str.casefold)


def virtual_message(recipients: Sequence[str]) -> bytes:
    """The small message ``rules test`` encrypts in memory."""
    lines = [
        f"From: {TEST_SENDER}",
        f"To: {', '.join(recipients)}",
        "Subject: smimecli rules test",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is a virtual message of smimecli rules test.",
        "",
    ]
    return "\r\n".join(lines).encode("ascii", "replace")


def run_rules_test(
    rules: RuleSet,
    names: Sequence[str] = (),
    *,
    all_rules: bool = False,
    recipients: Sequence[str] = (),
    at: dt.datetime | None = None,
) -> RulesTestReport:
    """Run rules against a virtual message from test@localhost.

    Every tested rule gets its own virtual message, planned with the whole rule set (first
    match wins, so a recipient an earlier rule catches shows that rule and a warning) and
    encrypted in memory with the real CMS code.

    Args:
        rules: the rule set.
        names: the rules to test (file order is kept); ignored with ``all_rules``.
        all_rules: test every rule.
        recipients: the ``--recipient`` values; each tested rule takes those that match it.
        at: the time of the test (default: now).
    """
    at = _now(at)
    # Names are unique in a rule set, so each rule is one object: dict.fromkeys drops
    # repeated names and keeps the order.
    tested = list(dict.fromkeys(rules.rules if all_rules else [rules.rule_named(n) for n in names]))
    rules.open_all()
    report = RulesTestReport(rules, [])
    for later, pattern, earlier, cover in shadowed_patterns(rules):
        if later in tested:
            where = f"rule {later.name!r}"
            report.warnings.append(
                f"{shadow_warning(where, pattern, earlier, cover)}; no address reaches it"
            )
    for rule in tested:
        notes: list[str] = []
        if recipients:
            addresses = [a for a in recipients if rule.matches(a)]
            if not addresses:
                notes.append(f"none of the --recipient addresses matches rule {rule.name!r}")
        else:
            addresses = list(rule.exact)
            for pattern in rule.wildcards:
                found = source_addresses(rules, rule, pattern, at)
                if not found:
                    example = example_address(pattern)
                    notes.append(
                        f"{rule.source.describe()} has no usable certificate matching "
                        f"{pattern!r}; testing the example address {example}"
                    )
                    found = [example]
                addresses.extend(found)
        plan = plan_recipients(rules, addresses, at=at)
        for recipient in plan.recipients:
            if recipient.rule is not None and recipient.rule is not rule:
                text = (
                    f"{recipient.address} matches the earlier rule {recipient.rule.name!r} "
                    f"first: rule {rule.name!r} never sees it"
                )
                recipient.notices.append(Notice("earlier-rule", text, recipient.address))
        if plan.encrypted:
            _encrypt_in_memory(plan, addresses)
        report.reports.append(RuleReport(rule, plan, notes))
    if recipients and all_rules:
        unmatched = [a for a in recipients if rules.first_match(a) is None]
        if unmatched:
            plan = plan_recipients(rules, unmatched, at=at)
            plan.notices.clear()  # the same "no rule matches" as the report's warning
            report.warnings.append(
                f"no rule matches {', '.join(unmatched)}: sent without encryption"
            )
            report.reports.append(RuleReport(_NO_RULE, plan, []))
    return report


def _encrypt_in_memory(plan: Plan, addresses: Sequence[str]) -> None:
    """The real CMS encryption of the virtual message, so that algorithm problems show."""
    from io import BytesIO

    from smimecli.encrypt.message import encrypt_message

    assert plan.cipher is not None
    encrypt_message(
        virtual_message(addresses),
        BytesIO(),
        plan.envelope_recipients(),
        cipher=plan.cipher,
        convert_tnef=False,
    )


_NO_RULE = Rule(
    name="(no rule)",
    index=-1,
    line=None,
    recipients=(),
    source=SourceSpec("store"),
    match="email",
    cipher="aes256",
    key_transport="rsa",
    oaep_hash="sha256",
    convert_tnef=False,
    on_missing_cert="pass",
    require_trusted=False,
)
