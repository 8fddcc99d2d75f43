"""The TUI against a v1.1 server (no feature granted), in tmux: the real server behind a
loopback relay that takes `features` out of every `auth`, so the server answers as
v1.1 does (an `auth_ok` without `features`, nothing of v1.2 ever sent). A person's buffer
works as with any server; rooms, read markers, typing and the directory are not there, and
the client says so instead of failing."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import threading
from typing import Any

import pytest
from server_support import online, register, send_msg
from test_client_tui import next_msg, start_online

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


class V11Relay:
    """A loopback relay to `server` that removes `features` from the client's `auth`
    frames (every other byte passes as it is): the server then treats the connection as
    v1.1, exactly as a server that knows nothing of v1.2 would answer it."""

    def __init__(self, server: Any) -> None:
        self.target = (server.host, server.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self.listener.getsockname()[1]
        self.auths: list[dict[str, Any]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _up(self, src: socket.socket, dst: socket.socket) -> None:
        buf = b""
        try:
            while data := src.recv(65536):
                buf += data
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                    size = struct.unpack(">I", buf[:4])[0]
                    payload, buf = buf[4 : 4 + size], buf[4 + size :]
                    obj = json.loads(payload)
                    if obj.get("type") == "auth":
                        self.auths.append(dict(obj))
                        obj.pop("features", None)
                        payload = json.dumps(obj).encode()
                    dst.sendall(struct.pack(">I", len(payload)) + payload)
        except OSError:
            pass
        finally:
            dst.close()

    @staticmethod
    def _down(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self) -> None:
        self.listener.close()


def test_against_a_v11_server_buffers_work_and_what_v12_adds_is_said_missing(server, tmux) -> None:
    relay = V11Relay(server)
    try:
        bob = online(server, "bob")
        register(server, "dave")
        start_online(tmux, relay, "alice", "--register")
        assert relay.auths[0]["features"] == ["rooms", "read", "echo", "typing", "resume"]  # asked
        tmux.wait_for("[ ] bob")
        send_msg(bob, ["alice"], "psst", msg_id=1)
        tmux.wait_for("2@bob (1)")  # a person's buffer, as with any server
        tmux.keys("M-2")
        tmux.wait_for("[private] bob: psst", "[bob] >")
        tmux.type("hi bob")
        tmux.keys("Enter")
        assert next_msg(bob)["to"] == ["bob"]
        tmux.wait_for("alice: hi bob  [delivered: bob]")
        tmux.type("/join #dev")
        tmux.keys("Enter")
        tmux.wait_for("this server has no rooms (protocol v1.2)", "> /join #dev")
        tmux.keys("C-u")
        tmux.type("@#dev hello")
        tmux.keys("Enter")
        screen = tmux.wait_until(
            lambda s: "> @#dev hello" in s and s.count("this server has no rooms") == 2,
            "the line kept, and said again",
        )
        assert "#dev" not in screen.split("Buffers")[1].split("[bob]")[0]  # no room buffer
        tmux.keys("C-u")
        # No directory: a name cannot be checked, so it is taken as it is (v1.1's way).
        tmux.type("/query ghost")
        tmux.keys("Enter")
        tmux.wait_for("[ghost (offline)] >")
        tmux.type("/query dave")
        tmux.keys("Enter")
        tmux.wait_for("[dave (offline)] >")
    finally:
        relay.close()
