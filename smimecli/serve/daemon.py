"""The ``smimecli serve`` daemon: the listening socket, the worker pool, the signals.

One asyncio loop runs every SMTP session (aiosmtpd); the CPU work of a message (planning
and encryption) runs in a pool of ``--workers`` threads, and the relay's smtplib
transactions and the RCPT-time lookups in a pool of I/O threads, so a slow relay never
holds a worker.

Signals: SIGHUP loads the rules file again (a broken file keeps the rules in use and logs
one error) and reopens the journal; SIGTERM and SIGINT stop accepting connections, let the
messages in flight finish (at most ``drain_seconds``), close the sessions, and end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import ipaddress
import logging
import signal
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smimecli.errors import ConfigError, SmimeError, UsageError
from smimecli.serve import engine as engine_module
from smimecli.serve.engine import Engine, RecipientDecision, Split
from smimecli.serve.journal import SYSLOG_SOCKET, Journal, open_syslog
from smimecli.serve.relay import RelayReply, relay_copies

log = logging.getLogger("smimecli")

BUSY = b"421 4.7.0 too many sessions in the S/MIME filter; try again later\r\n"


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); UsageError when malformed."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{option} {text!r}: give HOST:PORT, for example 127.0.0.1:10025")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether a listen address is on the loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_address(text: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """``--listen``: as :func:`parse_address`; a non-loopback address needs
    ``allow_remote`` (UsageError otherwise)."""
    host, port = parse_address(text, "--listen")
    if not is_loopback(host) and not allow_remote:
        raise UsageError(
            f"--listen {text} is not a loopback address: the filter speaks plain SMTP "
            "without authentication; add --allow-remote if a firewall guards it"
        )
    return host, port


def spool_folder(spool: Path | None) -> str | None:
    """``--spool``: the folder as a string (None: $TMPDIR); InputError when missing."""
    if spool is None:
        return None
    if not spool.is_dir():
        from smimecli.errors import InputError

        raise InputError(f"spool folder {spool} does not exist: create it (mode 0700)")
    return str(spool)


def syslog_socket() -> str:
    """The syslog socket: ``/dev/log``, or ``$SMIMECLI_SYSLOG_SOCKET`` (a chroot, tests)."""
    import os

    return os.environ.get("SMIMECLI_SYSLOG_SOCKET") or SYSLOG_SOCKET


@dataclass
class Settings:
    """Everything the daemon needs, as the command line gave it."""

    rules: Path
    store_dir: Path | None
    listen: tuple[str, int]
    relay: tuple[str, int]
    workers: int = 2
    worker_kind: str = "thread"  # or "process"
    max_size: int | None = None
    max_sessions: int = 100
    journal: str | None = None
    journal_subject: bool = False
    spool_dir: str | None = None
    drain_seconds: float = 60.0
    relay_timeout: float = 300.0
    # A client silent this long between commands, or whose DATA takes longer, is dropped.
    session_timeout: float = 300.0
    syslog_facility: str | None = None  # None: no syslog
    syslog_socket: str = SYSLOG_SOCKET
    # The root's --store-password-env: decrypts the store's private keys (the rules' signers).
    store_passphrase: bytes | None = field(default=None, repr=False)
    lmtp: bool = False  # speak LMTP (RFC 2033) on listen instead of SMTP


class _Busy(asyncio.Protocol):
    """The answer beyond --max-sessions: 421, then the connection is closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(BUSY)
        transport.close()


class Daemon:
    """The filter: create it (loads the rules: ConfigError when bad), then :meth:`run`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine.load(settings.rules, settings.store_dir, settings.store_passphrase)
        self.syslog: logging.Handler | None = None
        if settings.syslog_facility is not None:
            self.syslog = open_syslog(settings.syslog_facility, settings.syslog_socket)
        try:
            self.journal = Journal(
                settings.journal, subject=settings.journal_subject, syslog=self.syslog
            )
        except BaseException:
            if self.syslog is not None:
                self.syslog.close()
            raise
        self.spool_dir = settings.spool_dir or tempfile.gettempdir()
        self.sessions: set[Any] = set()
        self.in_flight: set[asyncio.Future[Any]] = set()
        self.port: int | None = None
        self.ready = threading.Event()
        self._io = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(4, settings.max_sessions + 2), thread_name_prefix="smimecli-io"
        )
        self._cpu = self._new_pool()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def _new_pool(self) -> concurrent.futures.Executor:
        if self.settings.worker_kind == "process":
            return concurrent.futures.ProcessPoolExecutor(
                max_workers=self.settings.workers,
                initializer=engine_module.init_worker,
                initargs=(
                    self.settings.rules,
                    self.settings.store_dir,
                    self.settings.store_passphrase,
                ),
            )
        return concurrent.futures.ThreadPoolExecutor(
            max_workers=self.settings.workers, thread_name_prefix="smimecli-worker"
        )

    # --- the Service the handler uses -----------------------------------------------------

    async def decide(self, address: str) -> RecipientDecision:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, self.engine.decide, address)

    async def split(self, path: str, recipients: list[str], sender: str | None = None) -> Split:
        pool = self._cpu
        args = (path, recipients, self.spool_dir, sender)
        try:
            if isinstance(pool, concurrent.futures.ProcessPoolExecutor):
                job = pool.submit(engine_module.worker_split, *args)
            else:
                job = pool.submit(self.engine.split_and_encrypt, *args)
            return await asyncio.wrap_future(job)
        except concurrent.futures.BrokenExecutor:
            # A worker died (killed, out of memory): this message is retried (451), its
            # half-written copy is removed, and the next one gets a new pool.
            engine_module.remove_outputs(path, self.spool_dir)
            if self._cpu is pool:
                self._cpu = self._new_pool()
                pool.shutdown(wait=False)
            raise

    async def relay(
        self,
        sender: str,
        copies: list[tuple[tuple[str, ...], str]],
        eightbit: bool,
        smtputf8: bool = False,
    ) -> list[RelayReply]:
        host, port = self.settings.relay
        call = functools.partial(
            relay_copies,
            host,
            port,
            sender,
            copies,
            eightbit=eightbit,
            smtputf8=smtputf8,
            timeout=self.settings.relay_timeout,
        )
        return await asyncio.get_running_loop().run_in_executor(self._io, call)

    def track(self, task: asyncio.Future[Any]) -> None:
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    # --- signals ------------------------------------------------------------------------

    def reload(self) -> bool:
        """Load the rules file again; on error keep the rules in use and log one line."""
        try:
            fresh = Engine.load(
                self.settings.rules, self.settings.store_dir, self.settings.store_passphrase
            )
        except SmimeError as exc:
            log.error(f"rules not reloaded, the previous rules stay in use: {exc.message}")
            return False
        self.engine = fresh
        if isinstance(self._cpu, concurrent.futures.ProcessPoolExecutor):
            old, self._cpu = self._cpu, self._new_pool()
            old.shutdown(wait=False)
        self.journal.reopen()
        log.info(f"rules reloaded from {self.settings.rules}")
        return True

    def request_stop(self) -> None:
        """Stop (from any thread): as SIGTERM."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def request_reload(self) -> None:
        """Reload (from any thread): as SIGHUP."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.reload)

    # --- running ------------------------------------------------------------------------

    def _factory(self) -> asyncio.Protocol:
        from smimecli.serve.handler import FilterHandler
        from smimecli.serve.protocol import FilterLMTP, FilterSMTP

        if len(self.sessions) >= self.settings.max_sessions:
            return _Busy()
        protocol = FilterLMTP if self.settings.lmtp else FilterSMTP
        return protocol(
            FilterHandler(self),
            max_size=self.settings.max_size,
            spool_dir=self.spool_dir,
            sessions=self.sessions,
            timeout=self.settings.session_timeout,
            hostname=None,
            ident="smimecli serve",
            loop=self._loop,
        )

    def run(self, *, signals: bool = True) -> int:
        """Serve until SIGTERM/SIGINT (or :meth:`request_stop`); returns the exit status."""
        if self.syslog is not None:
            log.addHandler(self.syslog)  # the error lines too
        try:
            return asyncio.run(self._main(signals))
        finally:
            self._cpu.shutdown(wait=True, cancel_futures=True)
            self._io.shutdown(wait=False, cancel_futures=True)
            self.journal.close()
            if self.syslog is not None:
                log.removeHandler(self.syslog)
                self.syslog.close()

    async def _main(self, signals: bool) -> int:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        stale = engine_module.remove_stale(self.spool_dir)
        if stale:
            log.warning(
                f"removed {len(stale)} spool file(s) left in {self.spool_dir} by a filter "
                "that is no longer running"
            )
        host, port = self.settings.listen
        try:
            server = await self._loop.create_server(self._factory, host, port, reuse_address=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop the process "
                "holding it or choose another --listen"
            ) from exc
        self.port = int(server.sockets[0].getsockname()[1])
        if signals:
            self._loop.add_signal_handler(signal.SIGHUP, self.reload)
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(signum, self._stop.set)
        log.info(f"listening on {host}:{self.port}, relaying to {self.settings.relay[0]}")
        self.ready.set()
        await self._stop.wait()
        await self._drain(server)
        return 0

    async def _drain(self, server: asyncio.Server) -> None:
        server.close()
        if self.in_flight:
            log.info(f"finishing {len(self.in_flight)} message(s) in flight")
            await asyncio.wait(set(self.in_flight), timeout=self.settings.drain_seconds)
        # The replies of finished messages are on their way: give them a moment.
        await asyncio.sleep(0.05)
        for session in list(self.sessions):
            session.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=5)
