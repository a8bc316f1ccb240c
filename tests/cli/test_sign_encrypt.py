"""Sign-then-encrypt: ``encrypt --sign-with`` / ``--sign-with-pfx`` (direct mode)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Pki, Result
from tests.pki import PASSWORD

Cli = Callable[..., Result]
MESSAGE = (
    b"From: alice@example.com\nTo: bob@example.com\nSubject: signed and sealed\n"
    b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
    b"Gr\xc3\xbc\xc3\x9fe, Bob\nFrom the start of a line\n"
)


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, check=False)


def _sign_encrypt(cli: Cli, pki: Pki, tmp_path: Path, *extra: str | Path) -> Path:
    out = tmp_path / "out.eml"
    args = ["encrypt", "--cert", pki.bob.cert_pem, "--sign-with-pfx", pki.alice.pfx]
    done = cli(
        [*args, "--password-env", "PW", "-o", out, "--json", *extra],
        input=MESSAGE,
        env={"PW": PASSWORD.decode()},
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["action"] == "encrypted"
    assert report["signed_by"]["subject"].startswith("CN=Alice")
    return out


def test_openssl_decrypts_then_verifies(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    out = _sign_encrypt(cli, pki, tmp_path)
    text = out.read_bytes()
    assert b"Subject: signed and sealed" in text and b"smime-type=enveloped-data" in text
    inner = tmp_path / "inner.eml"
    done = _openssl(
        "cms", "-decrypt", "-in", out, "-inkey", pki.bob.key_pem, "-recip", pki.bob.cert_pem,
        "-out", inner,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"multipart/signed" in inner.read_bytes()
    content = tmp_path / "content.eml"
    done = _openssl("cms", "-verify", "-in", inner, "-CAfile", pki.ca.cert_pem, "-out", content)
    assert done.returncode == 0, done.stderr
    assert b"Verification successful" in done.stderr
    assert b"=46rom the start of a line" in content.read_bytes()  # made transport-safe


def test_smimecli_decrypts_then_verifies(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    out = _sign_encrypt(cli, pki, tmp_path)
    key = tmp_path / "bob.key"
    key.write_bytes(pki.bob.key_pem.read_bytes())
    inner = tmp_path / "inner.eml"
    done = cli(["decrypt", out, "--key", key, "-o", inner])
    assert done.exit_code == 0, done.output
    done = cli(["verify", "--json", inner, "--ca", pki.ca.cert_pem])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["status"] == "valid" and report["signer"]["emails"] == ["alice@example.com"]
    report = json.loads(done.stdout)
    assert report["status"] == "valid"
    assert report["signer"]["subject"].startswith("CN=Alice")
    assert report["from"] == ["alice@example.com"]


def test_sign_with_store_without_key_is_77(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    assert cli(["certs", "import", "--store-name", "my", pki.alice.cert_pem]).exit_code == 0
    done = cli(
        ["encrypt", "--cert", pki.bob.cert_pem, "--sign-with", "alice@example.com"],
        input=MESSAGE,
    )
    assert done.exit_code == 77, done.output
    assert "has no private key in the store" in done.stderr
    assert "--sign-with-pfx" in done.stderr
    assert done.stdout == b""


def test_sign_with_in_rules_mode_is_64(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\nname = "a"\nrecipients = ["*"]\nsource = { kind = "store" }\n')
    done = cli(["encrypt", "--rules", rules, "--sign-with", "x"], input=MESSAGE)
    assert done.exit_code == 64, done.output
    assert "apply to direct mode" in done.stderr


def test_sign_with_store_key(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    done = cli(
        ["certs", "import", "--store-name", "my", pki.alice.pfx, "--password-env", "PW"],
        env={"PW": PASSWORD.decode()},
    )
    assert done.exit_code == 0, done.output
    out = tmp_path / "out.eml"
    args = ["encrypt", "--cert", pki.bob.cert_pem, "--sign-with", "alice@example.com", "-o", out]
    done = cli(args, input=MESSAGE)
    assert done.exit_code == 0, done.output
    key = tmp_path / "bob.key"
    key.write_bytes(pki.bob.key_pem.read_bytes())
    done = cli(["decrypt", out, "--key", key])
    assert done.exit_code == 0, done.output
    assert b"multipart/signed" in done.stdout and b"smime.p7s" in done.stdout


def test_decrypt_verifies_the_inner_signature(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    out = _sign_encrypt(cli, pki, tmp_path)
    key = tmp_path / "bob.key"
    key.write_bytes(pki.bob.key_pem.read_bytes())
    plain = tmp_path / "plain.eml"
    args = ["decrypt", out, "--key", key, "-o", plain]
    done = cli(args)
    assert done.exit_code == 0, done.output
    assert done.stderr == (
        "smimecli: warning: the signature inside the envelope (signed by CN=Alice, "
        "E=alice@example.com) is valid but the signer is not trusted: no chain to a trusted "
        "root: the issuer CN=Test Root V1 is not trusted\n"
    )
    plain.unlink()
    done = cli([*args, "--require-signature"])
    assert done.exit_code == 77, done.output
    assert "nothing was written" in done.stderr and not plain.exists()
    assert cli(["certs", "import", "--store-name", "root", pki.ca.cert_pem]).exit_code == 0
    done = cli([*args, "--require-signature"])
    assert done.exit_code == 0, done.output
    assert "inside the envelope (signed by CN=Alice, E=alice@example.com) is valid and trusted" in (
        done.stderr
    )
    # To standard output as well.
    done = cli(["decrypt", out, "--key", key, "--require-signature"])
    assert done.exit_code == 0, done.output
    assert b"multipart/signed" in done.stdout


def test_decrypt_altered_inner_signature_is_65(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    # Sign, change the signed text, then encrypt: the envelope holds a broken signature.
    signed = tmp_path / "signed.eml"
    done = cli(
        ["sign", "--signer-pfx", pki.alice.pfx, "--password-env", "PW", "-o", signed],
        input=MESSAGE,
        env={"PW": PASSWORD.decode()},
    )
    assert done.exit_code == 0, done.output
    signed.write_bytes(signed.read_bytes().replace(b"Gr=C3=BC", b"Gr=C3=BD"))
    out = tmp_path / "out.eml"
    assert cli(["encrypt", "--cert", pki.bob.cert_pem, "-o", out, signed]).exit_code == 0
    key = tmp_path / "bob.key"
    key.write_bytes(pki.bob.key_pem.read_bytes())
    plain = tmp_path / "plain.eml"
    done = cli(["decrypt", out, "--key", key, "-o", plain])
    assert done.exit_code == 0, done.output
    assert "inside the envelope (signed by CN=Alice, E=alice@example.com) does not hold" in (
        done.stderr
    )
    assert "the message digest does not match" in done.stderr
    plain.unlink()
    done = cli(["decrypt", out, "--key", key, "-o", plain, "--require-signature"])
    assert done.exit_code == 65, done.output
    assert "does not hold" in done.stderr and not plain.exists()


def test_decrypt_require_signature_unsigned_is_65(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "out.eml"
    assert cli(["encrypt", "--cert", pki.bob.cert_pem, "-o", out], input=MESSAGE).exit_code == 0
    key = tmp_path / "bob.key"
    key.write_bytes(pki.bob.key_pem.read_bytes())
    done = cli(["decrypt", out, "--key", key])
    assert done.exit_code == 0 and done.stderr == "", done.output
    done = cli(["decrypt", out, "--key", key, "--require-signature"])
    assert done.exit_code == 65, done.output
    assert done.stderr.startswith("smimecli: error: ")
    assert "is not signed (--require-signature): nothing was written" in done.stderr
    assert done.stdout == b""


def test_decrypt_judges_every_signature_around_the_envelope(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    # Encrypt, Alice signs around the envelope, a field of her signed part is changed, then
    # Carol signs it all: Carol's good signature must not hide Alice's broken one.
    env = {"PW": PASSWORD.decode()}
    sealed = tmp_path / "sealed.eml"
    assert cli(["encrypt", "--cert", pki.bob.cert_pem, "-o", sealed], input=MESSAGE).exit_code == 0
    alice = tmp_path / "alice.eml"
    sign = ["sign", "--password-env", "PW", "-o"]
    done = cli([*sign, alice, "--signer-pfx", pki.alice.pfx, sealed], env=env)
    assert done.exit_code == 0, done.output
    text = alice.read_bytes()
    assert text.count(b"smime-type=enveloped-data") == 1
    alice.write_bytes(text.replace(b"smime-type=enveloped-data", b"smime-type=enveloped-data ", 1))
    carol = tmp_path / "carol.eml"
    done = cli([*sign, carol, "--signer-pfx", pki.carol_ec.pfx, alice], env=env)
    assert done.exit_code == 0, done.output
    assert cli(["certs", "import", "--store-name", "root", pki.ca.cert_pem]).exit_code == 0
    key = tmp_path / "bob.key"
    key.write_bytes(pki.bob.key_pem.read_bytes())
    plain = tmp_path / "plain.eml"
    done = cli(["decrypt", carol, "--key", key, "-o", plain])
    assert done.exit_code == 0, done.output
    assert done.stderr.splitlines() == [
        "smimecli: warning: the signature outside the envelope (signed by CN=Carol, "
        "E=carol@example.com) is valid and trusted",
        "smimecli: warning: the signature outside the envelope (signed by CN=Alice, "
        "E=alice@example.com) does not hold: the message digest does not match: the content "
        "was changed",
    ]
    assert b"From the start of a line" in plain.read_bytes()
    plain.unlink()
    done = cli(["decrypt", carol, "--key", key, "-o", plain, "--require-signature"])
    assert done.exit_code == 65, done.output
    assert done.stderr.splitlines()[-1] == (
        f"smimecli: error: {carol}: the signature outside the envelope (signed by CN=Alice, "
        "E=alice@example.com) does not hold: the message digest does not match: the content "
        "was changed; nothing was written"
    )
    assert "Traceback" not in done.stderr and not plain.exists()
    # inspect (no key) judges both layers too, and its summary gives the worst.
    shown = cli(["inspect", carol])
    assert shown.exit_code == 0, shown.output
    assert b"Signature layers: 2 (outside the envelope: INVALID)" in shown.stdout
    assert shown.stderr.count("smimecli: warning: the signature outside the envelope") == 2
    doc = json.loads(cli(["inspect", carol, "--json"]).stdout)
    assert [(s["status"], s["signer"]) for s in doc["signatures"]] == [
        ("valid", "CN=Carol, E=carol@example.com"),
        ("invalid", "CN=Alice, E=alice@example.com"),
    ]


# --- batch mode: the signer travels to every worker ------------------------------------------


def _spool(tmp_path: Path, count: int) -> tuple[Path, Path]:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    for number in range(count):
        (inbox / f"m{number}.eml").write_bytes(MESSAGE.replace(b"Bob", b"Bob %d" % number))
    return inbox, out


def _verified(pki: Pki, tmp_path: Path, sealed: Path) -> bytes:
    """openssl decrypts ``sealed`` with Bob's key, then verifies Alice's signature."""
    inner = tmp_path / f"{sealed.name}.inner"
    done = _openssl(
        "cms", "-decrypt", "-in", sealed, "-inkey", pki.bob.key_pem, "-recip", pki.bob.cert_pem,
        "-out", inner,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    content = tmp_path / f"{sealed.name}.content"
    done = _openssl("cms", "-verify", "-in", inner, "-CAfile", pki.ca.cert_pem, "-out", content)
    assert b"Verification successful" in done.stderr, done.stderr
    return content.read_bytes()


def test_batch_signs_with_a_pfx_in_every_worker(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    inbox, out = _spool(tmp_path, 4)
    args = ["encrypt", "--cert", pki.bob.cert_pem, "--sign-with-pfx", pki.alice.pfx]
    done = cli(
        [*args, "--password-env", "PW", "--out-dir", out, "--jobs", "2", "--json", inbox],
        env={"PW": PASSWORD.decode()},
    )
    assert done.exit_code == 0, done.output
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["action"] for r in records] == ["encrypted"] * 4
    assert all(r["signed_by"]["subject"].startswith("CN=Alice") for r in records)
    for number in range(4):
        assert b"Bob %d" % number in _verified(pki, tmp_path, out / f"m{number}.eml")


def test_batch_signs_with_the_store_key(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    done = cli(
        ["certs", "import", "--store-name", "my", pki.alice.pfx, "--password-env", "PW"],
        env={"PW": PASSWORD.decode()},
    )
    assert done.exit_code == 0, done.output
    inbox, out = _spool(tmp_path, 3)
    args = ["encrypt", "--cert", pki.bob.cert_pem, "--sign-with", "alice@example.com"]
    done = cli([*args, "--out-dir", out, "--jobs", "2", inbox])
    assert done.exit_code == 0, done.output
    assert "3 messages: 3 encrypted, 0 passed, 0 failed" in done.stderr
    key = tmp_path / "bob.key"
    key.write_bytes(pki.bob.key_pem.read_bytes())
    for number in range(3):
        inner = tmp_path / f"inner{number}.eml"
        assert cli(["decrypt", out / f"m{number}.eml", "--key", key, "-o", inner]).exit_code == 0
        verified = cli(["verify", "--json", inner, "--ca", pki.ca.cert_pem])
        assert verified.exit_code == 0, verified.output
        assert json.loads(verified.stdout)["status"] == "valid"


def test_batch_with_a_wrong_pfx_password_is_77_before_any_output(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    inbox, out = _spool(tmp_path, 2)
    args = ["encrypt", "--cert", pki.bob.cert_pem, "--sign-with-pfx", pki.alice.pfx]
    done = cli([*args, "--password-env", "PW", "--out-dir", out, inbox], env={"PW": "wrong"})
    assert done.exit_code == 77, done.output
    assert str(pki.alice.pfx) in done.stderr and "password" in done.stderr
    assert list(out.iterdir()) == []
