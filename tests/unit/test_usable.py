"""The SPEC 3 usable-certificate test and the choice of the longest-valid certificate."""

from __future__ import annotations

import datetime as dt

import pytest

from smimecli.certs.usable import best, chains_to_root, problems
from tests.conftest import Pki
from tests.pki import TestCA

NOW = dt.datetime.now(dt.UTC)


def test_good_certificates_have_no_problems(pki: Pki) -> None:
    for ident in (pki.alice, pki.carol_ec, pki.dave_p384):
        assert problems(ident.cert, email=ident.email.upper()) == []


def test_expired_and_not_yet_valid(pki: Pki) -> None:
    old = pki.ca.issue(
        "H3 Old",
        "old@example.com",
        not_before=dt.datetime(2023, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )
    assert problems(old.cert) == ["expired 2024-01-01"]
    future = pki.ca.issue("H3 Future", "future@example.com", not_before=NOW + dt.timedelta(days=3))
    assert problems(future.cert)[0].startswith("not yet valid")
    assert problems(future.cert, at=NOW + dt.timedelta(days=5)) == []


def test_key_usage_and_eku(pki: Pki) -> None:
    # The CA certificate has no EKU but its key usage allows key encipherment.
    assert problems(pki.ca.cert) == []
    no_eku_check = pki.ca.issue("H3 NoExt", "noext@example.com", eku=False, key_usage=False)
    assert problems(no_eku_check.cert) == []


def test_wrong_usage_reported(pki: Pki, tmp_path: object) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    builder = (
        x509.CertificateBuilder()
        .subject_name(pki.alice.cert.subject)
        .issuer_name(pki.ca.cert.subject)
        .public_key(pki.alice.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    )
    cert = builder.sign(pki.ca.key, hashes.SHA256())
    assert problems(cert, email="bob@example.com") == [
        "key usage does not allow key encipherment",
        "no emailProtection in extended key usage",
        "does not name bob@example.com",
    ]


def test_ec_without_key_usage_is_usable(pki: Pki) -> None:
    no_usage = pki.ca.issue("H3 EcNoUsage", "ecbad@example.com", key_type="p256", key_usage=False)
    assert problems(no_usage.cert) == []


def test_unsupported_key_type() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import dsa

    key = dsa.generate_private_key(2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "dsa")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert problems(cert) == ["unsupported key type DSA"]


def test_trust_chain(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = TestCA(tmp_path_factory.mktemp("other"), cn="Other Root")
    assert problems(pki.alice.cert, roots=[pki.ca.cert], require_trusted=True) == []
    assert problems(pki.alice.cert, roots=[other.cert], require_trusted=True) == [
        "does not chain to a trusted root"
    ]
    assert problems(pki.alice.cert, require_trusted=True) == ["does not chain to a trusted root"]
    assert chains_to_root(pki.ca.cert, [pki.ca.cert])


def test_trust_through_intermediate(tmp_path_factory: pytest.TempPathFactory) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    root = TestCA(tmp_path_factory.mktemp("root"), cn="Chain Root")
    mid = TestCA(tmp_path_factory.mktemp("mid"), cn="Chain Mid")
    # Re-sign the intermediate's certificate by the root.
    mid.cert = (
        x509.CertificateBuilder()
        .subject_name(mid.cert.subject)
        .issuer_name(root.cert.subject)
        .public_key(mid.key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root.key, hashes.SHA256())
    )
    user = mid.issue("Eve", "eve@example.com")
    assert chains_to_root(user.cert, [root.cert], [mid.cert])
    assert not chains_to_root(user.cert, [root.cert])
    assert not chains_to_root(user.cert, [root.cert], [mid.cert], at=NOW + dt.timedelta(days=30))


def test_best_picks_longest_valid(pki: Pki) -> None:
    short = pki.ca.issue("H3 Alice Short", "alice@example.com", days=10)
    long = pki.ca.issue("H3 Alice Long", "alice@example.com", days=900)
    assert best([short.cert, long.cert, pki.alice.cert]) is long.cert
    assert best([]) is None


def test_issued_by_is_cached_but_validity_is_not(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from smimecli.certs.usable import issued_by

    root = TestCA(tmp_path_factory.mktemp("root"), cn="Cache Root")
    mid = TestCA(tmp_path_factory.mktemp("mid"), cn="Cache Mid")
    mid.cert = (
        x509.CertificateBuilder()
        .subject_name(mid.cert.subject)
        .issuer_name(root.cert.subject)
        .public_key(mid.key.public_key())
        .serial_number(8)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root.key, hashes.SHA256())
    )
    user = mid.issue("Fay", "fay@example.com")
    assert chains_to_root(user.cert, [root.cert], [mid.cert])
    hits = issued_by.cache_info().hits
    assert chains_to_root(user.cert, [root.cert], [mid.cert])
    assert issued_by.cache_info().hits > hits
    # The same signatures, checked at a time the intermediate has expired.
    assert not chains_to_root(user.cert, [root.cert], [mid.cert], at=NOW + dt.timedelta(days=30))
    assert not issued_by(user.cert, root.cert)


def test_a_key_type_cryptography_does_not_know_is_a_problem_not_a_crash() -> None:
    from cryptography.exceptions import UnsupportedAlgorithm

    from smimecli.certs import usable

    class Unknown:
        def public_key(self) -> None:
            raise UnsupportedAlgorithm("Unknown key type: 1.2.643.2.2.19")

    assert usable._key_type_problem(Unknown()) == (None, "unsupported key type")  # type: ignore[arg-type]
