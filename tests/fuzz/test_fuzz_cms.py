"""Fuzzing the CMS/BER reader through decrypt and inspect (SPEC section 6).

Seeds are valid messages from EnvelopeBuilder: bare DER (AES-CBC, AES-GCM, 3DES, RC2,
OAEP, ECDH, SKI), the same as PEM, and as an S/MIME message. The property: decrypting with
the right keys, and inspecting without a key, either succeed or raise a SmimeError; no other
exception, no hang (per-example deadline), and an absurd length never allocates.
"""

from __future__ import annotations

import base64
import io
import tracemalloc
from collections import Counter
from functools import partial

import pytest
from hypothesis import given

from smimecli.cms.envelope import EnvelopeBuilder
from smimecli.cms.recipients import Recipient
from smimecli.cms.unwrap import KeyIdentity
from smimecli.decrypt.inspect import inspect_message
from smimecli.decrypt.message import decrypt_message
from smimecli.errors import DataError
from tests.conftest import Pki
from tests.fuzz.mutate import (
    ABSURD_LENGTHS,
    fuzz_settings,
    mutated,
    nested,
    only_smime_errors,
    quiet_library,
    record,
)

ENTITY = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nfuzzing the envelope\r\n"


def _seeds(pki: Pki) -> list[bytes]:
    def der(cipher: str, *recipients: Recipient) -> bytes:
        builder = EnvelopeBuilder().set_cipher(cipher)
        for recipient in recipients:
            builder.add_recipient(recipient)
        return builder.encrypt(ENTITY)

    alice = Recipient(pki.alice.cert)
    carol = Recipient(pki.carol_ec.cert)
    plain = der("aes256", alice)
    pem = b"-----BEGIN PKCS7-----\n" + base64.encodebytes(plain) + b"-----END PKCS7-----\n"
    body = base64.encodebytes(der("aes128", alice, carol))
    mail = (
        b"From: a@example.com\nTo: alice@example.com\nSubject: x\nMIME-Version: 1.0\n"
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n"
        b"Content-Transfer-Encoding: base64\n\n" + body
    )
    return [
        plain,
        der("aes128-gcm", alice),
        der("3des", alice),
        der("rc2-40", alice),
        der("aes192", Recipient(pki.alice.cert, key_transport="rsa-oaep", oaep_hash="sha384")),
        der("aes256", carol),
        der("aes256", Recipient(pki.alice.cert, recipient_id="ski"), carol),
        pem,
        mail,
    ]


def _identities(pki: Pki) -> list[KeyIdentity]:
    return [
        KeyIdentity(pki.alice.key, pki.alice.cert),
        KeyIdentity(pki.carol_ec.key, None),  # no certificate: tried on every EC recipient
    ]


def test_seeds_decrypt(pki: Pki) -> None:
    """The unmutated seeds are good messages (else the fuzzing below proves little)."""
    for seed in _seeds(pki):
        out = io.BytesIO()
        decrypt_message(io.BytesIO(seed), out, _identities(pki))
        assert out.getvalue().replace(b"\r\n", b"\n").endswith(b"fuzzing the envelope\n")


def test_decrypt_damaged_cms(pki: Pki) -> None:
    """Damaged CMS through decrypt: a clean result or a SmimeError, nothing else."""
    seeds, identities, outcomes = _seeds(pki), _identities(pki), Counter[str]()

    @fuzz_settings(250)
    @given(mutated(seeds))
    def run(data: bytes) -> None:
        outcomes[
            only_smime_errors(lambda: decrypt_message(io.BytesIO(data), io.BytesIO(), identities))
        ] += 1

    with quiet_library():
        run()
    record("cms-decrypt", outcomes)
    assert sum(outcomes.values()) >= 50
    assert outcomes["ok"] < sum(outcomes.values())  # the mutations did break messages


def test_inspect_damaged_cms(pki: Pki) -> None:
    """Damaged CMS through inspect (no key): a report or a SmimeError."""
    seeds, outcomes = _seeds(pki), Counter[str]()

    @fuzz_settings(200)
    @given(mutated(seeds))
    def run(data: bytes) -> None:
        def call() -> None:
            report = inspect_message(io.BytesIO(data))
            report.as_json()  # rendering must not trip on odd values either

        outcomes[only_smime_errors(call)] += 1

    with quiet_library():
        run()
    record("cms-inspect", outcomes)
    assert sum(outcomes.values()) >= 50


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deep_nesting_is_refused(pki: Pki, depth: int) -> None:
    """Deeply nested indefinite-length constructions end in 65, not a RecursionError."""
    data = nested(b"", depth)
    for call in (
        lambda: decrypt_message(io.BytesIO(data), io.BytesIO(), _identities(pki)),
        lambda: inspect_message(io.BytesIO(data)),
    ):
        with pytest.raises(DataError):
            call()


@pytest.mark.parametrize("length", ABSURD_LENGTHS[:3], ids=["4GiB", "8-octets", "ffffffff"])
def test_absurd_length_does_not_allocate(pki: Pki, length: bytes) -> None:
    """A length field announcing gigabytes must not allocate them: the peak stays small."""
    seed = _seeds(pki)[0]
    targets = [1, 5, 20, 40]  # the outer SEQUENCE and a few inner headers' length octets
    identities = _identities(pki)
    calls = [
        lambda data: decrypt_message(io.BytesIO(data), io.BytesIO(), identities),
        lambda data: inspect_message(io.BytesIO(data)),
    ]
    tracemalloc.start()
    try:
        for offset in targets:
            damaged = seed[:offset] + length + seed[offset + 1 :]
            for call in calls:
                tracemalloc.reset_peak()
                with quiet_library():
                    only_smime_errors(partial(call, damaged))
                _, peak = tracemalloc.get_traced_memory()
                assert peak < 32 << 20, f"peak {peak} bytes at offset {offset}"
    finally:
        tracemalloc.stop()


# --- regressions: inputs the fuzzer found ----------------------------------------------------


def test_regression_damaged_originator_key_is_65(pki: Pki) -> None:
    """B2: an ECDH recipient whose originator key has a wrong tag was an internal error."""
    seed = _seeds(pki)[5]  # aes256 to carol (ECDH)
    at = seed.index(b"\x30\x09\x06\x07\x2a\x86\x48\xce\x3d\x02\x01")  # originatorKey alg
    assert seed[at - 2] == 0xA1  # [1] OriginatorPublicKey (RFC 5652 6.2.2)
    damaged = seed[: at - 2] + b"\xa3" + seed[at - 1 :]
    with pytest.raises(DataError):
        decrypt_message(io.BytesIO(damaged), io.BytesIO(), _identities(pki))


def test_regression_damaged_issuer_name_is_reported(pki: Pki) -> None:
    """B3: inspect on a recipient whose issuer name is not UTF-8 was an internal error."""
    seed = _seeds(pki)[0]
    at = seed.index(b"Test Root V1")
    damaged = seed[:at] + b"\xd4" + seed[at + 1 :]
    report = inspect_message(io.BytesIO(damaged)).as_json()
    assert report["recipients"][0]["id"]["issuer"] == "(unreadable name)"
