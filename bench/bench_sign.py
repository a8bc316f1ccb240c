"""Benchmark: signing and verifying one big message, smimecli against ``openssl cms``.

Targets (as for encryption): a 25 MB message signed (detached and opaque), verified, and
signed then encrypted in at most 64 MiB peak memory; the wall-time ratios to OpenSSL are
reported. A message of many tiny MIME parts shows that memory does not grow with the
number of parts. Run by hand (it reports, it is not a test; exit status 0)::

    python -m bench.bench_sign                 # 25 MB x5, 200,000 parts x3
    python -m bench.bench_sign --quick         # 25 MB x3 only
    python -m bench.bench_sign --rounds 9 --parts 0

Every contender reads the same LF-ended file (a text part and an 18 MB base64
attachment) and writes its own output file, with the same RSA-2048 key and SHA-256;
runs are interleaved (A B A B ...). ``verify`` checks smimecli's detached output, which
OpenSSL verifies too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import interleave, machine, make_identity, openssl, report, run, smimecli_command

MB = 1_000_000
_TEXT = b"The text part of a benchmark message, in short lines of plain ASCII.\n"
_BASE64_LINE = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\n"
_HEADER = (
    b"From: bench@example.com\n"
    b"To: reader@example.com\n"
    b"Subject: signing benchmark\n"
    b"MIME-Version: 1.0\n"
)


def make_attachment_message(path: Path, size: int) -> Path:
    """A multipart/mixed message of about ``size`` bytes: a text part of a quarter of it
    and a base64 attachment of the rest (LF line endings)."""
    text = _TEXT * (size // 4 // len(_TEXT))
    lines = (size - len(text)) // len(_BASE64_LINE)
    with path.open("wb") as handle:
        handle.write(_HEADER + b'Content-Type: multipart/mixed; boundary="b1"\n\n')
        handle.write(b"--b1\nContent-Type: text/plain; charset=us-ascii\n\n" + text)
        handle.write(b"\n--b1\nContent-Type: application/octet-stream\n")
        handle.write(b"Content-Transfer-Encoding: base64\n\n")
        block = _BASE64_LINE * 10_000
        while lines >= 10_000:
            handle.write(block)
            lines -= 10_000
        handle.write(_BASE64_LINE * lines + b"--b1--\n")
    return path


def make_parts_message(path: Path, parts: int) -> Path:
    """A multipart/mixed message of ``parts`` tiny text parts."""
    part = b"--b1\nContent-Type: text/plain\n\npart\n"
    with path.open("wb") as handle:
        handle.write(_HEADER + b'Content-Type: multipart/mixed; boundary="b1"\n\n')
        handle.write(part * parts + b"--b1--\n")
    return path


def make_pfx(folder: Path, cert: Path, key: Path, tool: str) -> Path:
    """The certificate and key as a .pfx with an empty password (for ``--signer-pfx``)."""
    pfx = folder / "bench.pfx"
    command = [tool, "pkcs12", "-export", "-in", str(cert), "-inkey", str(key)]
    subprocess.run([*command, "-out", str(pfx), "-passout", "pass:"], check=True)
    return pfx


def bench_message(
    folder: Path, message: Path, ids: tuple[Path, Path, Path], rounds: int, *, full: bool
) -> None:
    """Time sign, sign --opaque, verify and encrypt --sign-with on one message."""
    cert, key, pfx = ids
    tool = openssl() or "openssl"
    size_mb = message.stat().st_size / MB
    out = folder / "out.eml"
    signed = folder / "signed.eml"
    smime = smimecli_command()
    pfx_args = ["--signer-pfx", str(pfx), "--password-env", "BENCH_PFX_PASSWORD"]
    sign = [*smime, "sign", *pfx_args, str(message), "-o"]
    ossl_sign = [tool, "cms", "-sign", "-md", "sha256", "-signer", str(cert), "-inkey", str(key)]
    ossl_sign += ["-in", str(message)]
    run([*sign, str(signed)])
    groups: list[tuple[str, dict[str, Any], str]] = [
        (
            "sign (detached)",
            {
                "smimecli sign": lambda: run([*sign, str(out)]),
                "openssl cms -sign": lambda: run([*ossl_sign, "-out", str(out)]),
            },
            "openssl cms -sign",
        ),
    ]
    if full:
        verify = [*smime, "verify", "--ca", str(cert), str(signed)]
        ossl_verify = [tool, "cms", "-verify", "-CAfile", str(cert), "-in", str(signed)]
        encrypt = [*smime, "encrypt", "--cert", str(cert), "--sign-with-pfx", str(pfx)]
        encrypt += ["--password-env", "BENCH_PFX_PASSWORD", str(message), "-o", str(out)]
        pipe = (
            " ".join(ossl_sign)
            + f" | {tool} cms -encrypt -aes256 -out {out} {cert}"  # same cipher as smimecli
        )
        groups += [
            (
                "sign --opaque",
                {
                    "smimecli sign --opaque": lambda: run(
                        [*sign[:2], "--opaque", *sign[2:], str(out)]
                    ),
                    "openssl cms -sign -nodetach": lambda: run(
                        [*ossl_sign, "-nodetach", "-out", str(out)]
                    ),
                },
                "openssl cms -sign -nodetach",
            ),
            (
                "verify (detached)",
                {
                    "smimecli verify": lambda: run(verify),
                    "openssl cms -verify": lambda: run([*ossl_verify, "-out", os.devnull]),
                },
                "openssl cms -verify",
            ),
            (
                "sign then encrypt",
                {
                    "smimecli encrypt --sign-with": lambda: run(encrypt),
                    "openssl -sign | -encrypt": lambda: run([pipe], shell=True),
                },
                "openssl -sign | -encrypt",
            ),
        ]
    for title, contenders, baseline in groups:
        smimecli_name = next(name for name in contenders if name.startswith("smimecli"))
        series = interleave(contenders, rounds, before=os.sync)
        report(
            f"{title}: {message.name} ({size_mb:.1f} MB), {rounds} interleaved rounds",
            series,
            baseline=baseline,
            targets={smimecli_name: (float("inf"), 64)},
        )
    out.unlink(missing_ok=True)
    signed.unlink(missing_ok=True)


def main() -> int:
    """Parse the options, build the inputs in a temporary folder, run, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="25 MB, 3 rounds, no parts")
    parser.add_argument("--size", type=int, default=25, help="message size in MB")
    parser.add_argument("--parts", type=int, default=200_000, help="tiny parts (0: none)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per contender")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the inputs")
    args = parser.parse_args()
    tool = openssl()
    if tool is None:
        print("openssl is not installed: nothing to compare with")
        return 0
    os.environ["BENCH_PFX_PASSWORD"] = ""
    rounds = 3 if args.quick else args.rounds
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="smimecli-bench-", dir=args.tmp) as name:
        folder = Path(name)
        cert, key = make_identity(folder)
        ids = (cert, key, make_pfx(folder, cert, key, tool))
        big = make_attachment_message(folder / f"m{args.size}.eml", args.size * MB)
        bench_message(folder, big, ids, rounds, full=True)
        if args.parts and not args.quick:
            parts = make_parts_message(folder / f"parts{args.parts}.eml", args.parts)
            bench_message(folder, parts, ids, max(1, rounds - 2), full=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
