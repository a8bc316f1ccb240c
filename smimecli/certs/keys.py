"""Loading a private key and the certificates that come with it.

Accepted, detected by content rather than by file name: PKCS#12 (.pfx/.p12, modern
PBES2/AES and legacy RC2-40/3DES — cryptography reads both), PEM or DER PKCS#8 (encrypted or
not), traditional PEM ``RSA PRIVATE KEY`` / ``EC PRIVATE KEY`` (with or without
``Proc-Type: 4,ENCRYPTED``), and PEM bundles holding certificates next to the key (OpenSSL's
test files).

A wrong or missing password is :class:`AuthError` (77); anything that is not a key is
:class:`DataError` (65).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from smimecli.certs.pem import pem_blocks
from smimecli.errors import AuthError, DataError
from smimecli.files import read_input

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_KEY_LABELS = {b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY"}


@dataclass
class LoadedKey:
    """A private key, the certificate that belongs to it (if found) and the others."""

    key: PrivateKey
    cert: x509.Certificate | None = None
    extra_certs: list[x509.Certificate] = field(default_factory=list)


def public_key_der(key: PrivateKey | PublicKeyTypes) -> bytes:
    """The SubjectPublicKeyInfo DER of a key, to compare keys with certificates."""
    public = key.public_key() if isinstance(key, PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_matches_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    """True when ``cert`` carries the public half of ``key``."""
    try:
        return public_key_der(cert.public_key()) == public_key_der(key)
    except (ValueError, TypeError):
        return False


def _checked(key: object, what: str) -> PrivateKey:
    if isinstance(key, PrivateKey):
        return key
    raise DataError(f"{what}: only RSA and EC private keys can decrypt S/MIME")


def _pair(key: PrivateKey, certs: list[x509.Certificate]) -> LoadedKey:
    """Put the certificate that matches the key first."""
    own = next((c for c in certs if cert_matches_key(c, key)), None)
    return LoadedKey(key, own, [c for c in certs if c is not own])


# Real files use 2,000 (Windows legacy) to a few hundred thousand iterations; a file that
# asks for more than this would burn minutes of CPU per password try: refused (65) before
# any key derivation.
MAX_PKCS12_ITERATIONS = 10_000_000


def _pkcs12_iterations(data: bytes) -> list[int]:
    """Every iteration count a PFX asks for: its MAC, each encrypted content and each
    shrouded key bag in clear contents (RFC 7292 4, 4.1, 4.2.2; RFC 8018 A.2)."""
    from asn1crypto import pkcs12 as a_pkcs12

    counts: list[int] = []

    def algorithm(value: Any) -> None:
        try:
            counts.append(int(value.kdf_iterations))
        except (ValueError, TypeError, KeyError, AttributeError):
            pass

    try:
        pfx = a_pkcs12.Pfx.load(data)
        mac = pfx["mac_data"]
        if mac.native is not None:
            counts.append(int(mac["iterations"].native))
        auth_safe = pfx["auth_safe"]
        if auth_safe["content_type"].native != "data":
            return counts
        for info in a_pkcs12.AuthenticatedSafe.load(auth_safe["content"].native):
            kind = info["content_type"].native
            if kind == "encrypted_data":
                algorithm(info["content"]["encrypted_content_info"]["content_encryption_algorithm"])
            elif kind == "data":
                for bag in a_pkcs12.SafeContents.load(info["content"].native):
                    if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                        algorithm(bag["bag_value"]["encryption_algorithm"])
    except (ValueError, TypeError, KeyError, AttributeError):
        pass  # not parseable here: cryptography gives its own answer
    return counts


def open_pkcs12(data: bytes, password: bytes | None, what: str) -> Any:
    """Open a PFX with ``password``, or without one, as files exported without a password
    use either no password or the empty one (RFC 7292 appendix B.1); a password given for a
    file that has none is harmless, so those are tried last.

    Raises:
        AuthError: no password opens it (77): none given, or a wrong one.
    """
    worst = max(_pkcs12_iterations(data), default=0)
    if worst > MAX_PKCS12_ITERATIONS:
        raise DataError(
            f"{what} asks for {worst:,} key derivation iterations, more than the "
            f"{MAX_PKCS12_ITERATIONS:,} any real file uses; refused"
        )
    attempts: list[bytes | None] = [None, b""] if not password else [password, None, b""]
    last: Exception | None = None
    for attempt in attempts:
        try:
            with warnings.catch_warnings():
                # Windows and NSS write BER PFX files; cryptography warns when it falls back.
                warnings.simplefilter("ignore")
                return pkcs12.load_pkcs12(data, attempt)
        except (ValueError, TypeError) as exc:
            last = exc
    # cryptography says "Invalid password or PKCS12 data" for both.
    if not password:
        raise AuthError(
            f"{what} is protected by a password: give --password-file or --password-env"
        ) from last
    raise AuthError(f"wrong password for {what} (or the file is damaged)") from last


def _load_pkcs12(data: bytes, password: bytes | None, what: str) -> LoadedKey:
    bundle = open_pkcs12(data, password, what)
    if bundle.key is None:
        raise DataError(f"{what} holds no private key")
    certs = ([bundle.cert.certificate] if bundle.cert is not None else []) + [
        extra.certificate for extra in bundle.additional_certs
    ]
    return _pair(_checked(bundle.key, what), certs)


def _looks_like_pfx(data: bytes) -> bool:
    """A DER PFX (RFC 7292 4): SEQUENCE { INTEGER 3, ContentInfo ... }."""
    try:
        from asn1crypto import pkcs12 as a_pkcs12

        pfx = a_pkcs12.Pfx.load(data)
        return bool(pfx["version"].native == "v3" and pfx["auth_safe"]["content_type"].dotted)
    except (ValueError, TypeError, KeyError):
        return False


def load_key_block(encoding: str, data: bytes, password: bytes | None, what: str) -> Any:
    """A private key from one PEM block or DER blob (``encoding`` is "pem" or "der").

    Any key type cryptography reads comes back; callers decide which ones they can use.

    Raises:
        AuthError: the key is encrypted and no password, or a wrong one, was given (77).
        DataError: not a private key this tool reads (65).
    """
    load = (
        serialization.load_pem_private_key
        if encoding == "pem"
        else serialization.load_der_private_key
    )
    try:
        return load(data, password)
    except TypeError as exc:
        if password is None:
            raise AuthError(f"{what} is encrypted: give --password-file or --password-env") from exc
        # A password given for an unencrypted key: read it without.
        return load_key_block(encoding, data, None, what)
    except ValueError as exc:
        if password is not None and _is_encrypted(data):
            raise AuthError(f"wrong password for {what}") from exc
        raise DataError(f"{what} is not a usable private key ({exc})") from exc
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm and others
        raise DataError(f"{what} is not a usable private key ({exc})") from exc


def _load_key_bytes(load: str, data: bytes, password: bytes | None, what: str) -> PrivateKey:
    return _checked(load_key_block(load, data, password, what), what)


def _is_encrypted(data: bytes) -> bool:
    if b"ENCRYPTED" in data[:4096]:
        return True
    try:
        from asn1crypto import keys as a_keys

        a_keys.EncryptedPrivateKeyInfo.load(data).native  # noqa: B018 - forces a parse
        return True
    except (ValueError, TypeError, KeyError):
        return False


def load_private_key(
    source: str | Path | bytes, password: bytes | None = None, *, what: str | None = None
) -> LoadedKey:
    """Load a private key with its certificates from a file name or the file's bytes.

    Args:
        source: a path, or the content of a key file.
        password: the password of an encrypted key or .pfx; None when there is none.
        what: how to name the key in error messages (defaults to the path).

    Returns:
        The key, its own certificate when the file carries one, and the other certificates.
    """
    if isinstance(source, bytes):
        data, name = source, what or "the private key"
    else:
        data, name = read_input(source), what or str(source)
    if not data.strip():
        raise DataError(f"{name} is empty: expected a .pfx/.p12 or a private key file")
    if b"-----BEGIN" in data:
        return _load_pem(data, password, name)
    if _looks_like_pfx(data):
        return _load_pkcs12(data, password, name)
    if data[:1] == b"\x30":
        key = _load_key_bytes("der", data, password, name)
        return LoadedKey(key)
    raise DataError(f"{name} is not a .pfx/.p12, PEM or DER private key")


def _load_pem(data: bytes, password: bytes | None, name: str) -> LoadedKey:
    key: PrivateKey | None = None
    certs: list[x509.Certificate] = []
    for found in pem_blocks(data):
        label = found.label
        block = found.whole
        if label in _KEY_LABELS:
            if key is None:
                key = _load_key_bytes("pem", block + b"\n", password, name)
        elif label in (b"CERTIFICATE", b"X509 CERTIFICATE"):
            try:
                certs.append(x509.load_pem_x509_certificate(block + b"\n"))
            except ValueError:
                continue
    if key is None:
        raise DataError(f"{name} holds no private key (PEM without a PRIVATE KEY block)")
    return _pair(key, certs)


def load_certificate(source: str | Path | bytes) -> x509.Certificate:
    """Load one certificate (PEM or DER) to name the recipient a key belongs to."""
    if isinstance(source, bytes):
        data, name = source, "the certificate"
    else:
        data, name = read_input(source), str(source)
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
            return certs[0]
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise DataError(f"{name} is not a PEM or DER certificate ({exc})") from exc
