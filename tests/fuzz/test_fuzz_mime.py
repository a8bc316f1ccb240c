"""Fuzzing the MIME reader through encryption: damaged messages (header folding, missing
blank line, odd Content-Type parameters, stray CRs, NULs, huge header lines) must encrypt,
pass through, or fail with a SmimeError; an encrypted result must decrypt back to the
canonical entity."""

from __future__ import annotations

import io
from collections import Counter

from hypothesis import given

from smimecli.cms.recipients import Recipient
from smimecli.decrypt.message import decrypt_message
from smimecli.encrypt.message import encrypt_message
from smimecli.mime import parse_content_type, read_header_block
from tests.conftest import Pki
from tests.fuzz.mutate import fuzz_settings, mutated, only_smime_errors, quiet_library, record

SEEDS = [
    b"From: a@example.com\nTo: alice@example.com\nBcc: hidden@example.com\nSubject: hi\n\nbody\n",
    b"From: a@example.com\r\nTo: alice@example.com\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"caf\xc3\xa9\r\n--b1\r\nContent-Type: application/octet-stream; name*=UTF-8''%C3%A9.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b1--\r\n",
    b"Subject: =?utf-8?q?folded?=\n =?utf-8?q?header?=\nTo: alice@example.com\n"
    b'Content-Type: text/plain;\n\tcharset="us-ascii"; format=flowed\n\nline\n',
    b"To: alice@example.com\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\n"
    b"Content-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\n",
    b'To: alice@example.com\nContent-Type: multipart/signed; protocol="application/pkcs7-'
    b'signature"; boundary=s\n\n--s\nContent-Type: text/plain\n\nsigned\n--s--\n',
]


def test_encrypt_damaged_messages(pki: Pki) -> None:
    """encrypt on damaged messages: encrypted (and decrypts back), passed through, or 65."""
    recipients = [Recipient(pki.alice.cert)]
    outcomes = Counter[str]()

    @fuzz_settings(200)
    @given(mutated(SEEDS))
    def run(message: bytes) -> None:
        out = io.BytesIO()

        def call() -> None:
            outcome = encrypt_message(message, out, recipients)
            if outcome.encrypted:
                back = io.BytesIO()
                decrypt_message(io.BytesIO(out.getvalue()), back, pki.alice.key, pki.alice.cert)
                assert back.getvalue(), "an encrypted message decrypts to something"
                assert b"\nBcc:" not in out.getvalue() and not out.getvalue().startswith(b"Bcc:")

        outcomes[only_smime_errors(call)] += 1

    with quiet_library():
        run()
    record("mime-encrypt", outcomes)
    assert outcomes["ok"] >= 10  # many damaged messages are still messages


def test_header_reader_damaged() -> None:
    """The header reader and the Content-Type parser on damaged input never raise."""
    outcomes = Counter[str]()

    @fuzz_settings(300)
    @given(mutated(SEEDS, max_mutations=8))
    def run(message: bytes) -> None:
        def call() -> None:
            headers, body = read_header_block(io.BytesIO(message))
            ctype = headers.content_type()
            ctype.param("boundary")
            parse_content_type(headers.get("Content-Disposition"))
            body.read()

        outcomes[only_smime_errors(call)] += 1

    run()
    record("mime-headers", outcomes)
    assert sum(outcomes.values()) >= 100
