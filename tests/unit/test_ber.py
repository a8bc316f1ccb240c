"""The streaming BER reader: definite, indefinite, chunked strings, hostile input."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smimecli.cms.ber import TAG_OCTET_STRING, TAG_SEQUENCE, BerReader, decode_oid
from smimecli.errors import DataError


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _octets(data: bytes) -> bytes:
    reader = BerReader(io.BytesIO(data))
    tlv = reader.read_header()
    return b"".join(reader.iter_octets(tlv, chunk_size=7))


def test_primitive_octet_string_in_chunks() -> None:
    reader = BerReader(io.BytesIO(_tlv(0x04, b"x" * 300)))
    tlv = reader.read_header()
    chunks = list(reader.iter_octets(tlv, chunk_size=100))
    assert [len(c) for c in chunks] == [100, 100, 100]


def test_constructed_indefinite_nested_octet_string() -> None:
    # openssl -stream / NSS: [0] constructed, indefinite, segments (one nested) then EOC.
    nested = b"\x24\x80" + _tlv(0x04, b"cd") + _tlv(0x04, b"e") + b"\x00\x00"
    data = b"\xa0\x80" + _tlv(0x04, b"ab") + nested + _tlv(0x04, b"") + b"\x00\x00"
    assert _octets(data) == b"abcde"


def test_constructed_definite_octet_string() -> None:
    inner = _tlv(0x04, b"hello ") + _tlv(0x04, b"world")
    assert _octets(_tlv(0x24, inner)) == b"hello world"


def test_children_of_definite_and_indefinite_sequences() -> None:
    body = _tlv(0x02, b"\x01") + _tlv(0x06, bytes.fromhex("2a864886f70d010703"))
    for data in (_tlv(0x30, body), b"\x30\x80" + body + b"\x00\x00"):
        reader = BerReader(io.BytesIO(data))
        seq = reader.read_header()
        assert seq.is_universal(TAG_SEQUENCE)
        kinds = []
        for child in reader.children(seq):
            kinds.append(child.tag)
            content = reader.read_content(child)
            if child.tag == 6:
                assert decode_oid(content) == "1.2.840.113549.1.7.3"
        assert kinds == [2, 6]
        assert reader.read_some(1) == b""  # nothing after the SEQUENCE


def test_read_element_keeps_indefinite_encoding() -> None:
    data = b"\x31\x80" + _tlv(0x04, b"a") + b"\x00\x00"
    reader = BerReader(io.BytesIO(data))
    assert reader.read_element(reader.read_header()) == data


def test_high_tag_numbers() -> None:
    reader = BerReader(io.BytesIO(b"\x9f\x81\x00\x01\xff"))
    tlv = reader.read_header()
    assert (tlv.tag, tlv.length) == (128, 1)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x04\x84\xff\xff\xff\xffabc", "truncated"),  # 4 GB claimed, 3 bytes present
        (b"\x04\x89" + b"\x01" * 9, "length field too long"),
        (b"\x04\xff", "length field too long"),
        (b"\x04\x80", "indefinite length on a primitive"),
        (b"\x24\x80" + _tlv(0x04, b"ab"), "truncated"),  # no EOC
        (b"\x24\x80" + _tlv(0x02, b"\x01") + b"\x00\x00", "not an OCTET STRING"),
        (b"\x24\x03" + _tlv(0x04, b"abc"), "longer than its container"),
        (b"\x24\x80" * 100, "nesting deeper"),
        (b"", "truncated"),
        (b"\x24\x80\x00\x01", "bad end-of-contents"),
    ],
)
def test_hostile_input_is_data_error(data: bytes, problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        _octets(data)


def test_element_size_cap() -> None:
    reader = BerReader(io.BytesIO(b"\x31\x84\x7f\xff\xff\xff"))
    with pytest.raises(DataError, match="larger than allowed"):
        reader.read_element(reader.read_header())


def test_big_indefinite_stream_is_linear() -> None:
    # 20 MB in 1000-byte segments: constant memory per chunk, and quick.
    segment = _tlv(0x04, b"z" * 1000)
    data = b"\xa0\x80" + segment * 20_000 + b"\x00\x00"
    reader = BerReader(io.BytesIO(data))
    tlv = reader.read_header()
    total = 0
    for chunk in reader.iter_octets(tlv):
        assert len(chunk) <= 1 << 16
        total += len(chunk)
    assert total == 20_000_000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_data_error(data: bytes) -> None:
    reader = BerReader(io.BytesIO(data), max_depth=16)
    try:
        tlv = reader.read_header()
        if tlv.constructed and not tlv.is_universal(TAG_OCTET_STRING):
            for child in reader.children(tlv):
                reader.read_element(child, max_size=1000)
        else:
            for _ in reader.iter_octets(tlv):
                pass
    except DataError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_through_cms_head(data: bytes) -> None:
    from smimecli.cms.open import read_head

    for prefix in (b"", b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03\xa0\x80"):
        try:
            read_head(BerReader(io.BytesIO(prefix + data)))
        except DataError:
            pass
