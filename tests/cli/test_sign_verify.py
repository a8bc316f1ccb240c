"""``smimecli sign`` and ``smimecli verify``: statuses, messages, reports, atomic output."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Pki, Result, assert_error
from tests.pki import PASSWORD

MESSAGE = b"From: alice@example.net\nTo: bob@example.net\nSubject: hi\n\nhello signed world\n"
Cli = Callable[..., Result]


@pytest.fixture
def lab(cli: Cli, tmp_path: Path) -> Path:
    """A store with a lab root and alice@example.net (with key); returns the root .cer."""
    root = tmp_path / "root.cer"
    done = cli(["gen-root", "--out-cer", root])
    assert done.exit_code == 0, done.output
    done = cli(["issue-user", "--email", "alice@example.net", "--signer", "Test Root V1"])
    assert done.exit_code == 0, done.output
    return root


def _sign(cli: Cli, tmp_path: Path, *extra: Any, message: bytes = MESSAGE) -> Path:
    src = tmp_path / "m.eml"
    src.write_bytes(message)
    out = tmp_path / "signed.eml"
    done = cli(["sign", src, "-o", out, "--signer", "alice@example.net", *extra])
    assert done.exit_code == 0, done.output
    return out


def test_sign_then_verify_valid(cli: Cli, lab: Path, tmp_path: Path) -> None:
    signed = _sign(cli, tmp_path)
    data = signed.read_bytes()
    assert b'multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256' in data
    assert data.startswith(b"From: alice@example.net\nTo: bob@example.net\nSubject: hi\n")
    content = tmp_path / "content.eml"
    done = cli(["verify", signed, "-o", content])
    assert done.exit_code == 0, done.output
    assert "result:       valid and trusted" in done.stderr
    assert "signed by:    E=alice@example.net, CN=alice@example.net" in done.stderr
    assert "CN=Test Root V1" in done.stderr
    assert content.read_bytes().endswith(b"\nhello signed world\n")
    assert b"pkcs7" not in content.read_bytes()


@pytest.mark.parametrize("extra", [["--opaque"], ["--pss", "--hash", "sha512"], ["--no-chain"]])
def test_sign_forms_verify(cli: Cli, lab: Path, tmp_path: Path, extra: list[str]) -> None:
    signed = _sign(cli, tmp_path, *extra)
    done = cli(["verify", "--json", signed])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["status"] == "valid"
    if "--opaque" in extra:
        assert doc["form"] == "signed-data"
    if "--pss" in extra:
        assert doc["signature_algorithm"] == "rsassa_pss-sha512"
    assert "aes256_gcm" in doc["capabilities"]


def test_verify_tampered_body_is_65(cli: Cli, lab: Path, tmp_path: Path) -> None:
    signed = _sign(cli, tmp_path)
    signed.write_bytes(signed.read_bytes().replace(b"hello signed", b"hello Signed"))
    out = tmp_path / "content.eml"
    done = cli(["verify", signed, "-o", out])
    assert done.exit_code == 65, done.output
    assert "the message digest does not match: the content was changed" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("smimecli: error: ")
    assert not out.exists()


def test_verify_untrusted_root_is_77(cli: Cli, lab: Path, tmp_path: Path) -> None:
    signed = _sign(cli, tmp_path)
    done = cli(["verify", signed], env={"SMIMECLI_STORE": str(tmp_path / "nostore")})
    assert done.exit_code == 77, done.output
    assert "the signature is valid but the signer is not trusted" in done.stderr
    assert "no chain to a trusted root: the issuer CN=Test Root V1 is not trusted" in done.stderr
    # --ca makes the lab root a trust anchor.
    done = cli(["verify", signed, "--ca", lab], env={"SMIMECLI_STORE": str(tmp_path / "nostore")})
    assert done.exit_code == 0, done.output
    assert not (tmp_path / "nostore").exists()  # verify never creates a store


def test_verify_from_mismatch_warns(cli: Cli, lab: Path, tmp_path: Path) -> None:
    message = MESSAGE.replace(b"From: alice@example.net", b"From: Mallory <mallory@example.net>")
    signed = _sign(cli, tmp_path, message=message)
    done = cli(["verify", "--json", signed])
    assert done.exit_code == 0, done.output
    warning = (
        "smimecli: warning: the signer's certificate names alice@example.net, "
        "not the From: address mallory@example.net"
    )
    assert warning in done.stderr
    assert json.loads(done.stdout)["warnings"]
    # The library returns it as a notice with a stable code, and says nothing itself.
    from smimecli.verify.report import judge_message

    report = judge_message(signed.read_bytes(), roots=[])
    assert [n.code for n in report.notices] == ["from-mismatch"]
    assert warning.removeprefix("smimecli: warning: ") == report.notices[0].text


def test_verify_not_signed_is_65(cli: Cli, lab: Path, tmp_path: Path) -> None:
    done = cli(["verify"], input=MESSAGE)
    assert done.exit_code == 65, done.output
    assert "standard input: not a signed message (Content-Type text/plain)" in done.stderr


def test_verify_encrypted_says_decrypt_first(cli: Cli, lab: Path, tmp_path: Path, pki: Pki) -> None:
    src = tmp_path / "m.eml"
    src.write_bytes(MESSAGE)
    enc = cli(["encrypt", src, "--cert", pki.alice.cert_pem])
    assert enc.exit_code == 0, enc.output
    done = cli(["verify"], input=enc.stdout)
    assert done.exit_code == 65, done.output
    assert "is encrypted" in done.stderr and "smimecli decrypt" in done.stderr


def test_verify_encrypted_inside_signed(cli: Cli, lab: Path, tmp_path: Path, pki: Pki) -> None:
    src = tmp_path / "m.eml"
    src.write_bytes(MESSAGE)
    enc = tmp_path / "enc.eml"
    assert cli(["encrypt", src, "--cert", pki.alice.cert_pem, "-o", enc]).exit_code == 0
    signed = tmp_path / "signed.eml"
    done = cli(["sign", enc, "-o", signed, "--signer", "alice@example.net"])
    assert done.exit_code == 0, done.output
    content = tmp_path / "inner.eml"
    done = cli(["verify", "--json", signed, "-o", content])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["nested"] == "encrypted"
    assert "the signed content is an encrypted message" in done.stderr
    assert b"smime-type=enveloped-data" in content.read_bytes()


def test_sign_missing_input_66(cli: Cli, lab: Path, tmp_path: Path) -> None:
    done = cli(["sign", tmp_path / "none.eml", "--signer", "alice@example.net"])
    assert_error(done, 66, f"cannot read {tmp_path / 'none.eml'}: No such file or directory")


def test_sign_not_a_message_65(cli: Cli, lab: Path) -> None:
    done = cli(["sign", "--signer", "alice@example.net"], input=b"\n\njust text\n")
    assert done.exit_code == 65, done.output
    assert "not an email message" in done.stderr


def test_sign_usage_64(cli: Cli, lab: Path, tmp_path: Path) -> None:
    done = cli(["sign"], input=MESSAGE)
    assert done.exit_code == 64
    assert "give exactly one of --signer SELECTOR and --signer-pfx FILE" in done.stderr
    done = cli(["sign", "--signer", "alice@example.net", "--json"], input=MESSAGE)
    assert done.exit_code == 64
    assert "--json needs -o OUTPUT" in done.stderr


def test_sign_signer_without_key_77(cli: Cli, lab: Path, tmp_path: Path, pki: Pki) -> None:
    assert cli(["certs", "import", "--store-name", "my", pki.bob.cert_pem]).exit_code == 0
    done = cli(["sign", "--signer", "bob@example.com"], input=MESSAGE)
    assert done.exit_code == 77, done.output
    assert "has no private key in the store" in done.stderr


def test_sign_with_pfx(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    password = tmp_path / "pw"
    password.write_bytes(PASSWORD + b"\n")
    out = tmp_path / "s.eml"
    args = ["sign", "--signer-pfx", pki.carol_ec.pfx, "-o", out, "--json"]
    done = cli([*args, "--password-file", password], input=MESSAGE)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["signer"]["subject"].startswith("CN=Carol")
    done = cli(["verify", "--json", out, "--ca", pki.ca.cert_pem])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["signature_algorithm"] == "sha256_ecdsa"
    password.write_bytes(b"wrong\n")
    done = cli([*args, "--password-file", password], input=MESSAGE)
    assert_error(done, 77, f"wrong password for {pki.carol_ec.pfx} (or the file is damaged)")


def test_sign_output_is_atomic(cli: Cli, lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "s.eml"
    done = cli(["sign", "--signer", "alice@example.net", "-o", out], input=MESSAGE)
    assert_error(done, 73, f"cannot write {out}: No such file or directory")
    assert list(tmp_path.glob("**/.s.eml.*")) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"charset=us-ascii", b"charset=utf-8"),  # a header inside the signed entity
        (b"hello signed world", b"hello signed w0rld"),  # the body
    ],
    ids=["entity-header", "body"],
)
def test_verify_tampered_entity_is_65(
    cli: Cli, lab: Path, tmp_path: Path, old: bytes, new: bytes
) -> None:
    message = MESSAGE.replace(b"\n\n", b"\nContent-Type: text/plain; charset=us-ascii\n\n", 1)
    signed = _sign(cli, tmp_path, message=message)
    data = signed.read_bytes()
    assert old in data
    signed.write_bytes(data.replace(old, new, 1))
    done = cli(["verify", signed])
    assert done.exit_code == 65, done.output
    assert "the content was changed" in done.stderr


def test_verify_tampered_signature_is_65(cli: Cli, lab: Path, tmp_path: Path) -> None:
    signed = _sign(cli, tmp_path)
    head, sig = signed.read_bytes().split(b"filename=smime.p7s\n\n")
    lines = sig.split(b"\n")
    line = lines[-4]  # near the end: the signature value, not the structure
    lines[-4] = line[:10] + (b"A" if line[10:11] != b"A" else b"B") + line[11:]
    signed.write_bytes(head + b"filename=smime.p7s\n\n" + b"\n".join(lines))
    done = cli(["verify", signed])
    assert done.exit_code == 65, done.output
    assert "smimecli: error: " in done.stderr


def test_verify_expired_signer_is_77(cli: Cli, lab: Path, tmp_path: Path) -> None:
    done = cli(
        [
            "issue-user",
            "--signer",
            "Test Root V1",
            "--email",
            "old@example.net",
            "--not-before",
            "2020-01-01",
            "--not-after",
            "2021-01-01",
        ]
    )
    assert done.exit_code == 0, done.output
    src = tmp_path / "m.eml"
    src.write_bytes(MESSAGE.replace(b"alice@", b"old@", 1))
    out = tmp_path / "old.eml"
    done = cli(["sign", src, "-o", out, "--signer", "old@example.net"])
    assert done.exit_code == 0, done.output
    assert "is not valid now" in done.stderr
    done = cli(["verify", out])
    assert done.exit_code == 77, done.output
    assert "had expired now (on 2021-01-01)" in done.stderr
