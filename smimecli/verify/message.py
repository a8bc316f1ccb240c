"""verify_message: check the S/MIME signature of one email (RFC 8551 3.5, RFC 1847 2.1).

Two forms are read. ``multipart/signed``: the signed bytes are the first body part exactly
as it stands between its delimiter lines, without the line ending before the second
delimiter (RFC 2046 section 5.1.1: it belongs to the boundary), canonicalised to CRLF the
way OpenSSL does (so a message re-written with LF by a relay or a sloppy client verifies as
it does with OpenSSL); the SignedData is the second part. Opaque
``application/(x-)pkcs7-mime; smime-type=signed-data`` (or a ``.p7m`` holding a SignedData):
the entity is the encapsulated content. The message is read into memory, up to
:data:`MAX_MESSAGE` bytes; the signed part of multipart/signed is canonicalised and
hashed a chunk at a time, never copied; a DER opaque content is taken out of the
SignedData and checked the same way (:func:`smimecli.cms.verify.split_encapsulated`).

A damaged structure raises :class:`DataError`; a signature that does not hold is reported
in the result's problems.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any, BinaryIO

from cryptography import x509

from smimecli.cms.verify import (
    SignatureCheck,
    load_signed_data,
    split_encapsulated,
    verify_signed_data,
)
from smimecli.errors import DataError
from smimecli.mime import CRLF, LF, PKCS7_TYPES, Canonicalizer, HeaderBlock, parse_header_block
from smimecli.mime.transport import canonical_openssl

__all__ = [
    "MAX_MESSAGE",
    "MessageSignature",
    "split_signed",
    "unsigned_message",
    "verify_message",
    "write_unsigned",
]

MAX_MESSAGE = 64 << 20
_CANONICAL_CHUNK = 256 << 10  # the signed part is canonicalised and hashed this much at a time
_SIGNATURE_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature")
ENCRYPTED_SMIME_TYPES = ("enveloped-data", "authenveloped-data")
_ENCRYPTED_CMS = ("1.2.840.113549.1.7.3", "1.2.840.113549.1.9.16.1.23")
_ENCRYPTED_HINT = (
    "{what} is encrypted: a signature inside it can be checked only after decrypting "
    "(smimecli decrypt), then verify the decrypted message"
)


@dataclass
class MessageSignature:
    """A signed message taken apart, and its signature checked.

    Attributes:
        form: ``multipart/signed`` or ``signed-data``.
        headers: the outer header block of the message.
        signed_part: the signed MIME entity as the message carries it (for
            multipart/signed a view of the first part, line endings as written; for
            signed-data the encapsulated content).
        check: the signature check (signers, certificates, problems).
        canonical: whether ``signed_part`` is already in canonical form.
    """

    form: str
    headers: HeaderBlock
    signed_part: bytes | memoryview
    check: SignatureCheck
    canonical: bool = True

    @property
    def entity(self) -> bytes:
        """The signed MIME entity (canonical CRLF for multipart/signed; the encapsulated
        content as carried for signed-data), made on each call: a big message's copy is
        only made when asked for."""
        if self.canonical:
            return bytes(self.signed_part)
        return canonical_openssl(self.signed_part)

    @property
    def valid(self) -> bool:
        """True when every signature and digest holds (trust is judged separately)."""
        return self.check.valid


def _delimiters(data: bytes, start: int, boundary: bytes, limit: int = 3) -> list[re.Match[bytes]]:
    """The first ``limit`` delimiter lines of ``boundary`` in ``data`` from ``start`` (the
    body): ``--boundary`` at a line start, ``--`` if closing, white space, the line end.
    Found with ``bytes.find`` and checked with a regular expression where it is found
    (a regular expression tried at every position is 20 times slower on a big body)."""
    tail = re.compile(rb"--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    needle = b"--" + boundary
    found: list[re.Match[bytes]] = []
    pos = data.find(needle, start)
    while pos >= 0 and len(found) < limit:
        if pos == start or data[pos - 1] == 0x0A:
            match = tail.match(data, pos)
            if match is not None:
                found.append(match)
        pos = data.find(needle, pos + 1)
    return found


def _eol_before(body: bytes, pos: int) -> int:
    """The position of the line ending that precedes a delimiter at ``pos``."""
    if body[pos - 2 : pos] == b"\r\n":
        return pos - 2
    return pos - 1 if body[pos - 1 : pos] == b"\n" else pos


def _part_body(part: bytes, what: str) -> bytes:
    """The DER of an application/pkcs7-signature part (base64 or binary)."""
    head, offset = parse_header_block(part)
    ctype = (head.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype and ctype not in _SIGNATURE_TYPES:
        raise DataError(f"{what}: the second part of multipart/signed is {ctype}, not a signature")
    return _decode(head, part[offset:], what)


def _decode(head: HeaderBlock, body: bytes | memoryview, what: str) -> bytes:
    cte = (head.get("Content-Transfer-Encoding") or "").strip().lower()
    if cte == "quoted-printable":  # a relay may re-encode any part (RFC 2045 6.7)
        der = binascii.a2b_qp(bytes(body))
    elif cte == "base64":
        try:
            # Not strict: white space and line ends are skipped as they are decoded, no copy.
            der = binascii.a2b_base64(body)
        except binascii.Error as exc:
            raise DataError(f"{what}: the signature is not valid base64 ({exc})") from exc
    else:
        der = bytes(body)
    if not der.strip():
        raise DataError(f"{what}: the signature part is empty")
    return der


def split_signed(data: bytes, what: str = "the message") -> tuple[HeaderBlock, bytes, bytes | None]:
    """Take a signed message apart.

    Returns:
        the outer header block, and either (the canonical signed entity, the DER
        signature) for multipart/signed, or (the DER SignedData, None) for the opaque form.

    Raises:
        DataError: not a signed message, or its structure is damaged.
    """
    headers, first, second = _split(data, what)
    if second is None:
        return headers, bytes(first), None
    return headers, canonical_openssl(first), second


def _split(data: bytes, what: str) -> tuple[HeaderBlock, memoryview | bytes, bytes | None]:
    """:func:`split_signed`, with the signed part of multipart/signed as a view of
    ``data`` (not yet canonical), so that no copy of a big message is made. A bare
    DER/BER ContentInfo (a binary .p7m, ``openssl cms -outform DER``) or its PEM form
    (``-----BEGIN PKCS7-----``, ``CMS``, gpgsm's ``SIGNED MESSAGE``) is an opaque
    signed-data without headers."""
    bare = _bare_cms(data, what)
    if bare is not None:
        if _cms_type(bare) in _ENCRYPTED_CMS:
            raise DataError(_ENCRYPTED_HINT.format(what=what))
        return parse_header_block(b"\r\n")[0], bare, None
    headers, offset = parse_header_block(data)
    ctype = headers.content_type()
    if ctype.mime_type == "multipart/signed":
        boundary = ctype.param("boundary")
        if not boundary:
            raise DataError(f"{what}: the multipart/signed Content-Type has no boundary")
        found = _delimiters(data, offset, boundary.encode("utf-8", "replace"))
        if len(found) < 2 or found[0].group(1):
            raise DataError(f"{what}: the multipart/signed entity lacks its two parts")
        entity = memoryview(data)[found[0].end() : _eol_before(data, found[1].start())]
        end = len(data) if len(found) < 3 else _eol_before(data, found[2].start())
        signature = _part_body(data[found[1].end() : end], what)
        return headers, entity, signature
    body_bytes = memoryview(data)[offset:]
    if ctype.mime_type in PKCS7_TYPES or ctype.mime_type == "application/octet-stream":
        smime_type = (ctype.param("smime-type") or "signed-data").strip().lower()
        if smime_type in ENCRYPTED_SMIME_TYPES:
            raise DataError(_ENCRYPTED_HINT.format(what=what))
        if smime_type != "signed-data":
            raise DataError(f"{what}: an S/MIME {smime_type} message, not a signed one")
        der = _decode(headers, body_bytes, what)
        if _cms_type(der) in _ENCRYPTED_CMS:
            raise DataError(_ENCRYPTED_HINT.format(what=what))
        return headers, der, None
    raise DataError(f"{what}: not a signed message (Content-Type {ctype.mime_type})")


def _bare_cms(data: bytes, what: str) -> bytes | None:
    """The DER of a bare ContentInfo (binary, or PEM armoured); None for a message."""
    if data[:1] == b"\x30":
        return data
    if not data.lstrip()[:11].startswith(b"-----BEGIN "):  # PKCS7, CMS, SIGNED MESSAGE (gpgsm)
        return None
    lines = data.strip().splitlines()
    body = b"".join(line.strip() for line in lines[1:] if not line.startswith(b"-----"))
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise DataError(f"{what}: the PEM armoured signed-data is not valid base64") from exc


def _canonical_chunks(part: bytes | memoryview) -> Iterator[bytes]:
    """:func:`canonical_openssl` of ``part``, a chunk at a time. A run of CRs at the end
    of a chunk waits for the next, where an LF may end it."""
    view = memoryview(part)
    held = b""
    for pos in range(0, len(view), _CANONICAL_CHUNK):
        piece = held + bytes(view[pos : pos + _CANONICAL_CHUNK])
        keep = len(piece) - len(piece.rstrip(b"\r"))
        held = piece[len(piece) - keep :] if keep else b""
        yield canonical_openssl(piece[: len(piece) - keep] if keep else piece)
    if held:
        yield held


def verify_message(
    src: BinaryIO | bytes,
    *,
    extra_certificates: Iterable[x509.Certificate] = (),
    now: dt.datetime | None = None,
    what: str = "the message",
) -> MessageSignature:
    """Check the signature of a signed message (multipart/signed or opaque signed-data).

    The signed part of multipart/signed is canonicalised and hashed a chunk at a time,
    never copied whole.

    Args:
        src: the message, as bytes or a binary stream.
        extra_certificates: more certificates to find the signer among (a store).
        now: the time to judge a signingTime in the future against.

    Raises:
        DataError: not a signed message, or damaged (exit 65).
    """
    data = src if isinstance(src, bytes) else _read(src, what)
    headers, first, second = _split(data, what)
    if second is None:
        return _verify_opaque(headers, bytes(first), extra_certificates, now, what)
    signed = load_signed_data(second, what)
    content: bytes | Iterator[bytes] = _canonical_chunks(first)
    if _carries_content(signed):  # compared with the part: the old, whole-copy way
        content = canonical_openssl(first)
    check = verify_signed_data(
        signed, content, extra_certificates=extra_certificates, now=now, what=what
    )
    return MessageSignature("multipart/signed", headers, first, check, canonical=False)


def _verify_opaque(
    headers: HeaderBlock,
    der: bytes,
    extra_certificates: Iterable[x509.Certificate],
    now: dt.datetime | None,
    what: str,
) -> MessageSignature:
    """An opaque signed-data: a DER content is taken out and checked as a detached one
    (asn1crypto would copy it at every level it parses); BER is parsed whole."""
    split = split_encapsulated(der)
    if split is None:
        check = verify_signed_data(der, extra_certificates=extra_certificates, now=now, what=what)
        return MessageSignature("signed-data", headers, check.content or b"", check)
    framing, content = split
    signed = load_signed_data(framing, what)
    check = verify_signed_data(
        signed, _chunks(content), extra_certificates=extra_certificates, now=now, what=what
    )
    return MessageSignature("signed-data", headers, content, check)


def _chunks(content: memoryview) -> Iterator[bytes]:
    for pos in range(0, len(content), _CANONICAL_CHUNK):
        yield bytes(content[pos : pos + _CANONICAL_CHUNK])


def _carries_content(signed: Any) -> bool:
    """Whether a (detached) SignedData carries an encapsulated content too."""
    try:
        return signed["encap_content_info"]["content"].native is not None
    except (ValueError, TypeError, KeyError):
        return True  # verify_signed_data reports the damage


def _read(src: Any, what: str) -> bytes:
    data = src.read(MAX_MESSAGE + 1)
    if len(data) > MAX_MESSAGE:
        raise DataError(f"{what}: larger than {MAX_MESSAGE >> 20} MiB, too large to verify")
    return bytes(data)


def _cms_type(der: bytes) -> str | None:
    """The contentType OID of a ContentInfo, or None when it cannot be read. The OID of
    an encrypted type is recognised from the first bytes; anything else is read with
    asn1crypto (which would copy a big content)."""
    from smimecli.cms.der import oid, read_header

    try:
        _tag, start, _length = read_header(der, 0)
        tag, inner, size = read_header(der, start)
        if tag == 0x06 and size is not None:
            found = der[start : inner + size]
            for dotted in _ENCRYPTED_CMS:
                if found == oid(dotted):
                    return dotted
            return None
    except ValueError:
        pass
    from asn1crypto import cms

    try:
        return str(cms.ContentInfo.load(der)["content_type"].dotted)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        return None


def unsigned_message(signature: MessageSignature) -> bytes:
    """The message without its signature layer: the outer fields (Content-* and
    MIME-Version left out), ``MIME-Version: 1.0``, then the signed entity, in the line
    endings of the input."""
    out = BytesIO()
    write_unsigned(signature, out)
    return out.getvalue()


def write_unsigned(signature: MessageSignature, dst: Any) -> None:
    """:func:`unsigned_message` written to ``dst`` a chunk at a time: a big signed
    entity is not copied whole."""
    headers = signature.headers
    newline = headers.newline
    kept = b"".join(item.with_newline(newline) for item in headers.outer_fields())
    dst.write(kept + b"MIME-Version: 1.0" + newline)
    part = signature.signed_part
    if signature.canonical:
        view = memoryview(part)
        chunks: Iterable[bytes] = (
            bytes(view[pos : pos + _CANONICAL_CHUNK])
            for pos in range(0, len(view), _CANONICAL_CHUNK)
        )
    else:
        chunks = _canonical_chunks(part)
    if newline == CRLF:
        for chunk in chunks:
            dst.write(chunk)
        return
    if newline != LF:  # pragma: no cover - a header block ends its lines in LF or CRLF
        dst.write(signature.entity.replace(CRLF, newline))
        return
    convert = Canonicalizer(LF)
    for chunk in chunks:
        dst.write(convert.feed(chunk))
    dst.write(convert.flush())
