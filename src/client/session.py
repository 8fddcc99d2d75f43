"""Driving the protocol for one user, across reconnects, without any I/O.

`Session` sits on top of `chat.shared.connection.ClientConnection`: it logs
in, acknowledges every roster frame at once (the contract's rule, and the
reason a slow UI can never make the server time us out), queues messages
and history requests made before the chat is ready, and pairs each
`sent`/`history`/`error` with the request it answers. The network thread
feeds it bytes and writes what it returns; everything here is testable with
plain bytes.

Offline messages (v1.1 section 3) are acknowledged only when the UI says so
(`offline_ack`), after it has shown them: a crash in between means they come
again, never that they are lost.

Protocol v1.2: the `auth` asks for the features the client uses (`WANTED`:
rooms, read markers, echo, typing); what the server grants is in
`features` (nothing from a v1.1 server, which ignores the field). A request
of a feature that was not granted never reaches the wire: it fails here
(`RequestFailed` with no code, a `SendRefused` for a message to a room),
and `read` / `typing` are simply not sent. The v1.2 requests that carry an
`id` (rooms, `user_search`) are paired with their `ok`, answer or `error`
like history requests.
"""

from __future__ import annotations

import logging
from collections import deque

from chat.shared.connection import ClientConnection
from chat.shared.errors import FATAL_CODES, Code, RemoteProtocolError
from chat.shared.features import ECHO, READ, ROOMS, TYPING, missing_feature
from chat.shared.messages import (
    BROADCAST,
    HISTORY_LIMIT_DEFAULT,
    TEXT_MAX,
    Auth,
    AuthOk,
    ClientBye,
    Error,
    HistoryPage,
    HistoryRequest,
    Markers,
    Msg,
    MsgId,
    OfflineAck,
    Ok,
    Ping,
    Pong,
    Read,
    ReadNotice,
    Recipients,
    RoomCreate,
    RoomEvent,
    RoomInvite,
    RoomJoin,
    RoomKick,
    RoomLeave,
    RoomList,
    RoomListRequest,
    Rooms,
    RoomSent,
    RoomTopic,
    Roster,
    RosterAck,
    Send,
    Sent,
    ServerMessage,
    Typing,
    TypingNotice,
    Users,
    UserSearch,
    parse_client_object,
    to_wire,
    valid_name,
)
from chat.shared.messages import ServerBye as ServerByeFrame
from chat.shared.states import State

from . import events as ev

log = logging.getLogger("chat.client.session")

#: The v1.2 features the client asks for at login (resume is not used yet).
WANTED: tuple[str, ...] = (ROOMS, READ, ECHO, TYPING)

#: The v1.2 requests that carry an `id` and get exactly one answer.
Request = (
    RoomCreate
    | RoomJoin
    | RoomLeave
    | RoomInvite
    | RoomKick
    | RoomTopic
    | RoomListRequest
    | UserSearch
)
_Outgoing = Send | HistoryRequest | Request

#: Error codes that, answering our `auth`, mean the login itself was refused
#: (as opposed to the connection failing, which a reconnect may cure).
LOGIN_REFUSALS = frozenset(
    {
        Code.BAD_CREDENTIALS,
        Code.USER_EXISTS,
        Code.TOO_MANY_ATTEMPTS,
        Code.BAD_REQUEST,
        Code.NOT_AUTHENTICATED,
        Code.RATE_LIMITED,
    }
)


def check_outgoing(to: Recipients, text: str) -> str | None:
    """Why the server would refuse this message, or None; checked before it is queued.

    The verdict is the shared protocol core's: the frame is put through
    `parse_client_object`, the very validation the server runs on a `send`.
    Only the wording is ours, for people, and it names the field that failed.
    """
    refusal = _refusal(to, text)
    if refusal is None:
        return None
    if to != BROADCAST and (on_to := _refusal(to, _VALID_TEXT)) is not None:
        bad = next((name for name in to if not valid_name(name)), None)
        if bad is not None:
            return f"not a valid user name: {bad!r}"
        return "no recipients" if not to else on_to.message
    if not text:
        return "empty message"
    if len(text) > TEXT_MAX:
        return f"message too long ({len(text)} characters, at most {TEXT_MAX})"
    return refusal.message  # a rule we have no words of our own for


_VALID_TEXT = "x"


def _refusal(to: Recipients, text: str) -> RemoteProtocolError | None:
    return _shared_verdict(Send(0, to, text))


def check_history(peer: str, before: int | None, limit: int) -> str | None:
    """Why the server would refuse this history request, or None (the shared core decides)."""
    refusal = _shared_verdict(HistoryRequest(0, peer, before, limit))
    return None if refusal is None else refusal.message


def check_request(message: Request) -> str | None:
    """Why the server would refuse this request's fields, or None (the shared core decides)."""
    refusal = _shared_verdict(message)
    return None if refusal is None else refusal.message


def not_offered(feature: str) -> str:
    """The words for a request of a feature the server did not grant."""
    return f"the server does not offer {feature} (protocol v1.2)"


def _shared_verdict(message: _Outgoing) -> RemoteProtocolError | None:
    try:
        parse_client_object(to_wire(message))
    except RemoteProtocolError as exc:
        return exc
    return None


class Session:
    """One user's conversation with the server; a fresh `ClientConnection` per TCP connection."""

    def __init__(
        self,
        user: str,
        password: str,
        register: bool = False,
        login_if_exists: bool = False,
        features: tuple[str, ...] = WANTED,
    ) -> None:
        self.user = user
        self._password = password
        self._register = register
        self._wanted = features
        #: Registering and the account exists: log in with the same password instead (once).
        self._login_if_exists = login_if_exists
        self._registering = False  # what the `auth` of this connection asked for
        self._conn: ClientConnection | None = None
        #: Written before CHAT: sent, in order, right after the first roster_ack.
        self._outbox: list[_Outgoing] = []
        self._unanswered: dict[MsgId, Send] = {}
        self._asked: dict[MsgId, HistoryRequest] = {}  # history requests written, unanswered
        self._requests: dict[MsgId, Request] = {}  # v1.2 requests written, unanswered
        #: Whether the server speaks v1.2 (its `auth_ok` has `features`, even empty).
        self.v12 = False
        # Per connection: which pings are the login's sync ping (True), and offline ids.
        self._pings: deque[bool] = deque()
        self._offline_count = 0
        self._offline_seen: int | None = None  # highest offline id this connection delivered
        self._offline_acked: int | None = None
        self.ever_logged_in = False
        self.login_failed = False
        self.bye_sent = False
        self.server_bye: str | None = None
        self.fatal_error: str | None = None  # "message (code)" of a fatal error frame

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> State | None:
        """The current connection's state; None between connections."""
        return self._conn.state if self._conn is not None else None

    @property
    def features(self) -> frozenset[str]:
        """The v1.2 features the current connection was granted (none between them)."""
        return self._conn.features if self._conn is not None else frozenset()

    @property
    def online(self) -> frozenset[str]:
        return frozenset(self._conn.roster.online) if self._conn is not None else frozenset()

    @property
    def unanswered(self) -> int:
        """Messages written or queued whose `sent` (or error) has not come back yet."""
        return len(self._unanswered) + sum(isinstance(m, Send) for m in self._outbox)

    # ------------------------------------------------------------ connection
    def start(self) -> bytes:
        """A new TCP connection is up: the `auth` frame to write first.

        Registration is asked for only until the first successful login; a
        reconnect logs in to the account that now exists.
        """
        if self._conn is not None and self._conn.state is not State.CLOSED:
            raise RuntimeError("start() while a connection is still open")
        self._conn = ClientConnection()
        self._pings.clear()
        self._offline_count = 0
        self._offline_seen = self._offline_acked = None
        self.bye_sent = False
        self.server_bye = None
        self.fatal_error = None
        self._registering = self._register and not self.ever_logged_in
        self.v12 = False
        return self._conn.send(self._auth())

    def _auth(self) -> Auth:
        return Auth(self.user, self._password, self._registering, self._wanted or None)

    def connection_lost(self) -> list[ev.NetEvent]:
        """The TCP connection is gone: requests in flight can no longer be answered.

        History requests still in the outbox stay there for the next login.
        """
        if self._conn is not None:
            self._conn.close()
        events: list[ev.NetEvent] = []
        lost = tuple(self._unanswered)
        self._unanswered.clear()
        if lost:
            events.append(ev.SendUnconfirmed(lost))
        for request in self._asked.values():
            events.append(
                ev.HistoryFailed(request.id, request.peer, request.before, None, "connection lost")
            )
        self._asked.clear()
        for pending in self._requests.values():
            events.append(_request_failed(pending, None, "connection lost"))
        self._requests.clear()
        return events

    # ---------------------------------------------------------------- input
    def receive(self, data: bytes) -> tuple[bytes, list[ev.NetEvent]]:
        """Feed bytes from the server: (bytes to write back, events for the UI).

        Raises RemoteProtocolError when the server breaks the framing or the
        roster sequence; the caller drops the connection.
        """
        conn = self._require_conn()
        conn.receive_data(data)
        out = bytearray()
        events: list[ev.NetEvent] = []
        while (message := conn.next_event()) is not None:
            out += self._handle(message, events)
        return bytes(out), events

    def _handle(self, message: ServerMessage, events: list[ev.NetEvent]) -> bytes:
        match message:
            case Roster():
                return self._on_roster(message, events)
            case Msg():
                if message.offline:
                    self._offline_count += 1
                    seen = self._offline_seen
                    self._offline_seen = message.id if seen is None else max(seen, message.id)
                events.append(ev.Incoming(message))
            case Sent(msg_id, delivered, missing, queued, stored):
                self._unanswered.pop(msg_id, None)
                events.append(ev.Delivered(msg_id, delivered, missing, queued, stored))
            case RoomSent(msg_id, stored, room):
                self._unanswered.pop(msg_id, None)
                events.append(ev.RoomDelivered(msg_id, stored, room))
            case HistoryPage(request_id, messages, more):
                self._on_history(request_id, messages, more, events)
            case Ok(request_id):
                self._on_answer(request_id, events)
            case RoomList(request_id, rooms):
                if self._on_answer(request_id, events, quiet=True):
                    events.append(ev.RoomsListed(request_id, rooms))
            case Users(request_id, users, more):
                request = self._requests.get(request_id)
                if self._on_answer(request_id, events, quiet=True):
                    prefix = request.prefix if isinstance(request, UserSearch) else ""
                    events.append(ev.UsersFound(request_id, prefix, users, more))
            case Rooms(rooms, invites):
                events.append(ev.RoomsState(rooms, invites))
            case RoomEvent():
                events.append(ev.RoomNotice(message))
            case Markers(markers):
                events.append(ev.MarkersLoaded(markers))
            case ReadNotice(peer, upto):
                events.append(ev.ReadMoved(peer, upto))
            case TypingNotice(sender, to, state):
                events.append(ev.TypingSeen(sender, to, state))
            case Error():
                return self._on_error(message, events)
            case ServerByeFrame(reason) if not self.bye_sent:
                self.server_bye = reason
                events.append(ev.ServerBye(reason))
            case ServerByeFrame():
                pass  # the answer to our own bye: nothing the user needs to read
            case Pong():
                if self._pings and self._pings.popleft():
                    events.append(ev.CaughtUp(self._offline_count))
            case AuthOk(_, features):
                self.v12 = features is not None
        return b""

    def _on_answer(self, request_id: MsgId, events: list[ev.NetEvent], quiet: bool = False) -> bool:
        """An answer to v1.2 request `request_id`: `RequestDone` (unless `quiet`: the caller
        reports the answer itself); False when it answers nothing of ours."""
        request = self._requests.pop(request_id, None)
        if request is None:
            log.warning("answer for an unknown request id %r dropped", request_id)
            return False
        if not quiet:
            events.append(
                ev.RequestDone(
                    request_id, request.type, getattr(request, "room", ""), _user_of(request)
                )
            )
        return True

    def _on_history(
        self, request_id: MsgId, messages: tuple[Msg, ...], more: bool, events: list[ev.NetEvent]
    ) -> None:
        request = self._asked.pop(request_id, None)
        if request is None:  # not ours (or already failed): nobody waits for it
            log.warning("history answer for an unknown request id %r dropped", request_id)
            return
        events.append(ev.HistoryLoaded(request_id, request.peer, request.before, messages, more))

    def _on_roster(self, frame: Roster, events: list[ev.NetEvent]) -> bytes:
        conn = self._require_conn()
        first = conn.state is State.ROSTER
        out = conn.send(RosterAck(frame.seq))
        online = tuple(sorted(conn.roster.online))
        if first:
            registered = self._registering
            self.ever_logged_in = True
            events.append(ev.LoggedIn(self.user, online, registered, conn.features))
            # Offline messages follow the ack; the pong of this ping comes after them.
            self._pings.append(True)
            return out + conn.send(Ping()) + self._flush_outbox(events)
        # A full frame can only be the first (RosterView checks seq); a delta
        # lists exactly the changes since the previous frame.
        events.append(ev.RosterChanged(tuple(frame.join), tuple(frame.leave), online))
        return out

    def _on_error(self, error: Error, events: list[ev.NetEvent]) -> bytes:
        if error.code in FATAL_CODES:  # the server closes after it (server_full, timeout, ...)
            self.fatal_error = f"{error.message} ({error.code})"
        # (a refused registration falls back to a login with the same `auth`, features too)
        if error.id is not None and error.id in self._unanswered:
            del self._unanswered[error.id]
            events.append(ev.SendRefused(error.id, error.code, error.message))
        elif error.id is not None and error.id in self._requests:
            request = self._requests.pop(error.id)
            events.append(_request_failed(request, error.code, error.message))
        elif error.id is not None and error.id in self._asked:
            request = self._asked.pop(error.id)
            events.append(
                ev.HistoryFailed(
                    request.id, request.peer, request.before, error.code, error.message
                )
            )
        elif self.state is State.AUTH and error.code in LOGIN_REFUSALS:
            if error.code == Code.USER_EXISTS and self._registering and self._login_if_exists:
                # The connection stays in AUTH after a non-fatal error: log in on it.
                self._registering = self._register = False
                events.append(ev.AccountExists(self.user))
                return self._require_conn().send(self._auth())
            self.login_failed = True
            events.append(ev.LoginFailed(error.code, error.message, self._registering))
        else:
            events.append(ev.ServerNotice(error.code, error.message))
        return b""

    # --------------------------------------------------------------- output
    def send(self, msg_id: MsgId, to: Recipients, text: str) -> bytes:
        """Bytes to write for a new message; queued (b"") until the chat is ready.

        ValueError for a message the server would refuse, and (in CHAT) for one to a
        room when the server has no rooms; queued, that one is a `SendRefused` later."""
        problem = check_outgoing(to, text)
        if problem is not None:
            raise ValueError(problem)
        self._check_free(msg_id)
        return self._write_or_queue(Send(msg_id, to, text))

    def request(self, message: Request) -> bytes:
        """Bytes to write for a v1.2 request with an `id`; queued (b"") until the chat is
        ready. Its answer comes back as `RequestDone`, `RoomsListed`, `UsersFound` or
        `RequestFailed` with that id (which must differ from every other id in use).

        ValueError for fields the server would refuse, and (in CHAT) for a request the
        server does not offer; queued, that one is a `RequestFailed` later."""
        problem = check_request(message)
        if problem is not None:
            raise ValueError(problem)
        self._check_free(message.id)
        return self._write_or_queue(message)

    def read(self, peer: str, upto: int) -> bytes:
        """`read`: this user has read `peer` ("*", a name, a room) up to `upto`. b"" outside
        CHAT or without `read` (nothing is queued: the next login's markers say the rest)."""
        message = Read(peer, upto)
        if self.state is not State.CHAT or self._unsupported(message) is not None:
            return b""
        if _shared_verdict(message) is not None:  # type: ignore[arg-type]
            raise ValueError(f"not a conversation: {peer!r}")
        return self._require_conn().send(message)

    def typing(self, to: str | tuple[str, ...], state: str) -> bytes:
        """`typing` to a person, a group or a room; b"" outside CHAT or without `typing`."""
        message = Typing(to, state)
        if self.state is not State.CHAT or self._unsupported(message) is not None:
            return b""
        if _shared_verdict(message) is not None:  # type: ignore[arg-type]
            raise ValueError(f"not a typing notice: {to!r} {state!r}")
        return self._require_conn().send(message)

    def _unsupported(self, message: _Outgoing | Read | Typing) -> str | None:
        """Why the current connection cannot carry `message` (a feature not granted)."""
        if isinstance(message, UserSearch):  # no feature, but a v1.1 server knows no such frame
            return None if self.v12 else not_offered("user_search")
        feature = missing_feature(message, self.features)
        return None if feature is None else not_offered(feature)

    def history(
        self,
        request_id: MsgId,
        peer: str,
        before: int | None = None,
        limit: int = HISTORY_LIMIT_DEFAULT,
    ) -> bytes:
        """Bytes to write for a history request; queued (b"") until the chat is ready.

        The answer comes back as `HistoryLoaded` (or `HistoryFailed`) with
        this `request_id`, which must differ from every message id in use.
        """
        problem = check_history(peer, before, limit)
        if problem is not None:
            raise ValueError(problem)
        self._check_free(request_id)
        return self._write_or_queue(HistoryRequest(request_id, peer, before, limit))

    def offline_ack(self, upto: int) -> bytes:
        """Bytes that forget the offline messages up to `upto` on the server; b"" when there
        is nothing this connection may acknowledge.

        Only what this very connection delivered is acknowledged (`upto` is
        capped at its highest offline id): outside CHAT, or after a reconnect
        that has not delivered them again, nothing is sent, and the server
        simply delivers them again at the next login (same ids).
        """
        if self.state is not State.CHAT or self._offline_seen is None:
            return b""
        upto = min(upto, self._offline_seen)
        if self._offline_acked is not None and upto <= self._offline_acked:
            return b""
        self._offline_acked = upto
        return self._require_conn().send(OfflineAck(upto))

    def _check_free(self, request_id: MsgId) -> None:
        pending = (m.id for m in self._outbox)
        if (
            request_id in self._unanswered
            or request_id in self._asked
            or request_id in self._requests
            or request_id in pending
        ):
            raise ValueError(f"id {request_id!r} is already waiting for an answer")

    def _write_or_queue(self, message: _Outgoing) -> bytes:
        if self.state is not State.CHAT:
            self._outbox.append(message)
            return b""
        problem = self._unsupported(message)
        if problem is not None:
            raise ValueError(problem)
        return self._write(message)

    def _write(self, message: _Outgoing) -> bytes:
        if isinstance(message, Send):
            self._unanswered[message.id] = message
        elif isinstance(message, HistoryRequest):
            self._asked[message.id] = message
        else:
            self._requests[message.id] = message
        return self._require_conn().send(message)

    def _flush_outbox(self, events: list[ev.NetEvent]) -> bytes:
        """What waited for the chat, in order; what this server cannot carry fails."""
        out = bytearray()
        for message in self._outbox:
            problem = self._unsupported(message)
            if problem is None:
                out += self._write(message)
            elif isinstance(message, Send):
                events.append(ev.SendRefused(message.id, Code.BAD_REQUEST, problem))
            elif isinstance(message, HistoryRequest):
                events.append(
                    ev.HistoryFailed(message.id, message.peer, message.before, None, problem)
                )
            else:
                events.append(_request_failed(message, None, problem))
        self._outbox.clear()
        return bytes(out)

    def ping(self) -> bytes:
        out = self._require_conn().send(Ping())
        self._pings.append(False)
        return out

    def bye(self) -> bytes:
        """The polite goodbye; nothing is written after it on this connection."""
        self.bye_sent = True
        return self._require_conn().send(ClientBye())

    def _require_conn(self) -> ClientConnection:
        if self._conn is None or self._conn.state is State.CLOSED:
            raise RuntimeError("no open connection")
        return self._conn


def _user_of(request: Request) -> str:
    return getattr(request, "user", "")


def _request_failed(request: Request, code: str | None, message: str) -> ev.RequestFailed:
    return ev.RequestFailed(
        request.id, request.type, code, message, getattr(request, "room", ""), _user_of(request)
    )
