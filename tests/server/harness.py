"""The server's logic without sockets: the core as the server wires it (`app.build_core`), real
stores.

Mailboxes run on an inline pool that the test drives, so every step is
deterministic; password checks run on a real `HashExecutor` against a real
`UserStore` (low scrypt cost); the loop's side is a real `LoopInbox` whose
requests the test reads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chat.server.accounts.users_file import UserStore
from chat.server.app import Engines, build_core
from chat.server.core import native
from chat.server.core.outbuf import SOFT_LIMIT, OutBuffer
from chat.server.core.ratelimit import TokenBucket
from chat.server.core.user import User
from chat.server.crypto.cipher import load_cipher
from chat.server.net.inbox import LoopInbox, Request, WhenDrained
from chat.server.ops.config import ServerConfig
from chat.server.store.seam import NoStore, Receipt, Reply, Store
from chat.server.store.service import StoreService
from chat.server.store.sqlite import Kept, MessageStore, Page
from chat.shared.framing import FrameDecoder
from chat.shared.messages import (
    Auth,
    ClientMessage,
    Msg,
    Recipients,
    RosterAck,
    ServerMessage,
    encode,
    parse_server_message,
)

COST = 4  # scrypt cost for tests; the server default is 14
KEY = bytes(range(32))


class StoreWrapper:
    """A `Store` that hands every call to a real one: a test overrides what it watches."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.ids = inner.ids

    @property
    def keeps(self) -> bool:
        return self.inner.keeps

    @property
    def enqueued(self) -> int:
        return self.inner.enqueued

    def start(self) -> None:
        self.inner.start()

    def stop(self) -> None:
        self.inner.stop()

    def keep(self, kept: Kept, durable: bool = False) -> Receipt | None:
        return self.inner.keep(kept, durable)

    def stamp(
        self,
        sender: str,
        to: Recipients,
        texts: Sequence[str],
        now: float,
        keep: tuple[tuple[str, ...], tuple[str, ...]] | None,
        durable: bool,
    ) -> tuple[tuple[Msg, ...] | None, Receipt | None]:
        return self.inner.stamp(sender, to, texts, now, keep, durable)

    def ack(self, user: str, upto: int) -> int:
        return self.inner.ack(user, upto)

    def after(self, seq: int, fn: Callable[[], None]) -> None:
        self.inner.after(seq, fn)

    def __getattr__(self, name: str) -> Any:
        """Every other call of the seam (rooms, markers, reads) goes to the real store."""
        return getattr(self.inner, name)

    def read_page(self, user: str, peer: str, before: int | None, limit: int, reply: Reply) -> None:
        self.inner.read_page(user, peer, before, limit, reply)

    def read_offline(self, user: str, after: int, reply: Reply) -> None:
        self.inner.read_offline(user, after, reply)


class Faults:
    """Failures to inject into calls by name, each used once, in the order planned: an
    exception is raised; an event is waited for (a disk that stalls until the test says)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._planned: dict[str, deque[BaseException | threading.Event]] = {}

    def once(self, call: str, failure: BaseException | threading.Event) -> None:
        with self._lock:
            self._planned.setdefault(call, deque()).append(failure)

    def left(self, call: str) -> int:
        with self._lock:
            return len(self._planned.get(call, ()))

    def check(self, call: str) -> None:
        with self._lock:
            planned = self._planned.get(call)
            failure = planned.popleft() if planned else None
        if isinstance(failure, threading.Event):
            assert failure.wait(10), f"{call} stalled for more than 10 s"
        elif failure is not None:
            raise failure


class FaultyStore(MessageStore):
    """The SQLite message store with `Faults` injected into its calls (`put`, `ack` on the
    writer; `page`, `offline` on the readers, whose stores are made faulty too).

    A subclass, not a plain wrapper: a server alone takes its ids from a `MessageStore`
    (`StoreService`); it shares the wrapped store's connection and keys."""

    def __init__(self, inner: MessageStore, faults: Faults) -> None:
        super().__init__(inner.path, inner._conn, inner._sealer, inner.retention)
        self.faults = faults

    def reader(self) -> MessageStore:
        return FaultyStore(super().reader(), self.faults)

    def put(self, kept: Sequence[Kept]) -> dict[bytes, str]:
        self.faults.check("put")
        return super().put(kept)

    def ack(self, owner: bytes, upto: int) -> int:
        self.faults.check("ack")
        return super().ack(owner, upto)

    def page(self, user: str, peer: str, before: int | None, limit: int) -> Page:
        self.faults.check("page")
        return super().page(user, peer, before, limit)

    def offline(self, user: str, after: int, limit: int, max_bytes: int) -> Page:
        self.faults.check("offline")
        return super().offline(user, after, limit, max_bytes)


class FaultyAccounts:
    """The users file with `Faults` injected into `verify` and `register` (hash threads)."""

    def __init__(self, inner: UserStore, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults

    def verify(self, name: str, password: str) -> bool:
        self.faults.check("verify")
        return self.inner.verify(name, password)

    def register(self, name: str, password: str) -> bool:
        self.faults.check("register")
        return self.inner.register(name, password)

    def __contains__(self, name: object) -> bool:
        return name in self.inner

    def __len__(self) -> int:
        return len(self.inner)

    def save(self) -> None:
        self.inner.save()

    def __getattr__(self, name: str) -> Any:
        """Every other call of the seam (bans, token nonces, invites) goes to the real store."""
        return getattr(self.inner, name)


class InlinePool:
    """A pool whose tasks run when the test says so, then the tick ends."""

    def __init__(self) -> None:
        self.tasks: deque[Callable[[], None]] = deque()
        self.end_tick: Callable[[], None] = lambda: None

    def submit(self, fn: Callable[[], None]) -> None:
        self.tasks.append(fn)

    def run(self) -> bool:
        ran = bool(self.tasks)
        while self.tasks:
            self.tasks.popleft()()
        self.end_tick()
        return ran


class World:
    def __init__(
        self,
        tmp: Path,
        max_outbuf: int = 1 << 20,
        max_total: int = 1 << 30,
        hash_queue: int = 64,
        rate: tuple[float, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        keep: bool = True,
        offline_max: int = 1000,
        engines: Callable[[World], Engines] | None = None,
        backend: Callable[[MessageStore], MessageStore] | None = None,
        patience: float = 30.0,
    ) -> None:
        """`engines` builds the seams from this world's parts (default: its users file and
        message store); `backend` wraps the message store's SQLite file (`FaultyStore`)."""
        self.tmp = tmp
        self.store = UserStore.open(tmp / "users.db", KEY, load_cipher(), hash_cost_log2=COST)
        self.keeper: Store = NoStore()
        if keep:  # a server alone takes its ids from the SQLite file: a MessageStore
            history = MessageStore.open(tmp / "history.db", KEY, load_cipher(), 30 * 86400.0)
            wrapped = history if backend is None else backend(history)
            self.keeper = StoreService(wrapped, offline_max)
        self._clock = clock
        self.inbox = LoopInbox()
        # Slots the loop would write itself (not direct): the test reads them (`frames`).
        self.table = native.OutTable(4096, max_outbuf, SOFT_LIMIT, max_total)
        self.engines = engines(self) if engines is not None else Engines(self.store, self.keeper)
        config = ServerConfig(hash_threads=1, hash_queue=hash_queue, auth_timeout=2 * patience)
        self.core = build_core(config, self.engines, self.table, self.inbox)
        self.core.hub._clock = clock  # deadlines by the test's clock
        self.hub = self.core.hub
        self.hasher = self.core.hasher
        self.throttle = self.core.throttle
        self.dispatcher = self.core.dispatcher
        self.keeper.start()
        self.hasher.start()
        self.core.deadlines.start()
        self.pool = InlinePool()
        self.pool.end_tick = self.dispatcher.end_tick
        self.rate = rate
        self._cids = iter(range(1, 1 << 30))
        self.requests: list[Request] = []
        self.sessions: list[User] = []
        #: False: catch-ups wait for the test to drain them (`drain`), as a slow reader's.
        self.auto_drain = True
        self.drain_waits: list[WhenDrained] = []

    def close(self) -> None:
        self.hasher.stop()
        self.core.deadlines.stop()
        self.keeper.stop()
        self.inbox.close()

    def connect(self, port: int = 40000) -> User:
        cid = next(self._cids)
        rate = TokenBucket(*self.rate) if self.rate else None
        session = User(
            cid,
            100 + cid,
            ("127.0.0.1", port + cid),
            OutBuffer(self.table, self.table.open(cid, -1, False), False),
            rate,
            self.pool,
            self.dispatcher.handle_batch,
        )
        self.sessions.append(session)
        return session

    def user(self, name: str) -> User:
        """The first session logged in as `name`."""
        return next(s for s in self.sessions if s.conn.user == name)

    def post(self, session: User, *items: Any) -> None:
        """Post frames (messages are encoded, payload only) or control items, then settle."""
        payloads = [encode(i)[4:] if isinstance(i, ClientMessage) else i for i in items]
        session.mailbox.post(payloads, sum(len(p) for p in payloads if type(p) is bytes))
        self.settle()

    def settle(self, quiet: float = 0.05, timeout: float = 10.0) -> None:
        """Run mailboxes until nothing has run for `quiet` seconds (hash results, store
        answers included). The loop's side is played here: a catch-up's drain wait is
        answered at once (the test reads the frames) unless `auto_drain` is off."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            self._take_requests()
            if self.pool.run():
                last = time.monotonic()
            elif (
                time.monotonic() - last >= quiet
                and not len(self.hasher)
                and not any(s.mailbox.held for s in self.sessions if not self._waits_drain(s))
            ):
                break
            else:
                time.sleep(0.002)
        self._take_requests()

    def _take_requests(self) -> None:
        for request in self.inbox.take():
            if not isinstance(request, WhenDrained):
                self.requests.append(request)
            elif self.auto_drain:
                request.then(True)
            else:
                self.drain_waits.append(request)

    def _waits_drain(self, session: User) -> bool:
        return any(w.cid == session.cid for w in self.drain_waits)

    def drain(self, ok: bool = True) -> None:
        """Answer the catch-ups waiting for their buffer to drain, then settle."""
        waits, self.drain_waits = self.drain_waits, []
        for wait in waits:
            wait.then(ok)
        self.settle()

    def login(self, name: str, password: str = "pw", register: bool = True) -> User:
        session = self.connect()
        self.post(session, Auth(name, password, register))
        frames = self.frames(session)
        assert frames[0].type == "auth_ok", frames
        self.post(session, RosterAck(frames[1].seq))
        self.frames(session)
        return session

    def frames(self, session: User) -> list[ServerMessage]:
        """Everything queued for `session` since the last call, parsed."""
        data = bytearray()

        def take(chunk: bytes) -> int:
            data.extend(chunk)
            return len(chunk)

        session.out.write(take, 1 << 20)
        decoder = FrameDecoder(1 << 24)
        decoder.feed(bytes(data))
        out = []
        while (payload := decoder.next_frame()) is not None:
            out.append(parse_server_message(payload))
        return out
