"""Helpers for the server end-to-end tests: they know the contract, not our code.

Everything here speaks protocol v1 through `tests/wire.py` (raw sockets),
so the server is judged the way an outside client would judge it.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterable
from typing import Any

from wire import Closed, WireClient

PASSWORD = "correct horse"


class RawClient(WireClient):
    """A WireClient that can also hand back a frame's raw payload bytes.

    `rcvbuf` shrinks the receive buffer before connecting, so a client that
    stops reading fills up quickly (the slow-consumer test).
    """

    def __init__(
        self, host: str, port: int, timeout: float = 5.0, rcvbuf: int | None = None
    ) -> None:
        if rcvbuf is None:
            super().__init__(host, port, timeout)
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._buf = b""

    def recv_payload(self, timeout: float = 5.0) -> bytes:
        """The next frame's payload, exactly as it came over the wire."""
        (length,) = struct.unpack(">I", self._read(4, timeout))
        return self._read(length, timeout)


def raw_client(server: Any, rcvbuf: int | None = None) -> RawClient:
    """A RawClient that the fixture closes with the server's other clients."""
    c = RawClient(server.host, server.port, rcvbuf=rcvbuf)
    server.clients.append(c)
    return c


def online(server: Any, name: str, password: str = PASSWORD, register: bool = True) -> WireClient:
    """A connection logged in as `name` that is in CHAT.

    The ping after the ack returns once the server has handled the ack, since
    frames on one connection are handled in order: the user is online by then.
    """
    c = server.client()
    c.login(name, password, register=register)
    assert request(c, {"type": "ping"}) == {"type": "pong"}
    return c


def register(server: Any, *names: str, password: str = PASSWORD) -> None:
    """Create accounts, each on its own connection, then leave politely."""
    for name in names:
        c = server.client()
        c.send({"type": "auth", "user": name, "password": password, "register": True})
        ok = c.recv()
        assert ok == {"type": "auth_ok", "user": name}, ok
        c.send({"type": "bye"})
        c.expect_closed()


def roster_changes(
    client: WireClient, join: Iterable[str] = (), leave: Iterable[str] = (), timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Read (and ack) roster deltas until the given joins and leaves were all seen.

    Returns the delta frames read. Any other frame on the way is a test failure.
    """
    want_join, want_leave = set(join), set(leave)
    seen_join: set[str] = set()
    seen_leave: set[str] = set()
    frames = []
    deadline = time.monotonic() + timeout
    while not (want_join <= seen_join and want_leave <= seen_leave):
        f = client.recv(max(deadline - time.monotonic(), 0.01))
        assert f["type"] == "roster" and f["full"] is False, f
        frames.append(f)
        seen_join |= set(f["join"])
        seen_leave |= set(f["leave"])
        client.send({"type": "roster_ack", "seq": f["seq"]})
    return frames


def next_frame(client: WireClient, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame that is not a roster delta (deltas are acked on the way)."""
    deadline = time.monotonic() + timeout
    while True:
        f = client.recv(max(deadline - time.monotonic(), 0.01))
        if f["type"] == "roster" and f.get("full") is False:
            client.send({"type": "roster_ack", "seq": f["seq"]})
            continue
        return f


def request(client: WireClient, obj: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one frame and return the answer (roster deltas acked on the way)."""
    client.send(obj)
    return next_frame(client, timeout)


def still_usable(client: WireClient) -> bool:
    """A ping gets its pong: the connection survived whatever came before."""
    return request(client, {"type": "ping"}) == {"type": "pong"}


def send_msg(
    client: WireClient, to: str | list[str], text: str, msg_id: str | int = "m1"
) -> dict[str, Any]:
    """Send a message and return the `sent` answer."""
    answer = request(client, {"type": "send", "id": msg_id, "to": to, "text": text})
    assert answer["type"] == "sent" and answer["id"] == msg_id, answer
    return answer


def messages(client: WireClient, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Read `count` msg frames (acking roster deltas); anything else fails the test."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        f = next_frame(client, max(deadline - time.monotonic(), 0.01))
        assert f["type"] == "msg", f
        out.append(f)
    return out


def fatal(client: WireClient, code: str, timeout: float = 5.0) -> None:
    """The connection ends with exactly one error frame of `code`, nothing after it."""
    frames = client.expect_closed(timeout)
    assert frames, f"closed without the {code} error"
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == code, frames
    assert "message" in frames[-1] and isinstance(frames[-1]["message"], str), frames


def assert_error(frame: dict[str, Any], code: str, msg_id: Any = None) -> None:
    assert frame["type"] == "error" and frame["code"] == code, frame
    assert isinstance(frame.get("message"), str), frame
    if msg_id is not None:
        assert "id" in frame and frame["id"] == msg_id and type(frame["id"]) is type(msg_id), frame


def is_closed(client: WireClient, timeout: float = 5.0) -> bool:
    """True when the server closed the connection (without sending anything more)."""
    try:
        f = client.recv(timeout)
    except Closed:
        return True
    raise AssertionError(f"expected a close, got {f}")


def wait_for(predicate: Any, timeout: float = 10.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def ts_literal(payload: bytes) -> str:
    """The text of the `ts` number exactly as the server wrote it."""
    obj = json.loads(payload)
    assert "ts" in obj, obj
    decoder = json.JSONDecoder()
    text = payload.decode("utf-8")
    start = text.index('"ts"') + len('"ts"')
    start = text.index(":", start) + 1
    while text[start] in " \t\r\n":
        start += 1
    end = start
    while end < len(text) and text[end] in "0123456789+-.eE":
        end += 1
    literal = text[start:end]
    assert decoder.decode(literal) == obj["ts"]
    return literal


#: What a server started with `--min-password 12` answers a registration with a shorter one.
TOO_SHORT = "password too short: at least 12 characters"


def _frame(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


def refusing_registration(conn: socket.socket) -> None:
    """A scripted server (for `tls_peer.Peer`) that refuses a registration as the server's
    `--min-password` does: `bad_request` with its own text; it then answers the client's
    `bye` and closes."""
    (length,) = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))
    auth = json.loads(conn.recv(length, socket.MSG_WAITALL))
    assert auth["type"] == "auth" and auth["register"] is True, auth
    conn.sendall(_frame({"type": "error", "code": "bad_request", "message": TOO_SHORT}))
    conn.recv(64)  # the client's bye
    conn.sendall(_frame({"type": "bye", "reason": "bye"}))
