"""Taking the content out of a signed S/MIME message, without verifying it.

Thunderbird, Outlook and gateways sign *after* encrypting as often as before: the envelope
then sits inside a ``multipart/signed`` entity (RFC 8551 3.5.3, RFC 1847 2.1) or inside an
opaque ``application/pkcs7-mime; smime-type=signed-data`` (RFC 8551 3.5.2). To decrypt,
the signed content is taken out and searched for the envelope again. The signature is not
checked here: :mod:`smimecli.decrypt.signatures` verifies it afterwards (``smimecli
decrypt``), and a caller that does not gets the notice of :func:`not_verified_warning`.

Memory: neither form is loaded whole. The first body part of a multipart/signed entity
is read in blocks of 1 MiB and released as soon as it cannot be part of a boundary line;
the eContent of an opaque SignedData is read with the streaming BER reader, chunk by chunk.
Only what follows the content (the signature part, or the certificates and SignerInfos)
is held in memory, capped at :data:`MAX_SIGNATURE_PART`, and only to name the signer.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from smimecli.cms.ber import TAG_INTEGER, TAG_OCTET_STRING, TAG_OID, TAG_SEQUENCE, BerReader, Tlv
from smimecli.errors import DataError

MAX_SIGNATURE_LAYERS = 8  # hostile input must not make unwrapping recurse without end
MAX_SIGNATURE_PART = 4 << 20  # the signature part or SignerInfos read to name the signer
_BLOCK = 1 << 20
# A delimiter line is ``--boundary``, maybe ``--``, then transport padding: a line that goes
# on longer than this is not one (RFC 5322 2.1.1 caps lines at 998 characters), so a
# ``--boundary`` that never ends its line cannot make the whole body wait in memory.
_MAX_DELIMITER_TAIL = 998
SOMEONE = "someone"


class SignedOnlyError(DataError):
    """A signed message with no envelope inside at any depth: there is nothing to decrypt."""

    def __init__(self, what: str, layers: int, headers: Any = None) -> None:
        plural = "" if layers == 1 else "s"
        super().__init__(
            f"{what} is signed but not encrypted (signed-data, not an encrypted envelope, "
            f"inside {layers} signature layer{plural}): nothing to decrypt"
        )
        self.layers = layers
        self.headers = headers  # of the outermost message, for inspect


class ChunkStream:
    """A read-only binary stream over an iterator of chunks (``read`` and ``readline``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._pos = 0  # bytes of _buffer already returned (offsets avoid re-slicing per call)
        self._done = False

    def _more(self) -> bool:
        if self._done:
            return False
        for chunk in self._chunks:
            if chunk:
                self._buffer = self._buffer[self._pos :] + chunk
                self._pos = 0
                return True
        self._done = True
        return False

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when negative)."""
        while (size < 0 or len(self._buffer) - self._pos < size) and self._more():
            pass
        end = len(self._buffer) if size < 0 else self._pos + size
        data = self._buffer[self._pos : end]
        self._pos += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        """Read one line (up to ``size`` bytes)."""
        while True:
            cut = self._buffer.find(b"\n", self._pos)
            if cut >= 0 and (size < 0 or cut - self._pos < size):
                data = self._buffer[self._pos : cut + 1]
                self._pos = cut + 1
                return data
            if (size >= 0 and len(self._buffer) - self._pos >= size) or not self._more():
                return self.read(size)

    def drain(self) -> None:
        """Consume what is left, so that whatever follows the content can be read."""
        self._buffer, self._pos = b"", 0
        while self._more():
            self._buffer, self._pos = b"", 0


class SignatureLayer:
    """One signature removed from around the content; knows its signer once drained."""

    def __init__(self, kind: str, content: ChunkStream, parse: Callable[[], Any]) -> None:
        self.kind = kind  # "multipart/signed" or "signed-data"
        self.content = content
        self._parse = parse  # reads what follows the content: the SignedData's signer parts

    def signer(self) -> str:
        """The signer's subject, or ``someone`` when it cannot be named (best effort)."""
        try:
            self.content.drain()
            return _signer_name(self._parse())
        except (DataError, ValueError, TypeError, KeyError, IndexError, binascii.Error):
            return SOMEONE  # naming the signer is a courtesy: the signature is not verified


def not_verified_warning(signer: str) -> str:
    """The warning for one removed signature layer."""
    return (
        f"the outer signature (signed by {signer}) was not verified: "
        "decrypt_message removes it unchecked (smimecli verify or decrypt_and_judge check it)"
    )


# --- multipart/signed (RFC 1847 2.1, RFC 2046 5.1.1) ----------------------------------------


def _scan(buffer: bytes, delimiter: bytes, final: bool) -> tuple[int, int, bool] | int:
    """Find a delimiter line (``\\n--boundary`` plus padding) in ``buffer``.

    Returns ``(start, end, closing)`` when found (``end`` after the line's LF), else how
    many bytes from the start are safe to release (none of them can begin a delimiter).
    """
    pos = 0
    while True:
        found = buffer.find(delimiter, pos)
        if found < 0:
            # Keep a possible partial delimiter and the CR before it (RFC 2046 5.1.1: the
            # CRLF before a boundary belongs to the boundary).
            return max(0, len(buffer) - len(delimiter) - 1)
        after = found + len(delimiter)
        eol = buffer.find(b"\n", after, after + _MAX_DELIMITER_TAIL + 1)
        if eol < 0 and not final and _may_end_a_delimiter(buffer[after:]):
            return max(0, found - 1)  # the rest of the line is still to come
        end = len(buffer) if eol < 0 else eol + 1
        tail = buffer[after:end].rstrip(b" \t\r\n")
        if tail in (b"", b"--") and (eol >= 0 or len(buffer) - after <= _MAX_DELIMITER_TAIL):
            return found, end, tail == b"--"
        pos = found + 1  # a longer boundary that starts with ours, or text: not a delimiter


def _may_end_a_delimiter(partial: bytes) -> bool:
    """Whether ``partial`` (what follows ``--boundary`` so far, no LF yet) may still turn
    out to be the end of a delimiter line: ``--`` or a part of it, then padding."""
    if len(partial) > _MAX_DELIMITER_TAIL:
        return False
    if partial[:2] == b"--":
        partial = partial[2:]
    elif partial == b"-":
        return True
    return not partial.strip(b" \t\r")


def _first_part(body: BinaryIO, boundary: bytes, what: str, rest: list[bytes]) -> Iterator[bytes]:
    """Yield the first body part of a multipart entity; put what follows into ``rest``."""
    delimiter = b"\n--" + boundary
    buffer = b"\n"  # a delimiter may open the body without a preamble
    final = False
    while True:  # the preamble, up to the first delimiter line
        found = _scan(buffer, delimiter, final)
        if isinstance(found, tuple):
            if found[2]:
                raise DataError(f"{what}: the multipart/signed entity has no signed part")
            buffer = buffer[found[1] :]
            break
        if final:
            raise DataError(
                f"{what}: the multipart/signed boundary never appears: not a usable message"
            )
        buffer = buffer[found:]
        block = body.read(_BLOCK)
        final = not block
        buffer += block or b""
    while True:  # the signed entity, up to the next delimiter line
        found = _scan(buffer, delimiter, final)
        if isinstance(found, tuple):
            start = found[0]
            yield buffer[: start - 1] if buffer[start - 1 : start] == b"\r" else buffer[:start]
            rest.append(buffer[found[1] :])
            return
        if final:
            raise DataError(f"{what}: the multipart/signed entity ends before its closing boundary")
        if found:
            yield buffer[:found]
            buffer = buffer[found:]
        block = body.read(_BLOCK)
        final = not block
        buffer += block or b""


def multipart_signed_content(
    boundary: str | None, body: BinaryIO, what: str
) -> tuple[ChunkStream, SignatureLayer]:
    """The signed entity of a multipart/signed body (its first part), as a stream.

    Args:
        boundary: the ``boundary`` parameter of the Content-Type.
        body: the body, positioned after the header block.
    """
    if not boundary:
        raise DataError(f"{what}: the multipart/signed Content-Type has no boundary parameter")
    rest: list[bytes] = []
    content = ChunkStream(_first_part(body, boundary.encode("utf-8", "replace"), what, rest))

    def parse() -> Any:
        return _signature_part(b"".join(rest) + body.read(MAX_SIGNATURE_PART))

    return content, SignatureLayer("multipart/signed", content, parse)


def _signature_part(data: bytes) -> Any:
    """The SignedData of the application/pkcs7-signature part at the start of ``data``."""
    from asn1crypto import cms

    from smimecli.mime import parse_header_block

    headers, offset = parse_header_block(data)
    body = data[offset:].split(b"\n--", 1)[0]
    der = data[offset:]
    if (headers.get("Content-Transfer-Encoding") or "").strip().lower() == "base64":
        der = binascii.a2b_base64(body.translate(None, b" \t\r\n"))
    return cms.ContentInfo.load(der)["content"]


# --- opaque signed-data (RFC 5652 5.1, RFC 8551 3.5.2) ---------------------------------------


def _econtent(
    reader: BerReader, levels: list[Iterator[Tlv]], what: str, trailer: list[bytes]
) -> Iterator[bytes]:
    """:func:`_econtent_raw`, with its errors saying which layer is damaged."""
    try:
        yield from _econtent_raw(reader, levels, what, trailer)
    except DataError as exc:
        if "signed-data" in exc.message:
            raise
        raise DataError(f"{what}: the signed-data layer is damaged ({exc.message})") from exc


def _econtent_raw(
    reader: BerReader, levels: list[Iterator[Tlv]], what: str, trailer: list[bytes]
) -> Iterator[bytes]:
    """Yield the eContent of a SignedData, then collect the certificates and SignerInfos.

    ``levels`` are the open ContentInfo containers from
    :func:`smimecli.cms.open.read_content_type`.
    """
    outer_fields, explicit_fields = levels
    body = reader.next_universal(explicit_fields, TAG_SEQUENCE, "the SignedData SEQUENCE")
    fields = reader.children(body)
    version = reader.next_universal(fields, TAG_INTEGER, "the SignedData version")
    reader.read_content(version, max_size=8)
    digests = next(fields, None)
    if digests is None:
        raise reader.error("expected the SignedData digest algorithms")
    reader.skip(digests)
    eci = reader.next_universal(fields, TAG_SEQUENCE, "the EncapsulatedContentInfo")
    parts = reader.children(eci)
    oid = reader.next_universal(parts, TAG_OID, "the encapsulated content type")
    reader.read_content(oid, max_size=256)
    explicit = next(parts, None)
    if explicit is None:
        raise DataError(
            f"{what}: the signed-data layer carries no content (a detached signature without "
            "the message it signs)"
        )
    if not (explicit.is_context(0) and explicit.constructed):
        raise reader.error("expected the signed content [0]")
    inner = reader.children(explicit)
    octets = reader.next_universal(inner, TAG_OCTET_STRING, "the signed content OCTET STRING")
    yield from reader.iter_octets(octets)
    if next(inner, None) is not None or next(parts, None) is not None:
        raise reader.error("unexpected element after the signed content")
    for tlv in fields:  # certificates [0], crls [1], signerInfos SET (RFC 5652 5.1)
        trailer.append(reader.read_element(tlv, max_size=MAX_SIGNATURE_PART))
    for level in (explicit_fields, outer_fields):
        if next(level, None) is not None:
            raise reader.error("unexpected element at the end of the ContentInfo")


def signed_data_content(
    reader: BerReader, levels: list[Iterator[Tlv]], what: str
) -> tuple[ChunkStream, SignatureLayer]:
    """The encapsulated content of an opaque SignedData whose content type was just read."""
    trailer: list[bytes] = []
    content = ChunkStream(_econtent(reader, levels, what, trailer))
    return content, SignatureLayer(
        "signed-data", content, lambda: _signed_data_from_trailer(trailer)
    )


def _signed_data_from_trailer(trailer: list[bytes]) -> Any:
    """A SignedData-like dict of the certificates and SignerInfos that followed the content."""
    from asn1crypto import cms

    found: dict[str, Any] = {"certificates": [], "signer_infos": []}
    for raw in trailer:
        if raw[:1] == b"\xa0":
            found["certificates"] = cms.CertificateSet.load(b"\x31" + raw[1:])
        elif raw[:1] == b"\x31":
            found["signer_infos"] = cms.SignerInfos.load(raw)
    return found


# --- naming the signer -----------------------------------------------------------------------


def _signer_name(signed: Any) -> str:
    """The subject of the first signer's certificate, when the message carries it."""
    from smimecli.certs.names import display_asn1_name

    infos = list(signed["signer_infos"])
    if not infos:
        return SOMEONE
    sid = infos[0]["sid"]
    for choice in signed["certificates"] or []:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if cert.issuer == ias["issuer"] and cert.serial_number == ias["serial_number"].native:
                return display_asn1_name(cert.subject)
        elif cert.key_identifier == sid.chosen.native:
            return display_asn1_name(cert.subject)
    return SOMEONE
