"""--max-events and --epoll-timeout must reach epoll_wait itself, as the DEBUG log shows."""

from __future__ import annotations

import re

from server_support import request, wait_for

from wire import WireClient, frame

_WAIT = re.compile(r"epoll_wait\(maxevents=(\d+), timeout=(-?\d+)ms\) -> (\d+) events")


def _waits(log: str) -> list[tuple[int, int, int]]:
    return [(int(a), int(b), int(c)) for a, b, c in _WAIT.findall(log)]


def test_max_events_caps_every_epoll_wait_with_200_ready_clients(start_server) -> None:
    server = start_server("--max-events", "8", "--log-level", "DEBUG", "--idle-timeout", "0")
    clients = [server.client() for _ in range(200)]
    for c in clients:
        assert request(c, {"type": "ping"}) == {"type": "pong"}
    ping = frame({"type": "ping"})

    def a_full_wait_was_seen() -> bool:
        for c in clients:  # 200 sockets become readable together
            c.send_raw(ping)
        for c in clients:
            assert c.recv() == {"type": "pong"}
        return any(n == 8 for _, _, n in _waits(server.log()))

    assert wait_for(a_full_wait_was_seen, timeout=20, step=0), "no wait ever returned 8 events"
    waits = _waits(server.log())
    assert waits, "no epoll_wait line in the DEBUG log"
    assert {m for m, _, _ in waits} == {8}
    assert max(n for _, _, n in waits) == 8


def test_epoll_timeout_reaches_the_wait(start_server) -> None:
    server = start_server("--epoll-timeout", "50", "--log-level", "DEBUG")
    c: WireClient = server.client()
    assert request(c, {"type": "ping"}) == {"type": "pong"}

    def idle_waits() -> list[tuple[int, int, int]]:
        return [w for w in _waits(server.log()) if w[2] == 0]

    # at 50 ms a wait, an idle loop logs many empty waits quickly; at 1 s it would not
    assert wait_for(lambda: len(idle_waits()) >= 10, timeout=3)
    waits = _waits(server.log())
    assert all(0 <= t <= 50 for _, t, _ in waits), sorted({t for _, t, _ in waits})
    assert any(t == 50 for _, t, _ in waits)


def test_debug_log_names_each_event_with_its_fd_and_epoll_flags(start_server) -> None:
    server = start_server("--log-level", "DEBUG")
    c = server.client()
    assert request(c, {"type": "ping"}) == {"type": "pong"}
    assert wait_for(lambda: re.search(r"fd=\d+ EPOLLIN", server.log()) is not None, timeout=5)
