"""Signing in flat memory: the streamed output is byte for byte what the whole-message
computation gives, memory does not grow with the number of MIME parts, the fast
transport-safety scan agrees with the regular expression, and the spool is a 0600 file
without a name that nothing can leave behind."""

from __future__ import annotations

import binascii
import datetime as dt
import io
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smimecli.sign.message as sign_module
from smimecli.cms import spool as cms_spool
from smimecli.cms.signed import SignedDataBuilder
from smimecli.errors import DataError
from smimecli.mime import read_header_block
from smimecli.mime.transport import _UNSAFE, SafetyScan, make_transport_safe, write_transport_safe
from smimecli.sign.message import SignOptions, sign_message, signed_entity
from smimecli.verify.message import verify_message
from tests.conftest import Pki

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
BOUNDARY = "0123456789abcdef01234567"

SMALL = b"From: a@example.com\nTo: b@example.com\nSubject: s\n\nHello\nFrom here on\n"
MULTIPART = (
    b"From: a@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="q"\r\n\r\npreamble\r\n'
    b"--q\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
    b"\r\nh\xc3\xa9llo \r\n--q\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n"
    b"--q\r\nContent-Type: text/plain\r\n\r\nplain\r\n--q--\r\nepilogue\r\n"
)


def _parts_message(count: int, part: bytes) -> bytes:
    head = b"From: a@example.com\nContent-Type: multipart/mixed; boundary=b1\n\n"
    return head + part * count + b"--b1--\n"


def _reference(message: bytes, pki: Pki, detached: bool) -> bytes:
    """The signed message as the whole-message computation makes it: the entity in
    memory (signed_entity), the DER from SignedDataBuilder.sign() with the content held."""
    headers, body = read_header_block(io.BytesIO(message))
    entity = signed_entity(headers, body)
    builder = (
        SignedDataBuilder()
        .set_signer(pki.alice.cert, pki.alice.key)
        .set_content(entity, detached=detached)
        .set_signing_time(WHEN)
    )
    der = builder.sign()
    nl = headers.newline
    kept = b"".join(item.with_newline(nl) for item in headers.outer_fields())
    b64 = binascii.b2a_base64(der, newline=False)
    lines = b"".join(b64[i : i + 76] + nl for i in range(0, len(b64), 76))
    if not detached:
        return (
            kept
            + b"MIME-Version: 1.0"
            + nl
            + b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m"
            + nl
            + b"Content-Transfer-Encoding: base64"
            + nl
            + b"Content-Disposition: attachment; filename=smime.p7m"
            + nl
            + nl
            + lines
        )
    mark = b"----=_smimecli_" + BOUNDARY.encode()
    return (
        kept
        + b"MIME-Version: 1.0"
        + nl
        + b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        + b'micalg=sha-256; boundary="'
        + mark
        + b'"'
        + nl
        + nl
        + b"This is an S/MIME signed message."
        + nl
        + nl
        + b"--"
        + mark
        + nl
        + entity.replace(b"\r\n", nl)
        + nl
        + b"--"
        + mark
        + nl
        + b"Content-Type: application/pkcs7-signature; name=smime.p7s"
        + nl
        + b"Content-Transfer-Encoding: base64"
        + nl
        + b"Content-Disposition: attachment; filename=smime.p7s"
        + nl
        + nl
        + lines
        + b"--"
        + mark
        + b"--"
        + nl
    )


def _sign(message: bytes, pki: Pki, detached: bool) -> bytes:
    out = io.BytesIO()
    options = SignOptions(detached=detached, signing_time=WHEN)
    sign_message(io.BytesIO(message), out, cert=pki.alice.cert, key=pki.alice.key, options=options)
    return out.getvalue()


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize(
    "message",
    [
        SMALL,
        MULTIPART,
        # Bigger than the in-memory spool: the entity goes to the disk file.
        _parts_message(70_000, b"--b1\nContent-Type: text/plain\n\npart\n"),
        _parts_message(50_000, b"--b1\nContent-Type: text/plain\n\np\xc3\xa9rt\n"),
    ],
    ids=["small", "multipart-8bit", "3MB-7bit-parts", "2MB-8bit-parts"],
)
def test_streamed_output_is_the_whole_message_computation(
    pki: Pki, message: bytes, detached: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("smimecli.sign.message.secrets.token_hex", lambda _n: BOUNDARY)
    signed = _sign(message, pki, detached)
    assert signed == _reference(message, pki, detached)
    result = verify_message(signed)
    assert result.valid, result.check.problems


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)


def test_many_parts_keep_memory_bounded(pki: Pki) -> None:
    """8 MB of tiny 7-bit parts are streamed (peak a few MiB); 2 MB of 8-bit ones are
    re-encoded part by part with the entity held once (the whole-message code held
    several copies: 18, 59 and about 18 MiB for these three)."""
    seven = _parts_message(220_000, b"--b1\nContent-Type: text/plain\n\npart\n")
    eight = _parts_message(
        25_000,
        b"--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: "
        b"8bit\n\np\xc3\xa9rt\n",
    )
    cases = ((seven, True, 6 << 20), (seven, False, 6 << 20), (eight, True, 10 << 20))
    for message, detached, bound in cases:
        assert len(message) > 2_000_000
        src = io.BytesIO(message)
        tracemalloc.start()
        try:
            sign_message(
                src,
                _Null(),
                cert=pki.alice.cert,
                key=pki.alice.key,
                options=SignOptions(detached=detached),
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < bound, (detached, peak)


_PIECES = st.sampled_from(
    [b"a", b" ", b"\t", b"\r", b"\n", b"\r\n", b"From ", b"\x00", b"\xe9", b"x" * 400]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=14), st.lists(st.integers(0, 9), max_size=5))
def test_safety_scan_agrees_with_the_regular_expression(
    pieces: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(pieces)
    scan = SafetyScan()
    pos = 0
    for size in cuts:
        scan.feed(data[pos : pos + size])
        pos += size
    scan.feed(data[pos:])
    assert scan.finish() == (_UNSAFE.search(data) is not None)


def test_part_by_part_rewrite_is_the_whole_rewrite() -> None:
    entity = MULTIPART.split(b"\r\n\r\n", 1)[1]
    entity = b'Content-Type: multipart/mixed; boundary="q"\r\n\r\n' + entity.split(b"\r\n", 0)[0]
    written = bytearray()
    write_transport_safe(memoryview(entity), written.extend)
    assert bytes(written) == make_transport_safe(entity)
    assert b"Content-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9llo=20" in written
    assert b"Content-Transfer-Encoding: base64\r\n\r\nAAE=\r\n" in written


class _Spools:
    """Records the spools the signing code makes."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.made: list[object] = []

    def __call__(self, *args: object) -> object:
        spool = self.real(*args)  # type: ignore[operator]
        self.made.append(spool)
        return spool


def test_spool_is_a_0600_file_without_a_name(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 3 MB entity goes past the in-memory spool to a file in $TMPDIR: mode 0600, no
    name in the folder (so nothing is left on success, error or any signal), closed."""
    import tempfile

    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    spools = _Spools(cms_spool)
    monkeypatch.setattr(sign_module, "spool", spools)
    seen: list[tuple[int, int]] = []

    class Probe(io.BytesIO):
        def write(self, data: object) -> int:
            if not seen:
                info = os.fstat(spools.made[0].fileno())  # type: ignore[attr-defined]
                seen.append((info.st_mode & 0o777, info.st_nlink))
                assert os.listdir(spool_dir) == []
            return super().write(data)  # type: ignore[arg-type]

    message = _parts_message(70_000, b"--b1\nContent-Type: text/plain\n\npart\n")
    sign_message(message, Probe(), cert=pki.alice.cert, key=pki.alice.key)
    assert seen == [(0o600, 0)]
    assert all(s.closed for s in spools.made)  # type: ignore[attr-defined]
    assert os.listdir(spool_dir) == []

    class Broken(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        sign_message(message, Broken(), cert=pki.alice.cert, key=pki.alice.key)
    assert all(s.closed for s in spools.made)  # type: ignore[attr-defined]
    with pytest.raises(DataError):
        sign_message(b"\n\nno header", io.BytesIO(), cert=pki.alice.cert, key=pki.alice.key)
    assert os.listdir(spool_dir) == []


def _peak(call: object) -> int:
    tracemalloc.start()
    try:
        call()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_verify_does_not_copy_the_signed_part(pki: Pki) -> None:
    """An 8 MB multipart/signed message: the signed part is canonicalised and hashed a
    chunk at a time (the whole-message code took 190 MB, this under 1)."""
    message = _parts_message(220_000, b"--b1\nContent-Type: text/plain\n\npart\n")
    signed = _sign(message, pki, True)
    result: list[object] = []
    peak = _peak(lambda: result.append(verify_message(signed)))
    assert result[0].valid  # type: ignore[attr-defined]
    assert peak < 4 << 20, peak
    assert result[0].entity == signed_entity(*read_header_block(io.BytesIO(message)))  # type: ignore[attr-defined]


def test_sign_then_encrypt_spools(pki: Pki) -> None:
    """An 8 MB message signed then encrypted: the body and the signed message are spooled,
    not held (the whole-message code took 17 MB besides the output, this 8)."""
    from smimecli.cms.recipients import Recipient
    from smimecli.sign.signers import Signer, sign_then_encrypt

    message = _parts_message(220_000, b"--b1\nContent-Type: text/plain\n\npart\n")
    signer = Signer(pki.alice.cert, pki.alice.key, (), pki.alice.thumbprint)
    out = io.BytesIO()
    peak = _peak(
        lambda: sign_then_encrypt(
            io.BytesIO(message), out, [Recipient(pki.bob.cert)], signer=signer
        )
    )
    assert peak - len(out.getvalue()) < 12 << 20, peak
    assert out.getvalue().count(b"\n") > 100_000  # a whole base64 body was written


def test_opaque_verify_takes_the_content_out(pki: Pki) -> None:
    """An 8 MB opaque signed-data: the DER content is checked like a detached one, so
    memory is the decoded DER and little more (asn1crypto's parse copied it at every
    level: 44 MB here). A change to the content is still found."""
    message = _parts_message(220_000, b"--b1\nContent-Type: text/plain\n\npart\n")
    signed = _sign(message, pki, False)
    result: list[object] = []
    peak = _peak(lambda: result.append(verify_message(signed)))
    assert result[0].valid  # type: ignore[attr-defined]
    assert result[0].form == "signed-data"  # type: ignore[attr-defined]
    assert peak < 12 << 20, peak
    entity = signed_entity(*read_header_block(io.BytesIO(message)))
    assert result[0].entity == entity  # type: ignore[attr-defined]
    head, body = signed.split(b"\n\n", 1)
    der = bytearray(binascii.a2b_base64(body))
    der[der.find(b"part\r\n--b1") + 1] ^= 1
    changed = head + b"\n\n" + binascii.b2a_base64(bytes(der))
    assert verify_message(changed).check.problems == [
        "the message digest does not match: the content was changed"
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_unsigned_content_is_written_a_chunk_at_a_time(pki: Pki, newline: bytes) -> None:
    """``verify -o``: the content is written in the input's line endings without a whole
    copy (unsigned_message made three: 24 MB for this 8 MB message)."""
    from smimecli.verify.message import write_unsigned

    message = _parts_message(220_000, b"--b1\nContent-Type: text/plain\n\npart\n")
    signed = _sign(message.replace(b"\n", newline), pki, True)
    result = verify_message(signed)
    assert result.valid
    written = io.BytesIO()
    peak = _peak(lambda: write_unsigned(result, _Null()))
    write_unsigned(result, written)
    assert peak < 2 << 20, peak
    headers = b"From: a@example.com" + newline + b"MIME-Version: 1.0" + newline
    assert written.getvalue() == headers + result.entity.replace(b"\r\n", newline)


def test_a_text_part_of_a_million_lines_is_reencoded_in_blocks() -> None:
    # Quoted-printable with "From " protected was made by whole-part copies and regular
    # expressions: 237 MB of Python objects for 7 MB of "From " lines.
    entity = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    entity += b"From x \xe9\r\n" * 1_000_000
    out = io.BytesIO()
    tracemalloc.start()
    try:
        write_transport_safe(entity, out.write)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    written = out.getvalue()
    assert peak < len(written) + (24 << 20), f"peak {peak >> 20} MiB"
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in written
    body = written.split(b"\r\n\r\n", 1)[1]
    assert not any(line.startswith(b"From ") for line in body.split(b"\r\n"))
    assert binascii.a2b_qp(body.replace(b"\r\n", b"\n")) == b"From x \xe9\n" * 1_000_000


def test_a_bare_cr_in_text_goes_as_base64() -> None:
    # binascii's quoted-printable leaves a bare CR as it is; a relay may make it a line end
    # and break the signature, so such a text part is sent as base64.
    entity = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\na\rb \xe9\r\n"
    safe = make_transport_safe(entity)
    assert b"Content-Transfer-Encoding: base64\r\n" in safe
    assert safe.count(b"\r") == safe.count(b"\r\n")
    body = safe.split(b"\r\n\r\n", 1)[1]
    assert binascii.a2b_base64(body) == b"a\rb \xe9\r\n"
