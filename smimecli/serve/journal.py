"""The per-message journal of ``smimecli serve``: one JSON line per message.

It says who got what and why (rule, outcome, certificate thumbprint, cipher, key
transport, the relay's reply), never the content; the subject only when asked for.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO


class Journal:
    """Appends records to a file (reopened on SIGHUP, for log rotation) or to stderr."""

    def __init__(self, target: str | None, *, subject: bool = False) -> None:
        self.target = target
        self.subject = subject
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
        if self._stream is None:
            return
        if not self.subject:
            record.pop("subject", None)
        record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), **record}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
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
