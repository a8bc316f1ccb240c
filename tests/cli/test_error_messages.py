"""Errors a person meets say which file, what is wrong and how to fix it."""

from __future__ import annotations

import datetime as dt
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from tests.conftest import ROOT
from tests.pki import PASSWORD

MESSAGE = b"From: a@example.com\nTo: alice@example.com\nSubject: hi\n\nhello\n"


def test_not_a_message_names_the_file(cli: Any, pki: Any, tmp_path: Path) -> None:
    src = tmp_path / "in.eml"
    src.write_bytes(b"just some text\nno headers\n")
    out = tmp_path / "out.eml"
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, src, "-o", out])
    assert result.exit_code == 65, result.output
    assert f"error: {src}: input is not an email message" in result.stderr
    assert not out.exists()


def test_mbox_gets_a_hint(cli: Any, pki: Any, tmp_path: Path) -> None:
    src = tmp_path / "box.eml"
    src.write_bytes(b"From MAILER-DAEMON Thu Jan  1 00:00:00 2024\n" + MESSAGE + b"\n" * 2)
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, src])
    assert result.exit_code == 65, result.output
    assert f"{src}: " in result.stderr
    assert "looks like an mbox file with many messages: split it first" in result.stderr
    assert "formail -s" in result.stderr and result.stdout == b""
    # From standard input there is no file to name, the hint stays.
    piped = cli(["encrypt", "--cert", pki.alice.cert_pem], input=src.read_bytes())
    assert piped.exit_code == 65 and "looks like an mbox file" in piped.stderr


def test_out_dir_that_is_a_file(cli: Any, pki: Any, tmp_path: Path) -> None:
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGE)
    target = tmp_path / "out.eml"
    target.write_bytes(b"keep me")
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, "--out-dir", target, src])
    assert result.exit_code == 73, result.output
    assert f"--out-dir {target} is a file, not a folder" in result.stderr
    assert target.read_bytes() == b"keep me"


def _key_files(pki: Any, folder: Path) -> list[Path]:
    key = pki.alice.key
    encrypted = folder / "enc.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD),
        )
    )
    der = folder / "key.der"
    der.write_bytes(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    traditional = folder / "rsa.der"
    traditional.write_bytes(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return [pki.alice.key_pem, encrypted, der, traditional]


def test_key_file_given_as_cert(cli: Any, pki: Any, tmp_path: Path) -> None:
    for key_file in _key_files(pki, tmp_path):
        # No password source: an encrypted key must be recognised before any prompt.
        result = cli(["encrypt", "--cert", key_file], input=MESSAGE)
        assert result.exit_code == 65, (key_file, result.output)
        assert f"{key_file} holds a private key, not a certificate" in result.stderr
        assert "decrypt --key" in result.stderr and ".cer/.pem" in result.stderr
        assert "password" not in result.stderr
    # A .pfx holds the certificate too: still a certificate file for --cert.
    ok = cli(
        ["encrypt", "--cert", pki.alice.pfx, "--password-env", "PW"],
        input=MESSAGE,
        env={"PW": PASSWORD.decode()},
    )
    assert ok.exit_code == 0, ok.output
    assert b"smime-type=enveloped-data" in ok.stdout and b"\nhello\n" not in ok.stdout


def _encrypt_on_a_terminal(pki: Any, tty: bool) -> tuple[int, bytes, str]:
    command = [sys.executable, "-m", "smimecli", "encrypt", "--cert", str(pki.alice.cert_pem)]
    if not tty:
        done = subprocess.run(command, input=MESSAGE, capture_output=True, cwd=ROOT, timeout=60)
        return done.returncode, done.stdout, done.stderr.decode()
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            command, stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
        )
        os.close(follower)
        # Canonical terminal input: lines, then Ctrl-D at the start of a line ends it.
        os.write(leader, MESSAGE + b"\x04")
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError("encrypt did not end at one Ctrl-D") from None
    finally:
        os.close(leader)
    return proc.returncode, out, err.decode()


def test_reading_standard_input_on_a_terminal_says_so(pki: Any) -> None:
    code, out, err = _encrypt_on_a_terminal(pki, tty=True)
    assert code == 0, err
    assert b"smime-type=enveloped-data" in out
    lines = err.splitlines()
    assert lines == ["smimecli: reading the message from standard input (end it with Ctrl-D)"]
    code, out, err = _encrypt_on_a_terminal(pki, tty=False)
    assert code == 0 and err == "", err


def test_short_thumbprint_prefix(cli: Any, pki: Any) -> None:
    imported = cli(["certs", "import", pki.alice.cert_der, "--store-name", "other"])
    assert imported.exit_code == 0, imported.output
    prefix = pki.alice.thumbprint[:6]
    result = cli(["certs", "show", prefix])
    assert result.exit_code == 65, result.output
    assert "a thumbprint prefix needs 8 or more hex digits" in result.stderr
    assert cli(["certs", "show", pki.alice.thumbprint[:8]]).exit_code == 0
    other = cli(["certs", "show", "nobody@example.com"])
    assert other.exit_code == 65 and "8 or more" not in other.stderr


def test_no_key_lists_the_recipients(cli: Any, pki: Any, tmp_path: Path) -> None:
    imported = cli(["certs", "import", pki.alice.cert_der, "--store-name", "other"])
    assert imported.exit_code == 0, imported.output
    enc = tmp_path / "enc.eml"
    for extra in ([], ["--recipient-id", "ski"]):
        made = cli(
            [
                "encrypt",
                "--cert",
                pki.alice.cert_pem,
                "--cert",
                pki.carol_ec.cert_pem,
                "-o",
                enc,
                *extra,
            ],
            input=MESSAGE,
        )
        assert made.exit_code == 0, made.output
        result = cli(["decrypt", "--key", pki.bob.key_pem, enc])
        assert result.exit_code == 77, result.output
        line = result.stderr.strip()
        assert "\n" not in line
        assert f"cannot decrypt {enc}: no private key for any recipient" in line
        if extra:
            assert "(1) subject key identifier" in line
        else:
            serial = f"{pki.alice.cert.serial_number:X}"
            assert f"(1) issuer CN=Test Root V1, serial {serial}" in line
            assert "(2) issuer CN=Test Root V1, serial" in line
        # The store knows Alice (without her key), not Carol.
        assert "(CN=Alice, E=alice@example.com, no private key)" in line
        assert line.count("E=") == 1
        assert f"see 'smimecli inspect {enc}'" in line
    piped = cli(["decrypt", "--key", pki.bob.key_pem], input=enc.read_bytes())
    assert piped.exit_code == 77 and "see 'smimecli inspect'" in piped.stderr


def test_direct_mode_warns_for_ca_and_expired_certificates(
    cli: Any, pki: Any, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    old = pki.ca.issue(
        "Dora Old",
        "dora@example.com",
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=3),
    )
    expired_on = f"{old.cert.not_valid_after_utc:%Y-%m-%d}"
    result = cli(["encrypt", "--cert", old.cert_pem], input=MESSAGE)
    assert result.exit_code == 0, result.output
    # The subject reads as in 'certs list'.
    imported = cli(["certs", "import", old.cert_pem, "--store-name", "other"])
    assert imported.exit_code == 0, imported.output
    listed = cli(["certs", "list"]).stdout.decode()
    subject = "CN=Dora Old, E=dora@example.com"
    assert subject in listed
    assert (
        f"warning: certificate {subject} in {old.cert_pem} expired {expired_on}; "
        "encrypting to it anyway because --cert names it"
    ) in result.stderr
    ca = cli(["encrypt", "--cert", pki.ca.cert_pem], input=MESSAGE)
    assert ca.exit_code == 0, ca.output
    assert (
        f"warning: certificate CN=Test Root V1 in {pki.ca.cert_pem} is a CA certificate"
    ) in ca.stderr
    fine = cli(["encrypt", "--cert", pki.alice.cert_pem], input=MESSAGE)
    assert "warning" not in fine.stderr


BAD_RULES = """\
[defaults]
cipher = "aes256"

[[rule]]
name = "a"
recipients = ["a@example.com"]
cipher = "aes999"
source = { kind = "store" }

[[rule]]
name = "b"
recipients = "b@example.com"
source = { kind = "store", path = "x" }

[[rule]]
name = "c"
recipients = ["c@example.com"]
source = { kind = "file", path = "x" }
"""


def test_rules_errors_are_all_reported_at_their_key_lines(cli: Any, tmp_path: Path) -> None:
    rules = tmp_path / "bad.toml"
    rules.write_text(BAD_RULES)
    result = cli(["rules", "check", "--rules", rules])
    assert result.exit_code == 78, result.output
    lines = result.stderr.splitlines()
    assert lines == [
        f"smimecli: error: {rules}:7: rule 'a', key 'cipher': unknown cipher 'aes999' "
        "(choose aes128 | aes192 | aes256 | 3des | rc2-128 | rc2-64 | rc2-40 | aes128-gcm "
        "| aes256-gcm | auto)",
        f"smimecli: error: {rules}:12: rule 'b', key 'recipients': must be a list: "
        'recipients = ["b@example.com"]',
        f"smimecli: error: {rules}:13: rule 'b', key 'source.path': not used by a 'store' source",
        f"smimecli: error: {rules}:18: rule 'c', key 'source.kind': unknown kind 'file' "
        "(choose store | pfx | sst | cer | dir)",
    ]
    # One problem stays one line.
    rules.write_text(BAD_RULES.split('\n\n[[rule]]\nname = "b"')[0])
    single = cli(["rules", "check", "--rules", rules])
    assert single.exit_code == 78 and len(single.stderr.splitlines()) == 1, single.output


def test_sst_skip_warning_in_plain_words(cli: Any, pki: Any, tmp_path: Path) -> None:
    from smimecli.certs import sst

    good = pki.alice.cert.public_bytes(serialization.Encoding.DER)
    bad = b"\x30\x03\x04\x01\x00"  # a SEQUENCE holding an OCTET STRING: no certificate
    store = tmp_path / "people.sst"
    store.write_bytes(sst.write_sst([(good, "Alice"), (bad, "Broken")]))
    result = cli(["certs", "import", store, "--store-name", "other"])
    assert result.exit_code == 0, result.output
    assert (
        "skipped certificate 2 (Broken) at byte" in result.stderr
        and f"in {store}: not a valid X.509 certificate: its DER encoding has a field of the "
        "wrong type where another belongs"
        in result.stderr
    ), result.stderr
    assert "ParseError" not in result.stderr and "UnexpectedTag" not in result.stderr


def _recipient_serials(data: bytes) -> list[int]:
    import base64

    from asn1crypto import cms

    body = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    info = cms.ContentInfo.load(base64.b64decode(body))
    return [
        ri.chosen["rid"].chosen["serial_number"].native
        for ri in info["content"]["recipient_infos"]
        if ri.name == "ktri"
    ]


def test_encrypt_to_store_addresses(cli: Any, pki: Any, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    old = pki.ca.issue(
        "Erin",
        "erin@example.com",
        not_after=now - dt.timedelta(days=1),
        not_before=now - dt.timedelta(days=30),
    )
    for identity in (pki.alice, old):
        assert cli(["certs", "import", identity.cert_der, "--store-name", "other"]).exit_code == 0
    assert cli(["certs", "import", pki.bob.cert_der, "--store-name", "my"]).exit_code == 0
    # An expired certificate next to a valid one: the valid one wins.
    longer = pki.ca.issue("Alice", "alice@example.com", days=700)
    assert cli(["certs", "import", longer.cert_der, "--store-name", "other"]).exit_code == 0
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGE)
    out = tmp_path / "out.eml"
    result = cli(
        [
            "encrypt",
            src,
            "-o",
            out,
            "--to",
            "Alice@Example.com",
            "--to",
            "bob@example.com",
            "--cert",
            pki.carol_ec.cert_pem,
        ]
    )
    assert result.exit_code == 0, result.output
    serials = _recipient_serials(out.read_bytes())
    # A DER SET OF sorts the RecipientInfos; Carol's EC recipient is a kari.
    assert sorted(serials) == sorted([longer.cert.serial_number, pki.bob.cert.serial_number])
    for address, why in (
        ("erin@example.com", "expired"),
        ("nobody@example.com", "no certificate"),
    ):
        missing = tmp_path / "missing.eml"
        failed = cli(["encrypt", src, "-o", missing, "--to", "alice@example.com", "--to", address])
        assert failed.exit_code == 67, failed.output
        assert f"error: --to {address}: " in failed.stderr and why in failed.stderr
        assert not missing.exists()
    both = cli(["encrypt", src, "--to", "alice@example.com", "--rules", tmp_path / "r.toml"])
    assert both.exit_code == 64 and "--to and --rules are exclusive" in both.stderr
    # Batch: a folder to --out-dir.
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / "a.eml").write_bytes(MESSAGE)
    (folder / "b.eml").write_bytes(MESSAGE)
    outs = tmp_path / "outs"
    outs.mkdir()
    batch = cli(["encrypt", folder, "--out-dir", outs, "--to", "alice@example.com", "--jobs", "1"])
    assert batch.exit_code == 0, batch.output
    for name in ("a.eml", "b.eml"):
        assert _recipient_serials((outs / name).read_bytes()) == [longer.cert.serial_number]
