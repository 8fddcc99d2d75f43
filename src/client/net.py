"""The network thread: one TCP connection at a time, driven by a `Session`.

Only this thread touches the socket. The UI thread talks to it through
`NetworkClient.send()` / `close()` (a command queue plus a wake-up socket, so
the thread sleeps in `select` instead of polling), and hears back through
`sink`, which must be thread-safe (a `queue.Queue.put`). After a successful
login a lost connection is retried with backoff when `reconnect` is set.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from chat.shared.errors import RemoteProtocolError
from chat.shared.messages import Recipients

from . import events as ev
from .backoff import Backoff
from .session import Session, check_outgoing

log = logging.getLogger("chat.client.net")

CONNECT_TIMEOUT = 5.0
#: A write that cannot finish in this long means the server stopped reading.
SEND_TIMEOUT = 10.0
#: Keep-alive: a `ping` after this long without writing anything.
PING_INTERVAL = 20.0
#: Nothing received for this long (pings included) means the link is dead.
DEAD_AFTER = 3 * PING_INTERVAL
#: After our `bye`, how long to wait for the server to close.
BYE_GRACE = 1.0
RECV_SIZE = 65536


@dataclass(frozen=True, slots=True)
class _SendCmd:
    msg_id: int
    to: Recipients
    text: str


class _ByeCmd:
    """Say `bye` and stop (no reconnect)."""


class _Ended(Exception):
    """The current connection is over; the message says why."""


def describe_connect_error(host: str, port: int, exc: OSError) -> str:
    """One human line for a failed connect (no traceback, no errno soup)."""
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (is chat-server running there?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timed out connecting to {where}"
    return f"cannot connect to {where}: {exc.strerror or exc}"


class NetworkClient:
    """Owns the socket on its own thread; see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        session: Session,
        sink: Callable[[ev.NetEvent], None],
        *,
        reconnect: bool = False,
        backoff: Backoff | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
        ids: Iterator[int] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._session = session
        self._sink = sink
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._commands: queue.SimpleQueue[_SendCmd | _ByeCmd] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._ids = ids if ids is not None else itertools.count(1)
        self._ids_lock = threading.Lock()
        self._stopping = False  # only read and written by the network thread
        self._thread = threading.Thread(target=self._run, name="chat-net", daemon=True)

    # ------------------------------------------------------------ UI thread
    def start(self) -> None:
        self._thread.start()

    def send(self, to: Recipients, text: str) -> int:
        """Queue a message and return its id; ValueError for one the server would refuse."""
        problem = check_outgoing(to, text)
        if problem is not None:
            raise ValueError(problem)
        with self._ids_lock:
            msg_id = next(self._ids)
        self._command(_SendCmd(msg_id, to, text))
        return msg_id

    def close(self, timeout: float = BYE_GRACE + 1.0) -> None:
        """Say `bye` (when connected) and wait for the thread to end."""
        if self._thread.is_alive():
            self._command(_ByeCmd())
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _command(self, cmd: _SendCmd | _ByeCmd) -> None:
        self._commands.put(cmd)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # ------------------------------------------------------- network thread
    def _run(self) -> None:
        try:
            reason = self._loop()
        except Exception as exc:  # a bug here must not kill the UI silently
            log.exception("network thread failed")
            reason = f"internal error: {exc}"
        finally:
            self._wake_r.close()
        self._sink(ev.Stopped(reason))

    def _loop(self) -> str:
        for attempt in itertools.count(1):
            self._sink(ev.Connecting(self.host, self.port, attempt))
            try:
                sock = socket.create_connection((self.host, self.port), self._connect_timeout)
            except OSError as exc:
                reason = describe_connect_error(self.host, self.port, exc)
                if not self._may_retry():
                    self._sink(ev.ConnectFailed(reason, None))
                    return reason
                delay = self._backoff.next_delay()
                self._sink(ev.ConnectFailed(reason, delay))
            else:
                reason = self._converse(sock)
                for event in self._session.connection_lost():
                    self._sink(event)
                if not self._may_retry():
                    self._sink(ev.Disconnected(reason, None))
                    return reason
                delay = self._backoff.next_delay()
                self._sink(ev.Disconnected(reason, delay))
            if not self._idle(delay):
                return "closed by the user"
        raise AssertionError("unreachable")

    def _may_retry(self) -> bool:
        session = self._session
        return (
            self._reconnect
            and session.ever_logged_in
            and not session.login_failed
            and not self._stopping
        )

    def _idle(self, delay: float) -> bool:
        """Wait out a backoff delay, still taking commands; False when told to stop."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            with selectors.DefaultSelector() as sel:
                sel.register(self._wake_r, selectors.EVENT_READ)
                sel.select(left)
            for cmd in self._drain_commands():
                if isinstance(cmd, _ByeCmd):
                    self._stopping = True
                    return False
                self._session.send(cmd.msg_id, cmd.to, cmd.text)  # queued for the next login
        return True

    def _drain_commands(self) -> list[_SendCmd | _ByeCmd]:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        cmds = []
        while True:
            try:
                cmds.append(self._commands.get_nowait())
            except queue.Empty:
                return cmds

    def _converse(self, sock: socket.socket) -> str:
        """Run one connection to its end; return why it ended."""
        with sock, selectors.DefaultSelector() as sel:
            sock.settimeout(SEND_TIMEOUT)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sel.register(sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            link = _Link(sock)
            try:
                link.write(self._session.start())
                while True:
                    self._step(sel, link)
            except _Ended as end:
                return link.bye_reason or str(end)

    def _step(self, sel: selectors.BaseSelector, link: _Link) -> None:
        now = time.monotonic()
        if self._stopping:
            timeout = link.bye_deadline - now
            if timeout <= 0:
                raise _Ended(link.bye_reason)
        else:
            timeout = max(0.0, link.last_write + self._ping_interval - now)
        for key, _ in sel.select(timeout):
            if key.fileobj is self._wake_r:
                self._on_commands(link)
            else:
                self._on_readable(link)
        now = time.monotonic()
        if now - link.last_read > DEAD_AFTER:
            raise _Ended("the server stopped answering")
        if not self._stopping and now - link.last_write >= self._ping_interval:
            link.write(self._session.ping())

    def _on_readable(self, link: _Link) -> None:
        try:
            data = link.read()
        except _Ended as end:  # e.g. a reset right after the server's last frame
            raise _Ended(self._close_reason(link, str(end))) from None
        if not data:
            raise _Ended(self._close_reason(link, "the server closed the connection"))
        try:
            out, events = self._session.receive(data)
        except RemoteProtocolError as exc:
            raise _Ended(f"protocol error from the server: {exc}") from None
        if out and not self._session.bye_sent:
            link.write(out)
        for event in events:
            if isinstance(event, ev.LoggedIn):
                self._backoff.reset()
            self._sink(event)
        if self._session.login_failed and not self._stopping:
            self._say_bye(link, "login refused")

    def _close_reason(self, link: _Link, default: str) -> str:
        """Why the server went away: what it told us last beats what the socket says."""
        if self._stopping:
            return link.bye_reason
        if self._session.server_bye is not None:
            return f"the server said bye ({self._session.server_bye})"
        if self._session.fatal_error is not None:
            return f"the server closed the connection: {self._session.fatal_error}"
        return default

    def _on_commands(self, link: _Link) -> None:
        for cmd in self._drain_commands():
            if isinstance(cmd, _ByeCmd):
                if not self._stopping:
                    self._say_bye(link, "closed by the user")
            elif not self._session.bye_sent:
                link.write(self._session.send(cmd.msg_id, cmd.to, cmd.text))

    def _say_bye(self, link: _Link, reason: str) -> None:
        self._stopping = True
        link.bye_reason = reason
        link.bye_deadline = time.monotonic() + BYE_GRACE
        link.write(self._session.bye())


class _Link:
    """A socket with the bookkeeping the loop needs; I/O errors become `_Ended`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.last_write = self.last_read = time.monotonic()
        self.bye_deadline = 0.0
        self.bye_reason = ""

    def write(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise _Ended("the server stopped reading") from None
        except OSError as exc:
            raise _Ended(f"connection lost: {exc.strerror or exc}") from None
        self.last_write = time.monotonic()

    def read(self) -> bytes:
        try:
            data = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            raise _Ended("the server stopped answering") from None
        except OSError as exc:
            raise _Ended(f"connection lost: {exc.strerror or exc}") from None
        self.last_read = time.monotonic()
        return data
