"""Certificate files made by real tools (OpenSSL, Windows, NSS, MimeKit) import, and what
smimecli exports opens in OpenSSL."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smimecli.certs import sst
from smimecli.certs.formats import load_certificate_file
from smimecli.certs.names import thumbprint
from tests.conftest import Pki, Result, require_tool
from tests.pki import PASSWORD

pytestmark = pytest.mark.interop

Cli = Callable[..., Result]


def _openssl(*args: object, input: bytes | None = None) -> bytes:
    tool = require_tool("openssl")
    proc = subprocess.run([tool, *map(str, args)], input=input, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _listed(cli: Cli, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    result = cli(["certs", "list", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return {row["thumbprint"]: row for row in json.loads(result.stdout)}


def test_openssl_made_files_import(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    der = tmp_path / "bob.der"
    _openssl("x509", "-in", pki.bob.cert_pem, "-outform", "DER", "-out", der)
    p7b = tmp_path / "chain.p7b"
    _openssl(
        "crl2pkcs7",
        "-nocrl",
        "-certfile",
        pki.alice.cert_pem,
        "-certfile",
        pki.ca.cert_pem,
        "-outform",
        "DER",
        "-out",
        p7b,
    )
    p7b_pem = tmp_path / "carol.p7c"
    _openssl("crl2pkcs7", "-nocrl", "-certfile", pki.carol_ec.cert_pem, "-out", p7b_pem)
    pw = tmp_path / "pw"
    pw.write_bytes(PASSWORD + b"\n")
    modern = tmp_path / "dave.pfx"
    _openssl(
        "pkcs12",
        "-export",
        "-inkey",
        pki.dave_p384.key_pem,
        "-in",
        pki.dave_p384.cert_pem,
        "-certfile",
        pki.ca.cert_pem,
        "-name",
        "Dave OpenSSL",
        "-passout",
        f"file:{pw}",
        "-out",
        modern,
    )
    legacy = tmp_path / "bob-legacy.p12"
    _openssl(
        "pkcs12",
        "-export",
        "-legacy",
        "-inkey",
        pki.bob.key_pem,
        "-in",
        pki.bob.cert_pem,
        "-name",
        "Bob Legacy",
        "-passout",
        f"file:{pw}",
        "-out",
        legacy,
    )
    for path in (der, p7b, p7b_pem):
        assert cli(["certs", "import", path]).exit_code == 0
    for path in (modern, legacy):
        result = cli(["certs", "import", path, "--password-file", pw])
        assert result.exit_code == 0, result.output
    rows = _listed(cli)
    assert rows[pki.dave_p384.thumbprint]["friendly_name"] == "Dave OpenSSL"
    assert rows[pki.dave_p384.thumbprint]["stores"] == ["my"]
    assert rows[pki.bob.thumbprint]["friendly_name"] == "Bob Legacy"
    assert rows[pki.bob.thumbprint]["has_key"] is True
    assert rows[pki.bob.thumbprint]["stores"] == ["my", "other"]
    assert rows[thumbprint(pki.ca.cert)]["stores"] == ["other", "ca"]
    assert set(rows) >= {pki.alice.thumbprint, pki.carol_ec.thumbprint}


@pytest.mark.parametrize("command", ["smime", "cms"])
def test_openssl_signed_mail_imports_to_other(
    cli: Cli, pki: Pki, tmp_path: Path, command: str
) -> None:
    body = tmp_path / "body.txt"
    body.write_bytes(b"Content-Type: text/plain\r\n\r\nsigned by openssl\r\n")
    signed = _openssl(
        command,
        "-sign",
        "-in",
        body,
        "-signer",
        pki.alice.cert_pem,
        "-inkey",
        pki.alice.key_pem,
        "-certfile",
        pki.ca.cert_pem,
        "-from",
        "alice@example.com",
        "-to",
        "bob@example.com",
        "-subject",
        "hi",
    )
    mail = tmp_path / "signed.eml"
    mail.write_bytes(signed)
    result = cli(["certs", "import", mail])
    assert result.exit_code == 0, result.output
    rows = _listed(cli)
    assert set(rows) == {pki.alice.thumbprint, thumbprint(pki.ca.cert)}
    assert all(row["stores"] == ["other"] and not row["has_key"] for row in rows.values())


def test_exports_open_in_openssl(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    env = {"PFXPW": PASSWORD.decode()}
    assert (
        cli(["certs", "import", pki.alice.pfx, "--password-env", "PFXPW"], env=env).exit_code == 0
    )
    cli(["certs", "import", pki.bob.cert_pem])
    cer, p7b = tmp_path / "a.cer", tmp_path / "ab.p7b"
    assert cli(["certs", "export", "alice@example.com", "-o", cer]).exit_code == 0
    assert (
        cli(["certs", "export", "alice@example.com", "bob@example.com", "-o", p7b]).exit_code == 0
    )
    text = _openssl("x509", "-inform", "DER", "-in", cer, "-noout", "-fingerprint", "-sha1")
    assert pki.alice.thumbprint in text.decode().replace(":", "")
    printed = _openssl("pkcs7", "-inform", "DER", "-in", p7b, "-print_certs").decode()
    assert "CN=Alice" in printed.replace(" = ", "=") and "CN=Bob" in printed.replace(" = ", "=")
    for encryption, extra in (("modern", []), ("legacy", ["-legacy"])):
        pfx = tmp_path / f"a-{encryption}.pfx"
        result = cli(
            [
                "certs",
                "export",
                "alice@example.com",
                "-o",
                pfx,
                "--with-private-key",
                "--pfx-encryption",
                encryption,
                "--password-env",
                "PFXPW",
            ],
            env=env,
        )
        assert result.exit_code == 0, result.output
        info = subprocess.run(
            [
                require_tool("openssl"),
                "pkcs12",
                "-info",
                "-nokeys",
                *extra,
                "-in",
                str(pfx),
                "-passin",
                "env:PFXPW",
            ],
            capture_output=True,
            env={**env, "PATH": "/usr/bin:/bin"},
            check=False,
        )
        assert info.returncode == 0, info.stderr.decode()
        report = info.stderr.decode() + info.stdout.decode()
        if encryption == "legacy":
            assert "pbeWithSHA1And3-KeyTripleDES-CBC" in report and "MAC: sha1" in report
        else:
            assert "AES-256-CBC" in report and "MAC: sha256" in report
        assert "friendlyName: Alice" in report
        key = _openssl(
            "pkcs12",
            "-in",
            pfx,
            "-nocerts",
            "-nodes",
            *extra,
            "-passin",
            f"pass:{PASSWORD.decode()}",
        )
        assert b"PRIVATE KEY" in key


def test_mimekit_legacy_pfx(cli: Cli, interop: Path) -> None:
    folder = interop / "mimekit" / "UnitTests" / "TestData" / "smime"
    env = {"PW": "no.secret"}
    for name in ("rsa/smime.pfx", "ec/smime.pfx"):
        result = cli(["certs", "import", folder / name, "--password-env", "PW"], env=env)
        assert result.exit_code == 0, result.output
    rows = _listed(cli)
    mine = [r for r in rows.values() if r["stores"] == ["my"]]
    assert {tuple(r["emails"]) for r in mine} == {("rsa@mimekit.net",), ("ec@mimekit.net",)}
    assert all(r["has_key"] and r["friendly_name"] for r in mine)
    assert sum(1 for r in rows.values() if r["stores"] == ["ca"]) == 3


def test_cryptography_vectors_friendly_names(interop: Path) -> None:
    folder = interop / "cryptography-vectors" / "cryptography_vectors" / "pkcs12"
    unicode = load_certificate_file(folder / "name-unicode-pwd.p12", b"password")
    assert [e.friendly_name for e in unicode] == ["☺", "ä", "ç"]
    names = load_certificate_file(folder / "name-all-no-pwd.p12")
    assert [e.friendly_name for e in names] == ["name", "name2", "name3"]
    assert names[0].key is not None
    legacy = load_certificate_file(folder / "cert-rc2-key-3des.p12", b"cryptography")
    assert legacy[0].key is not None


def test_thunderbird_nss_p12(cli: Cli, interop: Path) -> None:
    folder = interop / "thunderbird-comm-central" / "mailnews" / "test" / "data" / "smime"
    result = cli(
        ["certs", "import", folder / "Alice.p12", folder / "Bob.p12", "--password-env", "PW"],
        env={"PW": "nss"},
    )
    assert result.exit_code == 0, result.output
    rows = _listed(cli)
    emails = {e for r in rows.values() for e in r["emails"]}
    assert {"alice@example.com", "bob@example.com"} <= emails
    result = cli(
        ["certs", "import", folder / "Eve.p12", "--password-env", "PW"], env={"PW": "wrong"}
    )
    assert result.exit_code == 77


def test_windows_roots_sst(cli: Cli, interop: Path, tmp_path: Path) -> None:
    roots = interop / "sst-samples" / "winrootCAupdate" / "roots.sst"
    result = cli(["certs", "import", roots, "--store-name", "root"])
    assert result.exit_code == 0, result.output
    rows = _listed(cli)
    assert len(rows) == 434
    assert all(r["stores"] == ["root"] for r in rows.values())
    assert "TrustCor RootCert CA-1" in {r["friendly_name"] for r in rows.values()}
    # Export them all again as .sst: same thumbprints and friendly names, same order.
    out = tmp_path / "again.sst"
    result = cli(["certs", "export", *list(rows), "-o", out])
    assert result.exit_code == 0, result.output
    original = sst.read_sst(roots.read_bytes())
    again = sst.read_sst(out.read_bytes())
    assert [(e.der, e.friendly_name) for e in again] == [(e.der, e.friendly_name) for e in original]


def test_wine_sst_skips_unparsable_certificate(cli: Cli, interop: Path) -> None:
    folder = interop / "sst-samples" / "wine-crypt32-tests"
    result = cli(["certs", "import", folder / "serializedStoreWithCertAndCRL.sst"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("smimecli: warning: skipped certificate 1") == 1
    result = cli(["certs", "import", folder / "serializedStoreWithCert.derived.sst", "--strict"])
    assert result.exit_code == 65
    assert cli(["certs", "import", folder / "emptyStore.derived.sst"]).exit_code == 0
    assert _listed(cli) == {}
