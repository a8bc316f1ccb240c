"""The forms OpenSSL (and Windows) write a signed-data in, verified by ``smimecli verify``:
S/MIME with BER streaming (``-stream``: indefinite lengths, the content in 1,000-byte
pieces), a bare DER or PEM ``.p7m`` without any mail headers, and a constructed OCTET STRING
with definite lengths (X.690 8.7.3, which asn1crypto alone refuses inside a signed-data)."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Pki, Result, require_tool

pytestmark = pytest.mark.interop

Cli = Callable[..., Result]
TEXT = b"Content-Type: text/plain\r\n\r\n" + b"a line of signed text\r\n" * 3000


def _sign(pki: Pki, tmp_path: Path, *extra: str) -> Path:
    message = tmp_path / "msg.txt"
    message.write_bytes(TEXT)
    out = tmp_path / "signed"
    done = subprocess.run(
        [
            *(require_tool("openssl"), "cms", "-sign", "-nodetach", "-binary", "-in", str(message)),
            *("-signer", str(pki.alice.cert_pem), "-inkey", str(pki.alice.key_pem)),
            *("-out", str(out), *extra),
        ],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return out


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) < 0x80:
        return bytes([tag, len(value)]) + value
    size = len(value).to_bytes((len(value).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + value


def _constructed_definite(der: bytes, piece: int) -> bytes:
    """The same signed-data with its content as a constructed OCTET STRING of ``piece``-byte
    primitive pieces, every length definite."""
    from asn1crypto import cms

    info = cms.ContentInfo.load(der)
    signed = info["content"]
    encap = signed["encap_content_info"]
    content = encap["content"].native
    chunks = b"".join(_tlv(0x04, content[i : i + piece]) for i in range(0, len(content), piece))
    octets = _tlv(0x24, chunks)
    parts = [signed["version"].dump(), signed["digest_algorithms"].dump()]
    parts.append(_tlv(0x30, encap["content_type"].dump() + _tlv(0xA0, octets)))
    parts += [signed["certificates"].dump(), signed["signer_infos"].dump()]
    body = _tlv(0x30, b"".join(parts))
    return _tlv(0x30, info["content_type"].dump() + _tlv(0xA0, body))


def _verified(cli: Cli, pki: Pki, path: Path, tmp_path: Path) -> None:
    content = tmp_path / "content.txt"
    done = cli(["verify", "--ca", pki.ca.cert_pem, path, "-o", content])
    assert done.exit_code == 0, done.output
    assert "valid and trusted" in done.stderr
    # The content as a message: the outer headers (none for a bare .p7m) and MIME-Version,
    # then the signed entity; an S/MIME file written by OpenSSL has LF line endings.
    written = content.read_bytes().replace(b"\r\n", b"\n")
    assert b"MIME-Version: 1.0\nContent-Type: text/plain\n\n" in written
    assert written.endswith(TEXT.replace(b"\r\n", b"\n"))


@pytest.mark.parametrize(
    "form", [("-stream",), ("-outform", "DER"), ("-outform", "PEM"), ("-stream", "-outform", "DER")]
)
def test_openssl_forms_verify(cli: Cli, pki: Pki, tmp_path: Path, form: tuple[str, ...]) -> None:
    _verified(cli, pki, _sign(pki, tmp_path, *form), tmp_path)


@pytest.mark.parametrize("piece", [1, 1000])
def test_constructed_definite_content_verifies(
    cli: Cli, pki: Pki, tmp_path: Path, piece: int
) -> None:
    der = _sign(pki, tmp_path, "-outform", "DER").read_bytes()
    rebuilt = tmp_path / "rebuilt.p7m"
    rebuilt.write_bytes(_constructed_definite(der, piece))
    _verified(cli, pki, rebuilt, tmp_path)
    # The same inside a mail message, base64 as S/MIME carries it.
    mail = tmp_path / "rebuilt.eml"
    mail.write_bytes(
        b"From: alice@example.com\r\nContent-Type: application/pkcs7-mime; "
        b"smime-type=signed-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(rebuilt.read_bytes()).replace(b"\n", b"\r\n")
    )
    _verified(cli, pki, mail, tmp_path)


def test_a_changed_piece_of_a_constructed_content_is_detected(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    der = _sign(pki, tmp_path, "-outform", "DER").read_bytes()
    rebuilt = _constructed_definite(der, 1000)
    changed = tmp_path / "changed.p7m"
    changed.write_bytes(rebuilt.replace(b"a line of signed text", b"a line of signed t3xt", 1))
    done = cli(["verify", "--ca", pki.ca.cert_pem, changed])
    assert done.exit_code == 65, done.output
    assert "the content was changed" in done.stderr
