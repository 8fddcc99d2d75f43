"""TunedEpollSelector: its knobs reach epoll itself, on real sockets."""

from __future__ import annotations

import select
import selectors
import socket
from collections.abc import Iterator

import pytest

from chat.server.net.selector import TunedEpollSelector, epoll_names


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(20)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def test_one_select_returns_at_most_max_events_and_later_ones_reach_the_rest(pairs) -> None:
    sel = TunedEpollSelector(max_events=8, timeout_ms=0)
    try:
        for a, b in pairs:
            sel.register(a, selectors.EVENT_READ, a.fileno())
            b.send(b"x")  # every one of the 20 is readable now
        seen: set[int] = set()
        for _ in range(3):
            ready = sel.select()
            assert len(ready) == 8
            seen |= {key.data for key, _ in ready}
        assert seen == {a.fileno() for a, _ in pairs}
    finally:
        sel.close()


def test_a_registration_with_no_events_still_reports_a_hang_up() -> None:
    a, b = socket.socketpair()
    sel = TunedEpollSelector(max_events=4, timeout_ms=0)
    try:
        sel.register(a, 0, "paused")
        assert sel.select() == []
        b.close()
        ready = sel.select(1.0)
        assert [key.data for key, _ in ready] == ["paused"]
        assert sel.last_masks[a.fileno()] & select.EPOLLHUP
    finally:
        sel.close()
        a.close()


def test_modify_and_unregister_change_what_is_reported() -> None:
    a, b = socket.socketpair()
    sel = TunedEpollSelector(max_events=4, timeout_ms=0)
    try:
        sel.register(a, selectors.EVENT_READ, "r")
        assert sel.select() == []  # nothing to read yet
        sel.modify(a, selectors.EVENT_WRITE, "w")
        ((key, events),) = sel.select()
        assert key.data == "w" and events == selectors.EVENT_WRITE
        assert sel.get_map()[a].data == "w"
        sel.unregister(a)
        b.send(b"x")
        assert sel.select() == []
        assert len(sel.get_map()) == 0
    finally:
        sel.close()
        a.close()
        b.close()


def test_max_events_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        TunedEpollSelector(max_events=0)


def test_epoll_names_spell_every_flag() -> None:
    assert epoll_names(select.EPOLLIN | select.EPOLLHUP) == "EPOLLIN|EPOLLHUP"
    assert epoll_names(select.EPOLLOUT) == "EPOLLOUT"
    assert epoll_names(0) == "0"
