"""The store seam: what the chat core asks of a message store, and what a backend provides.

Two layers, each a small `typing.Protocol`:

- `Store` is what the core uses (`core.fanout`, `core.catchup`, the hub's route):
  hand messages over without waiting (`keep`, a queue append that returns a
  receipt when the caller must know they are durable), acknowledge offline
  messages, read pages and offline queues with a reply, take message ids
  without waiting. `store.service.StoreService` implements it over any
  backend, on its own threads; `NoStore` is `--no-history`.
- `Backend` is what a storage engine implements for the service: the SQLite
  file of a server alone (`store.sqlite.MessageStore`) and Redis for a cluster
  (`cluster.messages.RedisMessageStore`). One contract test suite runs against
  both (tests/contracts/test_store_contract.py).

Nothing on this seam blocks the caller: a store that cannot answer (a disk
that stalls, a Redis that froze) makes its callers wait for a reply or a
receipt, never inside a call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, Protocol

from chat.server.core.rooms import Room
from chat.server.store.sqlite import Kept, Page, Unreadable
from chat.shared.messages import Msg, Recipients

#: A receipt for messages handed over: resolves to True once they are durable (fsync'd,
#: or acknowledged by a Redis with appendfsync always), False when they could not be.
Receipt = Future


#: The store could not answer a read (a damaged page, Redis away): the client is told.
ReadFailed = Unreadable

#: What a read answers: a page; None when the readers are too busy; ReadFailed when the
#: store could not read (the client gets an error, never an empty page in silence).
Reply = Callable[[Page | ReadFailed | None], None]


class Ids(Protocol):
    """Where message ids come from: unique, rising, never going back (v1.1 section 2)."""

    def take(self, count: int) -> int | None:
        """The first of `count` consecutive new ids, or None when none can be given now
        (the store has not reserved more yet); never waits."""
        ...

    def peek(self) -> int: ...


class Store(Protocol):
    """The message store as the core sees it (`StoreService`, `NoStore`)."""

    ids: Ids

    @property
    def keeps(self) -> bool:
        """False for a server that keeps no messages: nothing is queued or stored."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def keep(self, kept: Kept, durable: bool = False) -> Receipt | None:
        """Hand messages over (a queue append: safe under the hub lock); with `durable`,
        a receipt that resolves once they are on disk for good."""
        ...

    def stamp(
        self,
        sender: str,
        to: Recipients,
        texts: Sequence[str],
        now: float,
        keep: tuple[tuple[str, ...], tuple[str, ...]] | None,
        durable: bool,
    ) -> tuple[tuple[Msg, ...] | None, Receipt | None]:
        """New messages from `sender` to `to`, one per text, with their ids (None when no
        ids can be given now: never waits), and handed over like `keep` when `keep` is
        (named, queued). The send path's one call into the store (under the hub lock)."""
        ...

    def ack(self, user: str, upto: int) -> int:
        """Forget `user`'s offline messages up to `upto` (soon: committed without delay);
        the hand-over's number, for `after`."""
        ...

    def after(self, seq: int, fn: Callable[[], None]) -> None:
        """Call `fn` once every hand-over up to `seq` is done (stored or failed)."""
        ...

    @property
    def enqueued(self) -> int:
        """The number of the last hand-over (a barrier for `after`)."""
        ...

    def read_page(self, user: str, peer: str, before: int | None, limit: int, reply: Reply) -> None:
        """A page of one conversation, seeing everything handed over before the call."""
        ...

    def read_offline(self, user: str, after: int, reply: Reply) -> None:
        """The next page of `user`'s offline queue above id `after`."""
        ...

    # ---- v1.2: rooms and read markers ---------------------------------------------------
    def load_rooms(self) -> list[Room]:
        """Every room, at start."""
        ...

    def save_room(self, folded: str, room: Room | None, name: str) -> None:
        """A room's record as it is now (copied), or its removal with its history."""
        ...

    def set_marker(self, user: str, peer: str, upto: int) -> None: ...

    def drop_user(self, user: str) -> int:
        """A deleted account's queue, markers and contacts go."""
        ...

    def read_markers(self, user: str, rooms: list[str], reply: Reply) -> None:
        """A login's `markers`: (peer, upto, last, unread) rows in a `Page`."""
        ...


class Backend(Protocol):
    """A storage engine under `StoreService`: one instance per thread (`reader()`)."""

    #: Exceptions of this engine that mean "could not do it now" (logged, answered).
    errors: tuple[type[Exception], ...]
    #: Seconds a message is kept (0: for ever).
    retention: float

    def reader(self) -> Backend: ...

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def put(self, kept: Sequence[Kept]) -> dict[Any, str]:
        """Store messages and offline entries; the queues that grew (owner -> name)."""
        ...

    def owner(self, name: str) -> Any:
        """The key of one user's offline queue."""
        ...

    def ack(self, owner: Any, upto: int) -> int: ...

    def trim_queue(self, owner: Any, keep: int) -> int: ...

    def purge_before(self, cutoff: float) -> int: ...

    def page(self, user: str, peer: str, before: int | None, limit: int) -> Page: ...

    def offline(self, user: str, after: int, limit: int, max_bytes: int) -> Page: ...


class NoStore:
    """`--no-history`: nothing is kept, nothing queued; history pages are empty.

    Ids still never go back while the process runs; across restarts nothing is kept
    to compare them with.
    """

    keeps = False
    enqueued = 0

    def __init__(self) -> None:
        self.ids = _CountingIds()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def keep(self, kept: Kept, durable: bool = False) -> Receipt | None:
        if not durable:
            return None
        receipt: Receipt = Future()
        receipt.set_result(False)
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
        first = self.ids.take(len(texts))
        if first is None:
            return None, None
        msgs = tuple(Msg(first + i, sender, to, text, now) for i, text in enumerate(texts))
        return msgs, self.keep(Kept(msgs, (), ()), durable) if durable else None

    def ack(self, user: str, upto: int) -> int:
        return 0

    def after(self, seq: int, fn: Callable[[], None]) -> None:
        fn()

    def read_page(self, user: str, peer: str, before: int | None, limit: int, reply: Reply) -> None:
        reply(Page((), False))

    def read_offline(self, user: str, after: int, reply: Reply) -> None:
        reply(Page((), False))

    def load_rooms(self) -> list[Room]:
        return []  # kept for the life of the process only

    def save_room(self, folded: str, room: Room | None, name: str) -> None:
        pass

    def set_marker(self, user: str, peer: str, upto: int) -> None:
        pass

    def drop_user(self, user: str) -> int:
        return 0

    def read_markers(self, user: str, rooms: list[str], reply: Reply) -> None:
        reply(Page((), False))


class _CountingIds:
    """Ids of a server that keeps nothing: a counter."""

    def __init__(self) -> None:
        self._next = 1
        self._lock = threading.Lock()

    def take(self, count: int) -> int | None:
        with self._lock:
            first = self._next
            self._next += count
        return first

    def peek(self) -> int:
        return self._next
