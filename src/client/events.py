"""What the network thread tells the UI thread.

Every event is an immutable value put on a FIFO queue by the network thread
and read by the UI thread (TUI or line mode), so the two never share mutable
state. The UI decides how to show each one.
"""

from __future__ import annotations

from dataclasses import dataclass

from chat.shared.messages import (
    Invitation,
    Marker,
    Msg,
    MsgId,
    RoomEvent,
    RoomInfo,
    RoomState,
)


@dataclass(frozen=True, slots=True)
class Connecting:
    host: str
    port: int
    attempt: int


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """No TCP connection; `retry_in` is None when the client gives up."""

    reason: str
    retry_in: float | None


@dataclass(frozen=True, slots=True)
class Connected:
    """The connection is up (TLS: handshake done, certificate and host name verified).

    `tls` is the negotiated version ("TLSv1.3"), None for plain TCP.
    """

    host: str
    port: int
    tls: str | None


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """The server refused the credentials (or the account to register); final.

    `register` says whether the refused `auth` asked to create the account, so the
    refusal can be worded for what was tried ("registration refused: ...").
    """

    code: str
    message: str
    register: bool = False


@dataclass(frozen=True, slots=True)
class AccountExists:
    """Registering was refused with `user_exists`; the session logs in with the same
    password instead, on the same connection (a `LoggedIn` or `LoginFailed` follows)."""

    user: str


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """The first (full) roster was received and acknowledged: chat may start.

    `features` are the v1.2 features the server granted (none: a v1.1 server, or one
    that offers none of those asked for): rooms, read markers, echo, typing.
    """

    user: str
    online: tuple[str, ...]
    registered: bool
    features: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RosterChanged:
    joined: tuple[str, ...]
    left: tuple[str, ...]
    online: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message for us: live, or (`offline`) stored while we had no session.

    An offline message stays on the server until the UI has shown it and
    acknowledged it (`NetworkClient.offline_ack`); a repeat has the same id.
    """

    msg: Msg

    @property
    def offline(self) -> bool:
        return self.msg.offline


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Every offline message of this login has arrived (`offline` of them).

    The answer to the ping the session sends right after its first
    `roster_ack`: the server answers frames in order (v1.1 section 7) and
    sends the stored messages when that ack arrives, so they come first.
    """

    offline: int


@dataclass(frozen=True, slots=True)
class Delivered:
    """The server's `sent` for one of our messages.

    As on the wire, every name in `queued` (offline, the message is stored
    for them) is also in `missing`.
    """

    id: MsgId
    delivered: tuple[str, ...]
    missing: tuple[str, ...]
    queued: tuple[str, ...] = ()
    #: v1.2: the id of the stored message (its `msg.id` elsewhere); None from a v1.1 server.
    msg_id: int | None = None

    @property
    def unknown(self) -> tuple[str, ...]:
        """Missing and not queued: not online and not stored (e.g. no such user)."""
        return tuple(name for name in self.missing if name not in self.queued)


@dataclass(frozen=True, slots=True)
class RoomDelivered:
    """The server's `sent` for one of our messages to a room (v1.2): no name lists, the
    members who are offline read it from the room's history."""

    id: MsgId
    msg_id: int
    room: str


@dataclass(frozen=True, slots=True)
class RoomsState:
    """The full state of our rooms and invites, once per login (v1.2 `rooms`)."""

    rooms: tuple[RoomState, ...]
    invites: tuple[Invitation, ...]


@dataclass(frozen=True, slots=True)
class RoomNotice:
    """Something happened in a room (v1.2 `room_event`), in the room's own order."""

    event: RoomEvent


@dataclass(frozen=True, slots=True)
class MarkersLoaded:
    """How far each conversation was read, once per login (v1.2 `markers`), newest first."""

    markers: tuple[Marker, ...]


@dataclass(frozen=True, slots=True)
class ReadMoved:
    """Another session of ours read `peer` up to `upto` (v1.2 `read`)."""

    peer: str
    upto: int


@dataclass(frozen=True, slots=True)
class TypingSeen:
    """`sender` is typing (`state`) to `to`: us, a list with us, or a room (v1.2 `typing`)."""

    sender: str
    to: str | tuple[str, ...]
    state: str


@dataclass(frozen=True, slots=True)
class RequestDone:
    """A v1.2 request `id` was answered `ok` (its `kind`: "join", "leave", ...; `room` and
    `user` repeated from it when it had them)."""

    id: MsgId
    kind: str
    room: str = ""
    user: str = ""


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """A v1.2 request `id` got an `error` (`code`), or none: the connection died, or the
    server does not offer what it needs (`code` None; `message` says which)."""

    id: MsgId
    kind: str
    code: str | None
    message: str
    room: str = ""
    user: str = ""


@dataclass(frozen=True, slots=True)
class RoomsListed:
    """The answer to our `room_list` request `id`."""

    id: MsgId
    rooms: tuple[RoomInfo, ...]


@dataclass(frozen=True, slots=True)
class UsersFound:
    """The answer to our `user_search` request `id` for `prefix`."""

    id: MsgId
    prefix: str
    users: tuple[str, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class HistoryLoaded:
    """The answer to our history request `id` (its `peer` and `before` repeated)."""

    id: MsgId
    peer: str
    before: int | None
    messages: tuple[Msg, ...]  # oldest first
    more: bool  # older messages exist


@dataclass(frozen=True, slots=True)
class HistoryFailed:
    """Our history request `id` got no page: an error that carries its id (`code`),
    or the connection died before the answer (`code` None)."""

    id: MsgId
    peer: str
    before: int | None
    code: str | None
    message: str


@dataclass(frozen=True, slots=True)
class SendRefused:
    """An `error` that answers one of our messages; the message was not sent."""

    id: MsgId
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class SendUnconfirmed:
    """Messages written to a connection that died before their `sent` came back."""

    ids: tuple[MsgId, ...]


@dataclass(frozen=True, slots=True)
class ServerNotice:
    """An error frame that answers nothing of ours in particular."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ServerBye:
    reason: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection is gone; `retry_in` is None when no reconnect follows."""

    reason: str
    retry_in: float | None


@dataclass(frozen=True, slots=True)
class Stopped:
    """The network thread has ended; nothing follows."""

    reason: str


NetEvent = (
    Connecting
    | ConnectFailed
    | Connected
    | LoginFailed
    | AccountExists
    | LoggedIn
    | RosterChanged
    | Incoming
    | CaughtUp
    | Delivered
    | RoomDelivered
    | RoomsState
    | RoomNotice
    | MarkersLoaded
    | ReadMoved
    | TypingSeen
    | RequestDone
    | RequestFailed
    | RoomsListed
    | UsersFound
    | HistoryLoaded
    | HistoryFailed
    | SendRefused
    | SendUnconfirmed
    | ServerNotice
    | ServerBye
    | Disconnected
    | Stopped
)
