"""``smimecli tnef convert``: files and pipes, exit statuses, no partial output."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from tests.conftest import Cli, assert_error
from tests.unit.test_tnef import NOTE_PROPS, attachment, tnef, wrap

MESSAGE = wrap(tnef(NOTE_PROPS, [attachment("report.pdf", b"%PDF", mime="application/pdf")]))


def test_convert_file_to_file(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "in.eml"
    source.write_bytes(MESSAGE)
    target = tmp_path / "out.eml"
    result = cli(["tnef", "convert", source, "-o", target])
    assert result.exit_code == 0, result.output
    assert result.stdout == b""
    assert "converted 1 TNEF part(s)" in result.stderr
    message = message_from_bytes(target.read_bytes(), policy=policy.default)
    names = [p.get_filename() for p in message.walk()]
    assert "report.pdf" in names and "winmail.dat" not in names


def test_convert_stdin_to_stdout_quietly(cli: Cli) -> None:
    result = cli(["--quiet", "tnef", "convert"], input=MESSAGE)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert b"application/ms-tnef" not in result.stdout
    assert b"filename=report.pdf" in result.stdout


def test_dash_reads_stdin(cli: Cli) -> None:
    result = cli(["tnef", "convert", "-"], input=MESSAGE)
    assert result.exit_code == 0, result.output
    assert b"filename=report.pdf" in result.stdout


def test_message_without_tnef_passes_unchanged(cli: Cli) -> None:
    source = b"From: a@example.com\r\nSubject: plain\r\n\r\nno attachments here\r\n"
    result = cli(["tnef", "convert"], input=source)
    assert result.exit_code == 0, result.output
    assert result.stdout == source
    assert "converted 0 TNEF part(s)" in result.stderr


def test_unreadable_tnef_is_kept_with_a_warning(cli: Cli) -> None:
    source = wrap(b"not a TNEF stream at all")
    result = cli(["tnef", "convert"], input=source)
    assert result.exit_code == 0, result.output
    assert result.stdout == source
    assert "smimecli: warning: TNEF part 1 (winmail.dat) kept unchanged" in result.stderr


def test_not_a_message_exits_65_without_output(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "out.eml"
    result = cli(["tnef", "convert", "-o", target], input=b"\x89PNG\r\n\x1a\n binary")
    assert result.exit_code == 65, result.output
    assert "not a mail message" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not target.exists()


def test_empty_input_exits_65(cli: Cli) -> None:
    result = cli(["tnef", "convert"], input=b"")
    assert_error(result, 65, "standard input is not a mail message (it does not start with a")
    assert result.stdout == b""


def test_missing_input_exits_66(cli: Cli, tmp_path: Path) -> None:
    result = cli(["tnef", "convert", tmp_path / "missing.eml"])
    missing = tmp_path / "missing.eml"
    assert_error(result, 66, f"cannot read {missing}: No such file or directory")


def test_output_folder_missing_exits_73(cli: Cli, tmp_path: Path) -> None:
    result = cli(["tnef", "convert", "-o", tmp_path / "no" / "out.eml"], input=MESSAGE)
    target = tmp_path / "no" / "out.eml"
    assert_error(result, 73, f"cannot write {target}: No such file or directory")
    assert not (tmp_path / "no").exists()


def test_failed_write_leaves_the_old_output_alone(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "out.eml"
    target.write_bytes(b"previous")
    result = cli(["tnef", "convert", "-o", target], input=b"")
    assert_error(result, 65, "standard input is not a mail message")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.eml"]


def test_help_describes_the_command(cli: Cli) -> None:
    result = cli(["tnef", "convert", "--help"])
    assert result.exit_code == 0, result.output
    assert b"winmail.dat" in result.stdout
