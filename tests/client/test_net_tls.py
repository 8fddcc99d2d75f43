"""The network thread over real TLS sockets, against a scripted peer in the test.

The peer speaks just enough of the protocol (through the shared core) to log
the client in; the TLS is real: certificates made by `openssl`, handshakes,
records, retries of blocked writes. Plain-TCP behaviour is covered by the
e2e tests against the real server.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from certs import make_pair
from chat.client import events as ev
from chat.client.backoff import Backoff
from chat.client.net import NetworkClient
from chat.client.session import Session
from chat.client.tls import TlsSetupError, client_context, describe_tls_error
from chat.shared.framing import FrameDecoder
from chat.shared.messages import (
    Auth,
    AuthOk,
    ClientBye,
    Msg,
    Ping,
    Pong,
    Roster,
    RosterAck,
    Send,
    Sent,
    encode,
    parse_client_message,
)
from tls_peer import Peer, server_context

TLS_RECORD = 0x16  # the first byte of a ClientHello: a TLS handshake record


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("certs")
    return {
        "good": make_pair(folder, "good"),
        "other": make_pair(folder, "other", "DNS:other.example"),
    }


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(*args: object, **kw: object) -> Peer:
        peer = Peer(*args, **kw)  # type: ignore[arg-type]
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


class Frames:
    """Client frames off a blocking socket, decoded by the shared core."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.decoder = FrameDecoder()

    def next(self) -> object:
        while (payload := self.decoder.next_frame()) is None:
            data = self.conn.recv(65536)
            if not data:
                raise EOFError
            self.decoder.feed(data)
        return parse_client_message(payload)


def chat_peer(
    burst: list[str] | None = None, read_delay: float = 0.0, then_close: bool = False
) -> Callable[[socket.socket], None]:
    """Log the client in; then `burst` messages in one write; answer every send and ping."""

    def script(conn: socket.socket) -> None:
        frames = Frames(conn)
        auth = frames.next()
        assert isinstance(auth, Auth), auth
        conn.sendall(encode(AuthOk(auth.user)) + encode(Roster(1, True, users=("bob",))))
        assert frames.next() == RosterAck(1)
        if burst:
            conn.sendall(
                b"".join(
                    encode(Msg(i, "bob", "*", text, 1700000000.0))
                    for i, text in enumerate(burst, 1)
                )
            )
        if then_close:
            return
        time.sleep(read_delay)
        while True:
            frame = frames.next()
            if isinstance(frame, Send):
                conn.sendall(encode(Sent(frame.id, ("bob",), ())))
            elif isinstance(frame, Ping):
                conn.sendall(encode(Pong()))
            elif isinstance(frame, ClientBye):
                return

    return script


def until(inbox: queue.Queue, kind: type, timeout: float = 10.0) -> list[ev.NetEvent]:
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        event = inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        seen.append(event)
        if isinstance(event, kind):
            return seen


def net_client(
    port: int, tls: ssl.SSLContext | None, **kw: object
) -> tuple[NetworkClient, queue.Queue]:
    inbox: queue.Queue[ev.NetEvent] = queue.Queue()
    net = NetworkClient(
        "127.0.0.1", port, Session("alice", "pw"), inbox.put, ping_interval=60, tls=tls, **kw
    )  # type: ignore[arg-type]
    net.start()
    return net, inbox


# ----------------------------------------------------------------- happy path
def test_tls_login_a_burst_in_and_a_flood_out_all_on_the_network_thread(
    certs, peers, monkeypatch
) -> None:
    """Everything arrives and everything is answered, and only `chat-net` touched the SSL object."""
    threads: set[str] = set()
    for name in ("send", "recv", "do_handshake"):
        original = getattr(ssl.SSLSocket, name)

        def spy(self, *args, _original=original, **kw):  # type: ignore[no-untyped-def]
            if not self.server_side:
                threads.add(threading.current_thread().name)
            return _original(self, *args, **kw)

        monkeypatch.setattr(ssl.SSLSocket, name, spy)

    burst = [f"{i} " + "ж" * 2000 for i in range(300)]  # ~1.2 MB in many TLS records
    peer = peers(chat_peer(burst, read_delay=1.0), server_context(certs["good"]), rcvbuf=4096)
    net, inbox = net_client(peer.port, client_context(str(certs["good"][0])))
    events = until(inbox, ev.LoggedIn)
    assert events[:2] == [
        ev.Connecting("127.0.0.1", peer.port, 1),
        ev.Connected("127.0.0.1", peer.port, "TLSv1.3"),
    ]
    got = [e.msg.text for e in until(inbox, ev.Incoming, 10) if isinstance(e, ev.Incoming)]
    while len(got) < len(burst):
        event = inbox.get(timeout=10)
        if isinstance(event, ev.Incoming):
            got.append(event.msg.text)
    assert got == burst

    # Sent from this (the main) thread while the peer does not read: writes block and resume.
    ids = [net.send("*", "я" * 4096) for _ in range(400)]  # ~3.3 MB
    delivered = []
    while len(delivered) < len(ids):
        event = inbox.get(timeout=20)
        assert not isinstance(event, ev.Disconnected | ev.Stopped), event
        if isinstance(event, ev.Delivered):
            delivered.append(event.id)
    assert delivered == ids
    net.close()
    assert until(inbox, ev.Stopped)[-1] == ev.Stopped("closed by the user")
    assert threads == {"chat-net"}
    assert peer.first_bytes == [bytes([TLS_RECORD])]


def test_what_the_server_sends_right_before_closing_is_still_delivered(certs, peers) -> None:
    peer = peers(chat_peer(["last words"], then_close=True), server_context(certs["good"]))
    net, inbox = net_client(peer.port, client_context(str(certs["good"][0])))
    events = until(inbox, ev.Disconnected)
    assert [e.msg.text for e in events if isinstance(e, ev.Incoming)] == ["last words"]
    net.close()


# ----------------------------------------------------------------- failures
def test_an_untrusted_certificate_is_one_line_and_no_plain_retry(certs, peers) -> None:
    peer = peers(chat_peer(), server_context(certs["good"]))
    net, inbox = net_client(peer.port, client_context(None), reconnect=True)  # system store
    events = until(inbox, ev.Stopped)
    assert events == [
        ev.Connecting("127.0.0.1", peer.port, 1),
        ev.ConnectFailed(
            "TLS: certificate verify failed: self-signed certificate (host 127.0.0.1)", None
        ),
        ev.Stopped("TLS: certificate verify failed: self-signed certificate (host 127.0.0.1)"),
    ]
    time.sleep(0.2)
    assert peer.first_bytes == [bytes([TLS_RECORD])]
    net.close()


def test_a_certificate_for_another_name_is_refused(certs, peers) -> None:
    peer = peers(chat_peer(), server_context(certs["other"]))
    net, inbox = net_client(peer.port, client_context(str(certs["other"][0])))
    failed = until(inbox, ev.ConnectFailed)[-1]
    assert failed.reason == (
        "TLS: certificate verify failed: IP address mismatch, certificate is not valid "
        "for '127.0.0.1' (host 127.0.0.1)"
    )
    net.close()


def test_after_a_login_certificate_failures_are_retried_with_backoff_always_over_tls(
    certs, peers
) -> None:
    """The first connection is trusted; then the server's certificate changes."""
    peer = peers(
        chat_peer(then_close=True), server_context(certs["good"]), server_context(certs["other"])
    )
    net, inbox = net_client(
        peer.port,
        client_context(str(certs["good"][0])),
        reconnect=True,
        backoff=Backoff(base=0.05, cap=0.1),
    )
    until(inbox, ev.LoggedIn)
    assert until(inbox, ev.Disconnected)[-1].retry_in is not None
    failures = []
    while len(failures) < 3:
        event = inbox.get(timeout=10)
        if isinstance(event, ev.ConnectFailed):
            failures.append(event)
    assert all(f.retry_in is not None for f in failures)
    assert all(f.reason.startswith("TLS: certificate verify failed: ") for f in failures)
    net.close()
    until(inbox, ev.Stopped)
    assert len(peer.first_bytes) >= 4
    assert set(peer.first_bytes) == {bytes([TLS_RECORD])}


def silent(conn: socket.socket) -> None:
    time.sleep(5)


def test_a_silent_plain_listener_times_out_the_handshake(peers) -> None:
    peer = peers(silent, None)
    start = time.monotonic()
    net, inbox = net_client(peer.port, client_context(None), connect_timeout=0.5)
    failed = until(inbox, ev.ConnectFailed)[-1]
    assert failed == ev.ConnectFailed(
        f"TLS: no handshake answer from 127.0.0.1:{peer.port} (is it a TLS port?)", None
    )
    assert time.monotonic() - start < 3
    assert peer.first_bytes == [bytes([TLS_RECORD])]
    net.close()


def test_closing_during_the_handshake_stops_at_once(peers) -> None:
    peer = peers(silent, None)
    net, inbox = net_client(peer.port, client_context(None), connect_timeout=30)
    until(inbox, ev.Connecting)
    time.sleep(0.2)
    start = time.monotonic()
    net.close()
    assert until(inbox, ev.Stopped, 2)[-1] == ev.Stopped("closed by the user")
    assert time.monotonic() - start < 1.5


def plain_answer(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b'\x00\x00\x00\x10{"type":"error"}')


def test_a_plain_server_is_named_as_not_speaking_tls(peers) -> None:
    peer = peers(plain_answer, None)
    net, inbox = net_client(peer.port, client_context(None))
    failed = until(inbox, ev.ConnectFailed)[-1]
    assert failed.reason == (
        f"TLS: 127.0.0.1:{peer.port} does not speak TLS (wrong version number)"
    )
    net.close()


# ---------------------------------------------------------------- the context
def test_the_context_verifies_and_wants_tls_1_2_or_newer(certs) -> None:
    for ctx in (client_context(None), client_context(str(certs["good"][0]))):
        assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
        assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_an_unusable_ca_file_is_one_line(certs, tmp_path) -> None:
    with pytest.raises(TlsSetupError, match=r"^--tls-ca /nonexistent\.pem: No such file"):
        client_context("/nonexistent.pem")
    key = str(certs["good"][1])
    with pytest.raises(TlsSetupError, match="no certificate found in it"):
        client_context(key)


def test_handshake_error_lines() -> None:
    assert describe_tls_error("h", 1, ConnectionResetError(104, "reset")) == (
        "TLS: h:1 closed the connection during the handshake (is it a TLS port?)"
    )
    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version")
    assert describe_tls_error("h", 1, alert) == (
        "TLS: handshake with h:1 failed: tlsv1 alert protocol version"
    )


def test_a_server_that_stops_reading_ends_the_connection(certs, peers, monkeypatch) -> None:
    monkeypatch.setattr("chat.client.net.SEND_TIMEOUT", 0.5)
    peer = peers(chat_peer(read_delay=30), server_context(certs["good"]), rcvbuf=4096)
    net, inbox = net_client(peer.port, client_context(str(certs["good"][0])))
    until(inbox, ev.LoggedIn)
    for _ in range(400):
        net.send("*", "я" * 4096)
    start = time.monotonic()
    events = until(inbox, ev.Disconnected)
    assert events[-1] == ev.Disconnected("the server stopped reading", None)
    assert time.monotonic() - start < 5
    net.close()
