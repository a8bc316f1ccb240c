"""Writing PKCS#12 (.pfx/.p12) files, always with a password.

``modern`` is PBES2 with AES-256-CBC and PBKDF2 for both the key and the certificate bags,
with an HMAC-SHA-256 MAC (RFC 7292 + RFC 8018), what current Windows, OpenSSL 3 and NSS
read. ``legacy`` is pbeWithSHAAnd3-KeyTripleDES-CBC for both bags with a SHA-1 MAC and
2000 iterations, as Windows writes it with ``TripleDES-SHA1``: old Windows, macOS keychain
and gpgsm 2.2 cannot read the modern form.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from smimecli.errors import UsageError

ENCRYPTIONS: tuple[str, ...] = ("modern", "legacy")

_MODERN_ROUNDS = 20000
_LEGACY_ROUNDS = 2000  # what Windows' PFXExportCertStoreEx uses


def write_pfx(
    key: pkcs12.PKCS12PrivateKeyTypes | None,
    cert: x509.Certificate | None,
    cas: Iterable[x509.Certificate] = (),
    *,
    password: bytes,
    encryption: str = "modern",
    friendly_name: str | None = None,
) -> bytes:
    """Serialize a key, its certificate and CA certificates as a password-protected PFX.

    Args:
        key: the private key, or None for a certificates-only file.
        cert: the end-entity certificate (friendly name attached to it).
        cas: further certificates (the chain, or more certificates for a bundle).
        password: must not be empty: an exported key always carries a password.
        encryption: ``modern`` or ``legacy`` (see the module docstring).
        friendly_name: shown by Windows and macOS as the certificate's name.
    """
    if not password:
        raise UsageError(
            "a .pfx needs a password: give --password-file or --password-env "
            "(an empty password is refused)"
        )
    builder = PrivateFormat.PKCS12.encryption_builder()
    if encryption == "modern":
        builder = (
            builder.kdf_rounds(_MODERN_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
        )
    elif encryption == "legacy":
        builder = (
            builder.kdf_rounds(_LEGACY_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())
        )
    else:
        raise UsageError(f"unknown pfx encryption {encryption!r}: use modern or legacy")
    name = friendly_name.encode("utf-8") if friendly_name else None
    return pkcs12.serialize_key_and_certificates(
        name, key, cert, list(cas) or None, builder.build(password)
    )
