"""``smimecli serve --syslog`` and the removal of a dead filter's spool files."""

from __future__ import annotations

import json
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smimecli.errors import ConfigError
from smimecli.serve.daemon import Daemon, Settings
from smimecli.serve.engine import spool_file
from tests.conftest import Pki, run_cli
from tests.serve.helpers import (
    SinkHandler,
    filter_settings,
    free_port,
    listening_port,
    message,
    running,
    sink,
    write_rules,
)


@pytest.fixture
def relay() -> Iterator[tuple[SinkHandler, int]]:
    with sink() as found:
        yield found


@pytest.fixture
def syslog_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short folder: a unix socket path has at most 107 bytes.
    with tempfile.TemporaryDirectory(prefix="smimecli-log-") as folder:
        path = os.path.join(folder, "log")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(10)
            yield sock, path


def _settings(tmp_path: Path, pki: Pki, relay_port: int, **kwargs: Any) -> Settings:
    return filter_settings(tmp_path, pki, relay_port, **{"journal": None, **kwargs})


def _datagrams(sock: socket.socket, wanted: str) -> list[bytes]:
    """The datagrams received until one contains ``wanted``."""
    seen = []
    while True:
        data = sock.recv(65536)
        seen.append(data)
        if wanted.encode() in data:
            return seen


def test_syslog_gets_the_journal_record_and_the_error_lines_without_content(
    tmp_path: Path,
    pki: Pki,
    relay: tuple[SinkHandler, int],
    syslog_socket: tuple[socket.socket, str],
) -> None:
    sock, path = syslog_socket
    _, port = relay
    settings = _settings(tmp_path, pki, port, syslog_facility="mail", syslog_socket=path)
    with running(settings) as daemon:
        with smtplib.SMTP("127.0.0.1", listening_port(daemon), timeout=30) as smtp:
            smtp.sendmail("sender@example.org", ["alice@example.com"], message())
        record_data = _datagrams(sock, "queue_id")[-1]
        settings.rules.write_text("[[rule]]\nname = \n")
        daemon.request_reload()
        error_data = _datagrams(sock, "rules not reloaded")[-1]

    # <PRI>: facility mail (2) * 8 + severity info (6) = 22; error (3) = 19.
    tag = f"smimecli-serve[{os.getpid()}]: ".encode()
    assert record_data.startswith(b"<22>" + tag), record_data
    record = json.loads(record_data[len(b"<22>" + tag) :].rstrip(b"\0"))
    assert record["from"] == "sender@example.org"
    assert record["recipients"][0]["outcome"] == "encrypt"
    assert record["reply"].startswith("250")
    for content in (b"figures are attached", b"leading dot", b"quarterly figures"):
        assert content not in record_data, "syslog must never get message content"
    assert "subject" not in record
    assert error_data.startswith(b"<19>" + tag), error_data
    assert str(settings.rules).encode() in error_data


def test_syslog_without_a_socket_is_78(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "no-log"
    with pytest.raises(ConfigError, match=f"no syslog socket at {missing}"):
        Daemon(
            _settings(
                tmp_path, pki, free_port(), syslog_facility="mail", syslog_socket=str(missing)
            )
        )
    result = run_cli(
        [
            "serve",
            "--rules",
            write_rules(tmp_path, pki),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--syslog",
        ],
        env={"SMIMECLI_SYSLOG_SOCKET": str(missing)},
    )
    assert result.exit_code == 78, result.output
    assert f"no syslog socket at {missing}" in result.stderr


def test_unknown_syslog_facility_is_64(tmp_path: Path, pki: Pki) -> None:
    result = run_cli(
        ["serve", "--rules", write_rules(tmp_path, pki), "--syslog", "--syslog-facility", "nope"]
    )
    assert result.exit_code == 64, result.output
    assert "--syslog-facility" in result.stderr and "local0" in result.stderr


def test_spool_file_names_carry_the_pid(tmp_path: Path) -> None:
    fd, path = spool_file(str(tmp_path))
    os.close(fd)
    assert Path(path).name.startswith(f"smimecli-in-{os.getpid()}-")
    assert Path(path).stat().st_mode & 0o777 == 0o600


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


def test_start_up_removes_only_the_spool_files_of_dead_filters(
    tmp_path: Path, pki: Pki, relay: tuple[SinkHandler, int]
) -> None:
    _, port = relay
    settings = _settings(tmp_path, pki, port)
    spool = Path(str(settings.spool_dir))
    dead = _dead_pid()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead_in": f"smimecli-in-{dead}-k2j4_x9a.eml",
            "dead_out": f"smimecli-in-{dead}-k2j4_x9a-out-7hq0zz1m.eml",
            # A file with this process's pid is from an earlier process with that pid.
            "own_pid": f"smimecli-in-{os.getpid()}-aaaa1111.eml",
            "live_in": f"smimecli-in-{other.pid}-b3n8e0qq.eml",
            "live_out": f"smimecli-in-{other.pid}-b3n8e0qq-out-c4c4c4c4.eml",
            "not_ours": f"smimecli-in-{dead}-notes.txt",
            "foreign": f"mail-{dead}.eml",
        }
        for name in names.values():
            (spool / name).write_bytes(b"Subject: plaintext\r\n\r\nsecret\r\n")
        with running(settings):
            pass
        left = {path.name for path in spool.iterdir()}
    finally:
        other.kill()
        other.wait(10)
    for key in ("dead_in", "dead_out", "own_pid"):
        assert names[key] not in left, key
    for key in ("live_in", "live_out", "not_ours", "foreign"):
        assert names[key] in left, key
