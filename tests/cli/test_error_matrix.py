"""Every row of SPEC section 2 through the CLI: the exit status, exactly one stderr line,
no traceback (one with --verbose for the internal error), and nothing written to the
output folder — neither the output nor a temporary file."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from smimecli.cms.envelope import EnvelopeBuilder
from smimecli.cms.recipients import Recipient
from tests.conftest import Pki, Result
from tests.messages import message
from tests.rulesfiles import policy_rules

MESSAGE = message(subject="matrix")
Cli = Callable[..., Result]


def _rules(folder: Path, pki: Pki, policy: str) -> Path:
    name = f"rules-{policy}.toml"
    cert = pki.alice.cert_der
    return policy_rules(folder, cert, policy, name=name, pattern="*@nocert.example", match_any=True)


def _encrypted_to_alice(folder: Path, pki: Pki) -> Path:
    # Bare CMS with AES-GCM: a wrong key always fails the tag (with CBC and no MIME
    # around it, a wrong key passes the padding check once in about 256 tries).
    builder = EnvelopeBuilder().set_cipher("aes256-gcm")
    der = builder.add_recipient(Recipient(pki.alice.cert)).encrypt(
        b"Content-Type: text/plain\r\n\r\nsecret\r\n"
    )
    path = folder / "to-alice.p7m"
    path.write_bytes(der)
    return path


def _case(
    name: str, folder: Path, out: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str | Path], bytes]:
    """The arguments and stdin that trigger one row of the table."""
    message = folder / "in.eml"
    message.write_bytes(MESSAGE)
    target = out / "out.eml"
    cert = str(pki.alice.cert_pem)
    if name == "64-usage":
        return ["encrypt", str(message), "--cert", cert, "--rules", "x.toml", "-o", target], b""
    if name == "64-bad-cipher":
        return ["encrypt", str(message), "--cert", cert, "--cipher", "des", "-o", target], b""
    if name == "65-not-a-message":
        (folder / "junk").write_bytes(b"\x00\x01 not mail at all\n")
        return ["encrypt", str(folder / "junk"), "--cert", cert, "-o", target], b""
    if name == "65-not-a-certificate":
        return ["encrypt", str(message), "--cert", str(message), "-o", target], b""
    if name == "65-broken-cms":
        (folder / "broken.p7m").write_bytes(b"\x30\x84\xff\xff\xff\xff\x06\x09")
        return [
            "decrypt",
            str(folder / "broken.p7m"),
            "--key",
            str(pki.alice.key_pem),
            "-o",
            target,
        ], b""
    if name == "66-missing-input":
        return ["encrypt", str(folder / "absent.eml"), "--cert", cert, "-o", target], b""
    if name == "66-missing-cert":
        return ["encrypt", str(message), "--cert", str(folder / "absent.cer"), "-o", target], b""
    if name in ("67-reject", "75-tempfail"):
        policy = "reject" if name == "67-reject" else "tempfail"
        (folder / "in.eml").write_bytes(
            MESSAGE.replace(b"To: alice@example.com", b"To: alice@example.com, bob@nocert.example")
        )
        return ["encrypt", str(message), "--rules", _rules(folder, pki, policy), "-o", target], b""
    if name == "73-no-folder":
        return ["encrypt", str(message), "--cert", cert, "-o", out / "missing" / "o.eml"], b""
    if name == "74-disk-full":

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr("smimecli.files.atomic.os.fsync", full)
        return ["encrypt", str(message), "--cert", cert, "-o", target], b""
    if name == "77-wrong-key":
        return [
            "decrypt",
            str(_encrypted_to_alice(folder, pki)),
            "--key",
            str(pki.bob.key_pem),
            "-o",
            target,
        ], b""
    if name == "77-wrong-password":
        (folder / "pw").write_text("not the password\n")
        return [
            "decrypt",
            str(_encrypted_to_alice(folder, pki)),
            "--key",
            str(pki.alice.pfx),
            "--password-file",
            folder / "pw",
            "-o",
            target,
        ], b""
    if name == "78-rules-syntax":
        (folder / "bad.toml").write_text("[[rule]\nname = 'x'\n")
        return ["encrypt", str(message), "--rules", folder / "bad.toml", "-o", target], b""
    if name == "78-rules-wildcard-any":
        (folder / "bad.toml").write_text(
            '[[rule]]\nname = "w"\nrecipients = ["*@x.example"]\n'
            f'source = {{ kind = "cer", path = "{pki.alice.cert_der}" }}\nmatch = "any"\n'
        )
        return ["encrypt", str(message), "--rules", folder / "bad.toml", "-o", target], b""
    raise AssertionError(name)


CASES = {
    "64-usage": 64,
    "64-bad-cipher": 64,
    "65-not-a-message": 65,
    "65-not-a-certificate": 65,
    "65-broken-cms": 65,
    "66-missing-input": 66,
    "66-missing-cert": 66,
    "67-reject": 67,
    "73-no-folder": 73,
    "74-disk-full": 74,
    "75-tempfail": 75,
    "77-wrong-key": 77,
    "77-wrong-password": 77,
    "78-rules-syntax": 78,
    "78-rules-wildcard-any": 78,
}


def assert_clean_failure(result: Result, status: int, out: Path) -> None:
    """The status, one stderr line ``smimecli: error: ...``, no traceback, nothing written."""
    assert result.exit_code == status, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("smimecli: error: "), lines
    assert "Traceback" not in result.stderr
    assert result.stdout == b"", "no data on stdout when -o was given"
    assert sorted(p.name for p in out.rglob("*")) == [], "output or temp file left behind"


@pytest.mark.parametrize("name", sorted(CASES))
def test_error_row(
    cli: Cli, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    args, stdin = _case(name, tmp_path, out, pki, monkeypatch)
    result = cli([str(a) for a in args], input=stdin)
    assert_clean_failure(result, CASES[name], out)


def test_statuses_cover_spec_section_2() -> None:
    """The matrix has a row for every status of the table (70 is tested below)."""
    from smimecli.errors import ExitStatus

    covered = set(CASES.values()) | {int(ExitStatus.SOFTWARE)}
    assert covered == {int(s) for s in ExitStatus} - {0}


def _inject_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected bug")

    monkeypatch.setattr("smimecli.encrypt.message.encrypt_message", broken)


def test_70_internal_error_is_one_line(
    cli: Cli, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _inject_bug(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "in.eml").write_bytes(MESSAGE)
    result = cli(
        ["encrypt", tmp_path / "in.eml", "--cert", pki.alice.cert_pem, "-o", out / "o.eml"]
    )
    assert result.exit_code == 70, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "internal error" in result.stderr and "injected bug" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(out.iterdir()) == []


def test_70_internal_error_traceback_with_verbose(
    cli: Cli, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _inject_bug(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "in.eml").write_bytes(MESSAGE)
    result = cli(
        [
            "--verbose",
            "encrypt",
            tmp_path / "in.eml",
            "--cert",
            pki.alice.cert_pem,
            "-o",
            out / "o.eml",
        ]
    )
    assert result.exit_code == 70, result.output
    assert "Traceback" in result.stderr and "RuntimeError: injected bug" in result.stderr
    assert list(out.iterdir()) == []


def test_batch_failure_leaves_no_file_for_that_message(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """--out-dir: the bad message gets no output (nor temp file); the good one does."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.eml").write_bytes(MESSAGE)
    (src / "bad.eml").write_bytes(b"\x00 not a message")
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        [
            "encrypt",
            src / "good.eml",
            src / "bad.eml",
            "--cert",
            pki.alice.cert_pem,
            "--out-dir",
            out,
        ]
    )
    assert result.exit_code == 65, result.output
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good.eml"]
