"""A misbehaving relay for the serve tests: a socket server that answers from a script."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# What a relay answers to each step when the script says nothing else.
DEFAULTS = {
    "greeting": "220 relay.test ESMTP",
    "EHLO": "250-relay.test\r\n250 8BITMIME",
    "MAIL": "250 2.1.0 Ok",
    "RCPT": "250 2.1.5 Ok",
    "RSET": "250 2.0.0 Ok",
    "DATA": "354 End data with <CR><LF>.<CR><LF>",
    "END": "250 2.0.0 Ok: queued",
    "QUIT": "221 2.0.0 Bye",
}
HANG = "hang"  # say nothing, keep the connection open
CLOSE = "close"  # close the connection instead of answering


@dataclass
class ScriptedRelay:
    """Answers each step from ``script`` (a list: one answer per use, the last repeats)."""

    script: dict[str, list[str]] = field(default_factory=dict)
    messages: list[bytes] = field(default_factory=list)
    port: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def answer(self, step: str) -> str:
        answers = self.script.get(step)
        if not answers:
            return DEFAULTS[step]
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def serve(self, listener: socket.socket) -> None:
        listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self.talk, args=(conn,), daemon=True).start()

    def say(self, conn: socket.socket, step: str) -> str | None:
        """Answer ``step``: the answer, or None when the script ends the conversation."""
        text = self.answer(step)
        if text == HANG:
            self.stop.wait(60)
            return None
        if text == CLOSE:
            return None
        conn.sendall(text.encode() + b"\r\n")
        return text

    def talk(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            if not self.say(conn, "greeting"):
                return
            while line := reader.readline():
                verb = line[:4].decode("ascii", "replace").upper().strip()
                verb = "EHLO" if verb == "HELO" else verb
                if verb not in DEFAULTS:
                    conn.sendall(b"502 5.5.2 unknown\r\n")
                    continue
                said = self.say(conn, verb)
                if said is None or verb == "QUIT":
                    return
                if verb == "DATA" and said.startswith("354"):
                    body = b""
                    while (part := reader.readline()) and part != b".\r\n":
                        body += part
                    self.messages.append(body)
                    if self.say(conn, "END") is None:
                        return


@contextmanager
def scripted_relay(**script: list[str]) -> Iterator[ScriptedRelay]:
    relay = ScriptedRelay({k: list(v) for k, v in script.items()})
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        relay.port = int(listener.getsockname()[1])
        thread = threading.Thread(target=relay.serve, args=(listener,), daemon=True)
        thread.start()
        try:
            yield relay
        finally:
            relay.stop.set()
            thread.join(5)
