"""Writing store certificates out in the Windows formats and PEM.

The format is ``cer`` (one DER certificate), ``pem``, ``p7b``, ``sst`` (several) or ``pfx``
(one certificate with its chain, and its key on request); :func:`choose_format` takes it
from the output file's extension when it is not given, and :func:`check_request` refuses
what the format cannot hold.
"""

from __future__ import annotations

from pathlib import PurePath

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from smimecli.certs import names, usable
from smimecli.certs.formats import PrivateKey
from smimecli.certs.pfx import write_pfx
from smimecli.certs.sst import write_sst
from smimecli.certs.store import Store, StoredCert
from smimecli.errors import DataError, UsageError

FORMATS = ("cer", "pem", "p7b", "pfx", "sst")
EXTENSIONS = {
    ".cer": "cer",
    ".crt": "cer",
    ".der": "cer",
    ".pem": "pem",
    ".p7b": "p7b",
    ".p7c": "p7b",
    ".sst": "sst",
    ".pfx": "pfx",
    ".p12": "pfx",
}


def choose_format(fmt: str | None, output: str | PurePath) -> str:
    """The export format: ``fmt`` when given, else the one the output file's extension
    names (``.cer``/``.crt``/``.der``, ``.pem``, ``.p7b``/``.p7c``, ``.sst``,
    ``.pfx``/``.p12``); UsageError (64) when neither says."""
    path = PurePath(output)
    chosen = (fmt or EXTENSIONS.get(path.suffix.lower(), "")).lower()
    if chosen not in FORMATS:
        raise UsageError(
            f"cannot tell the export format from {path.name!r}: give --format "
            f"({', '.join(FORMATS)})"
        )
    return chosen


def check_request(fmt: str, count: int, *, with_private_key: bool = False) -> None:
    """Refuse (64) ``count`` certificates or a private key that ``fmt`` cannot hold."""
    if fmt in ("cer", "pfx") and count != 1:
        raise UsageError(f"--format {fmt} holds one certificate: give exactly one selector")
    if with_private_key and fmt not in ("pfx", "pem"):
        raise UsageError("--with-private-key needs --format pfx or pem")


def holds_private_key(fmt: str, *, with_private_key: bool = False) -> bool:
    """Whether the file holds a private key (a .pfx always counts: it is written 0600)."""
    return fmt == "pfx" or with_private_key


@names.quiet()
def chain_of(store: Store, cert: x509.Certificate) -> list[x509.Certificate]:
    """The issuers of ``cert`` held in the store (``ca`` and ``root``), nearest first."""
    pool = [c.cert for c in store.certificates("ca") + store.certificates("root")]
    chain: list[x509.Certificate] = []
    current = cert
    for _ in range(usable.MAX_CHAIN):
        if current.issuer == current.subject:
            break
        parent = next(
            (c for c in pool if c not in chain and c != current and usable.issued_by(current, c)),
            None,
        )
        if parent is None:
            break
        chain.append(parent)
        current = parent
    return chain


def export(
    store: Store,
    picked: list[StoredCert],
    fmt: str,
    *,
    with_private_key: bool = False,
    password: bytes | None = None,
    pfx_encryption: str = "modern",
) -> bytes:
    """Serialize certificates chosen from the store.

    Args:
        store: the store (for private keys and the chain).
        picked: the certificates, in the order given.
        fmt: ``cer``, ``pem``, ``p7b``, ``sst`` or ``pfx``.
        with_private_key: include the key (pfx, pem); DataError when none is held.
        password: the pfx password; for pem, encrypts the key (PKCS#8) when given.
        pfx_encryption: ``modern`` or ``legacy``.
    """
    unique = list({c.thumbprint: c for c in picked}.values())
    certs = [c.cert for c in unique]
    if fmt == "cer":
        if len(certs) != 1:
            raise UsageError("a .cer holds exactly one certificate")
        return certs[0].public_bytes(serialization.Encoding.DER)
    if fmt == "p7b":
        # RFC 5652 5.1 degenerate SignedData ("certs-only"), what Windows calls .p7b.
        return pkcs7.serialize_certificates(certs, serialization.Encoding.DER)
    if fmt == "sst":
        return write_sst([(c.der, c.friendly_name) for c in unique])
    if fmt == "pem":
        parts = [c.public_bytes(serialization.Encoding.PEM) for c in certs]
        if with_private_key:
            for stored in unique:
                parts.append(_key_pem(store, stored, password))
        return b"".join(parts)
    if fmt == "pfx":
        stored = unique[0]
        key = _key(store, stored) if with_private_key else None
        return write_pfx(
            key,
            stored.cert,
            chain_of(store, stored.cert),
            password=password or b"",
            encryption=pfx_encryption,
            friendly_name=stored.friendly_name,
        )
    raise UsageError(f"unknown export format {fmt!r}")


def _key(store: Store, stored: StoredCert) -> PrivateKey:
    key = store.private_key(stored.thumbprint)
    if key is None:
        raise DataError(
            f"the store holds no private key for {stored.thumbprint} ({stored.subject})"
        )
    return key


def _key_pem(store: Store, stored: StoredCert, password: bytes | None) -> bytes:
    key = _key(store, stored)
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password:
        encryption = serialization.BestAvailableEncryption(password)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
