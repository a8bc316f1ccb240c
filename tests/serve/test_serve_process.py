"""``smimecli serve`` as a real process: signals, the command line, exit statuses."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Pki, run_cli
from tests.serve.helpers import SinkHandler, free_port, message, sink, write_rules


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("smimecli serve did not listen")


@pytest.fixture
def served(tmp_path: Path, pki: Pki) -> Iterator[tuple[subprocess.Popen[bytes], int, SinkHandler]]:
    with sink() as (handler, relay_port):
        port = free_port()
        rules = write_rules(tmp_path, pki)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SMIMECLI_STORE": str(tmp_path / "st")}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smimecli",
                "serve",
                "--rules",
                str(rules),
                "--listen",
                f"127.0.0.1:{port}",
                "--relay",
                f"127.0.0.1:{relay_port}",
            ],
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            _wait_listening(port, proc)
            yield proc, port, handler
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stderr:
                proc.stderr.close()


def test_sighup_with_a_broken_rules_file_keeps_the_old_rules(
    served: tuple[subprocess.Popen[bytes], int, SinkHandler], tmp_path: Path
) -> None:
    proc, port, sunk = served
    (tmp_path / "rules.toml").write_text("[[rule]]\nname = \n")
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        refused = smtp.sendmail(
            "sender@example.org", ["alice@example.com", "bob@example.com"], message()
        )
    assert refused["bob@example.com"][0] == 550, "the old rules were not kept"
    assert b"application/pkcs7-mime" in sunk.messages[0].content
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert proc.stderr is not None
    errors = [line for line in proc.stderr.read().decode().splitlines() if "error" in line]
    assert len(errors) == 1, errors
    assert "rules not reloaded, the previous rules stay in use" in errors[0]
    assert "rules.toml" in errors[0]


def test_sigterm_finishes_the_message_in_flight_then_exits_0(
    served: tuple[subprocess.Popen[bytes], int, SinkHandler],
) -> None:
    proc, port, sunk = served
    sunk.delay = 2.0
    replies: list[tuple[int, bytes]] = []

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo()
            smtp.mail("sender@example.org")
            smtp.rcpt("alice@example.com")
            replies.append(smtp.data(message("alice@example.com")))

    client = threading.Thread(target=send)
    client.start()
    assert sunk.started.wait(20), "the message never reached the relay"
    proc.send_signal(signal.SIGTERM)
    client.join(30)
    assert proc.wait(30) == 0
    assert replies and replies[0][0] == 250, replies
    assert len(sunk.messages) == 1
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "still listening after SIGTERM"


def test_non_loopback_listen_needs_allow_remote(tmp_path: Path, pki: Pki) -> None:
    rules = write_rules(tmp_path, pki)
    result = run_cli(["serve", "--rules", rules, "--listen", "0.0.0.0:10025"])
    assert result.exit_code == 64, result.output
    assert "--allow-remote" in result.stderr and "not a loopback address" in result.stderr


def test_bad_rules_file_is_78(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[[rule]]\nname = \n")
    result = run_cli(["serve", "--rules", rules, "--listen", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 78, result.output
    assert str(rules) in result.stderr


def test_malformed_listen_is_64(tmp_path: Path, pki: Pki) -> None:
    rules = write_rules(tmp_path, pki)
    result = run_cli(["serve", "--rules", rules, "--listen", "10025"])
    assert result.exit_code == 64, result.output
    assert "HOST:PORT" in result.stderr
