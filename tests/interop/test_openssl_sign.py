"""Real peer: OpenSSL verifies what smimecli signs, and smimecli verifies what OpenSSL signs
(detached and opaque; RSA v1.5, RSA-PSS, ECDSA); the shared corpus's signed messages."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from smimecli.cms.trust import evaluate_trust
from smimecli.errors import DataError
from smimecli.sign.message import SignOptions, sign_message
from smimecli.verify.message import verify_message
from tests.conftest import Pki, require_tool

pytestmark = pytest.mark.interop

MESSAGE = (
    b"From: Alice <alice@example.com>\n"
    b"To: bob@example.com\n"
    b"Subject: interop\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"Gr\xc3\xbc\xc3\x9fe, line one \n"
    b"From line two\n"
)
CASES = [("alice", "pkcs1v15"), ("alice", "pss"), ("carol_ec", "pkcs1v15")]


def _openssl(*args: str | Path, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [require_tool("openssl"), *map(str, args)], input=input, capture_output=True, check=False
    )


@pytest.mark.parametrize("command", ["cms", "smime"])
@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize(("who", "scheme"), CASES)
def test_openssl_verifies_ours(
    pki: Pki, tmp_path: Path, command: str, detached: bool, who: str, scheme: str
) -> None:
    if command == "smime" and scheme == "pss":
        pytest.skip("openssl smime (the old PKCS#7 code) cannot check RSA-PSS; openssl cms can")
    ident = getattr(pki, who)
    out = io.BytesIO()
    options = SignOptions(detached=detached, scheme=scheme, hash="sha512")
    sign_message(MESSAGE, out, cert=ident.cert, key=ident.key, options=options)
    signed = tmp_path / "signed.eml"
    signed.write_bytes(out.getvalue())
    content = tmp_path / "content"
    done = _openssl(command, "-verify", "-CAfile", pki.ca.cert_pem, "-in", signed, "-out", content)
    assert done.returncode == 0, done.stderr.decode()
    assert b"Verification successful" in done.stderr
    assert b"=46rom line two" in content.read_bytes()  # QP-protected before signing


def _openssl_signed(pki: Pki, tmp_path: Path, who: str, *extra: str) -> bytes:
    ident = getattr(pki, who)
    message = tmp_path / "msg.txt"
    message.write_bytes(b"Content-Type: text/plain\r\n\r\nsigned by openssl\r\n")
    args = ["cms", "-sign", "-signer", ident.cert_pem, "-inkey", ident.key_pem, "-in", message]
    done = _openssl(*args, *extra)
    assert done.returncode == 0, done.stderr.decode()
    return b"From: a@example.com\n" + done.stdout


@pytest.mark.parametrize(
    ("who", "extra", "algorithm"),
    [
        ("alice", (), "rsassa_pkcs1v15-sha256"),
        ("alice", ("-nodetach",), "rsassa_pkcs1v15-sha256"),
        ("alice", ("-keyopt", "rsa_padding_mode:pss"), "rsassa_pss-sha256"),
        (
            "alice",
            ("-nodetach", "-md", "sha512", "-keyopt", "rsa_padding_mode:pss"),
            "rsassa_pss-sha512",
        ),
        ("carol_ec", (), "sha256_ecdsa"),
        ("dave_p384", ("-nodetach", "-md", "sha384"), "sha384_ecdsa"),
    ],
)
def test_we_verify_openssls(
    pki: Pki, tmp_path: Path, who: str, extra: tuple[str, ...], algorithm: str
) -> None:
    signed = _openssl_signed(pki, tmp_path, who, *extra)
    result = verify_message(signed)
    assert result.valid, result.check.problems
    assert result.check.signer.signature_algorithm == algorithm
    assert result.entity.endswith(b"signed by openssl\r\n")
    assert evaluate_trust(getattr(pki, who).cert, [pki.ca.cert]).trusted


def test_openssl_signed_tampered_body_is_detected(pki: Pki, tmp_path: Path) -> None:
    signed = _openssl_signed(pki, tmp_path, "alice")
    result = verify_message(signed.replace(b"signed by openssl", b"signed by 0penssl"))
    assert not result.valid
    assert "message digest does not match" in result.check.problems[0]


def test_openssl_lf_signed_part_verifies(pki: Pki, tmp_path: Path) -> None:
    """OpenSSL writes CRLF; a client that stores the message with LF must still verify."""
    signed = _openssl_signed(pki, tmp_path, "alice").replace(b"\r\n", b"\n")
    assert verify_message(signed).valid
    path = tmp_path / "lf.eml"
    path.write_bytes(signed)
    done = _openssl("cms", "-verify", "-CAfile", pki.ca.cert_pem, "-in", path, "-out", "/dev/null")
    assert done.returncode == 0, done.stderr.decode()


def _corpus(interop: Path) -> tuple[Path, list[dict[str, object]]]:
    folder = interop / "thunderbird-comm-central"
    if not (folder / "expected-results.json").is_file():
        pytest.skip("the corpus has no thunderbird-comm-central/expected-results.json")
    entries = json.loads((folder / "expected-results.json").read_text())
    base = folder / "mailnews" / "test" / "data" / "smime"
    return base, [e for e in entries if e.get("sig") and not e.get("enc")]


def test_corpus_signed_messages(interop: Path) -> None:
    """The outer signature of every signed-only Thunderbird message: never malformed; the
    plain ones (one signature layer, not 'future') give Thunderbird's verdict. The nested
    ones are judged by Thunderbird on their inner layers too, which this does not unwrap."""
    from cryptography import x509

    base, entries = _corpus(interop)
    root = x509.load_pem_x509_certificate((base / "TestCA.pem").read_bytes())
    checked = 0
    for entry in entries:
        name = str(entry["filename"])
        try:
            result = verify_message((base / name).read_bytes())
        except DataError as exc:  # pragma: no cover - the failure message says which
            pytest.fail(f"{name}: {exc}")
        single = "dave" not in entry and "future" not in name and "manual" not in name
        if single:
            good = (
                result.valid
                and result.check.signer.signer is not None
                and evaluate_trust(
                    result.check.signer.signer,
                    [root],
                    result.check.certificates,
                ).trusted
            )
            assert good == entry["sig_good"], (name, result.check.problems)
            checked += 1
    assert checked >= 16
