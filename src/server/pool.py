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
_TICK = 64  # tasks a worker runs before it must call `after_tick` (flush its writes)


class WorkerPool:
    """Threads that run queued callables, in ticks.

    A worker runs tasks back to back while its queue has them (at most
    `_TICK`), then calls `after_tick`. The server flushes sockets there, so
    under load one send() carries the output of many tasks, and when idle a
    tick is a single task and nothing waits.
    """

    def __init__(self, threads: int, name: str = "worker") -> None:
        if threads < 1:
            raise ValueError("a pool needs at least one thread")
        self.after_tick: Callable[[], None] = lambda: None
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
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            fn = get()
            for _ in range(_TICK):
                if fn is _STOP:
                    self._end_tick()
                    return
                try:
                    fn()
                except Exception:  # a bug in one task must not kill the worker
                    log.exception("worker task failed")
                try:
                    fn = get_nowait()
                except queue.Empty:
                    break
            else:
                self._queue.put(fn)  # the tick is full: this one starts the next
            self._end_tick()

    def _end_tick(self) -> None:
        try:
            self.after_tick()
        except Exception:
            log.exception("after_tick failed")


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
        """One batch per task: a busy connection goes back in the queue behind the others."""
        with self._lock:
            batch = list(self._items)
            self._items.clear()
        try:
            self._handler(batch)
        except Exception:  # keep the mailbox alive; the bug is logged
            log.exception("mailbox handler failed")
        with self._lock:
            if not self._items:
                self._scheduled = False
                return
        self._pool.submit(self._run)
