"""`--listen [HOST:]PORT[,tls]`: several addresses at once, each plain or TLS (issue "2 of 6").

One server, one plain and one TLS listener, real certificates made for the
test: a user on each chats with the other, and both share one roster.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from certs import make_pair
from conftest import ServerProc
from e2e.server_support import PASSWORD, messages, request, roster_changes
from wire import WireClient


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TLSClient(WireClient):
    def __init__(self, port: int, ca: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.sock.settimeout(5)
        self._buf = b""


def test_a_plain_and_a_tls_listener_serve_one_chat(
    start_server: Callable[..., ServerProc], tmp_path: Path
) -> None:
    cert, key = make_pair(tmp_path, "server")
    plain, secure = _free_port(), _free_port()
    server = start_server(
        "--listen",
        f"127.0.0.1:{plain}",
        "--listen",
        f"127.0.0.1:{secure},tls",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    log = server.log()
    assert f"listening on 127.0.0.1 port {plain} (plain TCP)" in log
    assert f"listening on 127.0.0.1 port {secure} (TLS)" in log
    alice = WireClient("127.0.0.1", plain)
    alice.login("alice", PASSWORD, register=True)
    assert request(alice, {"type": "ping"}) == {"type": "pong"}
    bob = TLSClient(secure, cert)
    bob.login("bob", PASSWORD, register=True)
    assert request(bob, {"type": "ping"}) == {"type": "pong"}
    roster_changes(alice, join=["bob"])
    alice.send({"type": "send", "id": 1, "to": ["bob"], "text": "over both listeners"})
    assert [m["text"] for m in messages(bob, 1)] == ["over both listeners"]
    # The TLS port speaks only TLS.
    stray = WireClient("127.0.0.1", secure)
    stray.send({"type": "ping"})
    with contextlib.suppress(OSError):  # closed (EOF or reset): no chat frame ever
        assert stray.sock.recv(100) == b""
    for c in (alice, bob, stray):
        c.close()


def test_a_tls_listener_without_a_certificate_is_refused_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chat.server",
            "--data-dir",
            str(tmp_path),
            "--listen",
            f"127.0.0.1:{_free_port()},tls",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "a TLS listener needs --tls-cert and --tls-key" in lines[0]
    assert not (tmp_path / "server.key").exists()  # a start that fails creates nothing


def test_a_bad_listen_value_is_a_usage_error(tmp_path: Path) -> None:
    for value, words in (
        ("::1:7777", "brackets"),
        ("127.0.0.1:port", "not a number"),
        ("7777,quic", "unknown option"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "chat.server", "--data-dir", str(tmp_path), "--listen", value],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2 and words in result.stderr, (value, result.stderr)
