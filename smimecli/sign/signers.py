"""Signers: a certificate with its private key and issuers, from the store or a .pfx; and
sign-then-encrypt (RFC 8551 section 3.7), as Outlook and Thunderbird send signed and
encrypted mail.

Used by ``smimecli sign`` (``--signer``/``--signer-pfx``), ``smimecli encrypt``
(``--sign-with``/``--sign-with-pfx``) and rules mode (``sign`` and ``[[signer]]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from cryptography import x509

    from smimecli.certs.store import Store
    from smimecli.cms.envelope import Recipient
    from smimecli.cms.sigalgs import PrivateKey
    from smimecli.encrypt.message import EncryptOutcome
    from smimecli.sign.message import SignOptions

__all__ = [
    "Signer",
    "SignerSource",
    "chain_from_store",
    "pfx_signer_source",
    "sign_then_encrypt",
    "signer_from_pfx",
    "signer_from_store",
]


@dataclass(frozen=True)
class Signer:
    """A signing identity: certificate, private key, the issuers to send along."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]
    thumbprint: str


def chain_from_store(store: Store, cert: x509.Certificate) -> list[x509.Certificate]:
    """The issuers of ``cert`` the store holds in ``ca`` and ``root``, nearest first."""
    from smimecli.certs.usable import chain_to_root

    roots = [c.cert for c in store.certificates("root")]
    cas = [c.cert for c in store.certificates("ca")]
    chain = chain_to_root(cert, roots, cas)
    if chain:
        return list(chain[1:])
    # No full chain: whatever issuers are there still help the recipient.
    out: list[x509.Certificate] = []
    current = cert
    pool = cas + roots
    for _ in range(8):
        issuer = next((c for c in pool if c.subject == current.issuer and c != current), None)
        if issuer is None or issuer in out:
            break
        out.append(issuer)
        current = issuer
    return out


def signer_from_store(store: Store, selector: str, *, pfx_option: str = "--signer-pfx") -> Signer:
    """The store's ``my`` certificate a selector names, with its private key.

    Raises:
        ConfigError/UsageError: as :meth:`Store.select_one` (none or several match).
        AuthError: the certificate has no private key in the store (77).
    """
    from smimecli.errors import AuthError

    entry = store.select_one(selector, "my")
    key = store.private_key(entry.thumbprint)
    if key is None:
        raise AuthError(
            f"the certificate {entry.thumbprint} ({entry.subject}) has no private key in "
            f"the store: import its .pfx ('smimecli certs import') or use {pfx_option}"
        )
    chain = tuple(chain_from_store(store, entry.cert))
    return Signer(entry.cert, key, chain, entry.thumbprint)  # type: ignore[arg-type]


def signer_from_pfx(
    pfx: Path, password_file: Path | None = None, password_env: str | None = None
) -> Signer:
    """The key, certificate and extra certificates of a .pfx/.p12.

    Raises:
        AuthError: wrong or missing password (77).
        DataError: the .pfx holds no certificate for its key (65).
    """
    return pfx_signer_source(pfx, password_file, password_env)[0]


def pfx_signer_source(
    pfx: Path, password_file: Path | None = None, password_env: str | None = None
) -> tuple[Signer, SignerSource]:
    """:func:`signer_from_pfx`, and a :class:`SignerSource` with the password that opened
    it (asked on a terminal when neither option gave one), for worker processes."""
    from smimecli.passwords import load_with_password, read_password

    password = read_password(password_file=password_file, password_env=password_env)
    opened: list[bytes | None] = []

    def load(secret: bytes | None) -> Signer:
        signer = _pfx_signer(pfx, secret)
        opened.append(secret)
        return signer

    signer = load_with_password(load, password, str(pfx))
    return signer, SignerSource(pfx=pfx, password=opened[-1])


def _pfx_signer(pfx: Path, password: bytes | None) -> Signer:
    from smimecli.certs.keys import load_private_key
    from smimecli.certs.names import thumbprint
    from smimecli.errors import DataError

    loaded = load_private_key(pfx, password)
    if loaded.cert is None:
        raise DataError(
            f"{pfx} holds no certificate for its private key: give a .pfx with the "
            "signer's certificate"
        )
    return Signer(loaded.cert, loaded.key, tuple(loaded.extra_certs), thumbprint(loaded.cert))


@dataclass(frozen=True)
class SignerSource:
    """Where a signer comes from, in a form that crosses process boundaries (batch
    workers load it once each): a store ``my`` selector (and the store passphrase that
    decrypts its key; None reads ``$SMIMECLI_STORE_PASSWORD``), or a .pfx and its password."""

    selector: str | None = None
    store_dir: Path | None = None
    pfx: Path | None = None
    password: bytes | None = field(default=None, repr=False)
    store_passphrase: bytes | None = field(default=None, repr=False)

    def load(self) -> Signer:
        """The signer (errors as :func:`signer_from_store` and :func:`signer_from_pfx`)."""
        if self.pfx is not None:
            return _pfx_signer(self.pfx, self.password)
        from smimecli.certs.store import Store

        assert self.selector is not None and self.store_dir is not None
        with Store.open(self.store_dir, readonly=True, passphrase=self.store_passphrase) as store:
            return signer_from_store(store, self.selector, pfx_option="--sign-with-pfx")


def sign_then_encrypt(
    src: BinaryIO | bytes,
    dst: BinaryIO,
    recipients: Sequence[Recipient],
    *,
    signer: Signer,
    cipher: str = "aes256",
    convert_tnef: bool = True,
    options: SignOptions | None = None,
) -> EncryptOutcome:
    """Sign a message (detached multipart/signed), then encrypt the signed entity.

    winmail.dat parts are converted before signing (a conversion after it would break the
    signature). An input that is already encrypted is copied unchanged, unsigned. The
    body and the signed message are spooled (memory up to 8 MiB each, then unnamed
    temporary files), so memory stays flat; only a message with a TNEF part to convert is
    held in memory.

    Raises:
        as :func:`smimecli.sign.message.sign_message` and
        :func:`smimecli.encrypt.message.encrypt_message`.
    """
    from smimecli.encrypt.message import encrypt_message, encrypt_parsed
    from smimecli.mime import read_header_block, sniff_encrypted
    from smimecli.sign.message import SignOptions, SignSpool, sign_parsed

    stream: Any = BytesIO(bytes(src)) if isinstance(src, bytes | bytearray) else src
    headers, rest = read_header_block(stream)
    encrypted, rest = sniff_encrypted(headers, rest)
    if encrypted:
        return encrypt_parsed(headers, rest, dst, recipients, cipher=cipher, convert_tnef=False)
    converted, tnef_warnings = 0, []
    body, has_tnef = _spool_body(headers, rest, convert_tnef)
    with body, SignSpool() as signed:
        if has_tnef:
            from smimecli.encrypt.message import tnef_notices
            from smimecli.tnef import splice as tnef

            result = tnef.convert_message(headers.raw + body.read())
            converted, tnef_warnings = result.converted, tnef_notices(result.warnings)
            headers, rest = read_header_block(BytesIO(result.data))
        else:
            rest = body
        options = options or SignOptions(chain=signer.chain)
        sign_parsed(headers, rest, signed, cert=signer.cert, key=signer.key, options=options)
        del rest
        signed.seek(0)
        outcome = encrypt_message(signed, dst, recipients, cipher=cipher, convert_tnef=False)
    outcome.tnef_converted = converted
    outcome.notices[:0] = tnef_warnings
    return outcome


def _spool_body(headers: Any, body: Any, convert_tnef: bool) -> tuple[BinaryIO, bool]:
    """The body in a spool, at its start, and whether it may hold a TNEF part to convert
    (the cheap search encrypt makes: the header block names one, or a multipart body has
    a part header that does)."""
    from smimecli.encrypt.tnef_search import _tnef_marks, _TnefSearch
    from smimecli.sign.message import SignSpool
    from smimecli.streams import read_chunks

    has_tnef, search = _tnef_marks(headers, convert_tnef)
    searcher = _TnefSearch() if search else None
    out: Any = SignSpool()
    try:
        for chunk in read_chunks(body):
            if searcher is not None and not has_tnef:
                has_tnef = searcher.feed(chunk)
            out.write(chunk)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out, has_tnef


def describe(signer: Signer) -> dict[str, Any]:
    """The signer for a JSON report."""
    from smimecli.certs.names import display_name

    return {"thumbprint": signer.thumbprint, "subject": display_name(signer.cert.subject)}
