"""The v1.2 requests of the peer: rooms, read markers, typing, one's account, the directory.

Each arrives accepted by the connection (its state and its granted features
checked by `ServerConnection.receive`) and is carried out here: room requests
and read markers by the hub's desk, under the hub lock (core/desk.py), the
account's care (`passwd`, `delete_account`) by core/care.py on a hash thread
(the mailbox holds: False), the directory (`user_search`) from the accounts,
in memory. Every request with an `id` is answered by exactly one frame
echoing it (v1.2 section 1).
"""

from __future__ import annotations

from chat.server.accounts.seam import Accounts
from chat.server.core import native
from chat.server.core.care import Care
from chat.server.core.hub import Hub
from chat.server.core.user import User
from chat.shared.errors import Code, RemoteProtocolError
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

#: Names a `users` answer lists at most (v1.2 section 7).
SEARCH_MAX = 50


class Asks:
    def __init__(self, hub: Hub, accounts: Accounts, care: Care) -> None:
        self._hub = hub
        self._accounts = accounts
        self._care = care

    def handle(self, user: User, request: Request, tick: native.Tick) -> bool:
        """Carry out `request`; False when the mailbox must hold for the answer."""
        conn = user.conn
        match request:
            case Read(peer, upto):
                try:
                    self._hub.read(user, peer, upto, tick)
                except RemoteProtocolError as err:  # a room it is not in: said, no id
                    user.out.append(conn.error(err), tick)
            case Typing(to, state):
                try:
                    self._hub.typing(user, to, state, tick)
                except RemoteProtocolError as err:
                    user.out.append(conn.error(err), tick)
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
                user.out.append(self._hub.room_request(user, request, registered, tick), tick)
            case _ if request.type in _ROOM_REQUESTS:
                user.out.append(self._hub.room_request(user, request, True, tick), tick)
            case _:
                err = RemoteProtocolError(
                    Code.BAD_REQUEST, "not served here", getattr(request, "id", None)
                )
                user.out.append(conn.error(err), tick)
        return True

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
