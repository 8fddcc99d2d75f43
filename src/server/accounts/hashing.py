"""Password hashing off the chat path: its own threads, a bounded queue, delayed starts.

scrypt at the default cost takes tens of milliseconds of CPU and releases the
GIL; run on the chat workers, a flood of wrong passwords once held pings of
logged-in users for 25 s. Here it has `--hash-threads` threads of its own, at
most `--hash-queue` logins waiting (more are answered `rate_limited`, so a
flood costs memory it cannot grow), and each job may start later than it was
submitted: that is how the login throttle delays an attempt without holding
a thread (a heap ordered by start time). The throttle's own calls, one per
account whose logins wait their turn (`throttle.py`), are `force`d past the
bound: their number is bounded by the connections, and a dropped one would
leave that account's logins waiting for ever.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("chat.server.hashing")


class HashExecutor:
    def __init__(
        self, threads: int, max_queued: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if threads < 1 or max_queued < 1:
            raise ValueError("a hash executor needs a thread and a queue slot")
        self._clock = clock
        self._max_queued = max_queued
        self._jobs: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._size = threads
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the hash threads (their owner, the server, stops and joins them)."""
        self._threads = [
            threading.Thread(target=self._work, name=f"hash-{i}") for i in range(self._size)
        ]
        for thread in self._threads:
            thread.start()

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)

    def submit(self, job: Callable[[], None], delay: float = 0.0, *, force: bool = False) -> bool:
        """Run `job` on a hash thread, not before `delay` seconds; False when the queue is
        full (unless `force`) or the executor is stopping."""
        with self._cond:
            if self._stopping or (len(self._jobs) >= self._max_queued and not force):
                return False
            heapq.heappush(self._jobs, (self._clock() + max(delay, 0.0), next(self._seq), job))
            self._cond.notify()
            return True

    def stop(self, timeout: float = 5.0) -> None:
        """Drop what has not started (the connections are closing), join the threads."""
        with self._cond:
            self._stopping = True
            self._jobs.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _next(self) -> Callable[[], None] | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if self._jobs:
                    wait = self._jobs[0][0] - self._clock()
                    if wait <= 0:
                        return heapq.heappop(self._jobs)[2]
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                job()
            except Exception:  # the job reports its own outcome; this is a bug
                log.exception("hash job failed")
