"""A timer thread: calls a function once its time has come, unless it was cancelled first.

The loop has timers of its own, for the loop thread. This one serves the
other threads' waits that must end on time whatever the other side does:
a send whose `sent` waits for Redis is answered within a second, reached or
not (issue "1 of 6", item 6). Started by `start`, joined by `stop`.

Nearly every such wait ends long before its deadline. A deadline given with
`settled` is dropped, uncalled, once that says so; the thread is never woken
to drop one (that would be the wake-up it saves): when it wakes for the next
deadline due, it drops every settled one at the front first, and sleeps until
the first that is not (with none left, for the longest delay asked, then until
told). With one delay for all (a node's sends), that is one wake-up per delay
instead of one per send: at 100 messages a second the thread took 40-49 us of
the node's core per message when woken for each, 2.9 us now (bench/threads.py;
bench/README.md, "Stop 27").
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable

log = logging.getLogger("chat.server")


class Deadlines:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Callable[[], None], Callable[[], bool] | None]] = []
        self._seq = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: When the thread wakes of itself (`inf`: only when told); `after` tells it only
        #: of a deadline due before that.
        self._planned = math.inf
        #: The longest delay asked: how long the thread sleeps on with nothing in the heap,
        #: so that a stream of deadlines settled at once does not wake it for each.
        self._quiet = 0.0
        #: Times the thread woke (for the tests and the bench: what `settled` saves).
        self.wakes = 0

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

    def after(
        self, delay: float, fn: Callable[[], None], settled: Callable[[], bool] | None = None
    ) -> None:
        """Call `fn` on the timer thread `delay` seconds from now (it must not block),
        unless `settled()` says True by then. `settled` runs under this timer's lock: it
        reads a flag and takes no lock (a stale False only means `fn` is called)."""
        with self._cond:
            if self._stopping:
                return
            due = self._clock() + delay
            heapq.heappush(self._heap, (due, next(self._seq), fn, settled))
            if delay > self._quiet:
                self._quiet = delay
            if due < self._planned:
                self._planned = due
                self._cond.notify()

    def _run(self) -> None:
        heap = self._heap
        idle = False  # woke after a quiet sleep to an empty heap: sleep until told
        while True:
            with self._cond:
                while True:
                    while heap and _settled(heap[0][3]):
                        heapq.heappop(heap)
                    now = self._clock()
                    if self._stopping or (heap and heap[0][0] <= now):
                        break
                    if heap:
                        self._planned = heap[0][0]
                    elif idle or not self._quiet:
                        self._planned = math.inf
                    else:
                        self._planned = now + self._quiet
                    self._cond.wait(None if self._planned == math.inf else self._planned - now)
                    self.wakes += 1
                    idle = not heap
                if self._stopping:
                    return
                fn = heapq.heappop(heap)[2]
            try:
                fn()
            except Exception:  # one bad callback must not stop the others
                log.exception("a deadline's callback failed")


def _settled(settled: Callable[[], bool] | None) -> bool:
    if settled is None:
        return False
    try:
        return settled()
    except Exception:  # a bug there: the deadline runs, the thread goes on
        log.exception("a deadline's `settled` failed")
        return False
