"""The control socket: how `chat-server user ...` reaches a running server, never the chat port.

A Unix socket in the data folder (the folder of the users file; a cluster
node's: its `--data-dir`), `control.sock`, mode 0600: file permissions
are the authentication, as with Redis' `unixsocketperm 700` and Prosody's
`prosodyctl shell`. Only the folder's owner (and root) can connect; the
folder itself is 0700.

One request per connection, one line each way (UTF-8 JSON, at most 64 KiB):

    -> {"cmd": "user ban", "name": "mallory"}
    <- {"ok": true, "out": []}          or  {"ok": false, "error": "no such user: mallory"}

A request that is not a known command gets one line of error; a client that
does not send its whole request within 5 s is closed; one that does not read
its answer is dropped after 5 s. Each client has its own thread, at most 8 at
once (more are told `busy` and closed), so a silent one holds nobody else.
The process on the other end is named in the audit log by SO_PEERCRED (uid
and pid).

A socket's path has room for 107 bytes: a longer folder is reached through
`/proc/self/fd/N/control.sock`, N a descriptor of the folder, on both sides
(Linux); where that is too long as well, the start says so in one line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("chat.server.control")

SOCKET_NAME = "control.sock"
MAX_REQUEST = 64 * 1024
#: Seconds a client has to send its request, and to read the answer.
SILENCE = 5.0
MAX_CLIENTS = 8
#: sun_path holds 108 bytes with its terminating NUL.
SUN_PATH_MAX = 107
_JOIN = SILENCE + 5.0

#: (request, who asked) -> lines for stdout; raises ops.commands.Refused.
Handler = Callable[[dict[str, Any], str], list[str]]


class ControlError(Exception):
    """The control socket cannot be made or reached; one line."""


@contextlib.contextmanager
def address(folder: Path) -> Iterator[str]:
    """The path to bind or connect for `folder`'s control socket: the plain path when it
    fits in a socket address, else one through a descriptor of the folder (held meanwhile)."""
    path = os.fsencode(folder / SOCKET_NAME)
    if len(path) <= SUN_PATH_MAX:
        yield os.fsdecode(path)
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ControlError(f"control socket in {folder}: {exc.strerror}") from None
    try:
        short = f"/proc/self/fd/{fd}/{SOCKET_NAME}"
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            raise ControlError(
                f"control socket {folder / SOCKET_NAME}: the path is longer than "
                f"{SUN_PATH_MAX} bytes and /proc is not there to shorten it: use a shorter "
                "--data-dir"
            )
        yield short
    finally:
        os.close(fd)


def request(folder: Path, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any] | None:
    """Send one request to the server running on `folder`; its answer, or None when no
    server listens there (no socket, or a stale one). ControlError: it listens but fails."""
    with address(folder) as where:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            try:
                sock.connect(where)
            except (FileNotFoundError, ConnectionRefusedError):
                return None
            except OSError as exc:
                raise ControlError(
                    f"control socket {folder / SOCKET_NAME}: cannot connect ({exc.strerror})"
                ) from None
            try:
                sock.sendall(json.dumps(message).encode() + b"\n")
                line = _read_line(sock, time.monotonic() + timeout)
            except (OSError, ValueError) as exc:
                raise ControlError(
                    f"control socket {folder / SOCKET_NAME}: no answer ({exc})"
                ) from None
        finally:
            sock.close()
    try:
        answer = json.loads(line)
    except ValueError:
        raise ControlError(f"control socket {folder / SOCKET_NAME}: not an answer") from None
    if not isinstance(answer, dict):
        raise ControlError(f"control socket {folder / SOCKET_NAME}: not an answer")
    return answer


class ControlServer:
    """The server's end: bound at start (`bind`, a file created with the others), served by
    its own thread from `start` to `stop`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / SOCKET_NAME
        self._sock: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._handler: Handler | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._clients: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def bind(self) -> None:
        """Create the socket (0600); a stale one left by a killed server is replaced, one
        that answers (another process's) is not. ControlError (one line) when impossible."""
        with address(self.folder) as where:
            if self.path.exists() or self.path.is_symlink():
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                try:
                    probe.settimeout(1.0)
                    probe.connect(where)
                except OSError:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(where)  # nobody listens: left by a server that was killed
                else:
                    raise ControlError(
                        f"control socket {self.path} answers: another chat-server uses this "
                        "folder (a node of a cluster needs a --data-dir of its own for it)"
                    )
                finally:
                    probe.close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.bind(where)
                os.chmod(where, 0o600)  # the folder is 0700: nobody else could reach it before
                sock.listen(MAX_CLIENTS)
                info = os.stat(where)
            except OSError as exc:
                sock.close()
                raise ControlError(f"control socket {self.path}: {exc.strerror}") from None
        self._sock = sock
        self._inode = (info.st_dev, info.st_ino)

    def serve(self, handler: Handler) -> None:
        self._handler = handler

    # ---- lifetime -------------------------------------------------------------------------
    def start(self) -> None:
        if self._sock is None:
            raise ControlError("control socket: not bound")
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._accept_loop, name="control")
        self._thread.start()
        log.info("control socket %s (mode 0600): chat-server user|invite|status", self.path)

    def stop(self) -> None:
        self._stopping.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(_JOIN)
        with self._lock:
            clients = list(self._clients)
        for thread in clients:
            thread.join(_JOIN)
            if thread.is_alive():
                log.error("control: a client's thread did not stop in time")
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._unlink()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _unlink(self) -> None:
        """Remove the socket file if it is still ours (not one a later server made)."""
        with contextlib.suppress(OSError), address(self.folder) as where:
            info = os.lstat(where)
            if stat.S_ISSOCK(info.st_mode) and (info.st_dev, info.st_ino) == self._inode:
                os.unlink(where)

    # ---- the control thread ----------------------------------------------------------------
    def _accept_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([sock, self._wake_r], [], [])
                if self._stopping.is_set():
                    return
                if sock not in ready:
                    continue
                conn, _ = sock.accept()
            except OSError as exc:
                log.error("control: accept failed: %s", exc.strerror)
                time.sleep(0.1)
                continue
            with self._lock:
                self._clients = {t for t in self._clients if t.is_alive()}
                busy = len(self._clients) >= MAX_CLIENTS
                if not busy:
                    thread = threading.Thread(
                        target=self._client, args=(conn,), name="control-client"
                    )
                    self._clients.add(thread)
            if busy:
                with contextlib.suppress(OSError):
                    conn.setblocking(False)
                    conn.send(_line({"ok": False, "error": "busy: other commands are running"}))
                conn.close()
            else:
                thread.start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            by = _peer(conn)
            try:
                line = _read_line(conn, time.monotonic() + SILENCE)
            except TimeoutError:
                log.info("control: %s sent no whole request in %g s: closed", by, SILENCE)
                return
            except (OSError, ValueError) as exc:
                with contextlib.suppress(OSError):
                    conn.settimeout(SILENCE)
                    conn.sendall(_line({"ok": False, "error": str(exc)}))
                return
            answer = self._answer(line, by)
            try:
                conn.settimeout(SILENCE)
                conn.sendall(_line(answer))
            except OSError as exc:
                log.info("control: the answer to %s was not taken (%s)", by, exc)

    def _answer(self, line: bytes, by: str) -> dict[str, Any]:
        from chat.server.ops.commands import Refused

        try:
            request = json.loads(line)
        except ValueError:
            return {
                "ok": False,
                "error": 'not a request: one line of JSON, e.g. {"cmd": "user list"}',
            }
        if not isinstance(request, dict) or self._handler is None:
            return {"ok": False, "error": 'not a request: e.g. {"cmd": "user list"}'}
        try:
            return {"ok": True, "out": self._handler(request, by)}
        except Refused as exc:
            return {"ok": False, "error": str(exc)}
        except Exception:
            log.exception("control: the command %r failed", request.get("cmd"))
            return {"ok": False, "error": "internal error: see the server's log"}


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    """One line (without its newline) before `deadline`; TimeoutError when it does not come,
    ValueError when it is too long or the peer stops before its end."""
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise
        if not chunk:
            raise ValueError("the request ended before its newline")
        data += chunk
        end = data.find(b"\n")
        if end >= 0:
            return data[:end]
        if len(data) > MAX_REQUEST:
            raise ValueError(f"request longer than {MAX_REQUEST} bytes")


def _line(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode() + b"\n"


def _peer(conn: socket.socket) -> str:
    """Who is on the other end, for the audit log (SO_PEERCRED: pid, uid, gid)."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
    except OSError:
        return "operator"
    return f"operator:uid={uid},pid={pid}"
