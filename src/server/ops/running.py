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

from chat.server.core.hub import Hub
from chat.server.core.ticks import Ticks
from chat.server.net.inbox import LoopInbox
from chat.server.store.seam import Store

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

    def __init__(self, hub: Hub, ticks: Ticks, store: Store) -> None:
        self._hub = hub
        self._ticks = ticks
        self._store = store

    def __call__(self, name: str) -> None:
        """Out of every room (events sent from this thread's tick), then its queue, markers
        and contacts dropped; returns once the store has all of it (the rooms' records
        included)."""
        ticks, store = self._ticks, self._store
        self._hub.remove_account(name, ticks.current())
        ticks.flush()
        store.drop_user(name)
        done = threading.Event()
        store.after(store.enqueued, done.set)
        if not done.wait(WAIT):
            log.warning("forgetting the account %s: the store did not answer in time", name)
