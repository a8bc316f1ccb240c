"""``smimecli encrypt`` in direct mode: inputs, outputs, options and every error path."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from asn1crypto import cms

from tests.conftest import Cli, Pki, assert_error
from tests.pki import PASSWORD

MESSAGE = (
    b"From: a@example.com\nTo: alice@example.com\nBcc: hidden@example.com\n"
    b"Subject: cli\nContent-Type: text/plain\n\nhello\n"
)


def _content_info(output: bytes) -> Any:
    body = output.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    return cms.ContentInfo.load(base64.b64decode(body))


def test_stdin_to_stdout(cli: Any, pki: Any) -> None:
    result = cli(["encrypt", "--cert", pki.alice.cert_pem], input=MESSAGE)
    assert result.exit_code == 0, result.output
    assert b"smime-type=enveloped-data" in result.stdout
    assert b"Bcc:" not in result.stdout  # base64 has no colon
    assert _content_info(result.stdout)["content_type"].native == "enveloped_data"


def test_file_to_output_file(cli: Any, pki: Any, tmp_path: Path) -> None:
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGE.replace(b"\n", b"\r\n"))
    out = tmp_path / "out.eml"
    result = cli(
        [
            "encrypt",
            src,
            "-o",
            out,
            "--cert",
            pki.alice.cert_der,
            "--cert",
            pki.carol_ec.cert_pem,
            "--cipher",
            "aes128-gcm",
        ]
    )
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n")
    info = _content_info(data)
    assert info["content_type"].native == "authenticated_enveloped_data"
    kinds = sorted(ri.name for ri in info["content"]["recipient_infos"])
    assert kinds == ["kari", "ktri"]


def test_options_reach_the_envelope(cli: Any, pki: Any) -> None:
    result = cli(
        [
            "encrypt",
            "--cert",
            pki.alice.cert_pem,
            "--oaep-hash",
            "sha384",
            "--recipient-id",
            "ski",
            "--cipher",
            "3des",
        ],
        input=MESSAGE,
    )
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "3des" in result.stderr
    content = _content_info(result.stdout)["content"]
    ktri = content["recipient_infos"][0].chosen
    assert ktri["key_encryption_algorithm"]["algorithm"].native == "rsaes_oaep"
    assert (
        ktri["key_encryption_algorithm"]["parameters"]["hash_algorithm"]["algorithm"].native
        == "sha384"
    )
    assert ktri["rid"].name == "subject_key_identifier"
    alg = content["encrypted_content_info"]["content_encryption_algorithm"]
    assert alg["algorithm"].native == "tripledes_3key"


def test_pfx_public_part(cli: Any, pki: Any, tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_bytes(PASSWORD + b"\n")
    result = cli(["encrypt", "--cert", pki.bob.pfx, "--password-file", password], input=MESSAGE)
    assert result.exit_code == 0, result.output
    ktri = _content_info(result.stdout)["content"]["recipient_infos"]
    assert len(ktri) == 1  # the CA in the .pfx chain is not a recipient
    assert ktri[0].chosen["rid"].chosen["serial_number"].native == pki.bob.cert.serial_number


def test_pfx_without_password_is_77(cli: Any, pki: Any) -> None:
    result = cli(["encrypt", "--cert", pki.bob.pfx], input=MESSAGE)
    assert_error(result, 77, str(pki.bob.pfx))
    assert result.stdout == b""


def test_already_encrypted_passes(cli: Any, pki: Any) -> None:
    first = cli(["encrypt", "--cert", pki.alice.cert_pem], input=MESSAGE)
    second = cli(["encrypt", "--cert", pki.bob.cert_pem], input=first.stdout)
    assert second.exit_code == 0, second.output
    assert second.stdout == first.stdout


def test_batch_folder_to_out_dir_with_json(cli: Any, pki: Any, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.eml", "b.eml"):
        (inbox / name).write_bytes(MESSAGE)
    (inbox / ".hidden").write_bytes(b"skip me")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = cli(["encrypt", inbox, "--out-dir", out_dir, "--cert", pki.alice.cert_pem, "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.eml", "b.eml"]
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["action"] for r in records] == ["encrypted", "encrypted"]
    assert records[0]["recipients"][0]["recipient"] == "alice@example.com"


def test_batch_continues_after_a_bad_message(cli: Any, pki: Any, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.eml", tmp_path / "bad.eml"
    good.write_bytes(MESSAGE)
    bad.write_bytes(b"\x00 not a message")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = cli(["encrypt", bad, good, "--out-dir", out_dir, "--cert", pki.alice.cert_pem])
    assert result.exit_code == 65, result.output
    assert [p.name for p in out_dir.iterdir()] == ["good.eml"]
    assert "bad.eml" in result.stderr and "Traceback" not in result.stderr


def test_missing_input_is_66(cli: Any, pki: Any, tmp_path: Path) -> None:
    result = cli(["encrypt", tmp_path / "nope.eml", "--cert", pki.alice.cert_pem])
    assert_error(result, 66, f"cannot read {tmp_path / 'nope.eml'}: No such file or directory")


def test_missing_cert_file_is_66(cli: Any, tmp_path: Path) -> None:
    result = cli(["encrypt", "--cert", tmp_path / "none.pem"], input=MESSAGE)
    assert_error(result, 66, f"cannot read {tmp_path / 'none.pem'}: No such file or directory")
    assert result.stdout == b""


def test_garbage_cert_is_65(cli: Any, tmp_path: Path) -> None:
    cert = tmp_path / "garbage.pem"
    cert.write_bytes(b"this is not a certificate\n")
    result = cli(["encrypt", "--cert", cert], input=MESSAGE)
    assert_error(result, 65, str(cert))
    assert result.stderr.count("\n") == 1


def test_not_a_message_is_65(cli: Any, pki: Any) -> None:
    result = cli(["encrypt", "--cert", pki.alice.cert_pem], input=b"\x00\x01\x02")
    assert_error(result, 65, "input is not an email message: it does not start with header")
    assert result.stdout == b""


def test_output_in_missing_folder_is_73_and_leaves_nothing(
    cli: Any, pki: Any, tmp_path: Path
) -> None:
    target = tmp_path / "missing" / "out.eml"
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, "-o", target], input=MESSAGE)
    assert_error(result, 73, f"cannot write {target}: No such file or directory")
    assert not target.exists() and not target.parent.exists()


def test_failure_leaves_no_partial_output(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "out.eml"
    bad_cert = tmp_path / "bad.cer"
    bad_cert.write_bytes(b"\x30\x03\x02\x01\x01")
    result = cli(["encrypt", "--cert", bad_cert, "-o", out], input=MESSAGE)
    assert_error(result, 65, str(bad_cert))
    assert list(tmp_path.iterdir()) == [bad_cert]


def test_bad_cipher_is_64(cli: Any, pki: Any) -> None:
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, "--cipher", "aes512"], input=MESSAGE)
    assert_error(result, 64, "Invalid value for '--cipher': 'aes512' is not one of 'aes128'")


def test_cert_and_rules_are_exclusive(cli: Any, pki: Any, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("")
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, "--rules", rules], input=MESSAGE)
    assert_error(result, 64, "exclusive")


def test_neither_cert_nor_rules_is_64(cli: Any) -> None:
    result = cli(["encrypt"], input=MESSAGE)
    assert_error(result, 64, "give --cert FILE or --to ADDRESS (direct mode) or --rules FILE")


def test_oaep_hash_with_rsa_transport_is_64(cli: Any, pki: Any) -> None:
    result = cli(
        [
            "encrypt",
            "--cert",
            pki.alice.cert_pem,
            "--key-transport",
            "rsa",
            "--oaep-hash",
            "sha256",
        ],
        input=MESSAGE,
    )
    assert_error(result, 64, "--oaep-hash needs --key-transport rsa-oaep")


def test_several_inputs_need_out_dir(cli: Any, pki: Any, tmp_path: Path) -> None:
    a, b = tmp_path / "a.eml", tmp_path / "b.eml"
    a.write_bytes(MESSAGE)
    b.write_bytes(MESSAGE)
    result = cli(["encrypt", a, b, "--cert", pki.alice.cert_pem])
    assert_error(result, 64, "several inputs or a folder need --out-dir DIR")


def test_json_to_stdout_is_64(cli: Any, pki: Any) -> None:
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, "--json"], input=MESSAGE)
    assert_error(result, 64, "--json needs -o OUTPUT or --out-dir")
    assert result.stdout == b""


def test_recipient_in_direct_mode_warns_and_is_ignored(cli: Cli, pki: Pki) -> None:
    message = b"From: a@example.com\nTo: b@example.com\nSubject: x\n\nbody\n"
    result = cli(
        ["encrypt", "--cert", str(pki.alice.cert_pem), "--recipient", "z@example.com"],
        input=message,
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "smimecli: warning: --recipient is ignored in direct mode (--cert names the recipients)\n"
    )
    assert b"application/pkcs7-mime" in result.stdout


def test_one_message_starts_no_pool_machinery(pki: Any, tmp_path: Path) -> None:
    import subprocess
    import sys

    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGE)
    out = tmp_path / "out.eml"
    code = (
        "import sys\n"
        "from smimecli.cli.app import main\n"
        f"status = main(['encrypt', '--cert', {str(pki.alice.cert_pem)!r}, {str(src)!r},"
        f" '-o', {str(out)!r}])\n"
        "print('STATUS', status, 'MULTIPROCESSING', 'multiprocessing' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "STATUS 0 MULTIPROCESSING False" in proc.stdout, proc.stdout + proc.stderr
    assert b"smime-type=enveloped-data" in out.read_bytes()


def test_notices_go_to_stderr_once_and_into_json(cli: Any, pki: Any, tmp_path: Path) -> None:
    out = tmp_path / "out.eml"
    args = ["encrypt", "--cert", pki.alice.cert_pem, "--cipher", "3des", "-o", out, "--json"]
    result = cli(args, input=MESSAGE)
    assert result.exit_code == 0, result.output
    text = "cipher 3des is weak; use it only for recipients whose clients cannot read AES"
    assert result.stderr == f"smimecli: warning: {text}\n"
    report = json.loads(result.stdout)
    assert report["warnings"] == [text]
    assert report["notices"] == [{"code": "weak-cipher", "text": text}]
    quiet = cli(["--quiet", *args], input=MESSAGE)
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_rules_notices_name_the_input_in_batch_mode(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "p"\nrecipients = ["alice@example.com"]\n'
        'source = { kind = "dir", path = "empty" }\non_missing_cert = "pass"\n'
    )
    text = "alice@example.com gets the message without encryption"
    result = cli(["encrypt", "--rules", rules, "--recipient", "alice@example.com"], input=MESSAGE)
    assert result.exit_code == 0, result.output
    assert result.stdout == MESSAGE
    assert result.stderr == f"smimecli: warning: {text}\n"
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    (inbox / "m.eml").write_bytes(MESSAGE)
    args = ["encrypt", "--rules", rules, "--recipient", "alice@example.com", "--json"]
    result = cli([*args, "--out-dir", out, inbox])
    assert result.exit_code == 0, result.output
    assert f"smimecli: warning: {inbox / 'm.eml'}: {text}\n" in result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["outcome"] == "passed"
    assert record["notices"] == [
        {"code": "plaintext-recipient", "text": text, "address": "alice@example.com"}
    ]
