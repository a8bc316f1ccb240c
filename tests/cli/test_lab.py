"""``smimecli gen-root`` and ``issue-user``: outputs, the store, and every error path."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from smimecli.certs.pfx import write_pfx
from smimecli.certs.store import Store
from tests.conftest import Pki, Result, run_cli
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


def store_dump(folder: Path) -> list[object]:
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
        entry = store.by_thumbprint(thumbprint)
        assert entry is not None
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
    assert doc["subject"] == 'CN=Lab Root, O="Example, Inc.", C=DE'
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
        entry = store.by_thumbprint(thumbprint)
        assert entry is not None and entry.store_names == ("my",) and entry.has_key
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
    assert_failed(result, 73, tmp_path, {"store"})
    with Store.open(tmp_path / "store", create=False) as store:
        assert store.certificates() == []


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


def _store_with(folder: Path, *certs: tuple[x509.Certificate, object, str]) -> None:
    with Store.open(folder, create=True) as store:
        for cert, key, name in certs:
            store.add(cert, key=key, store_name=name)  # type: ignore[arg-type]


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
