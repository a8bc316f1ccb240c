"""Envelopes signed on the outside, as Thunderbird's corpus and `openssl cms -sign` make them."""

from __future__ import annotations

import functools
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smimecli.certs.keys import LoadedKey, load_private_key
from smimecli.decrypt.inspect import inspect_message
from smimecli.decrypt.message import decrypt_message
from smimecli.errors import DataError
from tests.conftest import Cli, Pki, require_tool
from tests.pki import PASSWORD

pytestmark = pytest.mark.interop

TB = "thunderbird-comm-central/mailnews/test/data/smime"
ALICE_TO_BOB = "This is a test message from Alice to Bob."


@functools.cache
def _bob(folder: Path) -> LoadedKey:
    return load_private_key(folder / "Bob.p12", b"nss")  # PBKDF2 is slow: load once


def _signed_outside(interop: Path) -> list[dict[str, Any]]:
    """Entries whose envelope was signed afterwards: a sig/dsig after `.env.` in the name."""
    entries = json.loads((interop / "thunderbird-comm-central/expected-results.json").read_text())
    found = []
    for entry in entries:
        name = entry["filename"]
        after = name.split(".env.", 1)[1] if ".env." in name else ""
        if "mixed" in name:  # the envelope sits in a multipart/mixed: see the test below
            continue
        if "sig." in after or name.startswith("../smime-manual/outer-smime"):
            found.append(entry)
    return found


def test_thunderbird_signed_outside(interop: Path) -> None:
    entries = _signed_outside(interop)
    assert len(entries) >= 19
    bob = _bob(interop / TB)
    for entry in entries:
        path = interop / TB / entry["filename"]
        layers = 2 if ".dave." in entry["filename"] else 1
        out = io.BytesIO()
        with path.open("rb") as src:
            result = decrypt_message(src, out, bob.key, bob.cert, what=path.name)
        text = out.getvalue()
        assert entry.get("check_text", ALICE_TO_BOB).encode() in text, entry["filename"]
        assert b"enveloped-data" not in text  # an inner signature, if any, stays (SPEC 1.2)
        assert b"\nFrom: " in b"\n" + text  # the outermost message's headers are kept
        warnings = [notice.text for notice in result.notices]
        assert len(warnings) == layers, (entry["filename"], warnings)
        assert all("not verified" in w for w in warnings)
        assert {notice.code for notice in result.notices} == {"unverified-signature"}
        with path.open("rb") as src:
            report = inspect_message(src)
        assert report.signature_layers == layers and len(report.recipients) == 1


def test_thunderbird_envelope_in_a_mixed_part_is_signed_only(interop: Path) -> None:
    # Thunderbird's table says enc=false: the envelope is not the signed entity itself.
    path = interop / TB / "../smime-manual/alice.env.mixed.dsig.SHA256.multipart.eml"
    bob = _bob(interop / TB)
    with path.open("rb") as src, pytest.raises(DataError, match="signed but not encrypted"):
        decrypt_message(src, io.BytesIO(), bob.key, bob.cert)


@pytest.fixture
def openssl_signed(pki: Pki, tmp_path: Path) -> Callable[[bool], Path]:
    """Enveloped to Bob by `openssl cms -encrypt`, then signed by Alice, detached or not."""
    openssl = require_tool("openssl")
    plain = tmp_path / "plain.eml"
    plain.write_bytes(b"Content-Type: text/plain\r\n\r\nhello from openssl\r\n")
    env = tmp_path / "env.eml"
    subprocess.run(
        [openssl, "cms", "-encrypt", "-aes256", "-in", plain, "-out", env, pki.bob.cert_pem],
        check=True,
    )

    def sign(detached: bool) -> Path:
        out = tmp_path / ("dsig.eml" if detached else "sig.eml")
        args: list[str | Path] = [
            openssl,
            "cms",
            "-sign",
            "-in",
            env,
            "-out",
            out,
            "-signer",
            pki.alice.cert_pem,
            "-inkey",
            pki.alice.key_pem,
            "-subject",
            "signed outside",
            "-from",
            pki.alice.email,
            "-to",
            pki.bob.email,
        ]
        if not detached:
            args.append("-nodetach")
        subprocess.run(args, check=True)
        return out

    return sign


@pytest.mark.parametrize("detached", [True, False], ids=["multipart", "opaque"])
def test_openssl_signed_outside(
    cli: Cli, pki: Pki, tmp_path: Path, openssl_signed: Callable[[bool], Path], detached: bool
) -> None:
    msg = openssl_signed(detached)
    pw = tmp_path / "pw"
    pw.write_bytes(PASSWORD + b"\n")
    out = tmp_path / "out.eml"
    result = cli(["decrypt", msg, "-o", out, "--key", pki.bob.pfx, "--password-file", pw])
    assert result.exit_code == 0, result.output
    text = out.read_bytes()
    assert b"Subject: signed outside" in text and b"hello from openssl" in text
    line = "smimecli: warning: the signature outside the envelope (signed by CN=Alice"
    assert result.stderr.count(line) == 1, result.stderr
    assert "is valid but the signer is not trusted: no chain to a trusted root" in result.stderr
    assert pki.alice.email in result.stderr
    # --require-signature: an untrusted signer is 77, as verify says, and nothing is written.
    out.unlink()
    args: list[str | Path] = [
        "decrypt",
        msg,
        "-o",
        out,
        "--key",
        pki.bob.pfx,
        "--password-file",
        pw,
    ]
    result = cli([*args, "--require-signature"])
    assert result.exit_code == 77, result.output
    assert "nothing was written" in result.stderr and not out.exists()
    assert cli(["certs", "import", "--store-name", "root", pki.ca.cert_pem]).exit_code == 0
    result = cli([*args, "--require-signature"])
    assert result.exit_code == 0, result.output
    assert "(signed by CN=Alice, E=alice@example.com) is valid and trusted" in result.stderr
    assert b"hello from openssl" in out.read_bytes()
    # From standard input too: the input is recorded for the check after decryption.
    result = cli(
        ["decrypt", "-", "--key", pki.bob.pfx, "--password-file", pw, "--require-signature"],
        input=msg.read_bytes(),
    )
    assert result.exit_code == 0, result.output
    assert "outside the envelope (signed by CN=Alice, E=alice@example.com) is valid" in (
        result.stderr
    )
    assert b"hello from openssl" in result.stdout
    result = cli(["inspect", msg, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["signature_layers"] == 1 and doc["content_type"] == "enveloped-data"
    assert doc["signatures"][0]["status"] == "valid"  # its root is in the store by now
    assert doc["signatures"][0]["signer"] == "CN=Alice, E=alice@example.com"
    assert [r["id"]["serial"] for r in doc["recipients"]] == [f"{pki.bob.cert.serial_number:X}"]


def test_openssl_signed_only_is_65(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    plain = tmp_path / "plain.eml"
    plain.write_bytes(b"Content-Type: text/plain\r\n\r\nonly signed\r\n")
    msg = tmp_path / "signed.eml"
    subprocess.run(
        [
            openssl,
            "cms",
            "-sign",
            "-in",
            plain,
            "-out",
            msg,
            "-signer",
            pki.alice.cert_pem,
            "-inkey",
            pki.alice.key_pem,
        ],
        check=True,
    )
    out = tmp_path / "out.eml"
    result = cli(["decrypt", msg, "-o", out, "--key", pki.bob.key_pem])
    assert result.exit_code == 65, result.output
    assert result.stderr.count("\n") == 1 and "signed but not encrypted" in result.stderr
    assert b"only signed" not in result.stdout and not out.exists()


def test_inspect_text_names_the_signature_layers(interop: Path, cli: Cli) -> None:
    message = interop / "thunderbird-comm-central" / "mailnews" / "test" / "data" / "smime"
    found = sorted(message.glob("alice.env.dsig.SHA256.multipart.eml"))
    if not found:
        pytest.skip("alice.env.dsig.SHA256.multipart.eml not in the corpus")
    result = cli(["inspect", str(found[0])])
    assert result.exit_code == 0, result.output
    assert b"Signature layers: 1 (outside the envelope: INVALID)" in result.stdout or (
        b"Signature layers: 1 (outside the envelope: valid, signer NOT TRUSTED)" in result.stdout
    )
    assert "smimecli: warning: the signature outside the envelope (signed by" in result.stderr
