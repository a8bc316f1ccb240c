"""The per-message journal of ``smimecli serve``: one JSON line per message.

It says who got what and why (rule, outcome, certificate thumbprint, cipher, key
transport, the relay's reply), never the content; the subject only when asked for.
With ``--syslog`` the same records (and the daemon's error lines) also go to the local
syslog socket, tagged ``smimecli-serve``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

SYSLOG_SOCKET = "/dev/log"
SYSLOG_TAG = "smimecli-serve"


class _SysLog(logging.handlers.SysLogHandler):
    """A syslog handler that never prints a traceback: syslog must never stop the mail."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802
        pass


def open_syslog(facility: str, socket_path: str = SYSLOG_SOCKET) -> logging.Handler:
    """A handler sending to the local syslog socket; ConfigError when there is none."""
    from smimecli.errors import ConfigError, UsageError

    code = logging.handlers.SysLogHandler.facility_names.get(facility)
    if code is None:
        names = ", ".join(sorted(logging.handlers.SysLogHandler.facility_names))
        raise UsageError(f"--syslog-facility {facility!r}: choose one of {names}")
    if not os.path.exists(socket_path):
        raise ConfigError(
            f"no syslog socket at {socket_path}: start rsyslog or journald, or drop --syslog"
        )
    try:
        handler = _SysLog(address=socket_path, facility=code)
    except OSError as exc:
        raise ConfigError(
            f"cannot connect to the syslog socket {socket_path}: {exc.strerror or exc}; "
            "start rsyslog or journald, or drop --syslog"
        ) from exc
    handler.ident = f"{SYSLOG_TAG}[{os.getpid()}]: "
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


class Journal:
    """Appends records to a file (reopened on SIGHUP, for log rotation) or to stderr."""

    def __init__(
        self, target: str | None, *, subject: bool = False, syslog: logging.Handler | None = None
    ) -> None:
        self.target = target
        self.subject = subject
        self.syslog = syslog
        self._lock = threading.Lock()
        self._stream: TextIO | None = None
        self.reopen()

    def reopen(self) -> None:
        """(Re)open the journal file; the old stream is closed."""
        with self._lock:
            old = self._stream
            self._stream = self._open()
            if old is not None and old is not sys.stderr:
                old.close()

    def _open(self) -> TextIO | None:
        if self.target is None:
            return None
        if self.target == "-":
            return sys.stderr
        path = Path(self.target)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            from smimecli.files import output_error

            raise output_error(path, exc) from exc
        return open(fd, "a", encoding="utf-8", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        """Write one record (``subject`` is dropped unless --journal-subject)."""
        if self._stream is None and self.syslog is None:
            return
        if not self.subject:
            record.pop("subject", None)
        record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), **record}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        if self.syslog is not None:
            entry = logging.LogRecord(SYSLOG_TAG, logging.INFO, __file__, 0, line, None, None)
            self.syslog.handle(entry)
        if self._stream is None:
            return
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass  # the journal must never stop the mail

    def close(self) -> None:
        with self._lock:
            if self._stream is not None and self._stream is not sys.stderr:
                self._stream.close()
            self._stream = None
