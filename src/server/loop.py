"""The event loop: one thread that owns the epoll selector.

It accepts, reads, cuts frames (framing errors are decided here, from the
header alone), posts payloads to each connection's mailbox for the workers,
writes when a socket that was full becomes writable again, runs the timers
(idle, roster ack, linger, accept back-off) and closes connections. Other
threads reach it only through `call_soon_threadsafe` (an eventfd wakes it).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import os
import select
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from chat.shared.connection import ServerConnection
from chat.shared.errors import Code, RemoteProtocolError
from chat.shared.messages import Error, ServerBye, encode

from .config import ServerConfig
from .dispatch import PEER_EOF, Dispatcher
from .hub import Dirty, Hub
from .memory import release_free_memory
from .pool import Mailbox, WorkerPool
from .selector import TunedEpollSelector
from .user import Cause, User

log = logging.getLogger("chat.server")

_RECV_SIZE = 256 * 1024
_ACCEPT_BATCH = 64
_BACKLOG_ITEMS = 512  # mailbox items after which a connection stops being read
_SCAN_EVERY = 1.0  # seconds between idle/ack/linger scans
_TRIM_EVERY = 30.0  # seconds between returning freed heap to the system
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_HUP_ERR = select.EPOLLHUP | select.EPOLLERR
_SERVER_FULL = encode(Error(Code.SERVER_FULL, "server is full"))


class EventLoop:
    def __init__(
        self, config: ServerConfig, listener: socket.socket, hub: Hub, pool: WorkerPool
    ) -> None:
        self._config = config
        self._listener = listener
        self._hub = hub
        self._pool = pool
        self.dispatcher: Dispatcher | None = None  # wired by the server
        self.selector = TunedEpollSelector(config.max_events, config.epoll_timeout_ms)
        self.users: dict[int, User] = {}
        self._calls: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake_pending = False
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._stopping = threading.Event()
        self._accepting = True
        self._accept_backoff = 0.0
        self._next_scan = time.monotonic() + _SCAN_EVERY
        self._next_trim = time.monotonic() + _TRIM_EVERY
        self.stats = {"accepted": 0, "rejected_full": 0, "closed": 0}
        self.selector.register(self._wake_fd, selectors.EVENT_READ, "wake")
        self.selector.register(listener, selectors.EVENT_READ, "listener")

    # ---- thread-safe entry points -----------------------------------------
    def call_soon_threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        self._calls.append((fn, args))
        if not self._wake_pending:
            self._wake_pending = True
            os.eventfd_write(self._wake_fd, 1)

    def request_close(self, user: User, reason: str, cause: Cause) -> None:
        self.call_soon_threadsafe(self._begin_close, user, reason, cause)

    def request_resume(self, user: User) -> None:
        self.call_soon_threadsafe(self._resume, user)

    def stop(self) -> None:
        """Ask the loop to shut down (safe from a signal handler)."""
        self._stopping.set()
        os.eventfd_write(self._wake_fd, 1)

    # ---- main loop -------------------------------------------------------
    def run(self) -> None:
        while not self._stopping.is_set():
            self._turn()
        self._shutdown()

    def _turn(self) -> None:
        for key, events in self.selector.select(self._wait_seconds()):
            data = key.data
            if data == "wake":
                self._drain_wake()
            elif data == "listener":
                self._accept()
            else:
                if events & selectors.EVENT_READ:
                    self._on_readable(data)
                if events & selectors.EVENT_WRITE and not data.closed:
                    self._on_writable(data)
        self._run_calls()
        self._run_timers()

    def _wait_seconds(self) -> float | None:
        """The configured epoll timeout, cut short only when a timer is due sooner."""
        if not self.users and not self._timers:
            return None
        due = min(self._next_scan, self._timers[0][0]) if self._timers else self._next_scan
        left = max(due - time.monotonic(), 0.0)
        return left if left < self._config.epoll_timeout_ms / 1000.0 else None

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake_fd)
        self._wake_pending = False

    def _run_calls(self) -> None:
        calls = self._calls
        for _ in range(len(calls)):
            fn, args = calls.popleft()
            fn(*args)

    # ---- accept ----------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    self._back_off_accept(exc)
                    return
                log.warning("accept failed: %s", exc)  # e.g. ECONNABORTED: try the next
                continue
            self._accept_backoff = 0.0
            self._admit(sock, f"{addr[0]}:{addr[1]}")

    def _admit(self, sock: socket.socket, peer: str) -> None:
        sock.setblocking(False)
        if len(self.users) >= self._config.max_clients:
            self.stats["rejected_full"] += 1
            _refuse(sock, _SERVER_FULL)
            log.info("rejected %s: server_full (%d clients)", peer, len(self.users))
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = ServerConnection(self._config.max_frame, self._hub.roster_log)
        user = User(sock, peer, conn, self.selector, self._config.max_outbuf)
        assert self.dispatcher is not None
        user.mailbox = Mailbox(self._pool, partial(self.dispatcher.handle_batch, user))
        self.users[user.fd] = user
        self.stats["accepted"] += 1
        log.info("accepted fd=%d peer=%s (%d connected)", user.fd, peer, len(self.users))

    def _back_off_accept(self, exc: OSError) -> None:
        """Out of descriptors or memory: stop polling the listener for a while, never spin."""
        self._accept_backoff = min(max(self._accept_backoff * 2, 0.05), 2.0)
        log.warning("accept failed: %s; pausing accepts for %.2fs", exc, self._accept_backoff)
        self.selector.unregister(self._listener)
        self._accepting = False
        self.call_later(self._accept_backoff, self._resume_accept)

    def _resume_accept(self) -> None:
        if not self._accepting and not self._stopping.is_set():
            self.selector.register(self._listener, selectors.EVENT_READ, "listener")
            self._accepting = True

    # ---- read / write ----------------------------------------------------
    def _on_readable(self, user: User) -> None:
        if user.closed:
            return
        if user.draining:
            self._drain(user)
            return
        if not user.reading:
            mask = self.selector.last_masks.get(user.fd, 0)
            if mask & _HUP_ERR:
                self._close_now(user, "connection reset", Cause.BROKEN)
            return
        try:
            data = user.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close_now(user, errno.errorcode.get(exc.errno or 0, str(exc)), Cause.BROKEN)
            return
        assert user.mailbox is not None
        if not data:
            user.set_reading(False)
            user.mailbox.post(PEER_EOF)
            return
        user.last_rx = time.monotonic()
        self._cut_frames(user, data)

    def _drain(self, user: User) -> None:
        """Drop what a closing peer still sends; close at its EOF."""
        try:
            data = user.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_now(user, user.close_reason or "closed", user.close_cause)

    def _cut_frames(self, user: User, data: bytes) -> None:
        conn, mailbox = user.conn, user.mailbox
        assert mailbox is not None
        conn.receive_data(data)
        payloads: list[Any] = []
        try:
            while (payload := conn.next_payload()) is not None:
                payloads.append(payload)
        except RemoteProtocolError as err:  # fatal: the stream cannot be resynchronised
            payloads.append(err)
            user.set_reading(False)
        if payloads:
            mailbox.post(*payloads)
            if len(mailbox) > _BACKLOG_ITEMS and user.reading:
                user.backlogged = True
                user.set_reading(False)

    def _resume(self, user: User) -> None:
        mailbox = user.mailbox
        if user.backlogged and mailbox is not None and len(mailbox) <= _BACKLOG_ITEMS // 2:
            user.backlogged = False
            user.set_reading(True)

    def _on_writable(self, user: User) -> None:
        if not user.flush():
            if user.overflow:
                self._close_now(user, "send buffer overflow (client does not read)", Cause.US)
            else:
                self._close_now(user, f"send failed: {user.broken}", Cause.BROKEN)
        else:
            self.finish_if_flushed(user)

    def finish_if_flushed(self, user: User) -> None:
        """A closing connection whose final frame is out: shut our side and drain."""
        if user.close_reason is not None and user.pending_out == 0 and not user.draining:
            user.start_draining()

    # ---- closing ---------------------------------------------------------
    def _begin_close(self, user: User, reason: str, cause: Cause) -> None:
        """Close once the final frame is flushed (at most `shutdown_grace` seconds)."""
        if user.closed or self.users.get(user.fd) is not user:
            return
        if user.close_reason is None:
            user.close_reason, user.close_cause = reason, cause
        user.seal()
        dirty: Dirty = {}
        self._hub.remove(user, dirty)  # nobody counts it as online any more
        if dirty and self.dispatcher is not None:
            self.dispatcher.flush(dirty)
        if user.broken or user.overflow:
            self._close_now(user, user.close_reason, user.close_cause)
            return
        if user.linger_deadline is None:
            user.linger_deadline = time.monotonic() + self._config.shutdown_grace
        self.finish_if_flushed(user)

    def _close_now(self, user: User, reason: str, cause: Cause) -> None:
        if self.users.get(user.fd) is not user:
            return
        del self.users[user.fd]
        dirty: Dirty = {}
        self._hub.remove(user, dirty)
        user.close_socket()
        self.stats["closed"] += 1
        log.info("closed %s %s: %s", user.label(), cause.value, reason)
        if dirty and self.dispatcher is not None:
            self.dispatcher.flush(dirty)

    # ---- timers ----------------------------------------------------------
    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), fn))

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            heapq.heappop(self._timers)[2]()
        if now >= self._next_scan:
            self._next_scan = now + _SCAN_EVERY
            self._scan(now)
        if now >= self._next_trim:
            self._next_trim = now + _TRIM_EVERY
            release_free_memory()

    def _scan(self, now: float) -> None:
        """Idle and roster-ack timeouts, and lingering closes that ran out of time."""
        idle = self._config.idle_timeout
        for user in list(self.users.values()):
            if user.linger_deadline is not None:
                if now >= user.linger_deadline:
                    why = "peer did not close" if user.draining else "flush timed out"
                    self._close_now(user, f"{user.close_reason} ({why})", user.close_cause)
                continue
            if user.ack_deadline is not None and now >= user.ack_deadline:
                self._time_out(user, "roster not acknowledged in time")
            elif idle > 0 and now - user.last_rx >= idle:
                self._time_out(user, "idle for too long")

    def _time_out(self, user: User, why: str) -> None:
        if user.seal(encode(Error(Code.TIMEOUT, why))):
            user.flush()
            self._begin_close(user, f"timeout: {why}", Cause.US)

    # ---- shutdown --------------------------------------------------------
    def _shutdown(self) -> None:
        """Stop accepting, say bye to everyone, flush within the grace period, close all."""
        if self._accepting:
            self.selector.unregister(self._listener)
            self._accepting = False
        self._listener.close()
        users = list(self.users.values())
        log.info("shutting down: saying bye to %d connections", len(users))
        bye = encode(ServerBye("shutdown"))
        self._hub.close_all()
        for user in users:
            user.seal(bye)  # bye is the last frame each connection receives
            user.flush()
            self._begin_close(user, "server shutdown", Cause.US)
        deadline = time.monotonic() + self._config.shutdown_grace
        while self.users and time.monotonic() < deadline:
            for key, events in self.selector.select(0.05):
                user = key.data
                if not isinstance(user, User):
                    continue
                if events & selectors.EVENT_READ:
                    self._on_readable(user)
                if events & selectors.EVENT_WRITE and not user.closed:
                    self._on_writable(user)
            self._run_calls()
        for user in list(self.users.values()):
            why = "peer did not close" if user.draining else "flush timed out"
            self._close_now(
                user, f"server shutdown ({why} in {self._config.shutdown_grace}s)", Cause.US
            )
        self.selector.close()
        os.close(self._wake_fd)


def _refuse(sock: socket.socket, frame: bytes) -> None:
    """Send one small frame on a fresh socket, then close without resetting it.

    The peer's first frames may already be here: reading them before the
    close keeps the kernel from answering with an RST that could destroy
    the frame we just sent.
    """
    with contextlib.suppress(OSError):
        sock.send(frame)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(_RECV_SIZE):
            pass
    sock.close()
