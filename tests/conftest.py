"""Shared fixtures: a session test PKI, the interop corpus, and an in-process CLI runner."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from tests.pki import Identity, TestCA

ROOT = Path(__file__).resolve().parent.parent


def interop_dir() -> Path | None:
    """The shared interop corpus: $SMIMECLI_INTEROP_DIR or ../shared/interop."""
    env = os.environ.get("SMIMECLI_INTEROP_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "interop")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


INTEROP_ABSENT = (
    "interop corpus absent: the real S/MIME, PKCS#12, SST and TNEF files made by "
    "Thunderbird/NSS, OpenSSL, MimeKit, pyca and Windows that these tests read live in the "
    "shared folder ../shared/interop beside the checkout (or the folder named by "
    "SMIMECLI_INTEROP_DIR); it is not part of the repository"
)


def require_interop() -> Path:
    """The interop corpus folder, or skip the test saying what the corpus is."""
    found = interop_dir()
    if found is None:
        pytest.skip(INTEROP_ABSENT)
    return found


@pytest.fixture(scope="session")
def interop() -> Path:
    """The interop corpus folder; skips the test with a reason when it is absent."""
    return require_interop()


def require_tool(name: str) -> str:
    """The path of an external tool, or skip the test with a reason."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it with apt-get)")
    return path


def stop_gnupg(home: Path) -> None:
    """Stop the daemons gpgsm started for GNUPGHOME ``home`` (gpg-agent, dirmngr...), so a
    test run leaves no process behind."""
    gpgconf = shutil.which("gpgconf")
    if gpgconf is None:
        return
    subprocess.run(
        [gpgconf, "--homedir", str(home), "--kill", "all"],
        env=dict(os.environ, GNUPGHOME=str(home)),
        capture_output=True,
        check=False,
        timeout=30,
    )


@dataclass
class Pki:
    ca: TestCA
    alice: Identity  # RSA 2048, alice@example.com
    bob: Identity  # RSA 2048, bob@example.com
    carol_ec: Identity  # EC P-256, carol@example.com
    dave_p384: Identity  # EC P-384, dave@example.com


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A session-scoped test CA with RSA and EC users (key files, .cer, .pem, .pfx)."""
    folder = tmp_path_factory.mktemp("pki")
    ca = TestCA(folder)
    return Pki(
        ca=ca,
        alice=ca.issue("Alice", "alice@example.com"),
        bob=ca.issue("Bob", "bob@example.com"),
        carol_ec=ca.issue("Carol", "carol@example.com", key_type="p256"),
        dave_p384=ca.issue("Dave", "dave@example.com", key_type="p384"),
    )


@dataclass
class Result:
    exit_code: int
    stdout: bytes
    stderr: str

    @property
    def output(self) -> str:
        """Both streams, for assertion messages."""
        return self.stdout.decode("utf-8", "replace") + self.stderr


class _Stream(io.TextIOWrapper):
    def isatty(self) -> bool:
        return False


def run_cli(
    args: Sequence[str | Path], input: bytes = b"", env: dict[str, str] | None = None
) -> Result:
    """Run ``smimecli ARGS`` in this process with binary stdin/stdout captured."""
    from smimecli.cli.app import main

    stdin = _Stream(io.BytesIO(input), encoding="utf-8")
    out_buf = io.BytesIO()
    stdout = _Stream(out_buf, encoding="utf-8", write_through=True)
    stderr = io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    saved_env = dict(os.environ)
    if env:
        os.environ.update(env)
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    try:
        code = main([str(a) for a in args])
        stdout.flush()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        os.environ.clear()
        os.environ.update(saved_env)
    return Result(code, out_buf.getvalue(), stderr.getvalue())


def assert_error(result: Result, code: int, *parts: str) -> str:
    """A failure as the user sees it: exit status ``code``, one ``smimecli: error:`` line
    (the last on standard error; warnings may come before it) that holds every one of
    ``parts`` (the file named, the reason), and no traceback. Returns that line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("smimecli: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for part in parts:
        assert part in errors[0], (part, errors[0])
    return errors[0]


class Cli(Protocol):
    """The type of the ``cli`` fixture."""

    def __call__(
        self, args: Sequence[str | Path], input: bytes = b"", env: dict[str, str] | None = None
    ) -> Result: ...


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """``cli(args, input=b"")``: run smimecli in-process with a private store folder."""
    store = tmp_path / "store"

    def invoke(
        args: Sequence[str | Path], input: bytes = b"", env: dict[str, str] | None = None
    ) -> Result:
        merged = {"SMIMECLI_STORE": str(store)}
        merged.update(env or {})
        return run_cli(args, input=input, env=merged)

    yield invoke


def run_on_terminal(args: Sequence[str | Path], columns: int, env: dict[str, str]) -> str:
    """Run ``python -m smimecli ARGS`` with stdout and stderr on a pseudo-terminal of
    ``columns`` columns; the text it shows."""
    import pty
    import subprocess as sp

    master, slave = pty.openpty()
    full = dict(os.environ, COLUMNS=str(columns), LINES="60", TERM="dumb", **env)
    full.pop("NO_COLOR", None)
    proc = sp.Popen(
        [sys.executable, "-m", "smimecli", *map(str, args)],
        stdin=sp.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=full,
        cwd=ROOT,
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    proc.wait(timeout=60)
    return out.decode("utf-8", "replace").replace("\r\n", "\n")
