"""``smimecli encrypt`` batch mode: many inputs to --out-dir, --jobs workers, worst status."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from smimecli.encrypt import batch
from smimecli.errors import OutputError, UsageError
from tests.conftest import assert_error
from tests.messages import message
from tests.rulesfiles import policy_rules


def _message(index: int, to: str = "alice@example.com") -> bytes:
    return message(
        to,
        f"body of message {index}\n".encode() + b"line\n" * index,
        sender="sender@example.com",
        bcc="secret@example.com",
        subject=f"message {index}",
        content_type="text/plain",
    )


def _inbox(folder: Path, count: int, to: str = "alice@example.com") -> Path:
    folder.mkdir()
    for index in range(count):
        (folder / f"m{index:03d}.eml").write_bytes(_message(index, to))
    return folder


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _decrypt(cli: Any, path: Path, key: Path) -> bytes:
    result = cli(["decrypt", path, "--key", key])
    assert result.exit_code == 0, result.output
    return bytes(result.stdout)


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_folder_batch_writes_every_output(cli: Any, pki: Any, tmp_path: Path, jobs: str) -> None:
    inbox = _inbox(tmp_path / "inbox", 7)
    (inbox / ".hidden.eml").write_bytes(_message(99))
    (inbox / "draft.eml~").write_bytes(_message(98))
    (inbox / "sub").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    result = cli(["encrypt", inbox, "--out-dir", out, "--jobs", jobs, "--cert", pki.alice.cert_pem])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"m{i:03d}.eml" for i in range(7)]
    assert "7 messages: 7 encrypted, 0 passed, 0 failed" in result.stderr
    data = (out / "m003.eml").read_bytes()
    assert b"smime-type=enveloped-data" in data and b"Bcc:" not in data  # base64 has no colon


def test_jobs_1_and_4_give_the_same_messages(cli: Any, pki: Any, tmp_path: Path) -> None:
    inbox = _inbox(tmp_path / "inbox", 9)
    outputs = {}
    for jobs in ("1", "4"):
        out = tmp_path / f"out{jobs}"
        out.mkdir()
        result = cli(
            [
                "encrypt",
                inbox,
                "--out-dir",
                out,
                "--jobs",
                jobs,
                "--cert",
                pki.alice.cert_pem,
                "--cert",
                pki.carol_ec.cert_pem,
            ]
        )
        assert result.exit_code == 0, result.output
        outputs[jobs] = out
    for name in sorted(p.name for p in inbox.iterdir()):
        one, four = (outputs[j] / name for j in ("1", "4"))
        # Ciphertexts differ (random keys); outer headers and decrypted content must not.
        assert one.read_bytes().split(b"\n\n")[0] == four.read_bytes().split(b"\n\n")[0]
        assert one.read_bytes() != four.read_bytes()
        plain = _decrypt(cli, one, pki.alice.key_pem)
        assert plain == _decrypt(cli, four, pki.alice.key_pem)
        assert plain == _decrypt(cli, four, pki.carol_ec.key_pem)
        assert f"Subject: message {int(name[1:4])}".encode() in plain


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_bad_message_does_not_stop_the_others(
    cli: Any, pki: Any, tmp_path: Path, jobs: str
) -> None:
    inbox = _inbox(tmp_path / "inbox", 5)
    (inbox / "m002.eml").write_bytes(b"\x00\x01 not a message")
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        ["encrypt", inbox, "--out-dir", out, "--jobs", jobs, "--json", "--cert", pki.alice.cert_pem]
    )
    assert result.exit_code == 65, result.output
    assert sorted(p.name for p in out.iterdir()) == ["m000.eml", "m001.eml", "m003.eml", "m004.eml"]
    assert _leftovers(out) == []
    assert result.stderr.count("smimecli: error:") == 1 and "m002.eml" in result.stderr
    assert "Traceback" not in result.stderr
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["outcome"] for r in records] == ["encrypted"] * 2 + ["failed"] + ["encrypted"] * 2
    failed = records[2]
    assert failed["status"] == 65 and failed["output"] is None and failed["error"]
    ok = records[0]
    assert ok["status"] == 0 and ok["error"] is None
    assert ok["output"] == str(out / "m000.eml") and ok["input"] == str(inbox / "m000.eml")
    assert ok["recipients"][0]["recipient"] == "alice@example.com"


def test_exit_status_is_the_worst(cli: Any, pki: Any, tmp_path: Path) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes(_message(1))
    bad = tmp_path / "bad.eml"
    bad.write_bytes(b"\x00")
    missing = tmp_path / "missing.eml"
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        [
            "encrypt",
            missing,
            good,
            bad,
            "--out-dir",
            out,
            "--jobs",
            "2",
            "--cert",
            pki.alice.cert_pem,
        ]
    )
    # 65 (bad data) outranks 66 (missing input), whatever the order of the inputs.
    assert result.exit_code == 65, result.output
    assert [p.name for p in out.iterdir()] == ["good.eml"]
    assert sorted(line for line in result.stderr.splitlines() if "error" in line) == [
        f"smimecli: error: {bad}: input is not an email message: it does not start with "
        "header fields",
        f"smimecli: error: {missing}: cannot read {missing}: No such file or directory",
    ], result.stderr
    assert "3 messages: 1 encrypted, 0 passed, 2 failed (exit 65)" in result.stderr
    assert "Traceback" not in result.stderr


def test_worst_status_order() -> None:
    assert batch.worst_status([]) == 0
    assert batch.worst_status([0, 0]) == 0
    assert batch.worst_status([66, 65]) == 65
    assert batch.worst_status([67, 75, 65]) == 75
    assert batch.worst_status([75, 73]) == 73
    assert batch.worst_status([73, 74, 70]) == 70
    assert batch.worst_status([64, 0, 66]) == 66


def test_rules_batch_rejects_one_and_encrypts_the_rest(cli: Any, pki: Any, tmp_path: Path) -> None:
    rules = policy_rules(
        tmp_path,
        pki.alice.cert_der,
        "reject",
        unknown="strict",
        pattern="*@strict.example",
        match_any=True,
    )
    inbox = _inbox(tmp_path / "inbox", 4)
    (inbox / "m001.eml").write_bytes(_message(1, to="bob@strict.example"))
    (inbox / "m002.eml").write_bytes(_message(2, to="nobody@elsewhere.example"))
    out = tmp_path / "out"
    out.mkdir()
    result = cli(["encrypt", inbox, "--out-dir", out, "--rules", rules, "--jobs", "2", "--json"])
    assert result.exit_code == 67, result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        f"smimecli: error: {inbox / 'm001.eml'}: no usable certificate for bob@strict.example "
        "(rule 'strict', on_missing_cert = reject)"
    ), errors
    records = {
        Path(r["input"]).name: r for r in map(json.loads, result.stdout.decode().splitlines())
    }
    assert records["m001.eml"]["outcome"] == "failed"
    assert records["m001.eml"]["status"] == 67
    assert records["m002.eml"]["outcome"] == "passed"
    assert records["m000.eml"]["outcome"] == "encrypted"
    assert sorted(p.name for p in out.iterdir()) == ["m000.eml", "m002.eml", "m003.eml"]
    assert (out / "m002.eml").read_bytes() == (inbox / "m002.eml").read_bytes()


def test_bad_rules_file_fails_before_any_message(cli: Any, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[[rule]]\nname = 1\n")
    inbox = _inbox(tmp_path / "inbox", 2)
    out = tmp_path / "out"
    out.mkdir()
    result = cli(["encrypt", inbox, "--out-dir", out, "--rules", rules])
    assert result.exit_code == 78, result.output
    assert result.stderr.splitlines() == [
        f"smimecli: error: {rules}:1: rule #1: missing key 'recipients'",
        f"smimecli: error: {rules}:1: rule #1: missing key 'source'",
    ]  # every problem of the file, one line each, and no message tried
    assert list(out.iterdir()) == []


def test_missing_out_dir_is_73(cli: Any, pki: Any, tmp_path: Path) -> None:
    inbox = _inbox(tmp_path / "inbox", 2)
    out = tmp_path / "nope"
    result = cli(["encrypt", inbox, "--out-dir", out, "--cert", pki.alice.cert_pem])
    assert_error(result, 73, f"output folder {out} does not exist: create it first")
    assert not out.exists() and result.stderr.count("\n") == 1


def test_out_dir_that_is_a_file_is_73(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"")
    with pytest.raises(OutputError):
        batch.plan_outputs([tmp_path / "a.eml"], target)


def test_output_option_with_several_inputs_is_64(cli: Any, pki: Any, tmp_path: Path) -> None:
    inbox = _inbox(tmp_path / "inbox", 2)
    result = cli(
        [
            "encrypt",
            inbox / "m000.eml",
            inbox / "m001.eml",
            "-o",
            tmp_path / "x",
            "--cert",
            pki.alice.cert_pem,
        ]
    )
    assert_error(result, 64, "several inputs need --out-dir DIR, not -o")
    assert not (tmp_path / "x").exists()


def test_same_name_twice_is_64(cli: Any, pki: Any, tmp_path: Path) -> None:
    one = _inbox(tmp_path / "one", 1)
    two = _inbox(tmp_path / "two", 1)
    out = tmp_path / "out"
    out.mkdir()
    result = cli(["encrypt", one, two, "--out-dir", out, "--cert", pki.alice.cert_pem])
    assert_error(
        result,
        64,
        f"{one / 'm000.eml'} and {two / 'm000.eml'} would both be written to "
        f"{out / 'm000.eml'}: encrypt them in separate runs",
    )
    assert list(out.iterdir()) == []


def test_out_dir_holding_the_inputs_is_64(cli: Any, pki: Any, tmp_path: Path) -> None:
    inbox = _inbox(tmp_path / "inbox", 2)
    before = {p.name: p.read_bytes() for p in inbox.iterdir()}
    result = cli(["encrypt", inbox, "--out-dir", inbox, "--cert", pki.alice.cert_pem])
    assert_error(result, 64, f"--out-dir {inbox} holds the input {inbox / 'm000.eml'}")
    assert {p.name: p.read_bytes() for p in inbox.iterdir()} == before


def test_stdin_in_batch_is_64(cli: Any, pki: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        ["encrypt", "-", "--out-dir", out, "--cert", pki.alice.cert_pem], input=_message(1)
    )
    assert_error(result, 64, "batch mode (--out-dir) reads files, not standard input")
    assert list(out.iterdir()) == []


def test_unwritable_out_dir_fails_every_message_with_73(cli: Any, pki: Any, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    inbox = _inbox(tmp_path / "inbox", 3)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = cli(["encrypt", inbox, "--out-dir", out, "--cert", pki.alice.cert_pem])
    finally:
        out.chmod(0o700)
    assert result.exit_code == 73, result.output
    assert list(out.iterdir()) == []


def test_workers_load_certificates_once_per_process(
    pki: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography import x509

    from smimecli.cms.recipients import Recipient

    log = tmp_path / "loads"
    real_init = batch._Worker.__init__

    def counting_init(self: Any, settings: batch.BatchSettings) -> None:
        with log.open("a") as handle:
            handle.write(f"{os.getpid()}\n")
        real_init(self, settings)

    monkeypatch.setattr(batch._Worker, "__init__", counting_init)
    inbox = _inbox(tmp_path / "inbox", 24)
    out = tmp_path / "out"
    out.mkdir()
    cert = x509.load_pem_x509_certificate(pki.alice.cert_pem.read_bytes())
    settings = batch.BatchSettings(recipients=(batch.RecipientSpec.of(Recipient(cert)),))
    pairs = batch.plan_outputs(batch.expand_inputs([inbox]), out)
    seen: list[str] = []
    summary = batch.run_batch(pairs, settings, jobs=2, on_result=lambda r: seen.append(r.input))
    assert summary.status == 0 and summary.counts["encrypted"] == 24
    assert seen == [str(p) for p, _ in pairs]  # results come back in input order
    pids = log.read_text().split()
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)
    assert str(os.getpid()) not in pids


def test_plan_outputs_rejects_duplicates() -> None:
    with pytest.raises(UsageError):
        batch.plan_outputs([Path("a/x.eml"), Path("b/x.eml")], Path("."))


def test_plan_outputs_refuses_to_overwrite_an_input(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.eml").write_bytes(b"From: a@b\n\nx\n")
    via_link = tmp_path / "linked"
    via_link.symlink_to(out)  # the same folder under another name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.eml").symlink_to(out / "a.eml")  # a link to a file in the output folder
    (elsewhere / "c.eml").write_bytes(b"From: a@b\n\nx\n")
    for inputs in ([out / "a.eml"], [via_link / "a.eml"], [elsewhere / "b.eml"]):
        with pytest.raises(UsageError, match="holds the input"):
            batch.plan_outputs(inputs, out)
    assert batch.plan_outputs([elsewhere / "c.eml"], out) == [(elsewhere / "c.eml", out / "c.eml")]


def test_expand_inputs_takes_regular_files_in_name_order(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("b.eml", "a.eml", ".hidden.eml", "x.eml~", "y.tmp", "z.part", "w.swp"):
        (inbox / name).write_bytes(b"x")
    (inbox / "sub").mkdir()
    (inbox / "link.eml").symlink_to(inbox / "a.eml")
    (inbox / "dangling.eml").symlink_to(inbox / "missing")
    named = tmp_path / ".explicit.tmp"
    named.write_bytes(b"x")
    assert batch.expand_inputs([inbox, named]) == [
        inbox / "a.eml",
        inbox / "b.eml",
        inbox / "link.eml",
        named,
    ]


def test_default_jobs_uses_the_cpus_for_big_batches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert batch.default_jobs(1000) == 4
    assert batch.default_jobs(40) == 2  # one worker per 16 messages at most
    assert batch.default_jobs(15) == 1  # a handful: this process
    assert batch.default_jobs(0) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert batch.default_jobs(100_000) == 8  # a big machine: at most 8 by default

    def unavailable(pid: int) -> set[int]:
        raise OSError("not supported")

    monkeypatch.setattr(os, "sched_getaffinity", unavailable, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert batch.default_jobs(1000) == 2


def test_without_jobs_a_big_batch_uses_one_worker_per_cpu(
    cli: Any, pki: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    asked: list[int] = []
    real = batch.run_batch

    def spy(pairs: Any, settings: Any, *, jobs: int, on_result: Any = None) -> Any:
        asked.append(jobs)
        return real(pairs, settings, jobs=jobs, on_result=on_result)

    monkeypatch.setattr(batch, "run_batch", spy)
    inbox = _inbox(tmp_path / "inbox", 40)
    out = tmp_path / "out"
    out.mkdir()
    result = cli(["encrypt", inbox, "--out-dir", out, "--cert", pki.alice.cert_pem])
    assert result.exit_code == 0, result.output
    assert asked == [2]
    assert len(list(out.iterdir())) == 40
    decrypted = _decrypt(cli, out / "m039.eml", pki.alice.key_pem)
    assert decrypted.endswith(b"line\n" * 39)


def test_run_batch_without_jobs_uses_default_jobs(
    pki: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography import x509

    from smimecli.cms.recipients import Recipient

    asked: list[int] = []

    def default_jobs(messages: int) -> int:
        asked.append(messages)
        return 1

    monkeypatch.setattr(batch, "default_jobs", default_jobs)
    inbox = _inbox(tmp_path / "inbox", 3)
    out = tmp_path / "out"
    out.mkdir()
    cert = x509.load_pem_x509_certificate(pki.alice.cert_pem.read_bytes())
    settings = batch.BatchSettings(recipients=(batch.RecipientSpec.of(Recipient(cert)),))
    summary = batch.run_batch(batch.plan_outputs(batch.expand_inputs([inbox]), out), settings)
    assert summary.status == 0 and summary.counts["encrypted"] == 3
    assert asked == [3]


def test_one_request_in_direct_and_rules_mode(pki: Any, tmp_path: Path) -> None:
    import io

    from cryptography import x509

    from smimecli.cms.recipients import Recipient
    from smimecli.encrypt.request import EncryptRequest, encrypt_one

    cert = x509.load_pem_x509_certificate(pki.alice.cert_pem.read_bytes())
    out = io.BytesIO()
    request = EncryptRequest(recipients=(Recipient(cert),), cipher="aes128")
    report = encrypt_one(request, io.BytesIO(_message(1)), out).to_json()
    assert report["action"] == "encrypted" and report["cipher"] == "aes128"
    assert b"smime-type=enveloped-data" in out.getvalue()

    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'[[rule]]\nname = "alice"\nrecipients = ["alice@example.com"]\n'
        f'source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}\n',
        encoding="utf-8",
    )
    out = io.BytesIO()
    request = EncryptRequest(rules=rules, envelope_recipients=("alice@example.com",))
    report = encrypt_one(request, io.BytesIO(_message(2, to="x@example.net")), out).to_json()
    assert report["action"] == "encrypted"
    assert [r["recipient"] for r in report["recipients"]] == ["alice@example.com"]


def test_rules_batch_without_a_store_folder_opens_no_store(
    pki: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "store"\nrecipients = ["alice@example.com"]\n'
        'source = { kind = "store", store = "other" }\n',
        encoding="utf-8",
    )
    inbox = _inbox(tmp_path / "inbox", 1)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    results: list[batch.MessageResult] = []
    summary = batch.run_batch(
        batch.plan_outputs([inbox / "m000.eml"], out),
        batch.BatchSettings(rules=rules),
        jobs=1,
        on_result=results.append,
    )
    assert summary.status == 78
    assert results[0].error is not None and "certificate store folder" in results[0].error
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store in "."
