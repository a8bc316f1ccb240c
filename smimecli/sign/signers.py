"""Signers: a certificate with its private key and issuers, from the store or a .pfx; and
sign-then-encrypt (RFC 8551 section 3.7), as Outlook and Thunderbird send signed and
encrypted mail.

Used by ``smimecli sign`` (``--signer``/``--signer-pfx``), ``smimecli encrypt``
(``--sign-with``/``--sign-with-pfx``) and rules mode (``sign`` and ``[[signer]]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
    "chain_from_store",
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
    from smimecli.certs.keys import load_private_key
    from smimecli.certs.names import thumbprint
    from smimecli.errors import DataError
    from smimecli.passwords import load_with_password, read_password

    password = read_password(password_file=password_file, password_env=password_env)
    loaded = load_with_password(lambda secret: load_private_key(pfx, secret), password, str(pfx))
    if loaded.cert is None:
        raise DataError(
            f"{pfx} holds no certificate for its private key: give a .pfx with the "
            "signer's certificate"
        )
    return Signer(loaded.cert, loaded.key, tuple(loaded.extra_certs), thumbprint(loaded.cert))


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
    signature). An input that is already encrypted is copied unchanged, unsigned.

    Raises:
        as :func:`smimecli.sign.message.sign_message` and
        :func:`smimecli.encrypt.message.encrypt_message`.
    """
    from smimecli.encrypt.message import encrypt_message
    from smimecli.mime import read_header_block, sniff_encrypted
    from smimecli.sign.message import SignOptions, sign_message

    data = bytes(src) if isinstance(src, bytes | bytearray) else src.read()
    headers, rest = read_header_block(BytesIO(data))
    encrypted, _rest = sniff_encrypted(headers, rest)
    if encrypted:
        return encrypt_message(data, dst, recipients, cipher=cipher, convert_tnef=False)
    converted, tnef_warnings = 0, []
    if convert_tnef:
        from smimecli.tnef import splice as tnef

        result = tnef.convert_message(data)
        data, converted, tnef_warnings = result.data, result.converted, list(result.warnings)
    options = options or SignOptions(chain=signer.chain)
    signed = BytesIO()
    sign_message(data, signed, cert=signer.cert, key=signer.key, options=options)
    outcome = encrypt_message(signed.getvalue(), dst, recipients, cipher=cipher, convert_tnef=False)
    outcome.tnef_converted = converted
    outcome.warnings[:0] = tnef_warnings
    return outcome


def describe(signer: Signer) -> dict[str, Any]:
    """The signer for a JSON report."""
    from smimecli.certs.names import display_name

    return {"thumbprint": signer.thumbprint, "subject": display_name(signer.cert.subject)}
