"""The encrypt core: content ciphers, RecipientInfos, the DER envelope, encrypt_message.

Envelopes are opened here with a small independent reader (asn1crypto + cryptography), so
these tests do not depend on the decrypt side; the real peers are in tests/interop.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from typing import Any

import pytest
from asn1crypto import algos as asn1_algos
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given, settings
from hypothesis import strategies as st

from smimecli.cms import algorithms
from smimecli.cms.envelope import EnvelopeBuilder, Recipient
from smimecli.encrypt.message import encrypt_message
from smimecli.errors import DataError, UsageError
from smimecli.mime import parse_header_block

_HASH: dict[str, type[hashes.SHA1 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def open_envelope(der: bytes, identity: Any) -> bytes:
    """Decrypt an RSA-recipient envelope independently of smimecli's decrypt side."""
    from cryptography import x509

    key = identity.key
    ski = identity.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    info = cms.ContentInfo.load(der)
    content = info["content"]
    auth = info["content_type"].native == "authenticated_enveloped_data"
    eci = content["auth_encrypted_content_info" if auth else "encrypted_content_info"]
    for ri in content["recipient_infos"]:
        ktri = ri.chosen
        rid = ktri["rid"]
        if rid.name == "issuer_and_serial_number":
            if rid.chosen["serial_number"].native != identity.cert.serial_number:
                continue
        elif rid.chosen.native != ski.value.digest:
            continue
        alg = ktri["key_encryption_algorithm"]
        encrypted_key = ktri["encrypted_key"].native
        if alg["algorithm"].native == "rsaes_oaep":
            hash_name = alg["parameters"]["hash_algorithm"]["algorithm"].native
            h = _HASH[hash_name]
            cek = key.decrypt(encrypted_key, padding.OAEP(padding.MGF1(h()), h(), None))
        else:
            cek = key.decrypt(encrypted_key, padding.PKCS1v15())
        dec = algorithms.content_decryptor(eci["content_encryption_algorithm"].dump(), cek)
        if auth:
            assert isinstance(dec, algorithms.GCMDecryptor)
            dec.set_tag(content["mac"].native)
        return dec.update(eci["encrypted_content"].native) + dec.finalize()
    raise AssertionError("no recipient info opened with this key")


CANONICAL = b"Content-Type: text/plain\r\n\r\nhello\r\nworld\r\n"


# --- algorithms ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*algorithms.CIPHER_NAMES, "aes192-gcm"])
def test_cipher_round_trip_and_parameters(name: str) -> None:
    cipher = algorithms.get_cipher(name)
    key, iv = algorithms.new_key(cipher), algorithms.new_iv(cipher)
    alg_der = algorithms.algorithm_identifier(cipher, iv)
    parsed = algorithms.parse_algorithm_identifier(alg_der)
    assert (parsed.name, parsed.iv) == (name, iv)
    data = bytes(range(256)) * 5
    enc = algorithms.ContentEncryptor(cipher, key, iv)
    buf = bytearray(2048)
    produced = enc.update_into(data[:700], buf)
    ciphertext = bytes(buf[:produced]) + enc.update(data[700:]) + enc.finalize()
    assert len(ciphertext) == cipher.ciphertext_length(len(data))
    dec = algorithms.content_decryptor(alg_der, key)
    if cipher.authenticated:
        assert isinstance(dec, algorithms.GCMDecryptor)
        dec.set_tag(enc.tag)
    assert dec.update(ciphertext[:9]) + dec.update(ciphertext[9:]) + dec.finalize() == data


def test_rc2_parameter_forms() -> None:
    # RFC 3370 section 5.2 SEQUENCE with version 160 -> 40 bits; a bare IV -> 32 bits.
    seq = bytes.fromhex("301a06082a864886f70d0302300e020200a004080102030405060708")
    assert algorithms.parse_algorithm_identifier(seq).name == "rc2-40"
    bare = bytes.fromhex("301406082a864886f70d030204080102030405060708")
    parsed = algorithms.parse_algorithm_identifier(bare)
    assert parsed.cipher.effective_bits == 32 and parsed.iv == bytes(range(1, 9))
    big = bytes.fromhex("301a06082a864886f70d0302300e0202010004080102030405060708")
    assert algorithms.parse_algorithm_identifier(big).cipher.effective_bits == 256


def test_rc2_version_numbers_written() -> None:
    for name, version in (("rc2-40", 160), ("rc2-64", 120), ("rc2-128", 58)):
        alg = algorithms.algorithm_identifier(algorithms.get_cipher(name), bytes(8))
        # Read back with asn1crypto's own RFC 3370 declaration, not smimecli's.
        parsed = asn1_algos.EncryptionAlgorithm.load(alg)
        assert parsed["algorithm"].native == "rc2"
        assert parsed["parameters"]["rc2_parameter_version"].native == version
        assert parsed["parameters"]["iv"].native == bytes(8)
        assert parsed.dump(force=True) == alg  # DER as asn1crypto would write it


def test_gcm_parameters_rfc5084() -> None:
    alg = algorithms.algorithm_identifier(algorithms.get_cipher("aes128-gcm"), bytes(12))
    asn1 = algorithms._asn1()
    params = asn1.GCMParameters.load(asn1.AlgorithmIdentifier.load(alg)["parameters"].dump())
    assert params["aes_nonce"].native == bytes(12)
    assert params["aes_icvlen"].native == 16


@pytest.mark.parametrize("bad", [b"", b"\x30\x03\x06\x01\x00", b"garbage"])
def test_unknown_or_broken_algorithm_is_data_error(bad: bytes) -> None:
    with pytest.raises(DataError):
        algorithms.parse_algorithm_identifier(bad)


def test_bad_padding_is_constant_data_error() -> None:
    cipher = algorithms.get_cipher("aes128")
    key, iv = algorithms.new_key(cipher), algorithms.new_iv(cipher)
    alg = algorithms.algorithm_identifier(cipher, iv)
    from cryptography.hazmat.primitives.ciphers import Cipher, modes
    from cryptography.hazmat.primitives.ciphers.algorithms import AES

    raw = Cipher(AES(key), modes.CBC(iv)).encryptor()
    bad_block = raw.update(b"x" * 15 + b"\x00") + raw.finalize()  # pad byte 0 is invalid
    dec = algorithms.content_decryptor(alg, key)
    dec.update(bad_block)
    with pytest.raises(DataError, match="wrong key or damaged"):
        dec.finalize()
    truncated = algorithms.content_decryptor(alg, key)
    truncated.update(bad_block[:10])
    with pytest.raises(DataError, match="wrong key or damaged"):
        truncated.finalize()


def test_gcm_wrong_tag_is_data_error() -> None:
    cipher = algorithms.get_cipher("aes256-gcm")
    key, iv = algorithms.new_key(cipher), algorithms.new_iv(cipher)
    enc = algorithms.ContentEncryptor(cipher, key, iv)
    ciphertext = enc.update(b"secret") + enc.finalize()
    dec = algorithms.content_decryptor(algorithms.algorithm_identifier(cipher, iv), key)
    assert isinstance(dec, algorithms.GCMDecryptor)
    dec.update(ciphertext)
    with pytest.raises(DataError):
        dec.finalize_with_tag(bytes(16))
    no_tag = algorithms.content_decryptor(algorithms.algorithm_identifier(cipher, iv), key)
    with pytest.raises(DataError):
        no_tag.finalize()


def test_unknown_cipher_name_is_usage_error() -> None:
    with pytest.raises(UsageError):
        algorithms.get_cipher("aes512")


# --- envelopes -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", algorithms.CIPHER_NAMES)
def test_envelope_round_trip_every_cipher(pki: Any, name: str) -> None:
    der = (
        EnvelopeBuilder()
        .set_cipher(name)
        .add_recipient(Recipient(pki.alice.cert))
        .encrypt(CANONICAL)
    )
    assert open_envelope(der, pki.alice) == CANONICAL
    info = cms.ContentInfo.load(der)
    expected = "authenticated_enveloped_data" if "gcm" in name else "enveloped_data"
    assert info["content_type"].native == expected


@pytest.mark.parametrize("oaep_hash", ["sha1", "sha256", "sha384", "sha512"])
def test_oaep_parameters_are_explicit(pki: Any, oaep_hash: str) -> None:
    recipient = Recipient(pki.bob.cert, key_transport="rsa-oaep", oaep_hash=oaep_hash)
    der = EnvelopeBuilder().add_recipient(recipient).encrypt(CANONICAL)
    ktri = cms.ContentInfo.load(der)["content"]["recipient_infos"][0].chosen
    alg = ktri["key_encryption_algorithm"]
    assert alg["algorithm"].native == "rsaes_oaep"
    raw = alg["parameters"].dump()
    assert raw[2] == 0xA0 and b"\xa1" in raw  # hashFunc [0] and maskGenFunc [1] written
    assert alg["parameters"]["hash_algorithm"]["algorithm"].native == oaep_hash
    mgf = alg["parameters"]["mask_gen_algorithm"]
    assert mgf["algorithm"].native == "mgf1"
    assert mgf["parameters"]["algorithm"].native == oaep_hash
    assert open_envelope(der, pki.bob) == CANONICAL


def test_sha1_oaep_warns(pki: Any, caplog: pytest.LogCaptureFixture) -> None:
    recipient = Recipient(pki.bob.cert, key_transport="rsa-oaep", oaep_hash="sha1")
    out = io.BytesIO()
    result = EnvelopeBuilder().add_recipient(recipient).encrypt_chunks([b"x"], 1, out)
    assert any("SHA-1" in w for w in result.warnings)


def test_versions_and_recipient_ids(pki: Any) -> None:
    der = EnvelopeBuilder().add_recipient(Recipient(pki.alice.cert)).encrypt(CANONICAL)
    content = cms.ContentInfo.load(der)["content"]
    assert content["version"].native == "v0"
    rid = content["recipient_infos"][0].chosen["rid"]
    assert rid.name == "issuer_and_serial_number"
    assert rid.chosen["serial_number"].native == pki.alice.cert.serial_number

    der = (
        EnvelopeBuilder()
        .add_recipient(Recipient(pki.alice.cert, recipient_id="ski"))
        .encrypt(CANONICAL)
    )
    content = cms.ContentInfo.load(der)["content"]
    ktri = content["recipient_infos"][0].chosen
    assert (content["version"].native, ktri["version"].native) == ("v2", "v2")
    from cryptography import x509

    ski = pki.alice.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ktri["rid"].chosen.native == ski.value.digest

    der = EnvelopeBuilder().add_recipient(Recipient(pki.carol_ec.cert)).encrypt(CANONICAL)
    content = cms.ContentInfo.load(der)["content"]
    kari = content["recipient_infos"][0].chosen
    assert content["version"].native == "v2"
    assert kari["version"].native == "v3"
    assert kari["originator"].name == "originator_key"
    assert kari["key_encryption_algorithm"]["algorithm"].dotted == "1.3.132.1.11.1"


def test_two_recipients_sorted_and_both_open(pki: Any) -> None:
    der = (
        EnvelopeBuilder()
        .add_recipient(Recipient(pki.alice.cert))
        .add_recipient(Recipient(pki.bob.cert, key_transport="rsa-oaep"))
        .encrypt(CANONICAL)
    )
    infos = cms.ContentInfo.load(der)["content"]["recipient_infos"]
    encodings = [ri.dump() for ri in infos]
    assert encodings == sorted(encodings)  # DER SET OF order
    assert open_envelope(der, pki.alice) == CANONICAL
    assert open_envelope(der, pki.bob) == CANONICAL


def test_output_is_der(pki: Any) -> None:
    der = EnvelopeBuilder().add_recipient(Recipient(pki.alice.cert)).encrypt(CANONICAL * 100)
    assert cms.ContentInfo.load(der, strict=True).dump(force=True) == der


def test_no_recipient_is_usage_error() -> None:
    # Every final verb checks the whole envelope, and writes nothing when it is refused.
    out = io.BytesIO()
    with pytest.raises(UsageError, match="no recipients"):
        EnvelopeBuilder().encrypt(b"x")
    with pytest.raises(UsageError, match="no recipients"):
        EnvelopeBuilder().encrypt_chunks([b"x"], 1, out)
    with pytest.raises(UsageError, match="no recipients"):
        EnvelopeBuilder().encrypt_unmeasured([b"x"], out, low=1, high=1)
    assert out.getvalue() == b""


def test_cipher_is_set_once(pki: Any) -> None:
    builder = EnvelopeBuilder().set_cipher("aes128")
    with pytest.raises(UsageError, match=r"cipher is already set \(aes128\)"):
        builder.set_cipher("aes256-gcm")
    der = builder.add_recipient(Recipient(pki.alice.cert)).encrypt(CANONICAL)
    eci = cms.ContentInfo.load(der)["content"]["encrypted_content_info"]
    assert eci["content_encryption_algorithm"]["algorithm"].native == "aes128_cbc"


def test_the_same_recipient_twice_is_one_recipient_info(pki: Any) -> None:
    # Two addresses of one person lead to one certificate: one RecipientInfo, not two.
    der = (
        EnvelopeBuilder()
        .add_recipient(Recipient(pki.alice.cert))
        .add_recipient(Recipient(pki.alice.cert))
        .encrypt(CANONICAL)
    )
    assert len(cms.ContentInfo.load(der)["content"]["recipient_infos"]) == 1
    assert open_envelope(der, pki.alice) == CANONICAL
    # The same certificate delivered another way is another RecipientInfo (RFC 5652 6.1
    # allows both; the recipient's client picks the one it reads).
    both = (
        EnvelopeBuilder()
        .add_recipient(Recipient(pki.alice.cert))
        .add_recipient(Recipient(pki.alice.cert, key_transport="rsa-oaep"))
        .encrypt(CANONICAL)
    )
    assert len(cms.ContentInfo.load(both)["content"]["recipient_infos"]) == 2


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=5000), st.sampled_from(["aes128", "aes256-gcm", "3des"]))
def test_hypothesis_round_trip(pki: Any, data: bytes, name: str) -> None:
    der = EnvelopeBuilder().set_cipher(name).add_recipient(Recipient(pki.alice.cert)).encrypt(data)
    assert open_envelope(der, pki.alice) == data


# --- encrypt_message -----------------------------------------------------------------------

MESSAGE = (
    b"Received: from mx by gw; Mon, 1 Jan 2024 00:00:00 +0000\n"
    b"From: Alice <alice@example.com>\n"
    b"To: bob@example.com\n"
    b"Bcc: secret@example.com\n"
    b"Subject: quarterly\n"
    b"\tfigures\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"Hello Bob,\n"
    b"\n"
    b"the numbers.\n"
)


def _split_output(out: bytes, newline: bytes) -> tuple[bytes, bytes]:
    head, _, body = out.partition(newline + newline)
    return head, body


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_message_format(pki: Any, newline: bytes) -> None:
    src = MESSAGE.replace(b"\n", newline)
    out = io.BytesIO()
    outcome = encrypt_message(src, out, [Recipient(pki.alice.cert)])
    assert outcome.action == "encrypted" and outcome.cipher == "aes256"
    data = out.getvalue()
    head, body = _split_output(data, newline)
    nl = newline.decode()
    assert head.decode() == nl.join(
        [
            "Received: from mx by gw; Mon, 1 Jan 2024 00:00:00 +0000",
            "From: Alice <alice@example.com>",
            "To: bob@example.com",
            "Subject: quarterly",
            "\tfigures",
            "MIME-Version: 1.0",
            "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
            "Content-Transfer-Encoding: base64",
            "Content-Disposition: attachment; filename=smime.p7m",
        ]
    )
    assert b"secret@example.com" not in data
    if newline == b"\n":
        assert b"\r" not in data
    else:
        assert data.count(b"\n") == data.count(b"\r\n")
    lines = body.split(newline)
    assert lines[-1] == b""
    assert all(0 < len(line) <= 76 for line in lines[:-1])
    inner = open_envelope(base64.b64decode(b"".join(lines)), pki.alice)
    assert inner == (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"Hello Bob,\r\n\r\nthe numbers.\r\n"
    )


def test_gcm_message_says_auth_enveloped(pki: Any) -> None:
    out = io.BytesIO()
    encrypt_message(MESSAGE, out, [Recipient(pki.alice.cert)], cipher="aes128-gcm")
    block, _ = parse_header_block(out.getvalue())
    assert block.content_type().param("smime-type") == "authEnveloped-data"


# The first octets of a BER ContentInfo of EnvelopedData, as a streaming encoder writes
# them: SEQUENCE, id-envelopedData, [0], SEQUENCE, version 0, SET.
ENVELOPED_START = b"MIAGCSqGSIb3DQEHA6CAMIACAQAx"


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
        b"application/x-pkcs7-mime; name=smime.p7m",
    ],
)
def test_already_encrypted_passes_byte_for_byte(pki: Any, content_type: bytes) -> None:
    src = (
        b"From: a@example.com\r\nBcc: keep-as-is@example.com\r\nContent-Type: "
        + content_type
        + b"\r\n\r\n"
        + ENVELOPED_START
        + b"\r\nabc\n"
    )
    out = io.BytesIO()
    outcome = encrypt_message(io.BytesIO(src), out, [Recipient(pki.alice.cert)])
    assert outcome.action == "already-encrypted"
    assert out.getvalue() == src


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        # The claim alone is not enough: a plaintext body is encrypted.
        (b"application/pkcs7-mime; smime-type=enveloped-data", b"Secret plan.\r\n"),
        # A CMS SignedData (1.2.840.113549.1.7.2) is not encrypted.
        (b"application/pkcs7-mime; smime-type=enveloped-data", b"MIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n"),
        # PGP/MIME is not S/MIME: treated as plaintext.
        (
            b'multipart/encrypted; protocol="application/pgp-encrypted"; boundary=b',
            b"--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b--\r\n",
        ),
    ],
)
def test_claimed_encryption_is_checked(pki: Any, content_type: bytes, body: bytes) -> None:
    src = b"From: a@example.com\r\nContent-Type: " + content_type + b"\r\n\r\n" + body
    out = io.BytesIO()
    outcome = encrypt_message(io.BytesIO(src), out, [Recipient(pki.alice.cert)])
    assert outcome.action == "encrypted"
    _, wrapped = _split_output(out.getvalue(), b"\r\n")
    inner = open_envelope(base64.b64decode(wrapped), pki.alice)
    assert inner.endswith(body)


def test_signed_message_is_encrypted_whole(pki: Any) -> None:
    src = (
        b"From: a@example.com\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'micalg=sha-256; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nhi\n--b\n"
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\n\nAAAA\n--b--\n"
    )
    out = io.BytesIO()
    encrypt_message(src, out, [Recipient(pki.alice.cert)])
    _, body = _split_output(out.getvalue(), b"\n")
    inner = open_envelope(base64.b64decode(body), pki.alice)
    assert inner.startswith(b"Content-Type: multipart/signed;")
    assert inner.endswith(b"--b--\r\n")
    assert inner.count(b"\r\n") == src.split(b"\n\n", 1)[1].count(b"\n") + 2


def test_pipe_input_is_spooled(pki: Any) -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buf: Any) -> int:
            chunk = self._inner.read(len(buf))
            buf[: len(chunk)] = chunk
            return len(chunk)

    out = io.BytesIO()
    encrypt_message(io.BufferedReader(Pipe(MESSAGE)), out, [Recipient(pki.alice.cert)])
    _, body = _split_output(out.getvalue(), b"\n")
    assert open_envelope(base64.b64decode(body), pki.alice).endswith(b"the numbers.\r\n")


def test_not_a_message_is_data_error(pki: Any) -> None:
    with pytest.raises(DataError):
        encrypt_message(b"\x00\x01 binary junk", io.BytesIO(), [Recipient(pki.alice.cert)])


def test_no_recipients_is_usage_error() -> None:
    with pytest.raises(UsageError):
        encrypt_message(MESSAGE, io.BytesIO(), [])


def test_dsa_certificate_is_data_error(pki: Any) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa

    key = dsa.generate_private_key(2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "dsa")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(DataError, match="RSA and EC"):
        encrypt_message(MESSAGE, io.BytesIO(), [Recipient(cert)])


STREAM_SCRIPT = r"""
import io, resource, sys
from cryptography import x509
from smimecli.cms.envelope import Recipient
from smimecli.encrypt.message import encrypt_message

SIZE = int(sys.argv[2])
LINE = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n"

class Generated(io.RawIOBase):
    # A pipe-like source: not seekable, so the message is spooled as stdin would be.
    def __init__(self):
        self.head = b"From: a@example.com\nContent-Type: text/plain\n\n"
        self.left = SIZE
    def readable(self):
        return True
    def readinto(self, buf):
        if self.head:
            n = len(self.head); buf[:n] = self.head; self.head = b""; return n
        n = min(len(buf), self.left) // len(LINE) * len(LINE)
        if n == 0:
            return 0
        buf[:n] = LINE * (n // len(LINE)); self.left -= n
        return n

class Sink(io.RawIOBase):
    def __init__(self):
        self.count = 0
    def writable(self):
        return True
    def write(self, data):
        self.count += len(data); return len(data)

cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sink = Sink()
encrypt_message(io.BufferedReader(Generated(), 1 << 16), sink, [Recipient(cert)])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, sink.count)
"""


def test_memory_does_not_grow_with_size(pki: Any) -> None:
    size = 64 << 20
    proc = subprocess.run(
        [sys.executable, "-c", STREAM_SCRIPT, str(pki.alice.cert_pem), str(size)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    before, after, written = (int(x) for x in proc.stdout.split())
    assert written > size * 4 // 3  # base64 of the whole ciphertext went out
    growth_mib = (after - before) / 1024
    assert growth_mib < 40, f"peak RSS grew by {growth_mib:.1f} MiB for a 64 MiB message"
