"""Who is online, and the roster and message rules that follow from it.

The hub lock guards: `_sessions` (name -> that user's sessions in CHAT, in
arrival order), `_subscribers` (every connection that got its full roster:
ROSTER and CHAT), each connection's roster outbox, and the protocol state
transitions into ROSTER, CHAT and CLOSED. It is taken before a user's send
lock, never after (see docs/server.md, "Locking rules").
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable

from chat.shared.messages import BROADCAST, Recipients, Roster, RosterAck, encode
from chat.shared.states import State

from .user import User

Dirty = dict[User, None]  # users with bytes to flush at the end of a batch, in order


class Hub:
    def __init__(self, ack_timeout: float) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, list[User]] = {}
        self._subscribers: set[User] = set()
        self._ack_timeout = ack_timeout
        self._msg_ids = itertools.count(1)

    # ---- queries ---------------------------------------------------------
    def next_msg_id(self) -> int:
        # itertools.count is atomic under the GIL; per-sender order comes
        # from the sender's mailbox running on one worker at a time.
        return next(self._msg_ids)

    # ---- state changes ---------------------------------------------------
    def enter_roster(self, user: User, name: str, dirty: Dirty) -> bool:
        """Log `user` in: auth_ok and the full roster, atomically with subscribing.

        Taking the snapshot and subscribing under one lock means no join or
        leave can fall between them.
        """
        with self._lock:
            if user.conn.state is not State.AUTH:
                return False  # closed while its password was being hashed
            online = [n for n in self._sessions if n != name]
            ok, full = user.conn.auth_succeeded(name, online)
            user.name = name
            self._subscribers.add(user)
            self._queue_roster(user, full, dirty, prefix=encode(ok))
            return True

    def ack_roster(self, user: User, ack: RosterAck, dirty: Dirty) -> bool:
        """Take a roster_ack (raises bad_request on a wrong seq). True when it entered CHAT."""
        with self._lock:
            entered, delta = user.conn.roster_acked(ack)
            user.ack_deadline = None
            if delta is not None:
                self._queue_roster(user, delta, dirty)
            if entered:
                self._add_session(user, dirty)
            return entered

    def remove(self, user: User, dirty: Dirty) -> bool:
        """Take `user` out for good (idempotent). True when its last session left."""
        with self._lock:
            if user.conn.state is State.CLOSED:
                return False
            was_chat = user.conn.state is State.CHAT
            user.conn.close()
            self._subscribers.discard(user)
            if not was_chat or user.name is None:
                return False
            sessions = self._sessions.get(user.name, [])
            if user in sessions:
                sessions.remove(user)
            if sessions:
                return False
            self._sessions.pop(user.name, None)
            for other in self._subscribers:
                if other.name != user.name:
                    self._queue_roster(other, other.conn.roster.left(user.name), dirty)
            return True

    def close_all(self) -> None:
        """Shutdown: everyone goes at once, so no leave deltas are computed."""
        with self._lock:
            for user in self._subscribers:
                user.conn.close()
            self._subscribers.clear()
            self._sessions.clear()

    # ---- messaging -------------------------------------------------------
    def recipients(self, sender: str, to: Recipients) -> tuple[list[User], list[str], list[str]]:
        """(sessions to deliver to, names delivered, names missing) for one `send`."""
        with self._lock:
            if to == BROADCAST:
                names = [n for n in self._sessions if n != sender]
                return self._sessions_of(names), names, []
            delivered: list[str] = []
            missing: list[str] = []
            for name in dict.fromkeys(to):  # each name once, in the order given
                if name == sender:
                    continue
                (delivered if name in self._sessions else missing).append(name)
            return self._sessions_of(delivered), delivered, missing

    # ---- lock held -------------------------------------------------------
    def _sessions_of(self, names: Iterable[str]) -> list[User]:
        sessions = self._sessions
        return [u for n in names for u in sessions[n]]

    def _add_session(self, user: User, dirty: Dirty) -> None:
        assert user.name is not None
        sessions = self._sessions.setdefault(user.name, [])
        first = not sessions
        sessions.append(user)
        if not first:
            return
        for other in self._subscribers:
            if other.name != user.name:
                self._queue_roster(other, other.conn.roster.joined(user.name), dirty)

    def _queue_roster(self, user: User, frame: Roster | None, dirty: Dirty,
                      prefix: bytes = b"") -> None:
        if frame is None:
            return
        user.ack_deadline = time.monotonic() + self._ack_timeout
        user.append(prefix + encode(frame))
        dirty[user] = None
