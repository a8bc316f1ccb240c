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
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from smimecli.errors import DataError
from smimecli.notices import Notice
from smimecli.rules.decision import Outcome, Plan, RecipientPlan, Turndown
from smimecli.rules.model import AUTO_CIPHER, Rule, RuleSet, SourceSpec, check_any_source
from smimecli.rules.patterns import address_problem, normalize_address

if TYPE_CHECKING:
    from cryptography import x509

EXPIRY_WARNING_DAYS = 30


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
    from smimecli.certs.usable import best

    at = _now(at)
    spec = rule.source
    candidates = _candidates(rules, rule, address)
    if not candidates:
        if spec.thumbprint:
            return None, [], f"{spec.describe()} holds no certificate {spec.thumbprint}"
        where = spec.describe()
        return None, [], f"no certificate for {address} in {where}"
    usable, turned_down = _sort_candidates(rules, rule, address, candidates, at)
    if not usable:
        detail = "; ".join(f"{t.thumbprint[:8]} {', '.join(t.reasons)}" for t in turned_down)
        return None, turned_down, f"no usable certificate in {spec.describe()} ({detail})"
    chosen = best(usable)
    for entry in usable:
        if entry is chosen:
            continue
        turned_down.append(_turndown(entry, ("usable, but another certificate is valid longer",)))
    if len(usable) > 1:
        how = f"valid the longest of {len(usable)} usable certificates in"
    elif rule.match == "any":
        how = "the certificate of"
    else:
        how = "the usable certificate naming it in"
    return chosen, turned_down, f"{how} {spec.describe()}"


def _candidates(rules: RuleSet, rule: Rule, address: str) -> list[Any]:
    """The source entries that may serve ``address`` (those of the source's thumbprint)."""
    from smimecli.certs.formats import is_ca

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
    return candidates


def _sort_candidates(
    rules: RuleSet, rule: Rule, address: str, candidates: Sequence[Any], at: dt.datetime
) -> tuple[list[Any], list[Turndown]]:
    """The usable candidates, and the others with their reasons (each certificate once)."""
    from smimecli.certs.usable import problems

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
            turned_down.append(_turndown(entry, tuple(reasons)))
        else:
            usable.append(entry)
    return usable, turned_down


def _turndown(entry: Any, reasons: tuple[str, ...]) -> Turndown:
    from smimecli.certs.names import display_name

    return Turndown(
        subject=display_name(entry.cert.subject),
        thumbprint=entry.thumbprint,
        not_after=entry.cert.not_valid_after_utc,
        reasons=reasons,
    )


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

    Returns:
        The :class:`~smimecli.rules.decision.Plan`; its ``notices`` include what the
        sources it consulted said when they were read (a ``dir`` source's ``skipped-file``).
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
            plans.append(_without_certificate(given, rule, reason, turned_down, policy))
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
    # A source that skipped a file may have skipped a recipient's certificate: every plan
    # that consulted it says so.
    consulted = dict.fromkeys(p.rule for p in plans if p.rule is not None)
    return _finish(Plan(plans, notices=rules.source_notices(consulted)), rules)


def _without_certificate(
    given: str, rule: Rule, reason: str, turned_down: list[Turndown], policy: str
) -> RecipientPlan:
    """A matched recipient no usable certificate was found for, as ``policy`` says."""
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
    return plan


def unique_addresses(addresses: Iterable[str]) -> list[tuple[str, str]]:
    """Each address once, in order: (as given, as rules compare it).

    Rules compare :func:`~smimecli.rules.patterns.normalize_address`'s form, as the MTA does:
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


def _weak_cipher_warning(cipher: str) -> str:
    return f"weak content cipher {cipher}: use it only for clients that read nothing else"
