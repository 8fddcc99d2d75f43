"""Driving the protocol for one user, across reconnects, without any I/O.

`Session` sits on top of `chat.shared.connection.ClientConnection`: it logs
in, acknowledges every roster frame at once (the contract's rule, and the
reason a slow UI can never make the server time us out), queues messages
typed before the chat is ready, and pairs each `sent`/`error` with the
message it answers. The network thread feeds it bytes and writes what it
returns; everything here is testable with plain bytes.
"""

from __future__ import annotations

from chat.shared.connection import ClientConnection
from chat.shared.errors import FATAL_CODES, Code, RemoteProtocolError
from chat.shared.messages import (
    BROADCAST,
    TEXT_MAX,
    Auth,
    AuthOk,
    ClientBye,
    Error,
    Msg,
    MsgId,
    Ping,
    Pong,
    Recipients,
    Roster,
    RosterAck,
    Send,
    Sent,
    ServerMessage,
    parse_client_object,
    to_wire,
    valid_name,
)
from chat.shared.messages import ServerBye as ServerByeFrame
from chat.shared.states import State

from . import events as ev

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
    try:
        parse_client_object(to_wire(Send(0, to, text)))
    except RemoteProtocolError as exc:
        return exc
    return None


class Session:
    """One user's conversation with the server; a fresh `ClientConnection` per TCP connection."""

    def __init__(self, user: str, password: str, register: bool = False) -> None:
        self.user = user
        self._password = password
        self._register = register
        self._conn: ClientConnection | None = None
        self._outbox: list[Send] = []
        self._unanswered: dict[MsgId, Send] = {}
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
    def online(self) -> frozenset[str]:
        return frozenset(self._conn.roster.online) if self._conn is not None else frozenset()

    @property
    def unanswered(self) -> int:
        """Messages written or queued whose `sent` (or error) has not come back yet."""
        return len(self._unanswered) + len(self._outbox)

    # ------------------------------------------------------------ connection
    def start(self) -> bytes:
        """A new TCP connection is up: the `auth` frame to write first.

        Registration is asked for only until the first successful login; a
        reconnect logs in to the account that now exists.
        """
        if self._conn is not None and self._conn.state is not State.CLOSED:
            raise RuntimeError("start() while a connection is still open")
        self._conn = ClientConnection()
        self.bye_sent = False
        self.server_bye = None
        self.fatal_error = None
        register = self._register and not self.ever_logged_in
        return self._conn.send(Auth(self.user, self._password, register))

    def connection_lost(self) -> list[ev.NetEvent]:
        """The TCP connection is gone: messages in flight can no longer be confirmed."""
        if self._conn is not None:
            self._conn.close()
        lost = tuple(self._unanswered)
        self._unanswered.clear()
        return [ev.SendUnconfirmed(lost)] if lost else []

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
                events.append(ev.Incoming(message))
            case Sent(msg_id, delivered, missing):
                self._unanswered.pop(msg_id, None)
                events.append(ev.Delivered(msg_id, delivered, missing))
            case Error():
                return self._on_error(message, events)
            case ServerByeFrame(reason):
                self.server_bye = reason
                events.append(ev.ServerBye(reason))
            case AuthOk() | Pong():
                pass
        return b""

    def _on_roster(self, frame: Roster, events: list[ev.NetEvent]) -> bytes:
        conn = self._require_conn()
        first = conn.state is State.ROSTER
        out = conn.send(RosterAck(frame.seq))
        online = tuple(sorted(conn.roster.online))
        if first:
            registered = self._register and not self.ever_logged_in
            self.ever_logged_in = True
            events.append(ev.LoggedIn(self.user, online, registered))
            return out + self._flush_outbox()
        # A full frame can only be the first (RosterView checks seq); a delta
        # lists exactly the changes since the previous frame.
        events.append(ev.RosterChanged(tuple(frame.join), tuple(frame.leave), online))
        return out

    def _on_error(self, error: Error, events: list[ev.NetEvent]) -> bytes:
        if error.code in FATAL_CODES:  # the server closes after it (server_full, timeout, ...)
            self.fatal_error = f"{error.message} ({error.code})"
        if error.id is not None and error.id in self._unanswered:
            del self._unanswered[error.id]
            events.append(ev.SendRefused(error.id, error.code, error.message))
        elif self.state is State.AUTH and error.code in LOGIN_REFUSALS:
            self.login_failed = True
            events.append(ev.LoginFailed(error.code, error.message))
        else:
            events.append(ev.ServerNotice(error.code, error.message))
        return b""

    # --------------------------------------------------------------- output
    def send(self, msg_id: MsgId, to: Recipients, text: str) -> bytes:
        """Bytes to write for a new message; queued (b"") until the chat is ready."""
        problem = check_outgoing(to, text)
        if problem is not None:
            raise ValueError(problem)
        message = Send(msg_id, to, text)
        if self.state is not State.CHAT:
            self._outbox.append(message)
            return b""
        self._unanswered[msg_id] = message
        return self._require_conn().send(message)

    def _flush_outbox(self) -> bytes:
        conn = self._require_conn()
        out = bytearray()
        for message in self._outbox:
            self._unanswered[message.id] = message
            out += conn.send(message)
        self._outbox.clear()
        return bytes(out)

    def ping(self) -> bytes:
        return self._require_conn().send(Ping())

    def bye(self) -> bytes:
        """The polite goodbye; nothing is written after it on this connection."""
        self.bye_sent = True
        return self._require_conn().send(ClientBye())

    def _require_conn(self) -> ClientConnection:
        if self._conn is None or self._conn.state is State.CLOSED:
            raise RuntimeError("no open connection")
        return self._conn
