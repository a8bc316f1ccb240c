"""Helpers shared by the benchmarks: inputs, a test certificate, timed runs, reports.

The benchmarks compare smimecli with OpenSSL on the same files (SPEC section 5). They are
run by hand, print medians, ratios and peak memory, and always exit 0: they report, they
are not tests. The machine they run on is usually shared, so every benchmark interleaves
its contenders (A B A B ...) and quotes medians.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
_TIME = Path("/usr/bin/time")

HEADER = (
    b"From: sender@example.com\n"
    b"To: bench@example.com\n"
    b"Subject: benchmark message\n"
    b"Content-Type: text/plain; charset=us-ascii\n"
    b"\n"
)
_LINE = (b"The quick brown fox jumps over the lazy dog 0123456789 " * 2)[:75] + b"\n"
_BLOCK = _LINE * (MIB // len(_LINE))


@functools.cache  # once per benchmark run
def byte_compile() -> None:
    """Write the smimecli package's .pyc files, as ``pip install .`` does.

    An editable install (``pip install -e``) leaves them to the interpreter, which does
    not write them when PYTHONDONTWRITEBYTECODE is set (as on some CI machines): every
    timed run would then compile about 40 modules from source, some 80 ms that no
    installed copy pays.
    """
    import compileall

    import smimecli

    compileall.compile_dir(Path(smimecli.__file__).parent, quiet=1)


def smimecli_command() -> list[str]:
    """The installed ``smimecli`` script next to this Python, else ``python -m smimecli``.

    The package is byte-compiled first (:func:`byte_compile`).
    """
    byte_compile()
    script = Path(sys.executable).parent / "smimecli"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "smimecli"]


def openssl() -> str | None:
    """The ``openssl`` binary, or None."""
    return shutil.which("openssl")


def make_identity(folder: Path, name: str = "bench") -> tuple[Path, Path]:
    """An RSA-2048 S/MIME certificate and its key (PEM files), made with cryptography."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"{name}@example.com"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, email),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=10))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path = folder / f"{name}.pem"
    key_path = folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def make_message(path: Path, size: int) -> Path:
    """A text/plain message of about ``size`` bytes: LF lines of 76 printable characters."""
    with path.open("wb") as handle:
        handle.write(HEADER)
        left = max(0, size - len(HEADER))
        while left >= len(_BLOCK):
            handle.write(_BLOCK)
            left -= len(_BLOCK)
        handle.write(_LINE * (left // len(_LINE)))
    return path


@dataclass
class Run:
    """One timed process: wall seconds, peak resident memory (KiB), exit status."""

    seconds: float
    peak_kib: int
    status: int


def run(
    command: Sequence[str],
    *,
    stdin: Path | None = None,
    stdout: Path | None = None,
    shell: bool = False,
) -> Run:
    """Run a command once; time it and read its peak RSS (GNU time, else ``wait4``).

    Both report the largest RSS of the process and of the children it waited for, so a
    shell loop reports its largest ``openssl``. GNU time adds about 1 ms to each run.
    """
    argv = list(command) if not shell else ["/bin/bash", "-c", command[0]]
    measure = _TIME.exists()
    if measure:
        # GNU time forks from a tiny process: wait4 in this (big) Python would count the
        # memory of the fork before exec as the child's peak.
        rss_file = tempfile.NamedTemporaryFile(prefix="bench-rss-", delete=False)
        rss_file.close()
        argv = [str(_TIME), "-q", "-f", "%M", "-o", rss_file.name, *argv]
    stdin_handle = stdin.open("rb") if stdin is not None else subprocess.DEVNULL
    stdout_handle = stdout.open("wb") if stdout is not None else subprocess.DEVNULL
    # A file, not a pipe: wait4 before reading a pipe would hang once the command
    # writes more than a pipe buffer to stderr.
    stderr_handle = tempfile.TemporaryFile(prefix="bench-err-")
    try:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            stdin=stdin_handle,
            stdout=stdout_handle,
            stderr=stderr_handle,
        )
        _, wait_status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(wait_status)
        stderr_handle.seek(0)
        errors = stderr_handle.read().decode("utf-8", "replace").strip()
    finally:
        for handle in (stdin_handle, stdout_handle, stderr_handle):
            if not isinstance(handle, int):
                handle.close()
    peak = int(usage.ru_maxrss)
    if measure:
        text = Path(rss_file.name).read_text().strip().splitlines()
        Path(rss_file.name).unlink()
        if text and text[-1].isdigit():
            peak = int(text[-1])
    if process.returncode != 0:
        print(
            f"  ! {' '.join(command)[:120]} exited {process.returncode}: {errors[:300]}",
            file=sys.stderr,
        )
    return Run(seconds, peak, process.returncode)


@dataclass
class Series:
    """Repeated runs of one contender."""

    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median wall time in seconds."""
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_mib(self) -> float:
        """Largest peak RSS over the runs, in MiB."""
        return max(r.peak_kib for r in self.runs) / 1024

    @property
    def failed(self) -> bool:
        """Whether any run exited non-zero."""
        return any(r.status != 0 for r in self.runs)


def interleave(
    contenders: dict[str, Callable[[], Run]],
    rounds: int,
    *,
    before: Callable[[], None] | None = None,
) -> dict[str, Series]:
    """Run every contender once per round, in turn (A B A B ...), ``rounds`` times."""
    series = {name: Series(name) for name in contenders}
    for _ in range(rounds):
        for name, contender in contenders.items():
            if before is not None:
                before()
            series[name].runs.append(contender())
    return series


def machine() -> str:
    """One line naming the machine and software the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ssl = "absent"
    tool = openssl()
    if tool:
        ssl = subprocess.run(
            [tool, "version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}; {ssl}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def report(
    title: str,
    series: dict[str, Series],
    *,
    baseline: str,
    targets: dict[str, tuple[float, float | None]] | None = None,
) -> None:
    """Print medians, ratios to ``baseline``, peak memory, and pass/miss per target.

    Args:
        targets: contender -> (the largest acceptable time ratio to the baseline, the
            largest acceptable peak in MiB or None).
    """
    print(f"\n== {title}")
    base = series[baseline].median
    for name, item in series.items():
        ratio = item.median / base if base else float("nan")
        line = (
            f"  {name:<28} median {item.median:8.3f} s  ratio {ratio:5.2f}x  "
            f"peak {item.peak_mib:7.1f} MiB  runs {len(item.runs)}"
        )
        if item.failed:
            line += "  (FAILED runs)"
        if targets and name in targets:
            max_ratio, max_mib = targets[name]
            ok = ratio <= max_ratio and (max_mib is None or item.peak_mib <= max_mib)
            limit = f"<= {max_ratio}x" + (f", <= {max_mib} MiB" if max_mib else "")
            line += f"  [{'PASS' if ok else 'MISS'} {limit}]"
        print(line)
    sys.stdout.flush()
