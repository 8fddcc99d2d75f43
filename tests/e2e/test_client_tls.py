"""`chat-client --tls` / `--tls-ca` end to end: real client processes, real certificates.

The happy paths run against the real `chat-server --tls-cert --tls-key`. The
failure paths that need no chat server run against stand-ins in the test: a
Python `ssl` listener presenting a certificate the client must refuse, and
plain-TCP listeners. Every stand-in records the first byte of each
connection, so "never a fallback to plain TCP" is checked, not assumed: a
TLS ClientHello starts with 0x16, a chat frame with a zero length byte.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from server_support import PASSWORD, next_frame, wait_for
from test_client_linemode import LineClient, one_clear_line
from test_client_tui import client_args, line_with
from test_client_tui_screen import popup_text

from certs import make_pair
from tls_peer import Peer, server_context
from wire import WireClient

TLS_RECORD = b"\x16"  # the first byte of a ClientHello

needs_tmux = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


# --------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("certs")
    return {
        "good": make_pair(folder, "good"),
        "other": make_pair(folder, "other", "DNS:other.example"),
    }


def tls_server(start_server: Callable[..., Any], pair: tuple[Path, Path], **kw: Any) -> Any:
    """The real chat-server, speaking TLS with `pair`."""
    cert, key = pair
    return start_server("--tls-cert", str(cert), "--tls-key", str(key), **kw)


class TlsWire(WireClient):
    """tests/wire.py's raw-protocol client, inside TLS (verifying `cafile`)."""

    def __init__(self, host: str, port: int, cafile: Path, timeout: float = 5.0) -> None:
        super().__init__(host, port, timeout)
        ctx = ssl.create_default_context(cafile=str(cafile))
        self.sock = ctx.wrap_socket(self.sock, server_hostname=host)


def tls_online(server: Any, name: str, cafile: Path) -> TlsWire:
    """A TLS connection logged in (registered) as `name`, in CHAT."""
    c = TlsWire(server.host, server.port, cafile)
    server.clients.append(c)
    c.login(name, PASSWORD, register=True)
    c.send({"type": "ping"})
    assert next_frame(c) == {"type": "pong"}
    return c


@pytest.fixture
def stand_ins() -> Iterator[Callable[..., Peer]]:
    """A peer standing in for a server: TLS with `context`, or plain TCP (None)."""
    made: list[Peer] = []

    def make(
        context: ssl.SSLContext | None,
        script: Callable[[socket.socket], None] = lambda conn: None,
        port: int = 0,
    ) -> Peer:
        peer = Peer(script, context, port=port)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


presenting = server_context


def silent(conn: socket.socket) -> None:
    time.sleep(10)


@pytest.fixture
def line_clients() -> Iterator[Callable[..., LineClient]]:
    started: list[LineClient] = []

    def start(*args: Any, **kw: Any) -> LineClient:
        c = LineClient(*args, **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def run_client(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chat.client", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------- against the real chat-server (TLS)
def test_line_mode_over_tls_logs_in_sends_and_receives(start_server, certs, line_clients) -> None:
    cert = certs["good"][0]
    server = tls_server(start_server, certs["good"])
    carol = tls_online(server, "carol", cert)
    bob = line_clients(server, "bob", "--register", "--tls-ca", str(cert))
    bob.wait_for(r"\* online: carol$")
    # By name too: the certificate has DNS:localhost as well as IP:127.0.0.1.
    alice = line_clients(server, "alice", "--register", "--tls-ca", str(cert), host="localhost")
    alice.write("hello over tls", "@bob только тебе")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 0, err
    assert err == ""
    assert [line[9:] for line in out if " > " in line] == [
        "> #1 delivered: bob, carol",
        "> #2 delivered: bob",
    ]
    bob.wait_for(r"^\d\d:\d\d:\d\d <alice> hello over tls$")
    bob.wait_for(r"^\d\d:\d\d:\d\d <alice> \[private\] только тебе$")
    assert carol.recv_type("msg")["text"] == "hello over tls"
    # And the other way: a message from a TLS peer reaches the line-mode client.
    carol.send({"type": "send", "id": 1, "to": ["bob"], "text": "и тебе привет"})
    bob.wait_for(r"<carol> \[private\] и тебе привет$")
    bob.end_input()
    assert bob.finish()[0] == 0


def test_the_real_server_with_a_certificate_the_client_does_not_trust(
    start_server, certs, line_clients
) -> None:
    server = tls_server(start_server, certs["good"])
    alice = line_clients(server, "alice", "--register", "--tls-ca", str(certs["other"][0]))
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 1 and out == []
    assert one_clear_line(err) == (
        "chat-client: TLS: certificate verify failed: self-signed certificate (host 127.0.0.1)"
    )
    assert tls_online(server, "alice", certs["good"][0])  # the name was never registered


@needs_tmux
def test_tui_shows_the_tls_mark_and_chats_over_tls(start_server, certs, tmux) -> None:
    cert = certs["good"][0]
    server = tls_server(start_server, certs["good"])
    bob = tls_online(server, "bob", cert)
    tmux.start_client(*client_args(server, "alice", "--register", "--tls-ca", str(cert)))
    screen = tmux.wait_for(
        f"online | alice @ 127.0.0.1:{server.port} [tls] | 2 online",
        "the certificate of 127.0.0.1 is verified",
        "[ ] bob",
    )
    assert "TLSv1." in screen
    tmux.type("через TLS")
    tmux.keys("Enter")
    frame = bob.recv_type("msg")
    assert (frame["from"], frame["text"]) == ("alice", "через TLS")
    tmux.wait_for("alice: через TLS  [delivered: bob]")
    tmux.keys("C-x")
    tmux.wait_for("Exit")
    tmux.keys("e")
    assert tmux.exit_code() == 0
    assert tmux.stderr() == ""


@needs_tmux
def test_tui_after_a_login_a_changed_certificate_is_retried_never_in_plain(
    start_server, certs, stand_ins, tmux
) -> None:
    """The server comes back with a certificate we don't trust: status line, backoff, TLS only."""
    server = tls_server(start_server, certs["good"])
    tmux.start_client(
        *client_args(server, "alice", "--register", "--tls-ca", str(certs["good"][0])), width=160
    )
    tmux.wait_for(f"alice @ 127.0.0.1:{server.port} [tls]")
    assert server.stop() == 0
    impostor = stand_ins(presenting(certs["other"]), port=server.port)
    screen = tmux.wait_re(
        r"reconnecting (in \d+s|now) \| alice @ 127\.0\.0\.1:\d+ \| TLS: certificate verify "
        r"failed: self-signed certificate \(host 127\.0\.0\.1\)",
        timeout=30,
    )
    assert "[tls]" not in line_with(screen, "reconnecting")
    assert wait_for(lambda: len(impostor.first_bytes) >= 2, timeout=30)
    assert set(impostor.first_bytes) == {TLS_RECORD}
    assert tmux.stderr() == ""


# ----------------------------------------- failure paths against stand-ins
def test_an_untrusted_certificate_is_one_line_exit_1_and_no_plain_fallback(
    certs, stand_ins, line_clients
) -> None:
    server = stand_ins(presenting(certs["good"]))
    alice = line_clients(server, "alice", "--register", "--tls")  # the system store
    alice.write("never sent")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 1 and out == []
    assert one_clear_line(err) == (
        "chat-client: TLS: certificate verify failed: self-signed certificate (host 127.0.0.1)"
    )
    time.sleep(0.3)  # room for a second attempt, were there one
    assert server.first_bytes == [TLS_RECORD]


def test_a_certificate_for_another_host_name_is_one_line(certs, stand_ins, line_clients) -> None:
    server = stand_ins(presenting(certs["other"]))
    alice = line_clients(server, "alice", "--tls-ca", str(certs["other"][0]))
    alice.end_input()
    rc, _, err = alice.finish()
    assert rc == 1
    assert one_clear_line(err) == (
        "chat-client: TLS: certificate verify failed: IP address mismatch, certificate is "
        "not valid for '127.0.0.1' (host 127.0.0.1)"
    )
    assert server.first_bytes == [TLS_RECORD]


def test_a_plain_listener_that_says_nothing_times_out_the_handshake(
    stand_ins, line_clients
) -> None:
    server = stand_ins(None, silent)
    start = time.monotonic()
    alice = line_clients(server, "alice", "--tls")
    alice.end_input()
    rc, _, err = alice.finish(timeout=30)
    assert rc == 1
    assert one_clear_line(err) == (
        f"chat-client: TLS: no handshake answer from 127.0.0.1:{server.port} (is it a TLS port?)"
    )
    assert time.monotonic() - start < 15
    assert server.first_bytes == [TLS_RECORD]


def test_tls_against_the_plain_chat_server_is_one_line_and_sends_no_login(
    server, line_clients
) -> None:
    """Our own server without --tls-cert: the client gives up, it never speaks plain."""
    alice = line_clients(server, "alice", "--register", "--tls")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 1 and out == []
    line = one_clear_line(err)
    assert line.startswith(f"chat-client: TLS: 127.0.0.1:{server.port} "), line
    assert "does not speak TLS" in line or "closed the connection during the handshake" in line
    # No auth ever reached the server: the name is still free.
    c = server.client()
    c.login("alice", PASSWORD, register=True)


# -------------------------------------- plain TCP against a TLS port: the hint
def test_plain_tcp_against_the_real_tls_server_is_one_line_that_suggests_tls(
    start_server, certs, line_clients
) -> None:
    """The server drops a client that does not start with a ClientHello, without a word
    (often with a reset): the client says what that most likely means."""
    server = tls_server(start_server, certs["good"])
    alice = line_clients(server, "alice", "--register")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 1 and out == []
    line = one_clear_line(err)
    assert line.startswith("chat-client: disconnected: "), line
    assert line.endswith(
        f" before any answer (127.0.0.1:{server.port} may be a TLS port: try --tls)"
    ), line
    assert tls_online(server, "alice", certs["good"][0])  # nothing was registered


def answers_with_a_tls_alert(conn: socket.socket) -> None:
    """A TLS stack that does answer a plain-text hello: a fatal `protocol_version` alert."""
    conn.recv(4096)
    conn.sendall(b"\x15\x03\x03\x00\x02\x02\x46")


def test_plain_tcp_answered_with_a_tls_record_says_it_is_a_tls_port(
    stand_ins, line_clients
) -> None:
    server = stand_ins(None, answers_with_a_tls_alert)
    alice = line_clients(server, "alice")
    alice.end_input()
    rc, _, err = alice.finish()
    assert rc == 1
    assert one_clear_line(err) == (
        f"chat-client: disconnected: 127.0.0.1:{server.port} answered in TLS: it is a TLS port "
        "(use --tls)"
    )


@needs_tmux
def test_tui_plain_tcp_against_the_real_tls_server_suggests_tls_in_the_form(
    start_server, certs, tmux
) -> None:
    server = tls_server(start_server, certs["good"])
    tmux.start_client(*client_args(server, "alice", "--register"))
    text = popup_text(tmux.wait_until(lambda s: "--tls" in popup_text(s), "the hint"))
    assert f"(127.0.0.1:{server.port} may be a TLS port: try --tls)" in text, text


@needs_tmux
def test_tui_shows_a_refused_certificate_and_the_login_form_again(certs, stand_ins, tmux) -> None:
    server = stand_ins(presenting(certs["good"]))
    tmux.start_client(
        *client_args(SimpleNamespace(host=server.host, port=server.port), "alice", "--tls"),
        width=160,
    )
    screen = tmux.wait_for(
        "TLS: certificate verify failed: self-signed certificate (host 127.0.0.1)", "Password:"
    )
    assert "offline" in line_with(screen, "alice @ 127.0.0.1")
    assert "[tls]" not in screen
    assert server.first_bytes == [TLS_RECORD]
    tmux.keys("Escape")
    tmux.wait_until(lambda s: "Password:" not in s, "the login form closed")
    tmux.keys("C-x")
    tmux.wait_for("Exit")
    tmux.keys("e")
    assert tmux.exit_code() == 0
    assert tmux.stderr() == ""


# -------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("missing", "--tls-ca {path}: No such file or directory"),
        ("key", "--tls-ca {path}: no certificate found in it (a PEM file is needed)"),
    ],
)
def test_an_unusable_tls_ca_is_one_line_and_exit_2(certs, tmp_path, which, reason) -> None:
    path = str(tmp_path / "nothing.pem") if which == "missing" else str(certs["good"][1])
    proc = run_client("--no-tui", "--user", "alice", "--password", "p", "--tls-ca", path)
    assert proc.returncode == 2
    assert one_clear_line(proc.stderr).startswith(f"chat-client: {reason.format(path=path)}")
