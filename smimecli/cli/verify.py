"""``smimecli verify``: check the S/MIME signature of one message and trust in its signer.

No ``from __future__ import annotations`` here: Typer would have to evaluate every
annotation string again on each run (about 10 ms of a gateway's per-message start-up).
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from smimecli.cli.common import (
    emit_json,
    info,
    input_name,
    is_std,
    show_notices,
    state,
    stdin_binary,
    stdout_binary,
)
from smimecli.text import shown_list


def _read(path: Path | None) -> bytes:
    from smimecli.errors import DataError
    from smimecli.verify.message import MAX_MESSAGE

    if is_std(path):
        data = bytes(stdin_binary().read(MAX_MESSAGE + 1))
    else:
        from smimecli.files import open_input

        assert path is not None
        with open_input(path) as src:
            data = src.read(MAX_MESSAGE + 1)
    if len(data) > MAX_MESSAGE:
        raise DataError(
            f"{input_name(path)}: larger than {MAX_MESSAGE >> 20} MiB, too large to verify"
        )
    return data


def _write_unsigned(signature: Any, output: Path) -> None:
    """The message without its signature to -o (a file, atomically, or '-')."""
    from smimecli.verify.message import write_unsigned

    if is_std(output):
        out = stdout_binary()
        write_unsigned(signature, out)
        out.flush()
        return
    from smimecli.files import atomic_output

    with atomic_output(output) as dst:
        write_unsigned(signature, dst)


def _print_report(doc: dict[str, Any]) -> None:
    signer = doc["signer"] or {}
    time = doc["signing_time"]
    lines = [
        ("signed by", signer.get("subject", "unknown (no certificate)")),
        ("email", shown_list(signer.get("emails", []))),
        ("signing time", time.replace("+00:00", "Z") if time else "-"),
        ("algorithms", f"{doc['signature_algorithm']} ({doc['digest_algorithm']})"),
        ("form", doc["form"] + (f", {doc['nested']} content inside" if doc["nested"] else "")),
        ("chain", " -> ".join(doc["chain"]) or "-"),
    ]
    for label, value in lines:
        info(f"{label + ':':<14}{value}")
    result = {"valid": "valid and trusted", "untrusted": "NOT TRUSTED", "invalid": "INVALID"}
    info(f"{'result:':<14}{result[doc['status']]}")
    for reason in doc["reasons"]:
        info(f"{'reason:':<14}{reason}")


def verify(
    input_file: Annotated[
        Path | None,
        typer.Argument(
            help="The signed message (.eml); '-' or none: standard input.",
            metavar="[INPUT]",
            show_default=False,
        ),
    ] = None,
    *,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write the message without its signature layer here ('-': standard output).",
            metavar="CONTENT",
        ),
    ] = None,
    ca: Annotated[
        list[Path] | None,
        typer.Option(
            "--ca",
            help="Trust this root certificate file too (PEM, DER, .p7b); repeatable.",
            metavar="FILE",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on standard output.")
    ] = False,
) -> None:
    """Verify the S/MIME signature of a message (multipart/signed or opaque signed-data).

    Checks the signature and the message digest, the signer's validity at the signing time
    and now, emailProtection, and the chain to the store's 'root' certificates and any
    --ca; a signer certificate that does not name the From: address is a warning. The
    report goes to standard error (--json: standard output). Exit 0 valid and trusted, 65
    not signed, damaged or altered, 77 a valid signature by a signer that is not trusted.
    An encrypted message must be decrypted first; an encrypted message inside a signature
    is verified and -o writes the encrypted content.
    """
    import logging

    from smimecli.errors import AuthError, DataError, UsageError
    from smimecli.verify.report import judge_message
    from smimecli.verify.trust import load_certificate_files, store_trust

    if json_output and output is not None and is_std(output):
        raise UsageError("--json needs -o CONTENT as a file (standard output carries the JSON)")
    skipped: list[Any] = []
    extra_roots = load_certificate_files(list(ca or []), skipped)
    show_notices(skipped)
    data = _read(input_file)
    trust = store_trust(state().store_dir())
    name = input_name(input_file)
    report = judge_message(
        data,
        roots=[*trust.roots, *extra_roots],
        intermediates=trust.intermediates,
        extra_certificates=trust.every,
        what=name,
    )
    doc = {"input": name, **report.to_json()}
    log = logging.getLogger("smimecli")
    for notice in report.notices:
        log.warning(notice.text)
    if json_output:
        emit_json(doc)
    else:
        _print_report(doc)
    if report.status == "invalid":
        raise DataError(f"{name}: the signature does not hold: {'; '.join(report.reasons)}")
    if output is not None:
        _write_unsigned(report.signature, output)
    if report.status == "untrusted":
        raise AuthError(
            f"{name}: the signature is valid but the signer is not trusted: "
            f"{'; '.join(report.reasons)} (add its root with --ca or 'certs import "
            "--store-name root')"
        )
