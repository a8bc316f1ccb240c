"""Taking the encapsulated content out of a DER SignedData without copying it, so that an
opaque signature is checked like a detached one (:mod:`smimecli.cms.verify`)."""

from __future__ import annotations

__all__ = ["split_encapsulated"]


def split_encapsulated(der: bytes) -> tuple[bytes, memoryview] | None:
    """A DER ContentInfo(SignedData) that carries its content, taken apart without
    asn1crypto copying the content: the same SignedData without the content (framing
    lengths recomputed) and a view of the content octets, to verify as if detached.

    A constructed OCTET STRING with definite lengths (BER, X.690 8.7.3, which asn1crypto
    refuses there) gives its pieces joined. None when the content is absent or has an
    indefinite length anywhere: parse the whole with :func:`load_signed_data` then.
    """
    from smimecli.cms.der import header, read_header

    try:
        tag, ci, ci_len = read_header(der, 0)
        if tag != 0x30 or ci_len is None or ci + ci_len != len(der):
            return None
        tag, start, size = read_header(der, ci)  # contentType
        if tag != 0x06:
            return None
        explicit = start + (size or 0)
        tag, sd_outer, outer_len = read_header(der, explicit)  # [0] EXPLICIT
        tag2, sd, sd_len = read_header(der, sd_outer)  # SignedData
        if tag != 0xA0 or tag2 != 0x30 or None in (outer_len, sd_len, size):
            return None
        assert sd_len is not None and outer_len is not None
        if sd + sd_len != len(der) or sd_outer + outer_len != len(der):
            return None
        pos = sd
        for _ in range(2):  # version, digestAlgorithms
            _tag, inner, length = read_header(der, pos)
            if length is None:
                return None
            pos = inner + length
        tag, encap, encap_len = read_header(der, pos)
        _tag, type_start, type_len = read_header(der, encap)
        if tag != 0x30 or encap_len is None or type_len is None:
            return None
        after_type = type_start + type_len
        encap_end = encap + encap_len
        if after_type == encap_end:
            return None  # detached: nothing to take out
        tag, inner, inner_len = read_header(der, after_type)
        tag2, octets, octets_len = read_header(der, inner)
        if tag != 0xA0 or inner_len is None or octets_len is None:
            return None
        if octets + octets_len != encap_end or inner + inner_len != encap_end:
            return None
        content = _content_octets(der, tag2, octets, encap_end)
        if content is None:
            return None
    except ValueError:
        return None
    content_type = der[encap:after_type]
    body = der[sd:pos] + header(0x30, len(content_type)) + content_type + der[encap_end:]
    signed = header(0x30, len(body)) + body
    wrapped = der[ci:explicit] + header(0xA0, len(signed)) + signed
    return header(0x30, len(wrapped)) + wrapped, content


def _content_octets(der: bytes, tag: int, start: int, end: int) -> memoryview | None:
    """The eContent OCTET STRING's octets: a view of a primitive one; the pieces of a
    constructed one with definite lengths (BER, which asn1crypto refuses there) joined."""
    if tag == 0x04:
        return memoryview(der)[start:end]
    if tag == 0x24:
        pieces = _octet_pieces(der, start, end, 0)
        return None if pieces is None else memoryview(b"".join(pieces))
    return None


_MAX_OCTET_NESTING = 8  # constructed OCTET STRINGs inside each other (X.690 8.7.3)


def _octet_pieces(der: bytes, start: int, end: int, depth: int) -> list[memoryview] | None:
    """The primitive pieces of the constructed OCTET STRING content ``der[start:end]``, in
    order; None when a piece is not an OCTET STRING, has an indefinite length, or the
    nesting is deeper than :data:`_MAX_OCTET_NESTING`."""
    from smimecli.cms.der import read_header

    if depth >= _MAX_OCTET_NESTING:
        return None
    pieces: list[memoryview] = []
    pos = start
    while pos < end:
        tag, inner, length = read_header(der, pos)
        if length is None or inner + length > end:
            return None
        if tag == 0x04:
            pieces.append(memoryview(der)[inner : inner + length])
        elif tag == 0x24:
            nested = _octet_pieces(der, inner, inner + length, depth + 1)
            if nested is None:
                return None
            pieces.extend(nested)
        else:
            return None
        pos = inner + length
    return pieces
