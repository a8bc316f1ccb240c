"""Decrypting what other tools wrote: Thunderbird/NSS and OpenSSL messages from
comm-central, pyca/cryptography vectors, and OpenSSL's AuthEnvelopedData with a KEK."""

from __future__ import annotations

import base64
import functools
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms

from smimecli.certs.keys import LoadedKey, load_certificate, load_private_key
from smimecli.cms.ber import BerReader
from smimecli.cms.open import decrypt_content, read_head
from smimecli.decrypt.inspect import inspect_message
from smimecli.decrypt.locate import locate_cms
from smimecli.decrypt.message import decrypt_message
from smimecli.errors import AuthError, DataError

pytestmark = pytest.mark.interop

TB = "thunderbird-comm-central/mailnews/test/data/smime"


def _expected(interop: Path) -> list[dict[str, Any]]:
    entries = json.loads((interop / "thunderbird-comm-central/expected-results.json").read_text())
    return [
        e
        for e in entries
        if e.get("enc") and (e["filename"].endswith(".env.eml") or "smime-interop" in e["filename"])
    ]


def _visible_text(output: bytes) -> bytes:
    """The decrypted message, with an opaque signed-data layer's content unpacked."""
    if b"signed-data" not in output:
        return output
    body = re.split(rb"\r?\n\r?\n", output, maxsplit=1)[1]
    signed = cms.ContentInfo.load(base64.b64decode(body))
    return bytes(signed["content"]["encap_content_info"]["content"].native)


@functools.cache
def _p12(path: Path) -> LoadedKey:
    return load_private_key(path, b"nss")  # PBKDF2 is slow on purpose: load each file once


def _key_for(interop: Path, filename: str) -> LoadedKey:
    folder = interop / TB
    if "smime-interop" in filename:
        name = "Fran-ec.p12" if "fran-ec" in filename else "Fran.p12"
        return _p12(folder.parent / "smime-interop" / name)
    return _p12(folder / "Bob.p12")


def test_thunderbird_expected_results(interop: Path) -> None:
    entries = _expected(interop)
    assert len(entries) >= 15
    for entry in entries:
        path = interop / TB / entry["filename"]
        loaded = _key_for(interop, entry["filename"])
        out = io.BytesIO()
        with path.open("rb") as src:
            decrypt_message(src, out, loaded.key, loaded.cert, what=path.name)
        text = entry["check_text"].encode()
        assert text in _visible_text(out.getvalue()), entry["filename"]
        assert b"enveloped-data" not in out.getvalue()  # the envelope is gone


def test_browser_data_copies(interop: Path) -> None:
    folder = interop / "thunderbird-comm-central/mail/test/browser/smime/data"
    loaded = load_private_key(folder / "Bob.p12", b"nss")
    files = sorted(folder.glob("*.env.eml"))
    assert files
    for path in files:
        out = io.BytesIO()
        with path.open("rb") as src:
            decrypt_message(src, out, loaded.key, loaded.cert)
        assert b"This is a test message from Alice to Bob." in _visible_text(out.getvalue())


def test_wrong_person_gets_auth_error(interop: Path) -> None:
    loaded = load_private_key(interop / TB / "Alice.p12", b"nss")
    with (interop / TB / "alice.env.eml").open("rb") as src, pytest.raises(AuthError):
        decrypt_message(src, io.BytesIO(), loaded.key, loaded.cert)


def test_stale_nss_ber_files_parse(interop: Path) -> None:
    # Older NSS output (indefinite-length BER, other CA): inspect reads it, Bob cannot open it.
    loaded = _p12(interop / TB / "Bob.p12")
    for name in ("alice.mime.env", "alice.sig.SHA256.opaque.env"):
        data = (interop / TB / name).read_bytes()
        assert data[:2] == b"\x30\x80"
        report = inspect_message(io.BytesIO(data))
        assert report.content_type == "enveloped-data" and report.recipients
        with pytest.raises(AuthError):
            decrypt_message(io.BytesIO(data), io.BytesIO(), loaded.key, loaded.cert)


def test_cryptography_vectors(interop: Path) -> None:
    base = interop / "cryptography-vectors/cryptography_vectors"
    key = load_private_key(base / "x509/custom/ca/rsa_key.pem").key
    cert = load_certificate(base / "x509/custom/ca/rsa_ca.pem")
    for name, expected in (
        ("enveloped-triple-des.pem", b"Hello, World!\r\n"),
        ("enveloped-rsa-oaep.pem", b"Hello, world!"),
    ):
        out = io.BytesIO()
        with (base / "pkcs7" / name).open("rb") as src:
            decrypt_message(src, out, key, cert)
        assert out.getvalue() == expected, name


def test_cryptography_vectors_detached_and_foreign(interop: Path) -> None:
    base = interop / "cryptography-vectors/cryptography_vectors"
    key = load_private_key(base / "x509/custom/ca/rsa_key.pem").key
    cert = load_certificate(base / "x509/custom/ca/rsa_ca.pem")
    with (
        (base / "pkcs7/enveloped-no-content.der").open("rb") as src,
        pytest.raises(DataError, match="no encrypted content"),
    ):
        decrypt_message(src, io.BytesIO(), key, cert)
    with (base / "pkcs7/enveloped.pem").open("rb") as src:
        report = inspect_message(src)
    assert report.cipher is not None
    assert (report.cipher["name"], len(report.recipients)) == ("3des", 2)


def test_openssl_auth_enveloped_with_kek(interop: Path) -> None:
    path = interop / "openssl/test/recipes/80-test_cms_data/authenveloped_attrs.pem"
    kek = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
    with path.open("rb") as src:
        located = locate_cms(src, path.name)
        reader = BerReader(located.stream)
        head = read_head(reader)
        assert head.recipients[0].kind == "kekri"
        plain = b"".join(decrypt_content(reader, head, [], kek=kek, kek_id=b"\xc0\xfe\xe0"))
    assert plain == b"Hello AuthEnvelopedData world\n"
    with path.open("rb") as src:
        located = locate_cms(src, path.name)
        reader = BerReader(located.stream)
        head = read_head(reader)
        with pytest.raises(AuthError):
            b"".join(decrypt_content(reader, head, [], kek=bytes(16)))
