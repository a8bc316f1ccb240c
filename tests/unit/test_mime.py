"""MIME primitives: header blocks, Content-Type, already-encrypted detection, canonical CRLF
and the base64 writer."""

from __future__ import annotations

import base64
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smimecli import mime
from smimecli.errors import DataError

MESSAGE_LF = (
    b"From: a@example.com\n"
    b"To: b@example.com\n"
    b"Subject: a long\n"
    b"  folded subject\n"
    b"Bcc: hidden@example.com\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain;\n"
    b" charset=utf-8\n"
    b"\n"
    b"body line\n"
)


def test_parse_header_block_from_bytes() -> None:
    block, offset = mime.parse_header_block(MESSAGE_LF)
    assert [f.name for f in block.fields] == [
        "From",
        "To",
        "Subject",
        "Bcc",
        "MIME-Version",
        "Content-Type",
    ]
    assert block.newline == b"\n"
    assert block.has_separator
    assert MESSAGE_LF[offset:] == b"body line\n"
    assert block.raw == MESSAGE_LF[:offset]
    assert block.get("subject") == "a long  folded subject"
    assert block.fields[2].raw == b"Subject: a long\n  folded subject\n"
    assert block.content_type().param("charset") == "utf-8"


def test_stream_reader_stops_at_body() -> None:
    data = MESSAGE_LF.replace(b"\n", b"\r\n")
    stream = io.BytesIO(data)
    block, body = mime.read_header_block(stream)
    assert block.newline == b"\r\n"
    assert body.read() == b"body line\r\n"


def test_missing_blank_line_keeps_first_body_line() -> None:
    stream = io.BytesIO(b"Subject: x\nthis is not a header\nmore\n")
    block, body = mime.read_header_block(stream)
    assert [f.name for f in block.fields] == ["Subject"]
    assert not block.has_separator
    assert body.read() == b"this is not a header\nmore\n"


def test_headers_only_without_newline() -> None:
    block, offset = mime.parse_header_block(b"Subject: x")
    assert block.get("Subject") == "x"
    assert offset == len(b"Subject: x")


def test_huge_header_line_is_data_error() -> None:
    stream = io.BytesIO(b"Subject: " + b"x" * (mime.MAX_LINE + 10))
    with pytest.raises(DataError):
        mime.read_header_block(stream)


def test_outer_and_content_fields() -> None:
    block, _ = mime.parse_header_block(MESSAGE_LF)
    assert [f.name for f in block.outer_fields()] == ["From", "To", "Subject"]
    assert [f.name for f in block.content_fields()] == ["Content-Type"]
    assert mime.inner_entity_header(block) == (
        b"Content-Type: text/plain;\r\n charset=utf-8\r\n\r\n"
    )


def test_parameters() -> None:
    ctype = mime.parse_content_type(
        "Application/PKCS7-MIME; smime-type=\"enveloped-data\"; name*=utf-8''sm%69me.p7m"
    )
    assert ctype.mime_type == "application/pkcs7-mime"
    assert ctype.param("Smime-Type") == "enveloped-data"
    assert ctype.param("name") == "smime.p7m"
    assert mime.parse_parameters('a="x\\"y"; b*0=ab; b*1=cd') == {"a": 'x"y', "b": "abcd"}
    assert mime.parse_content_type(None).mime_type == "text/plain"
    assert mime.parse_content_type("garbage").mime_type == "text/plain"


@pytest.mark.parametrize(
    ("content_type", "disposition", "expected"),
    [
        ("application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m", None, True),
        ("application/x-pkcs7-mime; smime-type=authEnveloped-data", None, True),
        ("application/pkcs7-mime; smime-type=signed-data; name=smime.p7m", None, False),
        ("application/x-pkcs7-mime; name=smime.p7m", None, True),
        ("application/pkcs7-mime", 'attachment; filename="SMIME.P7M"', True),
        ("application/pkcs7-mime; name=smime.p7s", None, False),
        ('multipart/encrypted; protocol="application/pgp-encrypted"; boundary=x', None, True),
        ('multipart/signed; protocol="application/pkcs7-signature"; boundary=x', None, False),
        ("text/plain", None, False),
    ],
)
def test_is_encrypted(content_type: str, disposition: str | None, expected: bool) -> None:
    head = f"Content-Type: {content_type}\n"
    if disposition:
        head += f"Content-Disposition: {disposition}\n"
    block, _ = mime.parse_header_block(head.encode() + b"\n")
    assert mime.is_encrypted(block) is expected


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


line_bytes = st.binary(max_size=200).map(lambda b: b.replace(b"\x00", b"\r"))


@given(line_bytes, st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_canonicalize_any_chunking(data: bytes, cuts: list[int]) -> None:
    pieces = _chunked(data, cuts)
    assert b"".join(mime.canonicalize(pieces)) == mime.canonical_bytes(data)
    counter = mime.CanonicalCounter()
    for piece in pieces:
        counter.feed(piece)
    assert counter.length == len(mime.canonical_bytes(data))


def test_canonical_form() -> None:
    assert mime.canonical_bytes(b"a\nb\r\nc\rd\n") == b"a\r\nb\r\nc\rd\r\n"
    assert b"".join(mime.canonicalize([b"a\r", b"\nb\r", b"", b"\n"])) == b"a\r\nb\r\n"
    assert b"".join(mime.canonicalize([b"a\r"])) == b"a\r"


@given(
    st.binary(max_size=3000),
    st.lists(st.integers(min_value=0, max_value=3000), max_size=5),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_base64_writer(data: bytes, cuts: list[int], newline: bytes) -> None:
    out = io.BytesIO()
    writer = mime.Base64LineWriter(out, newline)
    for piece in _chunked(data, cuts):
        writer.write(piece)
    writer.close()
    text = out.getvalue()
    lines = text.split(newline)
    assert lines[-1] == b""
    assert all(0 < len(line) <= 76 for line in lines[:-1])
    assert all(len(line) == 76 for line in lines[:-2])
    assert base64.b64decode(b"".join(lines)) == data
    if newline == b"\n":
        assert b"\r" not in text


def test_wrapper_headers() -> None:
    block, _ = mime.parse_header_block(MESSAGE_LF)
    head = mime.wrapper_header_block(block, authenticated=True)
    assert head == (
        b"From: a@example.com\nTo: b@example.com\nSubject: a long\n  folded subject\n"
        b"MIME-Version: 1.0\n"
        b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data; "
        b"name=smime.p7m\n"
        b"Content-Transfer-Encoding: base64\n"
        b"Content-Disposition: attachment; filename=smime.p7m\n\n"
    )


def test_base64_writer_across_batches() -> None:
    data = bytes(range(256)) * 2000 + b"tail"  # crosses the 4096-line batch twice
    out = io.BytesIO()
    writer = mime.Base64LineWriter(out, b"\n")
    for start in range(0, len(data), 70_000):
        writer.write(data[start : start + 70_000])
    writer.close()
    assert out.getvalue() == base64.encodebytes(data)


# The first octets of BER ContentInfo structures, as streaming encoders write them.
ENVELOPED = base64.b64decode("MIAGCSqGSIb3DQEHA6CAMIACAQAx")  # EnvelopedData, version 0
AUTH_ENVELOPED = bytes.fromhex("3080060b2a864886f70d0109100117a080308002010031")
SIGNED = base64.b64decode("MIAGCSqGSIb3DQEHAqCAMIACAQEx")  # SignedData


def _sniff(content_type: str, body: bytes) -> tuple[bool, bytes]:
    block, _ = mime.parse_header_block(f"Content-Type: {content_type}\n\n".encode())
    found, rest = mime.sniff_encrypted(block, io.BytesIO(body))
    return found, rest.read()


SMIME = "application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m"


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (SMIME, base64.encodebytes(ENVELOPED + b"\x00" * 300), True),
        (SMIME, base64.encodebytes(AUTH_ENVELOPED + b"\x00" * 300), True),
        (SMIME, ENVELOPED + b"\n\x00\r\n" * 30, True),  # binary transfer encoding
        (SMIME, b"\r\n" + base64.encodebytes(ENVELOPED), True),  # a blank line first
        ("application/x-pkcs7-mime; name=smime.p7m", base64.encodebytes(ENVELOPED), True),
        (SMIME, b"The secret merger plan.\r\n", False),  # the claim alone
        (SMIME, base64.encodebytes(b"The secret merger plan, in base64.\n" * 5), False),
        (SMIME, base64.encodebytes(SIGNED + b"\x00" * 300), False),
        (SMIME, base64.encodebytes(ENVELOPED[:15]), False),  # cut short
        (SMIME, b"", False),
        ('multipart/encrypted; protocol="application/pgp-encrypted"; boundary=x', b"", False),
        # PGP/MIME is never "already encrypted", not even around a CMS body.
        ("multipart/encrypted; boundary=x", base64.encodebytes(ENVELOPED), False),
        ("text/plain", base64.encodebytes(ENVELOPED), False),
        ("application/pkcs7-mime; smime-type=signed-data", base64.encodebytes(ENVELOPED), False),
    ],
)
def test_sniff_encrypted_checks_the_body(content_type: str, body: bytes, expected: bool) -> None:
    found, rest = _sniff(content_type, body)
    assert found is expected
    assert rest == body  # the whole body is still there for the copy or the encryption


class _CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def readline(self, size: int | None = -1, /) -> bytes:
        line = super().readline(size)
        self.taken += len(line)
        return line

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


def test_sniff_encrypted_reads_a_bounded_head() -> None:
    block, _ = mime.parse_header_block(f"Content-Type: {SMIME}\n\n".encode())
    # 10 MB of one base64 "line" and of a body of short plaintext lines.
    for body in (b"A" * (10 << 20), b"x\n" * (5 << 20)):
        stream = _CountingStream(body)
        found, _ = mime.sniff_encrypted(block, stream)
        assert found is False
        assert stream.taken <= 64 << 10
