"""Finding the CMS envelope in an input.

Where the CMS is found: a message whose Content-Type is ``application/pkcs7-mime`` or
``application/x-pkcs7-mime`` (RFC 8551 3.2), or ``application/octet-stream`` named ``*.p7m``
(RFC 8551 3.2.2), with a base64 or binary body; or a bare DER/BER ContentInfo; or PEM
(``-----BEGIN PKCS7-----`` / ``CMS``). Base64 is decoded as it is read, so memory does not
grow with the message (GCM content and the several-candidate case are spooled; see
:mod:`smimecli.cms.open`).

Signed outside: when the envelope was signed after it was made (``multipart/signed``, or
an opaque signed-data around it, as Thunderbird's corpus has them), :func:`open_envelope`
takes the signed content out, layer by layer (at most
:data:`smimecli.decrypt.unsign.MAX_SIGNATURE_LAYERS`), without verifying it, and returns the
layers it took off; the outer headers are those of the outermost message. See
:mod:`smimecli.decrypt.unsign`.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from smimecli.cms import OID_SIGNED_DATA
from smimecli.cms.ber import BerReader, Tlv
from smimecli.cms.open import read_content_type
from smimecli.decrypt.unsign import (
    MAX_SIGNATURE_LAYERS,
    SignatureLayer,
    SignedOnlyError,
    multipart_signed_content,
    signed_data_content,
)
from smimecli.errors import DataError
from smimecli.mime import PKCS7_TYPES, HeaderBlock, PeekedStream, has_p7m_name, read_header_block

_CHUNK = 1 << 16


class Base64Reader:
    """Decodes base64 text read line by line, as a binary stream (RFC 2045 6.8).

    Whitespace is ignored; reading stops at end of input, at a PEM ``-----END`` line, or at
    a MIME boundary line (``--``). Anything else that is not base64 is a DataError. Reads
    go in blocks of 1 MiB, not lines, which keeps big messages fast.
    """

    def __init__(self, source: Any, what: str) -> None:
        self._source = source
        self._what = what
        self._pending = b""
        self._buffer = b""
        self._pos = 0
        self._done = False

    def _fill(self, want: int) -> None:
        parts: list[bytes] = []
        size = 0
        while size < want and not self._done:
            block = self._source.read(1 << 20)
            if not block:
                self._done = True
                break
            # "-" is not in the base64 alphabet: it starts "-----END" or a "--boundary".
            cut = block.find(b"-")
            if cut >= 0:
                block = block[:cut]
                self._done = True
            data = self._pending + block.translate(None, b" \t\r\n")
            usable = len(data) - len(data) % 4
            self._pending = data[usable:]
            if usable:
                decoded = self._decode(data[:usable])
                parts.append(decoded)
                size += len(decoded)
        if self._done and self._pending:
            pending, self._pending = self._pending, b""
            parts.append(self._decode(pending + b"=" * (-len(pending) % 4)))
        self._buffer += b"".join(parts)

    def _decode(self, data: bytes) -> bytes:
        try:
            return binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error as exc:
            problem = str(exc).splitlines()[0] if str(exc) else "bad base64"
            raise DataError(f"{self._what}: the base64 body is damaged ({problem})") from exc

    def read(self, size: int = -1) -> bytes:
        """Read decoded bytes."""
        if size < 0:
            size = 1 << 62
        if len(self._buffer) - self._pos < size and not self._done:
            # Drop what was consumed, then decode more (offsets avoid re-slicing big buffers).
            self._buffer = self._buffer[self._pos :]
            self._pos = 0
            self._fill(max(size - len(self._buffer), _CHUNK))
        data = self._buffer[self._pos : self._pos + size]
        self._pos += len(data)
        return data


@dataclass
class LocatedCms:
    """The CMS bytes of an input and the headers around them."""

    stream: Any  # a binary stream positioned at the ContentInfo (or the multipart body)
    headers: HeaderBlock | None  # None for a bare DER or PEM input
    multipart_signed: bool = False  # stream is the body of a multipart/signed entity


class NotSmimeError(DataError):
    """The input is not S/MIME at all (inside a signature: signed but not encrypted)."""


_ATTACHED_HINT = (
    "; it carries an S/MIME part as an attachment (a forwarded smime.p7m?): save that "
    "attachment and decrypt it"
)
_P7M_MARKS = (b"application/pkcs7-mime", b"application/x-pkcs7-mime", b".p7m")
_HINT_REACH = 1 << 16  # how far into a multipart body the hint looks


def _carries_p7m(mime_type: str, body: Any) -> bool:
    """Whether a multipart body shows an S/MIME part in its first bytes (for the hint)."""
    if not mime_type.startswith("multipart/"):
        return False
    try:
        start = body.read(_HINT_REACH).lower()
    except (OSError, ValueError):
        return False
    return any(mark in start for mark in _P7M_MARKS)


def locate_cms(src: BinaryIO, what: str) -> LocatedCms:
    """Find the CMS ContentInfo in a message, a bare DER/BER file, or a PEM file."""
    head = src.read(64) or b""
    stripped = head.lstrip()
    if head[:1] == b"\x30":
        return LocatedCms(PeekedStream(head, src), None)
    if stripped.startswith(b"-----BEGIN"):
        stream = PeekedStream(head, src)
        stream.readline(1 << 16)  # the BEGIN line
        return LocatedCms(Base64Reader(stream, what), None)
    if not head:
        raise NotSmimeError(f"{what} is empty: not an S/MIME message")
    headers, body = read_header_block(PeekedStream(head, src))
    if not headers.fields:
        raise NotSmimeError(f"{what} is not an S/MIME message, a DER/BER CMS or a PEM file")
    ctype = headers.content_type()
    if ctype.mime_type == "multipart/signed":  # RFC 8551 3.5.3: signed outside
        return LocatedCms(body, headers, multipart_signed=True)
    is_p7m = has_p7m_name(headers, ctype)
    if not (
        ctype.mime_type in PKCS7_TYPES or (ctype.mime_type == "application/octet-stream" and is_p7m)
    ):
        raise NotSmimeError(
            f"{what} is not an S/MIME encrypted message (Content-Type: {ctype.mime_type})"
            + (_ATTACHED_HINT if _carries_p7m(ctype.mime_type, body) else "")
        )
    encoding = (headers.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if encoding == "base64":
        return LocatedCms(Base64Reader(body, what), headers)
    if encoding in ("binary", "8bit", "7bit"):
        return LocatedCms(body, headers)
    raise DataError(f"{what}: unsupported Content-Transfer-Encoding {encoding} for S/MIME")


@dataclass
class OpenedEnvelope:
    """The envelope found in an input, its content type read, and what was around it."""

    reader: BerReader
    known: tuple[str, list[Iterator[Tlv]]]  # what read_content_type returned
    headers: HeaderBlock | None  # of the outermost message; None for bare CMS all the way
    layers: list[SignatureLayer] = field(default_factory=list)


def open_envelope(src: BinaryIO, what: str) -> OpenedEnvelope:
    """Find the CMS in an input, taking out any signature layers around it (unverified).

    Raises:
        SignedOnlyError: signed, with no envelope inside at any depth (65).
        DataError: more than MAX_SIGNATURE_LAYERS signatures, or a broken structure (65).
    """
    layers: list[SignatureLayer] = []
    headers: HeaderBlock | None = None
    stream: Any = src
    for _ in range(MAX_SIGNATURE_LAYERS + 1):
        try:
            located = locate_cms(stream, what)
        except NotSmimeError:
            if layers:
                raise SignedOnlyError(what, len(layers), headers) from None
            raise
        if headers is None:
            headers = located.headers
        if located.multipart_signed:
            assert located.headers is not None
            boundary = located.headers.content_type().param("boundary")
            stream, layer = multipart_signed_content(boundary, located.stream, what)
            layers.append(layer)
            continue
        reader = BerReader(located.stream, what=f"the CMS structure of {what}")
        oid, levels = read_content_type(reader)
        if oid == OID_SIGNED_DATA:  # RFC 8551 3.5.2: opaque signed-data
            stream, layer = signed_data_content(reader, levels, what)
            layers.append(layer)
            continue
        return OpenedEnvelope(reader, (oid, levels), headers, layers)
    raise DataError(
        f"{what} is wrapped in more than {MAX_SIGNATURE_LAYERS} signature layers: "
        "not a usable message"
    )
