"""v1.2 section 1: the features asked for at login, what is granted, and what each covers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.shared.errors import Code, RemoteProtocolError
from chat.shared.features import (
    CHECKED_TYPES,
    ECHO,
    FEATURES,
    FIELD_FEATURES,
    FRAME_FEATURES,
    READ,
    RESUME,
    ROOMS,
    SERVER_FRAME_FEATURES,
    TYPING,
    check_features,
    check_frame_feature,
    granted,
    missing_feature,
)
from chat.shared.messages import (
    CLIENT_TYPES,
    V12_CLIENT_TYPES,
    Auth,
    DeleteAccount,
    HistoryRequest,
    Passwd,
    Read,
    RoomCreate,
    RoomInvite,
    RoomJoin,
    RoomKick,
    RoomLeave,
    RoomListRequest,
    RoomTopic,
    Send,
    Typing,
    UserSearch,
    parse_server_message,
)

from .strategies import asked_features, relaxed

# Written out from the contract, so a change to the tables must be deliberate.
NEEDS: list[tuple[Any, frozenset[str]]] = [
    (RoomCreate("r", "#dev"), frozenset({ROOMS})),
    (RoomJoin("r", "#dev"), frozenset({ROOMS})),
    (RoomLeave("r", "#dev"), frozenset({ROOMS})),
    (RoomInvite("r", "#dev", "bob"), frozenset({ROOMS})),
    (RoomKick("r", "#dev", "bob"), frozenset({ROOMS})),
    (RoomTopic("r", "#dev", "t"), frozenset({ROOMS})),
    (RoomListRequest("r"), frozenset({ROOMS})),
    (Read("*", 1), frozenset({READ})),
    (Read("bob", 1), frozenset({READ})),
    (Read("#dev", 1), frozenset({READ, ROOMS})),
    (Typing("bob", "active"), frozenset({TYPING})),
    (Typing(("bob", "carol"), "active"), frozenset({TYPING})),
    (Typing("#dev", "active"), frozenset({TYPING, ROOMS})),
    (Send(1, "*", "x"), frozenset()),
    (Send(1, ("bob",), "x"), frozenset()),
    (Send(1, "#dev", "x"), frozenset({ROOMS})),
    (HistoryRequest("h", "*"), frozenset()),
    (HistoryRequest("h", "bob"), frozenset()),
    (HistoryRequest("h", "#dev"), frozenset({ROOMS})),
    (Passwd("r", "a", "b"), frozenset()),  # section 7: no feature needed
    (DeleteAccount("r", "a"), frozenset()),
    (UserSearch("r", "b"), frozenset()),
    (Auth("alice", "pw"), frozenset()),
    (Auth("alice", None, False, ("resume",), "t0k"), frozenset({RESUME})),
]


def test_the_feature_names_are_the_contracts() -> None:
    assert FEATURES == ("rooms", "read", "echo", "typing", "resume")
    assert (ROOMS, READ, ECHO, TYPING, RESUME) == FEATURES


def test_every_v12_client_frame_has_an_entry_and_echo_none() -> None:
    assert set(FRAME_FEATURES) == V12_CLIENT_TYPES
    assert {f for f in FRAME_FEATURES.values() if f} == {ROOMS, READ, TYPING}
    assert FRAME_FEATURES["passwd"] is None
    assert FRAME_FEATURES["delete_account"] is None
    assert FRAME_FEATURES["user_search"] is None
    # echo has no frame of its own: it changes where the sender's own msg goes.
    assert ECHO not in FRAME_FEATURES.values() and ECHO not in FIELD_FEATURES.values()


def test_field_entries_name_real_client_frames_and_server_entries_real_server_frames() -> None:
    assert {kind for kind, _ in FIELD_FEATURES} <= CLIENT_TYPES
    assert CHECKED_TYPES <= CLIENT_TYPES
    for key in SERVER_FRAME_FEATURES:
        kind = key[0] if isinstance(key, tuple) else key
        # Each is a server frame type the client can parse: an unknown type raises
        # "unknown type"; a known one complains about its fields instead.
        with pytest.raises(RemoteProtocolError) as info:
            parse_server_message(b'{"type":"%s"}' % kind.encode())
        assert "unknown type" not in info.value.message


def _case_id(value: Any) -> str:
    """A case's name that is the same in every process (a set's order is not: pytest-xdist
    workers must collect the same names)."""
    if isinstance(value, frozenset):
        return "+".join(sorted(value)) or "none"
    return repr(value)[:40]


@pytest.mark.parametrize(("message", "needs"), NEEDS, ids=_case_id)
def test_each_frame_needs_exactly_its_features(message: Any, needs: frozenset[str]) -> None:
    everything = frozenset(FEATURES)
    assert missing_feature(message, everything) is None
    assert missing_feature(message, needs) is None
    check_features(message, needs, "r")
    for feature in needs:
        assert missing_feature(message, everything - {feature}) == feature
        with pytest.raises(RemoteProtocolError) as info:
            check_features(message, everything - {feature}, "r")
        err = info.value
        assert err.code is Code.BAD_REQUEST and not err.fatal and err.msg_id == "r"
        assert feature in err.message


@pytest.mark.parametrize("kind", sorted(V12_CLIENT_TYPES))
def test_a_frame_of_a_feature_not_granted_is_refused_from_its_type_alone(kind: str) -> None:
    need = FRAME_FEATURES[kind]
    if need is None:
        check_frame_feature(kind, (), 5)
        return
    with pytest.raises(RemoteProtocolError) as info:
        check_frame_feature(kind, (), 5)
    assert info.value.msg_id == 5 and need in info.value.message
    check_frame_feature(kind, (need,), 5)


@pytest.mark.parametrize(
    ("asked", "offered", "got"),
    [
        ((), FEATURES, ()),
        (("rooms",), FEATURES, ("rooms",)),
        (("typing", "rooms", "read"), FEATURES, ("typing", "rooms", "read")),  # order asked
        (("bogus", "rooms", "ROOMS", ""), FEATURES, ("rooms",)),  # unknown: left out
        (("rooms", "rooms", "read", "rooms"), FEATURES, ("rooms", "read")),  # once each
        (("rooms", "resume"), ("rooms",), ("rooms",)),  # not offered: left out
        (FEATURES, (), ()),
    ],
)
def test_granted_keeps_the_order_asked_and_drops_the_rest(
    asked: tuple[str, ...], offered: tuple[str, ...], got: tuple[str, ...]
) -> None:
    assert granted(asked, offered) == got


@relaxed
@given(asked_features, st.lists(st.sampled_from(FEATURES), unique=True))
def test_granted_is_the_asked_and_offered_names_in_the_order_asked_each_once(
    asked: tuple[str, ...], offered: list[str]
) -> None:
    got = granted(asked, offered)
    assert len(set(got)) == len(got)
    assert set(got) == set(asked) & set(offered)
    firsts = [name for i, name in enumerate(asked) if name in offered and name not in asked[:i]]
    assert list(got) == firsts
