"""The state table: which client frame each state accepts, and the error for the rest."""

from __future__ import annotations

from typing import Any

import pytest

from chat.shared.errors import (
    DEFAULT_MESSAGES,
    FATAL_CODES,
    Code,
    LocalProtocolError,
    RemoteProtocolError,
)
from chat.shared.messages import V12_CLIENT_TYPES
from chat.shared.states import CLIENT_RULES, State, Transition, check_client_frame, next_state

OK = None
# Written out by hand from the contract, so a change to CLIENT_RULES must be deliberate.
EXPECTED: dict[State, dict[str, Code | None]] = {
    State.AUTH: {
        "auth": OK,
        "ping": OK,
        "bye": OK,
        "roster_ack": Code.NOT_AUTHENTICATED,
        "send": Code.NOT_AUTHENTICATED,
    },
    State.ROSTER: {
        "auth": Code.BAD_REQUEST,
        "roster_ack": OK,
        "send": Code.NOT_READY,
        "ping": OK,
        "bye": OK,
    },
    State.CHAT: {"auth": Code.BAD_REQUEST, "roster_ack": OK, "send": OK, "ping": OK, "bye": OK},
}
#: Protocol v1.2: every new request and notice is accepted in CHAT only (sections 2, 7; read
#: and typing likewise), refused as `history` is elsewhere.
V12_WITH_ID = [
    "room_create",
    "join",
    "leave",
    "invite",
    "kick",
    "topic",
    "room_list",
    "passwd",
    "delete_account",
    "user_search",
]
V12_WITHOUT_ID = ["read", "typing"]
V12 = V12_WITH_ID + V12_WITHOUT_ID
for kind in V12:
    EXPECTED[State.AUTH][kind] = Code.NOT_AUTHENTICATED
    EXPECTED[State.ROSTER][kind] = Code.NOT_READY
    EXPECTED[State.CHAT][kind] = OK
CASES = [(s, k, c) for s, row in EXPECTED.items() for k, c in row.items()]


def outcome(state: State, kind: Any, msg_id: Any = None) -> RemoteProtocolError | None:
    try:
        check_client_frame(state, kind, msg_id)
    except RemoteProtocolError as exc:
        return exc
    return None


@pytest.mark.parametrize(("state", "kind", "code"), CASES)
def test_state_table(state: State, kind: str, code: Code | None) -> None:
    err = outcome(state, kind)
    assert (err.code if err else None) is code
    assert err is None or not err.fatal


def test_send_before_login_is_not_authenticated_with_its_id() -> None:
    err = outcome(State.AUTH, "send", "m1")
    assert err is not None and err.code is Code.NOT_AUTHENTICATED and err.msg_id == "m1"


def test_roster_ack_before_login_is_not_authenticated_without_id() -> None:
    err = outcome(State.AUTH, "roster_ack", 3)
    assert err is not None and err.code is Code.NOT_AUTHENTICATED and err.msg_id is None


def test_send_before_roster_ack_is_not_ready_with_its_id() -> None:
    err = outcome(State.ROSTER, "send", 42)
    assert err is not None and err.code is Code.NOT_READY and err.msg_id == 42


@pytest.mark.parametrize("state", [State.ROSTER, State.CHAT])
def test_auth_after_login_is_bad_request_already_logged_in(state: State) -> None:
    err = outcome(state, "auth")
    assert err is not None and err.code is Code.BAD_REQUEST
    assert err.message == "already logged in"


@pytest.mark.parametrize("state", [State.AUTH, State.ROSTER, State.CHAT])
@pytest.mark.parametrize("kind", ["", "hello", "auth_ok", "msg", None, 7, ["send"]])
def test_unknown_type_is_non_fatal_bad_request_in_every_open_state(state: State, kind: Any) -> None:
    err = outcome(state, kind, "id-1")
    assert err is not None and err.code is Code.BAD_REQUEST and not err.fatal
    assert err.msg_id == "id-1"


def test_the_table_has_a_row_for_every_v12_frame_in_every_open_state() -> None:
    for state in (State.AUTH, State.ROSTER, State.CHAT):
        assert set(V12) <= set(CLIENT_RULES[state])
    assert set(V12) == V12_CLIENT_TYPES


@pytest.mark.parametrize(
    ("state", "code"), [(State.AUTH, Code.NOT_AUTHENTICATED), (State.ROSTER, Code.NOT_READY)]
)
@pytest.mark.parametrize("kind", V12_WITH_ID)
def test_a_v12_request_outside_chat_is_refused_with_its_id(
    state: State, code: Code, kind: str
) -> None:
    err = outcome(state, kind, "r7")
    assert err is not None and err.code is code and not err.fatal and err.msg_id == "r7"


@pytest.mark.parametrize(
    ("state", "code"), [(State.AUTH, Code.NOT_AUTHENTICATED), (State.ROSTER, Code.NOT_READY)]
)
@pytest.mark.parametrize("kind", V12_WITHOUT_ID)
def test_read_and_typing_outside_chat_are_refused_without_an_id(
    state: State, code: Code, kind: str
) -> None:
    err = outcome(state, kind, "r7")  # an `id` field they should not have is not echoed
    assert err is not None and err.code is code and err.msg_id is None


def test_frames_on_a_closed_connection_are_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        check_client_frame(State.CLOSED, "ping")


def test_the_only_legal_path_is_auth_roster_chat_closed() -> None:
    state = next_state(State.AUTH, Transition.AUTH_OK)
    assert state is State.ROSTER
    state = next_state(state, Transition.FIRST_ROSTER_ACK)
    assert state is State.CHAT
    assert next_state(state, Transition.CLOSE) is State.CLOSED


@pytest.mark.parametrize("state", list(State))
def test_close_is_legal_from_every_state(state: State) -> None:
    assert next_state(state, Transition.CLOSE) is State.CLOSED


@pytest.mark.parametrize(
    ("state", "transition"),
    [
        (State.AUTH, Transition.FIRST_ROSTER_ACK),
        (State.ROSTER, Transition.AUTH_OK),
        (State.CHAT, Transition.AUTH_OK),
        (State.CHAT, Transition.FIRST_ROSTER_ACK),
        (State.CLOSED, Transition.AUTH_OK),
        (State.CLOSED, Transition.FIRST_ROSTER_ACK),
    ],
)
def test_illegal_transitions_are_our_bug(state: State, transition: Transition) -> None:
    with pytest.raises(LocalProtocolError):
        next_state(state, transition)


def test_fatal_codes_are_exactly_the_contracts_five_and_v12s_banned() -> None:
    assert {c.value for c in FATAL_CODES} == {
        "bad_frame",
        "frame_too_large",
        "server_full",
        "too_many_attempts",
        "timeout",
        "banned",  # v1.2 section 9
    }
    for code in Code:
        assert RemoteProtocolError(code).fatal is (code in FATAL_CODES)


def test_every_code_has_a_default_message_and_bad_credentials_text_is_fixed() -> None:
    assert set(DEFAULT_MESSAGES) == set(Code)
    assert (
        RemoteProtocolError(Code.BAD_CREDENTIALS).message == DEFAULT_MESSAGES[Code.BAD_CREDENTIALS]
    )
    assert {c.value for c in Code} == {
        "bad_frame",
        "frame_too_large",
        "server_full",
        "too_many_attempts",
        "timeout",
        "bad_request",
        "not_authenticated",
        "not_ready",
        "bad_credentials",
        "user_exists",
        "rate_limited",
        # v1.2 section 9
        "no_such_room",
        "room_exists",
        "not_member",
        "not_allowed",
        "no_such_user",
        "registration_closed",
        "banned",
    }
