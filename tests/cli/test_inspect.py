"""`smimecli inspect`: recipients and algorithms without a key, text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.conftest import Cli, Pki, assert_error


def _message(tmp_path: Path, *certs: x509.Certificate) -> Path:
    builder = (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(b"x")
        .set_content_encryption_algorithm(algorithms.AES128)
    )
    for cert in certs:
        builder = builder.add_recipient(cert)
    path = tmp_path / "msg.eml"
    path.write_bytes(b"Subject: hi\n" + builder.encrypt(serialization.Encoding.SMIME, []))
    return path


def test_inspect_text(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    result = cli(["inspect", _message(tmp_path, pki.alice.cert, pki.bob.cert)])
    assert result.exit_code == 0, result.output
    text = result.stdout.decode()
    assert "  Subject: hi" in text
    assert "CMS content type: enveloped-data (1.2.840.113549.1.7.3)" in text
    assert "Content cipher: aes128 (2.16.840.1.101.3.4.1.2, 128-bit key)" in text
    assert f"serial {pki.alice.cert.serial_number:X}" in text
    assert text.count("key encryption: rsaEncryption") == 2
    assert "store: no matching certificate" in text


def test_inspect_json_with_store_match(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    from smimecli.certs.store import Store

    with Store.open(tmp_path / "store", create=True) as store:
        store.add(pki.bob.cert, key=pki.bob.key)
    result = cli(
        ["inspect", "--json"], input=_message(tmp_path, pki.alice.cert, pki.bob.cert).read_bytes()
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["content_type"] == "enveloped-data"
    assert doc["cipher"]["key_bits"] == 128
    assert {"name": "Subject", "value": "hi"} in doc["headers"]
    by_serial = {r["id"]["serial"]: r for r in doc["recipients"]}
    assert by_serial[f"{pki.alice.cert.serial_number:X}"]["store"] == []
    bob = by_serial[f"{pki.bob.cert.serial_number:X}"]["store"]
    assert [(m["thumbprint"], m["has_key"]) for m in bob] == [(pki.bob.thumbprint, True)]


def test_inspect_errors(cli: Cli, tmp_path: Path) -> None:
    plain = tmp_path / "plain.eml"
    plain.write_bytes(b"Subject: x\n\nhello\n")
    result = cli(["inspect", plain])
    assert_error(result, 65, f"{plain} is not an S/MIME encrypted message (Content-Type: text/")
    assert result.stderr.count("\n") == 1
    missing = tmp_path / "none.eml"
    assert_error(cli(["inspect", missing]), 66, f"cannot read {missing}")
