"""EnvelopeBuilder: CMS EnvelopedData (RFC 5652 section 6) and AuthEnvelopedData (RFC 5083)
written in constant memory.

The small parts (RecipientInfos, the AlgorithmIdentifier) come from asn1crypto; the outer
ContentInfo framing is written with :mod:`smimecli.cms.der` around a content that is read,
encrypted and written in 1 MiB pieces into a reused buffer. All lengths are definite (the
plaintext length is known in advance), so the output is DER.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import BinaryIO, Protocol

from smimecli.cms import (
    OID_AUTH_ENVELOPED_DATA,
    OID_DATA,
    OID_ENVELOPED_DATA,
    SPOOL_IN_MEMORY,
    der,
)
from smimecli.cms.algorithms import (
    DEFAULT_CIPHER,
    GCM_TAG_LENGTH,
    ContentCipher,
    algorithm_identifier,
    content_encryptor,
    get_cipher,
    new_iv,
    new_key,
    weak_cipher_warning,
)
from smimecli.cms.recipients import Recipient, build_recipient_info
from smimecli.errors import IOFailedError, UsageError

__all__ = ["EnvelopeBuilder", "EnvelopeResult", "Recipient"]

log = logging.getLogger("smimecli")

CHUNK = 1 << 20


class Writable(Protocol):
    """Anything with ``write(bytes)``: a file, BytesIO, or a base64 line writer."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


@dataclass
class RecipientSummary:
    """Who can open the envelope, and how their key was protected."""

    label: str
    kind: str  # "ktri" | "kari"
    key_encryption: str


@dataclass
class EnvelopeResult:
    """What :meth:`EnvelopeBuilder.encrypt_stream` produced."""

    cipher: str
    content_type: str  # "enveloped-data" | "authEnveloped-data"
    recipients: list[RecipientSummary]
    warnings: list[str] = field(default_factory=list)
    size: int = 0  # bytes of DER written


def read_chunks(src: BinaryIO) -> Iterator[bytes]:
    """The stream's bytes, CHUNK at a time, to its end."""
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return
        yield chunk


class EnvelopeBuilder:
    """Builds one enveloped message: choose a cipher, add recipients, encrypt.

    Example::

        envelope = EnvelopeBuilder().set_cipher("aes256").add_recipient(Recipient(cert))
        der_bytes = envelope.encrypt(b"Content-Type: text/plain\\r\\n\\r\\nhello\\r\\n")
    """

    def __init__(self) -> None:
        self._cipher: ContentCipher = get_cipher(DEFAULT_CIPHER)
        self._recipients: list[Recipient] = []

    @property
    def cipher(self) -> ContentCipher:
        """The content cipher in use."""
        return self._cipher

    @property
    def recipients(self) -> list[Recipient]:
        """The recipients added so far."""
        return list(self._recipients)

    def set_cipher(self, name: str) -> EnvelopeBuilder:
        """Choose the content cipher by CLI name (``aes256``, ``aes128-gcm``, ``rc2-40``...)."""
        self._cipher = get_cipher(name)
        return self

    def add_recipient(self, recipient: Recipient) -> EnvelopeBuilder:
        """Add a recipient; its certificate must hold an RSA or EC key."""
        _ = recipient.kind  # fails early (65) for DSA or Ed25519 certificates
        self._recipients.append(recipient)
        return self

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt a canonical MIME entity held in memory; returns the DER ContentInfo."""
        out = BytesIO()
        self.encrypt_chunks([data], len(data), out)
        return out.getvalue()

    def encrypt_stream(
        self, src: BinaryIO, dst: Writable, *, length: int | None = None
    ) -> EnvelopeResult:
        """Encrypt ``src`` (the canonical inner entity, read to its end) into ``dst``.

        Args:
            src: the entity to encrypt, already in canonical CRLF form.
            dst: where the DER ContentInfo goes.
            length: the number of bytes ``src`` will give; measured (seekable source) or
                found by spooling (pipe) when None.
        """
        if length is not None:
            return self.encrypt_chunks(read_chunks(src), length, dst)
        try:
            start = src.tell()
            end = src.seek(0, 2)
            src.seek(start)
            return self.encrypt_chunks(read_chunks(src), end - start, dst)
        except (OSError, ValueError, AttributeError):
            pass
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            total = 0
            for chunk in read_chunks(src):
                spool.write(chunk)
                total += len(chunk)
            spool.seek(0)
            return self.encrypt_chunks(read_chunks(spool), total, dst)  # type: ignore[arg-type]

    def encrypt_chunks(
        self, chunks: Iterable[bytes | bytearray | memoryview], length: int, dst: Writable
    ) -> EnvelopeResult:
        """Encrypt exactly ``length`` bytes given as chunks into ``dst`` (DER ContentInfo).

        Raises:
            UsageError: no recipient was added.
            IOFailedError: the chunks did not add up to ``length`` (the input changed).
        """
        if not self._recipients:
            raise UsageError("no recipients: give at least one certificate")
        cipher = self._cipher
        key = new_key(cipher)
        iv = new_iv(cipher)
        warnings: list[str] = []
        weak = weak_cipher_warning(cipher)
        if weak:
            warnings.append(weak)
        built = [build_recipient_info(r, key, cipher) for r in self._recipients]
        summaries = [
            RecipientSummary(r.label, r.kind, b.key_encryption)
            for r, b in zip(self._recipients, built, strict=True)
        ]
        for item in built:
            for warning in item.warnings:
                log.warning(warning)
                warnings.append(warning)

        # RFC 5652 section 6.1: version 0 when every RecipientInfo is v0 and there is no
        # originatorInfo or unprotectedAttrs, else 2. RFC 5083 section 2.1: always 0.
        if cipher.authenticated:
            version = 0
            content_oid = OID_AUTH_ENVELOPED_DATA
        else:
            version = 0 if all(b.version == 0 for b in built) else 2
            content_oid = OID_ENVELOPED_DATA
        # X.690 section 11.6: DER sorts SET OF elements by their encodings.
        recipient_infos = der.tlv(der.SET, b"".join(sorted(b.der for b in built)))
        ciphertext_length = cipher.ciphertext_length(length)
        eci_head = der.oid(OID_DATA) + algorithm_identifier(cipher, iv)
        eci_len = len(eci_head) + der.tlv_length(ciphertext_length)
        mac_len = der.tlv_length(GCM_TAG_LENGTH) if cipher.authenticated else 0
        body_len = len(der.integer(version)) + len(recipient_infos) + der.tlv_length(eci_len)
        body_len += mac_len
        explicit_len = der.tlv_length(body_len)
        info_len = len(der.oid(content_oid)) + der.tlv_length(explicit_len)

        head = b"".join(
            (
                der.header(der.SEQUENCE, info_len),
                der.oid(content_oid),
                der.header(der.CONTEXT_0_CONSTRUCTED, explicit_len),
                der.header(der.SEQUENCE, body_len),
                der.integer(version),
                recipient_infos,
                der.header(der.SEQUENCE, eci_len),
                eci_head,
                # encryptedContent [0] IMPLICIT OCTET STRING, primitive (DER).
                der.header(der.CONTEXT_0_PRIMITIVE, ciphertext_length),
            )
        )
        dst.write(head)
        written = len(head)

        encryptor = content_encryptor(cipher, key, iv)
        # Sized to the message: a 4 KB message in a batch must not zero 1 MiB each time.
        buf = bytearray(min(CHUNK, length) + 64)
        seen = 0
        for chunk in chunks:
            size = len(chunk)
            if not size:
                continue
            seen += size
            if seen > length:
                raise IOFailedError("the message changed while it was being encrypted")
            if len(buf) < size + 32:
                buf = bytearray(size + 64)
            produced = encryptor.update_into(chunk, buf)
            if produced:
                with memoryview(buf) as view:
                    dst.write(view[:produced])
                written += produced
        if seen != length:
            raise IOFailedError("the message changed while it was being encrypted")
        tail = encryptor.finalize()
        dst.write(tail)
        written += len(tail)
        if cipher.authenticated:
            # AuthEnvelopedData.mac (RFC 5083 section 2.1); no authAttrs, so AAD is empty.
            mac = der.tlv(der.OCTET_STRING, encryptor.tag)
            dst.write(mac)
            written += len(mac)
        expected = der.tlv_length(info_len)
        if written != expected:  # pragma: no cover - a bug in the length arithmetic
            raise AssertionError(f"DER length mismatch: wrote {written}, framed {expected}")
        return EnvelopeResult(
            cipher=cipher.name,
            content_type="authEnveloped-data" if cipher.authenticated else "enveloped-data",
            recipients=summaries,
            warnings=warnings,
            size=written,
        )
