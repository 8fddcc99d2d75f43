"""The worker pool, and the per-connection mailbox that keeps each sender in order.

Workers take callables from one FIFO queue. A connection's frames are not
queued one by one: they go into that connection's `Mailbox`, and the mailbox
is queued once while it has work. Only one worker runs a given mailbox at a
time, so every frame of one connection is handled in arrival order (per-sender
message order holds with any number of threads), while different connections
run in parallel.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("chat.server.pool")

_STOP = object()


class WorkerPool:
    def __init__(self, threads: int, name: str = "worker") -> None:
        if threads < 1:
            raise ValueError("a pool needs at least one thread")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    def submit(self, fn: Callable[[], None]) -> None:
        self._queue.put(fn)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish queued work, then join every worker."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is _STOP:
                return
            try:
                fn()
            except Exception:  # a bug in one task must not kill the worker
                log.exception("worker task failed")


class Mailbox:
    """A serial queue of work items for one connection, run on the pool.

    `post` returns immediately; `handler(items)` is called by one worker at a
    time with every item posted since its last run, in order.
    """

    __slots__ = ("_handler", "_items", "_lock", "_pool", "_scheduled")

    def __init__(self, pool: WorkerPool, handler: Callable[[list[Any]], None]) -> None:
        self._pool = pool
        self._handler = handler
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def __len__(self) -> int:
        return len(self._items)

    def post(self, *items: Any) -> None:
        with self._lock:
            self._items.extend(items)
            if self._scheduled:
                return
            self._scheduled = True
        self._pool.submit(self._run)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._items:
                    self._scheduled = False
                    return
                batch = list(self._items)
                self._items.clear()
            try:
                self._handler(batch)
            except Exception:  # keep the mailbox alive; the bug is logged
                log.exception("mailbox handler failed")
