"""The network thread against the real server: keep-alive pings and a polite close."""

from __future__ import annotations

import queue
import time

from chat.client import events as ev
from chat.client.net import NetworkClient
from chat.client.session import Session


def until(inbox: queue.Queue, kind: type, timeout: float = 10.0) -> list[ev.NetEvent]:
    """Events up to and including the first of `kind`."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        event = inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        seen.append(event)
        if isinstance(event, kind):
            return seen


def log_shows(server, *needles: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not all(n in server.log() for n in needles):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_pings_keep_an_idle_client_connected_past_the_servers_idle_timeout(start_server) -> None:
    server = start_server("--idle-timeout", "1")
    inbox: queue.Queue[ev.NetEvent] = queue.Queue()
    net = NetworkClient(
        server.host,
        server.port,
        Session("alice", "pw", register=True),
        inbox.put,
        ping_interval=0.3,
    )
    net.start()
    until(inbox, ev.CaughtUp)  # logged in, and the (empty) offline batch is over
    time.sleep(3)  # three idle timeouts without typing anything
    assert inbox.empty(), list(inbox.queue)
    net.close()
    events = until(inbox, ev.Stopped)
    assert events[-1] == ev.Stopped("closed by the user")
    # The server logs the close once our socket is gone, a moment after Stopped.
    assert log_shows(server, "user=alice", "closed by the peer: bye")


def test_without_pings_the_server_closes_an_idle_client(start_server) -> None:
    server = start_server("--idle-timeout", "1")
    inbox: queue.Queue[ev.NetEvent] = queue.Queue()
    net = NetworkClient(
        server.host, server.port, Session("alice", "pw", register=True), inbox.put, ping_interval=60
    )
    net.start()
    until(inbox, ev.LoggedIn)
    events = until(inbox, ev.Stopped)
    assert any(isinstance(e, ev.Disconnected) for e in events), events
    net.close()
