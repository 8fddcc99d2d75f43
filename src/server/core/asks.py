"""The v1.2 requests of the peer: rooms, read markers, typing, one's account, the directory.

Each arrives accepted by the connection (its state and its granted features
checked by `ServerConnection.receive`) and is carried out here: room requests
and read markers by the hub's desk, under the hub lock (core/desk.py), the
directory (`user_search`) from the accounts, in memory, and the account's care
(`passwd`, `delete_account`) by core/care.py on a hash thread (the mailbox
holds: False). Every request with an `id` is answered by exactly one frame
echoing it (v1.2 section 1).

In a cluster (section 10) a room request is decided in Redis by the rooms'
broker (cluster/rooms.py): the mailbox holds until it answers, or until the
cluster's deadline, when `rate_limited` answers instead (a frozen Redis never
holds a client). Markers and typing go to the user's, or the recipients',
other nodes through the broker (`Fanout.relay_*`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from chat.server.accounts.seam import Accounts
from chat.server.core import native
from chat.server.core.broker import RoomBroker
from chat.server.core.care import Care
from chat.server.core.deadlines import Deadlines
from chat.server.core.hub import Hub
from chat.server.core.results import RoomDone
from chat.server.core.user import User
from chat.shared.errors import Code, RemoteProtocolError, Trouble
from chat.shared.messages import MsgId
from chat.shared.notices import Users
from chat.shared.requests import (
    DeleteAccount,
    Passwd,
    Read,
    Request,
    RoomInvite,
    RoomListRequest,
    Typing,
    UserSearch,
)

if TYPE_CHECKING:
    from chat.server.core.fanout import Fanout

#: Names a `users` answer lists at most (v1.2 section 7).
SEARCH_MAX = 50


class _Once:
    """A room request's answer: the first of the broker's and the deadline's."""

    __slots__ = ("_done", "_lock", "_mailbox", "_msg_id")

    def __init__(self, user: User, msg_id: MsgId) -> None:
        self._mailbox = user.mailbox
        self._msg_id = msg_id
        self._lock = threading.Lock()
        self._done = False

    def answer(self, error: RemoteProtocolError | None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._mailbox.resume(RoomDone(self._msg_id, error))

    def expire(self) -> None:
        self.answer(RemoteProtocolError(Code.RATE_LIMITED, Trouble.CLUSTER, self._msg_id))

    def settled(self) -> bool:
        return self._done


class Asks:
    def __init__(
        self,
        hub: Hub,
        accounts: Accounts,
        care: Care,
        rooms: RoomBroker | None = None,
        fanout: Fanout | None = None,
        deadlines: Deadlines | None = None,
        deadline: float = 0.5,
    ) -> None:
        """`rooms`, `fanout`, `deadlines`, `deadline`: a cluster's (None alone)."""
        self._hub = hub
        self._accounts = accounts
        self._rooms = rooms
        self._fanout = fanout
        self._deadlines = deadlines
        self._deadline = deadline
        self._care = care

    def handle(self, user: User, request: Request, tick: native.Tick) -> bool:
        """Carry out `request`; False when the mailbox must hold for the answer."""
        conn = user.conn
        match request:
            case Read(peer, upto):
                try:
                    moved = self._hub.read(user, peer, upto, tick)
                except RemoteProtocolError as err:  # a room it is not in: said, no id
                    user.out.append(conn.error(err), tick)
                else:
                    if moved and self._fanout is not None:
                        self._fanout.relay_read(user.name, peer, upto)
            case Typing(to, state):
                try:
                    relay = self._hub.typing(user, to, state, tick)
                except RemoteProtocolError as err:
                    user.out.append(conn.error(err), tick)
                else:
                    if relay is not None and self._fanout is not None:
                        self._fanout.relay_typing(user.name, relay)
            case RoomListRequest(msg_id):
                user.out.append(self._hub.room_list(user, msg_id), tick)
            case Passwd():
                return self._care.passwd(user, request, tick)
            case DeleteAccount():
                return self._care.delete(user, request, tick)
            case UserSearch(msg_id, prefix):
                user.out.append(self._search(user, msg_id, prefix), tick)
            case RoomInvite(_, _, target):
                registered = target in self._accounts
                if self._rooms is not None:
                    return self._in_cluster(user, request, registered)
                user.out.append(self._hub.room_request(user, request, registered, tick), tick)
            case _ if request.type in _ROOM_REQUESTS:
                if self._rooms is not None:
                    return self._in_cluster(user, request, True)
                user.out.append(self._hub.room_request(user, request, True, tick), tick)
            case _:
                err = RemoteProtocolError(
                    Code.BAD_REQUEST, "not served here", getattr(request, "id", None)
                )
                user.out.append(conn.error(err), tick)
        return True

    def _in_cluster(self, user: User, request: Request, registered: bool) -> bool:
        """Hand a room request to the rooms' broker; the mailbox holds for its answer, at
        most the cluster's deadline."""
        assert self._rooms is not None and self._deadlines is not None
        once = _Once(user, request.id)  # type: ignore[attr-defined]
        expires = time.monotonic() + self._deadline
        self._deadlines.after(self._deadline, once.expire, once.settled)
        self._rooms.request(user.name, request, registered, expires, once.answer)
        return False

    def _search(self, user: User, msg_id: object, prefix: str) -> bytes:
        """Registered names starting with `prefix`, ignoring case, sorted, at most 50."""
        if user.rate is not None and not user.rate.take():
            return user.conn.error(RemoteProtocolError(Code.RATE_LIMITED, msg_id=msg_id))
        names = getattr(self._accounts, "names", None)
        folded = prefix.lower()
        found = sorted(
            (n for n in (names() if names is not None else ()) if n.lower().startswith(folded)),
            key=lambda n: (n.lower(), n),
        )
        return user.conn.reply(Users(msg_id, tuple(found[:SEARCH_MAX]), len(found) > SEARCH_MAX))  # type: ignore[arg-type]


_ROOM_REQUESTS = frozenset({"room_create", "join", "leave", "kick", "topic"})
