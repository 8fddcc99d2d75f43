"""Who is online, and the roster and message rules that follow from it.

The hub lock guards: `_sessions` (name -> that user's sessions in CHAT, in
arrival order), `_subscribers` (every connection that got its full roster:
ROSTER and CHAT), each connection's roster outbox, and the protocol state
transitions into ROSTER, CHAT and CLOSED. It is taken before a user's send
lock, never after (see docs/server.md, "Locking rules"). The roster change
log, shared by every outbox, is guarded by the same lock.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable

from chat.shared.messages import BROADCAST, Recipients, Roster, RosterAck, encode
from chat.shared.roster import ChangeLog
from chat.shared.states import State

from .user import User

_TRIM_MIN = 1024  # roster log entries before the first trim

Dirty = dict[User, None]  # users with bytes to flush at the end of a batch, in order


class Hub:
    def __init__(self, ack_timeout: float) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, list[User]] = {}
        self._subscribers: set[User] = set()
        self._ack_timeout = ack_timeout
        self._msg_ids = itertools.count(1)
        #: Every join and leave, shared by all roster outboxes (each keeps a cursor).
        self.roster_log = ChangeLog()
        self._trim_at = _TRIM_MIN

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
            self._announce(user.name, False, dirty)
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
        if first:
            self._announce(user.name, True, dirty)

    def _announce(self, name: str, joined: bool, dirty: Dirty) -> None:
        """Log a join or leave; whoever has no roster frame in flight hears of it now."""
        self.roster_log.append(name, joined)
        for other in self._subscribers:
            outbox = other.conn.roster
            if outbox.in_flight is None and other.name != name:
                self._queue_roster(other, outbox.changed(), dirty)
        if len(self.roster_log) >= self._trim_at:
            self._trim_log()

    def _trim_log(self) -> None:
        """Forget changes every subscriber has been told; amortised O(1) per change."""
        log = self.roster_log
        oldest = min((u.conn.roster.cursor for u in self._subscribers), default=log.end)
        log.trim(oldest)
        self._trim_at = max(_TRIM_MIN, 2 * len(log))

    def _queue_roster(
        self, user: User, frame: Roster | None, dirty: Dirty, prefix: bytes = b""
    ) -> None:
        if frame is None:
            return
        user.ack_deadline = time.monotonic() + self._ack_timeout
        user.append(prefix + encode(frame))
        dirty[user] = None
