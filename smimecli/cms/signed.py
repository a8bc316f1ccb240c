"""Building a CMS SignedData (RFC 5652 section 5) for S/MIME signatures (RFC 8551).

Built like cryptography's builders: each ``set_*`` / ``add_*`` returns the builder, and
:meth:`SignedDataBuilder.sign` validates the whole and returns the DER ContentInfo.

The content is hashed chunk by chunk. A detached signature (``multipart/signed``) never
holds the content; an opaque one (``application/pkcs7-mime; smime-type=signed-data``)
carries it inside the DER output: :meth:`SignedDataBuilder.sign` holds it once, in the
output being built, and :meth:`SignedDataBuilder.sign_around` returns the DER before and
after it, for a caller that streams the content (read again) between the two.

Signed attributes (RFC 8551 section 2.5): contentType, messageDigest, signingTime,
SMIMECapabilities, the S/MIME encryption key preference (RFC 8551 section 2.5.3, naming
the signer's certificate by issuer and serial) and ESS signingCertificateV2 (RFC 5035
section 3), which binds the signer's certificate to the signature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from smimecli.cms import OID_DATA, OID_SIGNED_DATA
from smimecli.cms.der import (
    CONTEXT_0_CONSTRUCTED,
    OCTET_STRING,
    SEQUENCE,
    header,
    integer,
    oid,
    tlv,
    tlv_length,
)
from smimecli.cms.sigalgs import (
    DEFAULT_HASH,
    SIGNATURE_SCHEMES,
    Digest,
    PrivateKey,
    sign,
    signature_algorithm,
    signing_digest,
)
from smimecli.errors import UsageError

__all__ = ["SMIME_CAPABILITIES", "SignedDataBuilder", "is_self_issued"]

# RFC 8551 section 2.5.2: strongest first. AES-GCM (RFC 5084), AES-CBC (RFC 3565),
# and RSAES-OAEP (RFC 3560) as a key transport the signer can receive.
SMIME_CAPABILITIES = (
    ("aes256_gcm", "2.16.840.1.101.3.4.1.46"),
    ("aes128_gcm", "2.16.840.1.101.3.4.1.6"),
    ("aes256_cbc", "2.16.840.1.101.3.4.1.42"),
    ("aes192_cbc", "2.16.840.1.101.3.4.1.22"),
    ("aes128_cbc", "2.16.840.1.101.3.4.1.2"),
    ("rsaes_oaep", "1.2.840.113549.1.1.7"),
)
_CHUNK = 1 << 20
# By OID: asn1crypto learns the name only when asn1crypto.tsp is imported, and a name map
# built before that import would not know it.
_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
_UTC_TIME_UNTIL = 2050  # RFC 5652 section 11.3: UTCTime up to 2049, GeneralizedTime after


def is_self_issued(cert: x509.Certificate) -> bool:
    """True for a root (subject equals issuer and it verifies under its own key)."""
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, Exception):  # InvalidSignature and unsupported keys
        return False
    return True


def _der_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class SignedDataBuilder:
    """Builds one SignedData; set what you need, then call :meth:`sign`.

    Each choice is made once (a second ``set_*`` call is refused, as cryptography's
    builders refuse a second ``subject_name``); :meth:`sign` checks the whole. Misuse is a
    :class:`~smimecli.errors.UsageError`, so a caller catches one error family.
    """

    def __init__(self) -> None:
        self._chosen: set[str] = set()
        self._cert: x509.Certificate | None = None
        self._key: PrivateKey | None = None
        self._scheme = "pkcs1v15"
        self._digest: Digest = signing_digest(DEFAULT_HASH)
        self._content: bytes | BinaryIO | Iterable[bytes] | None = None
        self._detached = True
        self._certs: list[x509.Certificate] = []
        self._signing_time: dt.datetime | None = None

    def set_signer(
        self, cert: x509.Certificate, key: PrivateKey, *, scheme: str = "pkcs1v15"
    ) -> SignedDataBuilder:
        """The signer. ``scheme`` is ``pkcs1v15`` or ``pss`` for RSA keys (ignored for EC).

        Raises:
            UsageError: a signer was already set or the scheme is unknown.
        """
        if self._cert is not None:
            raise UsageError("the signer is already set: one signer per signature")
        if scheme not in SIGNATURE_SCHEMES:
            raise UsageError(f"unknown signature scheme {scheme!r}: use pkcs1v15 or pss")
        self._cert, self._key, self._scheme = cert, key, scheme
        return self

    def _once(self, what: str) -> None:
        """Refuse a second choice of ``what``."""
        if what in self._chosen:
            raise UsageError(f"the {what} is already set: set it once per signature")
        self._chosen.add(what)

    @property
    def micalg(self) -> str:
        """The RFC 8551 section 3.5.3.2 ``micalg`` value of the chosen hash (``sha-256``)."""
        return self._digest.micalg

    def set_hash(self, name: str) -> SignedDataBuilder:
        """The digest algorithm: ``sha256`` (default), ``sha384`` or ``sha512``.

        Raises:
            UsageError: the hash was already set or is unknown.
        """
        digest = signing_digest(name)
        self._once("hash")
        self._digest = digest
        return self

    def set_content(
        self, content: bytes | BinaryIO | Iterable[bytes], *, detached: bool = True
    ) -> SignedDataBuilder:
        """The bytes to sign (already canonical), as bytes, a binary stream or chunks.

        Args:
            detached: True for a detached signature (multipart/signed), False to carry the
                content inside (opaque signed-data).
        """
        if self._content is not None:
            raise UsageError("the content is already set")
        self._content, self._detached = content, detached
        return self

    def add_certificate(self, cert: x509.Certificate) -> SignedDataBuilder:
        """Include one more certificate (an intermediate, or a root when wanted)."""
        if all(_der_cert(cert) != _der_cert(have) for have in self._certs):
            self._certs.append(cert)
        return self

    def add_chain(
        self, certs: Sequence[x509.Certificate], *, include_root: bool = False
    ) -> SignedDataBuilder:
        """Include a chain; self-signed roots are left out unless ``include_root``."""
        for cert in certs:
            if include_root or not is_self_issued(cert):
                self.add_certificate(cert)
        return self

    def set_signing_time(self, when: dt.datetime) -> SignedDataBuilder:
        """The signingTime attribute (default: now). A naive datetime is taken as UTC.

        Raises:
            UsageError: the signing time was already set.
        """
        self._once("signing time")
        self._signing_time = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        return self

    def _check(self) -> tuple[x509.Certificate, PrivateKey, Any]:
        from smimecli.certs.keys import cert_matches_key

        if self._cert is None or self._key is None:
            raise UsageError("no signer: call set_signer(certificate, private key) first")
        if self._content is None:
            raise UsageError("no content to sign: call set_content() first")
        if not cert_matches_key(self._cert, self._key):
            raise UsageError("the private key does not belong to the signer's certificate")
        return self._cert, self._key, self._content

    def sign(self) -> bytes:
        """Validate, hash the content, sign; returns the DER ContentInfo.

        Raises:
            UsageError: the signer or the content is missing, or key and certificate differ.
        """
        cert, key, content = self._check()
        held = bytearray() if not self._detached else None
        digest, _size = _hash_content(content, self._digest, held)
        before, after = self._frame(self._signer_info(cert, key, digest), _length(held))
        return before if held is None else before + bytes(held) + after

    def sign_around(self, length: int) -> tuple[bytes, bytes]:
        """An opaque signature of a content too big to hold: hash the content (a stream,
        read to its end), sign, and return the DER before and after the content octets.
        The caller writes ``before``, the content again, then ``after``; the result is the
        bytes :meth:`sign` returns, without the content ever held in memory.

        Args:
            length: the content's size in bytes (checked against what was read).

        Raises:
            UsageError: as :meth:`sign`; a detached signature, or a content of another size.
        """
        cert, key, content = self._check()
        if self._detached:
            raise UsageError("sign_around() is for opaque signatures: set_content(detached=False)")
        digest, size = _hash_content(content, self._digest, None)
        if size != length:
            raise UsageError(f"the content is {size} bytes, not the {length} announced")
        return self._frame(self._signer_info(cert, key, digest), length)

    def _signer_info(self, cert: x509.Certificate, key: PrivateKey, digest: bytes) -> Any:
        from asn1crypto import cms

        attrs = cms.CMSAttributes(self._attributes(cert, digest))
        signature = sign(key, self._digest, self._scheme, attrs.dump())
        return cms.SignerInfo(
            {
                "version": "v1",  # the signer named by issuer and serial (RFC 5652 5.3)
                "sid": self._sid_value(cert),
                "digest_algorithm": {"algorithm": self._digest.name},
                "signed_attrs": attrs,
                "signature_algorithm": signature_algorithm(key, self._digest, self._scheme),
                "signature": signature,
            }
        )

    def _sid_value(self, cert: x509.Certificate) -> Any:
        from asn1crypto import cms
        from asn1crypto import x509 as asn1_x509

        parsed = asn1_x509.Certificate.load(_der_cert(cert))
        return cms.SignerIdentifier(
            {
                "issuer_and_serial_number": {
                    "issuer": parsed.issuer,
                    "serial_number": parsed.serial_number,
                }
            }
        )

    def _attributes(self, cert: x509.Certificate, digest: bytes) -> list[dict[str, Any]]:
        from asn1crypto import cms, tsp  # tsp registers signingCertificateV2 (RFC 5035)
        from asn1crypto import x509 as asn1_x509

        assert tsp.SigningCertificateV2  # the import is needed for its side effect
        when = self._signing_time or dt.datetime.now(dt.UTC).replace(microsecond=0)
        time_choice = "utc_time" if when.year < _UTC_TIME_UNTIL else "generalized_time"
        parsed = asn1_x509.Certificate.load(_der_cert(cert))
        issuer_serial = {"issuer": parsed.issuer, "serial_number": parsed.serial_number}
        ess_cert_id = {
            "cert_hash": hashlib.sha256(_der_cert(cert)).digest(),
            "issuer_serial": {
                "issuer": [asn1_x509.GeneralName({"directory_name": parsed.issuer})],
                "serial_number": parsed.serial_number,
            },
        }
        key_pref = cms.SMIMEEncryptionKeyPreference({"issuer_and_serial_number": issuer_serial})
        capabilities = [{"capability_id": dotted} for _, dotted in SMIME_CAPABILITIES]
        return [
            {"type": "content_type", "values": ["data"]},
            {"type": "signing_time", "values": [cms.Time({time_choice: when})]},
            {"type": "message_digest", "values": [digest]},
            {"type": "smime_capabilities", "values": [capabilities]},
            {"type": "encrypt_key_pref", "values": [key_pref]},
            {"type": _SIGNING_CERTIFICATE_V2, "values": [{"certs": [ess_cert_id]}]},
        ]

    def _frame(self, signer_info: Any, length: int | None) -> tuple[bytes, bytes]:
        """The ContentInfo around the SignedData, written with the DER helpers: the bytes
        before an opaque content of ``length`` octets and the bytes after it (a detached
        signature, ``length`` None: the whole DER and nothing), so that the content is
        never copied through asn1crypto."""
        from asn1crypto import cms

        assert self._cert is not None  # checked by sign()
        certs = [self._cert, *(c for c in self._certs if c != self._cert)]
        size = length or 0
        econtent = (
            b""
            if length is None
            else header(CONTEXT_0_CONSTRUCTED, tlv_length(size)) + header(OCTET_STRING, size)
        )
        encap = oid(OID_DATA) + econtent
        before_content = b"".join(
            (
                integer(1),  # RFC 5652 5.1: every SignerInfo is v1, no attribute certificates
                cms.DigestAlgorithms([{"algorithm": self._digest.name}]).dump(),
                header(SEQUENCE, len(encap) + size),
                encap,
            )
        )
        after = tlv(CONTEXT_0_CONSTRUCTED, b"".join(_der_cert(c) for c in certs))
        after += cms.SignerInfos([signer_info]).dump()
        body = len(before_content) + size + len(after)
        signed_data = header(CONTEXT_0_CONSTRUCTED, tlv_length(body)) + header(SEQUENCE, body)
        type_oid = oid(OID_SIGNED_DATA)
        head = header(SEQUENCE, len(type_oid) + len(signed_data) + body)
        before = head + type_oid + signed_data + before_content
        if length is None:
            return before + after, b""
        return before, after


def _length(held: bytearray | None) -> int | None:
    return None if held is None else len(held)


def _hash_content(
    content: bytes | BinaryIO | Iterable[bytes], digest: Digest, held: bytearray | None
) -> tuple[bytes, int]:
    """The content's digest and size, fed chunk by chunk; copies it into ``held`` when
    given."""
    hasher = hashes.Hash(digest.new())
    if isinstance(content, bytes | bytearray | memoryview):
        chunks: Iterable[bytes] = (bytes(content),)
    elif hasattr(content, "read"):
        stream: Any = content
        chunks = iter(lambda: bytes(stream.read(_CHUNK)), b"")
    else:
        chunks = content
    size = 0
    for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
        if held is not None:
            held += chunk
    return hasher.finalize(), size
