"""A message store at work: one writer thread with group commit, reader threads, ids.

`StoreService` implements the core's `Store` (store/seam.py) over a `Backend`:
the SQLite file of a server alone, or Redis for a cluster. Nothing on the chat
path waits for it. Workers hand messages over (`keep`, a deque append) and go
on; the writer thread puts them into the backend in batches, one transaction
(one fsync, or one Redis pipeline) each. A batch is committed at once when
someone waits for it (a `sent` that lists `queued` names, which the contract
makes durable; a read, which must see every message handed over before it;
an `offline_ack`), otherwise within `flush_delay` (0.2 s), so every message is
stored within a second of its `sent`.

Reads run on reader threads with backends of their own, after a barrier: the
writer has committed everything handed over before the read was asked for.
Every read is answered exactly once, with a page, None (too busy) or
`ReadFailed` (the backend could not read): a connection waiting for it is
never left held.

No thread of it dies: a batch or a read that meets an unexpected exception is
logged once with its traceback, answered as failed, and the thread goes on
(issue "1 of 6": a writer that died on one frame stopped every later `sent`).
Threads start in `start()` and are joined by `stop()`, never left running.
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
from concurrent.futures import Future

import msgspec

from chat.server.core.rooms import Room
from chat.server.store.seam import Backend, ReadFailed, Receipt, Reply
from chat.server.store.sqlite import Kept, MessageStore, Page, is_damage
from chat.shared.messages import Msg, Recipients

log = logging.getLogger("chat.server.store")

#: Ids reserved on disk ahead of those given out; a restart skips what is left of it.
ID_BLOCK = 1 << 20
FLUSH_DELAY = 0.2  # seconds a message may wait for a batch (the contract allows 1)
MAX_BATCH = 2000  # jobs per transaction
MAX_BACKLOG = 100_000  # jobs waiting for the writer before new messages are not kept
PURGE_EVERY = 3600.0  # seconds between retention passes
OFFLINE_PAGE = 200  # offline messages per catch-up page
OFFLINE_PAGE_BYTES = 256 * 1024  # and sealed bytes per page
_JOIN_TIMEOUT = 10.0


# The writer's jobs: frozen msgspec Structs, made on the send path (under the hub lock),
# where a frozen dataclass's __init__ costs one `object.__setattr__` per field.
class _Put(msgspec.Struct, frozen=True):
    kept: Kept
    receipt: Receipt | None


class _Ack(msgspec.Struct, frozen=True):
    user: str
    upto: int


class _Reserve(msgspec.Struct, frozen=True):
    ceiling: int
    then: Callable[[bool], None]


class _Room(msgspec.Struct, frozen=True):
    folded: str
    room: Room | None  # a copy made at hand-over; None: deleted (with its history)
    name: str


class _Marker(msgspec.Struct, frozen=True):
    user: str
    peer: str
    upto: int


class _DropUser(msgspec.Struct, frozen=True):
    user: str
    at: float  # when: the name's private history for a new account starts after it


_Job = _Put | _Ack | _Reserve | _Room | _Marker | _DropUser

#: The cap of each unread count of a `markers` frame (v1.2 section 3).
UNREAD_CAP = 1000


class MessageIds:
    """`msg.id` of a server alone: unique, increasing, never going back across restarts.

    Ids are given from a block whose end (the ceiling) is stored before any id
    of it is given out; the next block is asked for when half of this one is
    gone, so the writer has half a block of messages' time to store it. A
    restart starts at the stored ceiling. `take` never waits: in the one case
    where the writer is half a block (half a million messages) behind, it
    answers None and the send is refused for now.
    """

    def __init__(self, first: int, ceiling: int, reserve: Callable[[int], None]) -> None:
        self._next = first
        self._ceiling = ceiling  # stored: every id below it may be given
        self._asked = ceiling
        self._reserve = reserve
        self._lock = threading.Lock()

    def take(self, count: int) -> int | None:
        with self._lock:
            start, end = self._next, self._next + count
            if end > self._ceiling:
                return None
            self._next = end
            ask = None
            if end + ID_BLOCK // 2 > self._asked:
                ask = self._asked = max(self._asked, end) + ID_BLOCK
        if ask is not None:
            self._reserve(ask)  # outside the lock: a refusal calls `reserved` at once
        return start

    def peek(self) -> int:
        with self._lock:
            return self._next

    @property
    def ahead(self) -> bool:
        """Whether every block asked for is stored: the ids in hand last until the next
        ask (for a test, or a metric, to tell a writer that keeps up)."""
        with self._lock:
            return self._ceiling >= self._asked

    def reserved(self, ceiling: int) -> None:
        """The writer stored `ceiling` (or gave up trying: see `StoreService._reserved`)."""
        with self._lock:
            self._ceiling = max(self._ceiling, ceiling)


class StoreService:
    """A backend behind its threads: the core's `Store` (store/seam.py)."""

    keeps = True

    def __init__(
        self,
        backend: Backend,
        offline_max: int,
        readers: int = 1,
        reader_queue: int = 256,
        flush_delay: float = FLUSH_DELAY,
        clock: Callable[[], float] = time.time,
        ids: object | None = None,
        floor: int = 1,
        on_reserve: Callable[[int], None] | None = None,
    ) -> None:
        """`ids` comes with a cluster (ids from Redis); a server alone takes blocks of its
        own backend (which must then be the SQLite `MessageStore`).

        Without `ids`: no id below `floor` is given (the users file's id mark,
        `store.sqlite.start_floor`), and `on_reserve(ceiling)` is called once each
        block's ceiling is stored, before any id of it is given out (it copies the
        ceiling into the users file). At start its error is the caller's.
        """
        self._backend = backend
        self._on_reserve = on_reserve
        self._errors = backend.errors
        self._offline_max = offline_max
        self._retention = backend.retention  # seconds; 0 keeps everything
        self._flush_delay = flush_delay
        self._clock = clock
        #: `_put` takes the lock itself (a C context manager; `Condition.__enter__` is a
        #: Python call on every message).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._jobs: deque[tuple[int, float, _Job]] = deque()
        self._seq = 0  # jobs handed over so far
        self._committed = 0  # every job up to this one is done (stored, or failed and logged)
        self._urgent = 0  # a job up to this one is waited for: commit without delay
        self._waiters: list[tuple[int, int, Callable[[], None]]] = []
        self._waiter_ids = itertools.count()
        self._stopping = False
        self._dropped = 0
        self._next_purge = time.monotonic() + PURGE_EVERY
        if ids is None:
            assert isinstance(backend, MessageStore)
            own = backend.id_floor()
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
            with backend.transaction():  # before any id is given: a restart starts above
                backend.reserve_ids(ceiling)
            if on_reserve is not None:
                on_reserve(ceiling)
            ids = MessageIds(floor, ceiling, self._ask_reserve)
        self.ids = ids
        self._reads: queue.Queue[Callable[[Backend], None] | None] = queue.Queue(reader_queue)
        #: Told how long each commit took, in seconds, on the writer thread (the metrics'
        #: histogram, ops/metrics.py); None: not measured.
        self.on_commit: Callable[[float], None] | None = None
        self._reader_count = readers
        self._threads: list[threading.Thread] = []

    # ---- lifetime ------------------------------------------------------------------
    def start(self) -> None:
        if self._retention > 0:
            self._purge()  # before serving: nothing past its time is ever shown
        self._threads = [threading.Thread(target=self._write_loop, name="store-writer")]
        self._threads += [
            threading.Thread(
                target=self._read_loop, args=(self._backend.reader(),), name=f"store-reader-{i}"
            )
            for i in range(self._reader_count)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Store what was handed over, answer every waiter and reader, close the backend."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        readers = self._threads[1:]
        if self._threads:
            self._threads[0].join(_JOIN_TIMEOUT)
        for _ in readers:
            try:
                self._reads.put(None, timeout=_JOIN_TIMEOUT)
            except queue.Full:
                break
        for thread in readers:
            thread.join(_JOIN_TIMEOUT)
        for thread in self._threads:
            if thread.is_alive():
                log.error("message store: thread %s did not stop in time", thread.name)
        self._backend.close()

    # ---- any thread --------------------------------------------------------------------
    @property
    def enqueued(self) -> int:
        """A barrier: everything handed over so far."""
        return self._seq

    def keep(self, kept: Kept, durable: bool = False) -> Receipt | None:
        receipt: Receipt | None = Future() if durable else None
        self._put(_Put(kept, receipt), urgent=durable)
        return receipt

    def stamp(
        self,
        sender: str,
        to: Recipients,
        texts: Sequence[str],
        now: float,
        keep: tuple[tuple[str, ...], tuple[str, ...]] | None,
        durable: bool,
    ) -> tuple[tuple[Msg, ...] | None, Receipt | None]:
        first = self.ids.take(len(texts))  # type: ignore[attr-defined]
        if first is None:
            return None, None
        if len(texts) == 1:
            msgs: tuple[Msg, ...] = (Msg(first, sender, to, texts[0], now),)
        else:
            msgs = tuple(Msg(first + i, sender, to, text, now) for i, text in enumerate(texts))
        if keep is None:
            return msgs, None
        return msgs, self.keep(Kept(msgs, keep[0], keep[1]), durable)

    # ---- rooms, markers (v1.2) ----------------------------------------------------------
    def load_rooms(self) -> list[Room]:
        """Every room, at start (before the threads run). A room's record is saved when
        the room changes, not at each message: its `last` is the newest id of its stored
        conversation."""
        state = getattr(self._backend, "state", None)
        if state is None:
            return []
        rooms = state.load_rooms()
        newest = getattr(self._backend, "newest", None)  # the SQLite backend's
        if newest is not None:
            for room in rooms:
                room.last = max(room.last, newest(self._backend.room(room.name)))  # type: ignore[attr-defined]
        return rooms

    def save_room(self, folded: str, room: Room | None, name: str) -> None:
        """A room's record as it is now (a copy: the caller goes on changing it), or its
        removal with its history (None)."""
        copy = None if room is None else _copy_room(room)
        self._put(_Room(folded, copy, name), urgent=False)

    def set_marker(self, user: str, peer: str, upto: int) -> None:
        self._put(_Marker(user, peer, upto), urgent=False)

    def drop_user(self, user: str) -> int:
        """A deleted account: its offline queue, markers and contacts go; durable soon."""
        return self._put(_DropUser(user, time.time()), urgent=True)

    def read_markers(self, user: str, rooms: list[str], reply: Reply) -> None:
        """The `markers` of a login: every conversation of `user` (its rooms, "*", the
        people it wrote with, every marker), each with the marker, the newest id and the
        unread count; newest first (v1.2 section 3). All of them, not only the 1000 the
        frame carries: the hub's memory of markers is loaded from these rows, and a marker
        it did not know could be moved back. A room `user` is no longer in is left out
        (history is for members). Replies a `Page` whose `messages` are (peer, upto,
        last, unread) tuples."""

        def query(backend: Backend) -> Page:
            state = backend.state  # type: ignore[attr-defined]
            marks: dict[str, int] = state.markers(user)
            peers = dict.fromkeys(["*", *rooms, *state.partners(user), *marks])
            member = set(rooms)
            rows = []
            for peer in peers:
                if peer.startswith("#") and peer not in member:
                    continue
                upto = marks.get(peer, 0)
                last, unread = backend.unread(user, peer, upto, UNREAD_CAP)  # type: ignore[attr-defined]
                if last or peer in marks:
                    rows.append((peer, upto, last, unread))
            rows.sort(key=lambda r: r[2], reverse=True)
            return Page(tuple(rows), False)  # type: ignore[arg-type]

        self._read(query, reply, f"the read markers of {user}")

    def ack(self, user: str, upto: int) -> int:
        # Urgent: a client that acknowledges, leaves and logs in at once on another node
        # must not get the messages again (issue "1 of 6", item 7).
        return self._put(_Ack(user, upto), urgent=True)

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
        self._read(
            lambda backend: backend.page(user, peer, before, limit),
            reply,
            f"the history of {user} with {peer}",
        )

    def read_offline(self, user: str, after: int, reply: Reply) -> None:
        self._read(
            lambda backend: backend.offline(user, after, OFFLINE_PAGE, OFFLINE_PAGE_BYTES),
            reply,
            f"the offline queue of {user}",
        )

    # ---- hand-over -----------------------------------------------------------------------
    def _put(self, job: _Job, urgent: bool) -> int:
        with self._lock:  # the condition's lock: notify() below is allowed
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
            seq = self._seq
        if refused:  # told outside the lock: the callback may take other locks
            self._refuse(job, dropped)
        return seq

    def _refuse(self, job: _Job, dropped: int) -> None:
        """The writer cannot keep up (or has stopped): this job is not stored."""
        if dropped == 1 or dropped % 10_000 == 0:
            log.error(
                "message store: %d jobs not stored (the writer is behind or stopped)", dropped
            )
        _answer(job, False)

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
        self.ids.reserved(ceiling)  # type: ignore[attr-defined]

    def _read(self, query: Callable[[Backend], Page], reply: Reply, what: str) -> None:
        errors = self._errors

        def job(backend: Backend) -> None:
            try:
                answer: Page | ReadFailed = query(backend)
            except errors as exc:
                # Never an empty page: the client is told, the operator too (loudly).
                damaged = " (the file is damaged: see docs/operations.md)" if is_damage(exc) else ""
                log.error(
                    "message store: cannot read %s: %s%s; the client gets an error, "
                    "nothing is removed",
                    what,
                    exc,
                    damaged,
                )
                answer = ReadFailed(str(exc))
            except Exception as exc:  # a bug: the client still gets an answer
                log.exception("message store: reading %s failed", what)
                answer = ReadFailed(f"{type(exc).__name__}: {exc}")
            reply(answer)

        def submit() -> None:
            try:
                self._reads.put_nowait(job)
            except queue.Full:
                reply(None)

        self.after(self._seq, submit)

    # ---- writer thread ---------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            try:
                batch, stop = self._take()
                if batch:
                    self._commit(batch)
                elif stop:
                    break
                if self._retention > 0 and time.monotonic() >= self._next_purge:
                    self._next_purge = time.monotonic() + PURGE_EVERY
                    self._purge()
            except Exception:  # a bug here must not stop every later `sent`
                log.exception("message store: the writer met an unexpected error; it goes on")

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

    @property
    def backlog(self) -> tuple[int, int]:
        """Jobs waiting for the writer, and reads waiting for a reader (for the metrics)."""
        return len(self._jobs), self._reads.qsize()

    @property
    def dropped(self) -> int:
        """Jobs refused because the writer was too far behind (back-pressure)."""
        return self._dropped

    def _commit(self, batch: list[tuple[int, float, _Job]]) -> None:
        """Store one batch; whatever happens, answer every job of it and every waiter."""
        backend, ok = self._backend, False
        started = time.monotonic()
        try:
            with backend.transaction():
                # Every message of the batch in one put, so each conversation's messages
                # are sealed together. Acks go after: they name messages already handed
                # over (stored before they were delivered), in this batch or an earlier one.
                kept = [job.kept for _, _, job in batch if type(job) is _Put]
                grown = backend.put(kept) if kept else {}
                for _, _, job in batch:
                    kind = type(job)
                    if kind is _Ack:
                        backend.ack(backend.owner(job.user), job.upto)
                    elif kind is _Reserve:
                        backend.reserve_ids(job.ceiling)  # type: ignore[attr-defined]
                    elif kind is not _Put:
                        self._state_job(backend, job)
                for owner, name in grown.items():
                    self._enforce_quota(owner, name)
            ok = True
        except self._errors as exc:
            log.error("message store: a batch of %d jobs was not stored: %s", len(batch), exc)
        except Exception:
            log.exception("message store: a batch of %d jobs was not stored", len(batch))
        finally:
            if self.on_commit is not None:
                self.on_commit(time.monotonic() - started)
            for _, _, job in batch:
                if type(job) is not _Put or job.receipt is not None:  # else nobody waits
                    _answer(job, ok)
            self._done(batch[-1][0])

    @staticmethod
    def _state_job(backend: Backend, job: _Job) -> None:
        state = getattr(backend, "state", None)
        if state is None:  # a backend without state tables (Redis): a delete drops the queue
            if isinstance(job, _DropUser):
                backend.ack(backend.owner(job.user), (1 << 63) - 1)
            return
        match job:
            case _Room(folded, room, name):
                state.save_room(folded, room)
                if room is None:
                    backend.drop_conversation(name)  # type: ignore[attr-defined]
            case _Marker(user, peer, upto):
                state.set_marker(user, backend.conv_of(user, peer), peer, upto)  # type: ignore[attr-defined]
            case _DropUser(user, at):
                backend.ack(backend.owner(user), (1 << 63) - 1)
                state.drop_user(user, at)

    def _done(self, seq: int) -> None:
        with self._cond:
            self._committed = seq
            due = []
            while self._waiters and self._waiters[0][0] <= self._committed:
                due.append(heapq.heappop(self._waiters)[2])
            if self._stopping and not self._jobs:
                due += [w[2] for w in self._waiters]
                self._waiters.clear()
        for fn in due:
            try:
                fn()
            except Exception:
                log.exception("message store: a waiter failed")

    def _enforce_quota(self, owner: object, name: str) -> None:
        dropped = self._backend.trim_queue(owner, self._offline_max)
        if dropped:
            log.warning(
                "offline queue of %s is over --offline-max %d: dropped the %d oldest",
                name,
                self._offline_max,
                dropped,
            )

    def _purge(self) -> None:
        try:
            removed = self._backend.purge_before(self._clock() - self._retention)
        except Exception as exc:
            log.error("message store: retention pass failed: %s", exc)
            return
        if removed:
            log.info(
                "message store: removed %d messages older than %g days",
                removed,
                self._retention / 86400,
            )

    # ---- reader threads --------------------------------------------------------------------
    def _read_loop(self, backend: Backend) -> None:
        try:
            while (job := self._reads.get()) is not None:
                job(backend)  # answers its reply whatever happens (see `_read`)
        finally:
            backend.close()


def _copy_room(room: Room) -> Room:
    copy = Room(room.name, room.topic, room.invite_only, room.owner, room.created)
    copy.members = dict(room.members)
    copy.invites = dict(room.invites)
    copy.last = room.last
    return copy


def _answer(job: _Job, ok: bool) -> None:
    """Tell whoever waits for `job` how it went (never raises)."""
    try:
        if type(job) is _Put and job.receipt is not None and not job.receipt.done():
            job.receipt.set_result(ok)
        elif type(job) is _Reserve:
            job.then(ok)
    except Exception:
        log.exception("message store: telling a job's outcome failed")
