"""Benchmark: e-mail lookup in a store of 100,000 certificates against a store of 10.

SPEC section 5: encrypting by e-mail lookup with 100,000 certificates must stay within
1.2x the time with 10. Run by hand (not a test):

    python -m bench.bench_store [--count 100000] [--runs 15]

It fills two stores (one EC CA key signs every certificate; all share one subject key so
filling takes seconds), times ``Store.by_email`` in-process (median of interleaved runs),
and, when ``smimecli encrypt --rules`` works, the whole command against each store.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bench.common import smimecli_command
from smimecli.certs.store import DB_NAME, Store

TARGET = "target@example.com"


def _fill(
    folder: Path, count: int, ca_key: ec.EllipticCurvePrivateKey, user_key: rsa.RSAPrivateKey
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    public = user_key.public_key()
    target_cert: x509.Certificate | None = None
    with Store.open(folder, create=True) as store, store.transaction():
        for index in range(count):
            address = TARGET if index == count // 2 else f"user{index}@example.com"
            cert = (
                x509.CertificateBuilder()
                .subject_name(
                    x509.Name(
                        [
                            x509.NameAttribute(NameOID.EMAIL_ADDRESS, address),
                            x509.NameAttribute(NameOID.COMMON_NAME, f"User {index}"),
                        ]
                    )
                )
                .issuer_name(ca_name)
                .public_key(public)
                .serial_number(index + 1)
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
                .sign(ca_key, hashes.SHA256())
            )
            store.add(cert, store_name="other")
            if address == TARGET:
                target_cert = cert
    assert target_cert is not None
    return target_cert


def _time_lookup(folder: Path) -> float:
    start = time.perf_counter()
    with Store.open(folder) as store:
        found = store.by_email(TARGET, "other")
        assert len(found) == 1 and found[0].cert is not None
    return time.perf_counter() - start


def _time_encrypt(folder: Path, rules: Path, message: Path) -> float | None:
    command = [
        *smimecli_command(),
        "--store",
        str(folder),
        "encrypt",
        "--rules",
        str(rules),
        str(message),
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or b"pkcs7-mime" not in proc.stdout:
        print(
            f"  encrypt --rules failed ({proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()[:200]}"
        )
        return None
    return elapsed


def main() -> None:
    """Fill the stores, time, print medians and the ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    user_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        small, large = base / "small", base / "large"
        start = time.perf_counter()
        _fill(small, 10, ca_key, user_key)
        _fill(large, args.count, ca_key, user_key)
        fill = time.perf_counter() - start
        size = (large / DB_NAME).stat().st_size
        print(
            f"filled stores of 10 and {args.count} certificates in {fill:.1f} s "
            f"(large database {size / 1e6:.1f} MB)"
        )
        lookups: dict[str, list[float]] = {"small": [], "large": []}
        for _ in range(args.runs):
            lookups["small"].append(_time_lookup(small))
            lookups["large"].append(_time_lookup(large))
        s, l_ = statistics.median(lookups["small"]), statistics.median(lookups["large"])
        print(
            f"library lookup (open + by_email + parse): 10 certs {s * 1e3:.2f} ms, "
            f"{args.count} certs {l_ * 1e3:.2f} ms, ratio {l_ / s:.2f}"
        )
        rules = base / "rules.toml"
        rules.write_text(
            '[[rule]]\nname = "bench"\nrecipients = ["*@example.com"]\n'
            'source = { kind = "store", store = "other" }\nmatch = "email"\n'
        )
        message = base / "m.eml"
        message.write_bytes(
            f"From: test@localhost\nTo: {TARGET}\nSubject: bench\n\n".encode() + b"hello\n" * 600
        )
        runs: dict[str, list[float]] = {"small": [], "large": []}
        for _ in range(max(3, args.runs // 2)):
            for name, folder in (("small", small), ("large", large)):
                took = _time_encrypt(folder, rules, message)
                if took is None:
                    print("encrypt --rules not timed (command failed); library lookup only")
                    return
                runs[name].append(took)
        s, l_ = statistics.median(runs["small"]), statistics.median(runs["large"])
        print(
            f"smimecli encrypt --rules: 10 certs {s * 1e3:.1f} ms, {args.count} certs "
            f"{l_ * 1e3:.1f} ms, ratio {l_ / s:.2f} (SPEC limit 1.2)"
        )


if __name__ == "__main__":
    main()
