"""The message store at work: one writer thread with group commit, reader threads, ids.

Nothing on the chat path waits for the disk. Workers hand messages over
(`keep`, a deque append) and go on; the writer thread seals and inserts them
in batches, one transaction and one fsync each. A batch is committed at once
when someone waits for it (a `sent` that lists `queued` names, which the
contract makes durable; a history read or an offline catch-up, which must
see every message handed over before it), otherwise within `flush_delay`
(0.2 s), so every message is on disk within a second of its `sent`.

Reads run on reader threads with connections of their own (SQLite's WAL
lets them read while the writer writes) after a barrier: the writer has
committed everything handed over before the read was asked for. Every reply
is a callback: the dispatcher resumes the waiting connection's mailbox with
it, so nothing in a worker ever blocks on SQLite.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .msgstore import Kept, MessageStore, Page, Unreadable, is_damage

log = logging.getLogger("chat.server.store")

#: Ids reserved on disk ahead of those given out; a restart skips what is left of it.
ID_BLOCK = 1 << 20
FLUSH_DELAY = 0.2  # seconds a message may wait for a batch (the contract allows 1)
MAX_BATCH = 2000  # jobs per transaction
MAX_BACKLOG = 100_000  # jobs waiting for the writer before new messages are not kept
PURGE_EVERY = 3600.0  # seconds between retention passes
OFFLINE_PAGE = 200  # offline messages per catch-up page
OFFLINE_PAGE_BYTES = 256 * 1024  # and sealed bytes per page

Stored = Callable[[bool], None]
#: What a read answers: a page, Unreadable (the store failed: the client is told), or
#: None (the readers are saturated).
Reply = Callable[[Page | Unreadable | None], None]


class Ids(Protocol):
    """Where message ids come from (`MessageIds`, or a cluster's `RedisIds`)."""

    def take(self, count: int) -> int: ...

    def peek(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _Put:
    kept: Sequence[Kept]
    on_stored: Stored | None


@dataclass(frozen=True, slots=True)
class _Ack:
    user: str
    upto: int


@dataclass(frozen=True, slots=True)
class _Reserve:
    ceiling: int
    on_stored: Stored


_Job = _Put | _Ack | _Reserve


class MessageIds:
    """`msg.id` for the whole server: unique, increasing, never going back across restarts.

    Ids are given from a block whose end (the ceiling) is on disk before any
    id of it is given out; the next block is asked for when half of this one
    is gone, so the writer has half a block of messages' time to store it.
    A restart starts at the stored ceiling. Used under the hub lock, so ids
    rise in the order messages are routed; it has its own lock all the same.
    """

    def __init__(self, first: int, ceiling: int, reserve: Callable[[int], None]) -> None:
        self._next = first
        self._ceiling = ceiling  # on disk: every id below it may be given
        self._asked = ceiling
        self._reserve = reserve
        self._cond = threading.Condition(threading.Lock())

    def take(self, count: int) -> int:
        """The first of `count` consecutive new ids."""
        with self._cond:
            start = self._next
            end = self._next = start + count
            ask = None
            if end + ID_BLOCK // 2 > self._asked:
                ask = self._asked = max(self._asked, end) + ID_BLOCK
            ready = end <= self._ceiling
        if ask is not None:
            self._reserve(ask)  # outside the lock: a refusal calls `reserved` at once
        if not ready:
            with self._cond:
                while end > self._ceiling:  # only if the writer is half a block behind
                    self._cond.wait()
        return start

    def peek(self) -> int:
        """The next id (for the log)."""
        with self._cond:
            return self._next

    def reserved(self, ceiling: int) -> None:
        """The writer stored `ceiling` (or gave up trying: see `HistoryService._reserved`)."""
        with self._cond:
            self._ceiling = max(self._ceiling, ceiling)
            self._cond.notify_all()


class HistoryService:
    """The message store behind its threads; what the dispatcher calls `keeper`."""

    keeps = True

    def __init__(
        self,
        store: MessageStore,
        offline_max: int,
        readers: int = 1,
        reader_queue: int = 256,
        flush_delay: float = FLUSH_DELAY,
        clock: Callable[[], float] = time.time,
        ids: Ids | None = None,
        floor: int = 1,
        on_reserve: Callable[[int], None] | None = None,
    ) -> None:
        """`store` is the SQLite `MessageStore`, or a cluster's Redis store with the same
        methods; `ids` comes with a cluster (ids from Redis), else blocks of the store.

        Without `ids`: no id below `floor` is given (the users file's id mark,
        `msgstore.start_floor`), and `on_reserve(ceiling)` is called once each
        block's ceiling is stored, before any id of it is given out (it copies
        the ceiling into the users file). At start its error is the caller's.
        """
        self._store = store
        self._on_reserve = on_reserve
        self._errors = store.errors
        self._offline_max = offline_max
        self._retention = store.retention  # seconds; 0 keeps everything
        self._flush_delay = flush_delay
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._jobs: deque[tuple[int, float, _Job]] = deque()
        self._seq = 0  # jobs handed over so far
        self._committed = 0  # every job up to this one is done (stored, or failed and logged)
        self._urgent = 0  # a job up to this one is waited for: commit without delay
        self._waiters: list[tuple[int, int, Callable[[], None]]] = []
        self._waiter_ids = itertools.count()
        self._stopping = False
        self._dropped = 0
        self._next_purge = time.monotonic() + PURGE_EVERY
        if self._retention > 0:
            self._purge()  # before serving: nothing past its time is ever shown
        if ids is None:
            own = store.id_floor()
            if 1 < own < floor:
                log.warning(
                    "message store: its ids stop below %d but the users file's id mark says "
                    "ids below %d may have been given (the store was restored from an older "
                    "copy?): ids go on from %d",
                    own,
                    floor,
                    floor,
                )
            floor = max(own, floor)
            ceiling = floor + ID_BLOCK
            with store.transaction():  # before any id is given: a restart starts above them
                store.reserve_ids(ceiling)
            if on_reserve is not None:
                on_reserve(ceiling)
            ids = MessageIds(floor, ceiling, self._ask_reserve)
        self.ids: Ids = ids
        self._reads: queue.Queue[Callable[[MessageStore], None] | None] = queue.Queue(reader_queue)
        self._readers = [
            threading.Thread(
                target=self._read_loop,
                args=(store.reader(),),
                daemon=True,
                name=f"history-reader-{i}",
            )
            for i in range(readers)
        ]
        self._writer = threading.Thread(target=self._write_loop, name="history-writer", daemon=True)
        self._writer.start()
        for thread in self._readers:
            thread.start()

    # ---- any thread --------------------------------------------------------
    @property
    def enqueued(self) -> int:
        """A barrier: everything handed over so far."""
        return self._seq

    def keep(self, kept: Sequence[Kept], on_stored: Stored | None = None) -> None:
        """Store messages; `on_stored(ok)` once they are on disk for good (fsync'd).

        Cheap (a deque append), so the fan-out can call it under the hub lock:
        that is what lets a login's catch-up see every message queued for it.
        """
        self._put(_Put(kept, on_stored), urgent=on_stored is not None)

    def ack(self, user: str, upto: int) -> None:
        self._put(_Ack(user, upto), urgent=False)

    def after(self, seq: int, fn: Callable[[], None]) -> None:
        """Call `fn` (on the writer thread, or here) once every job up to `seq` is done."""
        with self._cond:
            if seq > self._committed and not self._stopping:
                heapq.heappush(self._waiters, (seq, next(self._waiter_ids), fn))
                if seq > self._urgent:
                    self._urgent = seq
                    self._cond.notify()
                return
        fn()

    def read_page(self, user: str, peer: str, before: int | None, limit: int, reply: Reply) -> None:
        """A history page of what was handed over until now; `reply(None)` when too busy."""
        self._read(
            lambda store: store.page(user, peer, before, limit),
            reply,
            f"the history of {user} with {peer}",
        )

    def read_offline(self, user: str, after: int, reply: Reply) -> None:
        """The next page of `user`'s offline queue above id `after`."""
        self._read(
            lambda store: store.offline(user, after, OFFLINE_PAGE, OFFLINE_PAGE_BYTES),
            reply,
            f"the offline queue of {user}",
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Store what was handed over, answer every waiter, close the files."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._writer.join(timeout)
        for _ in self._readers:
            try:
                self._reads.put(None, timeout=timeout)
            except queue.Full:
                break
        for thread in self._readers:
            thread.join(timeout)
        self._store.close()

    # ---- hand-over -------------------------------------------------------------
    def _put(self, job: _Job, urgent: bool) -> None:
        with self._cond:
            refused = self._stopping or len(self._jobs) >= MAX_BACKLOG
            if refused:
                self._dropped += 1
                dropped = self._dropped
            else:
                self._seq += 1
                self._jobs.append((self._seq, time.monotonic(), job))
                if urgent:
                    self._urgent = self._seq
                    self._cond.notify()
                elif len(self._jobs) == 1 or len(self._jobs) >= MAX_BATCH:
                    self._cond.notify()
        if refused:  # told outside the lock: the callback may take other locks
            self._refuse(job, dropped)

    def _refuse(self, job: _Job, dropped: int) -> None:
        """The writer cannot keep up (or has stopped): this job is not stored."""
        if dropped == 1 or dropped % 10_000 == 0:
            log.error(
                "message store: %d jobs not stored (the writer is behind or stopped)", dropped
            )
        if isinstance(job, _Put | _Reserve) and job.on_stored is not None:
            job.on_stored(False)

    def _ask_reserve(self, ceiling: int) -> None:
        self._put(_Reserve(ceiling, lambda ok: self._reserved(ceiling, ok)), urgent=True)

    def _reserved(self, ceiling: int, ok: bool) -> None:
        if not ok:
            # Chat must go on: ids keep rising, but a restart may give some again.
            log.error(
                "message store: id ceiling %d not stored; ids may repeat after a restart", ceiling
            )
        elif self._on_reserve is not None:
            try:
                self._on_reserve(ceiling)
            except Exception as exc:  # the users file could not be written: said, not fatal
                log.error(
                    "message store: id ceiling %d not copied to the users file (%s); ids may "
                    "repeat if the message store is lost",
                    ceiling,
                    exc,
                )
        self.ids.reserved(ceiling)

    def _read(self, query: Callable[[MessageStore], Page], reply: Reply, what: str) -> None:
        def job(store: MessageStore) -> None:
            answer: Page | Unreadable
            try:
                answer = query(store)
            except self._errors as exc:
                # Never an empty page: the client is told, the operator too (loudly).
                damaged = " (the file is damaged: see docs/operations.md)" if is_damage(exc) else ""
                log.error(
                    "message store: cannot read %s: %s%s; the client gets an error, "
                    "nothing is removed",
                    what,
                    exc,
                    damaged,
                )
                answer = Unreadable(str(exc))
            except Exception as exc:  # a bug: the client still gets an answer
                log.exception("message store: reading %s failed", what)
                answer = Unreadable(str(exc))
            reply(answer)

        def submit() -> None:
            try:
                self._reads.put_nowait(job)
            except queue.Full:
                reply(None)

        self.after(self._seq, submit)

    # ---- writer thread ---------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            batch, stop = self._take()
            if batch:
                self._commit(batch)
            elif stop:
                break
            if self._retention > 0 and time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + PURGE_EVERY
                self._purge()

    def _take(self) -> tuple[list[tuple[int, float, _Job]], bool]:
        """The next batch (empty when a retention pass is due), and whether to stop after it.

        A batch waits for company until its oldest job is `flush_delay` old,
        unless someone waits for it (`_urgent`) or it is full.
        """
        with self._cond:
            while not self._jobs and not self._stopping:
                due = self._next_purge - time.monotonic() if self._retention > 0 else None
                if due is not None and due <= 0:
                    return [], False
                self._cond.wait(due)
            if self._jobs and not self._stopping:
                deadline = self._jobs[0][1] + self._flush_delay
                while self._urgent <= self._committed and len(self._jobs) < MAX_BATCH:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stopping:
                        break
                    self._cond.wait(left)
            jobs = self._jobs
            batch = [jobs.popleft() for _ in range(min(len(jobs), MAX_BATCH))]
            return batch, self._stopping and not self._jobs

    def _commit(self, batch: list[tuple[int, float, _Job]]) -> None:
        store, ok = self._store, True
        try:
            with store.transaction():
                # Every message of the batch in one put, so each conversation's messages
                # are sealed together. Acks go after: they name messages already handed
                # over (stored before they were delivered), in this batch or an earlier one.
                kept = [k for _, _, job in batch if type(job) is _Put for k in job.kept]
                grown = store.put(kept) if kept else {}
                for _, _, job in batch:
                    match job:
                        case _Ack(user, upto):
                            store.ack(store.owner(user), upto)
                        case _Reserve(ceiling):
                            store.reserve_ids(ceiling)
                for owner, name in grown.items():
                    self._enforce_quota(owner, name)
        except (*self._errors, ValueError) as exc:
            ok = False
            log.error("message store: a batch of %d jobs was not stored: %s", len(batch), exc)
        for _, _, job in batch:
            if isinstance(job, _Put | _Reserve) and job.on_stored is not None:
                job.on_stored(ok)
        with self._cond:
            self._committed = batch[-1][0]
            due = []
            while self._waiters and self._waiters[0][0] <= self._committed:
                due.append(heapq.heappop(self._waiters)[2])
            if self._stopping and not self._jobs:
                due += [w[2] for w in self._waiters]
                self._waiters.clear()
        for fn in due:
            fn()

    def _enforce_quota(self, owner: bytes, name: str) -> None:
        dropped = self._store.trim_queue(owner, self._offline_max)
        if dropped:
            log.warning(
                "offline queue of %s is over --offline-max %d: dropped the %d oldest",
                name,
                self._offline_max,
                dropped,
            )

    def _purge(self) -> None:
        try:
            removed = self._store.purge_before(self._clock() - self._retention)
        except self._errors as exc:
            log.error("message store: retention pass failed: %s", exc)
            return
        if removed:
            log.info(
                "message store: removed %d messages older than %g days",
                removed,
                self._retention / 86400,
            )

    # ---- reader threads ------------------------------------------------------
    def _read_loop(self, store: MessageStore) -> None:
        try:
            while (job := self._reads.get()) is not None:
                try:
                    job(store)
                except Exception:  # the reply reports its own outcome; this is a bug
                    log.exception("history read failed")
        finally:
            store.close()


class NoHistory:
    """`--no-history`: no store. Nothing is kept or queued; history pages are empty.

    Ids still never go back while the process runs; across restarts nothing
    is kept to compare them with.
    """

    keeps = False
    enqueued = 0

    def __init__(self) -> None:
        self.ids = MessageIds(1, 1 << 62, lambda ceiling: None)

    def keep(self, kept: Sequence[Kept], on_stored: Stored | None = None) -> None:
        if on_stored is not None:
            on_stored(False)

    def ack(self, user: str, upto: int) -> None:
        pass

    def read_page(self, user: str, peer: str, before: int | None, limit: int, reply: Reply) -> None:
        reply(Page((), False))

    def read_offline(self, user: str, after: int, reply: Reply) -> None:
        reply(Page((), False))

    def stop(self) -> None:
        pass
