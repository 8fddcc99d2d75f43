"""The connection state machine `AUTH -> ROSTER -> CHAT -> CLOSED`, as tables.

`CLIENT_RULES` says, for each state, which client frame types are accepted
and which error code answers the others. `TRANSITIONS` lists every legal
state change. Both server and client use these tables; nothing else in the
project decides what is allowed when.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from .errors import Code, LocalProtocolError, RemoteProtocolError
from .messages import ID_TYPES, V12_CLIENT_TYPES


class State(Enum):
    AUTH = "AUTH"
    ROSTER = "ROSTER"
    CHAT = "CHAT"
    CLOSED = "CLOSED"


class Transition(Enum):
    AUTH_OK = "auth_ok"  # credentials accepted, full roster sent
    FIRST_ROSTER_ACK = "first_roster_ack"  # the full roster was acknowledged
    CLOSE = "close"  # connection gone, for any reason


# None means accepted; a Code means "answer with this non-fatal error".
# A type missing from a state's row is unknown: bad_request (clarification 5).
# Every v1.2 client frame (rooms, read, typing, passwd, delete_account, user_search) is
# accepted in CHAT only, like `history`: `not_authenticated` before login, `not_ready`
# before the first roster_ack, with the id when the frame has a valid one (`ID_TYPES`).
CLIENT_RULES: dict[State, dict[str, Code | None]] = {
    State.AUTH: {
        "auth": None,
        "ping": None,
        "bye": None,
        "roster_ack": Code.NOT_AUTHENTICATED,
        "send": Code.NOT_AUTHENTICATED,
        "history": Code.NOT_AUTHENTICATED,
        "offline_ack": Code.NOT_AUTHENTICATED,
        **dict.fromkeys(sorted(V12_CLIENT_TYPES), Code.NOT_AUTHENTICATED),
    },
    State.ROSTER: {
        "auth": Code.BAD_REQUEST,  # already logged in on this connection
        "roster_ack": None,
        "send": Code.NOT_READY,
        "history": Code.NOT_READY,
        "offline_ack": Code.NOT_READY,  # offline messages come only in CHAT
        "ping": None,
        "bye": None,
        **dict.fromkeys(sorted(V12_CLIENT_TYPES), Code.NOT_READY),
    },
    State.CHAT: {
        "auth": Code.BAD_REQUEST,
        "roster_ack": None,
        "send": None,
        "history": None,
        "offline_ack": None,
        "ping": None,
        "bye": None,
        **dict.fromkeys(sorted(V12_CLIENT_TYPES), None),
    },
    State.CLOSED: {},
}

TRANSITIONS: dict[tuple[State, Transition], State] = {
    (State.AUTH, Transition.AUTH_OK): State.ROSTER,
    (State.ROSTER, Transition.FIRST_ROSTER_ACK): State.CHAT,
    (State.AUTH, Transition.CLOSE): State.CLOSED,
    (State.ROSTER, Transition.CLOSE): State.CLOSED,
    (State.CHAT, Transition.CLOSE): State.CLOSED,
    (State.CLOSED, Transition.CLOSE): State.CLOSED,
}

_ALREADY = {"auth": "already logged in"}


def check_client_frame(state: State, kind: Any, msg_id: Any = None) -> None:
    """Raise the contract's error if a frame of type `kind` is not allowed in `state`.

    `msg_id` is echoed on errors that answer a frame with an id (`send`,
    `history`, the v1.2 requests: clarification 6, v1.1 section 4, v1.2 section 1).
    """
    if state is State.CLOSED:
        raise LocalProtocolError("frame handled on a closed connection")
    rules = CLIENT_RULES[state]
    if not isinstance(kind, str) or kind not in rules:
        raise RemoteProtocolError(Code.BAD_REQUEST, f"unknown type {kind!r}"[:80], msg_id)
    code = rules[kind]
    if code is not None:
        raise RemoteProtocolError(
            code,
            _ALREADY.get(kind) if code is Code.BAD_REQUEST else None,
            msg_id if kind in ID_TYPES else None,
        )


def next_state(state: State, transition: Transition) -> State:
    try:
        return TRANSITIONS[(state, transition)]
    except KeyError:
        raise LocalProtocolError(f"no transition {transition.value} from {state.value}") from None
