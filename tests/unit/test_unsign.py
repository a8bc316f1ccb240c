"""Envelopes signed on the outside: multipart/signed and opaque signed-data around them."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from smimecli.decrypt import unsign
from smimecli.decrypt.inspect import inspect_message
from smimecli.decrypt.message import decrypt_message
from smimecli.decrypt.unsign import MAX_SIGNATURE_LAYERS, SignedOnlyError
from smimecli.errors import AuthError, DataError
from tests.conftest import Pki
from tests.pki import Identity

ENTITY = b"Content-Type: text/plain\r\n\r\nsecret text\r\n"
OUTER = b"From: a@example.com\r\nTo: bob@example.com\r\nSubject: signed outside\r\n"


def _envelope(cert: x509.Certificate) -> bytes:
    """An S/MIME enveloped entity (headers and base64 body), CRLF."""
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(ENTITY).add_recipient(cert)
    return builder.encrypt(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.Binary])


def _sign(entity: bytes, who: Identity, *, detached: bool) -> bytes:
    """Sign a MIME entity: multipart/signed (detached) or opaque signed-data, CRLF."""
    options = [pkcs7.PKCS7Options.Binary]
    if detached:
        options.append(pkcs7.PKCS7Options.DetachedSignature)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(entity)
    builder = builder.add_signer(who.cert, who.key, hashes.SHA256())
    signed = builder.sign(serialization.Encoding.SMIME, options)
    return signed.replace(b"MIME-Version: 1.0\r\n", b"", 1)


def _message(entity: bytes) -> bytes:
    return OUTER + b"MIME-Version: 1.0\r\n" + entity


@pytest.mark.parametrize("detached", [True, False], ids=["multipart", "opaque"])
def test_signed_outside_decrypts_and_notices(
    pki: Pki, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], detached: bool
) -> None:
    msg = _message(_sign(_envelope(pki.bob.cert), pki.alice, detached=detached))
    out = io.BytesIO()
    with caplog.at_level(logging.DEBUG):
        result = decrypt_message(io.BytesIO(msg), out, pki.bob.key, pki.bob.cert)
    assert out.getvalue() == OUTER + ENTITY
    # A library call says nothing itself: the warning is a value in its result.
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")
    (notice,) = result.notices
    assert notice.code == "unverified-signature"
    assert "was not verified: decrypt_message removes it unchecked" in notice.text
    assert pki.alice.email in notice.text
    report = inspect_message(io.BytesIO(msg))
    assert (report.content_type, report.signature_layers) == ("enveloped-data", 1)
    assert len(report.recipients) == 1
    assert report.as_json()["signature_layers"] == 1
    assert ("Subject", "signed outside") in report.headers


def test_lf_message_keeps_lf(pki: Pki) -> None:
    msg = _message(_sign(_envelope(pki.bob.cert), pki.alice, detached=True))
    out = io.BytesIO()
    decrypt_message(io.BytesIO(msg.replace(b"\r\n", b"\n")), out, pki.bob.key)
    assert out.getvalue() == (OUTER + ENTITY).replace(b"\r\n", b"\n")


def test_nested_layers_are_unwrapped(pki: Pki) -> None:
    entity = _envelope(pki.bob.cert)
    for number in range(MAX_SIGNATURE_LAYERS):
        entity = _sign(entity, pki.alice if number % 2 else pki.carol_ec, detached=number % 3 == 0)
    msg = _message(entity)
    out = io.BytesIO()
    result = decrypt_message(io.BytesIO(msg), out, pki.bob.key, pki.bob.cert)
    assert out.getvalue() == OUTER + ENTITY
    assert len(result.notices) == MAX_SIGNATURE_LAYERS
    # Outermost first: the last signature made (carol, number 7 is odd: alice) comes first.
    assert pki.alice.email in result.notices[0].text
    assert pki.carol_ec.email in result.notices[-1].text
    assert inspect_message(io.BytesIO(msg)).signature_layers == MAX_SIGNATURE_LAYERS


def test_nesting_deeper_than_the_limit_is_refused(pki: Pki) -> None:
    entity = _envelope(pki.bob.cert)
    for _ in range(MAX_SIGNATURE_LAYERS + 1):
        entity = _sign(entity, pki.alice, detached=False)
    with pytest.raises(DataError, match=f"more than {MAX_SIGNATURE_LAYERS} signature layers"):
        decrypt_message(io.BytesIO(_message(entity)), io.BytesIO(), pki.bob.key)


@pytest.mark.parametrize("detached", [True, False], ids=["multipart", "opaque"])
def test_signed_only_is_an_error(pki: Pki, detached: bool) -> None:
    msg = _message(_sign(ENTITY, pki.alice, detached=detached))
    out = io.BytesIO()
    with pytest.raises(SignedOnlyError, match="is signed but not encrypted") as caught:
        decrypt_message(io.BytesIO(msg), out, pki.bob.key)
    assert caught.value.status == 65
    assert out.getvalue() == b""
    report = inspect_message(io.BytesIO(msg))
    assert (report.content_type, report.signature_layers, report.recipients) == (
        "signed-data",
        1,
        [],
    )


def test_wrong_key_inside_a_signature_is_still_auth_error(pki: Pki) -> None:
    msg = _message(_sign(_envelope(pki.bob.cert), pki.alice, detached=True))
    with pytest.raises(AuthError):
        decrypt_message(io.BytesIO(msg), io.BytesIO(), pki.alice.key, pki.alice.cert)


BROKEN = {
    "no boundary": b"Content-Type: multipart/signed\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n",
    "boundary never seen": b'Content-Type: multipart/signed; boundary="x"\r\n\r\nno parts\r\n',
    "no closing boundary": b"Content-Type: multipart/signed; boundary=x\r\n\r\n--x\r\n"
    b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nMIAG\r\n",
    "no first part": b"Content-Type: multipart/signed; boundary=x\r\n\r\n--x--\r\n",
    "garbage base64": b"Content-Type: multipart/signed; boundary=x\r\n\r\n--x\r\n"
    b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n!!not base64!!\r\n--x\r\n\r\nsig\r\n--x--\r\n",
    "garbage CMS": b"Content-Type: multipart/signed; boundary=x\r\n\r\n--x\r\n"
    b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nAAAAAAAA\r\n--x\r\n\r\nsig\r\n--x--\r\n",
}


@pytest.mark.parametrize("body", BROKEN.values(), ids=BROKEN.keys())
def test_broken_multipart_signed_is_data_error(pki: Pki, body: bytes) -> None:
    out = io.BytesIO()
    with pytest.raises(DataError):
        decrypt_message(io.BytesIO(OUTER + body), out, pki.bob.key)
    assert out.getvalue() == b""


def test_detached_signed_data_without_content_is_data_error(pki: Pki) -> None:
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(b"x")
        .add_signer(pki.alice.cert, pki.alice.key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature])
    )
    with pytest.raises(DataError, match="carries no content"):
        decrypt_message(io.BytesIO(der), io.BytesIO(), pki.bob.key)


@pytest.mark.parametrize("block", [1, 3, 7, 64])
def test_first_part_across_small_blocks(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    # Boundaries split across reads, a longer boundary that starts with ours, CRLF before
    # the delimiter belonging to the delimiter (RFC 2046 5.1.1).
    monkeypatch.setattr(unsign, "_BLOCK", block)
    body = (
        b"preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nline\r\n--bb not it\r\n"
        b"\r\n--b  \r\nsignature\r\n--b--\r\n"
    )
    stream, _layer = unsign.multipart_signed_content("b", io.BytesIO(body), "test")
    assert stream.read() == b"Content-Type: text/plain\r\n\r\nline\r\n--bb not it\r\n"
    stream = unsign.multipart_signed_content("b", io.BytesIO(body), "test")[0]
    assert stream.readline() == b"Content-Type: text/plain\r\n"
    assert stream.read(3) == b"\r\nl"


def test_signer_is_someone_when_not_named(pki: Pki) -> None:
    body = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\n\r\nnot a signature\r\n--b--\r\n"
    stream, layer = unsign.multipart_signed_content("b", io.BytesIO(body), "test")
    assert stream.read(1) == b"C"
    assert layer.signer() == "someone"


@pytest.mark.parametrize("where", ["preamble", "signed part"])
def test_unterminated_boundary_line_is_streamed(tmp_path: Path, where: str) -> None:
    # "--b" followed by a line that never ends kept the whole rest of the body in memory
    # and scanned it again for every block read: 128 MB took 293 MiB, 256 MB 23 s.
    import time
    import tracemalloc

    size = 48 << 20
    path = tmp_path / "body"
    with path.open("wb") as out:
        if where == "signed part":
            out.write(b"--b\r\nContent-Type: text/plain\r\n\r\nline")
        out.write(b"\r\n--b")
        block = b"x" * (1 << 20)
        for _ in range(size >> 20):
            out.write(block)
    started = time.monotonic()
    tracemalloc.start()
    try:
        with path.open("rb") as body:
            if where == "preamble":
                with pytest.raises(DataError, match="boundary never appears"):
                    unsign.multipart_signed_content("b", body, "test")[0].read(1)
            else:
                stream = unsign.multipart_signed_content("b", body, "test")[0]
                total = 0
                with pytest.raises(DataError, match="before its closing boundary"):
                    while chunk := stream.read(1 << 20):
                        total += len(chunk)
                assert total >= size
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak  # a few blocks, not the 48 MB body
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("block", [1, 5, 64])
def test_delimiter_padding_and_close_across_blocks(
    monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(unsign, "_BLOCK", block)
    body = b"--b\r\nA\r\n--b-- \t \r\nsig\r\n"
    with pytest.raises(DataError, match="no signed part"):
        unsign.multipart_signed_content("b", io.BytesIO(b"--b--  \r\n" + body), "t")[0].read()
    body = b"--b\r\nA\r\n--b-x\r\n--b" + b" " * 2000 + b"\r\nB\r\n--b  \r\nsig\r\n"
    stream = unsign.multipart_signed_content("b", io.BytesIO(body), "t")[0]
    assert stream.read() == b"A\r\n--b-x\r\n--b" + b" " * 2000 + b"\r\nB"


def test_the_python_api_decrypt_example_runs(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import re
    from pathlib import Path

    from tests.pki import PASSWORD

    text = (Path(__file__).resolve().parents[2] / "docs" / "python-api.md").read_text("utf-8")
    section = text.split("## Decrypting", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    example = found.group(1).replace('b"secret"', repr(PASSWORD))
    (tmp_path / "bob.pfx").write_bytes(pki.bob.pfx.read_bytes())
    msg = _message(_sign(_envelope(pki.bob.cert), pki.alice, detached=True))
    (tmp_path / "out.eml").write_bytes(msg)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/python-api.md", "exec"), {})
    assert (tmp_path / "plain.eml").read_bytes() == OUTER + ENTITY
    printed = capsys.readouterr().out
    assert printed.startswith("unverified-signature the outer signature (signed by ")


def test_decrypt_and_inspect_judge_the_outer_signature_quietly(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from smimecli.cms import spool
    from smimecli.decrypt.signatures import Recorder, decrypt_and_judge, inspect_and_judge

    path = tmp_path / "signed-outside.eml"
    from smimecli.sign.message import sign_message

    with path.open("wb") as dst:
        envelope = OUTER + b"MIME-Version: 1.0\r\n" + _envelope(pki.bob.cert)
        sign_message(envelope, dst, cert=pki.alice.cert, key=pki.alice.key)
    store_dir = tmp_path / "no-store"  # no store: the signer is not trusted
    with caplog.at_level(logging.DEBUG), spool() as copy, path.open("rb") as src:
        out = io.BytesIO()
        judged = decrypt_and_judge(
            src, Recorder(out, copy), pki.bob.key, input=path, store_dir=store_dir
        )
    assert out.getvalue() == OUTER + ENTITY
    assert [v.place for v in judged.verdicts] == ["outer"]
    assert [n.code for n in judged.notices] == ["signature-untrusted"]
    assert "outside the envelope" in judged.notices[0].text
    assert judged.result.notices == ()  # verified, so no unverified-signature notice
    with path.open("rb") as src:
        seen = inspect_and_judge(src, path, store_dir=store_dir)
    assert seen.report.signature_layers == 1
    assert seen.notices == judged.notices
    assert caplog.records == [] and capsys.readouterr() == ("", "")
    assert not store_dir.exists()
