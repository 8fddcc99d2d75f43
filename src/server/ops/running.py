"""What the account commands (ops/commands.py) do to a running process's own state.

`Commands` is given how this process ends a user's sessions and forgets a
deleted account; on a stopped server's files they are other functions
(ops/admin.py). Here they go through the parts that own the state: the
loop ends sessions (only it touches transports), the hub takes the account
out of its rooms (under its lock, the members told), the store drops the
queue, markers and contacts. Both wait for what they asked (a bounded wait:
they run on the control socket's thread or a hash thread, never a worker),
so a command or a `delete_account` answers once it is durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from chat.server.core.broker import RoomBroker
from chat.server.core.desk import AccountGone
from chat.server.core.hub import Hub
from chat.server.core.ticks import Ticks
from chat.server.net.inbox import LoopInbox
from chat.server.store.seam import Store
from chat.shared.errors import RemoteProtocolError

log = logging.getLogger("chat.server")

#: Seconds a command waits for the loop or the store to carry it out.
WAIT = 5.0


class SessionEnds:
    """`Commands.end_sessions`: this process's sessions of a user end with a `bye`."""

    def __init__(self, inbox: LoopInbox) -> None:
        self._inbox = inbox

    def __call__(self, name: str, why: str, wait: bool = True, keep: int | None = None) -> int:
        """End `name`'s sessions but the one numbered `keep` (the loop does it); how many
        (0 at once without `wait`)."""
        done = threading.Event()
        ended = [0]

        def then(count: int) -> None:
            ended[0] = count
            done.set()

        self._inbox.end_sessions(name, why, then, keep)
        if wait and not done.wait(WAIT):
            log.warning("ending the sessions of %s: the loop did not answer in time", name)
        return ended[0]


class Forget:
    """`Commands.forget`: what a deleted account had, gone before the answer."""

    def __init__(
        self, hub: Hub, ticks: Ticks, store: Store, rooms: RoomBroker | None = None
    ) -> None:
        """`rooms`: a cluster's, deciding in Redis (None: the hub's book decides here)."""
        self._hub = hub
        self._ticks = ticks
        self._store = store
        self._rooms = rooms

    def __call__(self, name: str) -> None:
        """Out of every room (events sent from this thread's tick), then its queue, markers
        and contacts dropped; returns once the store has all of it (the rooms' records
        included)."""
        ticks, store = self._ticks, self._store
        if self._rooms is None:
            self._hub.remove_account(name, ticks.current())
            ticks.flush()
        else:
            self._leave_cluster_rooms(name)
        store.drop_user(name)
        done = threading.Event()
        store.after(store.enqueued, done.set)
        if not done.wait(WAIT):
            log.warning("forgetting the account %s: the store did not answer in time", name)

    def _leave_cluster_rooms(self, name: str) -> None:
        """Each room the account is in or invited to, left in Redis as a room request is
        run (every node's replica applies it in the room's order); waits for them all."""
        rooms = self._rooms
        assert rooms is not None
        touched = self._hub.rooms_touching(name)
        if not touched:
            return
        left = threading.Semaphore(0)
        failed: list[str] = []

        def done_for(room: str) -> Callable[[RemoteProtocolError | None], None]:
            def done(error: RemoteProtocolError | None) -> None:
                if error is not None:
                    failed.append(room)
                left.release()

            return done

        expires = time.monotonic() + WAIT
        for room in touched:
            rooms.request(name, AccountGone(room), True, expires, done_for(room))
        for _ in touched:
            if not left.acquire(timeout=max(0.0, expires - time.monotonic()) + 0.5):
                failed.append("(no answer)")
                break
        if failed:
            log.warning(
                "forgetting the account %s: %d of its rooms not left now (redis did not "
                "answer); its membership goes when a member changes them",
                name,
                len(failed),
            )
