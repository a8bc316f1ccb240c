"""Loading private keys: .pfx, PKCS#8 and traditional PEM/DER, encrypted or not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest
from cryptography.hazmat.primitives import serialization

from smimecli.certs.keys import load_certificate, load_private_key
from smimecli.errors import AuthError, DataError, InputError
from tests.conftest import ROOT, Pki
from tests.pki import PASSWORD


def test_pfx_with_certificate_and_chain(pki: Pki) -> None:
    loaded = load_private_key(pki.alice.pfx, PASSWORD)
    assert loaded.cert == pki.alice.cert
    assert loaded.extra_certs == [pki.ca.cert]


def test_pfx_wrong_and_missing_password(pki: Pki) -> None:
    with pytest.raises(AuthError, match="wrong password"):
        load_private_key(pki.alice.pfx, b"nope")
    with pytest.raises(AuthError, match="password"):
        load_private_key(pki.alice.pfx, None)


def test_legacy_pfx(pki: Pki, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(
            __import__("cryptography.hazmat.primitives.hashes").hazmat.primitives.hashes.SHA1()
        )
        .build(b"legacy")
    )
    data = pkcs12.serialize_key_and_certificates(b"x", pki.bob.key, pki.bob.cert, None, encryption)
    loaded = load_private_key(data, b"legacy")
    assert loaded.cert == pki.bob.cert


@pytest.mark.parametrize("fmt", ["pkcs8", "traditional"])
@pytest.mark.parametrize("encoding", ["PEM", "DER"])
@pytest.mark.parametrize("who", ["alice", "carol_ec"])
def test_key_files(pki: Pki, fmt: str, encoding: str, who: str) -> None:
    identity = getattr(pki, who)
    private_format = (
        serialization.PrivateFormat.PKCS8
        if fmt == "pkcs8"
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    enc = getattr(serialization.Encoding, encoding)
    if fmt == "traditional" and encoding == "DER":
        encrypted = None  # traditional DER cannot be encrypted
    else:
        encrypted = identity.key.private_bytes(
            enc, private_format, serialization.BestAvailableEncryption(b"pw")
        )
    plain = identity.key.private_bytes(enc, private_format, serialization.NoEncryption())
    assert load_private_key(plain).key.private_numbers() == identity.key.private_numbers()
    if encrypted is not None:
        loaded = load_private_key(encrypted, b"pw")
        assert loaded.key.private_numbers() == identity.key.private_numbers()
        with pytest.raises(AuthError):
            load_private_key(encrypted, b"wrong")
        with pytest.raises(AuthError):
            load_private_key(encrypted, None)


def test_pem_bundle_with_certificate(pki: Pki) -> None:
    data = pki.alice.cert_pem.read_bytes() + pki.alice.key_pem.read_bytes()
    loaded = load_private_key(data)
    assert loaded.cert == pki.alice.cert


@pytest.mark.parametrize(
    "data",
    [
        b"garbage",
        b"\x30\x03\x02\x01\x00",
        b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        b"   ",
    ],
)
def test_garbage_is_data_error(data: bytes) -> None:
    with pytest.raises(DataError):
        load_private_key(data)


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        load_private_key(tmp_path / "none.pfx")


def test_load_certificate(pki: Pki) -> None:
    assert load_certificate(pki.alice.cert_der) == pki.alice.cert
    assert load_certificate(pki.alice.cert_pem) == pki.alice.cert
    with pytest.raises(DataError):
        load_certificate(b"nope")


def test_only_rsa_and_ec_keys(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = tmp_path / "ed.key"
    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(DataError, match="only RSA and EC"):
        load_private_key(path)


def test_load_certificate_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "not.cer"
    path.write_bytes(b"\x30\x03\x02\x01\x01")
    with pytest.raises(DataError, match=r"not\.cer is not a PEM or DER certificate"):
        load_certificate(path)


def _hostile_pfx(data: bytes, *, mac: int | None = None, key_bag: int | None = None) -> bytes:
    """``data`` with its MAC or its shrouded key bag asking for ``mac``/``key_bag`` rounds."""
    from asn1crypto import cms as a_cms
    from asn1crypto import pkcs12 as a_pkcs12

    pfx = a_pkcs12.Pfx.load(data)
    if mac is not None:
        pfx["mac_data"]["iterations"] = mac
    if key_bag is not None:
        safe = a_pkcs12.AuthenticatedSafe.load(pfx["auth_safe"]["content"].native)
        infos = []
        for info in safe:
            if info["content_type"].native == "data":
                contents = a_pkcs12.SafeContents.load(info["content"].native)
                for bag in contents:
                    if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                        kdf = bag["bag_value"]["encryption_algorithm"]["parameters"]
                        kdf["key_derivation_func"]["parameters"]["iteration_count"] = key_bag
                info = a_cms.ContentInfo(
                    {"content_type": "data", "content": contents.dump(force=True)}
                )
            infos.append(info)
        pfx["auth_safe"] = a_cms.ContentInfo(
            {"content_type": "data", "content": a_pkcs12.AuthenticatedSafe(infos).dump()}
        )
    return cast(bytes, pfx.dump(force=True))


@pytest.mark.parametrize("where", ["mac", "key_bag"])
def test_pfx_with_absurd_iterations_is_refused_before_any_derivation(
    pki: Pki, tmp_path: Path, where: str
) -> None:
    # 2**31 - 1 rounds took minutes of CPU per password try (and ignored SIGTERM meanwhile).
    import subprocess
    import sys
    import time

    from smimecli.certs.keys import MAX_PKCS12_ITERATIONS, _pkcs12_iterations

    data = pki.alice.pfx.read_bytes()
    path = tmp_path / "hostile.pfx"
    path.write_bytes(_hostile_pfx(data, **{where: 2**31 - 1}))
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "smimecli", "certs", "import", str(path), "--password-env", "PW"],
        capture_output=True,
        env={
            **os.environ,
            "PW": PASSWORD.decode(),
            "SMIMECLI_STORE": str(tmp_path / "s"),
            "PYTHONPATH": str(ROOT),
        },
        cwd=ROOT,
        timeout=20,
    )
    assert time.monotonic() - started < 10
    assert run.returncode == 65, run.stderr
    lines = run.stderr.decode().splitlines()
    assert len(lines) == 1 and "hostile.pfx" in lines[0], lines
    assert "2,147,483,647 key derivation iterations" in lines[0], lines
    path.write_bytes(_hostile_pfx(data, **{where: MAX_PKCS12_ITERATIONS + 1}))
    with pytest.raises(DataError, match="iterations"):
        load_private_key(path, PASSWORD)
    # The limit is far above real files: the fixture's own counts still open.
    path.write_bytes(_hostile_pfx(data, **{where: 300_000}))
    assert max(_pkcs12_iterations(path.read_bytes())) == 300_000
