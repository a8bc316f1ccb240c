"""The root command: version, usage errors, exit statuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from smimecli import __version__
from tests.conftest import Cli, Pki, assert_error


def test_version(cli: Cli) -> None:
    result = cli(["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.decode().strip() == f"smimecli {__version__}"


def test_unknown_option_is_usage_error(cli: Cli) -> None:
    result = cli(["--no-such-option"])
    assert_error(result, 64, "No such option: --no-such-option (see 'smimecli --help')")
    assert result.stderr.count("\n") == 1


def test_python_dash_m() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "smimecli", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert __version__ in proc.stdout


def test_help_does_not_import_crypto() -> None:
    code = (
        "import sys\n"
        "from smimecli.cli.app import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "bad = [m for m in ('cryptography', 'asn1crypto', 'sqlite3') if m in sys.modules]\n"
        "print('IMPORTED=' + ','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "IMPORTED=\n" in proc.stdout, proc.stdout


def test_only_the_command_being_run_is_built() -> None:
    from smimecli.cli.app import _command_name

    assert _command_name(["encrypt", "--cert", "x"]) == "encrypt"
    assert _command_name(["--store", "encrypt", "certs", "list"]) == "certs"
    assert _command_name(["-v", "--quiet", "decrypt"]) == "decrypt"
    assert _command_name(["--help", "encrypt"]) is None
    assert _command_name(["--version"]) is None
    assert _command_name(["no-such-command"]) is None


def test_command_help_and_unknown_command(cli: Cli) -> None:
    helped = cli(["encrypt", "--help"])
    assert helped.exit_code == 0, helped.output
    assert b"--cipher" in helped.stdout
    unknown = cli(["encrpyt"])
    assert_error(unknown, 64, "No such command 'encrpyt'. Did you mean 'encrypt'")
    assert unknown.stderr.count("\n") == 1


def test_root_help_lists_every_command(cli: Cli) -> None:
    result = cli(["--help"])
    assert result.exit_code == 0, result.output
    for name in (
        "encrypt",
        "decrypt",
        "inspect",
        "certs",
        "gen-root",
        "issue-user",
        "rules",
        "tnef",
        "demo",
    ):
        assert name.encode() in result.stdout


def test_global_store_password_env_encrypts_keys_for_every_command(
    cli: Cli, tmp_path: Path
) -> None:
    env = {"LAB_PASS": "store secret"}
    made = cli(["--store-password-env", "LAB_PASS", "gen-root", "--subject", "CN=Pw Root"], env=env)
    assert made.exit_code == 0, made.output
    pfx = tmp_path / "root.pfx"
    without = cli(
        [
            "certs",
            "export",
            "Pw Root",
            "-o",
            str(pfx),
            "--with-private-key",
            "--password-env",
            "LAB_PASS",
        ],
        env=env,
    )
    assert_error(without, 77, "is encrypted: set SMIMECLI_STORE_PASSWORD to the store passphrase")
    assert not pfx.exists()
    with_it = cli(
        [
            "--store-password-env",
            "LAB_PASS",
            "certs",
            "export",
            "Pw Root",
            "-o",
            str(pfx),
            "--with-private-key",
            "--password-env",
            "LAB_PASS",
        ],
        env=env,
    )
    assert with_it.exit_code == 0, with_it.output
    assert pfx.stat().st_mode & 0o777 == 0o600


def test_global_store_password_env_unset_is_64(cli: Cli) -> None:
    result = cli(["--store-password-env", "NO_SUCH_VARIABLE_X", "certs", "list"])
    assert_error(result, 64, "environment variable NO_SUCH_VARIABLE_X is not set")


def test_console_script_flushes_everything_before_its_fast_exit(tmp_path: Path, pki: Pki) -> None:
    # run() ends the process with os._exit: a big message on a pipe must still arrive whole,
    # and the exit status must be main()'s.
    import io

    from smimecli.cms.unwrap import KeyIdentity
    from smimecli.decrypt.message import decrypt_message

    body = b"a line of the message body\n" * 250_000  # 6.75 MB
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@example.org\nTo: alice@example.com\nSubject: big\n\n" + body)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "smimecli",
            "encrypt",
            "--cert",
            str(pki.alice.cert_pem),
            str(message),
        ],
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    out = io.BytesIO()
    decrypt_message(io.BytesIO(proc.stdout), out, KeyIdentity(pki.alice.key, pki.alice.cert))
    assert out.getvalue().endswith(b"\n\n" + body)
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "smimecli",
            "encrypt",
            "--cert",
            str(pki.alice.cert_pem),
            str(tmp_path / "absent.eml"),
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 66
    assert missing.stderr.startswith("smimecli: error: ") and missing.stderr.count("\n") == 1


def test_global_options_after_the_command(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    import json

    other = tmp_path / "other-store"
    for args in (
        ["--store", str(other), "certs", "import", str(pki.alice.cert_pem)],
        ["certs", "import", str(pki.bob.cert_pem), "--store", str(other)],
        ["certs", "import", "--store=" + str(other), str(pki.carol_ec.cert_pem), "-q"],
    ):
        result = cli(args)
        assert result.exit_code == 0, result.output
    assert "imported" not in result.stderr  # -q after the command was honoured
    before = json.loads(cli(["--store", other, "certs", "list", "--json"]).stdout)
    after = json.loads(cli(["certs", "list", "--json", "--store", other]).stdout)
    assert before == after and len(after) == 3
    default = cli(["certs", "list", "--json"])  # the default store: never made by a read
    assert default.exit_code == 78 and "no certificate store" in default.stderr
    # -v after the command: a traceback with the error, as before the command.
    for args in (["-v", "certs", "show", "nobody@x"], ["certs", "show", "nobody@x", "-v"]):
        shown = cli(["--store", other, *args])
        assert shown.exit_code == 65, shown.output
        assert "Traceback" in shown.stderr


def test_option_values_and_arguments_after_dash_dash_stay(cli: Cli, tmp_path: Path) -> None:
    from smimecli.cli.app import _click_command, hoist_global_options

    def hoist(*args: str) -> list[str]:
        return hoist_global_options(_click_command(list(args)), list(args))

    assert hoist("encrypt", "-v") == ["-v", "encrypt"]
    assert hoist("certs", "list", "--store", "D", "-q") == ["--store", "D", "-q", "certs", "list"]
    # a value that looks like a global option belongs to the option before it
    assert hoist("encrypt", "--password-env", "-v") == ["encrypt", "--password-env", "-v"]
    assert hoist("tnef", "convert", "--", "-v") == ["tnef", "convert", "--", "-v"]
    # the command's own option of the same name stays with the command
    assert hoist("certs", "import", "--store-password-env", "X", "f") == [
        "certs",
        "import",
        "--store-password-env",
        "X",
        "f",
    ]
