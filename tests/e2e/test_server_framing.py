"""Framing rules of protocol v1, checked byte for byte against the real server."""

from __future__ import annotations

import json
import struct
import time

import pytest
from server_support import (
    assert_error,
    fatal,
    online,
    roster_changes,
    send_msg,
    still_usable,
)

from wire import frame


def test_several_frames_in_one_send_are_each_answered_in_order(server) -> None:
    c = server.client()
    auth = {"type": "auth", "user": "alice", "password": "pw", "register": True}
    c.send_raw(frame({"type": "ping"}) * 3 + frame(auth))
    assert [c.recv() for _ in range(3)] == [{"type": "pong"}] * 3
    assert c.recv() == {"type": "auth_ok", "user": "alice"}
    roster = c.recv()
    assert roster["type"] == "roster" and roster["full"] is True


def test_several_sends_in_one_tcp_write_all_reach_the_recipient(server) -> None:
    bob = online(server, "bob")
    alice = online(server, "alice")
    roster_changes(bob, join=["alice"])
    burst = b"".join(
        frame({"type": "send", "id": i, "to": ["bob"], "text": f"t{i}"}) for i in range(20)
    )
    alice.send_raw(burst)
    answers = [alice.recv() for _ in range(20)]
    assert [a["id"] for a in answers] == list(range(20))
    assert all(a["type"] == "sent" and a["delivered"] == ["bob"] for a in answers)
    assert [bob.recv()["text"] for _ in range(20)] == [f"t{i}" for i in range(20)]


def _dribble(client, data: bytes) -> None:
    """Send one byte per TCP segment (TCP_NODELAY is on, and a pause keeps them apart)."""
    for i in range(len(data)):
        client.send_raw(data[i : i + 1])
        time.sleep(0.001)


def test_a_frame_split_byte_by_byte_is_reassembled(server) -> None:
    c = server.client()
    _dribble(c, frame({"type": "auth", "user": "alice", "password": "pw", "register": True}))
    assert c.recv() == {"type": "auth_ok", "user": "alice"}


def test_a_message_split_byte_by_byte_is_delivered_intact(server) -> None:
    bob = online(server, "bob")
    alice = online(server, "alice")
    roster_changes(bob, join=["alice"])
    _dribble(alice, frame({"type": "send", "id": "x", "to": "*", "text": "héllo ж 😀"}))
    assert alice.recv()["type"] == "sent"
    assert bob.recv()["text"] == "héllo ж 😀"


def test_frames_straddling_tcp_writes_are_reassembled(server) -> None:
    c = server.client()
    data = frame({"type": "ping"}) * 5
    # cut inside the header of one frame and inside the payload of another
    for piece in (data[:2], data[2:9], data[9:20], data[20:]):
        c.send_raw(piece)
        time.sleep(0.01)
    assert [c.recv() for _ in range(5)] == [{"type": "pong"}] * 5


def _logged_in_or_not(server, logged_in: bool):
    return online(server, "alice") if logged_in else server.client()


MALFORMED = {
    "zero_length": b"\x00\x00\x00\x00",
    "bad_utf8": frame(b'{"type":"ping","x":"\xff\xfe"}'),
    "truncated_utf8": frame(b'{"type":"ping","x":"\xd0"}'),
    "not_json": frame(b"{type: ping}"),
    "json_array": frame(b'["ping"]'),
    "json_string": frame(b'"ping"'),
    "json_number": frame(b"42"),
    "json_null": frame(b"null"),
    "no_type": frame(b'{"user":"alice","password":"pw"}'),
}


@pytest.mark.parametrize("logged_in", [False, True], ids=["in_auth", "in_chat"])
@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_frame_is_fatal_bad_frame_with_nothing_after(
    server, kind: str, logged_in: bool
) -> None:
    c = _logged_in_or_not(server, logged_in)
    c.send_raw(MALFORMED[kind])
    fatal(c, "bad_frame")


def test_bad_frame_error_is_the_last_frame_even_with_more_frames_queued_behind_it(server) -> None:
    c = server.client()
    c.send_raw(b"\x00\x00\x00\x00" + frame({"type": "ping"}) * 3)
    frames = c.expect_closed()
    assert len(frames) == 1, frames
    assert_error(frames[0], "bad_frame")


def test_frame_too_large_is_decided_from_the_header_alone(start_server) -> None:
    server = start_server("--max-frame", "64")
    c = server.client()
    c.send_raw(struct.pack(">I", 65))  # the header only: the body never comes
    frames = c.expect_closed(timeout=5)
    assert len(frames) == 1, frames
    assert_error(frames[0], "frame_too_large")


def test_frame_too_large_after_login_closes_with_nothing_after(start_server) -> None:
    server = start_server("--max-frame", "200")
    c = online(server, "alice")
    c.send_raw(struct.pack(">I", 0xFFFFFFFF))
    fatal(c, "frame_too_large")


def test_frame_of_exactly_max_frame_bytes_is_accepted(start_server) -> None:
    server = start_server("--max-frame", "64")
    base = {"type": "ping", "pad": ""}
    pad = 64 - len(json.dumps(base).encode())
    payload = json.dumps({"type": "ping", "pad": "x" * pad}).encode()
    assert len(payload) == 64
    c = server.client()
    c.send_raw(frame(payload))
    assert c.recv() == {"type": "pong"}


def test_default_max_frame_accepts_65536_bytes_and_refuses_65537(server) -> None:
    c = server.client()
    base = len(json.dumps({"type": "ping", "pad": ""}).encode())
    c.send({"type": "ping", "pad": "x" * (65536 - base)})
    assert c.recv() == {"type": "pong"}
    c.send_raw(struct.pack(">I", 65537))
    fatal(c, "frame_too_large")


def test_unknown_extra_fields_are_ignored(server) -> None:
    c = server.client()
    c.send({"type": "ping", "extra": [1, 2, {"deep": None}]})
    assert c.recv() == {"type": "pong"}
    c.send({"type": "auth", "user": "alice", "password": "pw", "register": True, "x": 1})
    assert c.recv() == {"type": "auth_ok", "user": "alice"}
    roster = c.recv()
    c.send({"type": "roster_ack", "seq": roster["seq"], "note": "hi"})
    assert still_usable(c)


@pytest.mark.parametrize("kind", ["zero_length", "bad_utf8", "no_type"])
def test_a_malformed_frame_from_one_client_does_not_disturb_the_others(server, kind: str) -> None:
    alice = online(server, "alice")
    bob = online(server, "bob")
    roster_changes(alice, join=["bob"])
    stranger = server.client()
    mallory = online(server, "mallory")
    roster_changes(alice, join=["mallory"])
    roster_changes(bob, join=["mallory"])
    stranger.send_raw(MALFORMED[kind])
    mallory.send_raw(MALFORMED[kind])
    fatal(stranger, "bad_frame")
    fatal(mallory, "bad_frame")
    roster_changes(alice, leave=["mallory"])
    roster_changes(bob, leave=["mallory"])
    sent = send_msg(alice, ["bob"], "still here?")
    assert sent["delivered"] == ["bob"]
    assert bob.recv()["text"] == "still here?"
    assert still_usable(alice) and still_usable(bob)


def test_frame_too_large_header_split_over_two_writes_is_still_refused(start_server) -> None:
    server = start_server("--max-frame", "64")
    c = server.client()
    header = struct.pack(">I", 1000)
    c.send_raw(header[:2])
    time.sleep(0.05)
    c.send_raw(header[2:])
    fatal(c, "frame_too_large")


def test_any_json_spacing_and_escapes_are_accepted(server) -> None:
    c = server.client()
    c.send_raw(frame(b'\n {\r\n\t"type" :\t"\\u0070ing"\n}\n '))
    assert c.recv() == {"type": "pong"}


def test_text_with_escapes_controls_and_emoji_arrives_unchanged(server) -> None:
    bob = online(server, "bob")
    alice = online(server, "alice")
    roster_changes(bob, join=["alice"])
    text = 'a\u0000b\n"quoted"\\back\tslash \u2028 ж 😀 \U0001f3f3\ufe0f'
    assert send_msg(alice, ["bob"], text)["delivered"] == ["bob"]
    assert bob.recv()["text"] == text
