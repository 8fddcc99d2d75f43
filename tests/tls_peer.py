"""A scripted loopback peer for the client's TLS tests: real sockets, real TLS.

It stands in for a server the client must judge (a certificate it does not
trust, a port that does not speak TLS, a peer that goes silent), which our
own server cannot be made to do.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path


def server_context(pair: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*map(str, pair))
    return ctx


class Peer:
    """A loopback listener; each accepted connection runs `script` on its own thread.

    `contexts` are used in turn (the last one for every later connection);
    None means plain TCP. Each connection's first byte is recorded before
    anything else happens, so a test can tell TLS from plain TCP.
    """

    def __init__(
        self,
        script: Callable[[socket.socket], None],
        *contexts: ssl.SSLContext | None,
        rcvbuf: int | None = None,
        port: int = 0,
    ) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen()
        self.host, self.port = "127.0.0.1", self.listener.getsockname()[1]
        self.first_bytes: list[bytes] = []
        self.errors: list[BaseException] = []
        self._script = script
        self._contexts = contexts or (None,)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            ctx = self._contexts[min(len(self.first_bytes), len(self._contexts) - 1)]
            conn.settimeout(10)
            try:
                self.first_bytes.append(conn.recv(1, socket.MSG_PEEK))
            except OSError:
                self.first_bytes.append(b"")
            threading.Thread(target=self._serve, args=(conn, ctx), daemon=True).start()

    def _serve(self, conn: socket.socket, ctx: ssl.SSLContext | None) -> None:
        try:
            if ctx is not None:
                conn = ctx.wrap_socket(conn, server_side=True)
            self._script(conn)
        except (OSError, EOFError) as exc:
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accept() of the thread, then frees the port
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
