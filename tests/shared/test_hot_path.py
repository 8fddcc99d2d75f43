"""The server's hot path takes shortcuts (issue 18); each must give what the general path
gives, byte for byte and error for error.

- `read_send`: a `send` to "*" or to names in one typed decode; None for anything else,
  which `read_client` then decides. Whenever it answers, `read_client` gives the same
  `Send`; it never refuses a frame itself.
- `ServerConnection.receive` in CHAT takes that shortcut first: the message, or the
  error, is what the general path gives.
- `encode_msgs` encodes the part a group of messages shares once: byte for byte
  `encode` of each message, whatever is shared or not.
- `FrameDecoder.cut` cuts payloads straight out of a read buffer the caller reuses: what
  it keeps is a copy, and every split of a stream gives the frames and errors feeding
  the decoder byte by byte gives.
"""

from __future__ import annotations

import itertools
import json
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.shared.connection import ServerConnection
from chat.shared.errors import RemoteProtocolError
from chat.shared.framing import FrameDecoder
from chat.shared.messages import (
    ID_TEXT_MAX,
    MAX_ID,
    TEXT_MAX,
    Msg,
    Send,
    encode,
    encode_msgs,
    read_client,
    read_send,
)
from chat.shared.states import State

from .strategies import names


def general(payload: bytes) -> Any:
    """What the general path makes of a payload: the message, or the error's wire form."""
    try:
        _kind, _msg_id, message = read_client(payload)
    except RemoteProtocolError as err:
        return ("error", err.code, err.message, err.msg_id)
    if isinstance(message, RemoteProtocolError):
        return ("error", message.code, message.message, message.msg_id)
    return message


def agrees(payload: bytes) -> Send | None:
    fast = read_send(payload)
    if fast is not None:
        assert general(payload) == fast, payload
        assert type(fast.to) is str or type(fast.to) is tuple
    return fast


def raw(**fields: Any) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


def send_json(msg_id: Any = 1, to: Any = "*", text: Any = "hi", **extra: Any) -> bytes:
    return raw(type="send", id=msg_id, to=to, text=text, **extra)


# --- read_send ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        send_json(),
        send_json(7, ["bob"]),
        send_json("an id", ["bob", "carol", "bob"]),
        send_json(-MAX_ID, "*"),
        send_json(MAX_ID, "*"),
        send_json("x" * ID_TEXT_MAX, "*"),
        send_json(1, "*", "é" * TEXT_MAX),
        send_json(1, "*", "\U0001f600" * TEXT_MAX),  # code points, not UTF-8 bytes
        b'{"to":"*","text":"hi","id":3,"type":"send"}',  # any order
        b'{"type":"send","id":1,"id":2,"to":"*","text":"a","text":"b"}',  # the last wins
        b'{"\\u0074ype":"send","id":1,"to":"*","text":"hi"}',  # an escaped key
        b' {"type":"send","id":1,"to":"*","text":"hi"}\n',
    ],
)
def test_a_well_formed_send_takes_the_shortcut_and_equals_the_general_path(
    payload: bytes,
) -> None:
    assert agrees(payload) is not None


@pytest.mark.parametrize(
    "payload",
    [
        send_json(True),
        send_json(1.0),
        send_json(None),
        send_json(MAX_ID + 1),
        send_json(-MAX_ID - 1),
        send_json("x" * (ID_TEXT_MAX + 1)),
        send_json(1, "*", ""),
        send_json(1, "*", "x" * (TEXT_MAX + 1)),
        send_json(1, "*", "\U0001f600" * (TEXT_MAX + 1)),
        send_json(1, "*", 5),
        send_json(1, []),
        send_json(1, ["bob", 5]),
        send_json(1, ["-bob"]),
        send_json(1, ["b" * 33]),
        send_json(1, [["bob"]]),
        send_json(1, "#dev"),  # a room: the general path checks the feature and the name
        send_json(1, "bob"),
        send_json(1, {"a": 1}),
        send_json(1, "*", "hi", extra=1),  # a field more: the general path judges it
        # Nesting in a field more: the dict decode refuses it near the recursion limit,
        # where a typed skip might not: never the shortcut's to judge.
        send_json(1, "*", "hi")[:-1] + b',"x":' + b"[" * 995 + b"]" * 995 + b"}",
        b'{"type":"send","id":1,"to":"*"}',
        b'{"type":"ping"}',
        b'{"type":"send","id":1,"to":"*","text":"hi","type":"ping"}',
        b'{"type":"sends","id":1,"to":"*","text":"hi"}',
        b'{"type":"send","id":1,"to":"*","text":"\xff"}',  # not UTF-8
        b'{"type":"send","id":1,"to":"*","text":"\\ud800"}',  # a lone surrogate
        b'{"type":"send","id":1,"to":"*","text":"hi"} {}',
        b'["send"]',
        b"",
        b"nul",
    ],
)
def test_anything_else_goes_to_the_general_path(payload: bytes) -> None:
    fast = agrees(payload)
    if payload.startswith(b'{"type":"send","id":1,"to":"*","text":"\\ud800'):
        return  # msgspec takes a lone surrogate either way; both paths then agree
    assert fast is None


ids = st.one_of(
    st.integers(min_value=-MAX_ID - 2, max_value=MAX_ID + 2),
    st.text(max_size=ID_TEXT_MAX + 2),
    st.booleans(),
    st.floats(allow_nan=False),
    st.none(),
)
recipients = st.one_of(
    st.just("*"),
    st.lists(st.one_of(names, st.text(max_size=40), st.integers()), max_size=4),
    st.text(max_size=10),
)
texts = st.one_of(st.text(max_size=20), st.integers(), st.just(""))
extras = st.dictionaries(
    st.sampled_from(["type", "id", "to", "text", "x", "offline"]),
    st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
    max_size=2,
)


@given(ids, recipients, texts, extras, st.sampled_from(["send", "ping", "Send"]))
def test_any_frame_the_shortcut_takes_is_what_the_general_path_gives(
    msg_id: Any, to: Any, text: Any, extra: dict[str, Any], kind: str
) -> None:
    body = json.dumps({"type": kind, "id": msg_id, "to": to, "text": text})
    if extra:  # keys again after the first ones: duplicates, or fields more
        body = body[:-1] + ", " + json.dumps(extra)[1:]
    agrees(body.encode())


# --- ServerConnection.receive in CHAT -----------------------------------------------------
def chatting() -> ServerConnection:
    conn = ServerConnection(offered=())
    conn.state = State.CHAT
    return conn


def outcome(conn: ServerConnection, payload: bytes) -> Any:
    try:
        return conn.receive(payload)
    except RemoteProtocolError as err:
        return ("error", err.code, err.message, err.msg_id)


@pytest.mark.parametrize(
    "payload",
    [
        send_json(),
        send_json(3, ["bob"]),
        send_json(3, "#dev"),  # rooms not granted: bad_request with the id
        send_json(True),
        send_json(1, "*", ""),
        send_json(1, "*", "hi", extra=1),
        b'{"type":"ping"}',
        b'{"type":"send"',
    ],
)
def test_receive_in_chat_gives_what_the_general_path_gives(payload: bytes) -> None:
    fast = outcome(chatting(), payload)
    expected = general(payload)
    if isinstance(expected, tuple) or not isinstance(fast, Send):
        # Refused frames, or other types: receive's own rules on the general path's result.
        slow = chatting()
        assert fast == outcome(slow, payload)
    else:
        assert fast == expected


# --- encode_msgs ---------------------------------------------------------------------------
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob"]),
            st.sampled_from(["*", "#dev", ("bob",), ("bob", "carol")]),
            st.text(min_size=1, max_size=30),
            st.sampled_from([1.0, 1700000000.123456, 0.0, 2.5]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_encode_msgs_is_encode_of_each_whatever_the_messages_share(
    parts: list[tuple[str, Any, str, float]],
) -> None:
    msgs = [Msg(i + 1, s, to, text, ts) for i, (s, to, text, ts) in enumerate(parts)]
    assert encode_msgs(msgs) == b"".join(encode(m) for m in msgs)


def test_encode_msgs_of_a_group_shares_nothing_it_should_not() -> None:
    to = ("bob",)
    msgs = [Msg(1, "alice", to, "a", 5.0), Msg(2, "alice", ("bob",), "b", 5.0)]
    msgs += [Msg(3, "alice", to, "c", 6.0), Msg(4, "al" + "ice", to, "d", 6.0)]
    assert encode_msgs(msgs) == b"".join(encode(m) for m in msgs)


# --- FrameDecoder.cut ------------------------------------------------------------------------
def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def cut_all(chunks: list[bytes]) -> tuple[list[bytes], Any]:
    """Cut `chunks` through one reused read buffer, scribbled over after each cut."""
    decoder = FrameDecoder(64)
    buf = bytearray(256)
    view = memoryview(buf)
    frames: list[bytes] = []
    for chunk in chunks:
        buf[: len(chunk)] = chunk
        got, err, buffered = decoder.cut(view[: len(chunk)])
        buf[:] = b"\xee" * len(buf)  # the next read overwrites it
        frames += got
        assert buffered == decoder.buffered
        if err is not None:
            return frames, (err.code, err.message)
    return frames, None


def byte_by_byte(stream: bytes) -> tuple[list[bytes], Any]:
    decoder = FrameDecoder(64)
    frames: list[bytes] = []
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        try:
            while (payload := decoder.next_frame()) is not None:
                frames.append(payload)
        except RemoteProtocolError as err:
            return frames, (err.code, err.message)
    return frames, None


@given(
    st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=64).map(frame),
            st.just(struct.pack(">I", 0)),
            st.integers(min_value=65, max_value=2**32 - 1).map(lambda n: struct.pack(">I", n)),
        ),
        max_size=6,
    ),
    st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_cutting_from_a_reused_buffer_gives_what_byte_by_byte_gives(
    parts: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(parts)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert cut_all(chunks) == byte_by_byte(stream)


def test_every_cut_payload_is_bytes_of_its_own() -> None:
    decoder = FrameDecoder(64)
    buf = bytearray(frame(b"abc") + frame(b"de")[:3])
    frames, err, buffered = decoder.cut(memoryview(buf))
    buf[:] = b"z" * len(buf)
    assert frames == [b"abc"] and type(frames[0]) is bytes and err is None and buffered == 3
    frames, err, buffered = decoder.cut(b"\x02de")
    assert frames == [b"de"] and buffered == 0
