"""Sans-IO connections: bytes in, typed events out, and the state they imply.

`ServerConnection` is the protocol half of one server connection; the server's
I/O owns the socket and calls in. `ClientConnection` is the same for a
client. Neither does any I/O, so both are tested with plain bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import Code, LocalProtocolError, RemoteProtocolError, not_granted
from .features import (
    CHECKED_TYPES,
    FRAME_FEATURES,
    RESUME,
    ROOMS,
    check_features,
    granted,
    missing_feature,
)
from .framing import MAX_SERVER_FRAME, FrameDecoder
from .messages import (
    BROADCAST,
    CLIENT_TYPES,
    V11_CLIENT_TYPES,
    Auth,
    AuthOk,
    ClientMessage,
    Error,
    MsgId,
    Roster,
    RosterAck,
    Send,
    ServerBye,
    ServerMessage,
    encode,
    encode_room_sents,
    encode_sents,
    parse_server_message,
    read_client,
    read_send,
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

    `offered` is what the server speaks: None for a v1.1 server, to which every
    v1.2 frame is an unknown type (`bad_request`) and which grants nothing; or
    the v1.2 features it offers (`features.FEATURES`, or fewer), `()` for none.
    The connection negotiates them itself: the `auth` says what it asks for,
    `login_succeeded` grants (`features.granted`) and writes the `auth_ok`, and
    from then on `receive` refuses a frame or field of a feature not granted
    (`bad_request`, with the id). `features` is what was granted.
    """

    __slots__ = (
        "_asked",
        "_login_pending",
        "_offered",
        "_types",
        "failed_auths",
        "features",
        "max_failed_auths",
        "state",
        "user",
    )

    def __init__(
        self, max_failed_auths: int = MAX_FAILED_AUTHS, offered: Iterable[str] | None = None
    ) -> None:
        self.state = State.AUTH
        self.user: str | None = None
        self.failed_auths = 0
        self.max_failed_auths = max_failed_auths
        self._login_pending = False
        self._offered = None if offered is None else tuple(offered)
        self._types = V11_CLIENT_TYPES if offered is None else CLIENT_TYPES
        self._asked: tuple[str, ...] | None = None
        #: The v1.2 features granted at login (empty before it, and on a v1.1 connection).
        self.features: frozenset[str] = frozenset()

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def receive(self, payload: bytes) -> ClientMessage:
        """One client frame, checked against the state: the message to act on.

        Raises RemoteProtocolError for a frame the contract refuses; answer
        it with `error()`. The order: the state (`CLIENT_RULES`), the feature of
        the frame's type, the fields, the feature of a field (a room, a token).
        An `auth` starts a login: until `login_succeeded`
        or `login_failed` no other frame may be fed (the server holds them
        back, so that replies keep the order of the frames they answer).
        """
        state = self.state
        if state is State.CHAT:  # the hot path: a send to "*" or to names, allowed here
            send = read_send(payload)
            if send is not None:
                return send
        elif state is State.CLOSED:
            raise LocalProtocolError("frame fed to a closed connection")
        if self._login_pending:
            raise LocalProtocolError("frame fed while a login is being checked")
        kind, msg_id, message = read_client(payload)
        if (
            type(kind) is not str
            or CLIENT_RULES[state].get(kind, _REFUSED) is not None
            or kind not in self._types
        ):
            if type(kind) is str and kind not in self._types:  # v1.2 on a v1.1 server
                raise RemoteProtocolError(Code.BAD_REQUEST, f"unknown type {kind!r}"[:80], msg_id)
            check_client_frame(state, kind, msg_id)  # not accepted here: the contract's error
        need = FRAME_FEATURES.get(kind)
        if need is not None and need not in self.features:  # whatever its fields hold
            raise RemoteProtocolError(Code.BAD_REQUEST, not_granted(need), msg_id)
        if isinstance(message, RemoteProtocolError):
            raise message
        kind_of = type(message)
        if kind_of is Send:  # FIELD_FEATURES[("send", "to")], inline on the hot path
            if type(message.to) is str and message.to != BROADCAST and ROOMS not in self.features:
                raise RemoteProtocolError(Code.BAD_REQUEST, not_granted(ROOMS), msg_id)
        elif kind_of is Auth:
            asked = message.features or ()
            check_features(message, granted(asked, self._offered or ()))  # a token: `resume`
            self._asked = message.features
            self._login_pending = True
        elif kind in CHECKED_TYPES:
            check_features(message, self.features, msg_id)
        return message

    def login_succeeded(self, user: str, token: str | None = None) -> bytes:
        """AUTH -> ROSTER: the `auth_ok` (the full roster must follow it at once).

        The features are granted here: those the `auth` asked for that the server
        offers, in the order asked. The `auth_ok` lists them only when the `auth`
        had a `features` field (even an empty one) and the server speaks v1.2: a
        v1.1 client's `auth_ok` stays byte for byte v1.1. `token` (a fresh one, for
        `resume`) is for a connection granted `resume` only.
        """
        if self._offered is None or self._asked is None:
            given: tuple[str, ...] | None = None
        else:
            given = granted(self._asked, self._offered)
        if token is not None and RESUME not in (given or ()):
            raise LocalProtocolError("a token for a connection not granted 'resume'")
        self._end_login()
        self.state = next_state(self.state, Transition.AUTH_OK)
        self.user = user
        self.features = frozenset(given or ())
        return encode(AuthOk(user, given, token))

    def login_failed(self, err: RemoteProtocolError) -> bytes:
        """The login is refused with `err`: its error frame.

        Wrong credentials are counted; the last allowed failure is answered
        by `too_many_attempts` alone, which closes the connection.
        """
        self._end_login()
        self._asked = None
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
        msg_ids: Iterable[int] | None = None,
    ) -> bytes:
        """The `sent` frames of sends with one outcome (`delivered` pre-encoded:
        `encode_names`). `msg_ids`, beside `ids`: the id of each send's message. A v1.2
        server gives them always (every `sent` carries `msg_id`, v1.2 section 1); a v1.1
        server (`offered` None) may leave them out, and its `sent` is v1.1's."""
        if self.state is State.CLOSED:
            raise LocalProtocolError("sent after the final frame")
        if msg_ids is None and self._offered is not None:
            raise LocalProtocolError("a v1.2 sent without its msg_id")
        return encode_sents(ids, delivered, missing, queued, msg_ids)

    def room_sent(self, ids: Iterable[MsgId], msg_ids: Iterable[int], room: str) -> bytes:
        """The `sent` frames of sends to `room` (v1.2: no name lists)."""
        if self.state is State.CLOSED:
            raise LocalProtocolError("sent after the final frame")
        if ROOMS not in self.features:
            raise LocalProtocolError("a room's sent to a connection not granted 'rooms'")
        return encode_room_sents(ids, msg_ids, room)

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
        #: The v1.2 features the server granted (its `auth_ok.features`; none before it).
        self.features: frozenset[str] = frozenset()

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
            self.features = frozenset(event.features or ())
        elif isinstance(event, Roster):
            self.roster.apply(event)
        return event

    def send(self, message: ClientMessage) -> bytes:
        """Encode `message`; a frame the current state forbids, or of a feature the server
        did not grant (for `auth`: one it does not ask for), is our own bug."""
        if CLIENT_RULES[self.state].get(message.type, Code.BAD_REQUEST) is not None:
            raise LocalProtocolError(f"{message.type} is not allowed in {self.state.value}")
        have = (message.features or ()) if isinstance(message, Auth) else self.features
        feature = missing_feature(message, have)
        if feature is not None:
            raise LocalProtocolError(f"{message.type} needs '{feature}', not granted")
        if isinstance(message, RosterAck) and self.state is State.ROSTER:
            self.state = next_state(self.state, Transition.FIRST_ROSTER_ACK)
        return encode(message)

    def close(self) -> None:
        self.state = next_state(self.state, Transition.CLOSE)
