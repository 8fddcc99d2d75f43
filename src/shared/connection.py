"""Sans-IO connections: bytes in, typed events out, and the state they imply.

`ServerConnection` is the protocol half of one server connection; the server's
I/O owns the socket and calls in. `ClientConnection` is the same for a
client. Neither does any I/O, so both are tested with plain bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import Code, LocalProtocolError, RemoteProtocolError
from .framing import MAX_SERVER_FRAME, FrameDecoder
from .messages import (
    Auth,
    AuthOk,
    ClientMessage,
    Error,
    MsgId,
    Roster,
    RosterAck,
    ServerBye,
    ServerMessage,
    encode,
    encode_sents,
    parse_server_message,
    read_client,
)
from .roster import RosterView
from .states import CLIENT_RULES, State, Transition, check_client_frame, next_state

#: Failed logins allowed on one connection; the last is answered by too_many_attempts.
MAX_FAILED_AUTHS = 5
_REFUSED = Code.BAD_REQUEST  # a type missing from a state's rules: unknown there


class ServerConnection:
    """One client as the server sees it: its state, and every frame that changes it.

    Fed one event at a time (a frame payload, a login outcome, the peer going
    away, a deadline), it checks the event against the state tables, makes
    its own transition and returns the bytes to send, built here. The server
    reacts to what it returns and never sets `state` itself. It is used from
    one thread at a time (the server runs it in the connection's mailbox), so
    it holds no lock. Framing is not here: the server cuts frames where it
    reads (`FrameDecoder`), and hands over whole payloads.
    """

    __slots__ = ("_login_pending", "failed_auths", "max_failed_auths", "state", "user")

    def __init__(self, max_failed_auths: int = MAX_FAILED_AUTHS) -> None:
        self.state = State.AUTH
        self.user: str | None = None
        self.failed_auths = 0
        self.max_failed_auths = max_failed_auths
        self._login_pending = False

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def receive(self, payload: bytes) -> ClientMessage:
        """One client frame, checked against the state: the message to act on.

        Raises RemoteProtocolError for a frame the contract refuses; answer
        it with `error()`. An `auth` starts a login: until `login_succeeded`
        or `login_failed` no other frame may be fed (the server holds them
        back, so that replies keep the order of the frames they answer).
        """
        state = self.state
        if state is State.CLOSED:
            raise LocalProtocolError("frame fed to a closed connection")
        if self._login_pending:
            raise LocalProtocolError("frame fed while a login is being checked")
        kind, msg_id, message = read_client(payload)
        if type(kind) is not str or CLIENT_RULES[state].get(kind, _REFUSED) is not None:
            check_client_frame(state, kind, msg_id)  # not accepted here: the contract's error
        if isinstance(message, RemoteProtocolError):
            raise message
        if type(message) is Auth:
            self._login_pending = True
        return message

    def login_succeeded(self, user: str) -> bytes:
        """AUTH -> ROSTER: the `auth_ok` (the full roster must follow it at once)."""
        self._end_login()
        self.state = next_state(self.state, Transition.AUTH_OK)
        self.user = user
        return encode(AuthOk(user))

    def login_failed(self, err: RemoteProtocolError) -> bytes:
        """The login is refused with `err`: its error frame.

        Wrong credentials are counted; the last allowed failure is answered
        by `too_many_attempts` alone, which closes the connection.
        """
        self._end_login()
        if err.code is Code.BAD_CREDENTIALS:
            self.failed_auths += 1
            if self.failed_auths >= self.max_failed_auths:
                return self.error(RemoteProtocolError(Code.TOO_MANY_ATTEMPTS))
        return self.error(err)

    def login_aborted(self, reason: str) -> bytes:
        """The login cannot be completed on our side (the account cannot be saved): `bye`."""
        self._end_login()
        return self.goodbye(reason)

    def roster_acked(self) -> bool:
        """A roster_ack the roster accepted; True when it is the first (ROSTER -> CHAT)."""
        if self.state is State.ROSTER:
            self.state = next_state(self.state, Transition.FIRST_ROSTER_ACK)
            return True
        if self.state is not State.CHAT:
            raise LocalProtocolError(f"roster_ack acted on in {self.state.value}")
        return False

    def reply(self, message: ServerMessage) -> bytes:
        """A frame that answers the peer and changes no state (`pong`, `sent`, ...)."""
        if self.state is State.CLOSED:
            raise LocalProtocolError(f"{message.type} after the final frame")
        return encode(message)

    def sent(
        self,
        ids: Iterable[MsgId],
        delivered: bytes | Iterable[str],
        missing: Iterable[str],
        queued: Iterable[str],
    ) -> bytes:
        """The `sent` frames of sends with one outcome (`delivered` pre-encoded: `encode_names`)."""
        if self.state is State.CLOSED:
            raise LocalProtocolError("sent after the final frame")
        return encode_sents(ids, delivered, missing, queued)

    def error(self, err: RemoteProtocolError) -> bytes:
        """The error frame for `err`; a fatal code is the final frame (-> CLOSED)."""
        frame = self.reply(Error(err.code, err.message, err.msg_id))
        if err.fatal:
            self.state = next_state(self.state, Transition.CLOSE)
        return frame

    def goodbye(self, reason: str) -> bytes:
        """The final `bye` (the answer to the client's, or the server's own) -> CLOSED."""
        frame = self.reply(ServerBye(reason))
        self.state = next_state(self.state, Transition.CLOSE)
        return frame

    def peer_gone(self) -> None:
        """The peer's stream ended (EOF or reset): nothing more is sent -> CLOSED."""
        self._login_pending = False
        self.state = next_state(self.state, Transition.CLOSE)

    def _end_login(self) -> None:
        if not self._login_pending or self.state is not State.AUTH:
            raise LocalProtocolError("login outcome without a login being checked")
        self._login_pending = False


class ClientConnection:
    """The server as a client sees it: framing, state, the roster view."""

    def __init__(self, max_frame: int = MAX_SERVER_FRAME) -> None:
        self._decoder = FrameDecoder(max_frame)
        self.state = State.AUTH
        self.roster = RosterView()
        self.user: str | None = None

    def receive_data(self, data: bytes) -> None:
        self._decoder.feed(data)

    def next_event(self) -> ServerMessage | None:
        """The next server message; `auth_ok` and roster frames update the state."""
        payload = self._decoder.next_frame()
        if payload is None:
            return None
        event = parse_server_message(payload)
        if isinstance(event, AuthOk):
            if self.state is not State.AUTH:  # the server's mistake, not ours
                raise RemoteProtocolError(Code.BAD_REQUEST, "auth_ok after login")
            self.state = next_state(self.state, Transition.AUTH_OK)
            self.user = event.user
        elif isinstance(event, Roster):
            self.roster.apply(event)
        return event

    def send(self, message: ClientMessage) -> bytes:
        """Encode `message`; a frame the current state forbids is our own bug."""
        if CLIENT_RULES[self.state].get(message.type, Code.BAD_REQUEST) is not None:
            raise LocalProtocolError(f"{message.type} is not allowed in {self.state.value}")
        if isinstance(message, RosterAck) and self.state is State.ROSTER:
            self.state = next_state(self.state, Transition.FIRST_ROSTER_ACK)
        return encode(message)

    def close(self) -> None:
        self.state = next_state(self.state, Transition.CLOSE)
