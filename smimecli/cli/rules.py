"""``smimecli rules check`` and ``smimecli rules test``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smimecli.cli.common import JsonOpt, console, emit_json, state
from smimecli.text import printable

if TYPE_CHECKING:
    from smimecli.rules.decision import RecipientPlan
    from smimecli.rules.dryrun import RulesTestReport

app = typer.Typer(
    help="Check recipient rules files and try them on a virtual message.",
    no_args_is_help=True,
)

RulesOpt = Annotated[
    Path,
    typer.Option(
        "--rules",
        help="The rules file (TOML; format: man smimecli-rules).",
        metavar="FILE",
        show_default=False,
    ),
]


@app.command("check")
def check(*, rules: RulesOpt, json: JsonOpt = False) -> None:
    """Validate a rules file and open every certificate source it names.

    Prints "OK: N rules" and exits 0, or prints one error line naming the
    file, the rule and the key, and exits 78. Patterns that an earlier rule
    always catches first get a warning, and so does each file a source
    skipped. With --json: {"ok", "rules", "warnings"}.
    """
    import logging

    from smimecli.rules.check import shadow_warnings
    from smimecli.rules.load import load_rules

    ruleset = load_rules(
        rules, store_dir=state().store_dir(), store_passphrase=state().store_passphrase
    )
    ruleset.open_all()
    warnings = [notice.text for notice in ruleset.source_notices(ruleset.rules)]
    warnings += shadow_warnings(ruleset, lambda rule: ruleset.where(rule, "recipients"))
    log = logging.getLogger("smimecli")
    for warning in warnings:
        log.warning(warning)
    count = len(ruleset.rules)
    if json:
        emit_json(
            {"ok": True, "rules": [rule.name for rule in ruleset.rules], "warnings": warnings}
        )
    else:
        print(f"OK: {count} rule{'s' if count != 1 else ''}")


@app.command("test")
def rules_test(
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="RULE_NAME", help="The rules to test.", show_default=False),
    ] = None,
    *,
    rules: RulesOpt,
    all_rules: Annotated[bool, typer.Option("--all", help="Test every rule of the file.")] = False,
    recipient: Annotated[
        list[str] | None,
        typer.Option(
            "--recipient",
            help="Test these addresses (each tested rule takes those that match it).",
            metavar="ADDR",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Try rules on a virtual message from test@localhost; nothing is sent.

    Recipients: the --recipient values, or else each rule's exact addresses
    and, for a wildcard pattern, every address in the rule's source whose
    usable certificate matches it (one example address when there is none).

    The real lookup and an in-memory encryption run. The report shows, per
    rule and recipient: the rule matched, the certificate (subject,
    thumbprint, not-after), the algorithms, the outcome (ENCRYPTED, PASSED,
    REJECTED, TEMPFAIL) with its reason, and every warning.

    Exit 0 when every tested recipient is ENCRYPTED, 67 when some would go
    unencrypted or be rejected, 78 for a configuration error.
    """
    from smimecli.errors import RejectError, UsageError
    from smimecli.rules.decision import Outcome
    from smimecli.rules.dryrun import run_rules_test
    from smimecli.rules.load import load_rules

    if not names and not all_rules:
        raise UsageError("name the rules to test, or give --all (see 'rules test --help')")
    if names and all_rules:
        raise UsageError("give rule names or --all, not both")
    ruleset = load_rules(
        rules, store_dir=state().store_dir(), store_passphrase=state().store_passphrase
    )
    report = run_rules_test(ruleset, names or [], all_rules=all_rules, recipients=recipient or [])
    tested = report.tested
    if recipient and not tested:
        raise UsageError(
            "none of the --recipient addresses matches the tested rules: nothing to test"
        )
    if json_output:
        emit_json(report.to_json())
    elif sys.stdout.isatty():
        _print_rich(report)
    else:
        _print_plain(report)
    if not report.all_encrypted:
        bad = [r for r in tested if r.outcome is not Outcome.ENCRYPTED]
        raise RejectError(
            f"{len(bad)} of {len(tested)} tested recipients would not be encrypted: "
            + ", ".join(f"{r.address} {r.outcome}" for r in bad)
        )


# --- output ---------------------------------------------------------------------------------


def _certificate(recipient: RecipientPlan) -> str:
    if recipient.cert is None:
        return "-"
    from smimecli.certs.names import display_name

    return (
        f"{display_name(recipient.cert.subject)}, thumbprint {recipient.thumbprint}, "
        f"not after {recipient.cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    )


def _certificate_lines(recipient: RecipientPlan) -> str:
    """The certificate for the terminal table: subject, a 16-digit thumbprint prefix (a
    selector that fits a narrow column unbroken), and the not-after date."""
    if recipient.cert is None:
        return "-"
    from smimecli.certs.names import display_name

    return (
        f"{display_name(recipient.cert.subject)}\n{(recipient.thumbprint or '')[:16]}\n"
        f"not after {recipient.cert.not_valid_after_utc:%Y-%m-%d}"
    )


def _algorithms(recipient: RecipientPlan, cipher: str | None) -> str:
    if recipient.cert is None:
        return "-"
    transport = {
        "rsa": "RSA PKCS#1 v1.5",
        "ecdh": "ECDH (RFC 5753)",
    }.get(recipient.algorithm or "", f"RSA-OAEP {recipient.oaep_hash}")
    return f"{cipher}, {transport}"


def _print_plain(report: RulesTestReport) -> None:
    from smimecli.rules.decision import Outcome
    from smimecli.rules.dryrun import TEST_SENDER

    out: list[str] = [f"rules file: {report.rules.path}", f"sender: {TEST_SENDER}"]
    out.extend(f"warning: {w}" for w in report.warnings)
    for rule_report in report.reports:
        rule = rule_report.rule
        plan = rule_report.plan
        out.append("")
        where = f" ({rule.source.describe()})" if rule.index >= 0 else ""
        out.append(f"rule {rule.name!r}{where}")
        out.extend(f"  warning: {w}" for w in [*rule_report.warnings, *plan.warnings])
        if plan.cipher_reason and plan.encrypted:
            out.append(f"  cipher: {plan.cipher} ({plan.cipher_reason})")
        for recipient in plan.recipients:
            out.append(f"  {recipient.address}: {recipient.outcome}")
            matched = recipient.rule.name if recipient.rule else "(none)"
            out.append(f"    rule:        {matched}")
            out.append(f"    certificate: {_certificate(recipient)}")
            out.append(f"    algorithms:  {_algorithms(recipient, plan.cipher)}")
            out.append(f"    reason:      {recipient.reason}")
            out.extend(f"    warning:     {w}" for w in recipient.warnings)
            for turned in recipient.turned_down:
                out.append(
                    f"    not chosen:  {turned.subject} ({turned.thumbprint[:16]}): "
                    + ", ".join(turned.reasons)
                )
    tested = report.tested
    good = sum(1 for r in tested if r.outcome is Outcome.ENCRYPTED)
    out.append("")
    out.append(f"{good} of {len(tested)} tested recipients ENCRYPTED")
    # Addresses, names and subjects come from rules and certificates: no terminal controls.
    print("\n".join(printable(line) for line in out))


def _print_rich(report: RulesTestReport) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from smimecli.rules.dryrun import TEST_SENDER

    term: Any = console()
    term.print(Text(printable(f"rules file: {report.rules.path}  sender: {TEST_SENDER}")))

    def warn(message: str) -> None:
        term.print(Text.assemble(("warning: ", "yellow"), printable(message)))

    for warning in report.warnings:
        warn(warning)
    colours = {"ENCRYPTED": "green", "PASSED": "yellow", "REJECTED": "red", "TEMPFAIL": "red"}
    for rule_report in report.reports:
        plan = rule_report.plan
        table = Table(
            title=Text(printable(f"rule {rule_report.rule.name!r}")),
            title_justify="left",
            expand=True,
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1, 0, 0),
        )
        # Recipient, rule and outcome keep their width; at 80 columns the certificate column
        # still holds its 16-digit thumbprint prefix on one line.
        for column, ratio in (
            ("Recipient", None),
            ("Rule", None),
            ("Outcome", None),
            ("Certificate", 3),
            ("Algorithms", 2),
            ("Reason", 2),
        ):
            table.add_column(column, overflow="fold", ratio=ratio, no_wrap=ratio is None)
        for recipient in plan.recipients:
            notes = [printable(recipient.reason)]
            notes.extend(printable(f"warning: {w}") for w in recipient.warnings)
            notes.extend(
                printable(f"not chosen {t.thumbprint[:8]}: {', '.join(t.reasons)}")
                for t in recipient.turned_down
            )
            outcome = str(recipient.outcome)
            table.add_row(
                Text(printable(recipient.address)),
                Text(printable(recipient.rule.name if recipient.rule else "(none)")),
                Text(outcome, style=colours[outcome]),
                Text(printable(_certificate_lines(recipient), newlines=True)),
                Text(printable(_algorithms(recipient, plan.cipher))),
                Text("\n".join(notes)),
            )
        term.print(table)
        if plan.cipher_reason and plan.encrypted:
            term.print(Text(printable(f"cipher: {plan.cipher} ({plan.cipher_reason})")))
        for warning in [*rule_report.warnings, *plan.warnings]:
            warn(warning)
