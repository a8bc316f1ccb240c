"""A certificate source's notices (a ``dir`` source skipping a file it cannot read) reach the
plan: ``encrypt --rules`` and ``rules check`` warn on stderr, ``rules test`` shows them in its
report, the daemon's journal gets them, and the library returns them without printing."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Pki, Result
from tests.messages import message

Cli = Callable[..., Result]
MESSAGE = message("bob@example.com", b"for bob\n", sender="a@example.org", subject="x")


@pytest.fixture
def rules(pki: Pki, tmp_path: Path) -> Path:
    """A rule whose ``dir`` source holds Bob's certificate and a file that is none."""
    folder = tmp_path / "certs"
    folder.mkdir()
    (folder / "bob.pem").write_bytes(pki.bob.cert_pem.read_bytes())
    (folder / "junk.txt").write_bytes(b"not a certificate")
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rule]]\nname = "folder"\nrecipients = ["*@example.com"]\n'
        'source = { kind = "dir", path = "certs" }\n'
    )
    return path


def _skipped(tmp_path: Path) -> str:
    return f"skipped {tmp_path / 'certs' / 'junk.txt'}: "


def test_encrypt_rules_warns_about_a_skipped_file(cli: Cli, tmp_path: Path, rules: Path) -> None:
    out = tmp_path / "out.eml"
    done = cli(["encrypt", "--rules", rules, "-o", out], input=MESSAGE)
    assert done.exit_code == 0, done.output
    assert f"smimecli: warning: {_skipped(tmp_path)}" in done.stderr
    assert done.stderr.count("smimecli: warning: skipped") == 1
    assert b"enveloped-data" in out.read_bytes()
    done = cli(["encrypt", "--rules", rules, "-o", out, "--json"], input=MESSAGE)
    codes = [n["code"] for n in json.loads(done.stdout)["notices"]]
    assert "skipped-file" in codes


def test_a_batch_names_a_skipped_file_once_not_once_per_message(
    cli: Cli, tmp_path: Path, rules: Path
) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    for number in range(5):
        (inbox / f"m{number}.eml").write_bytes(MESSAGE)
    done = cli(["encrypt", "--rules", rules, "--out-dir", out, "--jobs", "1", inbox])
    assert done.exit_code == 0, done.output
    assert done.stderr.count(f"smimecli: warning: {_skipped(tmp_path)}") == 1, done.stderr
    assert len(list(out.iterdir())) == 5


def test_rules_test_and_check_show_a_skipped_file(cli: Cli, tmp_path: Path, rules: Path) -> None:
    done = cli(["rules", "test", "--rules", rules, "--recipient", "bob@example.com", "folder"])
    assert done.exit_code == 0, done.output
    assert f"  warning: {_skipped(tmp_path)}" in done.stdout.decode()
    done = cli(["rules", "test", "--rules", rules, "--all", "--json"])
    report = json.loads(done.stdout)
    assert any(w.startswith(_skipped(tmp_path)) for w in report["rules"][0]["warnings"])
    done = cli(["rules", "check", "--rules", rules])
    assert done.exit_code == 0, done.output
    assert f"smimecli: warning: {_skipped(tmp_path)}" in done.stderr


def test_library_plan_returns_the_notice_and_prints_nothing(
    tmp_path: Path,
    rules: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from smimecli.encrypt.request import EncryptRequest, encrypt_one
    from smimecli.rules.load import load_rules
    from smimecli.rules.plan import plan_recipients

    with caplog.at_level(logging.DEBUG, logger="smimecli"):
        loaded = load_rules(rules)
        plan = plan_recipients(loaded, ["bob@example.com"])
        assert [n.code for n in plan.notices] == ["skipped-file"]
        assert plan.notices[0].text.startswith(_skipped(tmp_path))
        # Every plan that consults the source says so, not only the first.
        again = plan_recipients(loaded, ["carol@example.com", "bob@example.com"])
        assert [n.code for n in again.notices].count("skipped-file") == 1
        # A plan that consults no source has nothing to say about one.
        unmatched = plan_recipients(loaded, ["eve@example.net"])
        assert "skipped-file" not in [n.code for n in unmatched.notices]
        outcome = encrypt_one(EncryptRequest(rules=rules), io.BytesIO(MESSAGE), io.BytesIO())
        assert "skipped-file" in [n.code for n in outcome.notices]
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")


def test_serve_journal_notices_name_the_skipped_file(tmp_path: Path, rules: Path) -> None:
    from smimecli.serve.engine import Engine

    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGE)
    spool = tmp_path / "spool"
    spool.mkdir()
    split = Engine.load(rules, None).split_and_encrypt(str(src), ["bob@example.com"], str(spool))
    assert [c.kind for c in split.copies] == ["encrypted"]
    assert any(n.text.startswith(_skipped(tmp_path)) for n in split.notices)
