"""Outbound buffers in the native table: limits, the final frame, writes, stale handles.

Through the Python side (`OutBuffer`, `native.Tick`), on real socket pairs
where the library sends itself; native/dispatch/tests has the C-level tests.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest

from chat.server.core import native
from chat.server.core.outbuf import SOFT_LIMIT, Append, OutBuffer


def table(limit: int = 1 << 20, total: int = 1 << 30, slots: int = 8) -> native.OutTable:
    return native.OutTable(slots, limit, SOFT_LIMIT, total)


def loop_slot(t: native.OutTable, slot: int = 0) -> OutBuffer:
    """A slot the event loop writes (TLS): no fd."""
    return OutBuffer(t, t.open(slot, -1, False), False)


def drain(buf: OutBuffer, per_call: int = 1 << 20) -> bytes:
    out = bytearray()

    def send(chunk: bytes) -> int:
        n = min(len(chunk), per_call)
        out.extend(chunk[:n])
        return n

    while buf.write(send, 1 << 20):
        pass
    return bytes(out)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def read_all(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        data += sock.recv(n - len(data))
    return bytes(data)


def test_appends_past_the_limit_overflow_and_nothing_more_is_taken() -> None:
    t = table(limit=10)
    buf = loop_slot(t)
    assert buf.append(b"12345") is Append.OK
    assert buf.append(b"123456") is Append.OVERFLOW and buf.overflow
    assert buf.append(b"1") is Append.OVERFLOW  # a slow reader keeps nothing more
    assert drain(buf) == b"12345" and t.total == 0


def test_the_first_final_frame_wins_and_passes_any_limit() -> None:
    buf = loop_slot(table(limit=4))
    assert buf.seal(b"final-frame")
    assert not buf.seal(b"other")
    assert buf.append(b"x") is Append.DROPPED and buf.sealed
    assert drain(buf) == b"final-frame"


def test_a_spent_budget_refuses_big_buffers_and_still_feeds_small_ones() -> None:
    t = table(total=SOFT_LIMIT)
    big, small = loop_slot(t, 0), loop_slot(t, 1)
    assert big.append(b"x" * (SOFT_LIMIT + 1)) is Append.OK
    assert t.total == SOFT_LIMIT + 1  # past the total: big buffers take nothing more
    assert big.append(b"y") is Append.OVERFLOW
    assert small.append(b"z" * 100) is Append.OK
    drain(big)
    drain(small)
    assert t.total == 0


def test_a_partial_write_keeps_the_rest_in_order_and_offers_the_same_bytes_again() -> None:
    buf = loop_slot(table())
    buf.append(b"abcdef")
    calls: list[bytes] = []

    def send(chunk: bytes) -> int:
        calls.append(chunk)
        if len(calls) == 2:
            raise BlockingIOError  # OpenSSL wants the same bytes on the retry
        return 2

    assert buf.write(send, 1 << 20) == 4  # a partial send: the socket is full for now
    with pytest.raises(BlockingIOError):
        buf.write(send, 1 << 20)
    assert calls == [b"abcdef", b"cdef"] and len(buf) == 4
    assert drain(buf) == b"cdef"


def test_a_closed_buffer_drops_everything_and_gives_its_bytes_back() -> None:
    t = table()
    buf = loop_slot(t)
    buf.append(b"x" * 1000)
    assert t.total == 1000
    buf.close()
    assert t.total == 0 and len(buf) == 0 and buf.closed
    assert buf.append(b"y") is Append.DROPPED and not buf.seal(b"z")


def test_a_reused_slot_never_gets_bytes_meant_for_the_connection_before() -> None:
    t = table()
    old = loop_slot(t, 3)
    old.close()
    new = loop_slot(t, 3)
    assert old.handle != new.handle
    assert old.append(b"for the old connection") is Append.DROPPED
    new.append(b"for the new one")
    assert drain(new) == b"for the new one"


def test_held_frames_follow_what_is_queued_first(pair) -> None:
    buf = loop_slot(table())
    buf.append(b"roster ")
    buf.hold()
    buf.append(b"live ")
    assert buf.append_first(b"offline ") is Append.OK
    assert drain(buf) == b"roster offline "
    buf.release()
    assert drain(buf) == b"live "


def test_a_seal_during_a_catch_up_drops_what_waits_aside() -> None:
    buf = loop_slot(table())
    buf.hold()
    buf.append(b"live")
    buf.seal(b"bye")
    buf.release()
    assert drain(buf) == b"bye"


# --- slots the library sends itself (plain TCP) ---------------------------------------
def test_a_worker_tick_sends_every_slot_it_touched_in_one_flush(pair) -> None:
    a, b = pair
    t = table()
    buf = OutBuffer(t, t.open(0, a.fileno(), True), True)
    tick = t.tick()
    buf.append(b"one ", tick)
    buf.append(b"two", tick)
    assert tick.flush() == []  # all sent: nothing for the loop
    assert read_all(b, 7) == b"one two" and t.total == 0


def test_a_fanout_reaches_every_handle_but_the_excluded_tag(pair) -> None:
    t = table()
    socks = [socket.socketpair() for _ in range(3)]
    bufs = [OutBuffer(t, t.open(i, s[0].fileno(), True), True) for i, s in enumerate(socks)]
    bufs[0].set_tag(7)
    bufs[1].set_tag(8)
    bufs[2].set_tag(7)  # a second session of the user with tag 7
    handles = native.ffi.new("uint64_t[]", [b.handle for b in bufs])
    tick = t.tick()
    assert t.fanout(tick, b"frame", handles, 3, 7) == 1
    assert tick.flush() == []
    assert socks[1][1].recv(100) == b"frame"
    for i in (0, 2):
        socks[i][1].setblocking(False)
        with pytest.raises(BlockingIOError):
            socks[i][1].recv(100)
    for x, y in socks:
        x.close()
        y.close()


def test_a_full_socket_leaves_bytes_for_the_loop_and_keeps_their_order(pair) -> None:
    a, b = pair
    t = table(limit=64 << 20)
    buf = OutBuffer(t, t.open(0, a.fileno(), True), True)
    tick = t.tick()
    payload = bytes(range(256)) * 8192  # 2 MiB: more than a socket pair holds
    buf.append(payload, tick)
    (report,) = tick.flush()
    assert report[0] == buf.handle and report[1] & native.S_LEFT
    got = bytearray(b.recv(1 << 20))
    while len(got) < len(payload):
        buf.flush()
        got += b.recv(1 << 20)
    assert bytes(got) == payload and len(buf) == 0


def test_a_peer_that_went_away_is_reported_as_a_send_error(pair) -> None:
    a, b = pair
    b.close()
    t = table()
    buf = OutBuffer(t, t.open(0, a.fileno(), True), True)
    tick = t.tick()
    buf.append(b"lost", tick)
    (report,) = tick.flush()
    assert report[1] & native.S_ERROR and report[2] in (errno.EPIPE, errno.ECONNRESET)


def test_an_overflow_is_reported_once_for_the_slow_reader_drop(pair) -> None:
    a, _ = pair
    t = table(limit=10)
    buf = OutBuffer(t, t.open(0, a.fileno(), True), True)
    tick = t.tick()
    buf.append(b"x" * 11, tick)
    (report,) = tick.flush()
    assert report[1] & native.S_OVERFLOW
    buf.append(b"y", tick)
    assert all(not r[1] & native.S_OVERFLOW for r in tick.flush())


def test_a_sealed_slot_says_so_once_its_final_frame_is_out(pair) -> None:
    a, b = pair
    t = table()
    buf = OutBuffer(t, t.open(0, a.fileno(), True), True)
    tick = t.tick()
    buf.seal(b"bye", tick)
    (report,) = tick.flush()
    assert report[1] & native.S_SEALED and b.recv(10) == b"bye"


def test_a_loop_written_slot_is_handed_to_the_loop() -> None:
    t = table()
    buf = loop_slot(t)
    tick = t.tick()
    buf.append(b"tls bytes", tick)
    (report,) = tick.flush()
    assert report == (buf.handle, native.S_LOOP, 0)
    assert drain(buf) == b"tls bytes"
