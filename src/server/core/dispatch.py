"""A connection's mailbox batch, run on the worker pool: each item to its handler, in order.

A batch is every item posted to one connection since its mailbox last ran:
frame payloads, the loop's notices, the results of work it waited for. The
connection (`ServerConnection`) makes every state change and builds every
reply; the handlers carry out what it accepted: the peer's frames
(core/frames.py), consecutive sends grouped for one fan-out (core/fanout.py),
and our own results (core/outcomes.py). Output for every recipient is
appended during the worker's tick and sent at its end, one `send()` per
socket. Nothing here waits: whatever takes time holds the mailbox and resumes
it with the result, so replies keep the order of the frames they answer.
"""

from __future__ import annotations

import logging
from typing import Any

from chat.server.core import native
from chat.server.core.fanout import Fanout
from chat.server.core.frames import PeerFrames
from chat.server.core.outcomes import Outcomes
from chat.server.core.results import OURS
from chat.server.core.ticks import Ticks
from chat.server.core.user import User
from chat.shared.errors import Code, RemoteProtocolError, Trouble
from chat.shared.messages import Send
from chat.shared.states import State

CLOSED = State.CLOSED
log = logging.getLogger("chat.server")


class Dispatcher:
    __slots__ = ("_fanout", "_frames", "_local", "_outcomes", "_ticks")

    def __init__(
        self, frames: PeerFrames, outcomes: Outcomes, fanout: Fanout, ticks: Ticks
    ) -> None:
        self._frames = frames
        self._outcomes = outcomes
        self._fanout = fanout
        self._ticks = ticks
        self._local = ticks.local

    def handle_batch(self, user: User, items: list[Any]) -> int | None:
        """Handle a mailbox batch. Returns None, or while something is awaited (a password
        check, a durable store, a read) the number of items consumed: the rest waits, so
        replies keep the order of frames. A frame parsed but not consumed is left in
        `items` parsed, so it is not fed to the connection twice.

        An item whose handling fails (a bug) is logged once with its traceback and, when
        it carried an id, answered with an error; the items after it are still handled,
        so one bad item never silences a connection (issue "1 of 6")."""
        try:
            tick = self._local.tick
        except AttributeError:  # this worker's first batch
            tick = self._ticks.current()
        conn = user.conn
        sends: list[Send] = []  # consecutive sends to the same `to`, fanned out together
        for index, item in enumerate(items):
            if conn.state is CLOSED:
                continue  # nothing is answered after the final frame
            if type(item) is bytes:
                try:
                    message: Any = conn.receive(item)
                except RemoteProtocolError as err:
                    message = err
                except Exception:
                    self._failed(user, item, None, tick)
                    continue
            else:
                message = item
            if type(message) is Send:
                if sends and sends[0].to != message.to:
                    if self._send(user, sends, tick):
                        items[index] = message
                        return index
                    sends = []
                sends.append(message)
                continue
            if sends:
                if self._send(user, sends, tick):
                    items[index] = message
                    return index
                sends = []
            try:
                if type(message) in OURS:
                    done = self._outcomes.handle(user, message, tick)
                else:
                    done = self._frames.handle(user, message, tick)
            except Exception:
                self._failed(user, message, getattr(message, "id", None), tick)
                continue
            if not done:
                return index + 1
        if sends and self._send(user, sends, tick):
            return len(items)
        return None

    def _send(self, user: User, sends: list[Send], tick: native.Tick) -> bool:
        try:
            return self._fanout.send(user, sends, tick)
        except Exception:
            self._failed(user, sends, [s.id for s in sends], tick)
            return False

    def _failed(self, user: User, item: Any, ids: Any, tick: native.Tick) -> None:
        """A bug met while handling `item`: said once, with the traceback; each id it
        carried is answered with an error, never left without an answer."""
        log.exception("handling %s for %s failed", type(item).__name__, user.label())
        if ids is None or user.conn.state is CLOSED:
            return
        for msg_id in ids if isinstance(ids, list) else [ids]:
            err = RemoteProtocolError(Code.RATE_LIMITED, Trouble.INTERNAL, msg_id)
            try:
                user.out.append(user.conn.error(err), tick)
            except Exception:
                log.exception("answering the failure failed")

    def end_tick(self) -> None:
        """Send what this worker's tick queued (plain TCP, in the library, one send() per
        connection); tell the loop about the rest (TLS, a full socket, an error, an end)."""
        self._ticks.flush()
