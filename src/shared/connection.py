"""Sans-IO connections: bytes in, typed events out, and the state they imply.

`ServerConnection` is the protocol half of the server's `User`; the server's
I/O owns the socket and calls in. `ClientConnection` is the same for a
client. Neither does any I/O, so both are tested with plain bytes.
"""

from __future__ import annotations

from .errors import Code, LocalProtocolError, RemoteProtocolError
from .framing import DEFAULT_MAX_FRAME, MAX_SERVER_FRAME, FrameDecoder
from .messages import (
    AuthOk,
    ClientMessage,
    Roster,
    RosterAck,
    ServerMessage,
    decode_object,
    encode,
    parse_client_object,
    parse_server_message,
    raw_send_id,
)
from .roster import ChangeLog, RosterOutbox, RosterView
from .states import CLIENT_RULES, State, Transition, check_client_frame, next_state

#: Failed logins allowed on one connection; the last is answered by too_many_attempts.
MAX_FAILED_AUTHS = 5


class ServerConnection:
    """One client as the server sees it: framing, state, roster outbox, login failures."""

    __slots__ = ("_decoder", "failed_auths", "roster", "state", "user")

    def __init__(
        self, max_frame: int = DEFAULT_MAX_FRAME, roster_log: ChangeLog | None = None
    ) -> None:
        self._decoder = FrameDecoder(max_frame)
        self.state = State.AUTH
        self.roster = RosterOutbox(roster_log)
        self.failed_auths = 0
        self.user: str | None = None

    def receive_data(self, data: bytes) -> None:
        self._decoder.feed(data)

    def next_event(self) -> ClientMessage | None:
        """The next valid client message, None when more bytes are needed.

        Raises RemoteProtocolError: fatal codes (bad_frame, frame_too_large)
        mean the stream is lost; the others answer this frame only.
        """
        payload = self.next_payload()
        return None if payload is None else self.parse_payload(payload)

    def next_payload(self) -> bytes | None:
        """Framing only: the next whole payload (fatal framing errors raise here).

        The server splits framing (its I/O loop) from parsing (its workers);
        `next_event` does both.
        """
        return self._decoder.next_frame()

    def parse_payload(self, payload: bytes) -> ClientMessage:
        """Decode one payload and check it against the current state."""
        obj = decode_object(payload)
        check_client_frame(self.state, obj["type"], raw_send_id(obj))
        return parse_client_object(obj)

    def auth_succeeded(self, user: str, online: list[str]) -> tuple[AuthOk, Roster]:
        """Enter ROSTER: the `auth_ok` and the full roster that must follow it at once."""
        self.state = next_state(self.state, Transition.AUTH_OK)
        self.user = self.roster.own = user
        return AuthOk(user), self.roster.full(online)

    def auth_failed(self) -> None:
        """Count a failed login; raise too_many_attempts (fatal) at the limit."""
        if self.state is not State.AUTH:
            raise LocalProtocolError("auth failure outside AUTH")
        self.failed_auths += 1
        if self.failed_auths >= MAX_FAILED_AUTHS:
            raise RemoteProtocolError(Code.TOO_MANY_ATTEMPTS)

    def roster_acked(self, ack: RosterAck) -> tuple[bool, Roster | None]:
        """Take a roster_ack: (whether this entered CHAT, the delta to send now)."""
        delta = self.roster.ack(ack.seq)
        entered = self.state is State.ROSTER
        if entered:
            self.state = next_state(self.state, Transition.FIRST_ROSTER_ACK)
        return entered, delta

    def close(self) -> None:
        self.state = next_state(self.state, Transition.CLOSE)


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
