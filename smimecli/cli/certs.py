"""``smimecli certs``: import, export, list, show and remove store certificates."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from smimecli.cli.common import (
    JsonOpt,
    PasswordEnvOpt,
    PasswordFileOpt,
    PfxEncryptionOpt,
    StorePasswordEnvOpt,
    check_pfx_encryption,
    emit_json,
    info,
    is_std,
    open_store,
    show_notices,
    write_output,
)
from smimecli.text import printable

app = typer.Typer(
    help="Manage the certificate store (import, export, list, show, remove).",
    no_args_is_help=True,
)

StoreNameOpt = Annotated[
    str | None,
    typer.Option(
        "--store-name",
        help="Store: my (personal, with keys), other (recipients), root (trusted), ca.",
        metavar="my|other|root|ca",
    ),
]


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="Certificate files (any format).")],
    *,
    store_name: StoreNameOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail (65) if any certificate had to be skipped.")
    ] = False,
    password_file: PasswordFileOpt = None,
    password_env: PasswordEnvOpt = None,
    store_password_env: StorePasswordEnvOpt = None,
    json: JsonOpt = False,
) -> None:
    """Import certificates (and private keys) into the store.

    Formats are detected by content: PEM, DER, PKCS#7 (.p7b/.p7c), PKCS#12 (.pfx/.p12),
    serialized stores (.sst) and signed mail (.eml). A certificate with its key goes to
    `my`, one without to `other`, a .pfx chain's CA certificates to `ca`, unless
    --store-name says otherwise. Either every file is imported or nothing changes.
    With --json, one document lists what was imported and what was skipped.

    Signed mail is verified first: only the signer's certificate and the issuers of it
    that the message carries are imported, and only when the signature holds (65
    otherwise); the signer's SMIMECapabilities and signing time are recorded with its
    certificate (the newest signature's win) and shown by 'certs list' and 'certs show'.
    """
    from smimecli.certs import importing
    from smimecli.certs.store import check_store_name
    from smimecli.errors import DataError
    from smimecli.files import read_input
    from smimecli.passwords import load_with_password, read_password

    forced = check_store_name(store_name) if store_name else None
    password = read_password(password_file=password_file, password_env=password_env)
    loaded: list[importing.ImportFile] = []
    for path in files:
        data = read_input(path)
        loaded.append(
            load_with_password(
                lambda secret: importing.load_import(data, str(path), secret),  # noqa: B023
                password,
                str(path),
            )
        )
        show_notices(loaded[-1].notices)
    skipped = [message for file in loaded for message in file.entries.skipped]
    if strict and skipped:
        raise DataError(
            f"{len(skipped)} certificate(s) could not be parsed (--strict): nothing imported"
        )
    with open_store(store_password_env, create=True) as store:
        added = importing.add_to_store(store, loaded, forced)
    for record in added:
        key_note = " (with private key)" if record.has_key else ""
        info(f"{record.thumbprint}  {record.store:<5}  {record.subject}{key_note}")
    info(f"imported {len(added)} certificate(s)" + (f", skipped {len(skipped)}" if skipped else ""))
    if json:
        emit_json({"imported": [r.to_json() for r in added], "skipped": skipped})


def _subject(cert: Any) -> str:
    from smimecli.certs.names import display_name

    return str(display_name(cert.subject))


@app.command("export")
def export(
    selectors: Annotated[
        list[str], typer.Argument(help="Thumbprint (8+ hex digits), e-mail address or CN.")
    ],
    *,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The file to write.", metavar="FILE")
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="The file format [default: from the -o extension].",
            metavar="cer|pem|p7b|pfx|sst",
        ),
    ] = None,
    with_private_key: Annotated[
        bool, typer.Option("--with-private-key", help="Include the private key (pfx, pem).")
    ] = False,
    no_key_password: Annotated[
        bool,
        typer.Option(
            "--no-key-password",
            help="With --format pem --with-private-key: write the key unencrypted, on purpose.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the -o file if it exists (refused by default).")
    ] = False,
    pfx_encryption: PfxEncryptionOpt = "modern",
    password_file: PasswordFileOpt = None,
    password_env: PasswordEnvOpt = None,
    store_password_env: StorePasswordEnvOpt = None,
    json: JsonOpt = False,
) -> None:
    """Export certificates from the store.

    cer writes one DER certificate; pem, p7b and sst take several selectors; pfx writes
    one certificate with its chain (and its key with --with-private-key), always with a
    password. Files holding a private key are written with mode 0600. An existing -o file
    (perhaps a key) is not replaced without --force. With --json, one document says what
    was written.
    """
    from smimecli.certs import export as exporter

    chosen = exporter.choose_format(fmt, output)
    check_pfx_encryption(pfx_encryption)
    exporter.check_request(chosen, len(selectors), with_private_key=with_private_key)
    _check_output(output, json=json, force=force)
    password = _export_password(
        chosen, with_private_key, no_key_password, password_file, password_env
    )
    with open_store(store_password_env, readonly=True) as store:
        picked = [store.select_one(selector) for selector in selectors]
        data = exporter.export(
            store,
            picked,
            chosen,
            with_private_key=with_private_key,
            password=password,
            pfx_encryption=pfx_encryption,
        )
    private = exporter.holds_private_key(chosen, with_private_key=with_private_key)
    write_output(data, output, mode=0o600 if private else None)
    info(f"wrote {len(picked)} certificate(s) to {output} ({chosen})")
    if json:
        certificates = [{"thumbprint": c.thumbprint, "subject": _subject(c.cert)} for c in picked]
        emit_json(
            {
                "output": str(output),
                "format": chosen,
                "private_key": private,
                "certificates": certificates,
            }
        )


def _check_output(output: Path, *, json: bool, force: bool) -> None:
    """--json needs a file (64); an existing file is replaced only with --force (73)."""
    from smimecli.errors import OutputError, UsageError

    if json and is_std(output):
        raise UsageError("--json needs -o FILE (standard output carries the export)")
    if not force and not is_std(output) and os.path.lexists(output):
        raise OutputError(f"{output} exists: refusing to replace it (use --force to overwrite)")


def _export_password(
    chosen: str,
    with_private_key: bool,
    no_key_password: bool,
    password_file: Path | None,
    password_env: str | None,
) -> bytes | None:
    """The export password: always for a .pfx (asked for on a terminal), for a PEM key
    when one is given; 64 for a .pfx without one, or a PEM key left unencrypted without
    --no-key-password."""
    from smimecli.errors import UsageError

    password = None
    if chosen == "pfx" or (with_private_key and (password_file or password_env)):
        from smimecli.passwords import read_password

        password = read_password(
            password_file=password_file,
            password_env=password_env,
            prompt="Export password: " if chosen == "pfx" else None,
        )
        if chosen == "pfx" and not password:
            raise UsageError(
                "a .pfx always needs a password: give --password-file or --password-env"
            )
    if with_private_key and chosen == "pem" and not password and not no_key_password:
        raise UsageError(
            "refusing to write an unencrypted private key: give --password-file or "
            "--password-env, or --no-key-password to write it in the clear on purpose"
        )
    return password


@app.command("list")
def list_(
    *,
    store_name: StoreNameOpt = None,
    email: Annotated[
        str | None,
        typer.Option(
            "--email",
            help="Only certificates naming a matching address (* and ?).",
            metavar="PATTERN",
        ),
    ] = None,
    expiring: Annotated[
        str | None,
        typer.Option(
            "--expiring",
            help="Only certificates expired or expiring within this period (30d, 4w); "
            "exit 1 when any is listed, for monitoring.",
            metavar="PERIOD",
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """List the store's certificates with their problems (expired, no emailProtection...).

    With --expiring the exit status is 1 when a certificate is listed, 0 when none.
    """
    import datetime as dt

    from smimecli.certs import info as certinfo

    limit = None
    if expiring is not None:
        limit = dt.datetime.now(dt.UTC) + _period(expiring)
    with open_store(readonly=True) as store:
        rows = certinfo.select(store, store_name, email=email, until=limit)
        docs = [certinfo.summary(r) for r in rows]
        terminal = not json and sys.stdout.isatty()
        everyone = [c.thumbprint for c in store.certificates()] if terminal else []
    if json:
        emit_json(docs)
    elif terminal:
        _print_rich(docs, everyone)
    else:
        _print_table(docs)
    if limit is not None and docs:
        raise typer.Exit(1)


def _period(text: str) -> Any:
    """``30d`` or ``4w`` as a timedelta (64 for anything else)."""
    import datetime as dt
    import re

    from smimecli.errors import UsageError

    found = re.fullmatch(r"\s*(\d{1,6})\s*([dwDW])\s*", text)
    if found is None:
        raise UsageError(f"--expiring {text!r}: give a period like 30d (days) or 4w (weeks)")
    count = int(found.group(1))
    return dt.timedelta(days=count * (7 if found.group(2).lower() == "w" else 1))


_COLUMNS = (
    "store",
    "subject",
    "emails",
    "issuer",
    "not after",
    "thumbprint",
    "key",
    "capabilities",
    "problems",
)


def _cells(doc: dict[str, Any]) -> list[str]:
    from smimecli.certs.info import capability_names

    # Subjects, addresses and issuers come from the certificates: no terminal controls.
    cells = [
        ",".join(doc["stores"]),
        doc["subject"],
        ",".join(doc["emails"]),
        doc["issuer"],
        doc["not_after"][:10],
        doc["thumbprint"],
        "yes" if doc["has_key"] else "no",
        ",".join(capability_names(doc["capabilities"])) or "-",
        "; ".join(doc["problems"]) or "-",
    ]
    return [printable(cell) for cell in cells]


def selector_lengths(thumbprints: list[str]) -> dict[str, int]:
    """Per thumbprint, the shortest prefix that selects it alone among ``thumbprints``
    (at least the 8 hex digits a selector needs)."""
    ordered = sorted(set(thumbprints))
    lengths: dict[str, int] = {}
    for index, thumb in enumerate(ordered):
        need = 8
        for neighbour in ordered[max(index - 1, 0) : index + 2]:
            if neighbour != thumb:
                common = 0
                while common < len(thumb) and thumb[common] == neighbour[common]:
                    common += 1
                need = max(need, common + 1)
        lengths[thumb] = min(need, len(thumb))
    return lengths


def _print_rich(docs: list[dict[str, Any]], everyone: list[str]) -> None:
    """The terminal table: dates, keys and thumbprint selectors never cut; the subject,
    its addresses (one a line), the issuer and the problems share one column that folds
    only a line longer than the terminal leaves room for."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from smimecli.cli.common import console

    lengths = selector_lengths(everyone + [doc["thumbprint"] for doc in docs])
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for name in ("thumbprint", "not after", "key", "store"):
        table.add_column(name, no_wrap=True, overflow="ignore")
    table.add_column("subject, emails, issuer, problems", overflow="fold", min_width=20)
    for doc in docs:
        # Text is never read as markup; printable() shows terminal controls as escapes.
        about = Text(printable(doc["subject"]), style="bold")
        for email in doc["emails"]:
            about.append("\n" + printable(email))
        about.append(f"\nissuer: {printable(doc['issuer'])}", style="dim")
        for problem in doc["problems"]:
            about.append(f"\nproblem: {printable(problem)}", style="red")
        table.add_row(
            doc["thumbprint"][: lengths[doc["thumbprint"]]],
            doc["not_after"][:10],
            "yes" if doc["has_key"] else "no",
            "\n".join(doc["stores"]),
            about,
        )
    console().print(table)


def _print_table(docs: list[dict[str, Any]]) -> None:
    rows = [list(_COLUMNS)] + [_cells(doc) for doc in docs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
        sys.stdout.write(line.rstrip() + "\n")


@app.command("show")
def show(
    selector: Annotated[str, typer.Argument(help="Thumbprint (8+ hex digits), e-mail or CN.")],
    *,
    json: JsonOpt = False,
) -> None:
    """Show one certificate in detail, with the reasons it may not be usable."""
    from smimecli.certs import info as certinfo

    with open_store(readonly=True) as store:
        doc = certinfo.details(store.select_one(selector))
    if json:
        emit_json(doc)
        return
    for label, value in doc.items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        elif value is None:
            value = "-"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        sys.stdout.write(f"{label.replace('_', ' ') + ':':<20} {printable(value)}\n")


_VERIFY_UNTRUSTED = 77
_CERT_SUFFIXES = (".pem", ".cer", ".crt", ".der", ".p7b", ".p7c", ".sst", ".eml")


@app.command("verify")
def verify(
    target: Annotated[
        str,
        typer.Argument(
            help="Thumbprint (8+ hex digits), e-mail or CN of a stored certificate, or a "
            "certificate file (PEM, DER, PKCS#7; further certificates in it help the chain).",
            metavar="SELECTOR|FILE",
        ),
    ],
    *,
    purpose: Annotated[
        str,
        typer.Option(
            "--purpose",
            help="What the certificate must be usable for: encrypt, sign or both.",
            metavar="encrypt|sign|both",
        ),
    ] = "both",
    json: JsonOpt = False,
) -> None:
    """Check a certificate: chain to the store's roots, validity, revocation, usage.

    The chain is built through the store's 'ca' certificates to a 'root'; revocations are
    those gen-crl recorded. Exit 0 when the certificate is trusted, within its validity,
    not revoked and usable for --purpose; 77 otherwise (the reasons are printed); 65 when
    the file is not a certificate; 66 when the file is missing.
    """
    import os

    from smimecli.certs import info as certinfo
    from smimecli.certs.formats import load_certificate_file
    from smimecli.errors import DataError, InputError, UsageError

    if purpose not in certinfo.PURPOSES:
        raise UsageError(f"unknown --purpose {purpose!r} (use encrypt, sign or both)")
    path = Path(target)
    is_file = path.exists() or os.sep in target or path.suffix.lower() in _CERT_SUFFIXES
    if is_file and not path.exists():
        raise InputError(f"cannot read {target}: no such file (give a file or a selector)")
    with open_store(create=False) as store:
        if is_file:
            entries = load_certificate_file(path)
            show_notices(entries.notices)
            if not entries:
                raise DataError(f"{target} holds no certificate")
            extra = [e.cert for e in entries[1:]]
            doc = certinfo.verification(
                store, entries[0].cert, str(path), purpose=purpose, extra=extra
            )
        else:
            stored = store.select_one(target)
            doc = certinfo.verification(store, stored.cert, stored.thumbprint, purpose=purpose)
    if json:
        emit_json(doc)
    else:
        _print_verify(doc)
    if not doc["ok"]:
        raise typer.Exit(_VERIFY_UNTRUSTED)


def _print_verify(doc: dict[str, Any]) -> None:
    def state(part: dict[str, Any]) -> str:
        return "yes" if part["usable"] else "no (" + "; ".join(part["problems"]) + ")"

    lines = [
        ("certificate", f"{doc['thumbprint']}  {doc['subject']}"),
        ("valid", f"{doc['not_before'][:10]} to {doc['not_after'][:10]}"),
        ("chain", " -> ".join(doc["chain"]) if doc["trusted"] else "none to a trusted root"),
        ("revoked", "yes" if doc["revoked"] else "no"),
        ("encryption", state(doc["encryption"])),
        ("signing", state(doc["signing"])),
        ("result", "OK" if doc["ok"] else "NOT OK: " + "; ".join(doc["problems"])),
    ]
    for label, value in lines:
        sys.stdout.write(f"{label + ':':<12} {printable(value)}\n")


@app.command("remove")
def remove(
    selectors: Annotated[
        list[str], typer.Argument(help="Thumbprint (8+ hex digits), e-mail address or CN.")
    ],
    *,
    store_name: StoreNameOpt = None,
    json: JsonOpt = False,
) -> None:
    """Remove certificates (with their keys) from the store, or from one named store.

    With --json, one document lists what was removed.
    """
    removed: list[dict[str, Any]] = []
    with open_store() as store, store.transaction():
        picked = [store.select_one(selector, store_name) for selector in selectors]
        for cert in {c.thumbprint: c for c in picked}.values():
            store.remove(cert.thumbprint, store_name)
            info(f"removed {cert.thumbprint}  {cert.subject}")
            removed.append(
                {
                    "thumbprint": cert.thumbprint,
                    "subject": cert.subject,
                    "stores": [store_name] if store_name else list(cert.store_names),
                }
            )
    if json:
        emit_json({"removed": removed})
