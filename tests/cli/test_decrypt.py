"""`smimecli decrypt`: keys from files or the store, exit statuses, no partial output."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.conftest import Cli, Pki, Result, assert_error
from tests.pki import PASSWORD, Identity

ENTITY = b"Content-Type: text/plain\r\n\r\nsecret text\r\n"


def _message(tmp_path: Path, *certs: x509.Certificate, name: str = "msg.eml") -> Path:
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(ENTITY)
    for cert in certs:
        builder = builder.add_recipient(cert)
    smime = builder.encrypt(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.Binary])
    path = tmp_path / name
    smime = smime.replace(b"\r\n", b"\n")
    path.write_bytes(b"From: a@example.com\nTo: alice@example.com\n" + smime)
    return path


def _password_file(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    path.write_bytes(PASSWORD + b"\n")
    return path


EXPECTED = b"From: a@example.com\nTo: alice@example.com\nContent-Type: text/plain\n\nsecret text\n"


def _one_error_line(result: Result, status: int) -> None:
    assert result.exit_code == status, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("smimecli: error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == b""


def test_decrypt_with_pfx_to_stdout(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    msg = _message(tmp_path, pki.alice.cert)
    result = cli(
        ["decrypt", msg, "--key", pki.alice.pfx, "--password-file", _password_file(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == EXPECTED


def test_decrypt_stdin_to_file_with_pem_key_and_env_password(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    msg = _message(tmp_path, pki.bob.cert, pki.alice.cert)
    key = tmp_path / "bob.key"
    key.write_bytes(
        pki.bob.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"k3y"),
        )
    )
    out = tmp_path / "out.eml"
    result = cli(
        [
            "decrypt",
            "-o",
            out,
            "--key",
            key,
            "--cert",
            pki.bob.cert_der,
            "--password-env",
            "KEYPASS",
        ],
        input=msg.read_bytes(),
        env={"KEYPASS": "k3y"},
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == EXPECTED
    assert result.stdout == b""


def test_decrypt_with_store_key(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    from smimecli.certs.store import Store

    msg = _message(tmp_path, pki.alice.cert)
    missing = cli(["decrypt", msg])  # no store at all: a configuration fault, not "no key"
    assert missing.exit_code == 78
    assert "no certificate store in" in missing.stderr
    assert not (tmp_path / "store").exists()
    with Store.open(tmp_path / "store", create=True) as store:
        store.add(pki.bob.cert, key=pki.bob.key)
        result = cli(["decrypt", msg])  # not the key it needs
        assert_error(result, 77, str(msg))
        store.add(pki.alice.cert, key=pki.alice.key)
    result = cli(["decrypt", msg])
    assert result.exit_code == 0, result.output
    assert result.stdout == EXPECTED


def test_wrong_key_is_77_and_no_output_file(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    msg = _message(tmp_path, pki.alice.cert)
    out = tmp_path / "out.eml"
    result = cli(["decrypt", msg, "-o", out, "--key", pki.bob.key_pem])
    _one_error_line(result, 77)
    assert "no private key for any recipient" in result.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_message_without_content_headers_has_one_blank_line(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.eml"
    plain.write_bytes(b"From: a@example.com\nTo: b@example.com\nSubject: bare\n\nHello\n")
    enc = cli(["encrypt", plain, "--cert", pki.alice.cert_pem, "-o", tmp_path / "e.eml"])
    assert enc.exit_code == 0, enc.output
    result = cli(["decrypt", tmp_path / "e.eml", "--key", pki.alice.key_pem])
    assert result.exit_code == 0, result.output
    assert result.stdout == b"From: a@example.com\nTo: b@example.com\nSubject: bare\n\nHello\n"


@pytest.mark.interop
def test_openssl_smime_of_a_plain_text_file_decrypts(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    from tests.conftest import require_tool

    openssl = require_tool("openssl")
    text = tmp_path / "note.txt"
    text.write_bytes(b"just text, no MIME headers\n")
    out = tmp_path / "note.eml"
    import subprocess

    subprocess.run(
        [
            openssl,
            "smime",
            "-encrypt",
            "-aes256",
            "-in",
            str(text),
            "-out",
            str(out),
            str(pki.alice.cert_pem),
        ],
        check=True,
        capture_output=True,
    )
    result = cli(["decrypt", out, "--key", pki.alice.key_pem])
    assert result.exit_code == 0, result.output
    # openssl writes only MIME-Version and Content-* outside: a blank line, then the text.
    assert result.stdout == b"\njust text, no MIME headers\n"


def test_wrong_key_never_yields_garbage(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    # 40 fresh CBC messages: a wrong RSA key gives a pseudo-random content key each time;
    # without the MIME entity check about one in 256 would come out as garbage.
    for n in range(40):
        msg = _message(tmp_path, pki.alice.cert, name=f"m{n}.eml")
        result = cli(["decrypt", msg, "--key", pki.bob.key_pem])
        assert (result.exit_code, result.stdout) == (77, b""), result.output


def test_corrupted_key_block_reads_like_wrong_key(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    msg = _message(tmp_path, pki.alice.cert)
    der = tmp_path / "msg.der"
    result = cli(["decrypt", msg, "--key", pki.alice.key_pem])
    assert result.exit_code == 0
    import base64
    import re

    head, body = re.split(rb"\n\n", msg.read_bytes(), maxsplit=1)
    info = cms.ContentInfo.load(base64.b64decode(body))
    ktri = info["content"]["recipient_infos"][0].chosen
    block = bytearray(ktri["encrypted_key"].native)
    block[10] ^= 0xFF
    ktri["encrypted_key"] = bytes(block)
    # As a message (not bare DER), so that content from a pseudo-random key is always
    # refused: CBC padding alone lets one in ~256 through, the MIME entity check does not.
    der.write_bytes(head + b"\n\n" + base64.encodebytes(info.dump(force=True)))
    corrupted = cli(["decrypt", der, "--key", pki.alice.key_pem])
    (tmp_path / "good.der").write_bytes(msg.read_bytes())
    wrong = cli(["decrypt", tmp_path / "good.der", "--key", pki.bob.key_pem])
    _one_error_line(corrupted, 77)
    _one_error_line(wrong, 77)
    assert corrupted.stderr.replace("msg.der", "X") == wrong.stderr.replace("good.der", "X")


def test_wrong_password_is_77(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    msg = _message(tmp_path, pki.alice.cert)
    bad = tmp_path / "bad"
    bad.write_text("nope\n")
    _one_error_line(cli(["decrypt", msg, "--key", pki.alice.pfx, "--password-file", bad]), 77)
    _one_error_line(cli(["decrypt", msg, "--key", pki.alice.pfx]), 77)


@pytest.mark.parametrize(
    "content",
    [
        b"From: a\n\nplain text\n",
        b"\x30\x80\x06\x09\x2a\x86\x48\x86",
        b"\x00\x01garbage",
        b"-----BEGIN PKCS7-----\nMIAG\n-----END PKCS7-----\n",
    ],
)
def test_not_a_usable_message_is_65(cli: Cli, pki: Pki, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.eml"
    path.write_bytes(content)
    out = tmp_path / "out.eml"
    _one_error_line(cli(["decrypt", path, "-o", out, "--key", pki.alice.key_pem]), 65)
    assert not out.exists()


def test_truncated_message_is_65(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    msg = _message(tmp_path, pki.alice.cert)
    data = msg.read_bytes()
    cut = tmp_path / "cut.eml"
    cut.write_bytes(data[: len(data) - 200])
    _one_error_line(cli(["decrypt", cut, "--key", pki.alice.key_pem]), 65)


def test_missing_files_are_66(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    msg = _message(tmp_path, pki.alice.cert)
    _one_error_line(cli(["decrypt", tmp_path / "none.eml", "--key", pki.alice.key_pem]), 66)
    _one_error_line(cli(["decrypt", msg, "--key", tmp_path / "none.key"]), 66)


def test_cert_not_matching_key_is_64(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    msg = _message(tmp_path, pki.alice.cert)
    _one_error_line(
        cli(["decrypt", msg, "--key", pki.alice.key_pem, "--cert", pki.bob.cert_pem]), 64
    )
    _one_error_line(cli(["decrypt", msg, "--cert", pki.bob.cert_pem]), 64)


def test_unwritable_output_is_73(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    msg = _message(tmp_path, pki.alice.cert)
    result = cli(
        ["decrypt", msg, "-o", tmp_path / "no" / "dir" / "x.eml", "--key", pki.alice.key_pem]
    )
    _one_error_line(result, 73)


# --- signed outside (smimecli.decrypt.unsign) ------------------------------------------------


def _signed(entity: bytes, who: Identity, layers: int = 1) -> bytes:
    from cryptography.hazmat.primitives import hashes

    for _ in range(layers):
        entity = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(entity)
            .add_signer(who.cert, who.key, hashes.SHA256())
            .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.Binary])
        )
    return b"From: a@example.com\r\n" + entity


def test_signed_only_exits_65_without_output(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    msg = tmp_path / "signed.eml"
    msg.write_bytes(_signed(ENTITY, pki.alice))
    out = tmp_path / "out.eml"
    result = cli(["decrypt", msg, "-o", out, "--key", pki.alice.key_pem])
    _one_error_line(result, 65)
    assert "signed but not encrypted" in result.stderr
    assert not out.exists()


def test_signatures_nested_too_deep_exit_65(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    from smimecli.decrypt.unsign import MAX_SIGNATURE_LAYERS

    envelope = _message(tmp_path, pki.alice.cert).read_bytes().split(b"\n", 2)[2]
    msg = tmp_path / "deep.eml"
    msg.write_bytes(_signed(envelope, pki.alice, MAX_SIGNATURE_LAYERS + 1))
    out = tmp_path / "out.eml"
    result = cli(["decrypt", msg, "-o", out, "--key", pki.alice.key_pem])
    _one_error_line(result, 65)
    assert "signature layers" in result.stderr and not out.exists()


def test_garbage_inside_multipart_signed_exits_65(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    msg = tmp_path / "garbage.eml"
    msg.write_bytes(
        b"From: a@example.com\nContent-Type: multipart/signed; boundary=x\n\n--x\n"
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n"
        b"Content-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEH\n--x\n\nsig\n--x--\n"
    )
    out = tmp_path / "out.eml"
    result = cli(["decrypt", msg, "-o", out, "--key", pki.alice.key_pem])
    _one_error_line(result, 65)
    assert not out.exists()


def test_a_forward_with_an_attached_p7m_says_to_save_the_attachment(
    cli: Cli, tmp_path: Path
) -> None:
    forward = tmp_path / "fwd.eml"
    forward.write_bytes(
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b'--b\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"'
        b"\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CA\r\n--b--\r\n"
    )
    line = assert_error(cli(["decrypt", forward]), 65, str(forward), "multipart/mixed")
    assert "save that attachment and decrypt it" in line
    plain = tmp_path / "plain.eml"
    plain.write_bytes(forward.read_bytes().replace(b"pkcs7-mime", b"pdf").replace(b".p7m", b".pdf"))
    line = assert_error(cli(["decrypt", plain]), 65, str(plain), "multipart/mixed")
    assert "attachment" not in line
