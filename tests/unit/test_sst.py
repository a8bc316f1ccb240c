"""Serialized certificate stores: round trip, Windows samples, hostile lengths."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization

from smimecli.certs import sst
from smimecli.certs.formats import load_certificates
from smimecli.certs.names import thumbprint
from smimecli.errors import DataError
from tests.conftest import Pki


def _der(pki: Pki) -> list[bytes]:
    return [
        c.public_bytes(serialization.Encoding.DER)
        for c in (pki.alice.cert, pki.bob.cert, pki.ca.cert)
    ]


def test_round_trip_keeps_order_and_friendly_names(pki: Pki) -> None:
    ders = _der(pki)
    data = sst.write_sst([(ders[0], "Alice ☺"), (ders[1], None), (ders[2], "Root")])
    assert data.startswith(b"\x00\x00\x00\x00CERT") and data.endswith(b"\x00" * 12)
    elements = sst.read_sst(data)
    assert [e.der for e in elements] == ders
    assert [e.friendly_name for e in elements] == ["Alice ☺", None, "Root"]
    loaded = load_certificates(data)
    assert [e.thumbprint for e in loaded] == [
        pki.alice.thumbprint,
        pki.bob.thumbprint,
        thumbprint(pki.ca.cert),
    ]
    assert loaded[0].friendly_name == "Alice ☺" and not loaded.skipped


def test_empty_store(pki: Pki) -> None:
    assert sst.read_sst(sst.write_sst([])) == []


def test_crl_and_properties_are_skipped(pki: Pki) -> None:
    der = _der(pki)[0]
    body = struct.pack("<III", 0x21, 1, 3) + b"crl" + struct.pack("<III", 0x20, 1, len(der)) + der
    data = sst.MAGIC + body + b"\x00" * 12
    assert [e.der for e in sst.read_sst(data)] == [der]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[:-12], "truncated"),
        (lambda d: d[:40], "claims"),
        (lambda d: b"\x00\x00\x00\x01CERT" + d[8:], "bad header"),
        (lambda d: d[:8] + struct.pack("<III", 0x20, 1, 0xFFFFFFF0) + d[20:], "claims"),
        (lambda d: d[:-5], "truncated"),
    ],
    ids=["no-end-marker", "cut-in-element", "bad-magic", "length-past-end", "partial-marker"],
)
def test_hostile_files(pki: Pki, mutate: Callable[[bytes], bytes], message: str) -> None:
    data = sst.write_sst([(_der(pki)[0], "x")])
    bad = mutate(data)
    with pytest.raises(DataError, match=message):
        if message == "bad header":
            sst.read_sst(bad)
        else:
            load_certificates(bad, source="bad.sst")
