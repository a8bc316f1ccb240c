"""Device faults and odd outputs (SPEC sections 2 and 6): a full disk or a full standard
output is 74 with one line and nothing left on disk; a reader that closes the pipe early
is 74, never 0; closed standard streams give no traceback; -o onto a FIFO or a device
writes into it instead of replacing it; plaintext outputs are never wider than 0600 (or
the mode of the file they replace); temporaries of a killed run are cleaned up."""

from __future__ import annotations

import errno
import io
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from smimecli import files
from smimecli.errors import InputError, IOFailedError
from smimecli.files import atomic
from tests.conftest import ROOT, Pki

BIG = b"From: a@example.com\nTo: alice@example.com\nSubject: big\n\n" + b"x" * 1023 * 400 + b"\n"


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, SMIMECLI_STORE=str(tmp_path / "store"), PYTHONPATH=str(ROOT))


def _cmd(*args: object) -> list[str]:
    return [sys.executable, "-m", "smimecli", *map(str, args)]


def _one_line(err: str) -> None:
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err


@pytest.fixture
def sealed(pki: Pki, tmp_path: Path) -> Path:
    """BIG encrypted to Alice."""
    (tmp_path / "big.eml").write_bytes(BIG)
    out = tmp_path / "big.p7m"
    subprocess.run(
        _cmd("encrypt", tmp_path / "big.eml", "--cert", pki.alice.cert_pem, "-o", out),
        env=_env(tmp_path),
        check=True,
    )
    return out


# --- item 7: standard streams ---------------------------------------------------------------


@pytest.mark.parametrize("args", [("--version",), ("tnef", "convert", "{msg}")])
def test_full_stdout_is_74(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "m.eml").write_bytes(BIG)
    argv = [a.replace("{msg}", str(tmp_path / "m.eml")) for a in args]
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            _cmd(*argv), stdout=full, stderr=subprocess.PIPE, env=_env(tmp_path), text=True
        )
    assert proc.returncode == 74, proc.stderr
    _one_line(proc.stderr)
    assert "standard output" in proc.stderr and "No space left" in proc.stderr


@pytest.mark.parametrize("what", ["encrypt", "decrypt", "tnef"])
def test_reader_closing_the_pipe_early_is_74(
    pki: Pki, tmp_path: Path, sealed: Path, what: str
) -> None:
    argv = {
        "encrypt": ("encrypt", tmp_path / "big.eml", "--cert", pki.alice.cert_pem),
        "decrypt": ("decrypt", sealed, "--key", pki.alice.key_pem),
        "tnef": ("tnef", "convert", tmp_path / "big.eml"),
    }[what]
    proc = subprocess.Popen(
        _cmd(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path)
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(10)) == 10  # like `| head -c 10`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 74, err
    _one_line(err)
    assert "the reader closed the pipe" in err


def _shell(line: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", line], capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path
    )


def test_closed_stdout_at_start(tmp_path: Path) -> None:
    proc = _shell(f"exec {sys.executable} -m smimecli --version >&-", tmp_path)
    assert proc.returncode == 74, proc.stderr
    _one_line(proc.stderr)
    assert "standard output" in proc.stderr


def test_closed_stdin_at_start(pki: Pki, tmp_path: Path) -> None:
    line = f"exec {sys.executable} -m smimecli encrypt --cert {pki.alice.cert_pem} <&-"
    proc = _shell(line, tmp_path)
    assert proc.returncode == 66, proc.stderr
    _one_line(proc.stderr)
    assert "cannot read standard input" in proc.stderr


def test_closed_stderr_at_start(tmp_path: Path) -> None:
    proc = _shell(f"exec {sys.executable} -m smimecli encrypt --no-such-option 2>&-", tmp_path)
    assert proc.returncode == 64
    assert "Traceback" not in proc.stdout and "error" not in proc.stdout


def test_input_read_error_is_74() -> None:
    class Failing(io.FileIO):
        def readinto(self, buffer: Any) -> int:
            raise OSError(errno.EIO, "Input/output error")

    with files.reader(Failing(os.devnull, "rb"), "in.eml") as handle:
        with pytest.raises(IOFailedError, match=r"I/O error reading in\.eml: Input/output error"):
            handle.read(100)


def test_closed_input_is_66() -> None:
    with pytest.raises(InputError):
        raise files.input_error("standard input", OSError(errno.EBADF, "Bad file descriptor"))


def test_spool_write_error_is_74(cli: Any, pki: Pki, sealed: Path, monkeypatch: Any) -> None:
    class FullSpool(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    import tempfile

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", lambda **kwargs: FullSpool())
    result = cli(["decrypt", sealed, "--key", pki.alice.key_pem])
    assert result.exit_code == 74, result.output
    _one_line(result.stderr)
    assert "No space left on device" in result.stderr


# --- item 6: full disk under -o -----------------------------------------------------------


class _FullRaw(io.FileIO):
    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def _full_open(fd: int, mode: str = "rb", buffering: int = -1, **kwargs: Any) -> Any:
    raw = _FullRaw(fd, "wb")
    return raw if buffering == 0 else io.BufferedWriter(raw)


@pytest.mark.parametrize("command", ["encrypt", "decrypt", "tnef"])
def test_full_disk_under_o_is_74_and_leaves_nothing(
    cli: Any, pki: Pki, tmp_path: Path, sealed: Path, monkeypatch: Any, command: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    argv = {
        "encrypt": ["encrypt", tmp_path / "big.eml", "--cert", pki.alice.cert_pem],
        "decrypt": ["decrypt", sealed, "--key", pki.alice.key_pem],
        "tnef": ["tnef", "convert", tmp_path / "big.eml"],
    }[command]
    monkeypatch.setattr(atomic, "open", _full_open, raising=False)
    result = cli([*argv, "-o", out / "result"])
    assert result.exit_code == 74, result.output
    _one_line(result.stderr)
    assert "No space left on device" in result.stderr
    assert list(out.iterdir()) == []


def test_full_disk_to_a_device_is_74(pki: Pki, tmp_path: Path) -> None:
    """-o onto a device writes into it (here a full one: 74) and never replaces it. A
    private node of /dev/full, so that an old smimecli run as root replaces only that."""
    device = tmp_path / "full"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.stat("/dev/full").st_rdev)
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    (tmp_path / "m.eml").write_bytes(BIG)
    proc = subprocess.run(
        _cmd("encrypt", tmp_path / "m.eml", "--cert", pki.alice.cert_pem, "-o", device),
        capture_output=True,
        text=True,
        env=_env(tmp_path),
    )
    assert proc.returncode == 74, proc.stderr
    _one_line(proc.stderr)
    assert "No space left on device" in proc.stderr
    assert stat.S_ISCHR(os.lstat(device).st_mode)


@pytest.mark.parametrize("command", ["gen-root", "issue-user"])
def test_full_disk_lab_leaves_no_file_and_no_store_entry(
    cli: Any, tmp_path: Path, monkeypatch: Any, command: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if command == "issue-user":
        root = cli(["gen-root"])
        assert root.exit_code == 0, root.output
        thumbprint = root.stdout.decode().split()[0]
        argv = ["issue-user", "--email", "eve@example.com", "--signer", thumbprint[:10]]
    else:
        argv = ["gen-root", "--subject", "CN=Full Disk Root"]
    before = cli(["certs", "list", "--json"]).stdout
    monkeypatch.setattr(atomic, "open", _full_open, raising=False)
    result = cli([*argv, "--out-pem", out / "c.pem", "--out-cer", out / "c.cer"])
    monkeypatch.undo()
    assert result.exit_code == 74, result.output
    _one_line(result.stderr)
    assert list(out.iterdir()) == []
    assert cli(["certs", "list", "--json"]).stdout == before


# --- item 8: special files ----------------------------------------------------------------


def test_o_onto_a_fifo_writes_into_it(pki: Pki, tmp_path: Path, sealed: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    proc = subprocess.run(
        _cmd("decrypt", sealed, "--key", pki.alice.key_pem, "-o", fifo),
        capture_output=True,
        text=True,
        env=_env(tmp_path),
    )
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got and got[0].endswith(b"x" * 1023 + b"\n")


def test_o_onto_a_folder_is_73(pki: Pki, tmp_path: Path, sealed: Path) -> None:
    proc = subprocess.run(
        _cmd("decrypt", sealed, "--key", pki.alice.key_pem, "-o", tmp_path),
        capture_output=True,
        text=True,
        env=_env(tmp_path),
    )
    assert proc.returncode == 73, proc.stderr
    _one_line(proc.stderr)
    assert "is a folder" in proc.stderr


# --- item 9: modes and stale temporaries --------------------------------------------------


def test_decrypt_never_widens_the_mode(pki: Pki, tmp_path: Path, sealed: Path) -> None:
    out = tmp_path / "plain.eml"
    run = ("decrypt", sealed, "--key", pki.alice.key_pem, "-o", out)
    subprocess.run(_cmd(*run), check=True, env=_env(tmp_path))  # umask 022 here: still 0600
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    out.chmod(0o640)
    subprocess.run(_cmd(*run), check=True, env=_env(tmp_path))
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    out.chmod(0o600)
    out.write_bytes(b"old")
    subprocess.run(_cmd(*run), check=True, env=_env(tmp_path))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_are_cleaned(pki: Pki, tmp_path: Path, sealed: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    old = time.time() - 600
    dead = out / f".plain.eml.{_dead_pid()}.0123456789ab.tmp"
    alive = out / f".other.eml.{os.getpid()}.0123456789ab.tmp"  # a running batch's
    fresh = out / f".new.eml.{_dead_pid()}.0123456789ab.tmp"  # just written
    foreign = out / ".notours.tmp"
    for path in (dead, alive, fresh, foreign):
        path.write_bytes(b"plaintext")
    for path in (dead, alive, foreign):
        os.utime(path, (old, old))
    subprocess.run(
        _cmd("decrypt", sealed, "--key", pki.alice.key_pem, "-o", out / "plain.eml"),
        check=True,
        env=_env(tmp_path),
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["plain.eml", alive.name, fresh.name, foreign.name]
    )


def test_sigkill_during_decrypt_leaves_a_0600_temporary(
    pki: Pki, tmp_path: Path, sealed: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        _cmd("decrypt", "-", "--key", pki.alice.key_pem, "-o", out / "plain.eml"),
        stdin=subprocess.PIPE,
        env=_env(tmp_path),
    )
    assert proc.stdin is not None
    proc.stdin.write(sealed.read_bytes()[:-2000])
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while not list(out.glob(".plain.eml.*.tmp")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    proc.stdin.close()
    (temp,) = out.glob(".plain.eml.*.tmp")
    assert stat.S_IMODE(temp.stat().st_mode) == 0o600
