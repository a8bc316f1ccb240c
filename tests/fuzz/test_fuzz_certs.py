"""Fuzzing certificate and key loading: PEM, DER, PKCS#7 (.p7b), PKCS#12 (.pfx/.p12) and
signed mail, through ``load_certificates`` (certs import, --cert, rules sources) and
``load_private_key`` (decrypt --key). Only SmimeErrors or a clean result may come out."""

from __future__ import annotations

from collections import Counter

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from hypothesis import given

from smimecli.certs.formats import load_certificates
from smimecli.certs.keys import load_private_key
from smimecli.certs.pfx import write_pfx
from tests.conftest import Pki
from tests.fuzz.mutate import fuzz_settings, mutated, only_smime_errors, quiet_library, record
from tests.pki import PASSWORD


def _seeds(pki: Pki) -> list[bytes]:
    alice = pki.alice
    certs = [alice.cert, pki.ca.cert]
    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(b"Content-Type: text/plain\r\n\r\nsigned\r\n")
        .add_signer(alice.cert, alice.key, hashes.SHA256())
        .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    )
    encrypted_key = alice.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD),
    )
    return [
        alice.cert_pem.read_bytes(),
        alice.cert_der.read_bytes(),
        alice.cert_pem.read_bytes() + pki.ca.cert_pem.read_bytes() + alice.key_pem.read_bytes(),
        pkcs7.serialize_certificates(certs, serialization.Encoding.DER),
        pkcs7.serialize_certificates(certs, serialization.Encoding.PEM),
        alice.pfx.read_bytes(),
        write_pfx(
            pki.carol_ec.key,
            pki.carol_ec.cert,
            [pki.ca.cert],
            password=PASSWORD,
            encryption="legacy",
            friendly_name="Carol",
        ),
        encrypted_key,
        b"From: alice@example.com\nSubject: signed\n" + signed,
    ]


def test_seeds_load(pki: Pki) -> None:
    """Every seed is a good file (so the mutations start from something real)."""
    for seed in _seeds(pki):
        found = load_certificates(seed, password=PASSWORD, source="seed")
        assert len(found) >= (0 if b"ENCRYPTED PRIVATE KEY" in seed else 1)


def test_load_certificates_damaged(pki: Pki) -> None:
    """certs import / --cert on damaged files: certificates or a SmimeError."""
    seeds, outcomes = _seeds(pki), Counter[str]()

    @fuzz_settings(200, deadline_ms=1000)  # PKCS#12 key derivation is slow by design
    @given(mutated(seeds))
    def run(data: bytes) -> None:
        outcomes[
            only_smime_errors(lambda: load_certificates(data, password=PASSWORD, source="fuzz.bin"))
        ] += 1

    with quiet_library():
        run()
    record("certs-load", outcomes)
    assert sum(outcomes.values()) >= 50


def test_load_private_key_damaged(pki: Pki) -> None:
    """decrypt --key on damaged key files and .pfx: a key or a SmimeError."""
    seeds = [pki.alice.key_pem.read_bytes(), *_seeds(pki)[5:8]]
    der_key = pki.carol_ec.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    seeds.append(der_key)
    outcomes = Counter[str]()

    @fuzz_settings(150, deadline_ms=1000)
    @given(mutated(seeds))
    def run(data: bytes) -> None:
        outcomes[only_smime_errors(lambda: load_private_key(data, PASSWORD, what="fuzz.key"))] += 1

    with quiet_library():
        run()
    record("private-key-load", outcomes)
    assert sum(outcomes.values()) >= 50


def test_regression_password_for_a_damaged_plain_key_is_65(pki: Pki) -> None:
    """B6: a password given for an unencrypted but damaged PEM key was an internal error."""
    from smimecli.errors import DataError

    lines = pki.alice.key_pem.read_bytes().splitlines()
    lines[5] = b"A" * len(lines[5])
    data = pki.alice.cert_pem.read_bytes() + b"\n".join(lines) + b"\n"
    with pytest.raises(DataError):
        load_certificates(data, password=PASSWORD, source="damaged.pem")
