"""What a connection's mailbox carries besides the peer's frames: notices and results.

The peer's frames arrive as payload bytes. Everything else a mailbox runs is
one of these frozen records: a notice from the loop (the peer went away, a
deadline passed, the client does not read) or the result of work the
connection asked for and waited on (a password or a token checked, an
account changed, messages stored, a page read). Each is handled by
`core.dispatch` in the connection's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from chat.server.net.inbox import Cause
from chat.server.store.sqlite import Page
from chat.shared.errors import RemoteProtocolError
from chat.shared.messages import MsgId, Send


# ---- notices from the loop ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PeerGone:
    """The peer's stream ended: EOF (frames before it are still answered) or an error."""

    reason: str
    cause: Cause = Cause.BROKEN


@dataclass(frozen=True, slots=True)
class Abort:
    """The server ends the connection with this fatal error (a framing error, a deadline)."""

    error: RemoteProtocolError
    reason: str


@dataclass(frozen=True, slots=True)
class Evict:
    """Drop the connection with a `bye` saying why (a slow reader, a slot out of memory)."""

    why: str


@dataclass(frozen=True, slots=True)
class Drained:
    """The loop wrote the catch-up so far (`ok`), or the connection is ending (not `ok`)."""

    ok: bool


# ---- results of our own work --------------------------------------------------------------
class Outcome(Enum):
    OK = "ok"
    BAD_CREDENTIALS = "bad credentials"
    USER_EXISTS = "user name taken"
    STORE_FAILED = "accounts store failed"
    WAITED_TOO_LONG = "waited too long for the account's turn"  # answered rate_limited
    BANNED = "banned"  # the password was right, the operator banned the account
    NO_INVITE = "no valid invite code"  # --registration invite: answered registration_closed


@dataclass(frozen=True, slots=True)
class LoginChecked:
    """The hash thread's answer to one `auth`: with `resume` asked, the new token for its
    `auth_ok` (never in a repr, so never in a log line)."""

    user: str
    register: bool
    outcome: Outcome
    token: str | None = field(default=None, repr=False)
    by_token: bool = False  # the login was made with a token (the metrics' `kind`)


class CareOutcome(Enum):
    """What a `passwd` or `delete_account` came to (core/care.py)."""

    OK = "ok"
    BAD_CREDENTIALS = "bad credentials"  # the password given is not the account's
    WAITED_TOO_LONG = "waited too long for the account's turn"  # rate_limited
    FAILED = "could not be done"  # the store failed: rate_limited, nothing changed


@dataclass(frozen=True, slots=True)
class CareChecked:
    """The hash thread's answer to a `passwd` or `delete_account` (the request's `id`)."""

    id: MsgId
    kind: str  # "passwd" or "delete_account"
    outcome: CareOutcome


@dataclass(frozen=True, slots=True)
class Answered:
    """What a group of sends waited for came, or its deadline passed: whether the store
    made its messages durable (`stored`), and which other nodes took them (`reached`)."""

    stored: bool
    reached: frozenset[str]


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A group of sends held while the storage was asked about recipients this node had
    not heard of (`Accounts.confirm`): which of them are accounts (`names`; none when it
    did not answer in time), and what the rate limit said of each send when it came."""

    sends: tuple[Send, ...]
    passed: tuple[bool, ...]
    names: frozenset[str]


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """A history page read for the request `id`; None when the readers were too busy,
    an error when the store could not answer."""

    id: MsgId
    page: Page | None
    failed: str | None = None


@dataclass(frozen=True, slots=True)
class OfflineRead:
    """The next page of the offline queue (a login's catch-up); None when too busy."""

    page: Page | None
    failed: str | None = None


@dataclass(frozen=True, slots=True)
class MarkersRead:
    """A login's read markers, (peer, upto, last, unread) rows; None when unreadable."""

    rows: tuple[tuple[str, int, int, int], ...] | None


@dataclass(frozen=True, slots=True)
class RoomDone:
    """A cluster's answer to a room request (`id`): None when done (`ok`), else the
    error (the rule's, or `rate_limited` when Redis did not answer in time)."""

    id: MsgId
    error: RemoteProtocolError | None


@dataclass(frozen=True, slots=True)
class RoomPosted:
    """A cluster's verdict on a group of room messages: None (taken by every node), the
    refusal's code, or False (no verdict in time)."""

    verdict: object


@dataclass(frozen=True, slots=True)
class AcksStored:
    """What the connection acknowledged (`offline_ack`) is stored: its `bye` may go."""


Notice = PeerGone | Abort | Evict | Drained
Result = (
    LoginChecked
    | CareChecked
    | Answered
    | Confirmed
    | HistoryRead
    | OfflineRead
    | AcksStored
    | MarkersRead
    | RoomDone
    | RoomPosted
)

#: Every kind of item a mailbox carries that is not the peer's frame.
OURS: frozenset[type] = frozenset(
    {
        PeerGone,
        Abort,
        Evict,
        Drained,
        LoginChecked,
        CareChecked,
        Answered,
        Confirmed,
        HistoryRead,
        OfflineRead,
        AcksStored,
        MarkersRead,
        RoomDone,
        RoomPosted,
    }
)
