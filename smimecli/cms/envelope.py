"""EnvelopeBuilder: CMS EnvelopedData (RFC 5652 section 6) and AuthEnvelopedData (RFC 5083)
written in constant memory.

Everything is written with :mod:`smimecli.cms.der` (encrypting never imports asn1crypto):
the RecipientInfos and AlgorithmIdentifier (recipients.py, algorithms.py), and the outer
ContentInfo framing around a content that is read, encrypted and written in 1 MiB pieces
into reused buffers. All lengths are definite, so the output is DER: the plaintext length
is known in advance (:meth:`EnvelopeBuilder.encrypt_chunks`), or the header is written for
a range of lengths and rewritten by the caller (:meth:`EnvelopeBuilder.encrypt_unmeasured`).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import Protocol

from smimecli.cms import (
    OID_AUTH_ENVELOPED_DATA,
    OID_DATA,
    OID_ENVELOPED_DATA,
    der,
)
from smimecli.cms.algorithms import (
    DEFAULT_CIPHER,
    GCM_TAG_LENGTH,
    ContentCipher,
    ContentEncryptor,
    algorithm_identifier,
    get_cipher,
    new_iv,
    new_key,
    weak_cipher_warning,
)
from smimecli.cms.recipients import Recipient, build_recipient_info
from smimecli.errors import IOFailedError, UsageError
from smimecli.notices import Notice
from smimecli.streams import CHUNK, THREADED_FROM

__all__ = ["EnvelopeBuilder", "EnvelopeResult", "Recipient"]


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
    """What :meth:`EnvelopeBuilder.encrypt_chunks` produced."""

    cipher: str
    content_type: str  # "enveloped-data" | "authEnveloped-data"
    recipients: list[RecipientSummary]
    notices: list[Notice] = field(default_factory=list)  # weak cipher, OAEP with SHA-1
    size: int = 0  # bytes of DER written

    @property
    def warnings(self) -> list[str]:
        """The notices' texts."""
        return [n.text for n in self.notices]


class _UpdateInto(Protocol):
    def update_into(self, data: bytes | bytearray | memoryview, buf: bytearray, /) -> int: ...


def encrypted_pieces(
    encryptor: _UpdateInto, chunks: Iterable[bytes | bytearray | memoryview], length: int
) -> Generator[memoryview, None, None]:
    """The ciphertext of ``chunks``, piece by piece, each valid until the next is asked for.

    From :data:`THREADED_FROM` bytes on, the cipher runs one chunk ahead in a second
    thread: ``update_into`` releases the GIL, so AES on one chunk overlaps the reading,
    line-ending conversion, base64 and writing of its neighbours (two CPUs: about a third
    off a 25 MB message). The order of ``update_into`` calls stays the order of the chunks.
    """
    if length < THREADED_FROM:
        buf = bytearray(min(CHUNK, length) + 64)  # a 4 KB message must not zero 1 MiB
        for chunk in chunks:
            if len(buf) < len(chunk) + 32:
                buf = bytearray(len(chunk) + 64)
            produced = encryptor.update_into(chunk, buf)
            if produced:
                yield memoryview(buf)[:produced]
        return

    import queue

    jobs: queue.SimpleQueue[tuple[bytes | bytearray | memoryview, bytearray] | None]
    jobs = queue.SimpleQueue()
    results: queue.SimpleQueue[int | BaseException] = queue.SimpleQueue()

    def work() -> None:
        while (job := jobs.get()) is not None:
            try:
                results.put(encryptor.update_into(*job))
            except BaseException as exc:  # handed to the caller's thread
                results.put(exc)

    def collect(buf: bytearray) -> memoryview:
        produced = results.get()
        if isinstance(produced, BaseException):
            raise produced
        return memoryview(buf)[:produced]

    buffers = [bytearray(CHUNK + 64), bytearray(CHUNK + 64)]
    worker = threading.Thread(target=work, name="smimecli-cipher", daemon=True)
    worker.start()
    try:
        in_flight: bytearray | None = None
        for index, chunk in enumerate(chunks):
            buf = buffers[index % 2]  # the other one is still being written out
            if len(buf) < len(chunk) + 32:
                buf = buffers[index % 2] = bytearray(len(chunk) + 64)
            jobs.put((chunk, buf))
            if in_flight is not None:
                yield collect(in_flight)
            in_flight = buf
        if in_flight is not None:
            yield collect(in_flight)
    finally:
        jobs.put(None)
        worker.join()


class EnvelopeBuilder:
    """Builds one enveloped message: choose a cipher, add recipients, encrypt.

    Built like cryptography's builders: each step returns the builder, a choice is made
    once (a second :meth:`set_cipher` is refused), and the final verb (:meth:`encrypt`,
    :meth:`encrypt_chunks`, :meth:`encrypt_unmeasured`) validates the whole. Misuse is a
    :class:`~smimecli.errors.UsageError`, so a caller catches one error family.

    Example::

        envelope = EnvelopeBuilder().set_cipher("aes256").add_recipient(Recipient(cert))
        der_bytes = envelope.encrypt(b"Content-Type: text/plain\\r\\n\\r\\nhello\\r\\n")
    """

    def __init__(self) -> None:
        self._cipher: ContentCipher = get_cipher(DEFAULT_CIPHER)
        self._cipher_set = False
        self._recipients: list[Recipient] = []

    @property
    def cipher(self) -> ContentCipher:
        """The content cipher in use."""
        return self._cipher

    def set_cipher(self, name: str) -> EnvelopeBuilder:
        """Choose the content cipher by CLI name (``aes256``, ``aes128-gcm``, ``rc2-40``...);
        without it the envelope uses AES-256-CBC.

        Raises:
            UsageError: the cipher was already set, or the name is unknown.
        """
        if self._cipher_set:
            raise UsageError(
                f"the cipher is already set ({self._cipher.name}): one cipher per envelope"
            )
        self._cipher = get_cipher(name)
        self._cipher_set = True
        return self

    def add_recipient(self, recipient: Recipient) -> EnvelopeBuilder:
        """Add a recipient; its certificate must hold an RSA or EC key.

        The same recipient again (the same certificate, delivered the same way) adds
        nothing: two addresses of one person lead to one certificate, and the envelope
        needs one RecipientInfo for it.
        """
        _ = recipient.kind  # fails early (65) for DSA or Ed25519 certificates
        if recipient not in self._recipients:
            self._recipients.append(recipient)
        return self

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt a canonical MIME entity held in memory; returns the DER ContentInfo."""
        out = BytesIO()
        self.encrypt_chunks([data], len(data), out)
        return out.getvalue()

    def encrypt_chunks(
        self, chunks: Iterable[bytes | bytearray | memoryview], length: int, dst: Writable
    ) -> EnvelopeResult:
        """Encrypt exactly ``length`` bytes given as chunks into ``dst`` (DER ContentInfo).

        Raises:
            UsageError: no recipient was added.
            IOFailedError: the chunks did not add up to ``length`` (the input changed).
        """
        framing = self._framing()
        head, total = framing.layout(length)
        dst.write(head)
        seen, written = framing.stream(chunks, length, dst)
        if seen != length:
            raise IOFailedError("the message changed while it was being encrypted")
        return framing.result(len(head) + written, total)

    def encrypt_unmeasured(
        self,
        chunks: Iterable[bytes | bytearray | memoryview],
        dst: Writable,
        *,
        low: int,
        high: int,
    ) -> tuple[EnvelopeResult, bytes] | None:
        """Encrypt chunks whose total is only known to lie in ``[low, high]``.

        DER needs every length before the content, so :meth:`encrypt_chunks` wants the
        exact length, which costs a first pass over a big message. When the destination can
        be rewritten afterwards, this writes a header of the right size with the lengths
        for ``low`` (the first ``write``), encrypts, and returns the true header for the
        caller to put in its place.

        Returns:
            None, having written and consumed nothing, when the header's size depends on
            where in the range the length falls (a DER length crosses a size boundary);
            else the result and the header to write over the first one.

        Raises:
            UsageError: no recipient was added.
            IOFailedError: the chunks added up to more than ``high`` or, after all, to a
                length whose header has another size (the input changed).
        """
        framing = self._framing()
        placeholder = framing.layout(low)[0]
        if len(framing.layout(high)[0]) != len(placeholder):
            return None
        dst.write(placeholder)
        seen, written = framing.stream(chunks, high, dst)
        head, total = framing.layout(seen)
        if len(head) != len(placeholder):
            raise IOFailedError("the message changed while it was being encrypted")
        return framing.result(len(head) + written, total), head

    def _framing(self) -> _Framing:
        if not self._recipients:
            raise UsageError("no recipients: give at least one certificate")
        cipher = self._cipher
        key = new_key(cipher)
        iv = new_iv(cipher)
        warnings: list[Notice] = []
        weak = weak_cipher_warning(cipher)
        if weak:
            warnings.append(Notice("weak-cipher", weak))
        built = [build_recipient_info(r, key, cipher) for r in self._recipients]
        summaries = [
            RecipientSummary(r.label, r.kind, b.key_encryption)
            for r, b in zip(self._recipients, built, strict=True)
        ]
        # Reported by result(), once the envelope is written: an attempt given up (one pass
        # falling back to two) must not repeat them.
        warnings.extend(
            Notice("oaep-sha1", warning, r.label)
            for r, item in zip(self._recipients, built, strict=True)
            for warning in item.warnings
        )
        # RFC 5652 section 6.1: version 0 when every RecipientInfo is v0 and there is no
        # originatorInfo or unprotectedAttrs, else 2. RFC 5083 section 2.1: always 0.
        if cipher.authenticated:
            version = 0
        else:
            version = 0 if all(b.version == 0 for b in built) else 2
        # X.690 section 11.6: DER sorts SET OF elements by their encodings.
        recipient_infos = der.tlv(der.SET, b"".join(sorted(b.der for b in built)))
        return _Framing(cipher, key, iv, version, recipient_infos, summaries, warnings)


class _Framing:
    """One envelope's fixed parts (key, IV, RecipientInfos) and the DER around its content.

    A plain class: a dataclass costs a millisecond to create at import, and start-up is most
    of a small message's time.
    """

    __slots__ = ("cipher", "iv", "key", "recipient_infos", "summaries", "version", "warnings")

    def __init__(
        self,
        cipher: ContentCipher,
        key: bytes,
        iv: bytes,
        version: int,
        recipient_infos: bytes,
        summaries: list[RecipientSummary],
        warnings: list[Notice],
    ) -> None:
        self.cipher = cipher
        self.key = key
        self.iv = iv
        self.version = version
        self.recipient_infos = recipient_infos
        self.summaries = summaries
        self.warnings = warnings

    def layout(self, length: int) -> tuple[bytes, int]:
        """Everything before the ciphertext for ``length`` plaintext bytes, and the size
        of the whole ContentInfo."""
        cipher = self.cipher
        content_oid = OID_AUTH_ENVELOPED_DATA if cipher.authenticated else OID_ENVELOPED_DATA
        ciphertext_length = cipher.ciphertext_length(length)
        eci_head = der.oid(OID_DATA) + algorithm_identifier(cipher, self.iv)
        eci_len = len(eci_head) + der.tlv_length(ciphertext_length)
        mac_len = der.tlv_length(GCM_TAG_LENGTH) if cipher.authenticated else 0
        version = der.integer(self.version)
        body_len = len(version) + len(self.recipient_infos) + der.tlv_length(eci_len) + mac_len
        explicit_len = der.tlv_length(body_len)
        info_len = len(der.oid(content_oid)) + der.tlv_length(explicit_len)
        head = b"".join(
            (
                der.header(der.SEQUENCE, info_len),
                der.oid(content_oid),
                der.header(der.CONTEXT_0_CONSTRUCTED, explicit_len),
                der.header(der.SEQUENCE, body_len),
                version,
                self.recipient_infos,
                der.header(der.SEQUENCE, eci_len),
                eci_head,
                # encryptedContent [0] IMPLICIT OCTET STRING, primitive (DER).
                der.header(der.CONTEXT_0_PRIMITIVE, ciphertext_length),
            )
        )
        return head, der.tlv_length(info_len)

    def stream(
        self, chunks: Iterable[bytes | bytearray | memoryview], limit: int, dst: Writable
    ) -> tuple[int, int]:
        """Encrypt the chunks into ``dst`` and finish (padding, GCM tag): (plaintext bytes,
        bytes written). More than ``limit`` plaintext bytes is IOFailedError."""
        encryptor = ContentEncryptor(self.cipher, self.key, self.iv)
        seen = 0
        written = 0

        def checked() -> Iterator[bytes | bytearray | memoryview]:
            nonlocal seen
            for chunk in chunks:
                if chunk:
                    seen += len(chunk)
                    if seen > limit:
                        raise IOFailedError("the message changed while it was being encrypted")
                    yield chunk

        pieces = encrypted_pieces(encryptor, checked(), limit)
        try:
            for piece in pieces:
                dst.write(piece)
                written += len(piece)
        finally:
            pieces.close()  # stops the cipher thread now if a write failed
        tail = encryptor.finalize()
        dst.write(tail)
        written += len(tail)
        if self.cipher.authenticated:
            # AuthEnvelopedData.mac (RFC 5083 section 2.1); no authAttrs, so AAD is empty.
            mac = der.tlv(der.OCTET_STRING, encryptor.tag)
            dst.write(mac)
            written += len(mac)
        return seen, written

    def result(self, size: int, expected: int) -> EnvelopeResult:
        """The report of the finished envelope: ``size`` bytes written, ``expected`` by
        the DER framing."""
        if size != expected:  # pragma: no cover - a bug in the length arithmetic
            raise AssertionError(f"DER length mismatch: wrote {size}, framed {expected}")
        return EnvelopeResult(
            cipher=self.cipher.name,
            content_type="authEnveloped-data" if self.cipher.authenticated else "enveloped-data",
            recipients=self.summaries,
            notices=list(self.warnings),
            size=size,
        )
