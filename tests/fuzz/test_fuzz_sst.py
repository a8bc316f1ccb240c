"""Fuzzing the Microsoft serialized store (.sst) reader: elements of property id, encoding
type and a 32-bit length, so a length past the end (or 0xFFFFFFFF) must be refused without
allocating, and a missing end marker must not loop."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from hypothesis import given

from smimecli.certs.formats import load_certificates
from smimecli.certs.sst import MAGIC, read_sst, write_sst
from tests.conftest import Pki, interop_dir
from tests.fuzz.mutate import fuzz_settings, mutated, only_smime_errors, quiet_library, record


def _seeds(pki: Pki) -> list[bytes]:
    der = [ident.cert_der.read_bytes() for ident in (pki.alice, pki.carol_ec)]
    seeds = [
        write_sst([(der[0], "Alice"), (der[1], None)]),
        write_sst([(pki.ca.cert.public_bytes(serialization.Encoding.DER), "Root")]),
        write_sst([]),
    ]
    corpus = interop_dir()
    if corpus is not None:  # real Windows and Wine stores, when the corpus is checked out
        for path in sorted((corpus / "sst-samples").rglob("*.sst")):
            if path.stat().st_size < 64 << 10:
                seeds.append(Path(path).read_bytes())
    return seeds


def test_sst_damaged(pki: Pki) -> None:
    """read_sst and certs import on damaged stores: elements or a SmimeError."""
    seeds, outcomes = _seeds(pki), Counter[str]()

    @fuzz_settings(300)
    @given(mutated(seeds))
    def run(data: bytes) -> None:
        data = MAGIC + data[len(MAGIC) :]  # keep it an .sst so the element walk is reached
        outcomes["read-" + only_smime_errors(lambda: read_sst(data, source="fuzz.sst"))] += 1
        outcomes[
            "load-" + only_smime_errors(lambda: load_certificates(data, source="fuzz.sst"))
        ] += 1

    with quiet_library():
        run()
    record("sst", outcomes)
    assert sum(outcomes.values()) >= 100


def test_sst_absurd_length_does_not_allocate(pki: Pki) -> None:
    """An element claiming 0xFFFFFFFF bytes is refused (65) without allocating it."""
    data = MAGIC + (0x20).to_bytes(4, "little") + b"\x01\x00\x00\x00" + b"\xff" * 4 + b"x" * 64
    tracemalloc.start()
    try:
        assert only_smime_errors(lambda: load_certificates(data, source="big.sst")) == "DataError"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
