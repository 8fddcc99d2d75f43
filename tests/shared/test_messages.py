"""Message schemas: round trips, bad frames, and every field rule of the contract."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.shared.errors import Code, RemoteProtocolError
from chat.shared.framing import HEADER_SIZE, FrameDecoder
from chat.shared.messages import (
    Auth,
    ClientBye,
    Error,
    Msg,
    Ping,
    RosterAck,
    Send,
    decode_object,
    encode,
    encode_object,
    encode_payload,
    parse_client_message,
    parse_server_message,
    valid_name,
)

from .strategies import client_messages, json_values, msg_ids, relaxed, server_messages

CYRILLIC = "ж"  # 2 bytes in UTF-8
EMOJI = "\U0001f600"  # 4 bytes in UTF-8, one code point


def raw(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def rejected(payload: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse_client_message(payload)
    return info.value


def bad_request(obj: dict[str, Any]) -> RemoteProtocolError:
    err = rejected(raw(obj))
    assert err.code is Code.BAD_REQUEST
    assert not err.fatal
    return err


def send(**fields: Any) -> dict[str, Any]:
    return {"type": "send", "id": 7, "to": "*", "text": "hi"} | fields


def one_frame(frame: bytes) -> bytes:
    decoder = FrameDecoder(max_frame=len(frame))
    decoder.feed(frame)
    payload = decoder.next_frame()
    assert payload is not None and decoder.buffered == 0
    return payload


# --- round trips -------------------------------------------------------------
@relaxed
@given(client_messages)
def test_every_client_message_round_trips_through_a_frame(message) -> None:
    assert parse_client_message(one_frame(encode(message))) == message


@relaxed
@given(server_messages)
def test_every_server_message_round_trips_through_a_frame(message) -> None:
    assert parse_server_message(one_frame(encode(message))) == message


def test_msg_uses_from_on_the_wire_and_ts_is_always_a_float_literal() -> None:
    payload = encode_payload(Msg(3, "alice", ("bob",), "hi", 1700000000))
    assert json.loads(payload)["from"] == "alice"
    assert b'"ts":1700000000.0' in payload


def test_error_carries_id_only_when_it_answers_a_send() -> None:
    assert "id" not in json.loads(encode_payload(Error("timeout", "timed out")))
    assert json.loads(encode_payload(Error("not_ready", "x", "m1")))["id"] == "m1"


def test_encode_object_frames_a_prebuilt_dict() -> None:
    frame = encode_object({"type": "pong"})
    assert frame[HEADER_SIZE:] == b'{"type":"pong"}'
    assert int.from_bytes(frame[:HEADER_SIZE], "big") == len(b'{"type":"pong"}')


def test_password_never_appears_in_a_repr() -> None:
    assert "s3cret" not in repr(Auth("alice", "s3cret"))


def test_encode_refuses_what_is_not_a_message() -> None:
    with pytest.raises(TypeError):
        encode("ping")  # type: ignore[arg-type]


# --- bad frames (fatal) ------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe{}",  # not UTF-8
        b'{"type":"ping","x":"\xc3"}',  # truncated UTF-8 sequence inside a string
        b'{"type":"send","id":1,"to":"*","text":"\\ud800"}',  # lone surrogate escape
        b"[1,2]",
        b'"ping"',
        b"42",
        b"null",
        b"{}",  # no type
        b'{"user":"a"}',
        b'{"type":"ping"',  # truncated
        b'{"type":"ping"} {}',  # two values
        b"[" * 5000 + b"]" * 5000,  # nesting deeper than any parser stack
        b'{"type":' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
def test_undecodable_or_typeless_payload_is_bad_frame(payload: bytes) -> None:
    err = rejected(payload)
    assert err.code is Code.BAD_FRAME
    assert err.fatal


# --- decisions where the contract is silent --------------------------------
@pytest.mark.parametrize("kind", [None, 1, True, ["ping"], {"a": 1}])
def test_non_string_type_is_bad_request(kind: Any) -> None:
    bad_request({"type": kind})


@pytest.mark.parametrize("kind", ["", "PING", "hello", "auth_ok"])
def test_unknown_string_type_is_bad_request(kind: str) -> None:
    bad_request({"type": kind})


def test_unknown_type_echoes_a_valid_id() -> None:
    assert bad_request({"type": "nope", "id": "x1"}).msg_id == "x1"
    assert bad_request({"type": "nope", "id": 1.5}).msg_id is None


def test_duplicate_keys_last_one_wins() -> None:
    assert parse_client_message(b'{"type":"bye","type":"ping"}') == Ping()
    assert parse_client_message(b'{"type":"roster_ack","seq":1,"seq":2}') == RosterAck(2)


def test_unknown_extra_fields_are_ignored() -> None:
    assert parse_client_message(raw({"type": "bye", "extra": [1, {"a": None}]})) == ClientBye()


@relaxed
@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=6),
    st.sampled_from(["auth", "roster_ack", "send", "ping", "bye", "other"]),
)
def test_arbitrary_json_objects_raise_only_protocol_errors(obj: dict, kind: str) -> None:
    obj["type"] = kind
    payload = raw(obj)
    for parse in (parse_client_message, parse_server_message):
        try:
            parse(payload)
        except RemoteProtocolError as exc:
            assert exc.code is Code.BAD_REQUEST


# --- user names ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["a", "A", "0", "a" * 32, "a_b.c-d", "9Lives", "x-", "x."])
def test_valid_names(name: str) -> None:
    assert valid_name(name)
    assert parse_client_message(raw({"type": "auth", "user": name, "password": "p"})).user == name


@pytest.mark.parametrize(
    "name", ["", "a" * 33, "_a", ".a", "-a", "a b", "ü", "a\n", "a/b", "a@b", CYRILLIC, "*"]
)
def test_invalid_names_are_bad_request(name: str) -> None:
    assert not valid_name(name)
    bad_request({"type": "auth", "user": name, "password": "p"})


def test_names_are_case_sensitive() -> None:
    one = parse_client_message(raw({"type": "auth", "user": "Bob", "password": "p"}))
    assert one.user == "Bob" != "bob"


# --- auth ----------------------------------------------------------------------
@pytest.mark.parametrize("char", ["a", CYRILLIC, EMOJI])
def test_password_of_256_code_points_is_accepted_and_257_refused(char: str) -> None:
    ok = parse_client_message(raw({"type": "auth", "user": "u", "password": char * 256}))
    assert ok.password == char * 256
    bad_request({"type": "auth", "user": "u", "password": char * 257})


@pytest.mark.parametrize(
    "fields",
    [
        {"password": ""},
        {"password": 5},
        {"password": None},
        {"user": 5},
        {"register": "true"},
        {"register": 1},
        {"register": 0},
        {"register": None},
    ],
)
def test_ill_typed_or_out_of_bounds_auth_field_is_bad_request(fields: dict) -> None:
    bad_request({"type": "auth", "user": "alice", "password": "pw"} | fields)


@pytest.mark.parametrize("missing", ["user", "password"])
def test_missing_auth_field_is_bad_request(missing: str) -> None:
    obj = {"type": "auth", "user": "alice", "password": "pw"}
    del obj[missing]
    bad_request(obj)


def test_register_defaults_to_false_and_must_be_bool() -> None:
    default = parse_client_message(raw({"type": "auth", "user": "a", "password": "p"}))
    assert default.register is False
    assert (
        parse_client_message(
            raw({"type": "auth", "user": "a", "password": "p", "register": True})
        ).register
        is True
    )


# --- roster_ack ------------------------------------------------------------------
@pytest.mark.parametrize("seq", [True, False, 1.0, "1", None, [1]])
def test_roster_ack_seq_must_be_an_integer_not_a_bool(seq: Any) -> None:
    bad_request({"type": "roster_ack", "seq": seq})


def test_roster_ack_without_seq_is_bad_request() -> None:
    bad_request({"type": "roster_ack"})


# --- send ----------------------------------------------------------------------
@pytest.mark.parametrize("msg_id", ["", "abc", 0, -3, 2**53 - 1, -(2**53 - 1), "x" * 128])
def test_send_id_may_be_a_string_or_an_integer(msg_id: Any) -> None:
    assert parse_client_message(raw(send(id=msg_id))).id == msg_id


@pytest.mark.parametrize("msg_id", [True, False, 1.5, 2.0, None, [1], {"a": 1}])
def test_send_id_that_is_bool_float_or_other_is_bad_request_without_echo(msg_id: Any) -> None:
    assert bad_request(send(id=msg_id)).msg_id is None


def test_send_without_id_is_bad_request() -> None:
    obj = send()
    del obj["id"]
    assert bad_request(obj).msg_id is None


@pytest.mark.parametrize("char", ["a", CYRILLIC, EMOJI])
def test_text_of_4096_code_points_is_accepted_and_4097_refused(char: str) -> None:
    assert parse_client_message(raw(send(text=char * 4096))).text == char * 4096
    assert bad_request(send(text=char * 4097)).msg_id == 7


@pytest.mark.parametrize(
    "fields",
    [
        {"text": ""},
        {"text": 5},
        {"text": None},
        {"to": []},
        {"to": "bob"},
        {"to": ["*"]},
        {"to": "**"},
        {"to": None},
        {"to": ["ok", "not ok"]},
        {"to": ["a" * 33]},
        {"to": [5]},
        {"to": {"bob": 1}},
    ],
)
def test_bad_send_field_is_bad_request_echoing_the_id(fields: dict) -> None:
    assert bad_request(send(id="m-1") | fields).msg_id == "m-1"


@relaxed
@given(msg_ids, st.sampled_from([{"text": ""}, {"to": []}, {"to": ["-x"]}, {"text": "x" * 4097}]))
def test_every_send_error_echoes_any_valid_id(msg_id: Any, fields: dict) -> None:
    assert bad_request(send(id=msg_id) | fields).msg_id == msg_id


def test_send_keeps_the_recipient_list_as_sent() -> None:
    parsed = parse_client_message(raw(send(to=["bob", "bob", "alice"])))
    assert isinstance(parsed, Send)
    assert parsed.to == ("bob", "bob", "alice")
    assert parse_client_message(raw(send(to="*"))).to == "*"


# --- server side parsing (what a client receives) --------------------------------
@pytest.mark.parametrize(
    "obj",
    [
        {"type": "roster", "seq": True, "full": True, "users": []},
        {"type": "roster", "seq": 1, "full": 1, "users": []},
        {"type": "roster", "seq": 1, "full": True, "users": [1]},
        {"type": "msg", "id": 1, "from": "a", "to": "*", "text": "x", "ts": True},
        {"type": "msg", "id": True, "from": "a", "to": "*", "text": "x", "ts": 1.5},
        {"type": "msg", "id": 1, "from": "a", "to": 5, "text": "x", "ts": 1.5},
        {"type": "auth_ok"},
        {"type": "error", "message": "no code"},
        {"type": "send"},
    ],
)
def test_ill_typed_server_frame_is_bad_request_for_the_client(obj: dict) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_server_message(raw(obj))
    assert info.value.code is Code.BAD_REQUEST


def test_decode_object_returns_the_raw_dict() -> None:
    assert decode_object(b'{"type":"x","n":1}') == {"type": "x", "n": 1}


# --- the worked example in docs/protocol.md stays exact ---------------------------
def _doc_dumps() -> list[bytes]:
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    dumps, current = [], bytearray()
    for line in doc.splitlines():
        match = re.match(r"^[0-9a-f]{8}: ((?:[0-9a-f]{2} ?)+)", line)
        if match:
            current += bytes.fromhex(match.group(1))
        elif current:
            dumps.append(bytes(current))
            current = bytearray()
    return dumps


def test_docs_hex_dumps_are_what_the_encoder_writes() -> None:
    assert _doc_dumps() == [
        encode(Auth("alice", "s3cret", register=True)),
        encode(Msg(17, "alice", ("bob", "carol"), "hi ж", 1700000000.25)),
    ]
