"""The two kinds of error, and every wire error code in one table.

A `RemoteProtocolError` is something the peer did wrong: it carries the wire
code, is answered with an `error` frame and, unless the code is fatal, the
connection survives it. A `LocalProtocolError` is our own code misusing the
core: a bug, never sent on the wire.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Code(StrEnum):
    """Error codes of protocol v1 and v1.2 (the `code` field of an `error` frame)."""

    BAD_FRAME = "bad_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    SERVER_FULL = "server_full"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    TIMEOUT = "timeout"
    BAD_REQUEST = "bad_request"
    NOT_AUTHENTICATED = "not_authenticated"
    NOT_READY = "not_ready"
    BAD_CREDENTIALS = "bad_credentials"
    USER_EXISTS = "user_exists"
    RATE_LIMITED = "rate_limited"
    # v1.2 (section 9): non-fatal, with the request's id
    NO_SUCH_ROOM = "no_such_room"
    ROOM_EXISTS = "room_exists"
    NOT_MEMBER = "not_member"
    NOT_ALLOWED = "not_allowed"
    NO_SUCH_USER = "no_such_user"
    REGISTRATION_CLOSED = "registration_closed"
    # v1.2: fatal
    BANNED = "banned"


#: Fatal codes: the server sends the error, flushes, then closes; nothing follows.
FATAL_CODES: frozenset[Code] = frozenset(
    {
        Code.BAD_FRAME,
        Code.FRAME_TOO_LARGE,
        Code.SERVER_FULL,
        Code.TOO_MANY_ATTEMPTS,
        Code.TIMEOUT,
        Code.BANNED,
    }
)

#: Human text for codes whose wording must not vary (clarification 1: the
#: bad_credentials text is the same for an unknown user and a wrong password).
DEFAULT_MESSAGES: dict[Code, str] = {
    Code.BAD_FRAME: "malformed frame",
    Code.FRAME_TOO_LARGE: "frame too large",
    Code.SERVER_FULL: "server is full",
    Code.TOO_MANY_ATTEMPTS: "too many failed login attempts",
    Code.TIMEOUT: "timed out",
    Code.BAD_REQUEST: "bad request",
    Code.NOT_AUTHENTICATED: "log in first",
    Code.NOT_READY: "acknowledge the roster first",
    Code.BAD_CREDENTIALS: "invalid user name or password",
    Code.USER_EXISTS: "user name is taken",
    Code.RATE_LIMITED: "slow down",
    # Like bad_credentials, no_such_room never says whether the room exists: an invite-only
    # room the user holds no invite to gets the same text as a room that does not.
    Code.NO_SUCH_ROOM: "no such room",
    Code.ROOM_EXISTS: "a room of that name exists",
    Code.NOT_MEMBER: "you are not a member of that room",
    Code.NOT_ALLOWED: "only the room's owner may do that",
    Code.NO_SUCH_USER: "no such user",
    Code.REGISTRATION_CLOSED: "registration is closed on this server",
    Code.BANNED: "this account is banned",
}


def password_too_short(minimum: int) -> str:
    """The `bad_request` text for a registration whose password is under the server's
    `--min-password` (the contract allows 1..256: this is the server's own policy)."""
    return f"password too short: this server wants at least {minimum} characters"


def not_granted(feature: str) -> str:
    """The `bad_request` text for a frame or field of a v1.2 feature the connection was
    not granted at login (v1.2 section 1)."""
    return f"feature '{feature}' was not granted to this connection"


class Refusal(StrEnum):
    """The text of a v1.2 refusal that only the server can decide (it needs the user's
    name or the server's settings), so the shared parse cannot raise it."""

    KICK_SELF = "you cannot kick yourself: leave the room instead"  # bad_request
    ALREADY_MEMBER = "that user is already a member of the room"  # an invite to a member
    INVITE_NEEDED = "registration needs a valid invite code"  # registration_closed, invite mode


class Why(StrEnum):
    """Why the server ends a connection on its own: the text of a `timeout` error or a `bye`.

    Outside a client frame there is nothing to quote, so these texts are the
    whole explanation the peer gets; they live here with the codes so that
    no other module retypes them.
    """

    IDLE = "idle for too long"
    ROSTER_ACK = "roster not acknowledged in time"
    LOGIN = "login not completed in time"
    FRAME = "frame not completed in time"
    SHUTDOWN = "shutdown"  # the bye reason on server stop (protocol v1)
    # v1.2 bye reasons (sections 7, 8), as the contract spells them
    PASSWORD_CHANGED = "password_changed"  # passwd with logout_others: the other sessions
    ACCOUNT_DELETED = "account_deleted"  # delete_account, or `chat-server user delete`
    BANNED = "banned"  # `chat-server user ban`
    KICKED = "kicked"  # `chat-server user kick`
    BYE = "bye"  # the answer to a client's bye
    STORE_FAILED = "internal error: cannot save the account"
    CHECK_FAILED = "internal error: cannot check the account now, try again later"
    SLOW_READER = "send buffer full: the client does not read"
    EVICTED = "server is full and this connection has not logged in"


class Trouble(StrEnum):
    """The text of a non-fatal error whose cause is the server, not the client.

    The contract has no code for it (v1.1 section 8 adds none): these go with
    `rate_limited`, the code that says "not now, and not your fault", as when
    the store's readers are saturated (docs/protocol.md, section 12).
    """

    HISTORY_UNREADABLE = "history not available: the server cannot read its message store"
    OFFLINE_UNREADABLE = (
        "offline messages not sent: the server cannot read its message store; they are kept"
    )
    INTERNAL = "internal error: the server could not do this; try again"
    #: A node of a cluster got no answer from Redis within its deadline (docs/cluster.md).
    CLUSTER = "the cluster did not answer in time: try again"


class ProtocolError(Exception):
    """Base of every error the protocol core raises."""


class RemoteProtocolError(ProtocolError):
    """The peer broke a rule; `code` is what goes on the wire.

    `msg_id` is the id of the `send` this error answers, when that id was
    itself valid (clarification 6), so the reply can carry it.
    """

    def __init__(self, code: Code, message: str | None = None, msg_id: Any = None) -> None:
        self.code = code
        self.message = message if message is not None else DEFAULT_MESSAGES[code]
        self.msg_id = msg_id
        super().__init__(f"{code}: {self.message}")

    @property
    def fatal(self) -> bool:
        return self.code in FATAL_CODES


class LocalProtocolError(ProtocolError):
    """Our own code asked the core for something the protocol forbids (a bug)."""
