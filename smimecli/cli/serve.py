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


def serve(
    *,
    rules: Annotated[
        Path,
        typer.Option(
            "--rules",
            help="Pick certificates by this rules file (format: man smimecli-rules).",
            metavar="FILE",
        ),
    ],
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            help="Accept SMTP here (HOST:PORT); a non-loopback address needs --allow-remote.",
            metavar="HOST:PORT",
        ),
    ] = "127.0.0.1:10025",
    relay: Annotated[
        str,
        typer.Option(
            "--relay",
            help="Hand every copy to this SMTP server (HOST:PORT): Postfix's re-injection smtpd.",
            metavar="HOST:PORT",
        ),
    ] = "127.0.0.1:10026",
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, help="Encryption worker threads."),
    ] = 2,
    max_size: Annotated[
        int,
        typer.Option(
            "--max-size",
            min=0,
            help="Refuse larger messages (552 5.3.4); 0: no limit.",
            metavar="BYTES",
        ),
    ] = 50 * 1024 * 1024,
    max_sessions: Annotated[
        int,
        typer.Option(
            "--max-sessions",
            min=1,
            help="Simultaneous SMTP sessions; beyond them new ones get 421 4.7.0.",
        ),
    ] = 100,
    journal: Annotated[
        str | None,
        typer.Option(
            "--journal",
            help="Append one JSON line per message to FILE ('-': stderr); reopened on SIGHUP.",
            metavar="FILE",
        ),
    ] = None,
    journal_subject: Annotated[
        bool,
        typer.Option("--journal-subject", help="Put the Subject in the journal records too."),
    ] = False,
    spool: Annotated[
        Path | None,
        typer.Option(
            "--spool",
            help="Folder for the 0600 spool files of messages in transit [default: $TMPDIR].",
            metavar="DIR",
        ),
    ] = None,
    drain_timeout: Annotated[
        int,
        typer.Option(
            "--drain-timeout",
            min=0,
            help="At SIGTERM, wait this many seconds for messages in flight.",
            metavar="SECONDS",
        ),
    ] = 60,
    syslog: Annotated[
        bool,
        typer.Option(
            "--syslog",
            help="Send the journal records and the error lines to syslog (/dev/log) too, "
            "tagged smimecli-serve.",
        ),
    ] = False,
    syslog_facility: Annotated[
        Facility,
        typer.Option("--syslog-facility", help="Syslog facility for --syslog."),
    ] = Facility.mail,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Allow a non-loopback --listen address (plain SMTP without authentication: "
            "firewall it).",
        ),
    ] = False,
) -> None:
    """Run an SMTP content filter: encrypt by rules and relay, per recipient.

    Mail comes in over SMTP on --listen (Postfix's content_filter), each envelope
    recipient is decided by the rules at RCPT time (550 5.7.1 for reject, 450 4.7.1 for
    tempfail), and at the end of DATA the certificate holders get one encrypted copy and
    the others the original bytes, both relayed to --relay. The client gets 250 only
    after the relay took every copy, 451 4.3.0 on any doubt. SIGHUP reloads the rules
    (a broken file keeps the old ones); SIGTERM finishes the messages in flight and
    exits 0.
    """
    import os

    from smimecli.errors import InputError, UsageError
    from smimecli.serve.daemon import Daemon, Settings, is_loopback, parse_address
    from smimecli.serve.journal import SYSLOG_SOCKET

    listen_at = parse_address(listen, "--listen")
    relay_to = parse_address(relay, "--relay")
    if not is_loopback(listen_at[0]) and not allow_remote:
        raise UsageError(
            f"--listen {listen} is not a loopback address: the filter speaks plain SMTP "
            "without authentication; add --allow-remote if a firewall guards it"
        )
    if spool is not None and not spool.is_dir():
        raise InputError(f"spool folder {spool} does not exist: create it (mode 0700)")
    settings = Settings(
        rules=rules,
        store_dir=state().store_dir(),
        store_passphrase=state().store_passphrase,
        listen=listen_at,
        relay=relay_to,
        workers=workers,
        max_size=max_size or None,
        max_sessions=max_sessions,
        journal=journal,
        journal_subject=journal_subject,
        spool_dir=str(spool) if spool is not None else None,
        drain_seconds=drain_timeout,
        syslog_facility=str(syslog_facility) if syslog else None,
        # Another socket than /dev/log (a chroot, the tests): SMIMECLI_SYSLOG_SOCKET.
        syslog_socket=os.environ.get("SMIMECLI_SYSLOG_SOCKET") or SYSLOG_SOCKET,
    )
    status = Daemon(settings).run()
    if status:
        raise typer.Exit(status)
