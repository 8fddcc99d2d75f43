"""The peer's frames: what each client frame does once its connection has accepted it.

`ServerConnection.receive` has already checked the frame against the state
tables and parsed it (or raised the contract's error); here each kind is
carried out. `send` frames are not here: the dispatcher groups consecutive
ones for the fan-out (core/fanout.py). A handler returns False when the
mailbox must hold for an answer (a password check, a read, the catch-up).
"""

from __future__ import annotations

from chat.server.core import native
from chat.server.core.asks import Asks
from chat.server.core.catchup import CatchUp
from chat.server.core.ends import Ends
from chat.server.core.hub import Hub
from chat.server.core.login import Login
from chat.server.core.results import AcksStored, HistoryRead
from chat.server.core.user import User
from chat.server.net.inbox import Cause
from chat.server.store.seam import ReadFailed, Store
from chat.server.store.sqlite import Page
from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError, Why
from chat.shared.messages import (
    Auth,
    ClientBye,
    ClientMessage,
    HistoryRequest,
    OfflineAck,
    Ping,
    Pong,
    RosterAck,
)
from chat.shared.requests import REQUEST_TYPES as REQUESTS
from chat.shared.states import State


class PeerFrames:
    def __init__(
        self, hub: Hub, store: Store, login: Login, catchup: CatchUp, ends: Ends, asks: Asks
    ) -> None:
        self._asks = asks
        self._hub = hub
        self._store = store
        self._login = login
        self._catchup = catchup
        self._ends = ends

    def handle(
        self, user: User, frame: ClientMessage | RemoteProtocolError, tick: native.Tick
    ) -> bool:
        conn = user.conn
        match frame:
            case RemoteProtocolError() as err:
                if err.fatal:
                    reason = f"{err.code}: {err.message}"
                    self._ends.end(user, conn.error(err), reason, Cause.US, tick)
                else:
                    user.out.append(conn.error(err), tick)
            case Ping():
                user.out.append(conn.reply(Pong()), tick)
            case RosterAck(seq):
                return self._roster_ack(user, seq, tick)
            case HistoryRequest():
                return self._history(user, frame, tick)
            case OfflineAck(upto):
                user.acked = self._store.ack(user.name, upto)
            case Auth():
                return self._login.check(user, frame, tick)
            case ClientBye():
                return self._bye(user, tick)
            case _ if type(frame) in REQUESTS:
                return self._asks.handle(user, frame, tick)  # type: ignore[arg-type]
            case _:
                raise LocalProtocolError(f"no handler for {frame!r}")
        return True

    def bye(self, user: User, tick: native.Tick) -> None:
        """Answer the client's `bye` with ours, then close."""
        self._ends.end(user, user.conn.goodbye(Why.BYE), "bye", Cause.PEER, tick)

    def _bye(self, user: User, tick: native.Tick) -> bool:
        if user.acked:  # what it acknowledged is stored before it is told goodbye
            seq, mailbox, user.acked = user.acked, user.mailbox, 0
            self._store.after(seq, lambda: mailbox.resume(AcksStored()))
            return False
        self.bye(user, tick)
        return True

    def _roster_ack(self, user: User, seq: int, tick: native.Tick) -> bool:
        entering = user.conn.state is State.ROSTER
        if entering:
            user.out.hold()  # before the join: live messages wait for the catch-up
        try:
            rooms = self._hub.ack_roster(user, seq, entering, tick)
        except RemoteProtocolError as err:
            user.out.release(tick)
            user.out.append(user.conn.error(err), tick)
            return True
        if user.conn.roster_acked():
            if rooms:  # v1.2: the user's rooms, before anything else of them (section 2)
                user.out.append_first(rooms, tick)
            return self._catchup.begin(user)
        return True

    def _history(self, user: User, request: HistoryRequest, tick: native.Tick) -> bool:
        """Read a page on a reader thread; the mailbox holds until it comes (reply order).
        A room's history is its members' (v1.2 section 2)."""
        if user.rate is not None and not user.rate.take():
            err = RemoteProtocolError(Code.RATE_LIMITED, msg_id=request.id)
            user.out.append(user.conn.error(err), tick)
            return True
        if request.peer.startswith("#"):
            try:
                self._hub.check_member(user, request.peer, request.id)
            except RemoteProtocolError as err:
                user.out.append(user.conn.error(err), tick)
                return True
        mailbox, msg_id = user.mailbox, request.id

        def reply(page: Page | ReadFailed | None) -> None:
            if isinstance(page, ReadFailed):
                mailbox.resume(HistoryRead(msg_id, None, page.reason))
            else:
                mailbox.resume(HistoryRead(msg_id, page))

        self._store.read_page(user.name, request.peer, request.before, request.limit, reply)
        return False
