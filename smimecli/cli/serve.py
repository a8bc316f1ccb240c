"""``smimecli serve``: the SMTP content-filter daemon.

No ``from __future__ import annotations`` here: Typer would have to evaluate every
annotation string again on each run.
"""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from smimecli.cli.common import state


class Facility(StrEnum):
    """Syslog facilities for --syslog-facility."""

    mail = "mail"
    daemon = "daemon"
    user = "user"
    local0 = "local0"
    local1 = "local1"
    local2 = "local2"
    local3 = "local3"
    local4 = "local4"
    local5 = "local5"
    local6 = "local6"
    local7 = "local7"


RulesOpt = Annotated[
    Path,
    typer.Option(
        "--rules",
        help="Pick certificates by this rules file (format: man smimecli-rules).",
        metavar="FILE",
    ),
]

ListenOpt = Annotated[
    str,
    typer.Option(
        "--listen",
        help="Accept SMTP here (HOST:PORT); a non-loopback address needs --allow-remote.",
        metavar="HOST:PORT",
    ),
]

RelayOpt = Annotated[
    str,
    typer.Option(
        "--relay",
        help="Hand every copy to this SMTP server (HOST:PORT): Postfix's re-injection smtpd.",
        metavar="HOST:PORT",
    ),
]

WorkersOpt = Annotated[
    int,
    typer.Option("--workers", min=1, help="Encryption worker threads."),
]

MaxSizeOpt = Annotated[
    int,
    typer.Option(
        "--max-size",
        min=0,
        help="Refuse larger messages (552 5.3.4); 0: no limit.",
        metavar="BYTES",
    ),
]

MaxSessionsOpt = Annotated[
    int,
    typer.Option(
        "--max-sessions",
        min=1,
        help="Simultaneous SMTP sessions; beyond them new ones get 421 4.7.0.",
    ),
]

JournalOpt = Annotated[
    str | None,
    typer.Option(
        "--journal",
        help="Append one JSON line per message to FILE ('-': stderr); reopened on SIGHUP.",
        metavar="FILE",
    ),
]

JournalSubjectOpt = Annotated[
    bool,
    typer.Option("--journal-subject", help="Put the Subject in the journal records too."),
]

SpoolOpt = Annotated[
    Path | None,
    typer.Option(
        "--spool",
        help="Folder for the 0600 spool files of messages in transit [default: $TMPDIR].",
        metavar="DIR",
    ),
]

DrainTimeoutOpt = Annotated[
    int,
    typer.Option(
        "--drain-timeout",
        min=0,
        help="At SIGTERM, wait this many seconds for messages in flight.",
        metavar="SECONDS",
    ),
]

SyslogOpt = Annotated[
    bool,
    typer.Option(
        "--syslog",
        help="Send the journal records and the error lines to syslog (/dev/log) too, "
        "tagged smimecli-serve.",
    ),
]

SyslogFacilityOpt = Annotated[
    Facility,
    typer.Option("--syslog-facility", help="Syslog facility for --syslog."),
]

AllowRemoteOpt = Annotated[
    bool,
    typer.Option(
        "--allow-remote",
        help="Allow a non-loopback --listen address (plain SMTP without authentication: "
        "firewall it).",
    ),
]

LmtpOpt = Annotated[
    bool,
    typer.Option(
        "--lmtp",
        help="Speak LMTP on --listen instead of SMTP: after DATA one reply per recipient.",
    ),
]


def serve(
    *,
    rules: RulesOpt,
    listen: ListenOpt = "127.0.0.1:10025",
    relay: RelayOpt = "127.0.0.1:10026",
    workers: WorkersOpt = 2,
    max_size: MaxSizeOpt = 50 * 1024 * 1024,
    max_sessions: MaxSessionsOpt = 100,
    journal: JournalOpt = None,
    journal_subject: JournalSubjectOpt = False,
    spool: SpoolOpt = None,
    drain_timeout: DrainTimeoutOpt = 60,
    syslog: SyslogOpt = False,
    syslog_facility: SyslogFacilityOpt = Facility.mail,
    allow_remote: AllowRemoteOpt = False,
    lmtp: LmtpOpt = False,
) -> None:
    """Run an SMTP content filter: encrypt by rules and relay, per recipient.

    Mail comes in over SMTP on --listen (Postfix's content_filter), each envelope
    recipient is decided by the rules at RCPT time (550 5.7.1 for reject, 450 4.7.1 for
    tempfail), and at the end of DATA the certificate holders get one encrypted copy and
    the others the original bytes, both relayed to --relay. The client gets 250 only
    after the relay took every copy, 451 4.3.0 on any doubt (with --lmtp: one reply per
    recipient, for the copy it was in). The rules' sign and [[signer]] tables sign the
    copies, the envelope sender choosing the [[signer]]. SIGHUP reloads the rules
    (a broken file keeps the old ones); SIGTERM finishes the messages in flight and
    exits 0.
    """
    from smimecli.serve import daemon

    settings = daemon.Settings(
        rules=rules,
        store_dir=state().store_dir(),
        store_passphrase=state().store_passphrase,
        listen=daemon.listen_address(listen, allow_remote=allow_remote),
        relay=daemon.parse_address(relay, "--relay"),
        workers=workers,
        max_size=max_size or None,
        max_sessions=max_sessions,
        journal=journal,
        journal_subject=journal_subject,
        spool_dir=daemon.spool_folder(spool),
        drain_seconds=drain_timeout,
        syslog_facility=str(syslog_facility) if syslog else None,
        syslog_socket=daemon.syslog_socket(),
        lmtp=lmtp,
    )
    status = daemon.Daemon(settings).run()
    if status:
        raise typer.Exit(status)
