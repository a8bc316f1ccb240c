"""The Postfix integration, end to end, with a real Postfix (contrib/postfix).

A private Postfix instance (its own configuration, queue and data folders in a temporary
folder, bound over the default paths in a private mount namespace; listening on 127.0.0.1
only, on a free high port, no relaying) runs the ``smimecli-filter`` content filter as a
pipe(8) service as contrib/postfix/master.cf.snippet documents it. Mail comes in over SMTP
(smtplib), goes through the filter, is re-injected with sendmail, and is delivered by a
pipe transport into a folder the test reads. The delivered message must be
application/pkcs7-mime and ``openssl cms -decrypt`` must give back the parts that were
sent; a ``tempfail`` rule must leave the message deferred in the queue (``mailq`` shows it);
a ``reject`` rule must bounce (5.1.1) without delivering plaintext. Postfix is stopped at
the end in every case.

Needs root (to start Postfix), a private mount namespace (``unshare --mount``) and the
``postfix`` package (.ci/run installs it); skips with a reason otherwise.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import shutil
import site
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import ROOT, Pki, require_tool

pytestmark = [pytest.mark.interop, pytest.mark.slow]

FILTER = ROOT / "contrib" / "postfix" / "smimecli-filter"
PIPE_USER = "nobody"
WAIT_SECONDS = 60


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user(user: pwd.struct_passwd, args: list[str], env: dict[str, str]) -> bool:
    try:
        proc = subprocess.run(
            args,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            env=env,
            capture_output=True,
            timeout=60,
            cwd="/",
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


# Packages the filter does not need at run time: left out of a readable copy.
_NOT_AT_RUN_TIME = shutil.ignore_patterns(
    "mypy",
    "mypyc",
    "hypothesis",
    "_pytest",
    "pytest",
    "pip",
    "setuptools",
    "ruff",
    "*.dist-info",
    "__pycache__",
    "*.pth",
    "__editable__*",
)


def _readable_copy() -> str:
    """This checkout's smimecli and site-packages copied where any user can read them.

    For a checkout or virtual environment under a private folder (/root is 0700), the
    unprivileged filter user could not import them; a copy under /tmp (removed at exit)
    runs the same code.
    """
    import atexit

    folder = Path(tempfile.mkdtemp(prefix="smimecli-filter-", dir="/tmp"))
    atexit.register(shutil.rmtree, folder, True)
    folder.chmod(0o755)
    shutil.copytree(
        ROOT / "smimecli", folder / "smimecli", ignore=shutil.ignore_patterns("__pycache__")
    )
    for packages in site.getsitepackages():
        shutil.copytree(
            packages, folder, ignore=_NOT_AT_RUN_TIME, symlinks=True, dirs_exist_ok=True
        )
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return str(folder)


def _smimecli_for(user: pwd.struct_passwd) -> tuple[list[str], str]:
    """A smimecli command the pipe user can run, and the PYTHONPATH it needs.

    The test interpreter may live where the unprivileged filter user cannot read (a pyenv
    under /root); then a system Python of the same version with this environment's
    site-packages on PYTHONPATH runs the same code, from a readable copy if need be.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable]
    for folder in ("/usr/bin", "/usr/local/bin"):
        if Path(folder, version).exists():
            candidates.append(str(Path(folder, version)))
    pythonpaths = [os.pathsep.join([str(ROOT), *site.getsitepackages()])]
    for pythonpath in pythonpaths:
        for python in candidates:
            command = [python, "-m", "smimecli"]
            env = {
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": pythonpath,
                "PYTHONDONTWRITEBYTECODE": "1",
            }
            if _as_user(user, [*command, "--version"], env):
                return command, pythonpath
        if len(pythonpaths) == 1:
            pythonpaths.append(_readable_copy())
    pytest.skip(
        f"the pipe user {user.pw_name!r} cannot run smimecli with {sys.executable} "
        f"or a system {version}, even from a readable copy"
    )


MASTER_CF = """\
# Private test instance: every service unchrooted, SMTP on loopback only.
127.0.0.1:{port} inet n - n - - smtpd
{smtpd_filter_option}
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
{filter_service}
# Final delivery for the test: every local recipient's mail into a file in {out}.
capture   unix  -       n       n       -       -       pipe
  flags=q user={user} argv={base}/capture.sh {out}
"""

MAIN_CF = """\
compatibility_level = 3.6
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = smimecli-test.localdomain
mydomain = localdomain
myorigin = $myhostname
mydestination = example.com, example.org, localhost
mynetworks = 127.0.0.0/8
relayhost =
relay_domains =
default_transport = error:this test instance does not relay
local_transport = capture:
local_recipient_maps =
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject
capture_destination_recipient_limit = 1
smimecli_destination_recipient_limit = 1
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
"""


# The instance runs in a private mount namespace where its own folders are bound over
# /etc/postfix, /var/spool/postfix and /var/lib/postfix: to its own programs it is the
# default instance, so the set-gid postdrop that sendmail runs for the re-injection accepts
# it (postdrop refuses an alternate config_directory unless the system's main.cf lists it,
# and the test must not edit the system's main.cf). Nothing outside the namespace changes.
BINDS = (("etc", "/etc/postfix"), ("spool", "/var/spool/postfix"), ("data", "/var/lib/postfix"))
NAMESPACE_SCRIPT = (
    'set -e; while [ $# -gt 0 ] && [ "$1" != -- ]; do mount --bind "$1" "$2"; shift 2; done; '
    'shift; exec "$@"'
)


def _snippet_master_cf(user: str, conf: Path, filter_script: Path) -> tuple[str, str]:
    """The smtpd -o line and the filter service, taken from the documented snippet."""
    lines = (ROOT / "contrib" / "postfix" / "master.cf.snippet").read_text().splitlines()
    option = next(line for line in lines if "content_filter=smimecli:" in line)
    start = next(i for i, line in enumerate(lines) if line.startswith("smimecli "))
    service = [lines[start]]
    service += [line for line in lines[start + 1 :] if line.startswith((" ", "\t"))]
    text = "\n".join(service)
    for documented, here in (
        ("user=filter", f"user={user}"),
        ("/usr/local/libexec/smimecli-filter", str(filter_script)),
        ("/etc/smimecli/filter.conf", str(conf)),
    ):
        assert documented in text, f"master.cf.snippet no longer has {documented!r}"
        text = text.replace(documented, here)
    return option, text


@dataclass
class Postfix:
    """A running private Postfix instance."""

    base: Path
    port: int

    @property
    def out(self) -> Path:
        return self.base / "out"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a Postfix command inside the instance's mount namespace."""
        binds = [word for name, target in BINDS for word in (str(self.base / name), target)]
        return subprocess.run(
            ["unshare", "--mount", "sh", "-c", NAMESPACE_SCRIPT, "sh", *binds, "--", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("postfix", *args)

    def mailq(self) -> str:
        proc = self.run("postqueue", "-p")
        return proc.stdout + proc.stderr

    def log(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace")[-6000:] if path.exists() else "(no maillog)"

    def send(self, message: EmailMessage, sender: str, recipients: list[str]) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
            smtp.sendmail(sender, recipients, message.as_bytes())

    def wait_for_delivery(self, count: int = 1) -> list[Path]:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            found = sorted(p for p in self.out.iterdir() if p.suffix == ".eml")
            if len(found) >= count and all(p.stat().st_size for p in found):
                time.sleep(0.2)  # let the writer finish
                return found
            time.sleep(0.25)
        raise AssertionError(
            f"nothing delivered in {WAIT_SECONDS} s\nqueue:\n{self.mailq()}\nlog:\n{self.log()}"
        )


@pytest.fixture
def postfix_instance() -> Iterator[Postfix]:
    """Start a private Postfix on 127.0.0.1:<free port>; stop it afterwards in all cases."""
    require_tool("openssl")
    if shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists():
        pytest.skip("postfix is not installed (.ci/run installs it with apt-get)")
    if os.geteuid() != 0:
        pytest.skip("starting a private Postfix instance needs root")
    try:
        user = pwd.getpwnam(PIPE_USER)
        pwd.getpwnam("postfix")
    except KeyError as exc:
        pytest.skip(f"user missing for the Postfix test: {exc}")
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here (unshare --mount: {probe.stderr.strip()})")
    base = Path(tempfile.mkdtemp(prefix="smimecli-postfix-"))
    base.chmod(0o755)
    instance = Postfix(base=base, port=_free_port())
    started = False
    try:
        # Debian keeps postfix-files, post-install and dynamicmaps.cf in /etc/postfix.
        shutil.copytree("/etc/postfix", base / "etc", symlinks=True)
        for name in ("spool", "data"):
            (base / name).mkdir()
        for name in ("out", "filter-spool", "store"):
            (base / name).mkdir(mode=0o700)
            os.chown(base / name, user.pw_uid, user.pw_gid)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(base / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        capture = base / "capture.sh"
        capture.write_text('#!/bin/sh\nexec cat > "$1/$(date +%s%N).$$.eml"\n')
        capture.chmod(0o755)
        conf = base / "filter.conf"
        # The shipped script, where the filter user can run it (a checkout may be private).
        filter_script = base / "smimecli-filter"
        shutil.copy2(FILTER, filter_script)
        filter_script.chmod(0o755)
        option, service = _snippet_master_cf(PIPE_USER, conf, filter_script)
        (base / "etc" / "master.cf").write_text(
            MASTER_CF.format(
                port=instance.port,
                user=PIPE_USER,
                smtpd_filter_option=option,
                filter_service=service,
                base=base,
                out=instance.out,
            )
        )
        (base / "etc" / "main.cf").write_text(MAIN_CF.format(base=base))
        command, pythonpath = _smimecli_for(user)
        conf.write_text(
            f"SMIMECLI=({' '.join(command)})\n"
            f"RULES={base}/rules.toml\n"
            f"SMIMECLI_STORE={base}/store\n"
            f"SPOOL={base}/filter-spool\n"
            f"export PYTHONPATH={pythonpath}\n"
            "export PYTHONDONTWRITEBYTECODE=1\n"
        )
        check = instance.postfix("check")
        assert check.returncode == 0, check.stdout + check.stderr
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
        yield instance
    finally:
        if started:
            instance.postfix("stop")
            _wait_for_master_exit(base / "spool" / "pid" / "master.pid")
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_master_exit(pid_file: Path) -> None:
    """Wait (bounded) until the master process is gone, so the queue can be removed."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def _write_rules(instance: Postfix, pki: Pki, body: str) -> None:
    shutil.copy(pki.alice.cert_pem, instance.base / "alice.pem")
    (instance.base / "alice.pem").chmod(0o644)
    (instance.base / "empty").mkdir(exist_ok=True)
    (instance.base / "rules.toml").write_text(body)
    (instance.base / "rules.toml").chmod(0o644)


def _parts(message: email.message.Message) -> list[tuple[str, str | None, bytes]]:
    out = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        if part.get_content_maintype() == "text":
            payload = payload.replace(b"\r\n", b"\n")
        out.append((part.get_content_type(), part.get_filename(), payload))
    return out


def _message(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sender@example.org"
    message["To"] = to
    message["Subject"] = "quarterly figures"
    message.set_content("The figures are attached.\n")
    message.add_attachment(
        b"\x00\x01binary figures\xff" * 50,
        maintype="application",
        subtype="octet-stream",
        filename="figures.bin",
    )
    return message


def test_postfix_filter_encrypts_by_rules(
    postfix_instance: Postfix, pki: Pki, tmp_path: Path
) -> None:
    openssl = require_tool("openssl")
    _write_rules(
        postfix_instance,
        pki,
        """\
[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = { kind = "cer", path = "alice.pem" }
""",
    )
    sent = _message("alice@example.com")
    postfix_instance.send(sent, "sender@example.org", ["alice@example.com"])
    (delivered,) = postfix_instance.wait_for_delivery()
    raw = delivered.read_bytes()
    outer = email.message_from_bytes(raw, policy=email.policy.default)
    assert outer.get_content_type() == "application/pkcs7-mime", raw[:2000]
    assert outer["Subject"] == "quarterly figures"
    assert b"binary figures" not in raw and b"The figures are attached" not in raw
    proc = subprocess.run(
        [
            openssl,
            "cms",
            "-decrypt",
            "-in",
            str(delivered),
            "-inkey",
            str(pki.alice.key_pem),
            "-recip",
            str(pki.alice.cert_pem),
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    inner = email.message_from_bytes(proc.stdout, policy=email.policy.default)
    assert inner.get_content_type() == "multipart/mixed"
    # The encrypted entity is in canonical CRLF form (RFC 8551 section 3.1.1): compare text
    # parts line by line and binary parts byte for byte.
    assert _parts(inner) == _parts(sent)


def test_postfix_filter_defers_on_tempfail(postfix_instance: Postfix, pki: Pki) -> None:
    _write_rules(
        postfix_instance,
        pki,
        """\
[[rule]]
name = "bob"
recipients = ["bob@example.com"]
source = { kind = "dir", path = "empty" }
on_missing_cert = "tempfail"
""",
    )
    postfix_instance.send(_message("bob@example.com"), "sender@example.org", ["bob@example.com"])
    deadline = time.monotonic() + WAIT_SECONDS
    queue = ""
    while time.monotonic() < deadline:
        queue = postfix_instance.mailq()
        # A deferred entry carries its reason in parentheses under the queue id.
        if "bob@example.com" in queue and "(" in queue:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"not deferred\nqueue:\n{queue}\nlog:\n{postfix_instance.log()}")
    assert "bob@example.com" in queue
    assert not list(postfix_instance.out.iterdir()), "a tempfail message was delivered"
    log = postfix_instance.log()
    assert "status=deferred" in log, log


def test_postfix_filter_bounces_on_reject(postfix_instance: Postfix, pki: Pki) -> None:
    _write_rules(
        postfix_instance,
        pki,
        """\
[[rule]]
name = "carol"
recipients = ["carol@example.com"]
source = { kind = "dir", path = "empty" }
on_missing_cert = "reject"
""",
    )
    postfix_instance.send(
        _message("carol@example.com"), "sender@example.org", ["carol@example.com"]
    )
    (delivered,) = postfix_instance.wait_for_delivery()
    report = email.message_from_bytes(delivered.read_bytes(), policy=email.policy.default)
    # The only delivery is the bounce to the sender (EX_NOUSER -> 5.1.1), never the plaintext.
    assert report.get_content_type() == "multipart/report", str(report)[:2000]
    assert "sender@example.org" in str(report["To"])
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    assert "5.1.1" in str(status) and "carol@example.com" in str(status)


def test_postfix_filter_bounces_a_message_that_only_claims_encryption(
    postfix_instance: Postfix, pki: Pki
) -> None:
    """A Content-Type that says enveloped-data over a plaintext body is plaintext: the
    reject rule bounces it instead of passing it as "already encrypted"."""
    _write_rules(
        postfix_instance,
        pki,
        """\
[[rule]]
name = "carol"
recipients = ["carol@example.com"]
source = { kind = "dir", path = "empty" }
on_missing_cert = "reject"
""",
    )
    fake = EmailMessage()
    fake["From"] = "sender@example.org"
    fake["To"] = "carol@example.com"
    fake["Subject"] = "not really encrypted"
    fake.set_content("The secret merger plan.\n")
    del fake["Content-Type"]
    fake["Content-Type"] = "application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m"
    postfix_instance.send(fake, "sender@example.org", ["carol@example.com"])
    (delivered,) = postfix_instance.wait_for_delivery()
    raw = delivered.read_bytes()
    report = email.message_from_bytes(raw, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report", raw[:2000]
    assert "sender@example.org" in str(report["To"])
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    assert "5.1.1" in str(status) and "carol@example.com" in str(status)
