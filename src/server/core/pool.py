"""The worker pool, and the per-connection mailbox that keeps each connection in order.

Workers take callables from one FIFO queue, the native dispatch queue of
libchatdispatch (it holds integers; the callables wait in a dict under the
numbers). Blocking in it releases the GIL. A connection's work is not queued
item by item: it goes into that connection's `Mailbox`, and the mailbox is
queued once while it has work. Only one worker runs a given mailbox at a
time, so every frame of one connection is handled in arrival order
(per-sender message order and the order of replies hold with any number of
threads), while different connections run in parallel.
"""

from __future__ import annotations

import itertools
import logging
import threading
from _thread import LockType
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from chat.server.core import native

log = logging.getLogger("chat.server.pool")

_STOP = 0  # the number that tells a worker to finish
_TICK = 64  # tasks a worker runs before it must call `end_tick` (hand its writes over)
_POP = 16  # tasks taken from the queue in one call


class WorkerPool:
    """Threads that run queued callables, in ticks.

    A worker runs tasks back to back while the queue has them (at most
    `_TICK`), then calls `end_tick`. The server sends the tick's writes
    there, so under load one `send()` carries the output of many tasks, and
    when idle a tick is a single task and nothing waits.
    """

    def __init__(
        self,
        threads: int,
        end_tick: Callable[[], None],
        name: str = "worker",
        active: int = 1,
    ) -> None:
        if threads < 1:
            raise ValueError("a pool needs at least one thread")
        self._end_tick = end_tick
        # One worker at a time runs a tick: its Python holds the GIL, and two workers at
        # once only trade it back and forth (measured on two cores: two active workers did
        # 0.5-0.8x the work of one, and letting the next tick start during the last one's
        # sends did no better; bench/README.md). A second core still serves the loop thread,
        # the hash and store threads, and the sends, which run in C without the GIL.
        self.active = min(threads, active)
        # One at a time is a plain lock: its release is one C call, where a Semaphore's is
        # Python (a Condition's notify under its own lock) and was a fifth of the workers'
        # samples at saturation (py-spy, C = 50; bench/README.md, "Core v3 (issue 18)").
        self._gate: threading.Semaphore | LockType = (
            threading.Lock() if self.active == 1 else threading.Semaphore(self.active)
        )
        self._queue = native.DispatchQueue()
        self._tasks: dict[int, Callable[[], None]] = {}  # number -> callable, until popped
        self._numbers = itertools.count(1)
        self._size = threads
        self._name = name
        self._threads: list[threading.Thread] = []

    @property
    def size(self) -> int:
        return self._size

    def start(self) -> None:
        """Start the workers (their owner, the server, stops and joins them)."""
        self._threads = [
            threading.Thread(target=self._work, name=f"{self._name}-{i}") for i in range(self._size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], None]) -> None:
        number = next(self._numbers)  # itertools.count is atomic under the GIL
        self._tasks[number] = fn
        self._queue.push(number)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish queued work, then join every worker."""
        for _ in self._threads:
            self._queue.push(_STOP)
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.error("worker %s did not stop in %.0fs", thread.name, timeout)

    def _work(self) -> None:
        batch = native.ffi.new("uint64_t[]", _POP)
        pop, tasks, gate = self._queue.pop, self._tasks, self._gate
        while True:
            with gate:  # one worker at a time (see __init__)
                ran = 0
                timeout = -1  # the first wait is as long as it takes; then what is there
                while ran < _TICK and (n := pop(batch, timeout)):
                    timeout = 0
                    for i in range(n):
                        number = batch[i]
                        if number == _STOP:
                            for j in range(i + 1, n):  # not ours: give them back, in order
                                self._queue.push(batch[j])
                            self._finish_tick()
                            return
                        try:
                            tasks.pop(number)()
                        except Exception:  # a bug in one task must not kill the worker
                            log.exception("worker task failed")
                        ran += 1
                self._finish_tick()

    def _finish_tick(self) -> None:
        try:
            self._end_tick()
        except Exception:
            log.exception("end of tick failed")


class Submitter(Protocol):
    """What a mailbox needs of a pool (tests run mailboxes inline through it)."""

    def submit(self, fn: Callable[[], None]) -> None: ...


#: A mailbox handler takes a batch and returns None when it consumed it all, or
#: how many items it consumed before it must wait: the rest (maybe none) is held
#: until `resume` brings what it waits for (a login being hashed).
Handler = Callable[[list[Any]], "int | None"]


class Mailbox:
    """A serial queue of work items for one connection, run on the pool.

    `post` returns at once; the handler is called by one worker at a time with
    every item posted since its last run, in order. A handler that must wait
    (a password being hashed, a message being made durable, a history read)
    consumes part of the batch: the rest stays at the front, and nothing runs
    until `resume` brings the awaited item, which then runs first. The result
    may come before the handler has even returned (another thread was quick):
    it is kept aside and runs first all the same. `size` (payload bytes) lets
    the loop stop reading a connection whose worker lags behind.
    """

    __slots__ = (
        "_early",
        "_handler",
        "_held",
        "_items",
        "_lock",
        "_owner",
        "_pool",
        "_scheduled",
        "size",
    )

    def __init__(self, pool: Submitter, handler: Handler, owner: Any = None) -> None:
        """`handler(owner, batch)` runs each batch (owner None: `handler(batch)`)."""
        self._pool = pool
        self._handler = handler if owner is None else partial(handler, owner)
        self._owner = owner
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._held = False
        self._early: list[Any] = []  # resumed while the handler that holds was still running
        self.size = 0  # bytes of the payloads waiting

    def __len__(self) -> int:
        return len(self._items)

    @property
    def held(self) -> bool:
        """Waiting for `resume` (a login being hashed, a store, a read)."""
        return self._held

    def post(self, items: list[Any], nbytes: int = 0) -> None:
        with self._lock:
            self._items.extend(items)
            self.size += nbytes
            if self._scheduled or self._held:
                return
            self._scheduled = True
        self._pool.submit(self._run)

    def resume(self, item: Any) -> None:
        """End a hold: `item` (the awaited result) runs first, then what waited."""
        with self._lock:
            if not self._held and self._scheduled:
                self._early.append(item)  # the handler is still running: see _run
                return
            self._items.appendleft(item)
            self._held = False
            if self._scheduled:
                return
            self._scheduled = True
        self._pool.submit(self._run)

    def _run(self) -> None:
        """One batch per task: a busy connection goes back in the queue behind the others."""
        with self._lock:
            batch = list(self._items)
            self._items.clear()
        # Sizes now: the handler may replace a payload it has parsed but not consumed.
        sizes = [len(item) if type(item) is bytes else 0 for item in batch]
        hold: int | None = None
        try:
            hold = self._handler(batch)
        except Exception:  # keep the mailbox alive; the bug is logged
            log.exception("mailbox handler failed")
        done = len(batch) if hold is None else hold
        with self._lock:
            self.size -= sum(sizes[:done])
            if hold is not None:
                self._items.extendleft(reversed(batch[done:]))
                if not self._early:
                    self._held = True
                    self._scheduled = False
                    return
                self._items.extendleft(reversed(self._early))
                self._early.clear()
            if not self._items:
                self._scheduled = False
                return
        self._pool.submit(self._run)
