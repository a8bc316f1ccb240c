"""winmail.dat conversion (SPEC section 4) on TNEF streams built here, field by field."""

from __future__ import annotations

import base64
import logging
import os
import struct
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from compressed_rtf import compress
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smimecli.tnef.reader import IID_IMESSAGE, TNEF_SIGNATURE, parse_tnef
from smimecli.tnef.splice import contains_tnef, convert_message, looks_like_message
from tests.conftest import ROOT, Pki

# --- a small TNEF writer (MS-OXTNEF 2.1.3) ----------------------------------------------------

PT_I4, PT_BOOL, PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT = 3, 0xB, 0x1E, 0x1F, 0x102, 0xD


def attribute(level: int, attr_id: int, attr_type: int, data: bytes, *, bad: bool = False) -> bytes:
    checksum = (sum(data) + (1 if bad else 0)) & 0xFFFF
    return (
        struct.pack("<BII", level, (attr_type << 16) | attr_id, len(data))
        + data
        + struct.pack("<H", checksum)
    )


def mapi(*props: tuple[int, int, object]) -> bytes:
    """A MAPI property list: (type, tag, value) with str, bytes, int or bool values."""
    out = [struct.pack("<I", len(props))]
    for ptype, tag, value in props:
        out.append(struct.pack("<HH", ptype, tag))
        if ptype in (PT_I4, PT_BOOL):
            assert isinstance(value, int)
            out.append(struct.pack("<i", int(value)))
            continue
        if ptype == PT_UNICODE:
            assert isinstance(value, str)
            raw = (value + "\0").encode("utf-16-le")
        elif ptype == PT_STRING8:
            assert isinstance(value, str)
            raw = (value + "\0").encode("cp1252")
        else:
            assert isinstance(value, bytes)
            raw = value
        out.append(struct.pack("<II", 1, len(raw)) + raw + b"\0" * (-len(raw) % 4))
    return b"".join(out)


def tnef(
    message_props: bytes = b"",
    attachments: list[bytes] | None = None,
    message_class: str = "IPM.Microsoft Mail.Note",
    *,
    codepage: int = 1252,
) -> bytes:
    parts = [
        struct.pack("<IH", TNEF_SIGNATURE, 0x1234),
        attribute(1, 0x9006, 0x8, struct.pack("<I", 0x10000)),
        attribute(1, 0x9007, 0xB, struct.pack("<II", codepage, 0)),
        attribute(1, 0x8008, 0x7, message_class.encode() + b"\0"),
    ]
    if message_props:
        parts.append(attribute(1, 0x9003, 0x6, message_props))
    parts.extend(attachments or [])
    return b"".join(parts)


def attachment(
    name: str,
    data: bytes,
    *,
    mime: str | None = None,
    cid: str | None = None,
    short: str = "ATTACH~1.DAT",
    legacy_data: bool = True,
) -> bytes:
    props: list[tuple[int, int, object]] = [(PT_I4, 0x3705, 1), (PT_UNICODE, 0x3707, name)]
    if mime:
        props.append((PT_STRING8, 0x370E, mime))
    if cid:
        props.append((PT_STRING8, 0x3712, cid))
    if not legacy_data:
        props.append((PT_BINARY, 0x3701, data))
    out = [
        attribute(2, 0x9002, 0x6, b"\x01\x00\xff\xff\xff\xff" + b"\0" * 8),
        attribute(2, 0x8010, 0x1, short.encode() + b"\0"),
    ]
    if legacy_data:
        out.append(attribute(2, 0x800F, 0x6, data))
    out.append(attribute(2, 0x9005, 0x6, mapi(*props)))
    return b"".join(out)


def wrap(
    stream: bytes,
    *,
    eol: bytes = b"\r\n",
    ctype: bytes = b"application/ms-tnef",
    name: bytes = b"winmail.dat",
) -> bytes:
    """A message: a text part, then the TNEF stream as a base64 part."""
    b64 = base64.encodebytes(stream).replace(b"\n", eol)
    head = [
        b"From: a@example.com",
        b"To: b@example.com",
        b"Subject: tnef",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="XX"',
        b"",
        b"preamble stays",
        b"--XX",
        b"Content-Type: text/plain; charset=us-ascii",
        b"",
        b"outer text",
        b"--XX",
        b"Content-Type: " + ctype + b'; name="' + name + b'"',
        b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="' + name + b'"',
        b"",
    ]
    return eol.join(head) + eol + b64 + b"--XX--" + eol + b"epilogue stays" + eol


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects, message.defects
    return message


def leaves(message: EmailMessage) -> list[EmailMessage]:
    return [part for part in message.walk() if not part.is_multipart()]


def payload(part: EmailMessage) -> bytes:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


NOTE_PROPS = mapi((PT_STRING8, 0x1000, "Hello from Outlook\r\nsecond line\r\n"))


# --- conversion -------------------------------------------------------------------------------


def test_plain_body_and_attachments_come_out_as_mime() -> None:
    pdf = b"%PDF-1.4 fake\x00\x00"  # trailing NULs must survive (tnefparse strips them)
    stream = tnef(
        NOTE_PROPS,
        [
            attachment("report.pdf", pdf, mime="application/pdf"),
            attachment("notes.txt", b"abc\r\n", legacy_data=False),
        ],
    )
    result = convert_message(wrap(stream))
    assert result.converted == 1, result.warnings
    assert result.warnings == []
    parts = leaves(parse(result.data))
    types = [p.get_content_type() for p in parts]
    assert "application/ms-tnef" not in types
    assert types == ["text/plain", "text/plain", "application/pdf", "text/plain"]
    assert payload(parts[1]).replace(b"\r\n", b"\n") == b"Hello from Outlook\nsecond line\n"
    assert parts[2].get_filename() == "report.pdf"
    assert payload(parts[2]) == pdf
    assert parts[3].get_filename() == "notes.txt"
    assert payload(parts[3]) == b"abc\r\n"


def test_other_parts_are_copied_byte_for_byte() -> None:
    source = wrap(tnef(NOTE_PROPS, [attachment("a.bin", b"x")]))
    result = convert_message(source)
    tnef_start = source.index(b"Content-Type: application/ms-tnef")
    assert result.data[:tnef_start] == source[:tnef_start]
    tail = b"\r\n--XX--\r\nepilogue stays\r\n"
    assert source.endswith(tail) and result.data.endswith(tail)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_line_endings_follow_the_input(eol: bytes) -> None:
    stream = tnef(NOTE_PROPS, [attachment("a.bin", b"\x00" * 300)])
    data = convert_message(wrap(stream, eol=eol)).data
    if eol == b"\n":
        assert b"\r\n" not in data
    else:
        assert data.count(b"\n") == data.count(b"\r\n")


def test_unicode_and_long_names_use_rfc2231() -> None:
    name = "Bericht über Ärger \u2013 " + "ж" * 80 + ".txt"
    result = convert_message(wrap(tnef(NOTE_PROPS, [attachment(name, b"data")])))
    raw_lines = result.data.split(b"\r\n")
    assert all(len(line) <= 78 for line in raw_lines if not line.startswith(b"outer"))
    assert any(line.lstrip().startswith(b"filename*0*=utf-8''") for line in raw_lines)
    part = leaves(parse(result.data))[-1]
    assert part.get_filename() == name
    assert part.get_content_type() == "text/plain"  # from the extension


def test_html_and_plain_make_alternative_with_the_internet_codepage() -> None:
    html = "<p>Привет</p>".encode("koi8-r")
    props = mapi((PT_STRING8, 0x1000, "plain"), (PT_BINARY, 0x1013, html), (PT_I4, 0x3FDE, 20866))
    message = parse(convert_message(wrap(tnef(props, [attachment("a.bin", b"1")]))).data)
    alternative = [p for p in message.walk() if p.get_content_type() == "multipart/alternative"]
    assert len(alternative) == 1
    html_part = next(p for p in message.walk() if p.get_content_type() == "text/html")
    assert html_part.get_content_charset() == "koi8-r"
    assert payload(html_part) == html  # the original bytes, not re-encoded
    assert "Привет" in html_part.get_content()


def test_rtf_only_body_becomes_body_rtf() -> None:
    rtf = b"{\\rtf1\\ansi Hello {\\b bold} world\\par}"
    props = mapi((PT_BINARY, 0x1009, compress(rtf)))
    parts = leaves(parse(convert_message(wrap(tnef(props))).data))
    assert parts[-1].get_filename() == "body.rtf"
    assert parts[-1].get_content_type() == "application/rtf"
    assert payload(parts[-1]) == rtf


def test_rtf_is_not_added_when_there_is_another_body() -> None:
    props = mapi((PT_STRING8, 0x1000, "plain"), (PT_BINARY, 0x1009, compress(b"{\\rtf1 x}")))
    parts = leaves(parse(convert_message(wrap(tnef(props))).data))
    assert [p.get_filename() for p in parts] == [None, None]


def test_inline_image_referenced_by_cid_goes_into_related() -> None:
    html = b'<img src="cid:image001.png@01D0">'
    props = mapi((PT_BINARY, 0x1013, html), (PT_I4, 0x3FDE, 65001))
    image = attachment("image001.png", b"\x89PNG", mime="image/png", cid="image001.png@01D0")
    message = parse(convert_message(wrap(tnef(props, [image]))).data)
    related = next(p for p in message.walk() if p.get_content_type() == "multipart/related")
    kinds = [p.get_content_type() for p in related.iter_parts()]
    assert kinds == ["text/html", "image/png"]
    assert list(related.iter_parts())[1]["Content-ID"] == "<image001.png@01D0>"


def test_embedded_message_becomes_message_rfc822() -> None:
    inner = tnef(
        mapi(
            (PT_UNICODE, 0x0037, "Inner subject é"),
            (PT_STRING8, 0x1000, "inner body"),
            (PT_STRING8, 0x0C1A, "Carol"),
            (PT_STRING8, 0x0C1F, "carol@example.com"),
        ),
        [attachment("deep.txt", b"deep data")],
        message_class="IPM.Note",
    )
    props: list[tuple[int, int, object]] = [
        (PT_I4, 0x3705, 5),
        (PT_OBJECT, 0x3701, IID_IMESSAGE + inner),
    ]
    embedded = (
        attribute(2, 0x9002, 0x6, b"\x01\x00" + b"\0" * 12)
        + attribute(2, 0x8010, 0x1, b"Forwarded\0")
        + attribute(2, 0x9005, 0x6, mapi(*props))
    )
    result = convert_message(wrap(tnef(NOTE_PROPS, [embedded])))
    assert result.converted == 1, result.warnings
    message = parse(result.data)
    rfc822 = next(p for p in message.walk() if p.get_content_type() == "message/rfc822")
    inner_message = rfc822.get_payload(0)
    assert isinstance(inner_message, EmailMessage)
    assert inner_message["Subject"] == "Inner subject é"
    assert inner_message["From"] == "Carol <carol@example.com>"
    inner_leaves = [p for p in inner_message.walk() if not p.is_multipart()]
    assert inner_leaves[-1].get_filename() == "deep.txt"
    assert inner_leaves[-1].get_payload(decode=True) == b"deep data"


def test_top_level_tnef_message_keeps_its_headers() -> None:
    stream = tnef(NOTE_PROPS, [attachment("a.bin", b"123")])
    source = (
        b"Received: by mx\nFrom: a@example.com\nContent-Type: application/ms-tnef\n"
        b"Subject: top\nContent-Transfer-Encoding: base64\n\n" + base64.encodebytes(stream)
    )
    result = convert_message(source)
    assert result.converted == 1
    head = result.data.split(b"\n\n", 1)[0]
    assert head.startswith(
        b"Received: by mx\nFrom: a@example.com\nSubject: top\nMIME-Version: 1.0\n"
    )
    assert b"ms-tnef" not in result.data
    assert payload(leaves(parse(result.data))[-1]) == b"123"


def test_octet_stream_named_winmail_dat_is_converted() -> None:
    source = wrap(tnef(NOTE_PROPS), ctype=b"application/octet-stream")
    assert convert_message(source).converted == 1


def test_tnef_inside_forwarded_message_is_converted() -> None:
    inner = wrap(tnef(NOTE_PROPS, [attachment("a.bin", b"z")]))
    source = (
        b"From: x@example.com\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    )
    result = convert_message(source)
    assert result.converted == 1
    assert result.data.startswith(b"From: x@example.com\r\nMIME-Version: 1.0\r\n")


def test_two_tnef_parts_are_both_converted() -> None:
    one = wrap(tnef(NOTE_PROPS, [attachment("one.bin", b"1")]))
    two = wrap(tnef(NOTE_PROPS, [attachment("two.bin", b"2")]))
    source = (
        b"From: x@example.com\r\nContent-Type: multipart/mixed; boundary=OUT\r\n\r\n"
        b"--OUT\r\nContent-Type: message/rfc822\r\n\r\n"
        + one
        + b"\r\n--OUT\r\nContent-Type: message/rfc822\r\n\r\n"
        + two
        + b"\r\n--OUT--\r\n"
    )
    result = convert_message(source)
    assert result.converted == 2
    names = [p.get_filename() for p in leaves(parse(result.data))]
    assert "one.bin" in names and "two.bin" in names


def test_message_without_tnef_is_returned_as_is() -> None:
    source = b"From: a@example.com\nSubject: hi\n\nplain text\n"
    result = convert_message(source)
    assert result.data is source
    assert (result.converted, result.warnings) == (0, [])


def test_contains_tnef_and_looks_like_message() -> None:
    assert contains_tnef(wrap(tnef(NOTE_PROPS)))
    assert contains_tnef(b"Content-Type: application/octet-stream; name=WINMAIL.DAT")
    assert not contains_tnef(b"From: a\n\nhello")
    assert looks_like_message(b"From: a\n\nx") and looks_like_message(b"From a@b Mon\n")
    assert not looks_like_message(b"") and not looks_like_message(b"\x89PNG garbage")


def test_parse_keeps_exact_attachment_bytes() -> None:
    data = bytes(range(256)) + b"\x00\x00\x00"
    parsed = parse_tnef(tnef(NOTE_PROPS, [attachment("x.bin", data, legacy_data=False)]))
    assert parsed.attachments[0].content == data
    assert parsed.attachments[0].file_name == "x.bin"


# --- kept unchanged, with a warning -----------------------------------------------------------


def assert_kept(source: bytes, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    with caplog.at_level(logging.WARNING, logger="smimecli"):
        result = convert_message(source)
    assert result.converted == 0
    assert result.data == source
    assert len(result.warnings) == 1 and reason in result.warnings[0], result.warnings
    assert "kept unchanged" in result.warnings[0]
    # Returned, not logged: the caller shows it.
    assert not caplog.records


def test_meeting_request_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    stream = tnef(NOTE_PROPS, message_class="IPM.Microsoft Schedule.MtgReq")
    assert_kept(wrap(stream), caplog, "not a plain note")


def test_mapi_message_class_overrides_the_legacy_one(caplog: pytest.LogCaptureFixture) -> None:
    props = mapi(
        (PT_STRING8, 0x1000, "When: tomorrow"), (PT_STRING8, 0x001A, "IPM.Schedule.Meeting.Request")
    )
    assert_kept(wrap(tnef(props)), caplog, "IPM.Schedule.Meeting.Request")


def test_nothing_to_show_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    assert_kept(wrap(tnef(mapi((PT_I4, 0x3FDE, 1252)))), caplog, "neither a body nor an attachment")


def test_bad_checksum_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    stream = tnef(NOTE_PROPS) + attribute(2, 0x800F, 0x6, b"payload", bad=True)
    assert_kept(wrap(stream), caplog, "bad checksum")


def test_truncated_stream_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    stream = tnef(NOTE_PROPS, [attachment("a.bin", b"0123456789" * 10)])
    assert_kept(wrap(stream[:-20]), caplog, "runs past the end")


def test_garbage_at_the_end_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    stream = tnef(NOTE_PROPS, [attachment("a.bin", b"abc")]) + b"garbage!"
    assert_kept(wrap(stream), caplog, "stray bytes")


def test_not_tnef_at_all_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    assert_kept(wrap(b"this is not TNEF"), caplog, "no TNEF signature")


def test_bad_rtf_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    rtf = bytearray(compress(b"{\\rtf1 hello}"))
    rtf[-1] ^= 0xFF  # CRC mismatch
    assert_kept(wrap(tnef(mapi((PT_BINARY, 0x1009, bytes(rtf))))), caplog, "CRC")


def test_hostile_property_count_is_kept_quickly(caplog: pytest.LogCaptureFixture) -> None:
    # tnefparse would loop four billion times over this count.
    props = struct.pack("<I", 0xFFFFFFFF) + b"\0" * 64
    start = time.monotonic()
    assert_kept(wrap(tnef(props)), caplog, "property count")
    assert time.monotonic() - start < 1


def test_many_tiny_attributes_stay_linear() -> None:
    stream = tnef(NOTE_PROPS) + attribute(1, 0x8020, 0x3, b"\0" * 14) * 50_000
    start = time.monotonic()
    result = convert_message(wrap(stream))
    assert result.converted == 1
    assert time.monotonic() - start < 5


# --- hostile input ----------------------------------------------------------------------------

SIGNATURE = struct.pack("<I", TNEF_SIGNATURE)
VALID = tnef(NOTE_PROPS, [attachment("a.bin", b"attachment bytes", mime="application/x-test")])


def check_no_loss(stream: bytes) -> None:
    source = wrap(stream)
    result = convert_message(source)
    if result.converted == 0:
        assert result.data == source
        assert len(result.warnings) == 1
    else:
        assert b"application/ms-tnef" not in result.data
        parse(result.data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.booleans())
def test_random_bytes_never_crash_or_lose_content(noise: bytes, with_signature: bool) -> None:
    check_no_loss((SIGNATURE + b"\0\0" + noise) if with_signature else noise)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_mutated_tnef_never_crashes(edits: list[tuple[int, int]]) -> None:
    stream = bytearray(VALID)
    for offset, value in edits:
        stream[offset] = value
    check_no_loss(bytes(stream))


def test_encrypt_converts_an_octet_stream_winmail_dat(pki: Pki) -> None:
    import io

    from smimecli.cms.envelope import Recipient
    from smimecli.cms.unwrap import KeyIdentity
    from smimecli.decrypt.message import decrypt_message
    from smimecli.encrypt.message import encrypt_message

    source = wrap(
        tnef(NOTE_PROPS, [attachment("report.pdf", b"%PDF-1.4 data")]),
        ctype=b"application/octet-stream",
    )
    assert b"ms-tnef" not in source
    encrypted = io.BytesIO()
    outcome = encrypt_message(source, encrypted, [Recipient(pki.alice.cert)])
    assert outcome.tnef_converted == 1
    plain = io.BytesIO()
    decrypt_message(
        io.BytesIO(encrypted.getvalue()), plain, KeyIdentity(pki.alice.key, pki.alice.cert)
    )
    names = [part.get_filename() for part in leaves(parse(plain.getvalue()))]
    assert "report.pdf" in names and "winmail.dat" not in names


# --- hostile TNEF: bounded memory and output ---------------------------------------------------


def test_too_many_attachments_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    # 680,000 empty attachments in 10 MB took 1 GB of memory, 19 s and wrote 197 MB.
    import tracemalloc

    from smimecli.tnef.reader import MAX_ATTACHMENTS

    empty = attribute(2, 0x9002, 0x6, b"\x01\x00\xff\xff\xff\xff" + b"\0" * 8)
    source = wrap(tnef(NOTE_PROPS, [empty] * 100_000))
    started = time.monotonic()
    tracemalloc.start()
    try:
        assert_kept(source, caplog, f"more than {MAX_ATTACHMENTS:,} attachments")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 20 * len(source), peak


def test_attachments_of_embedded_messages_count_too(caplog: pytest.LogCaptureFixture) -> None:
    empty = attribute(2, 0x9002, 0x6, b"\x01\x00\xff\xff\xff\xff" + b"\0" * 8)
    inner = tnef(NOTE_PROPS, [empty] * 6_000)
    props = mapi((PT_I4, 0x3705, 5), (PT_OBJECT, 0x3701, IID_IMESSAGE + inner))
    outer = attribute(2, 0x9002, 0x6, b"\x01\x00\xff\xff\xff\xff" + b"\0" * 8) + attribute(
        2, 0x9005, 0x6, props
    )
    # A big attachment makes room for the output, so the count is what stops it.
    big = attachment("big.bin", os.urandom(3 << 20))
    source = wrap(tnef(NOTE_PROPS, [big, outer, outer]))
    assert_kept(source, caplog, "more than 10,000 attachments")


def test_output_growth_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    # Names that RFC 2231 encoding blows up ninefold, twice per attachment.
    name = "\u00e9" * 200
    files = [attachment(name, b"", short="A.DAT") for _ in range(300)]
    assert_kept(wrap(tnef(NOTE_PROPS, files)), caplog, "more than 4 times the size")


def test_body_with_a_boundary_line_cannot_split_the_enclosing_part() -> None:
    # A 7bit body holding "--XX" (the message's own boundary) closed the part early and
    # injected a sibling part of the sender's choosing.
    evil = "Hi\r\n--XX\r\nContent-Type: text/html\r\n\r\n<b>injected</b>\r\n--XX--\r\n"
    source = wrap(tnef(mapi((PT_STRING8, 0x1000, evil))))
    result = convert_message(source)
    assert result.converted == 1
    message = parse(result.data)
    parts = [part.get_content_type() for part in message.walk()]
    assert parts.count("text/html") == 0, parts
    bodies = [payload(part) for part in leaves(message)]
    assert any(b"<b>injected</b>" in body for body in bodies)
    assert b"\n--XX\r\nContent-Type: text/html" not in result.data


def test_embedded_transport_headers_cannot_hold_a_boundary_line() -> None:
    inner = tnef(
        mapi(
            (PT_STRING8, 0x1000, "inner"),
            (
                PT_STRING8,
                0x007D,
                "Subject: x\r\n--XX--: lenient parsers end the part here\r\nFrom: y@x.org\r\n",
            ),
        )
    )
    props = mapi((PT_I4, 0x3705, 5), (PT_OBJECT, 0x3701, IID_IMESSAGE + inner))
    outer = attribute(2, 0x9002, 0x6, b"\x01\x00\xff\xff\xff\xff" + b"\0" * 8) + attribute(
        2, 0x9005, 0x6, props
    )
    result = convert_message(wrap(tnef(NOTE_PROPS, [outer])))
    assert result.converted == 1
    assert b"lenient parsers" not in result.data
    assert result.data.count(b"\n--XX--") == 1


# --- encrypt: only a part's own header makes the message load whole -----------------------


def _search(data: bytes, chunk: int) -> bool:
    from smimecli.encrypt.tnef_search import _TnefSearch

    searcher = _TnefSearch()
    found = False
    for i in range(0, len(data), chunk):
        found = searcher.feed(data[i : i + chunk]) or found
    return found


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_search_finds_part_headers_across_chunks(chunk: int) -> None:
    body = wrap(tnef(NOTE_PROPS)).split(b"\r\n\r\n", 1)[1]
    assert _search(body, chunk)
    octet = wrap(tnef(NOTE_PROPS), ctype=b"application/octet-stream").split(b"\r\n\r\n", 1)[1]
    assert _search(octet, chunk)
    folded = b'--XX\nContent-Type: application/octet-stream;\n\tname="WINMAIL.DAT"\n\nx\n--XX--\n'
    assert _search(folded, chunk)


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_search_ignores_mere_mentions(chunk: int) -> None:
    body = (
        b"--XX\nContent-Type: text/plain\n\nPlease resend winmail.dat\n"
        b"Content-Type: application/ms-tnef, said the log\n"
        b" winmail.dat\n--XX\nSubject: winmail.dat\nContent-Type: text/plain\n\nms-tnef\n--XX--\n"
    )
    assert not _search(body, chunk)


def test_a_body_that_mentions_winmail_dat_is_streamed(pki: Pki, tmp_path: Path) -> None:
    # The first pass saw "winmail.dat" anywhere and then read the whole message into
    # memory: a 100 MB body took 229 MiB instead of 47 MiB.
    import subprocess
    import sys

    line = b"Forwarding the winmail.dat and ms-tnef logs, as asked. " * 2 + b"\r\n"
    size = 48 << 20
    head = (
        b"From: a@example.com\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n'
        b"Content-Type: text/plain\r\n\r\n"
    )
    source = tmp_path / "in.eml"
    with source.open("wb") as handle:
        handle.write(head)
        block = line * (1 << 14)
        for _ in range(size // len(block)):
            handle.write(block)
        handle.write(b"--XX--\r\n")
    script = (
        "import sys\n"
        "from smimecli.cms.envelope import Recipient\n"
        "from smimecli.encrypt.message import encrypt_message\n"
        "from smimecli.certs.keys import load_certificate\n"
        "cert = load_certificate(sys.argv[1])\n"
        "with open(sys.argv[2], 'rb') as src, open(sys.argv[3], 'wb') as dst:\n"
        "    outcome = encrypt_message(src, dst, [Recipient(cert)])\n"
        "assert outcome.tnef_converted == 0\n"
        # VmHWM, not ru_maxrss: the latter keeps the parent's size across fork and exec.
        "status = open('/proc/self/status').read()\n"
        "print(status.split('VmHWM:')[1].split()[0])\n"
    )
    out = tmp_path / "out.eml"
    run = subprocess.run(
        [sys.executable, "-c", script, str(pki.alice.cert_pem), str(source), str(out)],
        capture_output=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    peak_kib = int(run.stdout)
    assert peak_kib < (size >> 10) // 2 + 60_000, peak_kib  # far less than the message
