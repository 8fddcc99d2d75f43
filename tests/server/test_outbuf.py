"""Outbound buffers and their shared budget: limits, the final frame, partial writes."""

from __future__ import annotations

import pytest

from chat.server.outbuf import SOFT_LIMIT, Append, OutboundBudget, OutBuffer


def drain(buf: OutBuffer, per_call: int = 1 << 20) -> bytes:
    out = bytearray()

    def send(view: memoryview) -> int:
        n = min(len(view), per_call)
        out.extend(view[:n])
        return n

    buf.write(send, 1 << 20)
    return bytes(out)


def test_appends_past_the_limit_overflow_and_nothing_more_is_taken() -> None:
    budget = OutboundBudget(1 << 30)
    buf = OutBuffer(10, budget)
    assert buf.append(b"12345") is Append.OK
    assert buf.append(b"123456") is Append.OVERFLOW and buf.overflow
    assert buf.append(b"1") is Append.OVERFLOW  # a slow reader keeps nothing more
    assert drain(buf) == b"12345" and budget.used == 0


def test_the_first_final_frame_wins_and_passes_any_limit() -> None:
    buf = OutBuffer(4, OutboundBudget(1 << 30))
    assert buf.seal(b"final-frame")
    assert not buf.seal(b"other")
    assert buf.append(b"x") is Append.DROPPED
    assert drain(buf) == b"final-frame"


def test_a_spent_budget_refuses_big_buffers_and_still_feeds_small_ones() -> None:
    budget = OutboundBudget(SOFT_LIMIT)
    big, small = OutBuffer(1 << 30, budget), OutBuffer(1 << 30, budget)
    assert big.append(b"x" * (SOFT_LIMIT + 1)) is Append.OK
    assert not budget.spent  # the loop has not seen it yet
    with pytest.raises(BlockingIOError):  # the loop's write: the socket is full
        big.write(_full, 1 << 20)
    assert budget.spent and budget.used == SOFT_LIMIT + 1
    assert big.append(b"y") is Append.OVERFLOW
    assert small.append(b"z" * 100) is Append.OK
    drain(big)
    drain(small)
    assert budget.used == 0 and not budget.spent


def _full(view: object) -> int:
    raise BlockingIOError


def test_a_partial_write_keeps_the_rest_in_order() -> None:
    budget = OutboundBudget(1 << 30)
    buf = OutBuffer(1 << 20, budget)
    buf.append(b"abcdef")
    calls: list[bytes] = []

    def send(view: memoryview) -> int:
        calls.append(bytes(view))
        if len(calls) == 2:
            raise BlockingIOError
        return 2

    with pytest.raises(BlockingIOError):
        buf.write(send, 1 << 20)
    assert calls == [b"abcdef", b"cdef"] and len(buf) == 4 and budget.used == 4
    assert drain(buf) == b"cdef"


def test_a_closed_buffer_drops_everything_and_gives_its_bytes_back() -> None:
    budget = OutboundBudget(1 << 30)
    buf = OutBuffer(1 << 20, budget)
    buf.append(b"x" * 1000)
    with pytest.raises(BlockingIOError):
        buf.write(_full, 1 << 20)
    assert budget.used == 1000
    buf.close()
    assert budget.used == 0 and len(buf) == 0
    assert buf.append(b"y") is Append.DROPPED and not buf.seal(b"z")
