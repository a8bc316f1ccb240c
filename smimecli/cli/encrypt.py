"""``smimecli encrypt``: direct mode (--cert) and rules mode (--rules).

No ``from __future__ import annotations`` here: Typer would have to evaluate every
annotation string again on each run (about 10 ms of a gateway's per-message start-up).
"""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from smimecli.choices import (
    DEFAULT_CIPHER,
    Cipher,
    KeyTransport,
    MissingCertPolicy,
    OaepHash,
    RecipientId,
)
from smimecli.cli.common import (
    JsonOpt,
    OutputOpt,
    PasswordEnvOpt,
    PasswordFileOpt,
    emit_json,
    emit_json_line,
    info,
    input_name,
    is_std,
    open_store,
    show_notices,
    state,
    stdin_binary,
    stdout_binary,
    warn,
)
from smimecli.encrypt.request import EncryptRequest, Outcome, encrypt_one
from smimecli.text import printable

if TYPE_CHECKING:
    from rich.progress import Progress

    from smimecli.certs.direct import KeyOptions
    from smimecli.cms.recipients import Recipient
    from smimecli.encrypt.batch import BatchSettings
    from smimecli.sign.signers import Signer, SignerSource

InputsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Messages (.eml) or folders of messages; '-' or none: standard input. "
        "Several inputs or a folder need --out-dir.",
        metavar="[INPUT]...",
        show_default=False,
    ),
]


def _direct_recipients(
    cert_files: list[Path],
    addresses: list[str],
    options: "KeyOptions",
    password_file: Path | None,
    password_env: str | None,
) -> "list[Recipient]":
    """The recipients of --cert files and --to addresses; their notices go to stderr."""
    from smimecli.certs.direct import file_recipients, store_recipients
    from smimecli.passwords import read_password

    recipients: list[Recipient] = []
    if cert_files:
        password = read_password(password_file=password_file, password_env=password_env)
        recipients, notices = file_recipients(cert_files, options, password)
        show_notices(notices)
    if addresses:
        recipients += store_recipients(state().store_dir(), addresses, options)
    return recipients


def _signer_source(
    selector: str | None,
    pfx: Path | None,
    password_file: Path | None,
    password_env: str | None,
) -> "tuple[Signer, SignerSource]":
    """The signer of --sign-with (the store's 'my') or --sign-with-pfx, loaded here (a
    wrong password fails at once), and where batch workers load it again."""
    from smimecli.sign.signers import SignerSource, pfx_signer_source, signer_from_store

    if pfx is not None:
        return pfx_signer_source(pfx, password_file, password_env)
    assert selector is not None
    with open_store(readonly=True) as store:
        signer = signer_from_store(store, selector, pfx_option="--sign-with-pfx")
    source = SignerSource(
        selector=selector,
        store_dir=state().store_dir(),
        store_passphrase=state().store_passphrase,
    )
    return signer, source


def _status_line(name: str, report: "dict[str, object]") -> str:
    action = str(report.get("action", "")).upper()
    listed = report.get("recipients")
    entries = listed if isinstance(listed, list) else []
    who = ", ".join(str(r["recipient"]) for r in entries if "recipient" in r)
    detail = f" for {who}" if who and action == "ENCRYPTED" else ""
    cipher = f" ({report['cipher']})" if report.get("cipher") and detail else ""
    return f"{action} {name}{detail}{cipher}"


def encrypt(
    inputs: InputsArg = None,
    *,
    output: OutputOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            help="Batch mode: write each result here under its input's name.",
            metavar="DIR",
        ),
    ] = None,
    done_dir: Annotated[
        Path | None,
        typer.Option(
            "--done-dir",
            help="Batch mode: move each input here once its output is written and synced "
            "(a failed input stays); never overwrites: a taken name gets .1, .2...",
            metavar="DIR",
        ),
    ] = None,
    cert: Annotated[
        list[Path] | None,
        typer.Option(
            "--cert",
            help="Direct mode: encrypt to this certificate file (PEM, DER, .p7b, .pfx/.p12 "
            "public part); repeat for several recipients.",
            metavar="FILE",
        ),
    ] = None,
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to",
            help="Direct mode: encrypt to this address's usable certificate in the store "
            "('other', then 'my'); repeatable, combines with --cert.",
            metavar="ADDRESS",
        ),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help="Rules mode: pick certificates by this rules file (format: man smimecli-rules).",
            metavar="FILE",
        ),
    ] = None,
    recipient: Annotated[
        list[str] | None,
        typer.Option(
            "--recipient",
            help="Rules mode: envelope recipient (repeatable) [default: To, Cc, Bcc headers].",
            metavar="ADDR",
        ),
    ] = None,
    cipher: Annotated[
        Cipher | None,
        typer.Option(
            "--cipher",
            help="Content cipher; weak ones (3des, rc2-*) warn. [default: aes256]",
            show_default=False,
        ),
    ] = None,
    key_transport: Annotated[
        KeyTransport | None,
        typer.Option(
            "--key-transport",
            help="RSA key transport: rsa (PKCS#1 v1.5) or rsa-oaep. [default: rsa]",
            show_default=False,
        ),
    ] = None,
    oaep_hash: Annotated[
        OaepHash | None,
        typer.Option(
            "--oaep-hash",
            help="RSA-OAEP hash; implies rsa-oaep. [default: sha256]",
            show_default=False,
        ),
    ] = None,
    recipient_id: Annotated[
        RecipientId | None,
        typer.Option(
            "--recipient-id",
            help="Name recipients by issuer and serial, or by "
            "subject key identifier. [default: issuer-serial]",
            show_default=False,
        ),
    ] = None,
    convert_tnef: Annotated[
        bool,
        typer.Option(
            "--convert-tnef/--no-convert-tnef",
            help="Turn winmail.dat parts into plain MIME before encrypting.",
        ),
    ] = True,
    on_missing_cert: Annotated[
        MissingCertPolicy | None,
        typer.Option(
            "--on-missing-cert",
            help="Rules mode: a recipient without a usable "
            "certificate lets the message pass, rejects it (67) or defers it (75). "
            "[default: the rules file's]",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            min=1,
            help="Batch mode: worker processes; 1 works in this "
            "process. [default: one per CPU, at most 8 and one per 16 messages]",
            show_default=False,
        ),
    ] = None,
    sign_with: Annotated[
        str | None,
        typer.Option(
            "--sign-with",
            help="Direct mode: sign first (multipart/signed inside the envelope) with this "
            "certificate of the store's 'my' (thumbprint, email or CN) and its private key.",
            metavar="SELECTOR",
        ),
    ] = None,
    sign_with_pfx: Annotated[
        Path | None,
        typer.Option(
            "--sign-with-pfx",
            help="Direct mode: sign first with the key and certificate of this .pfx/.p12 "
            "(its password from --password-file or --password-env).",
            metavar="FILE",
        ),
    ] = None,
    json_output: JsonOpt = False,
    password_file: PasswordFileOpt = None,
    password_env: PasswordEnvOpt = None,
) -> None:
    """Encrypt messages to certificates (--cert), store addresses (--to) or by rules (--rules).

    One message from INPUT or standard input goes to -o OUTPUT or standard output; several
    INPUTs or a folder go to --out-dir under the same names. The result is an S/MIME
    enveloped message (application/pkcs7-mime) that keeps the original headers except
    Content-*, MIME-Version and Bcc. An already encrypted message passes unchanged.
    """
    _check_modes(
        direct=(bool(cert), bool(to)),
        rules=rules is not None,
        batch_output=(output, out_dir),
        direct_options=(cipher, key_transport, oaep_hash, recipient_id),
        signers=(sign_with, sign_with_pfx),
    )
    recipients: list[Recipient] = []
    if cert or to:
        if recipient:
            warn(
                f"--recipient is ignored in direct mode ({'--cert' if cert else '--to'} "
                "names the recipients)"
            )
        options = _key_options(key_transport, oaep_hash, recipient_id)
        recipients = _direct_recipients(
            list(cert or []), list(to or []), options, password_file, password_env
        )
    signer, signer_source = None, None
    if sign_with is not None or sign_with_pfx is not None:
        signer, signer_source = _signer_source(
            sign_with, sign_with_pfx, password_file, password_env
        )
    request = EncryptRequest(
        recipients=tuple(recipients),
        rules=rules,
        store_dir=state().store_dir() if rules is not None else None,
        envelope_recipients=tuple(recipient) if recipient else None,
        cipher=cipher.value if cipher is not None else DEFAULT_CIPHER,
        convert_tnef=convert_tnef,
        on_missing_cert=on_missing_cert.value if on_missing_cert is not None else None,
        signer=signer,
        store_passphrase=state().store_passphrase if rules is not None else None,
    )
    given = list(inputs or [])
    if done_dir is not None and out_dir is None:
        from smimecli.errors import UsageError

        raise UsageError("--done-dir needs batch mode (--out-dir DIR)")
    if len(given) < 2 and out_dir is None and not any(p.is_dir() for p in given if not is_std(p)):
        _single(given[0] if given else None, output, request, json_output=json_output)
        return
    out_dir = _check_batch(given, output, out_dir, done_dir)
    settings = _batch_settings(request, signer_source, done_dir)
    _batch(given, out_dir, settings, jobs=jobs, json_output=json_output)


def _check_modes(
    *,
    direct: tuple[bool, bool],
    rules: bool,
    batch_output: tuple[Path | None, Path | None],
    direct_options: tuple[object, ...],
    signers: tuple[str | None, Path | None],
) -> None:
    """The usage errors (64) of option combinations, before anything is read."""
    from smimecli.errors import UsageError

    if direct[0] and rules:
        raise UsageError("--cert and --rules are exclusive: give one of them")
    if direct[1] and rules:
        raise UsageError("--to and --rules are exclusive: the rules pick the certificates")
    if not any(direct) and not rules:
        raise UsageError(
            "give --cert FILE or --to ADDRESS (direct mode) or --rules FILE (rules mode)"
        )
    if batch_output[0] is not None and batch_output[1] is not None:
        raise UsageError("-o and --out-dir are exclusive")
    if rules and any(opt is not None for opt in direct_options):
        raise UsageError(
            "--cipher, --key-transport, --oaep-hash and --recipient-id apply to --cert; "
            "in rules mode set them in the rules file"
        )
    _cipher, key_transport, oaep_hash, _recipient_id = direct_options
    if key_transport is KeyTransport.rsa and oaep_hash is not None:
        raise UsageError("--oaep-hash needs --key-transport rsa-oaep (or no --key-transport)")
    if all(s is not None for s in signers):
        raise UsageError("give one of --sign-with SELECTOR and --sign-with-pfx FILE, not both")
    if rules and any(s is not None for s in signers):
        raise UsageError(
            "--sign-with and --sign-with-pfx apply to direct mode; in rules mode set "
            "sign = { signer = ... } or a [[signer]] table in the rules file"
        )


def _key_options(
    key_transport: KeyTransport | None, oaep_hash: OaepHash | None, recipient_id: RecipientId | None
) -> "KeyOptions":
    """--key-transport, --oaep-hash (which implies rsa-oaep) and --recipient-id."""
    from smimecli.certs.direct import KeyOptions

    transport = (
        "rsa-oaep"
        if oaep_hash is not None
        else (key_transport.value if key_transport is not None else "rsa")
    )
    return KeyOptions(
        key_transport=transport,
        oaep_hash=oaep_hash.value if oaep_hash is not None else "sha256",
        recipient_id=recipient_id.value if recipient_id is not None else "issuer-serial",
    )


def _check_batch(
    given: list[Path], output: Path | None, out_dir: Path | None, done_dir: Path | None
) -> Path:
    """Batch mode's usage errors (64) and --done-dir's checks; returns --out-dir."""
    from smimecli.errors import UsageError

    if output is not None:
        raise UsageError("several inputs need --out-dir DIR, not -o")
    if out_dir is None:
        raise UsageError("several inputs or a folder need --out-dir DIR")
    if done_dir is not None:
        _check_done_dir(done_dir, given)
    if any(is_std(p) for p in given) or not given:
        raise UsageError("batch mode (--out-dir) reads files, not standard input")
    return out_dir


def _check_done_dir(done_dir: Path, inputs: list[Path]) -> None:
    """--done-dir must be an existing folder (73) that holds none of the inputs (64)."""
    from smimecli.errors import OutputError, UsageError

    if not done_dir.is_dir():
        what = "is not a folder" if done_dir.exists() else "does not exist"
        raise OutputError(f"--done-dir {done_dir} {what}: create it first")
    done = done_dir.resolve()
    for path in inputs:
        folder = path if path.is_dir() else path.parent
        if folder.resolve() == done:
            raise UsageError(f"--done-dir {done_dir} holds the input {path}: choose another folder")


def _batch_settings(
    request: EncryptRequest, signer: "SignerSource | None", done_dir: Path | None
) -> "BatchSettings":
    """The request as batch workers receive it (certificates as DER, the rules file's
    path, the signer's source); a bad rules file is 78 here, at once."""
    from smimecli.encrypt import batch

    if isinstance(request.rules, Path):
        from smimecli.rules.load import load_rules

        load_rules(
            request.rules,
            store_dir=request.store_dir,
            store_passphrase=request.store_passphrase,
        )
        return batch.BatchSettings(
            rules=request.rules,
            store_dir=request.store_dir,
            store_passphrase=request.store_passphrase,
            envelope_recipients=request.envelope_recipients,
            on_missing_cert=request.on_missing_cert,
            done_dir=done_dir,
        )
    return batch.BatchSettings(
        recipients=tuple(batch.RecipientSpec.of(r) for r in request.recipients),
        cipher=request.cipher,
        convert_tnef=request.convert_tnef,
        signer=signer,
        done_dir=done_dir,
    )


def _batch(
    inputs: list[Path],
    out_dir: Path,
    settings: "BatchSettings",
    *,
    jobs: int | None,
    json_output: bool,
) -> None:
    """Batch mode: every message to --out-dir, --jobs workers, worst status wins."""
    from smimecli.encrypt import batch
    from smimecli.notices import ABOUT_SOURCES

    pairs = batch.plan_outputs(batch.expand_inputs(inputs), out_dir)
    progress = _progress(len(pairs))
    said: set[str] = set()  # source notices: once per batch, not once per message

    def on_result(result: batch.MessageResult) -> None:
        for notice in result.notices:
            if notice.code not in ABOUT_SOURCES:
                warn(f"{result.input}: {notice.text}")
            elif notice.text not in said:
                said.add(notice.text)
                warn(notice)
        if result.status:
            line = printable(f"smimecli: error: {result.input}: {result.error}")
            print(line, file=sys.stderr)
        elif state().verbose:
            info(_status_line(result.input, {"action": result.outcome, **result.report}))
        if json_output:
            emit_json_line(result.to_json())
        if progress is not None:
            progress.advance(progress.task_ids[0])

    try:
        if progress is not None:
            progress.start()
        workers = jobs if jobs is not None else batch.default_jobs(len(pairs))
        summary = batch.run_batch(pairs, settings, jobs=workers, on_result=on_result)
    finally:
        if progress is not None:
            progress.stop()
    show_notices(summary.notices)
    info(f"smimecli: {summary.line()}")
    if summary.status:
        raise typer.Exit(summary.status)


def _progress(total: int) -> "Progress | None":
    """A rich progress bar on stderr when it is a terminal (and not --quiet), else None."""
    if state().quiet or total < 2 or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from smimecli.cli.common import console

    progress = Progress(
        "encrypting",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
    )
    progress.add_task("encrypt", total=total)
    return progress


def _single(
    src_path: Path | None, output: Path | None, request: EncryptRequest, *, json_output: bool
) -> None:
    from smimecli.errors import DataError, UsageError
    from smimecli.files import open_input

    to_stdout = is_std(output)
    if json_output and to_stdout:
        raise UsageError(
            "--json needs -o OUTPUT or --out-dir (standard output carries the message)"
        )
    name = input_name(src_path)
    if is_std(src_path):
        src_in: BinaryIO = stdin_binary()
        if src_path is None and sys.stdin.isatty():
            import io

            info("smimecli: reading the message from standard input (end it with Ctrl-D)")
            # A terminal ends input once per Ctrl-D: read it whole, so one Ctrl-D ends it.
            src_in = io.BytesIO(src_in.read())
        outcome = _write(src_in, output, request, to_stdout)
    else:
        assert src_path is not None
        try:
            with open_input(src_path) as src:
                outcome = _write(src, output, request, to_stdout)
        except DataError as exc:
            if exc.message.startswith(f"{src_path}:"):
                raise
            # Name the file, as batch mode does for each of its messages.
            raise DataError(f"{src_path}: {exc.message}") from exc
    show_notices(outcome.notices)
    report = outcome.to_json()
    if json_output:
        emit_json({"input": name, "output": str(output), **report})
    elif state().verbose:
        info(_status_line(name, report))


def _write(src: BinaryIO, output: Path | None, request: EncryptRequest, to_stdout: bool) -> Outcome:
    from smimecli.files import atomic_output

    if to_stdout:
        out = stdout_binary()
        outcome = encrypt_one(request, src, out)
        out.flush()
        return outcome
    assert output is not None
    with atomic_output(output) as dst:
        return encrypt_one(request, src, dst)
