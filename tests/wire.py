"""A tiny blocking client that speaks protocol v1 on raw sockets, for tests.

It deliberately does not use the project's protocol core, so the server is
checked against the contract itself rather than against our own decoder.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any


class Closed(Exception):
    """The server closed the connection."""


class WireClient:
    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    # ---- sending ---------------------------------------------------------
    def send(self, obj: dict[str, Any]) -> None:
        self.send_raw(frame(obj))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # ---- receiving -------------------------------------------------------
    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame as a dict; raises Closed on EOF, TimeoutError on silence."""
        header = self._read(4, timeout)
        (length,) = struct.unpack(">I", header)
        return json.loads(self._read(length, timeout).decode("utf-8"))

    def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Skip frames until one of `kind` (roster frames are acked on the way)."""
        deadline = time.monotonic() + timeout
        while True:
            obj = self.recv(max(deadline - time.monotonic(), 0.01))
            if obj["type"] == kind:
                return obj
            if obj["type"] == "roster":
                self.send({"type": "roster_ack", "seq": obj["seq"]})

    def login(self, user: str, password: str, register: bool = True) -> dict[str, Any]:
        """auth, expect auth_ok, ack the full roster; return that roster frame."""
        self.send({"type": "auth", "user": user, "password": password, "register": register})
        ok = self.recv()
        assert ok == {"type": "auth_ok", "user": user}, ok
        roster = self.recv()
        assert roster["type"] == "roster" and roster["full"] is True, roster
        self.send({"type": "roster_ack", "seq": roster["seq"]})
        return roster

    def expect_closed(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Read until EOF; return the frames that came before it."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.recv(max(deadline - time.monotonic(), 0.01)))
            except Closed:
                return frames

    def silent(self, seconds: float = 0.3) -> bool:
        """True when no byte (and no EOF) arrives for `seconds`."""
        if self._buf:
            return False
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()

    def _read(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waited {timeout}s for {n} bytes, have {len(self._buf)}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as exc:
                raise Closed("connection reset") from exc
            if not chunk:
                raise Closed("connection closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def frame(obj: dict[str, Any] | bytes) -> bytes:
    payload = obj if isinstance(obj, bytes) else json.dumps(obj).encode("utf-8")
    return struct.pack(">I", len(payload)) + payload


def frames_until_eof(client: WireClient, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every frame up to a clean EOF. Unlike `expect_closed`, a reset is a failure.

    A reset (RST) can destroy frames the peer never read, so a test that wants
    "the last frame, then EOF" must tell the two apart: ConnectionResetError
    propagates, and bytes left after the last whole frame fail the call.
    """
    data = bytearray(client._buf)
    client._buf = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no EOF within {timeout}s ({len(data)} bytes read)")
        client.sock.settimeout(left)
        chunk = client.sock.recv(65536)
        if not chunk:
            break
        data += chunk
    frames, at = [], 0
    while at < len(data):
        assert at + 4 <= len(data), f"{len(data) - at} stray bytes before EOF"
        (length,) = struct.unpack(">I", data[at : at + 4])
        assert at + 4 + length <= len(data), "EOF in the middle of a frame"
        frames.append(json.loads(bytes(data[at + 4 : at + 4 + length]).decode("utf-8")))
        at += 4 + length
    return frames
