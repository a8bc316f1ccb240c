"""Whether a message is already encrypted: the Content-Type claim (RFC 8551 section 3.2.2,
RFC 1847) and, for S/MIME, the first octets of the body checked to be a CMS EnvelopedData
or AuthEnvelopedData."""

from __future__ import annotations

import binascii

from smimecli.mime.headers import ContentType, HeaderBlock, parse_parameters
from smimecli.mime.reading import LineReader, PeekedStream

PKCS7_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_ENCRYPTED_SMIME_TYPES = ("enveloped-data", "authenveloped-data")


def has_p7m_name(headers: HeaderBlock, ctype: ContentType) -> bool:
    """Whether the Content-Type name or the Content-Disposition filename ends in ``.p7m``."""
    disposition = parse_parameters((headers.get("Content-Disposition") or "").partition(";")[2])
    names = [ctype.param("name"), disposition.get("filename")]
    return any(name and name.strip().lower().endswith(".p7m") for name in names)


def is_encrypted(headers: HeaderBlock) -> bool:
    """Whether a message is already encrypted and must pass through unchanged.

    True for application/(x-)pkcs7-mime with smime-type enveloped-data or
    authEnveloped-data, or with no smime-type but a ``.p7m`` name (RFC 8551 section 3.2.2),
    and for multipart/encrypted (RFC 1847).
    """
    ctype = headers.content_type()
    if ctype.mime_type == "multipart/encrypted":
        return True
    if ctype.mime_type not in PKCS7_TYPES:
        return False
    smime_type = ctype.param("smime-type")
    if smime_type is not None:
        return smime_type.strip().lower() in _ENCRYPTED_SMIME_TYPES
    return has_p7m_name(headers, ctype)


# What "already encrypted" means: the body really is a CMS EnvelopedData or
# AuthEnvelopedData, not merely a Content-Type that says so. Only the first bytes are read.
_SNIFF_LIMIT = 64 << 10  # bytes of body read at most to find the first DER octets
_SNIFF_DER = 48  # DER octets decoded and checked
_OID_ENVELOPED = bytes.fromhex("2a864886f70d010703")  # 1.2.840.113549.1.7.3
_OID_AUTH_ENVELOPED = bytes.fromhex("2a864886f70d0109100117")  # 1.2.840.113549.1.9.16.1.23
_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _der_header(data: bytes, pos: int, tag: int) -> int | None:
    """The position after a DER/BER tag ``tag`` and its length octets at ``pos``, or None."""
    if pos + 2 > len(data) or data[pos] != tag:
        return None
    first = data[pos + 1]
    if first < 0x80:
        return pos + 2
    if first == 0x80:  # BER indefinite length (streamed CMS)
        return pos + 2
    count = first & 0x7F
    if count > 4 or pos + 2 + count > len(data):
        return None
    if data[pos + 2] == 0:  # not minimal: no encoder writes it
        return None
    return pos + 2 + count


def looks_like_enveloped_cms(der: bytes) -> bool:
    """Whether DER/BER bytes start like a CMS ContentInfo of EnvelopedData (RFC 5652) or
    AuthEnvelopedData (RFC 5083): SEQUENCE, the content type OID, [0], SEQUENCE, version."""
    pos = _der_header(der, 0, 0x30)
    if pos is None or pos + 2 > len(der) or der[pos] != 0x06:
        return False
    size = der[pos + 1]
    oid = der[pos + 2 : pos + 2 + size]
    if oid not in (_OID_ENVELOPED, _OID_AUTH_ENVELOPED):
        return False
    pos = _der_header(der, pos + 2 + size, 0xA0)
    if pos is None:
        return False
    pos = _der_header(der, pos, 0x30)
    if pos is None or pos + 3 > len(der):
        return False
    # CMSVersion: INTEGER 0..4 (RFC 5652 section 6.1), 0 for AuthEnvelopedData.
    return der[pos : pos + 2] == b"\x02\x01" and der[pos + 2] <= 4


def sniff_encrypted(headers: HeaderBlock, body: LineReader) -> tuple[bool, LineReader]:
    """Whether a message is already encrypted, checking the body and not only the claim.

    True only when :func:`is_encrypted` says so for the headers *and* the body (base64 or
    binary) starts like a CMS EnvelopedData or AuthEnvelopedData. A multipart/encrypted
    (PGP/MIME) message is never counted: it is not S/MIME, and its claim cannot be checked
    here, so it is treated as plaintext. At most 64 KiB of the body are read.

    Returns:
        the answer and a stream that reads the whole body again from its first byte.
    """
    ctype = headers.content_type()
    if ctype.mime_type not in PKCS7_TYPES or not is_encrypted(headers):
        return False, body
    head = bytearray()
    clean = bytearray()
    binary = False
    while len(head) < _SNIFF_LIMIT and len(clean) < _SNIFF_DER * 4 // 3 + 4:
        line = body.readline(_SNIFF_LIMIT - len(head))
        if not line:
            break
        head += line
        if not clean and not binary and line.lstrip()[:1] == b"\x30":
            binary = True
        if binary:
            if len(head) >= _SNIFF_DER:
                break
            continue
        stripped = bytes(line.strip())
        if stripped and not set(stripped) <= _B64_CHARS:
            break
        clean += stripped
    rest = PeekedStream(bytes(head), body)
    if binary:
        return looks_like_enveloped_cms(bytes(head.lstrip())[:_SNIFF_DER]), rest
    usable = len(clean) - len(clean) % 4
    try:
        der = binascii.a2b_base64(bytes(clean[:usable]))
    except binascii.Error:
        return False, rest
    return looks_like_enveloped_cms(der[:_SNIFF_DER]), rest
