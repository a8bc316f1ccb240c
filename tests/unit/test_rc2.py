"""RC2 (RFC 2268): test vectors, the version-number table, and agreement with OpenSSL."""

from __future__ import annotations

import os
import subprocess

import pytest

from smimecli.cms import rc2
from smimecli.errors import DataError
from tests.conftest import require_tool

# RFC 2268 section 5: key, effective bits, plaintext, ciphertext.
RFC2268_VECTORS = [
    ("0000000000000000", 63, "0000000000000000", "ebb773f993278eff"),
    ("ffffffffffffffff", 64, "ffffffffffffffff", "278b27e42e2f0d49"),
    ("3000000000000000", 64, "1000000000000001", "30649edf9be7d2c2"),
    ("88", 64, "0000000000000000", "61a8a244adacccf0"),
    ("88bca90e90875a", 64, "0000000000000000", "6ccf4308974c267f"),
    ("88bca90e90875a7f0f79c384627bafb2", 64, "0000000000000000", "1a807d272bbe5db1"),
    ("88bca90e90875a7f0f79c384627bafb2", 128, "0000000000000000", "2269552ab0f85ca6"),
    (
        "88bca90e90875a7f0f79c384627bafb216f80a6f85920584c42fceb0be255daf1e",
        129,
        "0000000000000000",
        "5b78d3a43dfff1f1",
    ),
]


@pytest.mark.parametrize(("key", "bits", "plain", "cipher"), RFC2268_VECTORS)
def test_rfc2268_vectors(key: str, bits: int, plain: str, cipher: str) -> None:
    engine = rc2.RC2(bytes.fromhex(key), bits)
    assert engine.encrypt_block(bytes.fromhex(plain)).hex() == cipher
    assert engine.decrypt_block(bytes.fromhex(cipher)).hex() == plain


def test_version_numbers_of_rfc8018() -> None:
    assert rc2.version_for_bits(40) == 160
    assert rc2.version_for_bits(64) == 120
    assert rc2.version_for_bits(128) == 58
    assert rc2.version_for_bits(256) == 256
    for bits in (1, 40, 64, 128, 255, 300, 1024):
        assert rc2.bits_for_version(rc2.version_for_bits(bits)) == bits


def test_bad_version_is_data_error() -> None:
    with pytest.raises(DataError):
        rc2.bits_for_version(5000)


@pytest.mark.parametrize("bits", [40, 64, 128])
def test_cbc_round_trip_in_pieces(bits: int) -> None:
    key, iv = os.urandom(bits // 8), os.urandom(8)
    data = os.urandom(8 * 37)
    enc = rc2.rc2_cbc(key, bits, iv, decrypt=False)
    ciphertext = enc.update(data[:13]) + enc.update(data[13:]) + enc.finalize()
    dec = rc2.rc2_cbc(key, bits, iv, decrypt=True)
    assert dec.update(ciphertext[:5]) + dec.update(ciphertext[5:]) + dec.finalize() == data
    assert ciphertext != data


def test_fast_path_matches_pure_python() -> None:
    key, iv, data = os.urandom(16), os.urandom(8), os.urandom(800)
    fast = rc2.rc2_cbc(key, 128, iv, decrypt=False)
    slow = rc2._PythonCBC(rc2.RC2(key, 128), iv, decrypt=False)
    assert fast.update(data) == slow.update(data)


def test_partial_block_is_data_error() -> None:
    dec = rc2.rc2_cbc(b"12345", 40, bytes(8), decrypt=True)
    dec.update(b"123")
    with pytest.raises(DataError):
        dec.finalize()


@pytest.mark.interop
@pytest.mark.parametrize(
    ("name", "bits"), [("rc2-40-cbc", 40), ("rc2-64-cbc", 64), ("rc2-cbc", 128)]
)
def test_matches_openssl(name: str, bits: int) -> None:
    openssl = require_tool("openssl")
    key, iv, data = os.urandom(bits // 8), os.urandom(8), os.urandom(64)
    proc = subprocess.run(
        [
            openssl,
            "enc",
            f"-{name}",
            "-nopad",
            "-K",
            key.hex(),
            "-iv",
            iv.hex(),
            "-provider",
            "legacy",
            "-provider",
            "default",
        ],
        input=data,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"openssl legacy provider unavailable: {proc.stderr.decode()[:100]}")
    enc = rc2.rc2_cbc(key, bits, iv, decrypt=False)
    assert enc.update(data) + enc.finalize() == proc.stdout
