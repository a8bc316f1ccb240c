"""Content-encryption algorithms shared by the encrypt and decrypt sides.

One table maps the CLI names (``aes256``, ``rc2-40``...) to OIDs and sizes; AlgorithmIdentifier
parameters are written and read here (RFC 3370 section 5 for 3DES and RC2, RFC 3565 for
AES-CBC, RFC 5084 for AES-GCM); and the streaming encryptor/decryptor objects hide the
difference between cryptography's C ciphers and the pure-Python RC2.

Decrypting AES-GCM (AuthEnvelopedData, RFC 5083): the MAC comes after the ciphertext, so a
streaming reader calls ``update()`` on the ciphertext, ``authenticate_additional_data()``
before the first ``update()`` when authAttrs are present (their DER as a SET), then
``set_tag(mac)`` and ``finalize()`` (or ``finalize_with_tag(mac)``). Plaintext from
``update()`` is unauthenticated until ``finalize()`` returns: write it to a temporary file
that is only renamed into place afterwards.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from smimecli.choices import DEFAULT_CIPHER as DEFAULT_CIPHER
from smimecli.choices import Cipher, names
from smimecli.cms import der, rc2
from smimecli.errors import DataError, UsageError

# The one message for every content-decryption failure, so that no caller can turn the
# difference between "bad padding" and "bad length" into an oracle.
DECRYPT_FAILED = "content decryption failed: wrong key or damaged message"

OID_RC2_CBC = "1.2.840.113549.3.2"
OID_DES_EDE3_CBC = "1.2.840.113549.3.7"


@dataclass(frozen=True)
class ContentCipher:
    """A content-encryption algorithm as CMS names it.

    Attributes:
        name: the CLI name (``aes256``, ``rc2-40``...).
        oid: the AlgorithmIdentifier OID (all RC2 sizes share one; the size is a parameter).
        family: ``aes``, ``3des`` or ``rc2``.
        mode: ``cbc`` or ``gcm``.
        key_size: content-encryption key length in bytes.
        block_size: cipher block size in bytes (padding unit for CBC).
        iv_size: IV / nonce length in bytes.
        effective_bits: RC2 effective key bits (RFC 2268), else None.
        weak: encrypting with it logs a warning (RC2, 3DES).
    """

    name: str
    oid: str
    family: str
    mode: str
    key_size: int
    block_size: int
    iv_size: int
    effective_bits: int | None = None
    weak: bool = False

    @property
    def authenticated(self) -> bool:
        """True for AES-GCM, which CMS carries as AuthEnvelopedData (RFC 5083)."""
        return self.mode == "gcm"

    def ciphertext_length(self, plaintext_length: int) -> int:
        """Ciphertext length for a plaintext length: CBC always adds 1..block bytes of
        PKCS#7 padding (RFC 5652 section 6.3); GCM adds nothing (the tag is separate)."""
        if self.mode == "gcm":
            return plaintext_length
        return (plaintext_length // self.block_size + 1) * self.block_size


GCM_TAG_LENGTH = 16  # we always write a full 16-byte ICV (RFC 5084 section 3.2)

_TABLE = (
    ContentCipher("aes128", "2.16.840.1.101.3.4.1.2", "aes", "cbc", 16, 16, 16),
    ContentCipher("aes192", "2.16.840.1.101.3.4.1.22", "aes", "cbc", 24, 16, 16),
    ContentCipher("aes256", "2.16.840.1.101.3.4.1.42", "aes", "cbc", 32, 16, 16),
    ContentCipher("3des", OID_DES_EDE3_CBC, "3des", "cbc", 24, 8, 8, weak=True),
    ContentCipher("rc2-128", OID_RC2_CBC, "rc2", "cbc", 16, 8, 8, 128, weak=True),
    ContentCipher("rc2-64", OID_RC2_CBC, "rc2", "cbc", 8, 8, 8, 64, weak=True),
    ContentCipher("rc2-40", OID_RC2_CBC, "rc2", "cbc", 5, 8, 8, 40, weak=True),
    ContentCipher("aes128-gcm", "2.16.840.1.101.3.4.1.6", "aes", "gcm", 16, 16, 12),
    ContentCipher("aes192-gcm", "2.16.840.1.101.3.4.1.26", "aes", "gcm", 24, 16, 12),
    ContentCipher("aes256-gcm", "2.16.840.1.101.3.4.1.46", "aes", "gcm", 32, 16, 12),
)

CIPHERS: dict[str, ContentCipher] = {c.name: c for c in _TABLE}
# The names offered for encrypting (smimecli.choices.Cipher); the table also holds these,
# which smimecli reads (decrypt, inspect) but does not offer for writing.
CIPHER_NAMES: tuple[str, ...] = names(Cipher)
READ_ONLY_CIPHERS: tuple[str, ...] = ("aes192-gcm",)
# OID -> cipher, for every OID but RC2's (whose size is in the parameters).
CIPHER_BY_OID: dict[str, ContentCipher] = {c.oid: c for c in _TABLE if c.family != "rc2"}


def get_cipher(name: str) -> ContentCipher:
    """The cipher for a CLI name; an unknown name is a usage error (64)."""
    cipher = CIPHERS.get(name.lower())
    if cipher is None:
        raise UsageError(f"unknown cipher {name!r}: choose one of {', '.join(CIPHER_NAMES)}")
    return cipher


def rc2_cipher(effective_bits: int) -> ContentCipher:
    """The RC2 entry for any effective key size (the key is bits/8 bytes, as OpenSSL does)."""
    for cipher in _TABLE:
        if cipher.family == "rc2" and cipher.effective_bits == effective_bits:
            return cipher
    return ContentCipher(
        f"rc2-{effective_bits}",
        OID_RC2_CBC,
        "rc2",
        "cbc",
        max(1, (effective_bits + 7) // 8),
        8,
        8,
        effective_bits,
        weak=True,
    )


def weak_cipher_warning(cipher: ContentCipher) -> str | None:
    """The warning text for a weak cipher, or None."""
    if not cipher.weak:
        return None
    return f"cipher {cipher.name} is weak; use it only for recipients whose clients cannot read AES"


def new_key(cipher: ContentCipher) -> bytes:
    """A fresh random content-encryption key."""
    return os.urandom(cipher.key_size)


def new_iv(cipher: ContentCipher) -> bytes:
    """A fresh random IV (CBC) or nonce (GCM)."""
    return os.urandom(cipher.iv_size)


# --- AlgorithmIdentifier ---------------------------------------------------------------------


def algorithm_identifier(cipher: ContentCipher, iv: bytes) -> bytes:
    """The DER ContentEncryptionAlgorithmIdentifier for ``cipher`` with this IV / nonce.

    Written with :mod:`smimecli.cms.der`: encrypting never imports asn1crypto (start-up is
    most of a small message's time).
    """
    if len(iv) != cipher.iv_size:
        raise ValueError(f"{cipher.name} needs a {cipher.iv_size}-byte IV")
    if cipher.family == "rc2":
        # RFC 3370 section 5.2: RC2CBCParameter ::= SEQUENCE { rc2ParameterVersion, iv }
        assert cipher.effective_bits is not None
        version = rc2.version_for_bits(cipher.effective_bits)
        params = der.tlv(der.SEQUENCE, der.integer(version) + der.tlv(der.OCTET_STRING, iv))
    elif cipher.mode == "gcm":
        # RFC 5084 section 3.2: GCMParameters ::= SEQUENCE { aes-nonce, aes-ICVlen DEFAULT
        # 12 }; the 16-byte tag is not the default, so DER writes it.
        params = der.tlv(der.SEQUENCE, der.tlv(der.OCTET_STRING, iv) + der.integer(GCM_TAG_LENGTH))
    else:
        # RFC 3565 section 4.1 / RFC 3370 section 5.1: the IV as an OCTET STRING.
        params = der.tlv(der.OCTET_STRING, iv)
    return der.tlv(der.SEQUENCE, der.oid(cipher.oid) + params)


@functools.cache
def _asn1() -> Any:
    """asn1crypto declarations for reading parameters, made on first use (decrypt only)."""
    from asn1crypto import core

    class AlgorithmIdentifier(core.Sequence):  # type: ignore[misc]
        _fields = [  # noqa: RUF012 - asn1crypto's declaration style
            ("algorithm", core.ObjectIdentifier),
            ("parameters", core.Any, {"optional": True}),
        ]

    class RC2Parameters(core.Sequence):  # type: ignore[misc]
        _fields = [  # noqa: RUF012
            ("rc2_parameter_version", core.Integer),
            ("iv", core.OctetString),
        ]

    class GCMParameters(core.Sequence):  # type: ignore[misc]
        _fields = [  # noqa: RUF012
            ("aes_nonce", core.OctetString),
            ("aes_icvlen", core.Integer, {"default": 12}),
        ]

    return SimpleNamespace(
        core=core,
        AlgorithmIdentifier=AlgorithmIdentifier,
        RC2Parameters=RC2Parameters,
        GCMParameters=GCMParameters,
    )


@dataclass(frozen=True)
class ContentAlgorithm:
    """A parsed ContentEncryptionAlgorithmIdentifier.

    Attributes:
        cipher: the cipher (for RC2, the entry for the effective key bits found).
        iv: the IV (CBC) or nonce (GCM).
        tag_length: GCM ICV length in bytes (RFC 5084), else 0.
    """

    cipher: ContentCipher
    iv: bytes
    tag_length: int = 0

    @property
    def name(self) -> str:
        """The CLI-style name, e.g. ``aes256`` or ``rc2-40``."""
        return self.cipher.name


def parse_algorithm_identifier(algorithm_identifier: bytes) -> ContentAlgorithm:
    """Read a ContentEncryptionAlgorithmIdentifier (DER bytes).

    RC2 parameters are accepted as the RFC 3370 SEQUENCE (version numbers mapped with the
    RFC 2268 table, or the bit count itself from 256 up) or as a bare IV (32 bits, RFC 2268
    section 6). Anything unknown or malformed is a DataError (65).
    """
    asn1 = _asn1()
    try:
        parsed = asn1.AlgorithmIdentifier.load(bytes(algorithm_identifier))
        oid = parsed["algorithm"].dotted
        params = parsed["parameters"]
        raw_params = params.dump() if params.native is not None or params.contents else b""
    except (ValueError, TypeError, KeyError) as exc:
        raise DataError(f"content-encryption algorithm is not valid DER: {exc}") from exc
    try:
        if oid == OID_RC2_CBC:
            return _parse_rc2(raw_params)
        cipher = CIPHER_BY_OID.get(oid)
        if cipher is None:
            raise DataError(f"unsupported content-encryption algorithm {oid}")
        if cipher.mode == "gcm":
            gcm = asn1.GCMParameters.load(raw_params)
            nonce = bytes(gcm["aes_nonce"].native)
            tag_length = int(gcm["aes_icvlen"].native)
            if not nonce or not 12 <= tag_length <= 16:
                raise DataError(f"{cipher.name} parameters are not valid (RFC 5084)")
            return ContentAlgorithm(replace(cipher, iv_size=len(nonce)), nonce, tag_length)
        iv = bytes(asn1.core.OctetString.load(raw_params).native)
        if len(iv) != cipher.block_size:
            raise DataError(f"{cipher.name} IV must be {cipher.block_size} bytes")
        return ContentAlgorithm(cipher, iv)
    except (ValueError, TypeError) as exc:
        raise DataError(f"content-encryption parameters are not valid: {exc}") from exc


def _parse_rc2(raw_params: bytes) -> ContentAlgorithm:
    asn1 = _asn1()
    value = asn1.core.Asn1Value.load(raw_params)
    if isinstance(value, asn1.core.OctetString) or (value.tag == 4 and value.class_ == 0):
        iv = bytes(asn1.core.OctetString.load(raw_params).native)
        bits = rc2.DEFAULT_EFFECTIVE_BITS
    else:
        params = asn1.RC2Parameters.load(raw_params)
        iv = bytes(params["iv"].native)
        bits = rc2.bits_for_version(int(params["rc2_parameter_version"].native))
    if len(iv) != rc2.BLOCK_SIZE:
        raise DataError("RC2 IV must be 8 bytes")
    return ContentAlgorithm(rc2_cipher(bits), iv)


# --- streaming encryption ------------------------------------------------------------------


def _block_context(cipher: ContentCipher, key: bytes, iv: bytes, *, decrypt: bool) -> Any:
    """A cryptography CipherContext (or the RC2 equivalent) without padding."""
    if cipher.family == "rc2":
        assert cipher.effective_bits is not None
        return rc2.rc2_cbc(key, cipher.effective_bits, iv, decrypt=decrypt)
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    algorithm: Any
    if cipher.family == "3des":
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

        algorithm = TripleDES(key)
    else:
        from cryptography.hazmat.primitives.ciphers.algorithms import AES

        algorithm = AES(key)
    mode: Any
    if cipher.mode == "gcm":
        mode = modes.GCM(iv, min_tag_length=12) if decrypt else modes.GCM(iv)
    else:
        mode = modes.CBC(iv)
    engine = Cipher(algorithm, mode)
    return engine.decryptor() if decrypt else engine.encryptor()


class ContentEncryptor:
    """Encrypts a content stream: CBC with PKCS#7 padding (RFC 5652 section 6.3) or GCM.

    ``update_into`` writes into a caller's reused buffer (at least ``len(data) + 15``
    bytes), which keeps big messages to one copy; after ``finalize()``, ``tag`` holds the
    GCM MAC.
    """

    def __init__(self, cipher: ContentCipher, key: bytes, iv: bytes) -> None:
        if len(key) != cipher.key_size:
            raise ValueError(f"{cipher.name} needs a {cipher.key_size}-byte key")
        self.cipher = cipher
        self._ctx = _block_context(cipher, key, iv, decrypt=False)
        self._fast = hasattr(self._ctx, "update_into")
        self._count = 0
        self.tag = b""

    def update(self, data: bytes | memoryview) -> bytes:
        """Encrypt a chunk; returns whatever whole blocks are ready."""
        self._count += len(data)
        return bytes(self._ctx.update(data))

    def update_into(self, data: bytes | bytearray | memoryview, buf: bytearray) -> int:
        """Encrypt a chunk into ``buf``; returns the number of bytes written."""
        self._count += len(data)
        if self._fast:
            return int(self._ctx.update_into(data, buf))
        out = self._ctx.update(bytes(data))
        buf[: len(out)] = out
        return len(out)

    def finalize(self) -> bytes:
        """Pad (CBC) and flush; sets ``tag`` for GCM."""
        tail = b""
        if self.cipher.mode == "cbc":
            pad = self.cipher.block_size - self._count % self.cipher.block_size
            tail = bytes(self._ctx.update(bytes([pad]) * pad))
        tail += bytes(self._ctx.finalize())
        if self.cipher.mode == "gcm":
            self.tag = bytes(self._ctx.tag)
        return tail


# --- streaming decryption ------------------------------------------------------------------


class CBCDecryptor:
    """Decrypts CBC content and strips its PKCS#7 padding.

    The last block is held back until ``finalize()``, which checks the padding with
    cryptography's constant-time unpadder; any failure raises DataError(DECRYPT_FAILED).
    """

    def __init__(self, cipher: ContentCipher, key: bytes, iv: bytes) -> None:
        from cryptography.hazmat.primitives import padding

        self._ctx = _block_context(cipher, key, iv, decrypt=True)
        self._unpadder = padding.PKCS7(cipher.block_size * 8).unpadder()

    def update(self, data: bytes | memoryview) -> bytes:
        """Decrypt a chunk; returns plaintext except the last block (maybe padding)."""
        return bytes(self._unpadder.update(self._ctx.update(data)))

    def finalize(self) -> bytes:
        """Check and remove the padding; returns the rest of the plaintext."""
        try:
            tail = self._unpadder.update(self._ctx.finalize())
            return bytes(tail + self._unpadder.finalize())
        except (ValueError, DataError):
            raise DataError(DECRYPT_FAILED) from None


class GCMDecryptor:
    """Decrypts AES-GCM content; the MAC is given with ``set_tag`` before ``finalize``."""

    def __init__(self, cipher: ContentCipher, key: bytes, nonce: bytes, tag_length: int):
        self._ctx = _block_context(cipher, key, nonce, decrypt=True)
        self._tag_length = tag_length
        self._tag: bytes | None = None

    def authenticate_additional_data(self, data: bytes) -> None:
        """Feed the authAttrs (DER, as a SET) before any ciphertext (RFC 5083 section 2.2)."""
        self._ctx.authenticate_additional_data(data)

    def update(self, data: bytes | memoryview) -> bytes:
        """Decrypt a chunk (not yet authenticated)."""
        return bytes(self._ctx.update(data))

    def set_tag(self, tag: bytes) -> None:
        """The MAC from AuthEnvelopedData.mac; must match aes-ICVlen."""
        self._tag = bytes(tag)

    def finalize(self) -> bytes:
        """Verify the MAC; a wrong key, tag or ciphertext raises DataError."""
        if self._tag is None:
            raise DataError("AES-GCM content has no authentication tag (mac)")
        return self.finalize_with_tag(self._tag)

    def finalize_with_tag(self, tag: bytes) -> bytes:
        """Verify ``tag`` and finish."""
        from cryptography.exceptions import InvalidTag

        if len(tag) != self._tag_length:
            raise DataError(DECRYPT_FAILED)
        try:
            return bytes(self._ctx.finalize_with_tag(tag))
        except (InvalidTag, ValueError):
            raise DataError(DECRYPT_FAILED) from None


def content_decryptor(algorithm_identifier: Any, key: bytes) -> CBCDecryptor | GCMDecryptor:
    """A streaming decryptor for a ContentEncryptionAlgorithmIdentifier and key.

    Args:
        algorithm_identifier: DER bytes, or a parsed ContentAlgorithm.
        key: the content-encryption key from the RecipientInfo.
    """
    if isinstance(algorithm_identifier, ContentAlgorithm):
        algo = algorithm_identifier
    else:
        algo = parse_algorithm_identifier(algorithm_identifier)
    cipher = algo.cipher
    if cipher.family == "rc2":
        if not 1 <= len(key) <= 128:
            raise DataError(DECRYPT_FAILED)
    elif cipher.family == "3des":
        if len(key) not in (16, 24):
            raise DataError(DECRYPT_FAILED)
    elif len(key) != cipher.key_size:
        raise DataError(DECRYPT_FAILED)
    if cipher.mode == "gcm":
        return GCMDecryptor(cipher, key, algo.iv, algo.tag_length)
    return CBCDecryptor(cipher, key, algo.iv)
