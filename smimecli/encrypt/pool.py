"""The worker processes of a batch and their supervision.

:func:`run_pool` starts ``jobs`` processes, each running :class:`smimecli.encrypt.batch._Worker`
on the messages it is handed, and reports the results in input order. Each worker holds at
most :data:`_IN_FLIGHT` messages, so the parent always knows which message a dead worker was
at (see :func:`run_pool`).

Worker processes are forked (``fork`` on Linux, where it is cheap and safe here: the parent
holds no threads and no open store), else ``forkserver``/``spawn``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from smimecli.encrypt.batch import BatchSettings, MessageResult, _on_sigterm, _Worker
from smimecli.errors import ExitStatus, SmimeError
from smimecli.files import remove_dead_temporaries

__all__ = ["run_pool"]

_WORKER: _Worker | None = None


def _init_worker(settings: BatchSettings) -> None:
    global _WORKER
    # Ctrl-C reaches the whole process group: the parent decides and terminates the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _WORKER = _Worker(settings)


def _worker_main(conn: Any, settings: BatchSettings) -> None:
    """A worker process: (index, pair) in, (index, result) out, until None or EOF; a worker
    that cannot start sends (None, (status, message)) and ends."""
    try:
        _init_worker(settings)
    except SmimeError as exc:  # the rules, a store key or a certificate changed under us
        conn.send((None, (int(exc.status), exc.message)))
        os._exit(0)
    except Exception as exc:  # a bug: named, without a traceback in the batch's output
        conn.send((None, (int(ExitStatus.SOFTWARE), f"internal error: {exc!r}")))
        os._exit(0)
    assert _WORKER is not None
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break
        if task is None:
            break
        index, pair = task
        conn.send((index, _WORKER.run(pair)))
    os._exit(0)


# Messages handed to one worker at a time: one at work, one waiting in the pipe.
_IN_FLIGHT = 2


def _died(pair: tuple[Path, Path], exitcode: int | None) -> MessageResult:
    how = f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else "died"
    return MessageResult(
        str(pair[0]),
        None,
        "failed",
        int(ExitStatus.TEMPFAIL),
        f"the worker process encrypting this message {how} (out of memory?); "
        "nothing was written for it: retry later",
    )


def run_pool(
    pairs: Sequence[tuple[Path, Path]],
    settings: BatchSettings,
    jobs: int,
    handle: Callable[[MessageResult], None],
) -> None:
    """Encrypt ``pairs`` in ``jobs`` worker processes, reporting results in input order.

    Each worker holds at most :data:`_IN_FLIGHT` messages, so when one dies (the OOM
    killer, ``kill -9``) the parent knows which message it was at: that message fails
    with 75 (retry later), its temporary file is removed, the others it held go back in
    the queue, and a new worker takes its place.
    """
    pool = _Pool(pairs, settings, handle)
    try:
        pool.run(jobs)
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.close()


class _Pool:
    """The worker processes of one batch, and the messages each of them holds."""

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        settings: BatchSettings,
        handle: Callable[[MessageResult], None],
    ) -> None:
        self.pairs = pairs
        self.settings = settings
        self.handle = handle
        self.ctx = _context()
        self.queue: deque[int] = deque(range(len(pairs)))
        self.results: dict[int, MessageResult] = {}
        self.workers: dict[Any, tuple[Any, deque[int]]] = {}  # connection -> (process, held)
        self.next_out = 0

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=_worker_main, args=(child, self.settings), daemon=True)
        process.start()
        child.close()
        self.workers[parent] = (process, deque())

    def feed(self, conn: Any, up_to: int = _IN_FLIGHT) -> None:
        held = self.workers[conn][1]
        while self.queue and len(held) < up_to:
            index = self.queue.popleft()
            try:
                conn.send((index, self.pairs[index]))
            except OSError:  # the worker is gone: wait() buries it and hands its work on
                self.queue.appendleft(index)
                return
            held.append(index)

    def receive(self, conn: Any) -> bool:
        try:
            index, result = conn.recv()
        except (EOFError, OSError):
            return False
        if index is None:
            self.refuse_all(conn, *result)
            return False
        self.workers[conn][1].remove(index)
        self.results[index] = result
        return True

    def refuse_all(self, conn: Any, status: int, reason: str) -> None:
        """A worker could not start: every message it held or still waits fails with the
        reason (a new worker would fail the same way); nothing is written for them."""
        held = self.workers[conn][1]
        for index in [*held, *self.queue]:
            source = str(self.pairs[index][0])
            error = f"{reason}; nothing was written for it"
            self.results[index] = MessageResult(source, None, "failed", status, error)
        held.clear()
        self.queue.clear()

    def run(self, jobs: int) -> None:
        for _ in range(jobs):
            self.start()
        for up_to in range(1, _IN_FLIGHT + 1):  # one each first: a short batch spreads
            for conn in list(self.workers):
                self.feed(conn, up_to)
        while self.next_out < len(self.pairs):
            self.wait()
            while self.next_out in self.results:
                self.handle(self.results.pop(self.next_out))
                self.next_out += 1
        for conn in self.workers:
            with contextlib.suppress(OSError):
                conn.send(None)

    def wait(self) -> None:
        """Take the results that are ready; replace the workers that are gone."""
        from multiprocessing.connection import wait

        workers = self.workers
        sentinels = {process.sentinel: conn for conn, (process, _held) in workers.items()}
        for ready in wait([*workers, *sentinels]):
            conn = sentinels.get(ready, ready)
            if conn not in workers:
                continue
            if ready is conn and self.receive(conn):
                self.feed(conn)
                continue
            self.bury(conn)

    def bury(self, conn: Any) -> None:
        """The worker is gone: collect what it finished, then judge what it held."""
        while conn.poll() and self.receive(conn):
            pass
        process, held = self.workers.pop(conn)
        process.join()
        conn.close()
        if held:
            culprit = held.popleft()
            self.results[culprit] = _died(self.pairs[culprit], process.exitcode)
            target = self.pairs[culprit][1]
            remove_dead_temporaries(target.parent, process.pid, target.name)
            self.queue.extendleft(reversed(held))
        if self.queue:
            self.start()
            self.feed(next(reversed(self.workers)))

    def terminate(self) -> None:
        for process, _held in self.workers.values():
            process.terminate()  # SIGTERM: each busy worker removes its temporary file
        for process, _held in self.workers.values():
            process.join()
            remove_dead_temporaries(self.pairs[0][1].parent, process.pid)

    def close(self) -> None:
        for conn, (process, _held) in self.workers.items():
            process.join()
            conn.close()


def _context() -> Any:
    # Imported here, its only user: a small batch (one worker, in this process) never starts
    # a pool, and importing multiprocessing costs a few milliseconds of start-up.
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    for method in ("fork", "forkserver", "spawn"):
        if method in methods:
            return multiprocessing.get_context(method)
    return multiprocessing.get_context()  # pragma: no cover
