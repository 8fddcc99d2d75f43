"""The network thread: one connection at a time (plain TCP or TLS), driven by a `Session`.

Ownership, by construction: the socket of a connection, and its TLS object
when there is one, is created, read, written and closed by the network
thread alone (`chat-net`, `NetworkClient._run` and what it calls). That
thread does every read and every write itself, on a non-blocking socket
multiplexed with `select`, so no two threads ever touch one `SSLSocket`
(OpenSSL forbids `SSL_read` and `SSL_write` on one SSL object from two
threads at once) and no blocking call can hold a lock the other side needs.
The UI thread never sees the socket: `NetworkClient.send()` / `close()` put a
command on a queue and write one byte to a wake-up socketpair (the only
object both threads touch besides the thread-safe queues), so the network
thread sleeps in `select` instead of polling. It hears back through `sink`,
which must be thread-safe (a `queue.Queue.put`). After a successful login a
lost connection is retried with backoff when `reconnect` is set; with a TLS
context every attempt is TLS (never a fallback to plain TCP), and a failed
handshake or certificate check counts as a failed connect.

Non-blocking TLS needs three things that plain TCP does not, all in `_Link`:
a write that cannot finish is retried with the very same buffer; a read or a
write may need the other readiness (`SSLWantReadError` / `SSLWantWriteError`),
so every wake-up on the socket tries both; and the TLS layer may hold
decrypted records that `select` cannot see, so a read goes on until the
layer and the socket are both empty.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from chat.shared.errors import RemoteProtocolError
from chat.shared.messages import HISTORY_LIMIT_DEFAULT, MsgId, Recipients

from . import events as ev
from .backoff import Backoff
from .session import Request, Session, check_history, check_outgoing, check_request
from .tls import describe_tls_error, looks_like_tls, maybe_tls, speaks_tls, ssl_words

log = logging.getLogger("chat.client.net")

#: For the TCP connect, and again for the TLS handshake.
CONNECT_TIMEOUT = 5.0
#: Output that makes no progress for this long means the server stopped reading.
SEND_TIMEOUT = 10.0
#: Keep-alive: a `ping` after this long without writing anything.
PING_INTERVAL = 20.0
#: Nothing received for this long (pings included) means the link is dead.
DEAD_AFTER = 3 * PING_INTERVAL
#: After our `bye`, how long to wait for the server to close.
BYE_GRACE = 1.0
RECV_SIZE = 65536
#: At most this much is read per wake-up, so a flood cannot starve our commands.
READ_BUDGET = 1 << 20
SEND_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class _SendCmd:
    msg_id: int
    to: Recipients
    text: str


@dataclass(frozen=True, slots=True)
class _HistoryCmd:
    request_id: MsgId
    peer: str
    before: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class _AckCmd:
    upto: int


@dataclass(frozen=True, slots=True)
class _RequestCmd:
    message: Request


@dataclass(frozen=True, slots=True)
class _ReadCmd:
    peer: str
    upto: int


@dataclass(frozen=True, slots=True)
class _TypingCmd:
    to: str | tuple[str, ...]
    state: str


class _ByeCmd:
    """Say `bye` and stop (no reconnect)."""


_Command = _SendCmd | _HistoryCmd | _AckCmd | _RequestCmd | _ReadCmd | _TypingCmd | _ByeCmd


class _Ended(Exception):
    """The current connection is over; the message says why."""


class _ConnectFailed(Exception):
    """No usable connection (TCP connect or TLS handshake); the message says why."""


class _Cancelled(Exception):
    """The user said stop while we were still connecting."""


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
    """Owns the socket on its own thread; see the module docstring.

    `tls` is a client context (see `chat.client.tls.client_context`): every
    connection is then TLS, its certificate checked against `host`.
    """

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
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._session = session
        self._sink = sink
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._tls = tls
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._ids = ids if ids is not None else itertools.count(1)
        self._ids_lock = threading.Lock()
        self._stopping = False  # only read and written by the network thread
        self._thread = threading.Thread(target=self._run, name="chat-net", daemon=True)

    # ------------------------------------------------------------ UI thread
    # Nothing here touches a connection's socket: a command and a wake-up byte.
    def start(self) -> None:
        self._thread.start()

    def send(self, to: Recipients, text: str, msg_id: int | None = None) -> int:
        """Queue a message and return its id; ValueError for one the server would refuse.

        `msg_id` is the caller's own (line mode uses the input line's number); it must
        not be in use. Without it the next of `ids` is taken.
        """
        problem = check_outgoing(to, text)
        if problem is not None:
            raise ValueError(problem)
        if msg_id is None:
            with self._ids_lock:
                msg_id = next(self._ids)
        self._command(_SendCmd(msg_id, to, text))
        return msg_id

    def history(
        self,
        request_id: MsgId,
        peer: str,
        before: int | None = None,
        limit: int = HISTORY_LIMIT_DEFAULT,
    ) -> None:
        """Ask for a page of history; the answer is a `HistoryLoaded`/`HistoryFailed` event
        with `request_id`, which the caller keeps apart from message ids (ours are ints).

        Asked before the login, or while reconnecting, it waits for the next
        login. ValueError for a request the server would refuse.
        """
        problem = check_history(peer, before, limit)
        if problem is not None:
            raise ValueError(problem)
        self._command(_HistoryCmd(request_id, peer, before, limit))

    def offline_ack(self, upto: int) -> None:
        """The offline messages up to `upto` are shown: the server may forget them.

        Dropped when the connection that delivered them is gone (they come again).
        """
        self._command(_AckCmd(upto))

    def request(self, message: Request) -> None:
        """A v1.2 request with an `id` (rooms, `user_search`); its answer is an event with
        that id (`RequestDone`, `RoomsListed`, `UsersFound`, `RequestFailed`). Asked before
        the login it waits for it. ValueError for fields the server would refuse."""
        problem = check_request(message)
        if problem is not None:
            raise ValueError(problem)
        self._command(_RequestCmd(message))

    def read(self, peer: str, upto: int) -> None:
        """Tell the server (and so our other sessions) that `peer` is read up to `upto`;
        dropped without a connection or without the `read` feature."""
        self._command(_ReadCmd(peer, upto))

    def typing(self, to: str | tuple[str, ...], state: str) -> None:
        """A typing notice; dropped without a connection or without the `typing` feature."""
        self._command(_TypingCmd(to, state))

    def close(self, timeout: float = BYE_GRACE + 1.0) -> None:
        """Say `bye` (when connected) and wait for the thread to end."""
        if self._thread.is_alive():
            self._command(_ByeCmd())
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _command(self, cmd: _Command) -> None:
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
                link = self._open()
            except _Cancelled:
                return "closed by the user"
            except _ConnectFailed as exc:
                reason = str(exc)
                log.info("connect failed: %s", reason)
                if not self._may_retry():
                    self._sink(ev.ConnectFailed(reason, None))
                    return reason
                delay = self._backoff.next_delay()
                self._sink(ev.ConnectFailed(reason, delay))
            else:
                self._sink(ev.Connected(self.host, self.port, link.tls_version))
                reason = self._converse(link)
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

    def _open(self) -> _Link:
        """TCP connect, then the TLS handshake when asked for; a non-blocking `_Link`."""
        try:
            sock = socket.create_connection((self.host, self.port), self._connect_timeout)
        except OSError as exc:
            raise _ConnectFailed(describe_connect_error(self.host, self.port, exc)) from None
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                try:
                    sock = self._tls.wrap_socket(
                        sock, server_hostname=self.host, do_handshake_on_connect=False
                    )
                except (OSError, ValueError) as exc:
                    raise _ConnectFailed(describe_tls_error(self.host, self.port, exc)) from None
                self._handshake(sock)
        except BaseException:
            sock.close()
            raise
        return _Link(sock)

    def _handshake(self, sock: ssl.SSLSocket) -> None:
        """Drive the handshake on the non-blocking socket, still taking commands."""
        deadline = time.monotonic() + self._connect_timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._wake_r, selectors.EVENT_READ)
            sel.register(sock, selectors.EVENT_READ)
            while True:
                try:
                    sock.do_handshake()
                    return
                except ssl.SSLWantReadError:
                    sel.modify(sock, selectors.EVENT_READ)
                except ssl.SSLWantWriteError:
                    sel.modify(sock, selectors.EVENT_WRITE)
                except (OSError, ValueError) as exc:  # SSLError too; never a plain-TCP retry
                    raise _ConnectFailed(describe_tls_error(self.host, self.port, exc)) from None
                left = deadline - time.monotonic()
                if left <= 0:
                    reason = describe_tls_error(self.host, self.port, TimeoutError())
                    raise _ConnectFailed(reason)
                for key, _ in sel.select(left):
                    if key.fileobj is self._wake_r and not self._offline_commands():
                        raise _Cancelled

    def _idle(self, delay: float) -> bool:
        """Wait out a backoff delay, still taking commands; False when told to stop."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            with selectors.DefaultSelector() as sel:
                sel.register(self._wake_r, selectors.EVENT_READ)
                sel.select(left)
            if not self._offline_commands():
                return False
        return True

    def _offline_commands(self) -> bool:
        """Commands while no connection is up: messages wait for the next login.

        False (and `_stopping` set) when one of them says stop.
        """
        for cmd in self._drain_commands():
            if isinstance(cmd, _ByeCmd):
                self._stopping = True
                return False
            self._session_bytes(cmd)  # queued for the next login (an ack, read, typing: dropped)
        return True

    def _session_bytes(self, cmd: _Command) -> bytes:
        """What the session writes for one command (b"" when it waits for the chat).

        A command the session refuses (a feature this server does not offer, an id still
        in use: the caller's mistake) is answered by its failure event, never raised."""
        session = self._session
        match cmd:
            case _SendCmd(msg_id, to, text):
                try:
                    return session.send(msg_id, to, text)
                except ValueError as exc:
                    self._sink(ev.SendRefused(msg_id, "bad_request", str(exc)))
                    return b""
            case _AckCmd(upto):
                return session.offline_ack(upto)
            case _RequestCmd(message):
                try:
                    return session.request(message)
                except ValueError as exc:
                    room, user = getattr(message, "room", ""), getattr(message, "user", "")
                    failed = ev.RequestFailed(message.id, message.type, None, str(exc), room, user)
                    self._sink(failed)
                    return b""
            case _ReadCmd(peer, upto):
                return _quietly(lambda: session.read(peer, upto))
            case _TypingCmd(to, state):
                return _quietly(lambda: session.typing(to, state))
            case _HistoryCmd(request_id, peer, before, limit):
                try:
                    return self._session.history(request_id, peer, before, limit)
                except ValueError as exc:  # e.g. an id still in use: the caller's mistake
                    self._sink(ev.HistoryFailed(request_id, peer, before, None, str(exc)))
                    return b""
        raise AssertionError(f"unknown command {cmd!r}")

    def _drain_commands(self) -> list[_Command]:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        cmds = []
        while True:
            try:
                cmds.append(self._commands.get_nowait())
            except queue.Empty:
                return cmds

    def _converse(self, link: _Link) -> str:
        """Run one connection to its end; return why it ended."""
        with link.sock, selectors.DefaultSelector() as sel:
            sel.register(link.sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            try:
                link.write(self._session.start())
                while True:
                    self._step(sel, link)
            except _Ended as end:
                reason = link.bye_reason or str(end)
                if self._tls is None and link.received == 0 and not self._stopping:
                    reason = maybe_tls(self.host, self.port, reason)
                return reason

    def _step(self, sel: selectors.BaseSelector, link: _Link) -> None:
        now = time.monotonic()
        if self._stopping:
            timeout = link.bye_deadline - now
            if timeout <= 0:
                raise _Ended(link.bye_reason)
        elif link.stalled_since is None:  # all written: sleep until the next ping is due
            timeout = max(0.0, link.last_write + self._ping_interval - now)
        else:  # output waits: no ping on top of it, but a deadline for progress
            timeout = max(0.0, link.stalled_since + SEND_TIMEOUT - now)
        if link.more_to_read:
            timeout = 0.0
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if link.wants_write else 0)
        if sel.get_key(link.sock).events != events:
            sel.modify(link.sock, events)
        ready = sel.select(timeout)
        if link.more_to_read or any(key.fileobj is link.sock for key, _ in ready):
            self._on_socket(link)
        if any(key.fileobj is self._wake_r for key, _ in ready):
            self._on_commands(link)
        now = time.monotonic()
        if now - link.last_read > DEAD_AFTER:
            raise _Ended("the server stopped answering")
        if link.stalled_since is not None and now - link.stalled_since > SEND_TIMEOUT:
            raise _Ended("the server stopped reading")
        if (
            not self._stopping
            and link.stalled_since is None
            and now - link.last_write >= self._ping_interval
        ):
            link.write(self._session.ping())

    def _on_socket(self, link: _Link) -> None:
        """The socket is ready (for reading, writing, or both): read all there is, then write."""
        data, end = link.read()
        out = b""
        if self._tls is None and data and link.received == len(data) and looks_like_tls(data):
            raise _Ended(speaks_tls(self.host, self.port))  # not a chat frame: never parsed
        if data:
            try:
                out, events = self._session.receive(data)
            except RemoteProtocolError as exc:
                raise _Ended(f"protocol error from the server: {exc}") from None
            for event in events:  # first: a failing write below must not lose them
                if isinstance(event, ev.LoggedIn):
                    self._backoff.reset()
                self._sink(event)
        try:
            if out and not self._session.bye_sent:
                link.write(out)
            if self._session.login_failed and not self._stopping:
                self._say_bye(link, "login refused")
            link.flush()
        except _Ended as lost:
            end = end or str(lost)
        if end is not None:  # after the data: the last frames often explain the close
            raise _Ended(self._close_reason(link, end))

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
                link.write(self._session_bytes(cmd))

    def _say_bye(self, link: _Link, reason: str) -> None:
        self._stopping = True
        link.bye_reason = reason
        link.bye_deadline = time.monotonic() + BYE_GRACE
        link.write(self._session.bye())


class _Link:
    """One connection's non-blocking socket (plain or TLS) and its output buffer.

    Used by the network thread only (see the module docstring). `write`
    appends to the buffer and writes what the socket takes now; `flush`
    goes on when the socket is ready again; `read` returns everything that
    can be had without waiting. I/O errors become `_Ended` (writes) or the
    `end` reason returned with the data (reads).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tls_version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        self._out = bytearray()
        #: The bytes of a TLS write that could not finish: retried exactly as they were.
        self._retry: bytes | None = None
        self._write_wants_write = False
        self._read_wants_write = False
        self.more_to_read = False  # the read budget ran out: read again before sleeping
        self.received = 0  # bytes read on this connection (0: the server said nothing yet)
        self.last_write = self.last_read = time.monotonic()
        #: Since when output has waited without any progress; None when all is written.
        self.stalled_since: float | None = None
        self.bye_deadline = 0.0
        self.bye_reason = ""

    @property
    def wants_write(self) -> bool:
        """Whether the loop must wake up when the socket becomes writable."""
        return self._write_wants_write or self._read_wants_write

    @property
    def pending_output(self) -> int:
        return len(self._out)

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._out:
            self.stalled_since = time.monotonic()
        self._out += data
        self.flush()

    def flush(self) -> None:
        self._write_wants_write = False
        while self._out:
            chunk = self._retry if self._retry is not None else bytes(self._out[:SEND_CHUNK])
            try:
                sent = self.sock.send(chunk)
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._retry, self._write_wants_write = chunk, True
                return
            except ssl.SSLWantReadError:  # e.g. a key update: wait until readable, then retry
                self._retry = chunk
                return
            except OSError as exc:
                raise _Ended(f"connection lost: {_words(exc)}") from None
            self._retry = None
            del self._out[:sent]
            self.last_write = time.monotonic()
            self.stalled_since = self.last_write if self._out else None

    def read(self) -> tuple[bytes, str | None]:
        """(what arrived, why the connection ended or None); never waits.

        Reads until the socket and the TLS layer are both empty (or the budget
        is spent), since `select` cannot see records the TLS layer holds.
        """
        chunks: list[bytes] = []
        total = 0
        end: str | None = None
        self._read_wants_write = False
        self.more_to_read = False
        while True:
            if total >= READ_BUDGET:
                self.more_to_read = True
                break
            try:
                data = self.sock.recv(RECV_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                self._read_wants_write = True
                break
            except OSError as exc:  # e.g. a reset right after the server's last frame
                end = f"connection lost: {_words(exc)}"
                break
            if not data:
                end = "the server closed the connection"
                break
            chunks.append(data)
            total += len(data)
        if chunks:
            self.last_read = time.monotonic()
            self.received += total
        return b"".join(chunks), end


def _quietly(write: Callable[[], bytes]) -> bytes:
    """A notice nobody answers (`read`, `typing`): one the core refuses is logged, not sent."""
    try:
        return write()
    except ValueError as exc:
        log.warning("notice not sent: %s", exc)
        return b""


def _words(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {ssl_words(exc)}"
    return str(exc.strerror or exc)
