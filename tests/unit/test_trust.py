"""smimecli.cms.trust: path building stays bounded whatever certificates a message carries."""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smimecli.cms.trust import MAX_CANDIDATES, evaluate_trust

NOW = dt.datetime.now(dt.UTC)


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _cert(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    serial: int,
    *,
    ca: bool = True,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(signer, hashes.SHA256())


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging for hours) when the block runs longer than ``seconds``."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"path building ran over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_many_same_name_issuers_give_up_quickly_as_untrusted() -> None:
    # 300 self-issued "CA X" certificates with one key: each can have issued every other,
    # so an unbounded depth-first search tries 300^8 paths (the old code ran for hours).
    key = ec.generate_private_key(ec.SECP256R1())
    decoys = [_cert("X", "X", key, key, serial) for serial in range(2, 302)]
    leaf = _cert("leaf", "X", key, key, 1, ca=False)
    root = _cert("Real Root", "Real Root", ec.generate_private_key(ec.SECP256R1()), key, 9)
    started = time.monotonic()
    with _deadline(60):
        result = evaluate_trust(leaf, [root], decoys)
    assert time.monotonic() - started < 30
    assert not result.trusted
    assert result.reasons == [
        f"no chain to a trusted root: gave up after {MAX_CANDIDATES} candidate issuer "
        "certificates (the message carries too many with the same name)"
    ]


def test_the_real_issuer_is_found_among_decoys_with_its_name() -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("Root", "Root", root_key, root_key, 1)
    ca = _cert("Issuing CA", "Root", ca_key, root_key, 2)
    decoy_key = ec.generate_private_key(ec.SECP256R1())
    decoys = [_cert("Issuing CA", "Issuing CA", decoy_key, decoy_key, n) for n in range(3, 60)]
    leaf = _cert(
        "leaf", "Issuing CA", ec.generate_private_key(ec.SECP256R1()), ca_key, 99, ca=False
    )
    with _deadline(60):
        result = evaluate_trust(leaf, [root], [*decoys, ca, *decoys])
    assert result.trusted, result.reasons
    assert result.chain == [leaf, ca, root]
