"""``smimecli serve`` between two real Postfix smtpd services (contrib/serve).

A private Postfix instance (set up as in test_postfix: its own folders bound over the
default ones in a private mount namespace, loopback only, free high ports) gets the lines
of contrib/serve/master.cf.snippet and main.cf.snippet: the public smtpd hands every
message to ``smimecli serve`` over SMTP, the filter hands its copies back to the
re-injection smtpd, and a pipe transport writes each recipient's mail into a file.

Proved here, with the real Postfix: a certificate holder gets a message that
``openssl cms -decrypt`` opens, a ``pass`` recipient of the same message gets it in
plaintext, a ``reject`` recipient bounces alone (5.7.1), and a filter killed with SIGKILL
in the middle of a message leaves the message queued in Postfix, delivered once the
filter runs again; with ``serve --lmtp`` and Postfix's lmtp client, a copy the relay
defers leaves only its recipients queued (no duplicate for the others).

Needs root, ``unshare --mount`` and the ``postfix`` package; skips with a reason otherwise.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, Pki, require_tool
from tests.interop.test_postfix import (
    MAIN_CF,
    MASTER_CF,
    PIPE_USER,
    WAIT_SECONDS,
    Postfix,
    _free_port,
    _message,
    _parts,
    _wait_for_master_exit,
)

pytestmark = [pytest.mark.interop, pytest.mark.slow]

CONTRIB = ROOT / "contrib" / "serve"

RULES = """\
[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{alice}" }}

[[rule]]
name = "bob"
recipients = ["bob@example.com"]
source = {{ kind = "dir", path = "{empty}" }}
on_missing_cert = "reject"

[[rule]]
name = "erin"
recipients = ["erin@example.com"]
source = {{ kind = "dir", path = "{empty}" }}
on_missing_cert = "pass"
"""


def _service(lines: list[str], head: str) -> list[str]:
    """A master.cf service from the snippet: its first line and its ``-o`` lines."""
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    service = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith((" ", "\t")):
            break
        service.append(line)
    return service


def _snippet_master_cf(
    filter_port: int, reinject_port: int, lmtp: Path | None = None
) -> tuple[str, str]:
    """The public smtpd's -o line, the transport to the filter and the re-injection smtpd.

    ``lmtp``: the transport runs Postfix's lmtp client (as docs/serve.md says), and the
    re-injection smtpd defers the recipients this access table names.
    """
    lines = (CONTRIB / "master.cf.snippet").read_text().splitlines()
    option = next(line for line in lines if "content_filter=smimecli:" in line)
    assert "[127.0.0.1]:10025" in option, "master.cf.snippet no longer sends to 10025"
    option = option.replace(":10025", f":{filter_port}")
    services = _service(lines, "smimecli ") + _service(lines, "127.0.0.1:10026 ")
    text = "\n".join(services).replace("127.0.0.1:10026", f"127.0.0.1:{reinject_port}")
    if lmtp is not None:
        client = services[0]
        assert client.rstrip().endswith(" smtp"), client
        text = text.replace(client, client.rstrip()[: -len("smtp")] + "lmtp")
        text = text.replace("-o smtp_data_done_timeout=", "-o lmtp_data_done_timeout=")
        text = text.replace(
            "-o smtpd_recipient_restrictions=",
            f"-o smtpd_recipient_restrictions=check_recipient_access,texthash:{lmtp},",
        )
    return option, text


def _snippet_main_cf() -> str:
    """main.cf.snippet's settings (the lines that are not comments)."""
    lines = (CONTRIB / "main.cf.snippet").read_text().splitlines()
    return "\n".join(line for line in lines if line.strip() and not line.startswith("#"))


@dataclass
class Serve:
    """``smimecli serve`` as a process of its own, started and stopped by the test."""

    rules: Path
    spool: Path
    port: int
    relay_port: int
    proc: subprocess.Popen[bytes] | None = None
    options: tuple[str, ...] = ()

    def start(self, relay_port: int | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
        command = [sys.executable, "-m", "smimecli", "serve", "--rules", str(self.rules)]
        command += ["--listen", f"127.0.0.1:{self.port}"]
        command += ["--relay", f"127.0.0.1:{relay_port or self.relay_port}"]
        command += ["--spool", str(self.spool), *self.options]
        self.proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "smimecli serve ended at start-up"
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("smimecli serve did not listen")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Chain:
    postfix: Postfix
    serve: Serve

    def delivered(self, count: int) -> dict[str, bytes]:
        """Wait for ``count`` deliveries; each recipient's message (files ``<rcpt>.<n>.eml``)."""
        found = self.postfix.wait_for_delivery(count)
        return {path.name.split(".eml")[0].rsplit(".", 2)[0]: path.read_bytes() for path in found}


@pytest.fixture
def chain(pki: Pki) -> Iterator[Chain]:
    """Postfix (public smtpd, transport to the filter, re-injection smtpd) and the filter."""
    with _chain(pki) as found:
        yield found


@pytest.fixture
def lmtp_chain(pki: Pki) -> Iterator[Chain]:
    """As ``chain``, Postfix speaking LMTP to ``serve --lmtp``; the re-injection smtpd
    defers erin@example.com (450)."""
    with _chain(pki, lmtp=True) as found:
        yield found


@contextlib.contextmanager
def _chain(pki: Pki, *, lmtp: bool = False) -> Iterator[Chain]:
    require_tool("openssl")
    if shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists():
        pytest.skip("postfix is not installed (.ci/run installs it with apt-get)")
    if os.geteuid() != 0:
        pytest.skip("starting a private Postfix instance needs root")
    try:
        user = pwd.getpwnam(PIPE_USER)
        postfix_user = pwd.getpwnam("postfix")
    except KeyError as exc:
        pytest.skip(f"user missing for the Postfix test: {exc}")
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here (unshare --mount: {probe.stderr.strip()})")
    base = Path(tempfile.mkdtemp(prefix="smimecli-serve-postfix-"))
    base.chmod(0o755)
    instance = Postfix(base=base, port=_free_port())
    filter_port, reinject_port = _free_port(), _free_port()
    (base / "empty").mkdir()
    (base / "spool").mkdir()
    (base / "data").mkdir()
    (base / "serve-spool").mkdir(mode=0o700)
    rules = base / "rules.toml"
    rules.write_text(RULES.format(alice=pki.alice.cert_pem, empty=base / "empty"))
    serve = Serve(rules, base / "serve-spool", filter_port, reinject_port)
    defer: Path | None = None
    if lmtp:
        serve.options = ("--lmtp",)
        defer = base / "defer"
        defer.write_text("erin@example.com 450 4.2.0 mailbox busy, try later\n")
    started = False
    try:
        shutil.copytree("/etc/postfix", base / "etc", symlinks=True)
        (base / "out").mkdir(mode=0o700)
        os.chown(base / "out", user.pw_uid, user.pw_gid)
        os.chown(base / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        capture = base / "capture.sh"
        # One file per recipient, named after it: <recipient>.<time>.<pid>.eml
        capture.write_text('#!/bin/sh\nexec cat > "$1/$2.$(date +%s%N).$$.eml"\n')
        capture.chmod(0o755)
        option, services = _snippet_master_cf(filter_port, reinject_port, defer)
        master = MASTER_CF.format(
            port=instance.port,
            user=PIPE_USER,
            smtpd_filter_option=option,
            filter_service=services,
            base=base,
            out=instance.out,
        )
        argv = f"argv={base}/capture.sh {instance.out}"
        assert argv in master
        master = master.replace(argv, argv + " ${recipient}")
        (base / "etc" / "master.cf").write_text(master)
        main = MAIN_CF.format(base=base).replace("smimecli_destination_recipient_limit = 1\n", "")
        (base / "etc" / "main.cf").write_text(main + _snippet_main_cf() + "\n")
        check = instance.postfix("check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert "warning" not in check.stderr, check.stderr
        serve.start()
        start = instance.postfix("start")
        assert start.returncode == 0, start.stdout + start.stderr
        started = True
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as listener:
                if listener.connect_ex(("127.0.0.1", instance.port)) == 0:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"Postfix did not listen on {instance.port}\n{instance.log()}")
        yield Chain(instance, serve)
    finally:
        serve.stop()
        if started:
            instance.postfix("stop")
            _wait_for_master_exit(base / "spool" / "pid" / "master.pid")
        shutil.rmtree(base, ignore_errors=True)


def _decrypt(pki: Pki, raw: bytes, folder: Path) -> bytes:
    path = folder / "encrypted.eml"
    path.write_bytes(raw)
    keys = ["-inkey", str(pki.alice.key_pem), "-recip", str(pki.alice.cert_pem)]
    proc = subprocess.run(
        [require_tool("openssl"), "cms", "-decrypt", "-in", str(path), *keys],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def test_serve_splits_a_message_between_postfix_smtpds(
    chain: Chain, pki: Pki, tmp_path: Path
) -> None:
    sent = _message("alice@example.com, erin@example.com, bob@example.com")
    chain.postfix.send(
        sent, "sender@example.org", ["alice@example.com", "erin@example.com", "bob@example.com"]
    )
    # alice's copy, erin's copy and the bounce for bob to the sender: nothing for bob.
    got = chain.delivered(3)
    assert set(got) == {"alice@example.com", "erin@example.com", "sender@example.org"}, got.keys()

    encrypted = email.message_from_bytes(got["alice@example.com"], policy=email.policy.default)
    assert encrypted.get_content_type() == "application/pkcs7-mime"
    assert b"The figures are attached" not in got["alice@example.com"]
    inner = email.message_from_bytes(_decrypt(pki, got["alice@example.com"], tmp_path))
    assert _parts(inner) == _parts(sent)

    clear = email.message_from_bytes(got["erin@example.com"], policy=email.policy.default)
    assert clear.get_content_type() == "multipart/mixed"
    assert _parts(clear) == _parts(sent)

    report = email.message_from_bytes(got["sender@example.org"], policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    assert "bob@example.com" in str(status) and "5.7.1" in str(status)
    assert "alice@example.com" not in str(status) and "erin@example.com" not in str(status)
    # (The bounce returns the message to its own sender, as Postfix does for any bounce.)


class _StallingRelay:
    """A relay that accepts connections and never says a word: the filter waits on it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.connected = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.connected.set()

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_serve_killed_mid_message_leaves_it_queued_in_postfix(chain: Chain, pki: Pki) -> None:
    stalling = _StallingRelay()
    try:
        chain.serve.stop()
        chain.serve.start(relay_port=stalling.port)
        sent = _message("alice@example.com")
        chain.postfix.send(sent, "sender@example.org", ["alice@example.com"])
        # The filter has the whole message and waits on the relay; Postfix waits on the
        # filter's reply to the end of DATA.
        assert stalling.connected.wait(WAIT_SECONDS), chain.postfix.log()
        chain.serve.kill()
    finally:
        stalling.close()
    deadline = time.monotonic() + WAIT_SECONDS
    while "status=deferred" not in chain.postfix.log() and time.monotonic() < deadline:
        time.sleep(0.25)
    # Postfix saw the connection drop before the filter's reply: 4.4.2, deferred.
    assert "dsn=4.4.2, status=deferred" in chain.postfix.log(), chain.postfix.log()
    assert "alice@example.com" in chain.postfix.mailq()
    assert not list(chain.postfix.out.iterdir()), "delivered although the filter died"

    chain.serve.start()
    flush = chain.postfix.run("postqueue", "-f")
    assert flush.returncode == 0, flush.stderr
    got = chain.delivered(1)
    assert list(got) == ["alice@example.com"]
    assert b"The figures are attached" not in got["alice@example.com"]
    assert email.message_from_bytes(got["alice@example.com"]).get_content_type() == (
        "application/pkcs7-mime"
    )
    assert "alice@example.com" not in chain.postfix.mailq()


def test_serve_lmtp_delivers_one_group_and_defers_the_other(
    lmtp_chain: Chain, pki: Pki, tmp_path: Path
) -> None:
    sent = _message("alice@example.com, erin@example.com")
    lmtp_chain.postfix.send(sent, "sender@example.org", ["alice@example.com", "erin@example.com"])
    got = lmtp_chain.delivered(1)
    assert list(got) == ["alice@example.com"]
    assert b"The figures are attached" in _decrypt(pki, got["alice@example.com"], tmp_path)
    # Postfix's lmtp client took the filter's per-recipient replies: alice sent, erin
    # deferred by the relay's 450 (the filter's 451), and only erin stays queued.
    deadline = time.monotonic() + WAIT_SECONDS
    log = lmtp_chain.postfix.log()
    while "to=<erin@example.com>" not in log and time.monotonic() < deadline:
        time.sleep(0.25)
        log = lmtp_chain.postfix.log()
    erin = [line for line in log.splitlines() if "to=<erin@example.com>" in line]
    assert erin and "status=deferred" in erin[-1] and "4.2.0" in erin[-1], log
    alice = [line for line in log.splitlines() if "to=<alice@example.com>" in line]
    assert any("relay=127.0.0.1" in line and "status=sent" in line for line in alice), log
    queue = lmtp_chain.postfix.mailq()
    assert "erin@example.com" in queue and "alice@example.com" not in queue
    # Retrying erin delivers nothing twice: alice's copy is not sent again.
    lmtp_chain.postfix.run("postqueue", "-f")
    time.sleep(2)
    assert len(list(lmtp_chain.postfix.out.iterdir())) == 1
