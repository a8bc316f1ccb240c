"""``smimecli gen-root`` and ``issue-user``: outputs, the store, and every error path."""

from __future__ import annotations

import datetime as dt
import json
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from smimecli.certs.formats import PrivateKey
from smimecli.certs.pfx import write_pfx
from smimecli.certs.store import Store
from tests.conftest import Pki, Result, assert_error, run_cli
from tests.pki import PASSWORD

Cli = Callable[..., Result]
SECRET = b"lab-secret"


@dataclass
class Lab:
    folder: Path
    store: Path
    password_file: Path
    root_pfx: Path
    root_pem: Path
    thumbprint: str


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """One root made by gen-root, as a .pfx and a .pem, and in a store of its own."""
    folder = tmp_path_factory.mktemp("lab")
    password_file = folder / "password.txt"
    password_file.write_bytes(SECRET + b"\n")
    store = folder / "store"
    result = run_cli(
        [
            "gen-root",
            "--out-pfx",
            folder / "root.pfx",
            "--out-pem",
            folder / "root.pem",
            "--password-file",
            password_file,
        ],
        env={"SMIMECLI_STORE": str(store)},
    )
    assert result.exit_code == 0, result.output
    thumbprint = result.stdout.decode().split()[0]
    return Lab(folder, store, password_file, folder / "root.pfx", folder / "root.pem", thumbprint)


def store_dump(folder: Path) -> list[tuple[Any, ...]]:
    if not (folder / "store.sqlite3").exists():
        return []
    with Store.open(folder, create=False) as store:
        return store.dump()


def assert_failed(result: Result, status: int, folder: Path, before: set[str]) -> None:
    """The status, exactly one stderr line, no traceback, and no new file in ``folder``."""
    assert result.exit_code == status, result.output
    assert result.stderr.startswith("smimecli: error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == b""
    assert {p.name for p in folder.iterdir()} == before


# --- gen-root -----------------------------------------------------------------------------


def test_gen_root_defaults_into_store(cli: Cli, tmp_path: Path) -> None:
    result = cli(["gen-root"])
    assert result.exit_code == 0, result.output
    thumbprint, subject = result.stdout.decode().rstrip("\n").split("  ", 1)
    assert subject == "CN=Test Root V1"
    with Store.open(tmp_path / "store", create=False) as store:
        (entry,) = store.find(thumbprint)
        assert entry.thumbprint == thumbprint
        assert entry.store_names == ("my", "root")
        assert entry.has_key
        key = store.private_key(thumbprint)
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
        assert entry.cert.subject.rfc4514_string() == "CN=Test Root V1"


def test_gen_root_files(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "pw").write_bytes(SECRET)
    result = cli(
        [
            "gen-root",
            "--subject",
            'CN=Lab Root,O="Example, Inc.",C=DE',
            "--key-algorithm",
            "ecdsa-p384",
            "--hash",
            "sha384",
            "--days",
            "30",
            "--no-store",
            "--out-pfx",
            tmp_path / "r.pfx",
            "--out-cer",
            tmp_path / "r.cer",
            "--out-pem",
            tmp_path / "r.pem",
            "--out-key",
            tmp_path / "r.key",
            "--password-file",
            tmp_path / "pw",
            "--friendly-name",
            "Lab Root",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["subject"] == r"CN=Lab Root, O=Example\, Inc., C=DE"
    assert doc["key_algorithm"] == "ecdsa-p384" and doc["hash"] == "sha384"
    assert doc["stores"] == []
    assert set(doc["files"]) == {"pfx", "cer", "pem", "key"}
    assert not (tmp_path / "store").exists()
    cert = x509.load_der_x509_certificate((tmp_path / "r.cer").read_bytes())
    assert cert == x509.load_pem_x509_certificate((tmp_path / "r.pem").read_bytes())
    assert (tmp_path / "r.pem").read_bytes().count(b"-----BEGIN") == 1
    assert doc["thumbprint"] == cert.fingerprint(hashes.SHA1()).hex().upper()
    bundle = pkcs12.load_pkcs12((tmp_path / "r.pfx").read_bytes(), SECRET)
    assert bundle.cert is not None and bundle.cert.certificate == cert
    assert bundle.cert.friendly_name == b"Lab Root"
    assert isinstance(bundle.key, ec.EllipticCurvePrivateKey)
    key = serialization.load_pem_private_key((tmp_path / "r.key").read_bytes(), SECRET)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.private_numbers() == bundle.key.private_numbers()
    assert (tmp_path / "r.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    for name in ("r.pfx", "r.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_subject_shown_by_certs_list_reads_back_into_gen_root(cli: Cli, tmp_path: Path) -> None:
    # One formatter for subjects: what certs list prints (a comma escaped the RFC 4514
    # way) is what gen-root prints and what gen-root --subject reads back.
    (tmp_path / "pw").write_bytes(SECRET)
    common = ["--password-file", str(tmp_path / "pw"), "--days", "30", "--json"]
    made = cli(["gen-root", "--subject", 'CN=Lab Root,O="Org, Inc.",C=DE', *common])
    assert made.exit_code == 0, made.output
    shown = json.loads(made.stdout)["subject"]
    assert shown == r"CN=Lab Root, O=Org\, Inc., C=DE"
    listed = json.loads(cli(["certs", "list", "--json"]).stdout)
    assert [doc["subject"] for doc in listed] == [shown]
    table = cli(["certs", "list"], env={"COLUMNS": "300"}).stdout.decode()
    assert shown in table
    again = cli(
        [
            "gen-root",
            "--subject",
            shown,
            "--no-store",
            "--out-cer",
            str(tmp_path / "again.cer"),
            *common,
        ]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["subject"] == shown
    cert = x509.load_der_x509_certificate((tmp_path / "again.cer").read_bytes())
    organization = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert [attribute.value for attribute in organization] == ["Org, Inc."]


def test_gen_root_password_from_env(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        [
            "gen-root",
            "--no-store",
            "--out-pfx",
            tmp_path / "r.pfx",
            "--password-env",
            "LABPW",
            "--pfx-encryption",
            "legacy",
        ],
        env={"LABPW": "from-env"},
    )
    assert result.exit_code == 0, result.output
    bundle = pkcs12.load_pkcs12((tmp_path / "r.pfx").read_bytes(), b"from-env")
    assert bundle.key is not None


# --- issue-user ---------------------------------------------------------------------------


def test_issue_user_from_store(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "user.pfx"
    result = run_cli(
        [
            "issue-user",
            "--email",
            "test@example.net",
            "--subject",
            "E=test@example.net,CN=SMIME Tester 2048",
            "--upn",
            "tester@corp.example",
            "--signer",
            lab.thumbprint[:10],
            "--out-pfx",
            out,
            "--password-file",
            lab.password_file,
        ],
        env={"SMIMECLI_STORE": str(lab.store)},
    )
    assert result.exit_code == 0, result.output
    thumbprint, subject = result.stdout.decode().rstrip("\n").split("  ", 1)
    assert subject == "E=test@example.net, CN=SMIME Tester 2048"
    bundle = pkcs12.load_pkcs12(out.read_bytes(), SECRET)
    assert bundle.cert is not None
    root = x509.load_pem_x509_certificate(lab.root_pem.read_bytes())
    assert [c.certificate for c in bundle.additional_certs] == [root]
    bundle.cert.certificate.verify_directly_issued_by(root)
    san = bundle.cert.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert san.get_values_for_type(x509.RFC822Name) == ["test@example.net"]
    assert len(san.get_values_for_type(x509.OtherName)) == 1
    with Store.open(lab.store, create=False) as store:
        (entry,) = store.find(thumbprint)
        assert entry.thumbprint == thumbprint and entry.store_names == ("my",) and entry.has_key
        assert [e.thumbprint for e in store.by_email("test@example.net")] == [thumbprint]


def test_issue_user_from_pfx_without_store(lab: Lab, cli: Cli, tmp_path: Path) -> None:
    result = cli(
        [
            "issue-user",
            "--email",
            "ec@example.net",
            "--key-algorithm",
            "ecdsa-p256",
            "--signer-pfx",
            lab.root_pfx,
            "--signer-password-file",
            lab.password_file,
            "--no-smime-capabilities",
            "--out-cer",
            tmp_path / "ec.cer",
            "--no-store",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["subject"] == "E=ec@example.net, CN=ec@example.net"
    assert doc["key_algorithm"] == "ecdsa-p256" and doc["smime_capabilities"] is False
    assert doc["stores"] == [] and not (tmp_path / "store").exists()
    cert = x509.load_der_x509_certificate((tmp_path / "ec.cer").read_bytes())
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_agreement and not usage.key_encipherment
    assert cert.issuer.rfc4514_string() == "CN=Test Root V1"


def test_issue_user_signer_password_env(lab: Lab, cli: Cli, tmp_path: Path) -> None:
    result = cli(
        [
            "issue-user",
            "--email",
            "u@example.net",
            "--signer-pfx",
            lab.root_pfx,
            "--signer-password-env",
            "SIGNERPW",
            "--no-store",
        ],
        env={"SIGNERPW": SECRET.decode()},
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.decode().endswith("  E=u@example.net, CN=u@example.net\n"), result.output


# --- errors: status, one line, nothing written --------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--subject", "Test Root"],
        ["--subject", 'CN="open'],
        ["--subject", "XX=1"],
        ["--days", "0"],
        ["--days", "-3"],
        ["--days", "many"],
        ["--key-length", "1024"],
        ["--key-length", "20000"],
        ["--key-algorithm", "ecdsa-p256", "--key-length", "2048"],
        ["--key-algorithm", "dsa"],
        ["--hash", "md5"],
        ["--key-usage", "CertSign,Bogus"],
        ["--pfx-encryption", "rc4", "--password-env", "PW"],
        ["--out-pfx", "{dir}/a.pfx"],  # no password source
        ["--out-key", "{dir}/a.key"],  # no password source
        ["--out-pfx", "{dir}/a.pfx", "--password-file", "{dir}/empty"],
        ["--out-pfx", "{dir}/a.pfx", "--password-env", "UNSET_PW_VARIABLE"],
        ["--out-pfx", "{dir}/a.pfx", "--password-env", "PW", "--password-file", "{dir}/empty"],
        ["--out-cer", "{dir}/same", "--out-pem", "{dir}/same"],
        ["--no-such-option"],
    ],
)
def test_gen_root_usage_errors(cli: Cli, tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "empty").write_bytes(b"")
    before = {p.name for p in out.iterdir()}
    result = cli(
        ["gen-root", "--out-cer", out / "root.cer", *[a.format(dir=out) for a in args]],
        env={"PW": "pw"},
    )
    assert_failed(result, 64, out, before)
    assert not (tmp_path / "store").exists()


def test_gen_root_output_folder_missing(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        [
            "gen-root",
            "--out-pem",
            tmp_path / "root.pem",
            "--out-cer",
            tmp_path / "missing" / "root.cer",
        ]
    )
    # The store this failed command would have created is gone again.
    assert_failed(result, 73, tmp_path, set())


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["--email", "not-an-address", "--signer-pfx", "{root_pfx}"], 64),
        (["--email", "u@example.net"], 64),  # no signer
        (["--email", "u@example.net", "--signer", "x", "--signer-pfx", "{root_pfx}"], 64),
        (["--email", "u@example.net", "--signer-pfx", "{root_pfx}", "--days", "0"], 64),
        (["--email", "u@example.net", "--signer-pfx", "{root_pfx}", "--subject", "CN"], 64),
        (["--email", "u@example.net", "--signer-pfx", "{root_pfx}", "--upn", " "], 64),
        (
            [
                "--email",
                "u@example.net",
                "--signer-pfx",
                "{root_pfx}",
                "--signer-password-env",
                "PW",
                "--signer-password-file",
                "{pw}",
            ],
            64,
        ),
        (["--email", "u@example.net", "--signer-pfx", "{dir}/missing.pfx"], 66),
        (["--email", "u@example.net", "--signer-pfx", "{root_pem}"], 65),  # no key
        (
            [
                "--email",
                "u@example.net",
                "--signer-pfx",
                "{user_pfx}",
                "--signer-password-env",
                "USERPW",
            ],
            65,
        ),  # not a CA
        (
            [
                "--email",
                "u@example.net",
                "--signer-pfx",
                "{keyless_pfx}",
                "--signer-password-file",
                "{pw}",
            ],
            65,
        ),
        (
            [
                "--email",
                "u@example.net",
                "--signer-pfx",
                "{root_pfx}",
                "--signer-password-env",
                "PW",
            ],
            77,
        ),  # wrong password
        (["--email", "u@example.net", "--signer-pfx", "{root_pfx}"], 77),  # no password
    ],
)
def test_issue_user_errors(
    lab: Lab, pki: Pki, cli: Cli, tmp_path: Path, args: list[str], status: int
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    root = x509.load_pem_x509_certificate(lab.root_pem.read_bytes())
    keyless = out / "keyless.pfx"
    keyless.write_bytes(write_pfx(None, root, (), password=SECRET))
    before = {p.name for p in out.iterdir()}
    values = {
        "root_pfx": lab.root_pfx,
        "root_pem": lab.root_pem,
        "pw": lab.password_file,
        "user_pfx": pki.alice.pfx,
        "keyless_pfx": keyless,
        "dir": out,
    }
    result = cli(
        [
            "issue-user",
            "--out-cer",
            out / "u.cer",
            "--out-pfx",
            out / "u.pfx",
            "--password-file",
            lab.password_file,
            *[a.format(**values) for a in args],
        ],
        env={"PW": "wrong", "USERPW": PASSWORD.decode()},
    )
    assert_failed(result, status, out, before)
    assert not (tmp_path / "store").exists()


def _store_with(folder: Path, *certs: tuple[x509.Certificate, PrivateKey | None, str]) -> None:
    with Store.open(folder, create=True) as store:
        for cert, key, name in certs:
            store.add(cert, key=key, store_name=name)


@pytest.mark.parametrize(
    ("selector", "why"),
    [
        ("Nobody Root", "no certificate"),
        ("Test Root V1", "no private key"),
        ("alice@example.com", "not a CA"),
    ],
)
def test_issue_user_store_signer_errors(
    pki: Pki, cli: Cli, tmp_path: Path, selector: str, why: str
) -> None:
    store = tmp_path / "store"
    _store_with(store, (pki.ca.cert, None, "root"), (pki.alice.cert, pki.alice.key, "my"))
    before_store = store_dump(store)
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        ["issue-user", "--email", "u@example.net", "--signer", selector, "--out-cer", out / "u.cer"]
    )
    assert_failed(result, 65, out, set())
    assert why in result.stderr
    assert store_dump(store) == before_store


@pytest.mark.parametrize("extra", [[], ["--no-store"]])
def test_issue_user_signer_without_any_store(cli: Cli, tmp_path: Path, extra: list[str]) -> None:
    result = cli(
        [
            "issue-user",
            "--email",
            "u@example.net",
            "--signer",
            "Test Root V1",
            "--out-cer",
            tmp_path / "u.cer",
            *extra,
        ]
    )
    assert_failed(result, 78, tmp_path, set())
    assert "no certificate store" in result.stderr


# --- gen-ca, --csr, dates, gen-crl, strict ------------------------------------------------


def _pki(cli: Cli, tmp_path: Path) -> None:
    """A root and an intermediate CA made through the CLI in the test's store."""
    assert cli(["gen-root", "--out-pem", tmp_path / "root.pem"]).exit_code == 0
    result = cli(
        [
            "gen-ca",
            "--signer",
            "Test Root V1",
            "--out-pem",
            tmp_path / "ca.pem",
            "--crl-url",
            "http://crl.example/root.crl",
        ]
    )
    assert result.exit_code == 0, result.output


def test_gen_ca_goes_to_my_and_ca(cli: Cli, tmp_path: Path) -> None:
    _pki(cli, tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    with Store.open(tmp_path / "store", create=False) as store:
        (entry,) = store.find("Test Intermediate CA V1")
        assert entry.store_names == ("my", "ca")
        assert entry.has_key
    result = cli(
        ["issue-user", "--signer", "Test Intermediate CA V1", "--email", "u@example.net", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["issuer"] == "CN=Test Intermediate CA V1"


def test_gen_ca_needs_a_stored_signer(cli: Cli, tmp_path: Path) -> None:
    assert cli(["gen-root", "--no-store", "--out-pem", tmp_path / "r.pem"]).exit_code == 0
    before = {p.name for p in tmp_path.iterdir()}
    result = cli(["gen-ca", "--signer", "Test Root V1", "--out-pem", tmp_path / "ca.pem"])
    assert_failed(result, 78, tmp_path, before)
    assert "no certificate store" in result.stderr


@pytest.mark.parametrize("command", ["gen-root", "gen-ca", "issue-user"])
def test_not_after_before_not_before_is_64(cli: Cli, tmp_path: Path, command: str) -> None:
    _pki(cli, tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    signer = {"gen-root": [], "gen-ca": ["--signer", "Test Root V1"]}.get(
        command, ["--signer", "Test Root V1", "--email", "u@example.net"]
    )
    args = [command, *signer, "--not-before", "2031-01-02", "--not-after", "2031-01-01"]
    result = cli([*args, "--out-pem", tmp_path / "x.pem"])
    assert_failed(result, 64, tmp_path, before)
    assert "--not-after 2031-01-01T00:00:00Z must lie after --not-before" in result.stderr


def test_absolute_dates_on_the_command_line(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        [
            "gen-root",
            "--no-store",
            "--not-before",
            "2030-01-01T08:00:00+02:00",
            "--not-after",
            "2035-06-30",
            "--out-pem",
            tmp_path / "r.pem",
        ]
    )
    assert result.exit_code == 0, result.output
    cert = x509.load_pem_x509_certificate((tmp_path / "r.pem").read_bytes())
    assert cert.not_valid_before_utc.isoformat() == "2030-01-01T06:00:00+00:00"
    assert cert.not_valid_after_utc.isoformat() == "2035-06-30T00:00:00+00:00"
    result = cli(["gen-root", "--no-store", "--not-after", "someday", "--out-pem", tmp_path / "x"])
    assert result.exit_code == 64
    assert "--not-after 'someday' is not an ISO 8601 date" in result.stderr


def _write_csr(path: Path, email: str = "req@example.net") -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, email)]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key


def test_issue_user_from_csr(cli: Cli, tmp_path: Path) -> None:
    _pki(cli, tmp_path)
    key = _write_csr(tmp_path / "req.csr")
    result = cli(
        [
            "issue-user",
            "--signer",
            "Test Intermediate CA V1",
            "--csr",
            tmp_path / "req.csr",
            "--out-pem",
            tmp_path / "req.pem",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["emails"] == ["req@example.net"]
    assert doc["stores"] == ["other"]
    assert doc["key_algorithm"] == "ecdsa-p256"
    cert = x509.load_pem_x509_certificate((tmp_path / "req.pem").read_bytes())
    assert cert.public_key() == key.public_key()
    with Store.open(tmp_path / "store", create=False) as store:
        (entry,) = store.find("req@example.net")
        assert entry.store_names == ("other",)
        assert not entry.has_key


def test_issue_user_csr_refuses_key_outputs_and_bad_requests(cli: Cli, tmp_path: Path) -> None:
    _pki(cli, tmp_path)
    _write_csr(tmp_path / "req.csr")
    before = {p.name for p in tmp_path.iterdir()}
    signer = ["issue-user", "--signer", "Test Root V1"]
    result = cli([*signer, "--csr", tmp_path / "req.csr", "--out-pfx", tmp_path / "x.pfx"])
    assert_failed(result, 64, tmp_path, before)
    assert "the private key stays with the requester" in result.stderr
    (tmp_path / "bad.csr").write_bytes(b"not a request")
    before = {p.name for p in tmp_path.iterdir()}
    result = cli([*signer, "--csr", tmp_path / "bad.csr", "--out-pem", tmp_path / "x.pem"])
    assert_failed(result, 65, tmp_path, before)
    assert "is not a PKCS#10 certificate request" in result.stderr
    result = cli([*signer, "--csr", tmp_path / "missing.csr", "--out-pem", tmp_path / "x.pem"])
    assert_failed(result, 66, tmp_path, before)
    result = cli([*signer, "--out-pem", tmp_path / "x.pem"])
    assert_failed(result, 64, tmp_path, before)
    assert "give --email ADDR" in result.stderr


def test_gen_crl_records_revocations(cli: Cli, tmp_path: Path) -> None:
    _pki(cli, tmp_path)
    issue = ["issue-user", "--signer", "Test Intermediate CA V1", "--email"]
    assert cli([*issue, "gone@example.net"]).exit_code == 0
    assert cli([*issue, "kept@example.net"]).exit_code == 0
    result = cli(["gen-crl", "--signer", "Test Intermediate CA V1", "--revoke", "gone@example.net"])
    assert result.exit_code == 0, result.output
    crl = x509.load_pem_x509_crl(result.stdout)
    with Store.open(tmp_path / "store", create=False) as store:
        gone = store.find("gone@example.net")[0].cert
        kept = store.find("kept@example.net")[0].cert
    assert crl.get_revoked_certificate_by_serial_number(gone.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.serial_number) is None
    # The revocation stays recorded: a later CRL (DER, to a file) lists it again.
    result = cli(
        ["gen-crl", "--signer", "Test Intermediate CA V1", "--der", "-o", tmp_path / "ca.crl"]
    )
    assert result.exit_code == 0, result.output
    again = x509.load_der_x509_crl((tmp_path / "ca.crl").read_bytes())
    assert [r.serial_number for r in again] == [gone.serial_number]
    # The root's CRL is separate and empty.
    result = cli(["gen-crl", "--signer", "Test Root V1", "--next-update", "7"])
    assert result.exit_code == 0, result.output
    root_crl = x509.load_pem_x509_crl(result.stdout)
    assert list(root_crl) == []
    assert root_crl.next_update_utc is not None
    assert root_crl.next_update_utc - root_crl.last_update_utc == dt.timedelta(days=7)


def test_gen_crl_refuses_a_foreign_certificate(cli: Cli, tmp_path: Path) -> None:
    _pki(cli, tmp_path)
    assert (
        cli(["issue-user", "--signer", "Test Root V1", "--email", "r@example.net"]).exit_code == 0
    )
    result = cli(["gen-crl", "--signer", "Test Intermediate CA V1", "--revoke", "r@example.net"])
    assert result.exit_code == 65
    assert "was not issued by the CA CN=Test Intermediate CA V1" in result.stderr
    assert result.stdout == b""
    with Store.open(tmp_path / "store", create=False) as store:
        assert not store.is_revoked(store.find("r@example.net")[0].cert)
    result = cli(["gen-crl", "--signer", "Test Root V1", "--next-update", "0"])
    assert result.exit_code == 64
    assert "--next-update must be at least 1 day" in result.stderr


def test_strict_profile_on_the_command_line(cli: Cli, tmp_path: Path) -> None:
    _pki(cli, tmp_path)
    base = ["issue-user", "--signer", "Test Intermediate CA V1", "--email", "s@example.net"]
    result = cli([*base, "--profile", "strict", "--out-pem", tmp_path / "s.pem", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["profile"] == "strict"
    cert = x509.load_pem_x509_certificate((tmp_path / "s.pem").read_bytes())
    cert.extensions.get_extension_for_class(x509.CertificatePolicies)
    before = {p.name for p in tmp_path.iterdir()}
    result = cli([*base, "--profile", "strict", "--days", "900", "--out-pem", tmp_path / "x"])
    assert_failed(result, 64, tmp_path, before)
    assert "--profile strict allows a validity under 825 days" in result.stderr


def _lint_findings(pem: Path) -> list[str]:
    import shutil
    import subprocess

    tool = shutil.which("lint_cabf_smime_cert")
    if tool is None:
        pytest.skip("pkilint is not installed (pip install -e '.[test]')")
    done = subprocess.run(
        [tool, "lint", "-t", "MAILBOX-STRICT", "-s", "ERROR", "-f", "TEXT", str(pem)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return [
        line.strip() for line in done.stdout.splitlines() if "(ERROR)" in line or "(FATAL)" in line
    ]


@pytest.mark.parametrize("algorithm", ["rsa", "ecdsa-p256", "ecdsa-p384"])
def test_strict_profile_passes_pkilint(cli: Cli, tmp_path: Path, algorithm: str) -> None:
    """pkilint's mailbox-strict validation finds no ERROR or FATAL in a strict certificate.

    Only -s ERROR findings are counted: pkilint also warns that authorityInformationAccess
    and (without --crl-url) cRLDistributionPoints are missing. A lab CA publishes neither
    an OCSP responder nor an issuer URL, and the Baseline Requirements make both a SHOULD
    for the CA's operations, not a property of the certificate profile; a lab root is not
    a publicly trusted CA, so findings about the issuer are not the profile's business.
    """
    _pki(cli, tmp_path)
    pem = tmp_path / "strict.pem"
    result = cli(
        [
            "issue-user",
            "--signer",
            "Test Intermediate CA V1",
            "--email",
            "strict@example.net",
            "--profile",
            "strict",
            "--key-algorithm",
            algorithm,
            "--crl-url",
            "http://crl.example.com/ca.crl",  # a public name: pkilint refuses .example
            "--out-pem",
            pem,
        ]
    )
    assert result.exit_code == 0, result.output
    assert _lint_findings(pem) == []


def test_powershell_profile_fails_pkilint_strict(cli: Cli, tmp_path: Path) -> None:
    """The check above can fail: the default profile lacks the policy OID (and has a UPN)."""
    _pki(cli, tmp_path)
    pem = tmp_path / "ps.pem"
    result = cli(
        [
            "issue-user",
            "--signer",
            "Test Root V1",
            "--email",
            "p@example.net",
            "--upn",
            "p@corp.example",
            "--out-pem",
            pem,
        ]
    )
    assert result.exit_code == 0, result.output
    findings = _lint_findings(pem)
    assert any("certificate_policies_extension_missing" in f for f in findings), findings


# --- certs verify and certs list --expiring -----------------------------------------------


def test_certs_verify_exit_statuses(cli: Cli, tmp_path: Path) -> None:
    _pki(cli, tmp_path)
    issue = ["issue-user", "--signer", "Test Intermediate CA V1", "--email"]
    assert cli([*issue, "ok@example.net", "--out-pem", tmp_path / "ok.pem"]).exit_code == 0
    result = cli(["certs", "verify", "ok@example.net"])
    assert result.exit_code == 0, result.output
    text = result.stdout.decode()
    assert "CN=ok@example.net -> CN=Test Intermediate CA V1 -> CN=Test Root V1" in text
    assert "result:      OK" in text
    # A file works too, and --json says the same.
    result = cli(["certs", "verify", tmp_path / "ok.pem", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["trusted"] and doc["ok"] and doc["encryption"]["usable"]
    assert len(doc["chain"]) == 3
    # Revoked by gen-crl: 77 with the reason.
    assert cli(["gen-crl", "--signer", "Test Intermediate CA V1", "--revoke", "ok@example.net"])
    result = cli(["certs", "verify", "ok@example.net"])
    assert result.exit_code == 77, result.output
    assert "NOT OK: revoked (recorded by gen-crl)" in result.stdout.decode()
    # Expired: 77.
    args = ["--not-before", "2020-01-01", "--not-after", "2021-01-01"]
    assert cli([*issue, "old@example.net", *args]).exit_code == 0
    result = cli(["certs", "verify", "old@example.net", "--json"])
    assert result.exit_code == 77
    assert json.loads(result.stdout)["problems"] == ["expired 2021-01-01"]
    # Untrusted: a root outside the store.
    assert cli(["gen-root", "--no-store", "--subject", "CN=Other", "--out-pem", tmp_path / "o.pem"])
    result = cli(["certs", "verify", tmp_path / "o.pem"])
    assert result.exit_code == 77
    assert "does not chain to a trusted root of the store" in result.stdout.decode()
    # Unparseable 65, missing 66, each with one line on stderr.
    (tmp_path / "junk.pem").write_bytes(b"junk")
    result = cli(["certs", "verify", tmp_path / "junk.pem"])
    assert_error(result, 65, f"{tmp_path / 'junk.pem'} is not a certificate file this tool reads")
    result = cli(["certs", "verify", tmp_path / "missing.pem"])
    assert_error(result, 66, f"cannot read {tmp_path / 'missing.pem'}: no such file")
    assert result.stderr.count("\n") == 1


def test_certs_verify_purpose(cli: Cli, tmp_path: Path) -> None:
    _pki(cli, tmp_path)
    result = cli(["certs", "verify", "Test Intermediate CA V1", "--purpose", "sign", "--json"])
    # A CA without emailProtection restrictions and with digitalSignature can sign mail.
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["subject"] == "CN=Test Intermediate CA V1" and doc["trusted"] and doc["ok"]
    result = cli(["certs", "verify", "Test Intermediate CA V1", "--purpose", "encrypt"])
    assert result.exit_code == 77
    assert "key usage does not allow key encipherment" in result.stdout.decode()
    result = cli(["certs", "verify", "Test Root V1", "--purpose", "any"])
    assert_error(result, 64, "unknown --purpose 'any' (use encrypt, sign or both)")


def test_certs_list_expiring(cli: Cli, tmp_path: Path) -> None:
    _pki(cli, tmp_path)
    issue = ["issue-user", "--signer", "Test Root V1", "--email"]
    assert cli([*issue, "soon@example.net", "--days", "10"]).exit_code == 0
    assert cli([*issue, "later@example.net", "--days", "100"]).exit_code == 0
    result = cli(["certs", "list", "--expiring", "2w", "--json"])
    assert result.exit_code == 1, result.output
    assert [d["emails"] for d in json.loads(result.stdout)] == [["soon@example.net"]]
    result = cli(["certs", "list", "--expiring", "200d"])
    assert result.exit_code == 1
    assert "later@example.net" in result.stdout.decode()
    result = cli(["certs", "list", "--expiring", "5d"])
    assert result.exit_code == 0, result.output
    assert "soon@example.net" not in result.stdout.decode()
    for bad in ("30", "1m", "d"):
        result = cli(["certs", "list", "--expiring", bad])
        assert result.exit_code == 64
        assert "give a period like 30d (days) or 4w (weeks)" in result.stderr


# --- existing output files: refused without --force -----------------------------------------


def _store_rows(store: Path) -> list[tuple[str, tuple[str, ...]]]:
    with Store.open(store, create=False, readonly=True) as opened:
        return sorted((e.thumbprint, e.store_names) for e in opened.certificates())


def test_gen_root_refuses_to_replace_a_key_file(cli: Cli, tmp_path: Path) -> None:
    key = tmp_path / "root.key"
    key.write_bytes(b"the old CA key\n")
    password = tmp_path / "pw"
    password.write_bytes(SECRET)
    args = ["gen-root", "--out-pem", tmp_path / "root.pem", "--out-key", key]
    result = cli([*args, "--password-file", password])
    assert result.exit_code == 73
    assert result.stderr == (
        f"smimecli: error: {key} exists: refusing to replace it (use --force to overwrite)\n"
    )
    # Checked before anything is made: no other output, no store.
    assert key.read_bytes() == b"the old CA key\n"
    assert not (tmp_path / "root.pem").exists()
    assert not (tmp_path / "store").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pw", "root.key"]
    forced = cli([*args, "--password-file", password, "--force"])
    assert forced.exit_code == 0, forced.output
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.parametrize("option", ["--out-pfx", "--out-cer", "--out-pem"])
def test_issue_user_and_gen_ca_refuse_existing_outputs(
    cli: Cli, tmp_path: Path, option: str
) -> None:
    _pki(cli, tmp_path)
    rows = _store_rows(tmp_path / "store")
    old = tmp_path / "old.out"
    old.write_bytes(b"keep me")
    fresh = tmp_path / "fresh.pem" if option != "--out-pem" else tmp_path / "fresh.cer"
    other = "--out-cer" if option == "--out-pem" else "--out-pem"
    password = tmp_path / "pw"
    password.write_bytes(SECRET)
    common = [option, old, other, fresh, "--password-file", password]
    for command in (
        ["issue-user", "--signer", "Test Intermediate CA V1", "--email", "u@example.net"],
        ["gen-ca", "--signer", "Test Root V1", "--subject", "CN=Second CA"],
    ):
        result = cli([*command, *common])
        assert result.exit_code == 73, result.output
        assert f"{old} exists: refusing to replace it (use --force" in result.stderr
        assert old.read_bytes() == b"keep me"
        assert not fresh.exists()
        assert _store_rows(tmp_path / "store") == rows


def test_gen_crl_replaces_an_older_crl(cli: Cli, tmp_path: Path) -> None:
    _pki(cli, tmp_path)
    crl = tmp_path / "root.crl"
    crl.write_bytes(b"an older CRL")
    result = cli(["gen-crl", "--signer", "Test Root V1", "-o", crl])
    assert result.exit_code == 0, result.output
    x509.load_pem_x509_crl(crl.read_bytes())


def test_notices_shown_as_warnings(cli: Cli, tmp_path: Path) -> None:
    """The library returns the warnings as notices; issue-user and gen-ca print them."""
    assert cli(["gen-root", "--days", "30"]).exit_code == 0
    done = cli(
        [
            "issue-user",
            "--signer",
            "Test Root V1",
            "--email",
            "a@example.net",
            "--subject",
            "E=b@example.net,CN=B",
            "--no-store",
        ]
    )
    assert done.exit_code == 0, done.output
    lines = done.stderr.splitlines()
    assert "smimecli: warning: the subject's E= (b@example.net) differs from --email " in (
        "\n".join(lines)
    )
    assert any(
        line.startswith("smimecli: warning: the new certificate (until ")
        and line.endswith("clients stop trusting it when the issuer expires")
        for line in lines
    ), lines
    done = cli(["gen-ca", "--signer", "Test Root V1", "--no-store"])
    assert done.exit_code == 0, done.output
    assert "outlives its issuer" in done.stderr
    done = cli(["gen-ca", "--signer", "Test Root V1", "--no-store", "--json"])
    assert done.exit_code == 0, done.output
    notices = json.loads(done.stdout)["notices"]
    assert [n["code"] for n in notices] == ["outlives-issuer"]
    assert notices[0]["text"] in done.stderr
