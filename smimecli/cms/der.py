"""A small DER writer (and header reader) for what encryption writes.

asn1crypto builds whole values in memory and costs start-up time, which is fine for reading
but not for a 1 GB encryptedContent or a gateway that runs once per message. Encryption
writes everything with these functions: the ContentInfo / EnvelopedData /
EncryptedContentInfo framing, the RecipientInfos and the AlgorithmIdentifiers.

Choice of encoding: the content length is known before the framing is final (the message is
measured first, or the framing is written for a range of lengths and rewritten, see
smimecli.encrypt.message), and CBC/GCM ciphertext length follows from it, so every length is
definite and the output is DER, as RFC 8551 asks of S/MIME and as Windows writes it.
"""

from __future__ import annotations

import functools

# Universal tags (X.690 section 8) and the context tags CMS uses.
INTEGER = 0x02
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30
SET = 0x31
CONTEXT_0_CONSTRUCTED = 0xA0
CONTEXT_0_PRIMITIVE = 0x80
CONTEXT_1_CONSTRUCTED = 0xA1


def encode_length(length: int) -> bytes:
    """The DER length octets (X.690 section 8.1.3: short form below 128, else long form)."""
    if length < 0:
        raise ValueError("negative length")
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def header(tag: int, length: int) -> bytes:
    """The identifier and length octets of a TLV whose content is ``length`` bytes."""
    return bytes([tag]) + encode_length(length)


def tlv_length(length: int) -> int:
    """The whole size of a single-byte-tag TLV with ``length`` content bytes."""
    return 1 + len(encode_length(length)) + length


def tlv(tag: int, content: bytes) -> bytes:
    """A complete TLV."""
    return header(tag, len(content)) + content


def integer(value: int) -> bytes:
    """A DER INTEGER (two's complement, minimal octets)."""
    size = (value.bit_length() + 8) // 8 if value >= 0 else (value + 1).bit_length() // 8 + 1
    return tlv(INTEGER, value.to_bytes(max(1, size), "big", signed=True))


@functools.lru_cache(maxsize=256)
def oid(dotted: str) -> bytes:
    """A DER OBJECT IDENTIFIER from its dotted form (X.690 section 8.19)."""
    arcs = [int(part) for part in dotted.split(".")]
    if len(arcs) < 2:
        raise ValueError(f"not an OID: {dotted}")
    values = [arcs[0] * 40 + arcs[1], *arcs[2:]]
    out = bytearray()
    for value in values:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out += bytes(reversed(chunk))
    return tlv(OBJECT_IDENTIFIER, bytes(out))


def read_header(data: bytes, pos: int) -> tuple[int, int, int | None]:
    """Read the TLV header at ``pos``: (tag, content start, content length, or None for a
    BER indefinite length).

    For the few places that look into small DER values without asn1crypto (a certificate's
    issuer and serial, the kind of a blob); single-byte tags and lengths below 4 GiB only.
    The content itself is not checked to fit in ``data``.

    Raises:
        ValueError: the header is truncated or uses a form not expected here.
    """
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte tags are not used here")
    first = data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, first
    if first == 0x80:
        return tag, pos + 2, None
    count = first & 0x7F
    if count > 4 or pos + 2 + count > len(data):
        raise ValueError("bad length")
    return tag, pos + 2 + count, int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
