"""Batch faults (SPEC sections 1.1 and 2): a worker killed by the OOM killer or kill -9
costs its message a 75 (retry later), never a hung batch; SIGTERM leaves no temporary
file; --done-dir moves each input once its output is on disk, never over another file,
and leaves failed inputs where they are; a failed message leaves no stale output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, Pki

MESSAGE = b"From: a@example.com\nTo: alice@example.com\nSubject: %d\n\nbody %d\n"
LINE = b"x" * 1023 + b"\n"


def _popen(*args: object, store: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SMIMECLI_STORE=str(store), PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "smimecli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _holder(pid: int, path: Path, timeout: float = 30) -> int:
    """The child of ``pid`` that has ``path`` open (a worker blocked on a FIFO input)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in _children(pid):
            try:
                fds = list(Path(f"/proc/{child}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(fd) == str(path):
                        return child
                except OSError:
                    continue
        time.sleep(0.05)
    raise AssertionError(f"no worker opened {path}")


def _spool(folder: Path, count: int) -> None:
    folder.mkdir()
    for number in range(count):
        (folder / f"m{number:02d}.eml").write_bytes(MESSAGE % (number, number))


def test_a_killed_worker_fails_its_message_with_75(pki: Pki, tmp_path: Path) -> None:
    spool, out = tmp_path / "in", tmp_path / "out"
    _spool(spool, 20)
    (spool / "m05.eml").unlink()
    os.mkfifo(spool / "m05.eml")  # a worker blocks on it: the one to kill
    out.mkdir()
    proc = _popen(
        "encrypt",
        "--cert",
        pki.alice.cert_pem,
        "--out-dir",
        out,
        "--jobs",
        "2",
        "--json",
        *sorted(spool.iterdir()),  # named: a FIFO in a folder would be skipped
        store=tmp_path / "store",
    )
    with open(spool / "m05.eml", "wb"):  # returns once a worker opened it; it then waits
        worker = _holder(proc.pid, spool / "m05.eml")
        os.kill(worker, signal.SIGKILL)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the batch hung after a worker died") from None
    err = stderr.decode()
    assert proc.returncode == 75, err
    records = {Path(r["input"]).name: r for r in map(json.loads, stdout.decode().splitlines())}
    assert len(records) == 20
    assert records["m05.eml"]["status"] == 75
    assert "killed by signal 9" in records["m05.eml"]["error"]
    assert all(r["status"] == 0 for name, r in records.items() if name != "m05.eml")
    assert sorted(p.name for p in out.iterdir()) == sorted(n for n in records if n != "m05.eml")
    assert "m05.eml: the worker process encrypting this message killed by signal 9" in err


def test_sigterm_during_a_jobs_batch_leaves_no_temporary(pki: Pki, tmp_path: Path) -> None:
    spool, out = tmp_path / "in", tmp_path / "out"
    spool.mkdir()
    out.mkdir()
    fifos = [spool / "a.eml", spool / "b.eml"]
    for fifo in fifos:
        os.mkfifo(fifo)
    proc = _popen(
        "encrypt",
        "--cert",
        pki.alice.cert_pem,
        "--out-dir",
        out,
        "--jobs",
        "2",
        *fifos,
        store=tmp_path / "store",
    )
    pipes = [open(fifo, "wb") for fifo in fifos]
    try:
        head = b"From: a@example.com\nTo: alice@example.com\nSubject: s\n\n"
        for pipe in pipes:
            pipe.write(head)
        deadline = time.monotonic() + 30
        while len(list(out.glob(".*.tmp"))) < 2:
            assert time.monotonic() < deadline, "no temporary files appeared"
            for pipe in pipes:
                pipe.write(LINE * 64)
                pipe.flush()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        for pipe in pipes:
            try:
                pipe.close()
            except BrokenPipeError:
                pass
    assert proc.returncode == 75, stderr.decode()
    assert "no partial output was left" in stderr.decode()
    assert list(out.iterdir()) == []


def _batch(pki: Pki, tmp_path: Path, *args: object) -> tuple[int, list[dict[str, object]], str]:
    proc = _popen(
        "encrypt", "--cert", pki.alice.cert_pem, "--json", *args, store=tmp_path / "store"
    )
    stdout, stderr = proc.communicate(timeout=60)
    return proc.returncode, [json.loads(x) for x in stdout.decode().splitlines()], stderr.decode()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_done_dir_moves_written_inputs_only(pki: Pki, tmp_path: Path, jobs: str) -> None:
    spool, out, done = tmp_path / "in", tmp_path / "out", tmp_path / "done"
    _spool(spool, 3)
    (spool / "bad.eml").write_bytes(b"not a message at all")
    out.mkdir()
    done.mkdir()
    (done / "m00.eml").write_bytes(b"an earlier message of the same name")
    (out / "bad.eml").write_bytes(b"last run's output")  # must not look like this run's
    status, records, err = _batch(
        pki, tmp_path, "--out-dir", out, "--done-dir", done, "--jobs", jobs, spool
    )
    assert status == 65, err
    assert sorted(p.name for p in spool.iterdir()) == ["bad.eml"]
    assert sorted(p.name for p in done.iterdir()) == ["m00.eml", "m00.eml.1", "m01.eml", "m02.eml"]
    assert (done / "m00.eml").read_bytes() == b"an earlier message of the same name"
    assert (done / "m00.eml.1").read_bytes() == MESSAGE % (0, 0)
    by_name = {Path(str(r["input"])).name: r for r in records}
    assert by_name["m00.eml"]["done"] == str(done / "m00.eml.1")
    assert by_name["bad.eml"]["done"] is None and by_name["bad.eml"]["status"] == 65
    assert sorted(p.name for p in out.iterdir()) == ["m00.eml", "m01.eml", "m02.eml"]


def test_done_dir_across_file_systems(pki: Pki, tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system")
    import tempfile

    with tempfile.TemporaryDirectory(dir=shm) as other:
        done = Path(other)
        spool, out = tmp_path / "in", tmp_path / "out"
        _spool(spool, 2)
        out.mkdir()
        status, records, err = _batch(pki, tmp_path, "--out-dir", out, "--done-dir", done, spool)
        assert status == 0, err
        assert list(spool.iterdir()) == []
        assert sorted(p.name for p in done.iterdir()) == ["m00.eml", "m01.eml"]
        assert (done / "m01.eml").read_bytes() == MESSAGE % (1, 1)
        assert [r["done"] for r in records] == [str(done / "m00.eml"), str(done / "m01.eml")]


def test_done_dir_needs_out_dir_and_an_existing_folder(pki: Pki, tmp_path: Path) -> None:
    spool = tmp_path / "in"
    _spool(spool, 2)
    (tmp_path / "out").mkdir()
    status, _, err = _batch(
        pki, tmp_path, "--out-dir", tmp_path / "out", "--done-dir", tmp_path / "nope", spool
    )
    assert status == 73 and "--done-dir" in err and "does not exist" in err, err
    status, _, err = _batch(
        pki, tmp_path, "--out-dir", tmp_path / "out", "--done-dir", spool, spool
    )
    assert status == 64 and "holds the input" in err, err


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_worker_that_cannot_start_fails_each_message_with_its_reason(
    pki: Pki, tmp_path: Path, capfd: pytest.CaptureFixture[str], jobs: int
) -> None:
    # The signer's .pfx went away after the command checked it: no worker can start. Every
    # message fails with that reason and status (not "died, out of memory?" and 75 for each
    # restarted worker), nothing is written, and no traceback reaches stderr.
    from cryptography import x509

    from smimecli.encrypt.batch import BatchSettings, RecipientSpec, run_batch
    from smimecli.encrypt.spool import plan_outputs
    from smimecli.sign.signers import SignerSource

    spool, out = tmp_path / "in", tmp_path / "out"
    _spool(spool, 4)
    out.mkdir()
    cert = x509.load_pem_x509_certificate(pki.alice.cert_pem.read_bytes())
    from cryptography.hazmat.primitives.serialization import Encoding

    settings = BatchSettings(
        recipients=(RecipientSpec(cert.public_bytes(Encoding.DER)),),
        signer=SignerSource(pfx=tmp_path / "gone.pfx", password=b"x"),
    )
    pairs = plan_outputs(sorted(spool.iterdir()), out)
    summary = run_batch(pairs, settings, jobs=jobs)
    assert summary.status == 66
    assert summary.counts["failed"] == 4
    assert list(out.iterdir()) == []
    assert "Traceback" not in capfd.readouterr().err
