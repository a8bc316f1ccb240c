"""What ``certs show``, ``certs list`` and ``certs export --format pem --with-private-key``
put in front of a person (text, terminal table, files), and the store passphrase of the
root's ``--store-password-env`` reaching the store without the environment."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from smimecli.certs.names import thumbprint
from tests.conftest import Pki, Result, require_tool, run_on_terminal
from tests.pki import PASSWORD

Cli = Callable[..., Result]
PW = {"PFXPW": PASSWORD.decode()}
PFX_PW = ["--password-env", "PFXPW"]


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_show_prints_one_labelled_line_per_field(cli: Cli, pki: Pki) -> None:
    assert cli(["certs", "import", pki.alice.cert_pem]).exit_code == 0
    shown = cli(["certs", "show", "alice@example.com"])
    assert shown.exit_code == 0, shown.output
    cert = pki.alice.cert
    der = cert.public_bytes(serialization.Encoding.DER)
    assert shown.stdout.decode().splitlines() == [
        "stores:              other",
        "subject:             CN=Alice, E=alice@example.com",
        "emails:              alice@example.com",
        "issuer:              CN=Test Root V1",
        f"not after:           {_iso(cert.not_valid_after_utc)}",
        f"thumbprint:          {pki.alice.thumbprint}",
        "has key:             no",
        "friendly name:       -",
        "problems:            -",
        "capabilities:        -",
        "signing time:        -",
        "common name:         Alice",
        f"serial:              {cert.serial_number:X}",
        f"not before:          {_iso(cert.not_valid_before_utc)}",
        f"sha256:              {hashlib.sha256(der).hexdigest().upper()}",
        "key:                 RSA 2048",
        "signature hash:      sha256",
        "key usage:           DigitalSignature, KeyEncipherment",
        "extended key usage:  emailProtection",
        "ca:                  no",
    ]
    assert shown.stderr == ""


def test_list_on_a_terminal_shows_one_row_per_certificate(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    cli(["certs", "import", pki.alice.cert_pem])
    cli(["certs", "import", pki.ca.cert_pem, "--store-name", "root"])
    root_thumb = thumbprint(pki.ca.cert)
    env = {"SMIMECLI_STORE": str(tmp_path / "store")}
    shown = run_on_terminal(["certs", "list"], 150, env)
    lines = [line.rstrip() for line in shown.splitlines() if line.strip()]
    alice_until = f"{pki.alice.cert.not_valid_after_utc:%Y-%m-%d}"
    root_until = f"{pki.ca.cert.not_valid_after_utc:%Y-%m-%d}"
    assert lines[0] == "thumbprint  not after   key  store  subject, emails, issuer, problems"
    assert set(lines[1]) == {"─"}
    # The thumbprints are cut to the 8 hex digits that select each alone.
    assert lines[2:] == [
        f"{pki.alice.thumbprint[:8]}    {alice_until}  no   other  CN=Alice, E=alice@example.com",
        f"{' ' * 36}alice@example.com",
        f"{' ' * 36}issuer: CN=Test Root V1",
        f"{root_thumb[:8]}    {root_until}  no   root   CN=Test Root V1",
        f"{' ' * 36}issuer: CN=Test Root V1",
    ]


def _openssl(*args: str, env: dict[str, str] | None = None) -> str:
    openssl = require_tool("openssl")
    proc = subprocess.run(
        [openssl, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_export_pem_with_private_key_loads_back_with_openssl(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    assert cli(["certs", "import", pki.alice.pfx, "--password-env", "PFXPW"], env=PW).exit_code == 0
    out = tmp_path / "alice.pem"
    args = ["certs", "export", "alice@example.com", "-o", out, "--format", "pem"]
    result = cli([*args, "--with-private-key", "--password-env", "PFXPW"], env=PW)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"wrote 1 certificate(s) to {out} (pem)\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in out.read_bytes()
    # openssl reads the key with the export password; it is the certificate's key.
    key_public = _openssl("pkey", "-in", str(out), "-passin", "env:PFXPW", "-pubout", env=PW)
    cert_public = _openssl("x509", "-in", str(out), "-noout", "-pubkey")
    assert key_public == cert_public and "BEGIN PUBLIC KEY" in key_public
    fingerprint = _openssl("x509", "-in", str(out), "-noout", "-fingerprint", "-sha1")
    assert fingerprint.strip().split("=")[1].replace(":", "") == pki.alice.thumbprint
    # In the clear, on purpose: openssl reads it without a password.
    clear = cli([*args, "--with-private-key", "--no-key-password", "--force"])
    assert clear.exit_code == 0, clear.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert _openssl("pkey", "-in", str(out), "-pubout", "-passin", "pass:") == cert_public


def test_global_store_password_env_never_lands_in_the_environment(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from smimecli.cli.app import main

    monkeypatch.setenv("SMIMECLI_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("PFXPW", PASSWORD.decode())
    monkeypatch.setenv("LAB_PASS", "store secret")
    monkeypatch.delenv("SMIMECLI_STORE_PASSWORD", raising=False)
    args = ["--store-password-env", "LAB_PASS", "certs", "import", str(pki.alice.pfx)]
    assert main([*args, "--password-env", "PFXPW"]) == 0
    assert "SMIMECLI_STORE_PASSWORD" not in os.environ
    assert [k for k, v in os.environ.items() if v == "store secret"] == ["LAB_PASS"]
    # The key went in encrypted: without the passphrase it cannot be exported (77) ...
    pfx = tmp_path / "out.pfx"
    export = ["certs", "export", "alice@example.com", "-o", str(pfx), "--with-private-key"]
    assert main([*export, "--password-env", "PFXPW"]) == 77
    assert "encrypted" in capsys.readouterr().err
    # ... with it, it can, and still nothing was written to the environment.
    assert main(["--store-password-env", "LAB_PASS", *export, "--password-env", "PFXPW"]) == 0
    assert "SMIMECLI_STORE_PASSWORD" not in os.environ
    assert stat.S_IMODE(pfx.stat().st_mode) == 0o600


def test_global_store_password_env_decrypts_with_a_store_key(cli: Cli, pki: Pki) -> None:
    secret = {**PW, "LAB_PASS": "store secret"}
    imported = cli(
        ["--store-password-env", "LAB_PASS", "certs", "import", pki.alice.pfx, *PFX_PW],
        env=secret,
    )
    assert imported.exit_code == 0, imported.output
    message = b"From: b@example.com\nTo: alice@example.com\nContent-Type: text/plain\n\nhi\n"
    encrypted = cli(["encrypt", "--cert", pki.alice.cert_pem], input=message)
    assert encrypted.exit_code == 0, encrypted.output
    without = cli(["decrypt"], input=encrypted.stdout)
    assert without.exit_code == 77, without.output
    assert "SMIMECLI_STORE_PASSWORD" in without.stderr
    done = cli(["--store-password-env", "LAB_PASS", "decrypt"], input=encrypted.stdout, env=secret)
    assert done.exit_code == 0, done.output
    assert done.stdout.endswith(b"\n\nhi\n")


def test_import_warns_of_a_key_without_its_certificate(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    bundle = tmp_path / "pair.pem"
    bundle.write_bytes(pki.alice.cert_pem.read_bytes() + pki.bob.key_pem.read_bytes())
    result = cli(["certs", "import", bundle])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"smimecli: warning: private key without its certificate in {bundle} ignored",
        f"{pki.alice.thumbprint}  other  CN=Alice, E=alice@example.com",
        "imported 1 certificate(s)",
    ]
    quiet = cli(["--quiet", "certs", "import", bundle])
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.output
