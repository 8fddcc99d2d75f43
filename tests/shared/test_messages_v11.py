"""The frames protocol v1.1 adds (sections 3, 4) and the fields it adds to v1 frames."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.shared.errors import Code, RemoteProtocolError
from chat.shared.messages import (
    HISTORY_LIMIT_DEFAULT,
    HistoryPage,
    HistoryRequest,
    Msg,
    OfflineAck,
    Sent,
    encode,
    encode_names,
    encode_payload,
    encode_sents,
    parse_client_message,
    parse_server_message,
)
from chat.shared.states import State, check_client_frame

from .strategies import msg_ids, name_lists, relaxed


def raw(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def refused(obj: dict[str, Any]) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse_client_message(raw(obj))
    return info.value


def history(**fields: Any) -> dict[str, Any]:
    return {"type": "history", "id": "h1", "with": "*"} | fields


# --- sent.queued, msg.offline --------------------------------------------------
def test_sent_always_carries_queued_even_when_empty() -> None:
    assert json.loads(encode_payload(Sent(1, ("bob",), ()))) == {
        "type": "sent",
        "id": 1,
        "delivered": ["bob"],
        "missing": [],
        "queued": [],
    }
    wire = json.loads(encode_payload(Sent("a", (), ("bob", "zed"), ("bob",))))
    assert wire["missing"] == ["bob", "zed"] and wire["queued"] == ["bob"]


def test_a_v1_sent_without_queued_parses_as_queued_nothing() -> None:
    sent = parse_server_message(raw({"type": "sent", "id": 1, "delivered": [], "missing": ["x"]}))
    assert sent == Sent(1, (), ("x",), ())


def test_live_msg_has_no_offline_field_and_a_stored_one_has_offline_true() -> None:
    live = json.loads(encode_payload(Msg(5, "bob", ("alice",), "hi", 1.5)))
    assert "offline" not in live
    stored = json.loads(encode_payload(Msg(5, "bob", ("alice",), "hi", 1.5, offline=True)))
    assert stored["offline"] is True
    assert {k: v for k, v in stored.items() if k != "offline"} == live


def test_the_client_reads_offline_only_when_it_is_true() -> None:
    base = {"type": "msg", "id": 1, "from": "bob", "to": "*", "text": "x", "ts": 1.0}
    assert parse_server_message(raw(base)).offline is False
    assert parse_server_message(raw(base | {"offline": False})).offline is False
    assert parse_server_message(raw(base | {"offline": True})).offline is True


# --- history request ---------------------------------------------------------------
def test_history_defaults_limit_to_50_and_before_to_the_newest() -> None:
    assert parse_client_message(raw(history())) == HistoryRequest("h1", "*", None, 50)
    assert HISTORY_LIMIT_DEFAULT == 50


@pytest.mark.parametrize("fields", [{"before": None}, {"limit": None}], ids=repr)
def test_history_null_before_or_limit_is_bad_request_not_absent(fields: dict) -> None:
    # The contract: `limit` is an int when present; `before` a msg id. Absent is absent.
    err = refused(history(**fields))
    assert err.code is Code.BAD_REQUEST and err.msg_id == "h1"


@pytest.mark.parametrize("limit", [1, 200])
def test_history_limit_bounds_are_inclusive(limit: int) -> None:
    got = parse_client_message(raw(history(**{"with": "bob"}, before=10, limit=limit)))
    assert got == HistoryRequest("h1", "bob", 10, limit)


@pytest.mark.parametrize(
    "fields",
    [
        {"limit": 0},
        {"limit": 201},
        {"limit": -1},
        {"limit": 5.0},
        {"limit": "5"},
        {"limit": True},
        {"before": "10"},
        {"before": 1.5},
        {"before": False},
        {"before": [1]},
        {"with": ""},
        {"with": "no spaces"},
        {"with": 7},
        {"with": ["bob"]},
        {"with": None},
        {"with": "a" * 33},
    ],
)
def test_bad_history_fields_are_non_fatal_bad_request_with_the_id(fields: dict) -> None:
    err = refused(history(**fields))
    assert err.code is Code.BAD_REQUEST and not err.fatal
    assert err.msg_id == "h1"


def test_history_without_with_is_bad_request_with_the_id() -> None:
    obj = history()
    del obj["with"]
    assert refused(obj).msg_id == "h1"


@pytest.mark.parametrize("msg_id", [None, 1.5, True, [1]])
def test_history_with_an_invalid_id_is_bad_request_without_echo(msg_id: Any) -> None:
    err = refused(history(id=msg_id))
    assert err.code is Code.BAD_REQUEST and err.msg_id is None


# --- offline_ack -------------------------------------------------------------------
def test_offline_ack_takes_an_integer_upto() -> None:
    assert parse_client_message(raw({"type": "offline_ack", "upto": 12})) == OfflineAck(12)


@pytest.mark.parametrize("upto", [None, "12", 1.0, True])
def test_offline_ack_with_a_bad_upto_is_bad_request(upto: Any) -> None:
    assert refused({"type": "offline_ack", "upto": upto}).code is Code.BAD_REQUEST


# --- where each may come -------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "code"), [(State.AUTH, Code.NOT_AUTHENTICATED), (State.ROSTER, Code.NOT_READY)]
)
def test_history_outside_chat_is_refused_with_its_id(state: State, code: Code) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        check_client_frame(state, "history", "h9")
    assert info.value.code is code and info.value.msg_id == "h9"


@pytest.mark.parametrize(
    ("state", "code"), [(State.AUTH, Code.NOT_AUTHENTICATED), (State.ROSTER, Code.NOT_READY)]
)
def test_offline_ack_outside_chat_is_refused(state: State, code: Code) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        check_client_frame(state, "offline_ack")
    assert info.value.code is code and not info.value.fatal


def test_history_and_offline_ack_are_accepted_in_chat() -> None:
    check_client_frame(State.CHAT, "history", 1)
    check_client_frame(State.CHAT, "offline_ack")


# --- history page --------------------------------------------------------------------
def test_a_history_page_lists_exactly_the_fields_of_a_delivered_msg_oldest_first() -> None:
    page = HistoryPage(
        "h1",
        (Msg(3, "alice", ("bob",), "one", 10.0), Msg(8, "bob", "*", "two", 11.25)),
        True,
    )
    wire = json.loads(encode_payload(page))
    assert wire == {
        "type": "history",
        "id": "h1",
        "messages": [
            {"id": 3, "from": "alice", "to": ["bob"], "text": "one", "ts": 10.0},
            {"id": 8, "from": "bob", "to": "*", "text": "two", "ts": 11.25},
        ],
        "more": True,
    }
    assert parse_server_message(encode_payload(page)) == page


def test_an_empty_history_page_is_valid() -> None:
    wire = json.loads(encode_payload(HistoryPage(7, (), False)))
    assert wire == {"type": "history", "id": 7, "messages": [], "more": False}


@relaxed
@given(
    st.lists(msg_ids, min_size=1, max_size=4),
    name_lists,
    name_lists,
    name_lists,
)
def test_sents_encoded_together_are_byte_for_byte_the_frames_of_each(
    ids: list[Any], delivered: tuple[str, ...], missing: tuple[str, ...], queued: tuple[str, ...]
) -> None:
    together = encode_sents(ids, encode_names(delivered), missing, queued)
    assert together == b"".join(encode(Sent(i, delivered, missing, queued)) for i in ids)
