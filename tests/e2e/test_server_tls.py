"""`chat-server --tls-cert --tls-key` from outside (protocol v1.1, section 1).

Python's `ssl` module is the client: it verifies the server's certificate and
host name against the self-signed pair made here, as any client that follows
the contract would. The frames inside TLS are the v1 frames of tests/wire.py.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import ssl
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from server_support import (
    PASSWORD,
    assert_error,
    messages,
    next_frame,
    request,
    roster_changes,
    wait_for,
)

from certs import make_pair
from conftest import server_command
from wire import WireClient, frame, frames_until_eof

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

BYE_SHUTDOWN = {"type": "bye", "reason": "shutdown"}


# ---- helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    return {"good": make_pair(folder, "good"), "other": make_pair(folder, "other")}


def client_context(cafile: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))  # verifies chain and host name
    assert ctx.check_hostname and ctx.verify_mode is ssl.CERT_REQUIRED
    return ctx


class TLSClient(WireClient):
    """A WireClient whose stream is TLS, verified against `ctx`'s trust."""

    def __init__(
        self,
        host: str,
        port: int,
        ctx: ssl.SSLContext,
        server_hostname: str = "localhost",
        timeout: float = 10.0,
    ) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except BaseException:
            raw.close()
            raise
        self._buf = b""


class TLSServer:
    def __init__(self, server: Any, cert: Path) -> None:
        self.server = server
        self.ctx = client_context(cert)

    def client(self, server_hostname: str = "localhost") -> TLSClient:
        c = TLSClient(self.server.host, self.server.port, self.ctx, server_hostname)
        self.server.clients.append(c)
        return c

    def online(self, name: str, register: bool = True) -> TLSClient:
        c = self.client()
        c.login(name, PASSWORD, register=register)
        assert request(c, {"type": "ping"}) == {"type": "pong"}
        return c


def tls_server(start_server: Any, pair: tuple[Path, Path], *extra: str) -> TLSServer:
    cert, key = pair
    server = start_server("--tls-cert", str(cert), "--tls-key", str(key), *extra)
    assert "(TLS)" in server.log(), server.log()[-500:]
    return TLSServer(server, cert)


def raw_bytes_until_eof(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """What a non-TLS peer reads until the server closes: (bytes, seconds it took)."""
    start = time.monotonic()
    data = b""
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            raise AssertionError(f"not closed within {timeout}s; read {data[:64]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def client_hello() -> bytes:
    """A real ClientHello, as a TLS client's first flight."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:8]
    return hello


def no_chat_frame(data: bytes) -> None:
    """Only TLS records (or nothing) came: no length-prefixed JSON."""
    assert b'"type"' not in data, data[:200]
    assert not data or data[:1] in (b"\x15", b"\x16"), data[:16]  # alert or handshake record


# ---- tests ---------------------------------------------------------------------


def test_two_tls_clients_chat_with_big_messages_and_a_burst_in_order(start_server, pairs) -> None:
    tls = tls_server(start_server, pairs["good"])
    alice = tls.online("alice")
    bob = tls.online("bob")
    roster_changes(alice, join=["bob"])
    alice.send({"type": "bye"})
    assert frames_until_eof(alice) == [{"type": "bye", "reason": "bye"}]
    roster_changes(bob, leave=["alice"])
    alice = tls.online("alice", register=False)  # a login, not only a registration
    roster_changes(bob, join=["alice"])

    big_ascii, big_emoji = "a" * 4096, "\U0001f600" * 4096  # 16 KiB of UTF-8: > 1 record
    for i, text in enumerate((big_ascii, big_emoji)):
        answer = request(alice, {"type": "send", "id": i, "to": ["bob"], "text": text})
        assert answer["type"] == "sent" and answer["delivered"] == ["bob"], answer
        (m,) = messages(bob, 1)
        assert m["from"] == "alice" and m["text"] == text
    # 200 frames in one write: several TLS records arrive at once, and what the TLS
    # layer holds after a read is invisible to epoll (the server must drain pending()).
    burst = b"".join(
        frame({"type": "send", "id": f"b{i}", "to": ["bob"], "text": f"{i} " + "z" * 300})
        for i in range(200)
    )
    alice.send_raw(burst)
    answers = [next_frame(alice, timeout=15) for _ in range(200)]
    assert [a["id"] for a in answers] == [f"b{i}" for i in range(200)], answers[:3]
    assert all(a["type"] == "sent" and a["delivered"] == ["bob"] for a in answers)
    got = messages(bob, 200, timeout=15)
    assert [m["text"] for m in got] == [f"{i} " + "z" * 300 for i in range(200)]
    ids = [m["id"] for m in got]
    assert ids == sorted(ids) and len(set(ids)) == 200
    reply = request(bob, {"type": "send", "id": "r", "to": "*", "text": "got them"})
    assert reply["delivered"] == ["alice"], reply
    assert messages(alice, 1)[0]["text"] == "got them"


def test_a_host_name_the_certificate_does_not_name_is_refused_by_the_client(
    start_server, pairs
) -> None:
    tls = tls_server(start_server, pairs["good"])
    with pytest.raises(ssl.SSLCertVerificationError):
        tls.client(server_hostname="not-localhost.example")
    by_ip = tls.client(server_hostname="127.0.0.1")  # the IP is in the SAN too
    assert request(by_ip, {"type": "ping"}) == {"type": "pong"}
    other = TLSServer(tls.server, pairs["other"][0])  # trusting another certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        other.client()
    assert request(tls.online("still"), {"type": "ping"}) == {"type": "pong"}


def test_a_plain_tcp_client_on_the_tls_port_gets_no_frame_and_others_are_served(
    start_server, pairs
) -> None:
    tls = tls_server(start_server, pairs["good"])
    member = tls.online("member")
    plain = socket.create_connection((tls.server.host, tls.server.port), timeout=10)
    auth = {"type": "auth", "user": "plain9eve", "password": PASSWORD, "register": True}
    plain.sendall(frame(auth))
    data, _ = raw_bytes_until_eof(plain, timeout=10)
    plain.close()
    no_chat_frame(data)
    assert tls.server.proc.poll() is None
    assert request(member, {"type": "ping"}) == {"type": "pong"}
    newcomer = tls.online("newcomer")
    assert request(newcomer, {"type": "ping"}) == {"type": "pong"}
    assert "plain9eve" not in tls.server.log()  # never read as a frame


def test_a_stalled_handshake_never_blocks_the_loop_and_is_closed_at_the_login_deadline(
    start_server, pairs
) -> None:
    tls = tls_server(start_server, pairs["good"], "--auth-timeout", "3")
    hello = client_hello()
    half = socket.create_connection((tls.server.host, tls.server.port), timeout=10)
    half.sendall(hello[: len(hello) // 2])
    silent = socket.create_connection((tls.server.host, tls.server.port), timeout=10)
    opened = time.monotonic()
    # Meanwhile someone else connects, handshakes, logs in and chats, at once.
    alice = tls.online("alice")
    bob = tls.online("bob")
    roster_changes(alice, join=["bob"])
    answer = request(alice, {"type": "send", "id": 1, "to": ["bob"], "text": "hi"})
    assert answer["delivered"] == ["bob"], answer
    assert messages(bob, 1)[0]["text"] == "hi"
    assert time.monotonic() - opened < 2.5, "the stalled handshakes held the others up"
    for sock in (half, silent):
        data, _ = raw_bytes_until_eof(sock, timeout=10)
        sock.close()
        no_chat_frame(data)
    closed_after = time.monotonic() - opened
    # The deadline is checked once a second: 3 s, plus up to 1 s, plus a busy machine.
    assert 2.9 <= closed_after <= 3 + 3, closed_after
    assert request(alice, {"type": "ping"}) == {"type": "pong"}  # logged in: not timed out


def test_sigterm_says_bye_to_tls_clients_and_exits_zero(start_server, pairs) -> None:
    tls = tls_server(start_server, pairs["good"])
    chatting = tls.online("alice")
    in_auth = tls.client()
    assert request(in_auth, {"type": "ping"}) == {"type": "pong"}
    handshaking = socket.create_connection((tls.server.host, tls.server.port), timeout=10)
    tls.server.proc.send_signal(signal.SIGTERM)
    assert frames_until_eof(in_auth) == [BYE_SHUTDOWN]
    frames = frames_until_eof(chatting)
    assert frames and frames[-1] == BYE_SHUTDOWN, frames
    data, _ = raw_bytes_until_eof(handshaking, timeout=10)
    handshaking.close()
    no_chat_frame(data)
    assert tls.server.proc.wait(15) == 0
    assert "Traceback" not in tls.server.log()


def test_a_tls_1_1_client_is_refused(start_server, pairs) -> None:
    tls = tls_server(start_server, pairs["good"])
    ctx = client_context(pairs["good"][0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL speak 1.1 at all
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"this OpenSSL cannot make a TLS 1.1 client context: {exc}")
    try:
        c = TLSClient(tls.server.host, tls.server.port, ctx)
    except ssl.SSLError as exc:
        if "NO_PROTOCOLS_AVAILABLE" in str(exc) or "no protocols available" in str(exc):
            pytest.skip(f"this OpenSSL refuses to send a TLS 1.1 hello: {exc}")
        # The server's refusal: a protocol_version alert (or a closed connection).
        assert "PROTOCOL_VERSION" in str(exc) or "UNSUPPORTED_PROTOCOL" in str(exc), exc
    except (ConnectionResetError, BrokenPipeError):
        pass  # refused without an alert
    else:
        version = c.sock.version()  # type: ignore[attr-defined]
        c.close()
        raise AssertionError(f"the server accepted {version}")
    # The hello reached the server, and the refusal was its own.
    assert wait_for(lambda: "TLS handshake failed" in tls.server.log(), timeout=10)
    assert request(tls.online("modern"), {"type": "ping"}) == {"type": "pong"}


def test_a_key_that_does_not_match_the_certificate_is_one_line_and_exit_2(
    tmp_path: Path, pairs
) -> None:
    cert, _ = pairs["good"]
    _, other_key = pairs["other"]
    result = subprocess.run(
        [
            *server_command(),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(other_key),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(other_key) in lines[0] and "match" in lines[0], lines[0]
    assert not (tmp_path / "data").exists(), "a failed start created the data folder"


def test_a_tls_client_s_bad_frame_is_answered_like_on_plain_tcp(start_server, pairs) -> None:
    # The frames inside TLS are the v1 frames, errors included.
    tls = tls_server(start_server, pairs["good"])
    c = tls.online("alice")
    c.send({"type": "send", "id": 7, "to": "*", "text": ""})
    assert_error(next_frame(c), "bad_request", 7)
    c.send_raw(b"\x00\x00\x00\x00")
    frames = frames_until_eof(c)
    assert frames and frames[-1]["code"] == "bad_frame", frames
