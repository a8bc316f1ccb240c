"""Real peer, the other way round: what gpgsm encrypts, smimecli decrypts."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes

from tests.conftest import require_tool, stop_gnupg

pytestmark = pytest.mark.interop


@pytest.fixture
def gnupg_home(tmp_path: Path, pki: Any) -> Iterator[Path]:
    """A private GNUPGHOME that trusts the test root and knows the recipients' certificates."""
    require_tool("gpgsm")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    fingerprint = pki.ca.cert.fingerprint(hashes.SHA1()).hex().upper()
    colons = ":".join(fingerprint[i : i + 2] for i in range(0, 40, 2))
    # gpg-agent's trustlist.txt: a root fingerprint marked S (S/MIME) and relax.
    (home / "trustlist.txt").write_text(f"{colons} S relax\n")
    for pem in (pki.ca.cert_pem, pki.alice.cert_pem, pki.bob.cert_pem):
        done = _gpgsm(home, ["--import", str(pem)])
        assert done.returncode == 0, done.stderr.decode()
    yield home
    stop_gnupg(home)


def _gpgsm(home: Path, args: list[str], data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gpgsm", "--batch", "--disable-crl-checks", "--disable-policy-checks", *args],
        input=data,
        capture_output=True,
        env=dict(os.environ, GNUPGHOME=str(home)),
        timeout=60,
        check=False,
    )


ENTITY = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nEncrypted by gpgsm.\r\n"


@pytest.mark.parametrize(
    ("armor", "cipher", "name"),
    [
        (False, "AES256", "aes256"),
        (True, "AES256", "aes256"),
        (False, "AES", "aes128"),
        (False, "3DES", "3des"),
    ],
    ids=["der-aes256", "pem-aes256", "der-aes128", "der-3des"],
)
def test_smimecli_decrypts_gpgsm_output(
    gnupg_home: Path, tmp_path: Path, pki: Any, cli: Any, armor: bool, cipher: str, name: str
) -> None:
    out = tmp_path / "gpgsm.p7m"
    args = ["--encrypt", "--cipher-algo", cipher, "-r", pki.alice.email, "--output", str(out)]
    if armor:
        args.insert(0, "--armor")
    done = _gpgsm(gnupg_home, args, ENTITY)
    assert done.returncode == 0, done.stderr.decode()
    inspected = cli(["inspect", str(out), "--json"])
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.stdout)["cipher"]["name"] == name
    result = cli(["decrypt", str(out), "--key", str(pki.alice.key_pem)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ENTITY


def test_gpgsm_two_recipients_each_decrypt(
    gnupg_home: Path, tmp_path: Path, pki: Any, cli: Any
) -> None:
    out = tmp_path / "two.p7m"
    done = _gpgsm(
        gnupg_home,
        ["--encrypt", "-r", pki.alice.email, "-r", pki.bob.email, "--output", str(out)],
        ENTITY,
    )
    assert done.returncode == 0, done.stderr.decode()
    inspected = cli(["inspect", str(out), "--json"])
    assert inspected.exit_code == 0, inspected.output
    for who in (pki.alice, pki.bob):
        result = cli(["decrypt", str(out), "--key", str(who.key_pem)])
        assert result.exit_code == 0, result.output
        assert result.stdout == ENTITY


def test_gpgsm_message_for_someone_else_is_77(
    gnupg_home: Path, tmp_path: Path, pki: Any, cli: Any
) -> None:
    out = tmp_path / "bob-only.p7m"
    done = _gpgsm(gnupg_home, ["--encrypt", "-r", pki.bob.email, "--output", str(out)], ENTITY)
    assert done.returncode == 0, done.stderr.decode()
    result = cli(
        ["decrypt", str(out), "--key", str(pki.alice.key_pem), "--cert", str(pki.alice.cert_pem)]
    )
    assert result.exit_code == 77, result.output
    assert result.stdout == b""
