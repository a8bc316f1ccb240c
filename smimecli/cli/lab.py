"""``smimecli gen-root`` and ``smimecli issue-user``: lab certificates.

The commands validate every option, read the passwords and find the signer before any key
is generated; files are written atomically and only when the store (unless --no-store)
took the new certificate too, so a failure leaves neither files nor store entries.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smimecli.cli.common import (
    JsonOpt,
    PasswordEnvOpt,
    PasswordFileOpt,
    PfxEncryptionOpt,
    check_pfx_encryption,
    emit_json,
    info,
    open_store,
    state,
)
from smimecli.text import printable

if TYPE_CHECKING:
    import datetime as dt

    from smimecli.certs.store import Store
    from smimecli.lab import Issued, KeySpec, Signer, UserSpec
    from smimecli.notices import Notice

_ROOT_KEY_USAGE = "CRLSign,CertSign,KeyAgreement,DataEncipherment,KeyEncipherment,DigitalSignature"
log = logging.getLogger("smimecli")

# --- options shared by both commands ------------------------------------------------------

KeyAlgorithmOpt = Annotated[
    str,
    typer.Option(
        "--key-algorithm", help="Key pair to generate.", metavar="rsa|ecdsa-p256|ecdsa-p384"
    ),
]
KeyLengthOpt = Annotated[
    int | None,
    typer.Option(
        "--key-length",
        help="RSA key size in bits, 2048 to 16384 (default 2048); "
        "for ECDSA only the curve size (256, 384) is accepted.",
        metavar="BITS",
        show_default=False,
    ),
]
HashOpt = Annotated[
    str, typer.Option("--hash", help="Signature hash.", metavar="sha256|sha384|sha512")
]
OutPfxOpt = Annotated[
    Path | None,
    typer.Option(
        "--out-pfx",
        help="Write certificate, private key and chain as a password-protected .pfx (0600).",
        metavar="FILE",
    ),
]
OutCerOpt = Annotated[
    Path | None,
    typer.Option("--out-cer", help="Write the certificate as DER (.cer).", metavar="FILE"),
]
OutPemOpt = Annotated[
    Path | None,
    typer.Option(
        "--out-pem", help="Write the certificate as PEM (certificate only).", metavar="FILE"
    ),
]
OutKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--out-key",
        help="Write the private key as PEM PKCS#8 encrypted with the password (0600).",
        metavar="FILE",
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace --out-pfx/--out-key/--out-cer/--out-pem files that exist "
        "(refused by default: a CA key is not replaced by accident).",
    ),
]
NoStoreOpt = Annotated[
    bool, typer.Option("--no-store", help="Do not add the certificate to the store.")
]
FriendlyNameOpt = Annotated[
    str | None,
    typer.Option(
        "--friendly-name", help="Friendly name in the .pfx and the store.", metavar="NAME"
    ),
]
DaysHelp = "Validity in days from now (notBefore is 10 minutes in the past)."
NotBeforeOpt = Annotated[
    str | None,
    typer.Option(
        "--not-before",
        help="Start of validity: ISO 8601 date or date-time, UTC (e.g. 2030-01-31T08:00:00Z); "
        "--days then count from it.",
        metavar="DATE",
    ),
]
NotAfterOpt = Annotated[
    str | None,
    typer.Option(
        "--not-after",
        help="End of validity: ISO 8601 date or date-time, UTC (replaces --days).",
        metavar="DATE",
    ),
]
CrlUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--crl-url",
        help="Put this CRL distribution point (http:// URL of the issuer's CRL) in the "
        "certificate.",
        metavar="URL",
    ),
]


CaSubjectOpt = Annotated[
    str,
    typer.Option("--subject", help='Subject, Windows style: "CN=Name,O=\\"Org, Inc.\\",C=US".'),
]


def _dates(
    not_before: str | None, not_after: str | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    from smimecli.lab import parse_date

    return (
        None if not_before is None else parse_date(not_before, "--not-before"),
        None if not_after is None else parse_date(not_after, "--not-after"),
    )


# --- helpers ------------------------------------------------------------------------------


@dataclass
class _Outputs:
    """The files asked for, and the password they need."""

    pfx: Path | None
    cer: Path | None
    pem: Path | None
    key: Path | None
    pfx_encryption: str
    force: bool = False

    def check(self) -> None:
        from smimecli.errors import UsageError

        check_pfx_encryption(self.pfx_encryption)
        given = [p.resolve() for p in (self.pfx, self.cer, self.pem, self.key) if p is not None]
        if len(set(given)) != len(given):
            raise UsageError("--out-pfx, --out-cer, --out-pem and --out-key need different files")
        self.refuse_existing()

    def refuse_existing(self) -> None:
        """Refuse (73) to replace any existing output file unless --force; run before
        anything is generated or written, so nothing changes when one exists."""
        if self.force:
            return
        import os

        from smimecli.errors import OutputError

        for path in (self.pfx, self.key, self.cer, self.pem):
            if path is not None and os.path.lexists(path):
                raise OutputError(
                    f"{path} exists: refusing to replace it (use --force to overwrite)"
                )

    @property
    def needs_password(self) -> bool:
        return self.pfx is not None or self.key is not None

    def password(self, password_file: Path | None, password_env: str | None) -> bytes | None:
        """The password protecting the .pfx / key file: file, variable, or asked twice."""
        if not self.needs_password:
            return None
        from smimecli.errors import UsageError
        from smimecli.passwords import read_password

        password = read_password(
            password_file=password_file,
            password_env=password_env,
        )
        what = "--out-pfx" if self.pfx is not None else "--out-key"
        if password is None:
            if not (sys.stdin is not None and sys.stdin.isatty()):
                raise UsageError(
                    f"{what} needs a password: give --password-file FILE or "
                    "--password-env NAME (or run on a terminal to be asked)"
                )
            import getpass

            password = getpass.getpass("Password for the new private key file: ").encode()
            if getpass.getpass("Repeat the password: ").encode() != password:
                raise UsageError("the two passwords differ; nothing was written")
        if not password:
            raise UsageError(f"{what} needs a password; an empty password is refused")
        return password

    def write(
        self,
        issued: Issued,
        password: bytes | None,
        friendly_name: str | None,
        commit: Callable[[], None],
    ) -> dict[str, str]:
        """Write every file atomically; ``commit()`` runs once all are written, before any is
        renamed into place."""
        from smimecli.files import PendingOutputs
        from smimecli.lab import output_files

        contents = output_files(
            issued,
            pfx=self.pfx,
            cer=self.cer,
            pem=self.pem,
            key=self.key,
            password=password,
            pfx_encryption=self.pfx_encryption,
            friendly_name=friendly_name,
        )
        # Every temporary file is complete and on disk before the store changes (a full
        # disk fails here, with nothing changed); the renames come last. An exception
        # anywhere removes them all, so files and store change together or not at all.
        with PendingOutputs() as pending:
            for file in contents:
                pending.add(file.path, file.data, mode=file.mode)
            commit()
            pending.commit()
        return {file.kind: str(file.path) for file in contents}


def _open_store(no_store: bool, *, for_signer: bool = False) -> Store | None:
    """The store, when the command stores or reads a signer; a signer needs an existing one.
    A store this call creates is removed again by :func:`_adding_to` when the command
    fails, so a failure leaves the store folder as it was."""
    if no_store and not for_signer:
        return None
    return open_store(create=not for_signer)


def _store_ca(store: Store, issued: Issued, role: str, friendly_name: str | None) -> None:
    """A new CA into the store in one transaction: as 'my' with its key (to sign with) and
    as ``role`` ('root' trusted, or 'ca' for chain building)."""
    with store.transaction():
        store.add(issued.cert, key=issued.key, store_name="my", friendly_name=friendly_name)
        store.add(issued.cert, store_name=role, friendly_name=friendly_name)


@contextlib.contextmanager
def _adding_to(store: Store | None) -> Iterator[None]:
    """Close ``store`` after the command; remove it when this command created it and failed."""
    if store is None:
        yield
        return
    try:
        with store:
            yield
    except BaseException:
        if store.created:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{store.path}{suffix}").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                store.path.parent.rmdir()
        raise


def _report(
    issued: Issued,
    key: KeySpec,
    files: dict[str, str],
    stores: list[str],
    hash_name: str,
    json_out: bool,
    extra: dict[str, Any],
) -> None:
    from smimecli.certs.names import display_name

    cert = issued.cert
    if json_out:
        emit_json(
            {
                "thumbprint": issued.thumbprint,
                "subject": issued.subject,
                "issuer": display_name(cert.issuer),
                "serial": format(cert.serial_number, "032x"),
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "key_algorithm": key.algorithm,
                "key_size": key.bits,
                "hash": hash_name,
                **extra,
                "stores": stores,
                "files": files,
                "notices": [notice.to_json() for notice in issued.notices],
            }
        )
    else:
        sys.stdout.write(f"{issued.thumbprint}  {printable(issued.subject)}\n")
        for kind, path in files.items():
            info(f"wrote {path} ({kind})")
        if stores:
            info(f"added to the store {state().store_dir()} as {', '.join(stores)}")


def _load_signer(
    signer: str | None,
    signer_pfx: Path | None,
    password_file: Path | None,
    password_env: str | None,
    store: Store | None,
) -> Signer:
    from smimecli.errors import UsageError
    from smimecli.lab import Signer

    if signer is not None:
        assert store is not None
        return Signer.from_store(store, signer)
    assert signer_pfx is not None
    if password_file is not None and password_env is not None:
        raise UsageError("give either --signer-password-file or --signer-password-env, not both")
    from smimecli.certs.formats import load_certificate_file
    from smimecli.passwords import read_password

    password = read_password(
        password_file=password_file,
        password_env=password_env,
        prompt=f"Password for {signer_pfx}: ",
    )
    return Signer.from_entries(load_certificate_file(signer_pfx, password), str(signer_pfx))


def _show(notices: tuple[Notice, ...]) -> None:
    """The library's notices on stderr, as warnings."""
    for notice in notices:
        log.warning("%s", notice.text)


def _ca_spec_options(
    subject: str,
    key_algorithm: str,
    key_length: int | None,
    hash_name: str,
    days: int,
    key_usage: str,
    not_before: str | None,
    not_after: str | None,
) -> dict[str, Any]:
    """The spec fields gen-root and gen-ca share, from their common options."""
    from smimecli.lab import KeySpec

    start, end = _dates(not_before, not_after)
    return {
        "subject": subject,
        "key": KeySpec(key_algorithm, key_length),
        "hash": hash_name,
        "days": days,
        "key_usage": key_usage,
        "not_before": start,
        "not_after": end,
    }


def _create_ca(
    build: Callable[[], Issued],
    outputs: _Outputs,
    password: bytes | None,
    store: Store | None,
    role: str,
    friendly_name: str | None,
) -> tuple[Issued, dict[str, str]]:
    """gen-root's and gen-ca's commit step: build the CA, then write its files and put it
    into ``store`` (unless None) as 'my' and ``role``, together or not at all."""
    issued = build()
    _show(issued.notices)

    def commit() -> None:
        if store is not None:
            _store_ca(store, issued, role, friendly_name)

    return issued, outputs.write(issued, password, friendly_name, commit)


# --- commands -----------------------------------------------------------------------------


def gen_root(
    *,
    subject: CaSubjectOpt = "CN=Test Root V1",
    key_algorithm: KeyAlgorithmOpt = "rsa",
    key_length: KeyLengthOpt = None,
    hash_name: HashOpt = "sha256",
    days: Annotated[int, typer.Option("--days", help=DaysHelp)] = 7300,
    key_usage: Annotated[
        str,
        typer.Option(
            "--key-usage",
            help="Comma list of CRLSign, CertSign, KeyAgreement, DataEncipherment, "
            "KeyEncipherment, DigitalSignature, NonRepudiation, EncipherOnly, DecipherOnly, "
            "or None (default: the first six).",
            show_default=False,
        ),
    ] = _ROOT_KEY_USAGE,
    not_before: NotBeforeOpt = None,
    not_after: NotAfterOpt = None,
    out_pfx: OutPfxOpt = None,
    out_cer: OutCerOpt = None,
    out_pem: OutPemOpt = None,
    out_key: OutKeyOpt = None,
    force: ForceOpt = False,
    no_store: NoStoreOpt = False,
    pfx_encryption: PfxEncryptionOpt = "modern",
    friendly_name: FriendlyNameOpt = None,
    password_file: PasswordFileOpt = None,
    password_env: PasswordEnvOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a self-signed root CA certificate (like New-SelfSignedCertificate).

    The root gets basicConstraints CA:TRUE (critical), the key usages asked for (critical),
    a subject key identifier and a random 16-byte serial. It goes into the store as 'my'
    (with its key) and 'root' (trusted) unless --no-store, and to the files asked for.
    Prints the thumbprint and subject (or --json).
    """
    import datetime as dt

    from smimecli.lab import RootSpec, make_root

    spec = RootSpec(
        **_ca_spec_options(
            subject, key_algorithm, key_length, hash_name, days, key_usage, not_before, not_after
        )
    )
    spec.validate(dt.datetime.now(dt.UTC))
    outputs = _Outputs(out_pfx, out_cer, out_pem, out_key, pfx_encryption, force)
    outputs.check()
    password = outputs.password(password_file, password_env)
    store = _open_store(no_store)
    with _adding_to(store):
        issued, files = _create_ca(
            lambda: make_root(spec), outputs, password, store, "root", friendly_name
        )
    _report(
        issued, spec.key, files, [] if store is None else ["my", "root"], hash_name, json_out, {}
    )


SignerOpt = Annotated[
    str | None,
    typer.Option(
        "--signer",
        help="The issuing CA in the store (thumbprint, email or CN).",
        metavar="SELECTOR",
    ),
]


EmailOpt = Annotated[
    str | None,
    typer.Option(
        "--email",
        help="The user's mail address (SAN rfc822Name); with --csr, the addresses the "
        "request names are added.",
        show_default=False,
    ),
]
UserSubjectOpt = Annotated[
    str | None,
    typer.Option(
        "--subject",
        help='Subject, Windows style, e.g. "E=test@example.net,CN=SMIME Tester 2048" '
        "(default: the request's subject with --csr, else E=ADDR,CN=ADDR).",
        show_default=False,
    ),
]
UpnOpt = Annotated[
    str | None,
    typer.Option(
        "--upn",
        help="User principal name, added to the SAN as a Microsoft UPN otherName.",
        metavar="NAME",
    ),
]
SignerPfxOpt = Annotated[
    Path | None,
    typer.Option("--signer-pfx", help="The issuing CA as a .pfx with its key.", metavar="FILE"),
]
SignerPasswordFileOpt = Annotated[
    Path | None,
    typer.Option("--signer-password-file", help="Password file of --signer-pfx.", metavar="FILE"),
]
SignerPasswordEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--signer-password-env",
        help="Environment variable holding the password of --signer-pfx.",
        metavar="NAME",
    ),
]
CsrOpt = Annotated[
    Path | None,
    typer.Option(
        "--csr",
        help="Certify the public key of this PKCS#10 request (PEM or DER) instead of "
        "making a key; no private key is written.",
        metavar="FILE",
    ),
]
ProfileOpt = Annotated[
    str,
    typer.Option(
        "--profile",
        help="powershell (like New-SelfSignedCertificate) or strict (CA/Browser Forum "
        "S/MIME Baseline Requirements, mailbox-validated strict).",
        metavar="powershell|strict",
    ),
]
SmimeCapabilitiesOpt = Annotated[
    bool,
    typer.Option(
        "--smime-capabilities/--no-smime-capabilities",
        help="Add the SMIMECapabilities extension (AES-256/128-GCM, AES-256/192/128-CBC, "
        "RSAES-OAEP: the list sign puts in signatures).",
    ),
]


def issue_user(
    *,
    email: EmailOpt = None,
    subject: UserSubjectOpt = None,
    upn: UpnOpt = None,
    signer: SignerOpt = None,
    signer_pfx: SignerPfxOpt = None,
    signer_password_file: SignerPasswordFileOpt = None,
    signer_password_env: SignerPasswordEnvOpt = None,
    csr: CsrOpt = None,
    profile: ProfileOpt = "powershell",
    key_algorithm: KeyAlgorithmOpt = "rsa",
    key_length: KeyLengthOpt = None,
    hash_name: HashOpt = "sha256",
    days: Annotated[int, typer.Option("--days", help=DaysHelp)] = 365,
    not_before: NotBeforeOpt = None,
    not_after: NotAfterOpt = None,
    crl_url: CrlUrlOpt = None,
    smime_capabilities: SmimeCapabilitiesOpt = True,
    out_pfx: OutPfxOpt = None,
    out_cer: OutCerOpt = None,
    out_pem: OutPemOpt = None,
    out_key: OutKeyOpt = None,
    force: ForceOpt = False,
    no_store: NoStoreOpt = False,
    pfx_encryption: PfxEncryptionOpt = "modern",
    friendly_name: FriendlyNameOpt = None,
    password_file: PasswordFileOpt = None,
    password_env: PasswordEnvOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Issue an S/MIME user certificate from a CA certificate.

    The user gets basicConstraints CA:FALSE, keyUsage digitalSignature with keyEncipherment
    (RSA) or keyAgreement (EC), EKU emailProtection, the address (and --upn) in the
    subjectAltName, SMIMECapabilities, SKI and AKI; --profile strict adds the Baseline
    Requirements' certificatePolicies and checks subject and validity. The CA comes from
    the store (--signer) or a .pfx (--signer-pfx). The new certificate goes into the store
    as 'my' with its key unless --no-store ('other' with --csr, whose key stays with the
    requester); a .pfx also holds the issuing CA. Prints the thumbprint and subject.
    """
    import datetime as dt

    from smimecli.errors import UsageError
    from smimecli.lab import KeySpec
    from smimecli.lab import issue_user as build_user

    if csr is not None and (out_pfx is not None or out_key is not None):
        raise UsageError(
            "--csr: the private key stays with the requester, so --out-pfx and "
            "--out-key are not available (use --out-pem or --out-cer)"
        )
    if csr is None and email is None:
        raise UsageError("give --email ADDR (or --csr FILE naming the address)")
    start, end = _dates(not_before, not_after)
    spec = _user_spec(
        csr,
        email=email,
        subject=subject,
        upn=upn,
        key=KeySpec(key_algorithm, key_length),
        hash=hash_name,
        days=days,
        smime_capabilities=smime_capabilities,
        not_before=start,
        not_after=end,
        profile=profile,
        crl_url=crl_url,
    )
    _name, emails = spec.validate(dt.datetime.now(dt.UTC))
    outputs = _Outputs(out_pfx, out_cer, out_pem, out_key, pfx_encryption, force)
    outputs.check()
    if (signer is None) == (signer_pfx is None):
        raise UsageError("give exactly one of --signer SELECTOR and --signer-pfx FILE")
    password = outputs.password(password_file, password_env)
    # The store is opened only when needed, after a .pfx signer proved usable, so that a
    # failing command does not create an empty store as a side effect.
    store = _open_store(no_store, for_signer=True) if signer is not None else None
    issuer = _load_signer(signer, signer_pfx, signer_password_file, signer_password_env, store)
    if store is None:
        store = _open_store(no_store)
    store_name = "other" if spec.csr is not None else "my"
    with _adding_to(store):
        issued = build_user(spec, issuer)
        _show(issued.notices)

        def commit() -> None:
            if store is not None and not no_store:
                store.add(
                    issued.cert, key=issued.key, store_name=store_name, friendly_name=friendly_name
                )

        files = outputs.write(issued, password, friendly_name, commit)
    extra = {
        "email": emails[0],
        "emails": emails,
        "upn": upn,
        "smime_capabilities": smime_capabilities,
        "profile": profile,
        "csr": None if csr is None else str(csr),
        "crl_url": crl_url,
    }
    key_spec = spec.key if spec.csr is None else KeySpec.of_certificate(issued.cert)
    _report(issued, key_spec, files, [] if no_store else [store_name], hash_name, json_out, extra)


def _user_spec(csr: Path | None, **options: Any) -> UserSpec:
    """The issue-user spec from its options, with the request read from ``csr`` if given."""
    from smimecli.lab import UserSpec, load_csr

    request = None
    if csr is not None:
        from smimecli.files import read_input

        request = load_csr(read_input(csr), str(csr))
    return UserSpec(csr=request, **options)


def gen_ca(
    *,
    signer: Annotated[
        str,
        typer.Option(
            "--signer",
            help="The issuing CA in the store (thumbprint, email or CN), usually the root.",
            metavar="SELECTOR",
        ),
    ],
    subject: CaSubjectOpt = "CN=Test Intermediate CA V1",
    key_algorithm: KeyAlgorithmOpt = "rsa",
    key_length: KeyLengthOpt = None,
    hash_name: HashOpt = "sha256",
    days: Annotated[int, typer.Option("--days", help=DaysHelp)] = 3650,
    key_usage: Annotated[
        str,
        typer.Option(
            "--key-usage",
            help="Comma list of key usage names as for gen-root; must include CertSign "
            "(default: CertSign,CRLSign,DigitalSignature).",
            show_default=False,
        ),
    ] = "CertSign,CRLSign,DigitalSignature",
    not_before: NotBeforeOpt = None,
    not_after: NotAfterOpt = None,
    crl_url: CrlUrlOpt = None,
    out_pfx: OutPfxOpt = None,
    out_cer: OutCerOpt = None,
    out_pem: OutPemOpt = None,
    out_key: OutKeyOpt = None,
    force: ForceOpt = False,
    no_store: NoStoreOpt = False,
    pfx_encryption: PfxEncryptionOpt = "modern",
    friendly_name: FriendlyNameOpt = None,
    password_file: PasswordFileOpt = None,
    password_env: PasswordEnvOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create an intermediate CA certificate signed by a CA of the store.

    The CA gets basicConstraints CA:TRUE with pathLenConstraint 0 (critical: it issues
    user certificates only), the key usages asked for (critical), SKI, AKI and, with
    --crl-url, the CRL distribution point of its issuer. It goes into the store as 'ca'
    (chain building) and 'my' (with its key, to sign with issue-user --signer) unless
    --no-store, and to the files asked for; a .pfx also holds the issuing CA.
    """
    import datetime as dt

    from smimecli.lab import CASpec, make_ca

    spec = CASpec(
        **_ca_spec_options(
            subject, key_algorithm, key_length, hash_name, days, key_usage, not_before, not_after
        ),
        crl_url=crl_url,
    )
    spec.validate(dt.datetime.now(dt.UTC))
    outputs = _Outputs(out_pfx, out_cer, out_pem, out_key, pfx_encryption, force)
    outputs.check()
    password = outputs.password(password_file, password_env)
    store = open_store(create=False)
    with store:
        issuer = _load_signer(signer, None, None, None, store)
        issued, files = _create_ca(
            lambda: make_ca(spec, issuer),
            outputs,
            password,
            None if no_store else store,
            "ca",
            friendly_name,
        )
    extra = {"crl_url": crl_url}
    _report(issued, spec.key, files, [] if no_store else ["my", "ca"], hash_name, json_out, extra)


def gen_crl(
    *,
    signer: Annotated[
        str,
        typer.Option(
            "--signer",
            help="The CA in the store whose CRL this is (thumbprint, email or CN).",
            metavar="SELECTOR",
        ),
    ],
    revoke: Annotated[
        list[str] | None,
        typer.Option(
            "--revoke",
            help="Record this certificate of the store (issued by the CA) as revoked; "
            "repeatable. Revocations stay recorded for later CRLs.",
            metavar="SELECTOR",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write the CRL (PEM) here, replacing an older CRL [default: stdout].",
            metavar="FILE",
        ),
    ] = None,
    der: Annotated[bool, typer.Option("--der", help="Write DER instead of PEM.")] = False,
    next_update: Annotated[
        int,
        typer.Option("--next-update", help="Days until the CRL's nextUpdate.", metavar="DAYS"),
    ] = 30,
    hash_name: HashOpt = "sha256",
    json_out: JsonOpt = False,
) -> None:
    """Write a CRL signed by a CA of the store, listing the certificates it revoked.

    Each --revoke records the certificate (by issuer and serial) in the store first, so the
    next gen-crl lists it again; the CRL lists every certificate this CA revoked. The CRL
    carries the CA's authorityKeyIdentifier and a cRLNumber that grows with each CRL.
    """
    import datetime as dt

    from smimecli.cli.common import is_std, write_output
    from smimecli.errors import UsageError
    from smimecli.lab import crl_bytes, make_crl, revoke_in_store, stored_revocations

    if next_update <= 0:
        raise UsageError(f"--next-update must be at least 1 day (got {next_update})")
    if json_out and is_std(output):
        raise UsageError("--json needs -o FILE (standard output carries the CRL)")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with open_store(create=False) as store:
        ca = _load_signer(signer, None, None, None, store)
        with store.transaction():
            revoked_now = revoke_in_store(store, ca, revoke or [], now)
            listed = stored_revocations(store, ca)
            crl = make_crl(ca, listed, next_update_days=next_update, hash_name=hash_name, now=now)
            write_output(crl_bytes(crl, der=der), output)
    newly = [{"thumbprint": e.thumbprint, "subject": e.subject} for e in revoked_now]
    for entry in newly:
        info(f"revoked {entry['thumbprint']}  {entry['subject']}")
    info(f"CRL lists {len(listed)} revoked certificate(s)")
    if json_out:
        emit_json(
            {
                "output": str(output),
                "issuer": _subject_of(ca.cert),
                "this_update": crl.last_update_utc.isoformat(),
                "next_update": None
                if crl.next_update_utc is None
                else crl.next_update_utc.isoformat(),
                "revoked_now": newly,
                "revoked": [format(r.serial, "032x") for r in listed],
            }
        )


def _subject_of(cert: Any) -> str:
    from smimecli.certs.names import display_name

    return display_name(cert.subject)
