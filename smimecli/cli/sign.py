"""``smimecli sign``: sign one message with a store certificate (--signer) or a .pfx.

No ``from __future__ import annotations`` here: Typer would have to evaluate every
annotation string again on each run (about 10 ms of a gateway's per-message start-up).
"""

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from smimecli.cli.common import (
    JsonOpt,
    OutputOpt,
    PasswordEnvOpt,
    PasswordFileOpt,
    emit_json,
    info,
    input_name,
    is_std,
    open_store,
    state,
    stdin_binary,
    stdout_binary,
)


class Hash(StrEnum):
    """The digest of the signature."""

    sha256 = "sha256"
    sha384 = "sha384"
    sha512 = "sha512"


def _signer_from_store(selector: str) -> tuple[Any, Any, list[Any], str]:
    from smimecli.sign.signers import signer_from_store

    with open_store(readonly=True) as store:
        found = signer_from_store(store, selector)
    return found.cert, found.key, list(found.chain), found.thumbprint


def _signer_from_pfx(
    pfx: Path, password_file: Path | None, password_env: str | None
) -> tuple[Any, Any, list[Any], str]:
    from smimecli.sign.signers import signer_from_pfx

    found = signer_from_pfx(pfx, password_file, password_env)
    return found.cert, found.key, list(found.chain), found.thumbprint


def sign(
    input_file: Annotated[
        Path | None,
        typer.Argument(
            help="The message (.eml); '-' or none: standard input.",
            metavar="[INPUT]",
            show_default=False,
        ),
    ] = None,
    *,
    output: OutputOpt = None,
    signer: Annotated[
        str | None,
        typer.Option(
            "--signer",
            help="Sign with this certificate of the store's 'my' (thumbprint, email or CN); "
            "it needs its private key.",
            metavar="SELECTOR",
        ),
    ] = None,
    signer_pfx: Annotated[
        Path | None,
        typer.Option(
            "--signer-pfx",
            help="Sign with the key and certificate of this .pfx/.p12.",
            metavar="FILE",
        ),
    ] = None,
    password_file: PasswordFileOpt = None,
    password_env: PasswordEnvOpt = None,
    opaque: Annotated[
        bool,
        typer.Option(
            "--opaque",
            help="application/pkcs7-mime signed-data (readable only with S/MIME) instead of "
            "multipart/signed.",
        ),
    ] = False,
    hash_name: Annotated[
        Hash, typer.Option("--hash", help="The digest algorithm of the signature.")
    ] = Hash.sha256,
    pss: Annotated[
        bool, typer.Option("--pss", help="RSA keys: sign with RSASSA-PSS instead of PKCS#1 v1.5.")
    ] = False,
    no_chain: Annotated[
        bool,
        typer.Option(
            "--no-chain", help="Include only the signer's certificate, not its issuing CAs."
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Sign a message (S/MIME, RFC 8551).

    The message from INPUT or standard input goes to -o OUTPUT or standard output as
    multipart/signed with a detached smime.p7s signature (--opaque: one
    application/pkcs7-mime signed-data part). The outer headers stay as they are; the body
    is made 7-bit and CRLF-safe before signing so no relay can break the signature. The
    chain up to (not including) the root goes with it, from the store's 'ca' and 'root'
    or from the .pfx, unless --no-chain. Exit 77 when the signer has no private key or
    the password is wrong, 65 when the input is not a message.
    """
    from smimecli.errors import UsageError

    if (signer is None) == (signer_pfx is None):
        raise UsageError("give exactly one of --signer SELECTOR and --signer-pfx FILE")
    if signer is not None and (password_file is not None or password_env is not None):
        raise UsageError("--password-file and --password-env apply to --signer-pfx")
    to_stdout = is_std(output)
    if json_output and to_stdout:
        raise UsageError("--json needs -o OUTPUT (standard output carries the message)")
    if signer is not None:
        cert, key, chain, thumb = _signer_from_store(signer)
    else:
        assert signer_pfx is not None
        cert, key, chain, thumb = _signer_from_pfx(signer_pfx, password_file, password_env)
    _warn_validity(cert)
    from smimecli.sign.message import SignOptions

    options = SignOptions(
        hash=hash_name.value,
        scheme="pss" if pss else "pkcs1v15",
        detached=not opaque,
        chain=() if no_chain else tuple(chain),
    )
    name = input_name(input_file)
    if is_std(input_file):
        outcome = _write(stdin_binary(), output, cert, key, options, to_stdout)
    else:
        from smimecli.files import open_input

        assert input_file is not None
        with open_input(input_file) as src:
            outcome = _write(src, output, cert, key, options, to_stdout)
    from smimecli.certs.names import display_name

    if json_output:
        emit_json(
            {
                "input": name,
                "output": str(output),
                "form": outcome.form,
                "micalg": outcome.micalg,
                "signer": {"thumbprint": thumb, "subject": display_name(cert.subject)},
                "chain": [display_name(c.subject) for c in options.chain],
            }
        )
    elif state().verbose:
        info(f"SIGNED {name} as {display_name(cert.subject)} ({outcome.form}, {outcome.micalg})")


def _warn_validity(cert: Any) -> None:
    import datetime as dt
    import logging

    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        from smimecli.certs.names import display_name

        logging.getLogger("smimecli").warning(
            f"the signer's certificate {display_name(cert.subject)} is not valid now "
            f"(valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}): "
            "recipients will not trust the signature"
        )


def _write(
    src: Any, output: Path | None, cert: Any, key: Any, options: Any, to_stdout: bool
) -> Any:
    from smimecli.sign.message import sign_message

    if to_stdout:
        out = stdout_binary()
        outcome = sign_message(src, out, cert=cert, key=key, options=options)
        out.flush()
        return outcome
    from smimecli.files import atomic_output

    assert output is not None
    with atomic_output(output) as dst:
        return sign_message(src, dst, cert=cert, key=key, options=options)
