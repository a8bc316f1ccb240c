"""One-pass encryption of big files (smimecli.encrypt.one_pass._encrypt_one_pass, SPEC section 5).

A big regular file written to an output the process can seek back into is encrypted in
one read: the DER lengths are written for the smallest canonical length the body can have,
and the base64 lines holding the DER header are rewritten at the end. The tests pin the
randomness (content key, IV, RecipientInfos) so that the one-pass output can be compared
byte for byte with the two-pass output, with the size threshold lowered so that small
bodies exercise every DER length class and boundary.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smimecli.encrypt.message as encrypt_module
import smimecli.encrypt.one_pass as one_pass_module
from smimecli.cms import envelope
from smimecli.cms.recipients import Recipient
from smimecli.cms.unwrap import KeyIdentity
from smimecli.decrypt.message import decrypt_message
from tests.unit.test_tnef import NOTE_PROPS, attachment, tnef, wrap

HEADER = b"From: a@example.com\nTo: alice@example.com\nSubject: one pass\n"


def _open(message: bytes, identity: Any) -> bytes:
    """The decrypted message (line endings follow the encrypted message's)."""
    out = io.BytesIO()
    decrypt_message(io.BytesIO(message), out, KeyIdentity(identity.key, identity.cert))
    return out.getvalue()


@pytest.fixture
def fixed(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Deterministic envelopes: fixed key and IV, each recipient's RecipientInfo reused."""
    monkeypatch.setattr(envelope, "new_key", lambda cipher: bytes(range(cipher.key_size)))
    monkeypatch.setattr(envelope, "new_iv", lambda cipher: bytes(cipher.iv_size))
    cache: dict[Any, Any] = {}
    from smimecli.cms.recipients import build_recipient_info as real

    def build(recipient: Recipient, cek: bytes, cipher: Any) -> Any:
        key = (recipient, cek, cipher.name)
        if key not in cache:
            cache[key] = real(recipient, cek, cipher)
        return cache[key]

    monkeypatch.setattr(envelope, "build_recipient_info", build)
    return monkeypatch


def _encrypt(
    path: Path,
    recipients: list[Recipient],
    *,
    one_pass: bool,
    cipher: str = "aes256",
    monkeypatch: pytest.MonkeyPatch,
    threshold: int = 64,
) -> tuple[bytes, Any]:
    calls: list[Any] = []
    real = one_pass_module._encrypt_one_pass

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(encrypt_module, "_encrypt_one_pass", spy)
    monkeypatch.setattr(one_pass_module, "THREADED_FROM", threshold if one_pass else 1 << 60)
    out = io.BytesIO()
    with path.open("rb") as src:
        encrypt_module.encrypt_message(src, out, recipients, cipher=cipher)
    return out.getvalue(), calls


BODIES = st.one_of(
    st.binary(min_size=0, max_size=3000),
    st.lists(
        st.sampled_from([b"line\n", b"crlf\r\n", b"\r", b"\n", b"x" * 100, b"\r\n\r\n"]),
        max_size=400,
    ).map(b"".join),
    st.integers(min_value=0, max_value=70_000).map(lambda n: (b"abc\n" * (n // 4 + 1))[:n]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=BODIES,
    crlf_headers=st.booleans(),
    cipher=st.sampled_from(["aes256", "aes128-gcm", "3des"]),
)
def test_one_pass_output_is_the_two_pass_output(
    fixed: Any, pki: Any, tmp_path: Path, body: bytes, crlf_headers: bool, cipher: str
) -> None:
    head = HEADER.replace(b"\n", b"\r\n") if crlf_headers else HEADER
    path = tmp_path / "m.eml"
    path.write_bytes(head + (b"\r\n" if crlf_headers else b"\n") + body)
    recipients = [Recipient(pki.alice.cert), Recipient(pki.carol_ec.cert)]
    two, _ = _encrypt(path, recipients, one_pass=False, cipher=cipher, monkeypatch=fixed)
    one, calls = _encrypt(path, recipients, one_pass=True, cipher=cipher, monkeypatch=fixed)
    assert one == two
    assert len(calls) <= 1  # at most one attempt; a None is a fall-back to two passes


@pytest.mark.parametrize(
    "size",
    [
        64,
        100,
        127,
        128,
        255,
        256,
        300,
        4000,
        32767,
        32768,
        40000,
        65535,
        65536,
        70000,
        140000,
        200000,
    ],
)
@pytest.mark.parametrize("line", [b"abcdefghi\n", b"abcdefgh\r\n", b"\n", b"\r\n", b"x"])
def test_sizes_around_der_length_boundaries(
    fixed: Any, pki: Any, tmp_path: Path, size: int, line: bytes
) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(HEADER + b"\n" + (line * (size // len(line) + 1))[:size])
    recipients = [Recipient(pki.alice.cert)]
    two, _ = _encrypt(path, recipients, one_pass=False, monkeypatch=fixed)
    one, calls = _encrypt(path, recipients, one_pass=True, monkeypatch=fixed)
    assert one == two
    assert len(calls) == 1


def test_one_pass_is_used_and_decrypts(fixed: Any, pki: Any, tmp_path: Path) -> None:
    body = b"0123456789 abcdefghij\n" * 4000  # 88 KB: [88K, 176K] needs 3 length bytes
    path = tmp_path / "m.eml"
    path.write_bytes(HEADER + b"\n" + body)
    one, calls = _encrypt(path, [Recipient(pki.alice.cert)], one_pass=True, monkeypatch=fixed)
    assert len(calls) == 1 and calls[0] is not None
    opened = _open(one, pki.alice)
    assert opened.endswith(body)


def test_length_range_across_a_boundary_falls_back(fixed: Any, pki: Any, tmp_path: Path) -> None:
    # 40,000 bytes of LF lines: [40K, 80K] crosses 65,536, so the header size is not fixed.
    path = tmp_path / "m.eml"
    path.write_bytes(HEADER + b"\n" + b"abc\n" * 10_000)
    one, calls = _encrypt(path, [Recipient(pki.alice.cert)], one_pass=True, monkeypatch=fixed)
    two, _ = _encrypt(path, [Recipient(pki.alice.cert)], one_pass=False, monkeypatch=fixed)
    assert calls == [None]
    assert one == two


def test_tnef_found_late_starts_again_with_conversion(fixed: Any, pki: Any, tmp_path: Path) -> None:
    stream = tnef(NOTE_PROPS, [attachment("report.pdf", b"%PDF-1.4 fake", mime="application/pdf")])
    filler = b"a long first part before the attachment\r\n" * 3000
    path = tmp_path / "m.eml"
    path.write_bytes(wrap(stream).replace(b"outer text", filler))
    fixed.setattr(
        "smimecli.tnef.entities.secrets.token_hex", lambda n: "0" * (2 * n)
    )  # fixed boundary
    one, calls = _encrypt(path, [Recipient(pki.alice.cert)], one_pass=True, monkeypatch=fixed)
    two, _ = _encrypt(path, [Recipient(pki.alice.cert)], one_pass=False, monkeypatch=fixed)
    assert calls == [None]  # started in one pass, met the TNEF part, rolled back
    assert one == two
    opened = _open(one, pki.alice)
    assert b"application/ms-tnef" not in opened
    assert b"report.pdf" in opened


def test_appending_output_is_not_rewritten(fixed: Any, pki: Any, tmp_path: Path) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(HEADER + b"\n" + b"0123456789 abcdefghij\n" * 4000)
    out = tmp_path / "out.eml"
    out.write_bytes(b"earlier message\n")
    fixed.setattr(one_pass_module, "THREADED_FROM", 64)
    with path.open("rb") as src, out.open("ab") as dst:
        encrypt_module.encrypt_message(src, dst, [Recipient(pki.alice.cert)])
    data = out.read_bytes()
    assert data.startswith(b"earlier message\nFrom: a@example.com")
    opened = _open(data[len(b"earlier message\n") :], pki.alice)
    assert opened.endswith(b"0123456789 abcdefghij\n")


def test_pipe_input_takes_two_passes(fixed: Any, pki: Any) -> None:
    read_fd, write_fd = os.pipe()
    body = HEADER + b"\n" + b"x" * 5000 + b"\n"
    os.write(write_fd, body)
    os.close(write_fd)
    fixed.setattr(one_pass_module, "THREADED_FROM", 64)
    out = io.BytesIO()
    with os.fdopen(read_fd, "rb") as src:
        encrypt_module.encrypt_message(src, out, [Recipient(pki.alice.cert)])
    opened = _open(out.getvalue(), pki.alice)
    assert opened.endswith(b"x" * 5000 + b"\n")


def test_compressed_input_is_not_sized_by_its_descriptor(
    fixed: Any, pki: Any, tmp_path: Path
) -> None:
    # gzip's fileno() is the compressed file's, its tell() the uncompressed position: such
    # a stream must take two passes, not fail as "the message changed".
    import gzip

    body = b"a compressible line of the message\n" * 20_000
    path = tmp_path / "m.eml.gz"
    with gzip.open(path, "wb") as packed:
        packed.write(HEADER + b"\n" + body)
    fixed.setattr(one_pass_module, "THREADED_FROM", 64)
    out = io.BytesIO()
    with gzip.open(path, "rb") as src:
        encrypt_module.encrypt_message(cast(BinaryIO, src), out, [Recipient(pki.alice.cert)])
    assert _open(out.getvalue(), pki.alice).endswith(body)


def test_tiny_body_in_one_pass(fixed: Any, pki: Any, tmp_path: Path) -> None:
    # With the threshold at one byte the DER can end inside the header's last base64 line.
    path = tmp_path / "m.eml"
    path.write_bytes(HEADER + b"\nx")
    recipients = [Recipient(pki.alice.cert)]
    two, _ = _encrypt(path, recipients, one_pass=False, monkeypatch=fixed)
    one, calls = _encrypt(path, recipients, one_pass=True, monkeypatch=fixed, threshold=1)
    assert calls and calls[0] is not None  # it did go in one pass
    assert one == two


def test_a_given_up_pass_does_not_repeat_warnings(
    fixed: Any, pki: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40,000 bytes cannot go in one pass (the DER length range crosses 65,536): the
    # OAEP SHA-1 notice of the attempt given up must not be returned a second time.
    path = tmp_path / "m.eml"
    path.write_bytes(HEADER + b"\n" + b"abc\n" * 10_000)
    recipient = Recipient(pki.alice.cert, key_transport="rsa-oaep", oaep_hash="sha1")
    calls: list[Any] = []
    real = one_pass_module._encrypt_one_pass

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(encrypt_module, "_encrypt_one_pass", spy)
    monkeypatch.setattr(one_pass_module, "THREADED_FROM", 64)
    with path.open("rb") as src, (tmp_path / "out.eml").open("wb") as dst:
        outcome = encrypt_module.encrypt_message(src, dst, [recipient])
    assert calls == [None]
    assert [n.code for n in outcome.notices] == ["oaep-sha1"]


def test_a_failed_write_stops_the_read_ahead_thread(
    pki: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            if self.tell() > 1 << 20:
                raise OSError(28, "No space left on device")
            return super().write(data)

    monkeypatch.setattr(one_pass_module, "THREADED_FROM", 1 << 60)  # two passes
    monkeypatch.setattr("smimecli.streams.THREADED_FROM", 1 << 20)
    path = tmp_path / "m.eml"
    path.write_bytes(HEADER + b"\n" + b"0123456789abcdef\n" * 400_000)  # 6.8 MB
    with path.open("rb") as src, pytest.raises(OSError, match="No space"):
        encrypt_module.encrypt_message(src, Full(), [Recipient(pki.alice.cert)])
    assert [t.name for t in threading.enumerate() if t.name.startswith("smimecli-")] == []
