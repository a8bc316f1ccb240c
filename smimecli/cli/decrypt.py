"""``smimecli decrypt`` and ``smimecli inspect``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smimecli.cli.common import (
    JsonOpt,
    OutputOpt,
    PasswordEnvOpt,
    PasswordFileOpt,
    emit_json,
    input_name,
    is_std,
    state,
    stdin_binary,
    stdout_binary,
)
from smimecli.text import printable

InputArg = Annotated[
    Path | None,
    typer.Argument(
        help="The message (.eml), or a DER/PEM CMS file; '-' or none: standard input.",
        metavar="[INPUT]",
        show_default=False,
    ),
]


def _load_key(
    key: Path, cert: Path | None, password_file: Path | None, password_env: str | None
) -> Any:
    """The private key (and its certificate) from --key/--cert, asking for a password only
    when the key turns out to need one and no password source was given."""
    from smimecli.certs.keys import cert_matches_key, load_certificate, load_private_key
    from smimecli.cms.unwrap import KeyIdentity
    from smimecli.errors import UsageError
    from smimecli.passwords import load_with_password, read_password

    password = read_password(password_file=password_file, password_env=password_env)
    loaded = load_with_password(lambda secret: load_private_key(key, secret), password, str(key))
    own = loaded.cert
    if cert is not None:
        own = load_certificate(cert)
        if not cert_matches_key(own, loaded.key):
            raise UsageError(f"--cert {cert} does not belong to the private key in {key}")
    return KeyIdentity(loaded.key, own)


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
    from smimecli.decrypt.message import decrypt_message, lazy_store_finder, store_key_lookup
    from smimecli.files import atomic_output, open_input
    from smimecli.streams import CHUNK

    name = input_name(input)
    identity = None
    if key is not None:
        identity = _load_key(key, cert, password_file, password_env)
    elif cert is not None:
        from smimecli.errors import UsageError

        raise UsageError("--cert needs --key (the store's certificates carry their own)")
    lookup = store_key_lookup(state().store_dir()) if identity is None else None
    finder = lazy_store_finder(state().store_dir())
    layers: list[Any] = []
    with contextlib.ExitStack() as stack:
        raw = stdin_binary() if is_std(input) else None
        if raw is not None:
            # A copy, so that a signature around the envelope can be verified afterwards.
            src: Any = _Recorder(raw, stack.enter_context(spool()))
        else:
            assert input is not None
            src = stack.enter_context(open_input(input))

        def run(dst: Any) -> list[Any]:
            decrypt_message(
                src,
                dst,
                identity,
                key_lookup=lookup,
                what=name,
                store_finder=finder,
                on_signature_layers=layers.extend,
            )
            verdicts = _judge_signatures(src, input, dst.copy, bool(layers), name)
            if require_signature:
                from smimecli.verify.verdicts import require_signature as require

                require(verdicts, name)  # inside atomic_output: nothing is written
            return verdicts

        if output is not None and not is_std(output):
            # A plaintext: a new file is 0600, an existing one keeps its mode.
            with atomic_output(output, private=True) as dst:
                run(_Recorder(dst, stack.enter_context(spool())))
            return
        # Standard output cannot be taken back: spool, and write only a complete result.
        held = stack.enter_context(spool())
        run(_Recorder(held, held, limit=-1))
        held.seek(0)
        out = stdout_binary()
        shutil.copyfileobj(held, out, CHUNK)
        out.flush()


class _Recorder:
    """A stream whose reads or writes pass through, with a copy of the first
    ``MAX_MESSAGE + 1`` bytes kept in ``copy`` (a spool: memory stays flat), for the
    signature checks after decryption. ``limit=-1``: the stream is its own copy."""

    def __init__(self, stream: Any, copy: Any, limit: int | None = None) -> None:
        from smimecli.verify.message import MAX_MESSAGE

        self.stream = stream
        self.copy = copy
        self.limit = MAX_MESSAGE + 1 if limit is None else limit
        self.kept = 0

    def _keep(self, data: bytes | bytearray | memoryview) -> None:
        if 0 <= self.kept < self.limit:
            chunk = bytes(data[: self.limit - self.kept])
            self.copy.write(chunk)
            self.kept += len(chunk)

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.stream.read(size)
        self._keep(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data: bytes = self.stream.readline(size)
        self._keep(data)
        return data

    def write(self, data: bytes | bytearray | memoryview) -> int:
        written: int = self.stream.write(data)
        self._keep(data)
        return written

    def flush(self) -> None:
        self.stream.flush()


def _judge_outer(src: Any, input: Path | None, name: str) -> list[Any]:
    """inspect: verify each signature layer around the envelope; one warning line each."""
    import logging

    from smimecli.cli.verify import _store_certificates
    from smimecli.files import open_input
    from smimecli.verify.message import MAX_MESSAGE
    from smimecli.verify.verdicts import judge_layers

    roots, cas, every = _store_certificates()
    if is_std(input):
        src.seek(0)
        data = src.read(MAX_MESSAGE + 1)
    else:
        assert input is not None
        with open_input(input) as again:
            data = again.read(MAX_MESSAGE + 1)
    verdicts = judge_layers(
        data, "outer", roots=roots, intermediates=cas, extra_certificates=every, what=name
    )
    for verdict in verdicts:
        logging.getLogger("smimecli").warning(verdict.line())
    return verdicts


def _judge_signatures(
    src: Any, input: Path | None, plaintext_copy: Any, outer: bool, name: str
) -> list[Any]:
    """Verify the signature around the envelope (``outer``: the input had one) and the one
    inside (a signed plaintext); one warning line each."""
    import logging

    from smimecli.cli.verify import _store_certificates
    from smimecli.verify.verdicts import is_signed, judge, judge_layers

    plaintext_copy.seek(0)
    inner = is_signed(plaintext_copy.read(1 << 20))
    if not outer and not inner:
        return []
    roots, cas, every = _store_certificates()
    trust: dict[str, Any] = {
        "roots": roots,
        "intermediates": cas,
        "extra_certificates": every,
        "what": name,
    }
    verdicts = []
    if outer:
        verdicts.extend(judge_layers(_input_copy(src, input), "outer", **trust))
    if inner:
        plaintext_copy.seek(0)
        verdicts.append(judge(plaintext_copy.read(), "inner", **trust))
    log = logging.getLogger("smimecli")
    for verdict in verdicts:
        log.warning(verdict.line())
    return verdicts


def _input_copy(src: Any, input: Path | None) -> bytes:
    """The input again (up to the size verify reads): its file, or the recorded stdin."""
    from smimecli.files import open_input
    from smimecli.verify.message import MAX_MESSAGE

    if isinstance(src, _Recorder):
        src.copy.seek(0)
        return bytes(src.copy.read())
    assert input is not None
    with open_input(input) as again:
        return bytes(again.read(MAX_MESSAGE + 1))


_STATUS_WORDS = {
    "valid": "valid and trusted",
    "untrusted": "valid, signer NOT TRUSTED",
    "invalid": "INVALID",
}


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
    for number, rec in enumerate(report.recipients, 1):
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
    from smimecli.decrypt.message import inspect_message, open_store_if_exists, store_finder
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
        store = open_store_if_exists(state().store_dir())
        if store is not None:
            stack.callback(store.close)
        report = inspect_message(src, store_finder=store_finder(store), what=name)
        verdicts = _judge_outer(src, input, name) if report.signature_layers else []
    if json:
        emit_json({**report.as_json(), "signatures": [v.to_json() for v in verdicts]})
    else:
        _print_report(report, verdicts)
