"""Lab certificates checked by real peers: openssl x509/verify/pkcs12/cms and gpgsm.

One root and three users (RSA, EC P-256, EC P-384) are made once per module through the CLI;
every test then hands the files to the real tools.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import require_tool, run_cli

pytestmark = pytest.mark.interop

SECRET = "lab interop secret"
MESSAGE = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello from the lab.\r\n"


@dataclass
class Files:
    folder: Path
    password: Path
    store: Path

    def __getitem__(self, name: str) -> Path:
        return self.folder / name


def smimecli(files: Files, *args: object) -> str:
    result = run_cli([str(a) for a in args], env={"SMIMECLI_STORE": str(files.store)})
    assert result.exit_code == 0, result.output
    return result.stdout.decode()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("lab-interop")
    files = Files(folder, folder / "password", folder / "store")
    files.password.write_text(SECRET + "\n")
    pw = ("--password-file", files.password)
    smimecli(
        files,
        "gen-root",
        "--out-pem",
        files["root.pem"],
        "--out-cer",
        files["root.cer"],
        "--out-pfx",
        files["root.pfx"],
        *pw,
    )
    smimecli(
        files,
        "issue-user",
        "--email",
        "test@example.net",
        "--subject",
        "E=test@example.net,CN=SMIME Tester 2048",
        "--upn",
        "tester@corp.example",
        "--signer",
        "Test Root V1",
        "--out-pem",
        files["rsa.pem"],
        "--out-key",
        files["rsa.key"],
        "--out-pfx",
        files["rsa.pfx"],
        *pw,
    )
    smimecli(
        files,
        "issue-user",
        "--email",
        "test@example.net",
        "--signer",
        "Test Root V1",
        "--pfx-encryption",
        "legacy",
        "--out-pfx",
        files["rsa-legacy.pfx"],
        *pw,
    )
    for curve in ("p256", "p384"):
        smimecli(
            files,
            "issue-user",
            "--email",
            f"{curve}@example.net",
            "--key-algorithm",
            f"ecdsa-{curve}",
            "--signer-pfx",
            files["root.pfx"],
            "--signer-password-file",
            files.password,
            "--out-pem",
            files[f"{curve}.pem"],
            "--out-key",
            files[f"{curve}.key"],
            "--no-store",
            *pw,
        )
    return files


def openssl(*args: object, input: bytes | None = None) -> str:
    proc = subprocess.run(
        [require_tool("openssl"), *[str(a) for a in args]], input=input, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode(errors="replace")


def x509_text(path: Path) -> str:
    return openssl("x509", "-in", path, "-noout", "-text")


def extension_block(text: str, title: str) -> tuple[bool, str]:
    """Whether the extension is critical, and its value lines, from ``openssl x509 -text``."""
    match = re.search(rf"^ +{re.escape(title)}:( critical)? *\n((?: {{16,}}.*\n)+)", text, re.M)
    assert match, f"{title} missing in\n{text}"
    return bool(match.group(1)), " ".join(match.group(2).split())


def extension_titles(text: str) -> list[str]:
    section = text.split("X509v3 extensions:\n", 1)[1].split("Signature Algorithm", 1)[0]
    return re.findall(r"^ {12}(\S[^:\n]*):", section, re.M)


def check_serial_and_validity(path: Path) -> None:
    out = openssl("x509", "-in", path, "-noout", "-serial", "-startdate", "-enddate")
    serial = re.search(r"serial=([0-9A-F]+)", out)
    assert serial and len(serial.group(1)) == 32, out  # 16 bytes
    assert int(serial.group(1)[:2], 16) < 0x80  # positive: high bit clear
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    shown = " ".join(out.split())
    for field, moment in (
        ("notBefore", cert.not_valid_before_utc),
        ("notAfter", cert.not_valid_after_utc),
    ):
        assert f"{field}={moment.strftime('%b %-d %H:%M:%S %Y GMT')}" in shown, out
    age = dt.datetime.now(dt.UTC) - cert.not_valid_before_utc
    assert dt.timedelta(minutes=10) <= age < dt.timedelta(minutes=30)


# --- certificate contents as openssl reads them --------------------------------------------


def test_root_in_openssl(lab: Files, tmp_path: Path) -> None:
    text = x509_text(lab["root.pem"])
    assert "Issuer: CN = Test Root V1" in text and "Subject: CN = Test Root V1" in text
    assert "Public-Key: (2048 bit)" in text and "sha256WithRSAEncryption" in text
    assert extension_titles(text) == [
        "X509v3 Basic Constraints",
        "X509v3 Key Usage",
        "X509v3 Subject Key Identifier",
    ]
    assert extension_block(text, "X509v3 Basic Constraints") == (True, "CA:TRUE")
    assert extension_block(text, "X509v3 Key Usage") == (
        True,
        "Digital Signature, Key Encipherment, Data Encipherment, Key Agreement, "
        "Certificate Sign, CRL Sign",
    )
    critical, ski = extension_block(text, "X509v3 Subject Key Identifier")
    assert not critical and re.fullmatch(r"([0-9A-F]{2}:){19}[0-9A-F]{2}", ski)
    check_serial_and_validity(lab["root.pem"])
    # 7300 days, as the PowerShell lab root.
    cert = x509.load_pem_x509_certificate(lab["root.pem"].read_bytes())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 7300
    der = tmp_path / "root.der"
    openssl("x509", "-in", lab["root.pem"], "-outform", "DER", "-out", der)
    assert lab["root.cer"].read_bytes() == der.read_bytes()


def test_rsa_user_in_openssl(lab: Files) -> None:
    text = x509_text(lab["rsa.pem"])
    root_ski = extension_block(x509_text(lab["root.pem"]), "X509v3 Subject Key Identifier")[1]
    assert "Subject: CN = SMIME Tester 2048, emailAddress = test@example.net" in text
    assert extension_titles(text) == [
        "X509v3 Basic Constraints",
        "X509v3 Key Usage",
        "X509v3 Extended Key Usage",
        "X509v3 Subject Alternative Name",
        "S/MIME Capabilities",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
    ]
    assert extension_block(text, "X509v3 Basic Constraints") == (True, "CA:FALSE")
    assert extension_block(text, "X509v3 Key Usage") == (
        True,
        "Digital Signature, Key Encipherment",
    )
    assert extension_block(text, "X509v3 Extended Key Usage") == (False, "E-mail Protection")
    assert extension_block(text, "X509v3 Subject Alternative Name") == (
        False,
        "email:test@example.net, othername: UPN::tester@corp.example",
    )
    assert not extension_block(text, "S/MIME Capabilities")[0]
    assert not extension_block(text, "X509v3 Subject Key Identifier")[0]
    critical, aki = extension_block(text, "X509v3 Authority Key Identifier")
    assert not critical and aki.removeprefix("keyid:") == root_ski
    check_serial_and_validity(lab["rsa.pem"])


def test_smime_capabilities_in_openssl(lab: Files) -> None:
    parsed = openssl("asn1parse", "-in", lab["rsa.pem"])
    lines = parsed.splitlines()
    index = next(i for i, line in enumerate(lines) if ":S/MIME Capabilities" in line)
    offset = lines[index + 1].split(":", 1)[0].strip()
    assert "OCTET STRING" in lines[index + 1]
    inner = openssl("asn1parse", "-in", lab["rsa.pem"], "-strparse", offset)
    assert re.findall(r"OBJECT\s+:(\S+)|INTEGER\s+:(\S+)", inner) == [
        ("aes-256-gcm", ""),
        ("aes-128-gcm", ""),
        ("aes-256-cbc", ""),
        ("aes-192-cbc", ""),
        ("aes-128-cbc", ""),
        ("rsaesOaep", ""),
    ]


@pytest.mark.parametrize(("name", "bits"), [("p256", "256"), ("p384", "384")])
def test_ec_user_in_openssl(lab: Files, name: str, bits: str) -> None:
    text = x509_text(lab[f"{name}.pem"])
    assert f"Public-Key: ({bits} bit)" in text
    assert extension_block(text, "X509v3 Key Usage") == (True, "Digital Signature, Key Agreement")
    assert extension_block(text, "X509v3 Subject Alternative Name") == (
        False,
        f"email:{name}@example.net",
    )
    check_serial_and_validity(lab[f"{name}.pem"])


# --- chains, containers, keys -------------------------------------------------------------


def test_openssl_verify_rsa_smimeencrypt(lab: Files) -> None:
    out = openssl("verify", "-purpose", "smimeencrypt", "-CAfile", lab["root.pem"], lab["rsa.pem"])
    assert out.strip().endswith(": OK")


@pytest.mark.parametrize("name", ["p256", "p384"])
def test_openssl_verify_ec_smimesign(lab: Files, name: str) -> None:
    out = openssl("verify", "-purpose", "smimesign", "-CAfile", lab["root.pem"], lab[f"{name}.pem"])
    assert out.strip().endswith(": OK")


@pytest.mark.parametrize(
    ("name", "extra", "expect"),
    [
        ("root.pfx", (), "AES-256-CBC"),
        ("rsa.pfx", (), "AES-256-CBC"),
        ("rsa-legacy.pfx", ("-legacy",), "pbeWithSHA1And3-KeyTripleDES-CBC"),
    ],
)
def test_pfx_opens_in_openssl(lab: Files, name: str, extra: tuple[str, ...], expect: str) -> None:
    proc = subprocess.run(
        [
            require_tool("openssl"),
            "pkcs12",
            "-info",
            "-noout",
            "-in",
            str(lab[name]),
            "-passin",
            f"file:{lab.password}",
            *extra,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode and extra and "legacy" in proc.stderr.lower():
        pytest.skip("openssl has no legacy provider here")
    assert proc.returncode == 0, proc.stderr
    assert "Shrouded Keybag" in proc.stderr and expect in proc.stderr
    # The user's .pfx carries the issuing CA: two certificate bags.
    assert proc.stderr.count("Certificate bag") == (1 if name == "root.pfx" else 2)


def test_pfx_wrong_password_rejected_by_openssl(lab: Files, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    proc = subprocess.run(
        [
            require_tool("openssl"),
            "pkcs12",
            "-info",
            "-noout",
            "-in",
            str(lab["rsa.pfx"]),
            "-passin",
            f"file:{wrong}",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0


# --- encryption end to end ----------------------------------------------------------------


def cms_round_trip(lab: Files, tmp_path: Path, cert: str, key: str, cipher: str) -> bytes:
    plain = tmp_path / "plain.txt"
    plain.write_bytes(MESSAGE)
    encrypted = tmp_path / "enc.eml"
    openssl("cms", "-encrypt", f"-{cipher}", "-in", plain, "-out", encrypted, lab[cert])
    out = tmp_path / "dec.txt"
    openssl(
        "cms",
        "-decrypt",
        "-in",
        encrypted,
        "-inkey",
        lab[key],
        "-passin",
        f"file:{lab.password}",
        "-recip",
        lab[cert],
        "-out",
        out,
    )
    return out.read_bytes()


def test_openssl_encrypt_decrypt_rsa(lab: Files, tmp_path: Path) -> None:
    assert cms_round_trip(lab, tmp_path, "rsa.pem", "rsa.key", "aes256") == MESSAGE


@pytest.mark.parametrize("name", ["p256", "p384"])
def test_openssl_ecdh_recipient(lab: Files, tmp_path: Path, name: str) -> None:
    assert cms_round_trip(lab, tmp_path, f"{name}.pem", f"{name}.key", "aes128") == MESSAGE
    info = openssl("cms", "-cmsout", "-print", "-in", tmp_path / "enc.eml")
    assert "originatorKey" in info and "dhSinglePass-stdDH" in info


def test_smimecli_decrypts_with_lab_pfx(lab: Files, tmp_path: Path) -> None:
    if importlib.util.find_spec("smimecli.decrypt.message") is None:
        pytest.skip("smimecli.decrypt.message is not written yet (cms-decrypt helper)")
    if "--key" not in run_cli(["decrypt", "--help"]).stdout.decode():
        pytest.skip("smimecli decrypt has no --key option yet (cms-decrypt helper)")
    plain = tmp_path / "plain.eml"
    plain.write_bytes(b"From: a@example.net\r\nTo: test@example.net\r\nSubject: lab\r\n" + MESSAGE)
    encrypted = tmp_path / "enc.eml"
    openssl("smime", "-encrypt", "-aes256", "-in", plain, "-out", encrypted, lab["rsa.pem"])
    result = run_cli(
        ["decrypt", encrypted, "--key", lab["rsa.pfx"], "--password-file", lab.password],
        env={"SMIMECLI_STORE": str(lab.store)},
    )
    assert result.exit_code == 0, result.output
    assert b"Hello from the lab." in result.stdout


# --- gpgsm ----------------------------------------------------------------------------------


@pytest.fixture
def gnupghome(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    yield home
    gpgconf = require_tool("gpgconf")
    subprocess.run(
        [gpgconf, "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)}, capture_output=True
    )


def gpgsm(home: Path, *args: object, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [require_tool("gpgsm"), "--batch", "--pinentry-mode", "loopback", *map(str, args)],
        input=input,
        capture_output=True,
        env={**os.environ, "GNUPGHOME": str(home)},
        timeout=60,
    )


def test_gpgsm_imports_root_and_legacy_pfx(lab: Files, gnupghome: Path, tmp_path: Path) -> None:
    passphrase = SECRET.encode() + b"\n"
    root = gpgsm(gnupghome, "--import", lab["root.cer"])
    assert root.returncode == 0, root.stderr.decode()
    user = gpgsm(
        gnupghome, "--passphrase-fd", "0", "--import", lab["rsa-legacy.pfx"], input=passphrase
    )
    assert user.returncode == 0, user.stderr.decode()
    assert b"secret keys imported: 1" in user.stderr
    listing = gpgsm(gnupghome, "--list-secret-keys", "--with-colons")
    assert listing.returncode == 0, listing.stderr.decode()
    assert b"test@example.net" in listing.stdout
    # The imported key really decrypts: a message openssl encrypted to the certificate.
    plain = tmp_path / "plain.txt"
    plain.write_bytes(MESSAGE)
    encrypted = tmp_path / "enc.der"
    legacy_cert = tmp_path / "legacy.pem"
    openssl(
        "pkcs12",
        "-in",
        lab["rsa-legacy.pfx"],
        "-passin",
        f"file:{lab.password}",
        "-clcerts",
        "-nokeys",
        "-out",
        legacy_cert,
    )
    openssl(
        "cms",
        "-encrypt",
        "-aes256",
        "-outform",
        "DER",
        "-in",
        plain,
        "-out",
        encrypted,
        legacy_cert,
    )
    decrypted = gpgsm(gnupghome, "--passphrase-fd", "0", "--decrypt", encrypted, input=passphrase)
    assert decrypted.returncode == 0, decrypted.stderr.decode()
    assert decrypted.stdout == MESSAGE


# --- intermediate CA, CSR and CRL with openssl --------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """Root -> intermediate -> users (one from an openssl CSR), a revoked user and CRLs."""
    require_tool("openssl")
    folder = tmp_path_factory.mktemp("lab-pki")
    files = Files(folder, folder / "password", folder / "store")
    smimecli(files, "gen-root", "--out-pem", files["root.pem"])
    smimecli(files, "gen-ca", "--signer", "Test Root V1", "--out-pem", files["ca.pem"])
    issue = ("issue-user", "--signer", "Test Intermediate CA V1")
    smimecli(files, *issue, "--email", "ok@example.net", "--out-pem", files["ok.pem"])
    smimecli(files, *issue, "--email", "gone@example.net", "--out-pem", files["gone.pem"])
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            files["req.key"],
            "-subj",
            "/CN=req@example.net/emailAddress=req@example.net",
            "-out",
            files["req.csr"],
        ],
        check=True,
        capture_output=True,
    )
    smimecli(files, *issue, "--csr", files["req.csr"], "--out-pem", files["req.pem"])
    ca_crl = smimecli(
        files, "gen-crl", "--signer", "Test Intermediate CA V1", "--revoke", "gone@example.net"
    )
    files["ca.crl"].write_text(ca_crl)
    files["root.crl"].write_text(smimecli(files, "gen-crl", "--signer", "Test Root V1"))
    files["chain.pem"].write_bytes(files["ca.pem"].read_bytes() + files["root.pem"].read_bytes())
    files["crls.pem"].write_bytes(files["ca.crl"].read_bytes() + files["root.crl"].read_bytes())
    return files


def run_openssl(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *(str(a) for a in args)], capture_output=True, text=True, check=False
    )


def test_openssl_verifies_the_chain_through_the_intermediate(pki: Files) -> None:
    for name in ("ok.pem", "gone.pem", "req.pem"):
        done = run_openssl(
            "verify", "-purpose", "smimeencrypt", "-CAfile", pki["root.pem"], "-untrusted",
            pki["ca.pem"], pki[name],
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{pki[name]}: OK" in done.stdout
    # pathLenConstraint 0: without the intermediate there is no chain.
    done = run_openssl("verify", "-CAfile", pki["root.pem"], pki["ok.pem"])
    assert done.returncode != 0


def test_csr_certificate_matches_the_openssl_key(pki: Files) -> None:
    cert_key = run_openssl("x509", "-in", pki["req.pem"], "-noout", "-pubkey").stdout
    own_key = run_openssl("pkey", "-in", pki["req.key"], "-pubout").stdout
    assert cert_key == own_key
    text = run_openssl("x509", "-in", pki["req.pem"], "-noout", "-ext", "subjectAltName").stdout
    assert "email:req@example.net" in text


def test_openssl_verifies_the_crls(pki: Files) -> None:
    done = run_openssl(
        "crl", "-in", pki["ca.crl"], "-CAfile", pki["chain.pem"], "-verify", "-noout"
    )
    assert done.returncode == 0 and "verify OK" in done.stdout + done.stderr, done.stderr
    done = run_openssl(
        "crl", "-in", pki["root.crl"], "-CAfile", pki["root.pem"], "-verify", "-noout"
    )
    assert done.returncode == 0 and "verify OK" in done.stdout + done.stderr, done.stderr
    # A CRL checked against the wrong CA fails.
    done = run_openssl("crl", "-in", pki["ca.crl"], "-CAfile", pki["root.pem"], "-verify", "-noout")
    assert done.returncode != 0


def test_openssl_crl_check_sees_the_revocation(pki: Files) -> None:
    check = ("verify", "-crl_check_all", "-CAfile", pki["chain.pem"], "-CRLfile", pki["crls.pem"])
    done = run_openssl(*check, pki["ok.pem"])
    assert done.returncode == 0, done.stdout + done.stderr
    done = run_openssl(*check, pki["gone.pem"])
    assert done.returncode != 0
    assert "certificate revoked" in done.stdout + done.stderr
