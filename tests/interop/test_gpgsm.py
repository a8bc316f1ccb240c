"""Real peer: gpgsm (GnuPG's S/MIME tool) decrypts what smimecli encrypts."""

from __future__ import annotations

import base64
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from smimecli.cms.envelope import Recipient
from smimecli.encrypt import encrypt_message
from tests.conftest import require_tool
from tests.pki import PASSWORD

pytestmark = pytest.mark.interop


def _gpgsm(home: Path, args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    gpgsm = require_tool("gpgsm")
    env = dict(os.environ, GNUPGHOME=str(home))
    return subprocess.run(
        [
            gpgsm,
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
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def gnupg_home(tmp_path: Path) -> Path:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    return home


def test_gpgsm_decrypts_aes256_rsa(gnupg_home: Path, tmp_path: Path, pki: Any) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    # gpgsm 2.2 reads only the legacy PKCS#12 form (3DES, SHA-1 MAC).
    legacy = pkcs12.serialize_key_and_certificates(
        b"alice",
        pki.alice.key,
        pki.alice.cert,
        [pki.ca.cert],
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(PASSWORD),
    )
    pfx = tmp_path / "alice.p12"
    pfx.write_bytes(legacy)
    imported = _gpgsm(gnupg_home, ["--import", str(pfx)], PASSWORD + b"\n")
    assert imported.returncode == 0, imported.stderr.decode()

    message = b"From: a@example.com\nSubject: gpgsm\nContent-Type: text/plain\n\nfor gpgsm\n"
    out = io.BytesIO()
    encrypt_message(message, out, [Recipient(pki.alice.cert)], cipher="aes256")
    # gpgsm reads the CMS object, not the MIME message around it: hand it the DER.
    body = out.getvalue().split(b"\n\n", 1)[1]
    (tmp_path / "m.der").write_bytes(base64.b64decode(body))
    done = _gpgsm(gnupg_home, ["--decrypt", str(tmp_path / "m.der")], PASSWORD + b"\n")
    try:
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout == b"Content-Type: text/plain\r\n\r\nfor gpgsm\r\n"
    finally:
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"],
            env=dict(os.environ, GNUPGHOME=str(gnupg_home)),
            capture_output=True,
            check=False,
        )
