"""One thread for the short reads a worker must not wait for: a cluster's account lookups.

A send naming an account this node has not heard of yet (registered a moment ago on
another node, the accounts channel still on its way) is held while Redis is asked
(core/fanout.py, `Accounts.confirm`); the ask is a round trip, and a worker that
waits on Redis stalls every connection of the node (one worker runs at a time). So
the ask runs here, in the order given. Its own thread, not a hash thread: there it
would wait behind the scrypt of a login storm. At most `max_queued` asks wait (each
connection has at most one: its mailbox holds while it waits); past that `submit`
says no and the caller answers from what it knows.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger("chat.server.lookups")

_JOIN = 5.0


class Lookups:
    def __init__(self, max_queued: int = 1024, name: str = "lookups") -> None:
        if max_queued < 1:
            raise ValueError("lookups need a queue slot")
        self._max_queued = max_queued
        self._name = name
        self._jobs: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (its owner, the server, stops and joins it)."""
        self._thread = threading.Thread(target=self._work, name=self._name)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> bool:
        """Run `job` on the thread, after those before it; False when the queue is full or
        the thread is stopping (`job` is then never run)."""
        with self._cond:
            if self._stopping or len(self._jobs) >= self._max_queued:
                return False
            self._jobs.append(job)
            self._cond.notify()
            return True

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)

    def stop(self) -> None:
        """Drop what has not started (the connections are closed), join the thread."""
        with self._cond:
            self._stopping = True
            self._jobs.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(_JOIN)
            if self._thread.is_alive():
                log.error("thread %s did not stop in time", self._name)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception:  # a job's bug costs only that job; the thread goes on
                log.exception("a lookup failed")
