"""A streaming reader of BER/DER TLVs (X.690) over a binary stream.

Why not asn1crypto for the whole message: it parses indefinite-length content in quadratic
time and holds every string in memory. Here the outer layers (ContentInfo, EnvelopedData,
EncryptedContentInfo) are walked TLV by TLV; only the small structures (RecipientInfos,
AlgorithmIdentifiers) are cut out as bytes and handed to asn1crypto, and the encrypted
content is yielded in chunks, whatever mix of definite lengths, indefinite lengths and
constructed OCTET STRINGs (``openssl cms -stream``, NSS) carries it.

Hostile input always ends in :class:`DataError`: lengths beyond the input
or the enclosing element, absurd lengths (no allocation is ever sized by a length field),
nesting deeper than ``max_depth``, truncation. Every step consumes at least two bytes, so
the reader cannot loop forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from smimecli.errors import DataError

CLASS_UNIVERSAL = 0
CLASS_CONTEXT = 2

TAG_EOC = 0
TAG_INTEGER = 2
TAG_OCTET_STRING = 4
TAG_OID = 6
TAG_SEQUENCE = 16
TAG_SET = 17

_READ_SIZE = 1 << 20  # the most one read() asks for, whatever a length field claims
DEFAULT_CHUNK = 1 << 16
DEFAULT_MAX_ELEMENT = 16 << 20  # cap on a structure cut out for asn1crypto
DEFAULT_MAX_DEPTH = 64


@dataclass(frozen=True)
class Tlv:
    """The header of one element; ``length`` is None for the indefinite form (X.690 8.1.3.6)."""

    tag_class: int
    constructed: bool
    tag: int
    length: int | None
    header: bytes
    depth: int

    @property
    def is_eoc(self) -> bool:
        """True for the end-of-contents octets 00 00 that close an indefinite length."""
        return self.tag_class == CLASS_UNIVERSAL and self.tag == TAG_EOC and not self.constructed

    def is_universal(self, tag: int) -> bool:
        """True when this is the universal-class element ``tag``."""
        return self.tag_class == CLASS_UNIVERSAL and self.tag == tag

    def is_context(self, tag: int) -> bool:
        """True when this is the context-specific element ``[tag]``."""
        return self.tag_class == CLASS_CONTEXT and self.tag == tag


class BerReader:
    """Reads TLVs one after the other from ``stream``, tracking the byte position.

    Args:
        stream: a binary stream positioned at the first header.
        what: how to name the input in error messages.
        max_depth: deepest nesting accepted.
    """

    def __init__(
        self, stream: BinaryIO, *, what: str = "CMS structure", max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        self._stream = stream
        self._what = what
        self._max_depth = max_depth
        self.pos = 0

    # --- bytes ------------------------------------------------------------------------------

    def error(self, problem: str) -> DataError:
        """A DataError naming the input and the byte offset."""
        return DataError(f"{self._what} is not valid BER/DER: {problem} at byte {self.pos}")

    def _raw_read(self, size: int) -> bytes:
        try:
            data = self._stream.read(size)
        except (ValueError, EOFError) as exc:  # base64 decoding streams report bad input so
            raise self.error(f"unreadable input ({exc})") from exc
        return data or b""

    def read_some(self, size: int) -> bytes:
        """Up to ``size`` bytes (at least one unless at end of input)."""
        data = self._raw_read(min(size, _READ_SIZE))
        self.pos += len(data)
        return data

    def read_exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes; DataError on truncation (reads in bounded pieces)."""
        parts: list[bytes] = []
        left = size
        while left > 0:
            data = self.read_some(left)
            if not data:
                raise self.error(f"truncated input ({left} of {size} bytes missing)")
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    # --- headers ----------------------------------------------------------------------------

    def read_header(self, depth: int = 0) -> Tlv:
        """Read one identifier and length (X.690 8.1.2, 8.1.3)."""
        if depth > self._max_depth:
            raise self.error(f"nesting deeper than {self._max_depth} levels")
        first = self.read_exact(1)
        header = bytearray(first)
        ident = first[0]
        tag_class = ident >> 6
        constructed = bool(ident & 0x20)
        tag = ident & 0x1F
        if tag == 0x1F:  # high tag number form, base 128 (8.1.2.4)
            tag = 0
            for count in range(5):
                byte = self.read_exact(1)
                header += byte
                tag = (tag << 7) | (byte[0] & 0x7F)
                if not byte[0] & 0x80:
                    break
                if count == 4:
                    raise self.error("tag number too large")
        lead = self.read_exact(1)
        header += lead
        length: int | None
        if lead[0] < 0x80:
            length = lead[0]
        elif lead[0] == 0x80:
            if not constructed:
                raise self.error("indefinite length on a primitive element")
            length = None
        else:
            count = lead[0] & 0x7F
            if count > 8:  # 0xFF is reserved (8.1.3.5 c); more than 8 bytes is absurd
                raise self.error("length field too long")
            raw = self.read_exact(count)
            header += raw
            length = int.from_bytes(raw, "big")
        return Tlv(tag_class, constructed, tag, length, bytes(header), depth)

    def expect(self, depth: int, tag_class: int, tag: int, what: str) -> Tlv:
        """Read a header and check its tag."""
        tlv = self.read_header(depth)
        if tlv.tag_class != tag_class or tlv.tag != tag or tlv.is_eoc:
            raise self.error(f"expected {what}")
        return tlv

    def next_universal(self, children: Iterator[Tlv], tag: int, what: str) -> Tlv:
        """The next of ``children``, which must be the universal element ``tag``."""
        tlv = next(children, None)
        if tlv is None or not tlv.is_universal(tag):
            raise self.error(f"expected {what}")
        return tlv

    # --- content ----------------------------------------------------------------------------

    def children(self, parent: Tlv) -> Iterator[Tlv]:
        """The headers of the elements inside a constructed ``parent``.

        The caller must consume each child (``read_content``, ``iter_octets``, ``skip``,
        ``children``) before asking for the next one.
        """
        if not parent.constructed:
            raise self.error("expected a constructed element")
        depth = parent.depth + 1
        if parent.length is None:
            while True:
                tlv = self.read_header(depth)
                if tlv.is_eoc:
                    if tlv.length != 0:
                        raise self.error("bad end-of-contents octets")
                    return
                yield tlv
        else:
            end = self.pos + parent.length
            while self.pos < end:
                tlv = self.read_header(depth)
                if tlv.is_eoc:
                    raise self.error("end-of-contents inside a definite length")
                if tlv.length is not None and self.pos + tlv.length > end:
                    raise self.error("element longer than its container")
                yield tlv
                if self.pos > end:
                    raise self.error("element longer than its container")
            if self.pos != end:
                raise self.error("element longer than its container")

    def read_content(self, tlv: Tlv, *, max_size: int = DEFAULT_MAX_ELEMENT) -> bytes:
        """The content octets of ``tlv`` as they are encoded (indefinite: up to, without, EOC).

        Raises DataError when the content is larger than ``max_size``.
        """
        if tlv.length is not None:
            if tlv.length > max_size:
                raise self.error(f"element of {tlv.length} bytes is larger than allowed")
            return self.read_exact(tlv.length)
        parts: list[bytes] = []
        total = 0
        for child in self.children(tlv):
            body = self.read_content(child, max_size=max_size - total)
            if child.length is None:
                body += b"\x00\x00"
            total += len(child.header) + len(body)
            if total > max_size:
                raise self.error("element larger than allowed")
            parts.append(child.header)
            parts.append(body)
        return b"".join(parts)

    def read_element(self, tlv: Tlv, *, max_size: int = DEFAULT_MAX_ELEMENT) -> bytes:
        """The whole encoding of ``tlv`` (header, content, EOC), to hand to asn1crypto."""
        body = self.read_content(tlv, max_size=max_size)
        return tlv.header + body + (b"\x00\x00" if tlv.length is None else b"")

    def skip(self, tlv: Tlv) -> None:
        """Consume the content of ``tlv`` without keeping it."""
        if tlv.length is not None:
            left = tlv.length
            while left:
                data = self.read_some(min(left, _READ_SIZE))
                if not data:
                    raise self.error("truncated input")
                left -= len(data)
            return
        for child in self.children(tlv):
            self.skip(child)

    def iter_octets(self, tlv: Tlv, *, chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        """The value of an OCTET STRING (any tag, X.690 8.7), in chunks of bounded size.

        A constructed string is the concatenation of its segments, which must be universal
        OCTET STRINGs, themselves primitive or constructed (8.7.3).
        """
        if not tlv.constructed:
            assert tlv.length is not None  # read_header refuses indefinite primitives
            left = tlv.length
            while left:
                data = self.read_some(min(left, chunk_size))
                if not data:
                    raise self.error(f"truncated input ({left} bytes of content missing)")
                left -= len(data)
                yield data
            return
        for child in self.children(tlv):
            if not child.is_universal(TAG_OCTET_STRING):
                raise self.error("a segment of a constructed OCTET STRING is not an OCTET STRING")
            yield from self.iter_octets(child, chunk_size=chunk_size)

    def read_octets(self, tlv: Tlv, *, max_size: int = DEFAULT_MAX_ELEMENT) -> bytes:
        """The whole value of a small OCTET STRING."""
        parts: list[bytes] = []
        total = 0
        for chunk in self.iter_octets(tlv):
            total += len(chunk)
            if total > max_size:
                raise self.error("OCTET STRING larger than allowed")
            parts.append(chunk)
        return b"".join(parts)


def decode_oid(content: bytes) -> str:
    """The dotted form of OBJECT IDENTIFIER content octets (X.690 8.19)."""
    if not content or content[-1] & 0x80:
        raise DataError("CMS structure is not valid BER/DER: bad OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])
