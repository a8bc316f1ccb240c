"""Real peers for ``smimecli sign`` and ``smimecli verify``: OpenSSL and gpgsm, both ways."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smimecli.verify.message import split_signed
from tests.conftest import Pki, Result, require_tool
from tests.pki import PASSWORD, import_into_gpgsm

pytestmark = pytest.mark.interop

Cli = Callable[..., Result]
MESSAGE = (
    b"From: Alice <alice@example.com>\nTo: bob@example.com\nSubject: interop\n"
    b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
    b"Gr\xc3\xbc\xc3\x9fe \nFrom the CLI\n"
)
PW = {"PW": PASSWORD.decode()}


def _run(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, env=env, timeout=120, check=False
    )


def _sign(cli: Cli, pfx: Path, out: Path, *extra: str) -> Path:
    args = ["sign", "--signer-pfx", pfx, "--password-env", "PW", "-o", out, *extra]
    done = cli(args, input=MESSAGE, env=PW)
    assert done.exit_code == 0, done.output
    return out


@pytest.mark.parametrize("opaque", [False, True], ids=["detached", "opaque"])
@pytest.mark.parametrize(
    ("who", "extra", "algorithm"),
    [
        ("alice", (), "rsaEncryption"),
        ("alice", ("--pss", "--hash", "sha384"), "rsassaPss"),
        ("carol_ec", ("--hash", "sha512"), "ecdsa-with-SHA512"),
    ],
    ids=["rsa", "pss", "ec"],
)
def test_openssl_verifies_smimecli_sign(
    cli: Cli,
    pki: Pki,
    tmp_path: Path,
    opaque: bool,
    who: str,
    extra: tuple[str, ...],
    algorithm: str,
) -> None:
    openssl = require_tool("openssl")
    ident = getattr(pki, who)
    signed = _sign(cli, ident.pfx, tmp_path / "s.eml", *extra, *(["--opaque"] if opaque else []))
    content = tmp_path / "content"
    done = _run(
        openssl, "cms", "-verify", "-CAfile", pki.ca.cert_pem, "-in", signed, "-out", content
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"Verification successful" in done.stderr
    assert b"=46rom the CLI" in content.read_bytes()
    shown = _run(openssl, "cms", "-cmsout", "-print", "-in", signed)
    assert algorithm.encode() in shown.stdout


@pytest.mark.parametrize(
    "extra",
    [(), ("-nodetach",), ("-keyopt", "rsa_padding_mode:pss"), ("-md", "sha512")],
    ids=["detached", "opaque", "pss", "sha512"],
)
def test_smimecli_verifies_openssl_sign(
    cli: Cli, pki: Pki, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    openssl = require_tool("openssl")
    body = tmp_path / "body.txt"
    body.write_bytes(b"Content-Type: text/plain\r\n\r\nsigned by openssl\r\n")
    args: list[str | Path] = [
        "cms",
        "-sign",
        "-signer",
        pki.alice.cert_pem,
        "-inkey",
        pki.alice.key_pem,
    ]
    done = _run(openssl, *args, "-in", body, "-from", "alice@example.com", *extra)
    assert done.returncode == 0, done.stderr.decode()
    signed = tmp_path / "signed.eml"
    signed.write_bytes(done.stdout)
    content = tmp_path / "content.eml"
    result = cli(["verify", "--json", "--ca", pki.ca.cert_pem, signed, "-o", content])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "valid"
    assert content.read_bytes().endswith(b"\n\nsigned by openssl\n")  # the input's LF
    # Without the root it is a good signature by an untrusted signer.
    assert cli(["verify", signed]).exit_code == 77


@pytest.fixture
def gnupg_home(tmp_path: Path, pki: Pki) -> Iterator[Path]:
    """A gpgsm home trusting the test root; its gpg-agent and dirmngr are stopped after."""
    require_tool("gpgsm")
    from cryptography.hazmat.primitives import hashes

    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    fingerprint = pki.ca.cert.fingerprint(hashes.SHA1()).hex(":").upper()
    (home / "trustlist.txt").write_text(f"{fingerprint} S\n")
    try:
        done = _gpgsm(home, ["--import", str(pki.ca.cert_pem)])
        assert done.returncode == 0, done.stderr.decode()
        yield home
    finally:
        for daemon in ("gpg-agent", "dirmngr"):
            subprocess.run(
                ["gpgconf", "--kill", daemon],
                env=dict(os.environ, GNUPGHOME=str(home)),
                capture_output=True,
                check=False,
            )


def _gpgsm(home: Path, args: list[str], data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            require_tool("gpgsm"),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase-fd",
            "0",
            "--disable-crl-checks",
            "--disable-policy-checks",
            *args,
        ],
        input=data,
        capture_output=True,
        env=dict(os.environ, GNUPGHOME=str(home)),
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("who", ["alice", "carol_ec"])
def test_gpgsm_verifies_smimecli_detached(
    cli: Cli, pki: Pki, tmp_path: Path, gnupg_home: Path, who: str
) -> None:
    signed = _sign(cli, getattr(pki, who).pfx, tmp_path / "s.eml")
    _headers, entity, signature = split_signed(signed.read_bytes())
    assert signature is not None
    (tmp_path / "entity").write_bytes(entity)
    (tmp_path / "sig.der").write_bytes(signature)
    done = _gpgsm(gnupg_home, ["--verify", str(tmp_path / "sig.der"), str(tmp_path / "entity")])
    assert done.returncode == 0, done.stderr.decode()
    assert b"Good signature" in done.stderr
    # One byte changed: gpgsm sees it too.
    (tmp_path / "entity").write_bytes(entity.replace(b"CLI", b"CLi"))
    done = _gpgsm(gnupg_home, ["--verify", str(tmp_path / "sig.der"), str(tmp_path / "entity")])
    assert done.returncode != 0
    assert b"message digest attribute does not match" in done.stderr


def test_smimecli_verifies_gpgsm_detached(
    cli: Cli, pki: Pki, tmp_path: Path, gnupg_home: Path
) -> None:

    done = import_into_gpgsm(
        lambda args, data: _gpgsm(gnupg_home, args, data), pki.alice, pki.ca, PASSWORD, tmp_path
    )
    assert done.returncode == 0, done.stderr.decode()
    entity = b"Content-Type: text/plain\r\n\r\nsigned by gpgsm\r\n"
    (tmp_path / "data").write_bytes(entity)
    sig = tmp_path / "data.sig"
    args = ["-u", "alice@example.com", "--detach-sign", "-o", str(sig), str(tmp_path / "data")]
    done = _gpgsm(gnupg_home, args, PASSWORD + b"\n")
    assert done.returncode == 0, done.stderr.decode()
    # gpgsm writes the bare CMS signature: put it into multipart/signed (RFC 8551 3.5.3).
    b64 = base64.encodebytes(sig.read_bytes())
    message = (
        b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: gpgsm\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol="application/'
        b'pkcs7-signature"; micalg=sha-256; boundary="b1"\r\n\r\n--b1\r\n'
        + entity
        + b"\r\n--b1\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + b64.replace(b"\n", b"\r\n")
        + b"\r\n--b1--\r\n"
    )
    mail = tmp_path / "gpgsm.eml"
    mail.write_bytes(message)
    result = cli(["verify", "--json", "--ca", pki.ca.cert_pem, mail])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "valid" and doc["signer"]["emails"] == ["alice@example.com"]
    mail.write_bytes(message.replace(b"by gpgsm", b"by gpgSM"))
    result = cli(["verify", "--ca", pki.ca.cert_pem, mail])
    assert result.exit_code == 65, result.output
    assert "the content was changed" in result.stderr


@pytest.mark.parametrize("armor", [False, True])
def test_smimecli_verifies_gpgsm_opaque_as_written(
    cli: Cli, pki: Pki, tmp_path: Path, gnupg_home: Path, armor: bool
) -> None:
    # gpgsm --sign writes the bare signed-data holding the content: DER, or with --armor
    # between "-----BEGIN SIGNED MESSAGE-----" lines. verify reads both as they are.
    done = import_into_gpgsm(
        lambda args, data: _gpgsm(gnupg_home, args, data), pki.alice, pki.ca, PASSWORD, tmp_path
    )
    assert done.returncode == 0, done.stderr.decode()
    entity = b"Content-Type: text/plain\r\n\r\nsigned by gpgsm, opaque\r\n"
    (tmp_path / "data").write_bytes(entity)
    signed = tmp_path / ("data.asc" if armor else "data.p7m")
    args = ["-u", "alice@example.com", "--sign", "-o", str(signed), str(tmp_path / "data")]
    done = _gpgsm(gnupg_home, ["--armor", *args] if armor else args, PASSWORD + b"\n")
    assert done.returncode == 0, done.stderr.decode()
    assert signed.read_bytes().startswith(b"-----BEGIN" if armor else b"\x30")
    content = tmp_path / "content.eml"
    result = cli(["verify", "--json", "--ca", pki.ca.cert_pem, signed, "-o", content])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "valid" and doc["signer"]["emails"] == ["alice@example.com"]
    assert content.read_bytes().endswith(entity)
