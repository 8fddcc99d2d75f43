"""Framing: 4-byte big-endian length, then the payload; any split must decode the same."""

from __future__ import annotations

import contextlib
import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError
from chat.shared.framing import (
    DEFAULT_MAX_FRAME,
    MAX_SERVER_FRAME,
    FrameDecoder,
    encode_frame,
)
from chat.shared.messages import encode, parse_client_message

from .strategies import client_messages, relaxed

payloads = st.binary(min_size=1, max_size=300)


def drain(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def test_header_is_four_byte_big_endian_length() -> None:
    assert encode_frame(b'{"type":"ping"}') == b'\x00\x00\x00\x0f{"type":"ping"}'


@relaxed
@given(st.lists(payloads, min_size=1, max_size=8), st.lists(st.integers(min_value=0), max_size=40))
def test_any_split_of_a_stream_decodes_to_the_same_frames(
    frames: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(p) for p in frames)
    decoder = FrameDecoder()
    got: list[bytes] = []
    for chunk in split_at(stream, cuts):
        decoder.feed(chunk)
        got.extend(drain(decoder))
    assert got == frames
    assert decoder.buffered == 0


@relaxed
@given(
    st.lists(client_messages, min_size=1, max_size=6),
    st.lists(st.integers(min_value=0), max_size=30),
)
def test_any_split_of_a_message_stream_parses_to_the_same_messages(messages, cuts) -> None:
    stream = b"".join(encode(m) for m in messages)
    decoder = FrameDecoder()
    got = []
    for chunk in split_at(stream, cuts):
        decoder.feed(chunk)
        got.extend(parse_client_message(p) for p in drain(decoder))
    assert got == messages


def test_byte_by_byte_delivery_yields_each_frame_once_complete() -> None:
    stream = encode_frame(b"abc") + encode_frame(b"defg")
    decoder = FrameDecoder()
    seen = []
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        seen.append(drain(decoder))
    assert seen[6] == [b"abc"]
    assert seen[-1] == [b"defg"]
    assert sum(len(s) for s in seen) == 2


def test_incomplete_header_or_body_gives_nothing_yet() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00")
    assert decoder.next_frame() is None
    decoder.feed(b"\x00\x05abc")
    assert decoder.next_frame() is None
    assert decoder.buffered == 7
    decoder.feed(b"de")
    assert decoder.next_frame() == b"abcde"


@relaxed
@given(st.integers(min_value=DEFAULT_MAX_FRAME + 1, max_value=2**32 - 1))
def test_frame_too_large_is_decided_from_the_header_alone(length: int) -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", length))  # no body at all
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_frame()
    assert info.value.code is Code.FRAME_TOO_LARGE
    assert info.value.fatal


def test_frame_of_exactly_max_frame_is_accepted_and_one_more_is_refused() -> None:
    decoder = FrameDecoder(max_frame=10)
    decoder.feed(encode_frame(b"x" * 10))
    assert decoder.next_frame() == b"x" * 10
    decoder.feed(struct.pack(">I", 11))
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_frame()
    assert info.value.code is Code.FRAME_TOO_LARGE


def test_a_refused_stream_stays_refused() -> None:
    decoder = FrameDecoder(max_frame=4)
    decoder.feed(struct.pack(">I", 5))
    for _ in range(2):
        with pytest.raises(RemoteProtocolError):
            decoder.next_frame()


def test_zero_length_frame_is_bad_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_frame()
    assert info.value.code is Code.BAD_FRAME
    assert info.value.fatal


def test_client_side_decoder_accepts_sixteen_mebibyte_frames() -> None:
    decoder = FrameDecoder(max_frame=MAX_SERVER_FRAME)
    big = b"y" * MAX_SERVER_FRAME
    decoder.feed(encode_frame(big))
    assert decoder.next_frame() == big


def test_many_frames_through_one_decoder_survive_buffer_compaction() -> None:
    decoder = FrameDecoder()
    body = b"z" * 1000
    for i in range(300):  # 300 KB pass through, several compactions
        decoder.feed(encode_frame(body + str(i).encode())[:500])
        decoder.feed(encode_frame(body + str(i).encode())[500:])
        assert decoder.next_frame() == body + str(i).encode()
    assert decoder.buffered == 0


def test_encoder_refuses_frames_no_peer_could_accept() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(b"")
    with pytest.raises(LocalProtocolError):
        encode_frame(b"x" * (MAX_SERVER_FRAME + 1))
    with pytest.raises(LocalProtocolError):
        FrameDecoder(max_frame=0)


@relaxed
@given(st.lists(st.binary(max_size=64), max_size=12))
def test_arbitrary_bytes_raise_only_remote_protocol_errors(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(max_frame=256)
    for chunk in chunks:
        decoder.feed(chunk)
        try:
            for payload in drain(decoder):
                with contextlib.suppress(RemoteProtocolError):
                    parse_client_message(payload)
        except RemoteProtocolError as exc:
            assert exc.code in (Code.BAD_FRAME, Code.FRAME_TOO_LARGE)
            return


@relaxed
@given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=6))
def test_arbitrary_payloads_in_valid_frames_raise_only_remote_protocol_errors(
    bodies: list[bytes],
) -> None:
    decoder = FrameDecoder()
    decoder.feed(b"".join(encode_frame(b) for b in bodies))
    frames = drain(decoder)
    assert frames == bodies
    for payload in frames:
        try:
            parse_client_message(payload)
        except RemoteProtocolError as exc:
            assert isinstance(exc.code, Code)
