"""``rules test``: each tested rule's plan for a virtual message from test@localhost,
encrypted in memory with the real CMS code; nothing is sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from smimecli.notices import Notice
from smimecli.rules.check import shadow_warnings
from smimecli.rules.decision import Outcome, Plan, RecipientPlan
from smimecli.rules.model import Rule, RuleSet, SourceSpec
from smimecli.rules.patterns import example_address, normalize_address, pattern_regex
from smimecli.rules.plan import plan_recipients

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
    at = at if at is not None else dt.datetime.now(dt.UTC)
    # Names are unique in a rule set, so each rule is one object: dict.fromkeys drops
    # repeated names and keeps the order.
    tested = list(dict.fromkeys(rules.rules if all_rules else [rules.rule_named(n) for n in names]))
    rules.open_all()
    report = RulesTestReport(
        rules,
        [],
        shadow_warnings(
            rules,
            lambda rule: f"rule {rule.name!r}",
            only=tested,
            suffix="; no address reaches it",
        ),
    )
    for rule in tested:
        report.reports.append(_test_rule(rules, rule, recipients, at))
    if recipients and all_rules:
        _add_unmatched(report, recipients, at)
    return report


def _test_rule(
    rules: RuleSet, rule: Rule, recipients: Sequence[str], at: dt.datetime
) -> RuleReport:
    """One rule's virtual message: planned with the whole rule set, encrypted in memory."""
    addresses, notes = _test_addresses(rules, rule, recipients, at)
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
    return RuleReport(rule, plan, notes)


def _test_addresses(
    rules: RuleSet, rule: Rule, recipients: Sequence[str], at: dt.datetime
) -> tuple[list[str], list[str]]:
    """The addresses a rule is tested with, and notes on how they were found."""
    notes: list[str] = []
    if recipients:
        addresses = [a for a in recipients if rule.matches(a)]
        if not addresses:
            notes.append(f"none of the --recipient addresses matches rule {rule.name!r}")
        return addresses, notes
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
    return addresses, notes


def _add_unmatched(report: RulesTestReport, recipients: Sequence[str], at: dt.datetime) -> None:
    """``--all --recipient``: the addresses no rule matches, as one more report."""
    rules = report.rules
    unmatched = [a for a in recipients if rules.first_match(a) is None]
    if unmatched:
        plan = plan_recipients(rules, unmatched, at=at)
        plan.notices.clear()  # the same "no rule matches" as the report's warning
        report.warnings.append(f"no rule matches {', '.join(unmatched)}: sent without encryption")
        report.reports.append(RuleReport(_NO_RULE, plan, []))


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
