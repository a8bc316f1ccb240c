"""``smimecli demo``: the whole workflow, in a throwaway store or a kept folder."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli, require_tool


def test_demo_prints_encrypted_and_round_trips(cli: Cli) -> None:
    result = cli(["demo"])
    assert result.exit_code == 0, result.output
    out = result.stdout.decode()
    assert "ENCRYPTED for test@example.net" in out
    assert "round trip OK" in out
    assert out.rstrip().endswith("demo OK")


def test_demo_does_not_touch_the_users_store(cli: Cli, tmp_path: Path) -> None:
    result = cli(["demo"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "store").exists()


def test_demo_keep_leaves_files_that_decrypt_again(cli: Cli, tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    result = cli(["demo", "--keep", str(keep)])
    assert result.exit_code == 0, result.output
    for name in ("rules.toml", "message.eml", "message.p7m.eml", "message.decrypted.eml"):
        assert (keep / name).is_file(), name
    again = cli(["--store", str(keep / "store"), "decrypt", str(keep / "message.p7m.eml")])
    assert again.exit_code == 0, again.output
    assert b"This text was encrypted by rules and decrypted again." in again.stdout


@pytest.mark.interop
def test_demo_output_decrypts_in_openssl(cli: Cli, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    keep = tmp_path / "demo"
    assert cli(["demo", "--keep", str(keep)]).exit_code == 0
    pem = tmp_path / "user.pem"
    exported = cli(
        ["--store", str(keep / "store"), "certs", "export", "test@example.net", "-o", str(pem)]
    )
    assert exported.exit_code == 0, exported.output
    # The key: export a pfx with a password from the environment, then let openssl read it.
    pfx = tmp_path / "user.pfx"
    exported = cli(
        [
            "--store",
            str(keep / "store"),
            "certs",
            "export",
            "test@example.net",
            "-o",
            str(pfx),
            "--with-private-key",
            "--password-env",
            "DEMO_PW",
        ],
        env={"DEMO_PW": "demo-password"},
    )
    assert exported.exit_code == 0, exported.output
    key = tmp_path / "user.key"
    subprocess.run(
        [
            openssl,
            "pkcs12",
            "-in",
            str(pfx),
            "-nocerts",
            "-nodes",
            "-passin",
            "pass:demo-password",
            "-out",
            str(key),
        ],
        check=True,
        capture_output=True,
    )
    proc = subprocess.run(
        [
            openssl,
            "cms",
            "-decrypt",
            "-in",
            str(keep / "message.p7m.eml"),
            "-inkey",
            str(key),
            "-recip",
            str(pem),
        ],
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"Hello from smimecli." in proc.stdout


def test_demo_json(cli: Cli) -> None:
    result = cli(["demo", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert document["encrypted_to"] == ["test@example.net"]
    assert len(document["root_thumbprint"]) == 40


def test_demo_keep_into_unwritable_place_is_73(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli(["demo", "--keep", str(blocker / "sub")])
    assert result.exit_code == 73, result.output
    assert result.stderr.count("\n") == 1


def test_demo_prints_each_command_to_repeat_by_hand(cli: Cli, tmp_path: Path) -> None:
    import shlex

    keep = tmp_path / "kept"
    result = cli(["demo", "--keep", str(keep)])
    assert result.exit_code == 0, result.output
    assert "throwaway" not in result.stdout.decode()
    commands = [line[2:] for line in result.stderr.splitlines() if line.startswith("$ ")]
    assert [shlex.split(c)[3] for c in commands] == [
        "gen-root",
        "issue-user",
        "encrypt",
        "decrypt",
        "inspect",
    ]
    # repeat the decrypt and inspect steps by hand, from the printed lines
    (keep / "message.decrypted.eml").unlink()
    for line in commands[3:]:
        words = shlex.split(line)
        assert words[0] == "smimecli"
        again = cli(words[1:])
        assert again.exit_code == 0, again.output
    assert b"demo" in (keep / "message.decrypted.eml").read_bytes().lower()
    assert "throwaway" in cli(["demo"]).stdout.decode()
