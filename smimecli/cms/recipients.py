"""RecipientInfos: how each recipient gets the content-encryption key.

RSA certificates get a KeyTransRecipientInfo (RFC 5652 section 6.2.1) with PKCS#1 v1.5 or
RSAES-OAEP (RFC 8017, parameters per RFC 4055 section 4.1); EC certificates a
KeyAgreeRecipientInfo (RFC 5652 section 6.2.2) with ephemeral-static ECDH as RFC 5753
section 3.1 describes: dhSinglePass-stdDH-sha256kdf-scheme, the ANSI X9.63 KDF over
ECC-CMS-SharedInfo, and AES key wrap (RFC 3394).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap, aes_key_wrap_with_padding

# Re-exported: unwrap and callers import it from here; the store shares it (one definition).
from smimecli.certs.names import subject_key_identifier as subject_key_identifier
from smimecli.choices import (
    DEFAULT_KEY_TRANSPORT,
    DEFAULT_OAEP_HASH,
    DEFAULT_RECIPIENT_ID,
    KeyTransport,
    OaepHash,
    RecipientId,
    names,
)
from smimecli.cms import der
from smimecli.cms.algorithms import ContentCipher
from smimecli.errors import DataError, UsageError

KEY_TRANSPORTS = names(KeyTransport)
OAEP_HASHES = names(OaepHash)
RECIPIENT_IDS = names(RecipientId)

# RFC 5753 section 7.1.4 (dhSinglePass-stdDH-sha256kdf-scheme).
OID_ECDH_SHA256_KDF = "1.3.132.1.11.1"

# Hash algorithms by asn1crypto name: OAEP hashes here, OAEP and X9.63 KDF hashes when reading.
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# Key-encryption algorithms, both directions (unwrap.py reads them back).
OID_RSA = "1.2.840.113549.1.1.1"  # rsaEncryption (PKCS#1 v1.5), RFC 3370 section 4.2.1
OID_RSAES_OAEP = "1.2.840.113549.1.1.7"  # RFC 4055 section 4.1
# RFC 3565 2.3.2: AES key wrap algorithms and their key-encryption key sizes in bytes.
AES_WRAP: dict[str, tuple[str, int]] = {
    "2.16.840.1.101.3.4.1.5": ("aes128-wrap", 16),
    "2.16.840.1.101.3.4.1.25": ("aes192-wrap", 24),
    "2.16.840.1.101.3.4.1.45": ("aes256-wrap", 32),
    # RFC 5649 AES key wrap with padding (what smimecli uses for RC2-40/64 keys to EC peers).
    "2.16.840.1.101.3.4.1.8": ("aes128-wrap-pad", 16),
    "2.16.840.1.101.3.4.1.28": ("aes192-wrap-pad", 24),
    "2.16.840.1.101.3.4.1.48": ("aes256-wrap-pad", 32),
    # RFC 3217 Triple-DES key wrap (what OpenSSL picks for 3DES content to EC peers).
    "1.2.840.113549.1.9.16.3.6": ("des3-wrap", 24),
}
_CONTEXT_2_CONSTRUCTED = 0xA2  # ECC-CMS-SharedInfo suppPubInfo [2] EXPLICIT

# The other OIDs the writers below need (RecipientInfos are written with smimecli.cms.der,
# so that encrypting never imports asn1crypto; the readers in unwrap.py use asn1crypto).
_OID = {
    "mgf1": "1.2.840.113549.1.1.8",
    "sha1": "1.3.14.3.2.26",
    "sha224": "2.16.840.1.101.3.4.2.4",
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
    "ec": "1.2.840.10045.2.1",  # id-ecPublicKey, RFC 5480
}
_NULL = b"\x05\x00"
_BIT_STRING = 0x03


@dataclass(frozen=True)
class Recipient:
    """One recipient certificate and how to deliver the content key to it.

    Attributes:
        cert: the recipient's certificate (RSA or EC public key).
        key_transport: ``rsa`` (PKCS#1 v1.5) or ``rsa-oaep``; ignored for EC certificates.
        oaep_hash: the OAEP hash, also used for MGF1 (``sha1``... ``sha512``).
        recipient_id: ``issuer-serial`` or ``ski`` (subject key identifier).
    """

    cert: x509.Certificate
    key_transport: str = DEFAULT_KEY_TRANSPORT
    oaep_hash: str = DEFAULT_OAEP_HASH
    recipient_id: str = DEFAULT_RECIPIENT_ID

    def __post_init__(self) -> None:
        for what, value, choices in (
            ("key transport", self.key_transport, KEY_TRANSPORTS),
            ("OAEP hash", self.oaep_hash, OAEP_HASHES),
            ("recipient id", self.recipient_id, RECIPIENT_IDS),
        ):
            if value not in choices:
                raise UsageError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")

    @property
    def kind(self) -> str:
        """``ktri`` for RSA, ``kari`` for EC certificates."""
        key = self.cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            return "ktri"
        if isinstance(key, ec.EllipticCurvePublicKey):
            return "kari"
        raise DataError(
            f"certificate {self.label} has a {type(key).__name__} key: "
            "only RSA and EC certificates can receive encrypted mail"
        )

    @property
    def label(self) -> str:
        """The recipient as people know it: the first email address, else the subject."""
        return _label(self.cert)


@functools.lru_cache(maxsize=256)
def _label(cert: x509.Certificate) -> str:
    # Cached: a batch names the same recipients in every message's report.
    emails = certificate_emails(cert)
    return emails[0] if emails else cert.subject.rfc4514_string()


def certificate_emails(cert: x509.Certificate) -> list[str]:
    """The rfc822Name SANs, then the subject emailAddress values, without duplicates."""
    found: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        found.extend(san.value.get_values_for_type(x509.RFC822Name))
    except (x509.ExtensionNotFound, ValueError):
        pass
    for attr in cert.subject.get_attributes_for_oid(x509.NameOID.EMAIL_ADDRESS):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode()
        if value.lower() not in (item.lower() for item in found):
            found.append(value)
    return found


@dataclass
class BuiltRecipientInfo:
    """A RecipientInfo ready to be written, and what building it produced."""

    der: bytes
    version: int  # 0 (KTRI issuer/serial), 2 (KTRI SKI), 3 (KARI)
    key_encryption: str  # e.g. "rsa", "rsa-oaep-sha256", "ecdh-sha256-aes256-wrap"
    warnings: list[str] = field(default_factory=list)


def _issuer_and_serial(cert: x509.Certificate) -> bytes:
    """DER IssuerAndSerialNumber, copied from the certificate's own encoding: the issuer
    Name must match the certificate byte for byte (RFC 5652 section 10.2.4)."""
    data = cert.tbs_certificate_bytes

    def element_end(pos: int) -> int:
        _, start, length = der.read_header(data, pos)
        if length is None or start + length > len(data):
            raise ValueError("not DER")
        return start + length

    try:
        tag, start, _ = der.read_header(data, 0)  # TBSCertificate
        if tag != der.SEQUENCE:
            raise ValueError("no tbsCertificate")
        if data[start] == der.CONTEXT_0_CONSTRUCTED:  # version [0] EXPLICIT, absent for v1
            start = element_end(start)
        serial_start = start
        serial_end = element_end(serial_start)  # serialNumber
        end = element_end(serial_end)  # signature AlgorithmIdentifier
        issuer_end = element_end(end)  # issuer Name
    except (ValueError, IndexError) as exc:
        raise DataError(f"certificate {_label(cert)} is not valid DER: {exc}") from exc
    issuer, serial = data[end:issuer_end], data[serial_start:serial_end]
    return der.tlv(der.SEQUENCE, issuer + serial)


def _digest_algorithm(name: str) -> bytes:
    # RFC 4055 section 2.1: inside RSAES-OAEP-params the hash identifiers carry NULL.
    return der.tlv(der.SEQUENCE, der.oid(_OID[name]) + _NULL)


def _oaep_parameters(hash_name: str) -> bytes:
    # RFC 4055 section 4.1, written explicitly (hash and MGF1 with the same hash),
    # even for SHA-1 where they equal the DEFAULTs; the label stays the
    # default empty pSpecified.
    hash_der = _digest_algorithm(hash_name)
    mgf_der = der.tlv(der.SEQUENCE, der.oid(_OID["mgf1"]) + hash_der)
    content = der.tlv(der.CONTEXT_0_CONSTRUCTED, hash_der)
    content += der.tlv(der.CONTEXT_1_CONSTRUCTED, mgf_der)
    return der.tlv(der.SEQUENCE, content)


@functools.lru_cache(maxsize=64)
def _ktri_template(recipient: Recipient) -> tuple[bytes, bytes, int, str]:
    """The parts of a KTRI that depend only on the recipient: version, rid and algorithm
    DER, and the key-encryption name. Cached: a batch encrypts to the same recipients many
    times."""
    if recipient.key_transport == "rsa-oaep":
        alg = der.tlv(der.SEQUENCE, der.oid(OID_RSAES_OAEP) + _oaep_parameters(recipient.oaep_hash))
        name = f"rsa-oaep-{recipient.oaep_hash}"
    else:
        alg = der.tlv(der.SEQUENCE, der.oid(OID_RSA) + _NULL)
        name = "rsa"
    if recipient.recipient_id == "ski":
        # subjectKeyIdentifier [0] IMPLICIT OCTET STRING
        rid = der.tlv(der.CONTEXT_0_PRIMITIVE, subject_key_identifier(recipient.cert))
        version = 2  # RFC 5652 section 6.2.1: v2 with subjectKeyIdentifier
    else:
        rid = _issuer_and_serial(recipient.cert)
        version = 0
    return rid, alg, version, name


def _ktri(recipient: Recipient, cek: bytes) -> BuiltRecipientInfo:
    public_key = recipient.cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    warnings: list[str] = []
    if recipient.key_transport == "rsa-oaep":
        hash_cls = HASHES[recipient.oaep_hash]
        encrypted = public_key.encrypt(
            cek,
            padding.OAEP(mgf=padding.MGF1(hash_cls()), algorithm=hash_cls(), label=None),
        )
        weak = oaep_sha1_warning(recipient)
        if weak:
            warnings.append(weak)
    else:
        encrypted = public_key.encrypt(cek, padding.PKCS1v15())
    rid, alg, version, name = _ktri_template(recipient)
    # RFC 5652 section 6.2.1: KeyTransRecipientInfo ::= SEQUENCE { version, rid,
    # keyEncryptionAlgorithm, encryptedKey OCTET STRING }; the ktri CHOICE is untagged.
    info = der.tlv(
        der.SEQUENCE,
        der.integer(version) + rid + alg + der.tlv(der.OCTET_STRING, encrypted),
    )
    return BuiltRecipientInfo(info, version, name, warnings)


def ecc_cms_shared_info(wrap_algorithm_der: bytes, ukm: bytes | None, kek_bits: int) -> bytes:
    """DER of ECC-CMS-SharedInfo (RFC 5753 section 7.2): keyInfo, [0] ukm, [2] key size in bits.

    Both sides use it: the KDF input when wrapping here and when unwrapping (unwrap.py).
    """
    body = wrap_algorithm_der
    if ukm is not None:
        body += der.tlv(der.CONTEXT_0_CONSTRUCTED, der.tlv(der.OCTET_STRING, ukm))
    body += der.tlv(_CONTEXT_2_CONSTRUCTED, der.tlv(der.OCTET_STRING, kek_bits.to_bytes(4, "big")))
    return der.tlv(der.SEQUENCE, body)


def _wrap_choice(cipher: ContentCipher) -> tuple[str, str, int]:
    """The key-wrap algorithm (OID, name) and KEK size for a content cipher.

    AES content keys are wrapped with AES of the same size, as OpenSSL does. 3DES and
    RC2-128 (112- and 128-bit strength) use id-aes128-wrap rather than the RFC 3217 3DES
    wrap OpenSSL picks: every RFC 5753 reader supports AES wrap, and it is not weaker.
    RC2-40 and RC2-64 keys are shorter than RFC 3394 allows, so they use RFC 5649 wrap
    with padding.
    """
    if cipher.family == "aes":
        kek_size = cipher.key_size
    else:
        kek_size = 16
    name = f"aes{kek_size * 8}-wrap" + ("-pad" if cipher.key_size < 16 else "")
    oid = next(oid for oid, (known, _) in AES_WRAP.items() if known == name)
    return oid, name, kek_size


def _kari(recipient: Recipient, cek: bytes, cipher: ContentCipher) -> BuiltRecipientInfo:
    public_key = recipient.cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    wrap_oid, wrap_name, kek_size = _wrap_choice(cipher)
    ephemeral = ec.generate_private_key(public_key.curve)
    shared_secret = ephemeral.exchange(ec.ECDH(), public_key)
    # The wrap AlgorithmIdentifier has no parameters (RFC 3565 section 2.3.2).
    wrap_alg = der.tlv(der.SEQUENCE, der.oid(wrap_oid))
    shared_info = ecc_cms_shared_info(wrap_alg, None, kek_size * 8)
    kek = X963KDF(algorithm=hashes.SHA256(), length=kek_size, sharedinfo=shared_info).derive(
        shared_secret
    )
    if wrap_name.endswith("-pad"):
        wrapped = aes_key_wrap_with_padding(kek, cek)
    else:
        wrapped = aes_key_wrap(kek, cek)
    from cryptography.hazmat.primitives import serialization

    point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    # RFC 5652 section 6.2.2 with RFC 5753 section 3.1.1: originator [0] EXPLICIT
    # originatorKey [1] IMPLICIT OriginatorPublicKey { id-ecPublicKey without parameters,
    # the ephemeral point as a BIT STRING }.
    originator_key = der.tlv(der.SEQUENCE, der.oid(_OID["ec"])) + der.tlv(
        _BIT_STRING, b"\x00" + point
    )
    originator = der.tlv(
        der.CONTEXT_0_CONSTRUCTED, der.tlv(der.CONTEXT_1_CONSTRUCTED, originator_key)
    )
    if recipient.recipient_id == "ski":
        # rKeyId [0] IMPLICIT RecipientKeyIdentifier ::= SEQUENCE { subjectKeyIdentifier }
        rid = der.tlv(
            der.CONTEXT_0_CONSTRUCTED,
            der.tlv(der.OCTET_STRING, subject_key_identifier(recipient.cert)),
        )
    else:
        rid = _issuer_and_serial(recipient.cert)
    kari_alg = der.tlv(der.SEQUENCE, der.oid(OID_ECDH_SHA256_KDF) + wrap_alg)
    encrypted_key = der.tlv(der.SEQUENCE, rid + der.tlv(der.OCTET_STRING, wrapped))
    # KeyAgreeRecipientInfo { version 3, originator, keyEncryptionAlgorithm,
    # recipientEncryptedKeys SEQUENCE OF }, as the kari [1] IMPLICIT alternative.
    info = der.tlv(
        der.CONTEXT_1_CONSTRUCTED,  # the kari [1] IMPLICIT alternative
        der.integer(3) + originator + kari_alg + der.tlv(der.SEQUENCE, encrypted_key),
    )
    name = f"ecdh-sha256kdf-{wrap_name}"
    return BuiltRecipientInfo(info, 3, name)


def oaep_sha1_warning(recipient: Recipient) -> str | None:
    """The warning for RSA-OAEP with SHA-1, or None."""
    if recipient.key_transport != "rsa-oaep" or recipient.oaep_hash != "sha1":
        return None
    return (
        f"RSA-OAEP with SHA-1 for {recipient.label} is weak; use sha256 unless the "
        "recipient's client needs it"
    )


def build_recipient_info(
    recipient: Recipient, cek: bytes, cipher: ContentCipher
) -> BuiltRecipientInfo:
    """Encrypt (RSA) or wrap (EC) the content key ``cek`` for one recipient.

    Returns:
        the DER RecipientInfo, its CMS version, the key-encryption algorithm's name, and
        warnings (SHA-1 OAEP).
    """
    if recipient.kind == "ktri":
        return _ktri(recipient, cek)
    return _kari(recipient, cek, cipher)
