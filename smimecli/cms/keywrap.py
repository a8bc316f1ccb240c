"""Key wrap and the recipients whose content key is wrapped (RFC 5652 section 6.2.2, 6.2.3).

- KeyAgreeRecipientInfo: ephemeral-static ECDH (RFC 5753 3.1): dhSinglePass-stdDH and
  -cofactorDH with the X9.63 KDF over ECC-CMS-SharedInfo (RFC 5753 7.2), then AES key unwrap
  (RFC 3394). For the NIST curves the cofactor is 1, so both schemes are the same computation.
- KEKRecipientInfo: AES key unwrap with a key-encryption key known to both sides.
- Triple-DES key unwrap (RFC 3217) for older messages.

:mod:`smimecli.cms.unwrap` chooses the recipient and holds RSA key transport.
"""

from __future__ import annotations

import hmac
from typing import Any

from asn1crypto import cms
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_unwrap_with_padding,
)

from smimecli.cms.recipients import AES_WRAP, HASHES, ecc_cms_shared_info
from smimecli.errors import DataError

# RFC 5753 7.1.4 / SEC 1; RFC 8418 uses the same layout for X25519 (not supported here).
ECDH_SCHEMES: dict[str, tuple[str, str]] = {
    "1.3.133.16.840.63.0.2": ("dhSinglePass-stdDH-sha1kdf-scheme", "sha1"),
    "1.3.132.1.11.0": ("dhSinglePass-stdDH-sha224kdf-scheme", "sha224"),
    "1.3.132.1.11.1": ("dhSinglePass-stdDH-sha256kdf-scheme", "sha256"),
    "1.3.132.1.11.2": ("dhSinglePass-stdDH-sha384kdf-scheme", "sha384"),
    "1.3.132.1.11.3": ("dhSinglePass-stdDH-sha512kdf-scheme", "sha512"),
    "1.3.133.16.840.63.0.3": ("dhSinglePass-cofactorDH-sha1kdf-scheme", "sha1"),
    "1.3.132.1.14.0": ("dhSinglePass-cofactorDH-sha224kdf-scheme", "sha224"),
    "1.3.132.1.14.1": ("dhSinglePass-cofactorDH-sha256kdf-scheme", "sha256"),
    "1.3.132.1.14.2": ("dhSinglePass-cofactorDH-sha384kdf-scheme", "sha384"),
    "1.3.132.1.14.3": ("dhSinglePass-cofactorDH-sha512kdf-scheme", "sha512"),
}
# RFC 3217 section 3.1: the fixed IV of the second Triple-DES key wrap pass.
_DES3_WRAP_IV = bytes.fromhex("4adda22c79e82105")


def _des3_key_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    """RFC 3217 section 3.2: Triple-DES key unwrap."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    if len(wrapped) != 40:
        raise UnwrapError("Triple-DES key unwrap: wrong length")
    first = Cipher(TripleDES(kek), modes.CBC(_DES3_WRAP_IV)).decryptor()
    temp2 = (first.update(wrapped) + first.finalize())[::-1]
    second = Cipher(TripleDES(kek), modes.CBC(temp2[:8])).decryptor()
    cek_icv = second.update(temp2[8:]) + second.finalize()
    cek, icv = cek_icv[:-8], cek_icv[-8:]
    digest = hashes.Hash(hashes.SHA1())
    digest.update(cek)
    if not hmac.compare_digest(digest.finalize()[:8], icv):
        raise UnwrapError("Triple-DES key unwrap: integrity check failed")
    return cek


def key_unwrap(name: str, kek: bytes, wrapped: bytes) -> bytes:
    """Unwrap a content key with the AES_WRAP algorithm ``name`` (UnwrapError on failure)."""
    try:
        if name == "des3-wrap":
            return _des3_key_unwrap(kek, wrapped)
        if name.endswith("-pad"):
            return aes_key_unwrap_with_padding(kek, wrapped)
        return aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, InvalidTag, ValueError) as exc:
        raise UnwrapError("key unwrap failed") from exc


class UnwrapError(Exception):
    """This key does not open this recipient (OAEP or key-unwrap check failed).

    Internal: the caller turns the final failure into one AuthError for every cause.
    """


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    """A cryptography hash by asn1crypto name (sha1, sha256...)."""
    try:
        return HASHES[name]()
    except KeyError:
        raise DataError(f"unsupported hash algorithm {name} in the message") from None


def kari_parameters(ri: Any) -> tuple[str, str, bytes, str, int]:
    """(scheme name, KDF hash, wrap AlgorithmIdentifier DER, wrap name, KEK size) of a KARI."""
    alg = ri["key_encryption_algorithm"]
    oid = alg["algorithm"].dotted
    if oid not in ECDH_SCHEMES:
        raise DataError(f"unsupported key agreement algorithm {oid} in the message")
    scheme, kdf_hash = ECDH_SCHEMES[oid]
    params = alg["parameters"]
    wrap_der = params.dump() if params is not None else b""
    try:
        wrap = cms.KeyEncryptionAlgorithm.load(wrap_der)
        wrap_oid = wrap["algorithm"].dotted
    except (ValueError, TypeError) as exc:
        raise DataError("bad key wrap algorithm in a key agreement recipient") from exc
    if wrap_oid not in AES_WRAP:
        raise DataError(f"unsupported key wrap algorithm {wrap_oid} in the message")
    wrap_name, kek_size = AES_WRAP[wrap_oid]
    return scheme, kdf_hash, wrap_der, wrap_name, kek_size


def _originator_key(ri: Any, curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey:
    originator = ri["originator"]
    if originator.name != "originator_key":
        # RFC 5753 3.2 static-static ECMQV / originator certificates are not supported.
        raise DataError("unsupported key agreement: the originator is a certificate, not a key")
    point = originator.chosen["public_key"].native
    if not isinstance(point, bytes):
        point = originator.chosen["public_key"].contents[1:]
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, bytes(point))
    except ValueError as exc:
        raise UnwrapError("the originator key is not on this key's curve") from exc


def unwrap_kari(ri: Any, encrypted_key: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The content key of one RecipientEncryptedKey of a KeyAgreeRecipientInfo (RFC 5753 3.1.2)."""
    _scheme, kdf_hash, wrap_der, wrap_name, kek_size = kari_parameters(ri)
    try:  # asn1crypto parses these lazily: a damaged field fails here, not in read_head
        peer = _originator_key(ri, key.curve)
        ukm = ri["ukm"].native if ri["ukm"].native is not None else None
    except (ValueError, TypeError, KeyError) as exc:
        raise DataError("malformed originator key or ukm in a key agreement recipient") from exc
    shared = key.exchange(ec.ECDH(), peer)
    info = ecc_cms_shared_info(wrap_der, ukm, kek_size * 8)
    kek = X963KDF(algorithm=hash_algorithm(kdf_hash), length=kek_size, sharedinfo=info).derive(
        shared
    )
    return key_unwrap(wrap_name, kek, encrypted_key)


def unwrap_kekri(ri: Any, kek: bytes) -> bytes:
    """The content key of a KEKRecipientInfo with a shared key-encryption key (RFC 5652 6.2.3)."""
    oid = ri["key_encryption_algorithm"]["algorithm"].dotted
    if oid not in AES_WRAP:
        raise DataError(f"unsupported key wrap algorithm {oid} in the message")
    if len(kek) != AES_WRAP[oid][1]:
        raise UnwrapError("the KEK has the wrong size for this recipient")
    return key_unwrap(AES_WRAP[oid][0], kek, ri["encrypted_key"].native)
