"""Connection failures become one readable line (real sockets, no server needed)."""

from __future__ import annotations

import queue
import socket

from chat.client import events as ev
from chat.client.net import NetworkClient, describe_connect_error
from chat.client.session import Session


def closed_port() -> int:
    """A loopback port that refuses connections: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection_is_reported_once_and_the_thread_stops() -> None:
    inbox: queue.Queue[ev.NetEvent] = queue.Queue()
    port = closed_port()
    net = NetworkClient("127.0.0.1", port, Session("alice", "pw"), inbox.put, reconnect=True)
    net.start()
    got = [inbox.get(timeout=5) for _ in range(3)]
    assert got[0] == ev.Connecting("127.0.0.1", port, 1)
    assert got[1] == ev.ConnectFailed(
        f"connection refused by 127.0.0.1:{port} (is chat-server running there?)", None
    )
    assert isinstance(got[2], ev.Stopped)
    net.close()
    assert not net.alive


def test_unresolvable_host_message_names_the_host() -> None:
    exc = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert describe_connect_error("nosuch.invalid", 1, exc) == (
        "cannot resolve host 'nosuch.invalid': Name or service not known"
    )


def test_timeout_message() -> None:
    expected = "timed out connecting to 10.0.0.1:7"
    assert describe_connect_error("10.0.0.1", 7, TimeoutError()) == expected


def test_a_tls_record_is_told_from_a_chat_frame_by_its_first_bytes() -> None:
    from chat.client.tls import looks_like_tls

    assert looks_like_tls(b"\x15\x03\x03\x00\x02\x02\x46")  # an alert
    assert looks_like_tls(b"\x16\x03\x01\x02\x00")  # a handshake
    assert looks_like_tls(b"\x15")  # one byte so far: no chat frame starts so
    assert not looks_like_tls(b"\x00\x00\x00\x1f{")  # a chat frame's length
    assert not looks_like_tls(b"\x16\x00")
    assert not looks_like_tls(b"")
