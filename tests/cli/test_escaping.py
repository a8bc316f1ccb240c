"""Terminal controls from messages, certificates and file names are shown, not obeyed."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from smimecli.text import printable
from tests.conftest import Pki, Result

Cli = Callable[..., Result]
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def _clean(text: str) -> None:
    for char in RAW:
        assert char not in text, repr(text)


def test_printable_shows_controls() -> None:
    text = "a\x1b]0;t\x07\tb\x7f\x9b\u202e\u2066c\r\nd\x00"
    assert printable(text) == "a\\x1b]0;t\\x07\tb\\x7f\\x9b\\u202e\\u2066c\\x0d\\x0ad\\x00"
    assert printable("one\ntwo", newlines=True) == "one\ntwo"
    assert printable("Grüße ✓") == "Grüße ✓"


def test_inspect_escapes_header_values(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    body = (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(b"x")
        .set_content_encryption_algorithm(algorithms.AES128)
        .add_recipient(pki.alice.cert)
        .encrypt(serialization.Encoding.SMIME, [])
    )
    message = tmp_path / "msg.eml"
    message.write_bytes(
        b'Subject: \x1b]0;pwned\x07\nFrom: "\x1b[2JEvil" <evil@example.net>\n' + body
    )
    result = cli(["inspect", message])
    assert result.exit_code == 0, result.output
    text = result.stdout.decode()
    _clean(text)
    assert "  Subject: \\x1b]0;pwned\\x07\n" in text
    assert '"\\x1b[2JEvil" <evil@example.net>' in text
    # --json stays exact: JSON itself escapes the controls.
    document = json.loads(cli(["inspect", message, "--json"]).stdout)
    assert document["headers"][0] == {"name": "Subject", "value": "\x1b]0;pwned\x07"}


def test_certs_list_and_show_escape_names(cli: Cli, tmp_path: Path) -> None:
    made = cli(["gen-root", "--subject", "CN=Evil\x1b[2J\u202eRoot"])
    assert made.exit_code == 0, made.output
    thumb = made.stdout.decode().split()[0]
    assert made.stdout.decode() == f"{thumb}  CN=Evil\\x1b[2J\\u202eRoot\n"
    listed = cli(["certs", "list"])
    assert listed.exit_code == 0, listed.output
    _clean(listed.stdout.decode())
    assert "CN=Evil\\x1b[2J\\u202eRoot" in listed.stdout.decode()
    shown = cli(["certs", "show", thumb])
    assert shown.exit_code == 0, shown.output
    _clean(shown.stdout.decode())
    assert "CN=Evil\\x1b[2J\\u202eRoot" in shown.stdout.decode()
    # --json stays exact.
    exact = json.loads(cli(["certs", "list", "--json"]).stdout)
    assert exact[0]["subject"] == "CN=Evil\x1b[2J\u202eRoot"
    removed = cli(["certs", "remove", thumb])
    assert removed.exit_code == 0
    _clean(removed.stderr)
    assert "CN=Evil\\x1b[2J\\u202eRoot" in removed.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_certs_list_escapes_rich_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal (rich table) controls are escaped and [markup] stays literal."""
    from smimecli.cli import certs

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "400")
    doc = {
        "stores": ["my"],
        "subject": "CN=[bold]Evil[/bold]\x1b[2J",
        "emails": ["e\u202e@example.net"],
        "issuer": "CN=x",
        "not_after": "2030-01-01T00:00:00",
        "thumbprint": "AB" * 20,
        "has_key": False,
        "capabilities": [],
        "problems": [],
    }
    certs._print_rich([doc], [])
    text = terminal.getvalue()
    assert "CN=[bold]Evil[/bold]\\x1b[2J" in text
    assert "e\\u202e@example.net" in text


def test_error_naming_a_file_escapes_it(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "mail\x1b[2J\u202e.eml"
    result = cli(["inspect", missing])
    assert result.exit_code == 66
    _clean(result.stderr)
    assert "mail\\x1b[2J\\u202e.eml" in result.stderr
    assert result.stderr.count("\n") == 1


def test_warnings_escape_quoted_values(capsys: pytest.CaptureFixture[str]) -> None:
    from smimecli.cli.common import configure_logging

    configure_logging(verbose=False, quiet=False)
    logging.getLogger("smimecli.test").warning("header %s", "\x1b]0;x\x07")
    err = capsys.readouterr().err
    assert err == "smimecli: warning: header \\x1b]0;x\\x07\n"
