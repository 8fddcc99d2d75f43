"""A timer thread: calls a function once its time has come, unless it was cancelled first.

The loop has timers of its own, for the loop thread. This one serves the
other threads' waits that must end on time whatever the other side does:
a send whose `sent` waits for Redis is answered within a second, reached or
not (issue "1 of 6", item 6). Started by `start`, joined by `stop`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("chat.server")


class Deadlines:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="deadlines")
        self._thread.start()

    def stop(self) -> None:
        """Run nothing more; join the thread."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5.0)

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        """Call `fn` on the timer thread `delay` seconds from now (it must not block)."""
        with self._cond:
            if self._stopping:
                return
            heapq.heappush(self._heap, (self._clock() + delay, next(self._seq), fn))
            if self._heap[0][2] is fn:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._heap or self._heap[0][0] > self._clock()):
                    self._cond.wait(self._heap[0][0] - self._clock() if self._heap else None)
                if self._stopping:
                    return
                fn = heapq.heappop(self._heap)[2]
            try:
                fn()
            except Exception:  # one bad callback must not stop the others
                log.exception("a deadline's callback failed")
