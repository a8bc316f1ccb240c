"""``smimecli decrypt`` and ``smimecli inspect``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smimecli.cli.common import (
    JsonOpt,
    OutputOpt,
    PasswordEnvOpt,
    PasswordFileOpt,
    emit_json,
    input_name,
    is_std,
    show_notices,
    state,
    stdin_binary,
    stdout_binary,
)
from smimecli.text import printable

if TYPE_CHECKING:
    pass

InputArg = Annotated[
    Path | None,
    typer.Argument(
        help="The message (.eml), or a DER/PEM CMS file; '-' or none: standard input.",
        metavar="[INPUT]",
        show_default=False,
    ),
]


def decrypt(
    input: InputArg = None,
    *,
    output: OutputOpt = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="Private key: .pfx/.p12, or PEM/DER PKCS#8 or traditional key "
            "(encrypted or not). Default: the store's personal certificates.",
            metavar="FILE",
        ),
    ] = None,
    cert: Annotated[
        Path | None,
        typer.Option(
            "--cert",
            help="The key's certificate (PEM or DER), to pick its recipient by issuer/serial "
            "or SKI; a .pfx carries it already.",
            metavar="FILE",
        ),
    ] = None,
    password_file: PasswordFileOpt = None,
    password_env: PasswordEnvOpt = None,
    require_signature: Annotated[
        bool,
        typer.Option(
            "--require-signature",
            help="Write nothing unless the message carries a signature (inside or outside "
            "the envelope) that holds and whose signer is trusted: 65 not signed or "
            "altered, 77 signer not trusted.",
        ),
    ] = False,
) -> None:
    """Decrypt an S/MIME enveloped message with a private key.

    Reads application/pkcs7-mime (and x-pkcs7-mime, octet-stream *.p7m) messages and bare
    DER/BER or PEM CMS, EnvelopedData and AuthEnvelopedData (AES-GCM), from OpenSSL,
    Thunderbird/NSS, gpgsm, Outlook and smimecli. The output is the decrypted message with
    the outer headers restored (a readable .eml); a bare CMS input gives the bare content.
    Without --key, a private key in the store's personal certificates that matches a
    recipient is used. Signatures around the envelope and inside it are verified (as
    'smimecli verify' does) and reported on one warning line each. Exit 77: no key for any
    recipient (or the message was altered), or a wrong password; 65: not a usable S/MIME
    message.
    """
    import contextlib
    import shutil

    from smimecli.cms import spool
    from smimecli.decrypt.keys import lazy_store_finder, load_key_identity, store_key_lookup
    from smimecli.decrypt.signatures import Recorder, decrypt_and_judge
    from smimecli.files import atomic_output, open_input
    from smimecli.streams import CHUNK

    name = input_name(input)
    identity = None
    if key is not None:
        from smimecli.passwords import read_password

        password = read_password(password_file=password_file, password_env=password_env)
        identity = load_key_identity(key, cert, password)
    elif cert is not None:
        from smimecli.errors import UsageError

        raise UsageError("--cert needs --key (the store's certificates carry their own)")
    store_dir = state().store_dir()
    lookup = store_key_lookup(store_dir, state().store_passphrase) if identity is None else None
    finder = lazy_store_finder(store_dir)
    with contextlib.ExitStack() as stack:
        raw = stdin_binary() if is_std(input) else None
        if raw is not None:
            # A copy, so that a signature around the envelope can be verified afterwards.
            src: Any = Recorder(raw, stack.enter_context(spool()))
        else:
            assert input is not None
            src = stack.enter_context(open_input(input))

        def run(dst: Any) -> None:
            judged = decrypt_and_judge(
                src,
                dst,
                identity,
                input=None if raw is not None else input,
                store_dir=store_dir,
                key_lookup=lookup,
                store_finder=finder,
                what=name,
            )
            show_notices(judged.notices)
            if require_signature:
                from smimecli.verify.verdicts import require_signature as require

                require(judged.verdicts, name)  # inside atomic_output: nothing is written

        if output is not None and not is_std(output):
            # A plaintext: a new file is 0600, an existing one keeps its mode.
            with atomic_output(output, private=True) as dst:
                run(Recorder(dst, stack.enter_context(spool())))
            return
        # Standard output cannot be taken back: spool, and write only a complete result.
        held = stack.enter_context(spool())
        run(Recorder(held, held, limit=-1))
        held.seek(0)
        out = stdout_binary()
        shutil.copyfileobj(held, out, CHUNK)
        out.flush()


_STATUS_WORDS = {
    "valid": "valid and trusted",
    "untrusted": "valid, signer NOT TRUSTED",
    "invalid": "INVALID",
}


# Recipients listed one by one in the text report; --json lists them all.
SHOWN_RECIPIENTS = 100


def _print_report(report: Any, verdicts: list[Any]) -> None:
    lines: list[str] = []
    if report.headers:
        lines.append("Headers:")
        lines.extend(f"  {name}: {value}" for name, value in report.headers)
    lines.append(f"CMS content type: {report.content_type} ({report.content_type_oid})")
    if report.signature_layers:
        found = {verdict.status for verdict in verdicts}
        worst = next((s for s in ("invalid", "untrusted", "valid") if s in found), None)
        judged = f": {_STATUS_WORDS[worst]}" if worst else ", not verified"
        lines.append(f"Signature layers: {report.signature_layers} (outside the envelope{judged})")
    if report.cipher is not None:
        cipher = report.cipher
        bits = f", {cipher['key_bits']}-bit key" if cipher["key_bits"] else ""
        note = "" if cipher["supported"] else ", not supported"
        lines.append(f"Content cipher: {cipher['name']} ({cipher['oid']}{bits}{note})")
        lines.append(f"Recipients: {len(report.recipients)}")
    for number, rec in enumerate(report.recipients[:SHOWN_RECIPIENTS], 1):
        ident = rec["id"]
        if ident["type"] == "issuer_serial":
            who = f"issuer {ident['issuer']}, serial {ident['serial']}"
        elif ident["type"] == "ski":
            who = f"subject key identifier {ident['key_id']}"
        else:
            who = f"KEK id {ident['key_id']}"
        lines.append(f"  {number}. {rec['kind']}: {who}")
        algorithm = rec["key_encryption"]
        if "oaep_hash" in rec:
            algorithm += f", hash {rec['oaep_hash']}, MGF1 {rec['mgf1_hash']}"
            if rec["oaep_label"]:
                algorithm += f", label {rec['oaep_label']}"
        if rec["kind"] == "kari":
            algorithm += f", KDF hash {rec['kdf_hash']}, key wrap {rec['key_wrap']}"
        lines.append(f"     key encryption: {algorithm} ({rec['key_encryption_oid']})")
        for match in rec["store"]:
            key_note = ", private key held" if match["has_key"] else ""
            lines.append(f"     store: {match['subject']} [{match['thumbprint']}]{key_note}")
        if not rec["store"] and rec["kind"] != "kekri":
            lines.append("     store: no matching certificate")
    if len(report.recipients) > SHOWN_RECIPIENTS:
        more = len(report.recipients) - SHOWN_RECIPIENTS
        lines.append(f"  ... and {more:,} more recipients (--json lists them all)")
    # Header values and names come from the sender: no terminal controls reach the screen.
    print("\n".join(printable(line) for line in lines))


def inspect(input: InputArg = None, *, json: JsonOpt = False) -> None:
    """Show what an S/MIME message holds (recipients, algorithms) without a key.

    Prints the outer headers, the CMS content type, the content cipher (name, OID, key
    size) and each recipient: kind (ktri, kari, kekri), identifier (issuer DN and serial in
    hex, or subject key identifier), key-encryption algorithm with its OAEP or KDF hash, and
    the matching store certificate if any. A signature around the envelope is verified
    (as 'smimecli verify' does) and reported on one warning line.
    """
    import contextlib
    import shutil

    from smimecli.cms import spool
    from smimecli.decrypt.signatures import inspect_and_judge
    from smimecli.files import open_input
    from smimecli.streams import CHUNK

    name = input_name(input)
    with contextlib.ExitStack() as stack:
        if is_std(input):
            # Kept, so that a signature around the envelope can be verified afterwards.
            src = stack.enter_context(spool())
            shutil.copyfileobj(stdin_binary(), src, CHUNK)
            src.seek(0)
        else:
            assert input is not None
            src = stack.enter_context(open_input(input))
        again = None if is_std(input) else input
        judged = inspect_and_judge(src, again, store_dir=state().store_dir(), what=name)
    show_notices(judged.notices)
    report, verdicts = judged.report, judged.verdicts
    if json:
        emit_json({**report.as_json(), "signatures": [v.to_json() for v in verdicts]})
    else:
        _print_report(report, verdicts)
