"""Big messages stream: memory stays flat whatever the size (SPEC sections 1.1 and 5).

The memory tests run smimecli in a child process and read its peak RSS from
/proc/self/status (VmHWM belongs to the process image, so the parent's size at fork time
does not count). They assert a ceiling well below the message size, not timings.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from smimecli.cms.recipients import Recipient
from smimecli.encrypt.message import encrypt_message
from smimecli.mime import Base64LineWriter, CanonicalCounter, Canonicalizer
from tests.conftest import require_tool

MIB = 1 << 20

# A child that encrypts a generated message read from a pipe-like, non-seekable stream.
_ENCRYPT_CHILD = textwrap.dedent(
    """
    import io, sys
    from pathlib import Path
    from cryptography import x509
    from smimecli.cms.recipients import Recipient
    from smimecli.encrypt.message import encrypt_message

    class Generated(io.RawIOBase):
        def __init__(self, size):
            self.left = size
            self.head = b"From: a@example.com\\nTo: b@example.com\\nSubject: big\\n\\n"
            self.line = b"0123456789abcdef" * 4 + b"012345678\\n"
        def readable(self):
            return True
        def readinto(self, buf):
            if self.head:
                n = len(self.head); buf[:n] = self.head; self.head = b""; return n
            if self.left <= 0:
                return 0
            block = self.line * (min(len(buf), self.left) // len(self.line) or 1)
            n = min(len(block), len(buf), self.left)
            buf[:n] = block[:n]; self.left -= n
            return n

    class Sink:
        size = 0
        def write(self, data):
            self.size += len(data); return len(data)

    cert = x509.load_pem_x509_certificate(Path(sys.argv[1]).read_bytes())
    sink = Sink()
    src = io.BufferedReader(Generated(int(sys.argv[2])), 1 << 16)
    encrypt_message(src, sink, [Recipient(cert)])
    peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    print(sink.size, peak)
    """
)

_MAIN_CHILD = textwrap.dedent(
    """
    import sys
    from smimecli.cli.app import main
    status = main(sys.argv[1:])
    peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    print(status, peak)
    """
)


def _needs_proc() -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc/self/status (Linux)")


@pytest.mark.slow
def test_encrypting_200_mb_from_a_stream_keeps_memory_flat(pki: Any) -> None:
    _needs_proc()
    size = 200 * 1000 * 1000
    result = subprocess.run(
        [sys.executable, "-c", _ENCRYPT_CHILD, str(pki.alice.cert_pem), str(size)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written, peak_kib = (int(v) for v in result.stdout.split())
    assert written > size * 4 // 3  # base64 of the whole ciphertext came out
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB for a 200 MB message"


@pytest.mark.slow
@pytest.mark.interop
def test_decrypting_a_big_ber_stream_keeps_memory_flat(pki: Any, tmp_path: Path) -> None:
    _needs_proc()
    tool = require_tool("openssl")
    plain = tmp_path / "plain.eml"
    line = b"0123456789abcdef" * 4 + b"012345678\r\n"
    with plain.open("wb") as handle:
        handle.write(b"Content-Type: text/plain\r\n\r\n")
        block = line * (MIB // len(line))
        for _ in range(120):
            handle.write(block)
    sealed = tmp_path / "sealed.eml"
    # -stream: BER, indefinite lengths and a constructed OCTET STRING (what NSS writes too).
    subprocess.run(
        [
            tool,
            "cms",
            "-encrypt",
            "-stream",
            "-binary",
            "-aes256",
            "-in",
            str(plain),
            "-out",
            str(sealed),
            str(pki.alice.cert_pem),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    out = tmp_path / "out.eml"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _MAIN_CHILD,
            "decrypt",
            str(sealed),
            "--key",
            str(pki.alice.key_pem),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    status, peak_kib = (int(v) for v in result.stdout.split())
    assert status == 0, result.stderr
    # The output follows the input's (LF) line endings: one byte less per CRLF line.
    lines = 120 * (MIB // len(line)) + 2  # and the header line and the blank line
    assert out.stat().st_size == plain.stat().st_size - lines
    with out.open("rb") as handle:
        lf_line = line.replace(b"\r\n", b"\n")
        handle.seek(-2 * len(lf_line), 2)
        assert handle.read() == lf_line * 2
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB decrypting 120 MiB"


def test_canonicalizer_keeps_crlf_split_across_chunks() -> None:
    data = b"a\nb\r\nc\rd\n" * 1000 + b"\r"
    for size in (1, 2, 3, 7, 64, 4096):
        canon = Canonicalizer()
        counter = CanonicalCounter()
        out = bytearray()
        for start in range(0, len(data), size):
            piece = data[start : start + size]
            out += canon.feed(piece)
            counter.feed(piece)
        out += canon.flush()
        expected = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        assert bytes(out) == expected, size
        assert counter.length == len(expected), size


def test_base64_writer_matches_one_shot_encoding() -> None:
    import base64

    data = bytes(range(256)) * 5000  # spans several 4096-line batches
    for newline in (b"\n", b"\r\n"):
        out = io.BytesIO()
        writer = Base64LineWriter(out, newline)
        for start in range(0, len(data), 100_003):
            writer.write(data[start : start + 100_003])
        writer.close()
        lines = out.getvalue().split(newline)
        assert lines[-1] == b""
        assert all(len(line) <= 76 for line in lines)
        assert base64.b64decode(b"".join(lines)) == data


def test_big_message_round_trip_in_memory(pki: Any) -> None:
    """Several MiB through the chunked path give back exactly the canonical entity."""
    from smimecli.decrypt.message import decrypt_message

    body = b"line of text\n" * 400_000  # about 5 MiB, several 1 MiB chunks
    message = b"From: a@example.com\nTo: b@example.com\nContent-Type: text/plain\n\n" + body
    sealed = io.BytesIO()
    encrypt_message(message, sealed, [Recipient(pki.alice.cert)])
    opened = io.BytesIO()
    decrypt_message(io.BytesIO(sealed.getvalue()), opened, key=pki.alice.key)
    assert opened.getvalue().replace(b"\r\n", b"\n").endswith(b"\n\n" + body)
