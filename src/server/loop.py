"""The event loop: one thread that owns epoll and every socket.

It accepts, runs TLS handshakes without blocking, reads (draining what the TLS
layer still holds, which epoll cannot see), cuts frames (framing errors are
decided here, from the header alone), posts payloads to each connection's
mailbox, writes what workers queued, runs the deadlines and closes. It is the
only thread that calls `recv`, `send`, `do_handshake`, `shutdown` or `close`
on a connection's socket. Other threads reach it through the `LoopInbox`.

It never changes a connection's protocol state: when the peer goes away or a
deadline passes, it posts that to the connection's mailbox, and the
connection answers (an error frame, the roster's `leave`) in its own order.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from chat.shared.errors import Code, RemoteProtocolError, Why
from chat.shared.messages import ServerBye, encode

from . import native
from .config import ServerConfig
from .dispatch import Dispatcher
from .hub import Hub
from .inbox import Cause, CloseAfterFlush, Flushed, LoggedIn, LoopInbox, WhenDrained
from .memory import release_free_memory
from .outbuf import OutBuffer
from .pool import WorkerPool
from .ratelimit import TokenBucket
from .selector import TunedEpollSelector
from .session import Abort, Evict, PeerGone, Session
from .transport import Transport
from .unauth import NotLoggedIn

log = logging.getLogger("chat.server")

_RECV_SIZE = 256 * 1024
_READ_BUDGET = 1024 * 1024  # bytes one readiness event may read (TLS reads until empty)
_ACCEPT_BATCH = 64
_BACKLOG_ITEMS = 512  # mailbox items after which a connection stops being read
_BACKLOG_BYTES = 256 * 1024  # or payload bytes: inbound memory is bounded too
_DRAINED = 64 * 1024  # a catch-up's next page is read once its buffer is down to this
_SCAN_EVERY = 1.0  # seconds between deadline scans
_TRIM_EVERY = 30.0  # seconds between returning freed heap to the system
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_HUP_ERR = select.EPOLLHUP | select.EPOLLERR
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_WAKE, _LISTENER = "wake", "listener"


def _errname(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return errno.errorcode.get(exc.errno or 0, str(exc))


class EventLoop:
    def __init__(
        self,
        config: ServerConfig,
        listener: socket.socket,
        tls: ssl.SSLContext | None,
        hub: Hub,
        dispatcher: Dispatcher,
        pool: WorkerPool,
        inbox: LoopInbox,
        table: native.OutTable,
    ) -> None:
        self._config = config
        self._listener = listener
        self._tls = tls
        self._hub = hub
        self._dispatcher = dispatcher
        self._pool = pool
        self._inbox = inbox
        self._table = table
        self._free_slots = list(range(table.slots - 1, -1, -1))  # popped from the end
        self._by_handle: dict[int, Transport] = {}
        self.selector = TunedEpollSelector(config.max_events, config.epoll_timeout_ms)
        self._transports: dict[int, Transport] = {}
        self._cids = itertools.count(1)
        self._live = 0  # transports holding one of --max-clients
        self._unauth: NotLoggedIn[Transport] = NotLoggedIn()  # not logged in yet
        self._paused: dict[int, Transport] = {}
        self._read_again: dict[int, Transport] = {}  # TLS data left in the TLS layer
        self._drain_waits: dict[int, Callable[[bool], None]] = {}  # cid -> catch-up callback
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._stopping = threading.Event()
        self._accepting = True
        self._accept_backoff = 0.0
        self._next_scan = time.monotonic() + _SCAN_EVERY
        self._next_trim = time.monotonic() + _TRIM_EVERY
        self.stats = {"accepted": 0, "rejected_full": 0, "closed": 0}
        self.selector.register(inbox.fd, _READ, _WAKE)
        self.selector.register(listener, _READ, _LISTENER)

    def stop(self) -> None:
        """Ask the loop to shut down (safe from a signal handler)."""
        self._stopping.set()
        self._inbox.wake()

    # ---- main loop -------------------------------------------------------
    def run(self) -> None:
        while not self._stopping.is_set():
            self._turn()
        self._shutdown()

    def _turn(self) -> None:
        for key, events in self.selector.select(self._wait_seconds()):
            data = key.data
            if data is _WAKE:
                self._run_requests()
            elif data is _LISTENER:
                self._accept()
            else:
                self._on_event(data, events)
        if self._read_again:
            again, self._read_again = self._read_again, {}
            for t in again.values():
                if not t.closed and t.reading and not t.paused:
                    self._read(t)
        if self._paused:
            self._check_paused()
        self._run_timers()

    def _on_event(self, t: Transport, events: int) -> None:
        if t.closed:
            return
        if t.handshaking:
            self._handshake(t)
            return
        if events & _READ or (events & _WRITE and t.read_wants_write):
            self._on_readable(t)
        if events & _WRITE and not t.closed:
            self._write(t)

    def _wait_seconds(self) -> float | None:
        """The configured epoll timeout, cut short only when something is due sooner."""
        if self._read_again:
            return 0.0
        if self._paused:
            return 0.01
        if not self._transports and not self._timers:
            return None
        due = min(self._next_scan, self._timers[0][0]) if self._timers else self._next_scan
        left = max(due - time.monotonic(), 0.0)
        return left if left < self._config.epoll_timeout_ms / 1000.0 else None

    def _run_requests(self) -> None:
        transports = self._transports
        for request in self._inbox.take():
            match request:
                case Flushed(results):
                    by_handle = self._by_handle
                    for handle, status, err in results:
                        t = by_handle.get(handle)
                        if t is not None and not t.closed:
                            self._flushed(t, status, err)
                case CloseAfterFlush(cid, reason, cause):
                    t = transports.get(cid)
                    if t is not None:
                        self._close_after_flush(t, reason, cause)
                case LoggedIn(cid):
                    self._unauth.pop(cid)
                case WhenDrained(cid, then):
                    t = transports.get(cid)
                    if t is None or t.expiring or t.closing is not None:
                        then(False)
                    else:
                        self._drain_waits[cid] = then
                        self._write(t)
                case _:
                    log.error("unknown loop request %r", request)

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
            self._admit(sock, addr)

    def _admit(self, sock: socket.socket, addr: Any) -> None:
        sock.setblocking(False)
        now = time.monotonic()
        ip = addr[0]
        refusal: str | None = None
        per_addr = self._config.max_unauth_per_addr  # 0: no limit
        if 0 < per_addr <= self._unauth.count(ip):  # first: a refusal evicts no one
            refusal = f"server_full ({self._unauth.count(ip)} connections not logged in from {ip})"
        elif self._live >= self._config.max_clients and not self._evict_unauth(now):
            refusal = f"server_full ({self._live} clients)"
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._free_slots:  # only with far more refused connections than slots
            log.warning("no outbound slot for %s: closed at once", addr[0])
            sock.close()
            return
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        slot = self._free_slots.pop()
        direct = self._tls is None  # plain TCP: the library sends; TLS: this loop does
        handle = self._table.open(slot, sock.fileno(), direct)
        session = Session(
            next(self._cids),
            sock.fileno(),
            addr,
            OutBuffer(self._table, handle, direct),
            TokenBucket(self._config.rate_limit, self._config.rate_burst)
            if self._config.rate_limit > 0
            else None,
            self._pool,
            self._dispatcher.handle_batch,
        )
        t = Transport(sock, session, slot, self._config.max_frame, now, counted=refusal is None)
        self._transports[t.cid] = t
        self._by_handle[handle] = t
        t.events = _READ
        self.selector.register(sock, _READ, t)
        if refusal is not None:
            self.stats["rejected_full"] += 1
            log.info("rejected %s: %s", session.addr, refusal)
            self._expire(t, RemoteProtocolError(Code.SERVER_FULL), "server_full")
        else:
            self._live += 1
            self._unauth.add(t.cid, ip, t)
            self.stats["accepted"] += 1
            log.info("accepted %s (%d connected)", t.label(), self._live)
        if t.handshaking:
            self._handshake(t)

    def _evict_unauth(self, now: float) -> bool:
        """Full: make room at once by closing a connection that has not logged in (the
        rule: unauth.py, docs/server.md). Its `held` flag is read without the mailbox's
        lock: a stale answer only changes which stranger goes."""
        t = self._unauth.victim(lambda t: t.session.mailbox.held)
        if t is None:
            return False
        self._uncount(t)
        log.info(
            "evicting %s: server full, not logged in after %.1fs (%d from its address)",
            t.label(),
            now - t.accepted_at,
            self._unauth.count(t.session.ip) + 1,
        )
        self._expire(t, RemoteProtocolError(Code.SERVER_FULL, Why.EVICTED), "evicted")
        return True

    def _uncount(self, t: Transport) -> None:
        if t.counted:
            t.counted = False
            self._live -= 1
        self._unauth.pop(t.cid)

    def _back_off_accept(self, exc: OSError) -> None:
        """Out of descriptors or memory: stop polling the listener for a while, never spin."""
        self._accept_backoff = min(max(self._accept_backoff * 2, 0.05), 2.0)
        log.warning("accept failed: %s; pausing accepts for %.2fs", exc, self._accept_backoff)
        self.selector.unregister(self._listener)
        self._accepting = False
        self.call_later(self._accept_backoff, self._resume_accept)

    def _resume_accept(self) -> None:
        if not self._accepting and not self._stopping.is_set():
            self.selector.register(self._listener, _READ, _LISTENER)
            self._accepting = True

    # ---- TLS handshake ---------------------------------------------------
    def _handshake(self, t: Transport) -> None:
        sock = t.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            t.handshake_wants = _READ
        except ssl.SSLWantWriteError:
            t.handshake_wants = _WRITE
        except OSError as exc:  # ssl.SSLError is an OSError: a plain-TCP client, a bad hello
            self._close_now(t, f"TLS handshake failed: {_errname(exc)}", Cause.BROKEN)
            return
        else:
            t.handshaking = False
            log.debug("TLS %s %s with %s", sock.version(), sock.cipher()[0], t.label())
            self._update_interest(t)
            self._write(t)  # a refusal may be waiting for the handshake
            if not t.closed:
                self._read_again[t.cid] = t  # the first frames may be in the TLS layer
            return
        self._update_interest(t)

    # ---- read ------------------------------------------------------------
    def _on_readable(self, t: Transport) -> None:
        if t.draining:
            self._drain(t)
        elif t.reading and not t.paused:
            self._read(t)
        elif self.selector.last_masks.get(t.fd, 0) & _HUP_ERR:
            self._close_now(t, "connection reset", Cause.BROKEN)

    def _read(self, t: Transport) -> None:
        """Read what is there: one recv for TCP, until the TLS layer is empty for TLS."""
        sock, decoder = t.sock, t.decoder
        got = 0
        eof = False
        if t.read_wants_write:
            t.read_wants_write = False
            self._update_interest(t)
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                t.read_wants_write = True
                self._update_interest(t)
                break
            except OSError as exc:
                self._close_now(t, _errname(exc), Cause.BROKEN)
                return
            if not data:
                eof = True
                break
            decoder.feed(data)
            got += len(data)
            if not t.tls:
                break  # level-triggered: epoll reports the rest
            if got >= _READ_BUDGET:
                if sock.pending():  # type: ignore[attr-defined]
                    self._read_again[t.cid] = t  # epoll cannot see it
                break
        if got:
            t.last_rx = time.monotonic()
        self._cut_frames(t, got, eof)

    def _cut_frames(self, t: Transport, got: int, eof: bool) -> None:
        decoder, mailbox = t.decoder, t.session.mailbox
        items: list[Any] = []
        nbytes = 0
        try:
            while (payload := decoder.next_frame()) is not None:
                items.append(payload)
                nbytes += len(payload)
        except RemoteProtocolError as err:  # fatal: the stream cannot be resynchronised
            items.append(Abort(err, f"{err.code}: {err.message}"))
            t.reading = False
            t.expiring = True
        if items or not decoder.buffered:
            t.frame_started = t.last_rx if decoder.buffered else None
        elif got and t.frame_started is None:
            t.frame_started = t.last_rx
        if eof and t.reading:
            items.append(PeerGone("EOF without bye"))
            t.reading = False
        if items:
            if not t.reading:  # EOF or a framing error ends it: a catch-up stops first
                self._cancel_drain_wait(t)
            mailbox.post(items, nbytes)
            if t.reading and (len(mailbox) > _BACKLOG_ITEMS or mailbox.size > _BACKLOG_BYTES):
                t.paused = True
                self._paused[t.cid] = t
        self._update_interest(t)

    def _check_paused(self) -> None:
        for cid, t in list(self._paused.items()):
            mailbox = t.session.mailbox
            if t.closed or (
                len(mailbox) <= _BACKLOG_ITEMS // 2 and mailbox.size <= _BACKLOG_BYTES // 2
            ):
                del self._paused[cid]
                t.paused = False
                if not t.closed:
                    self._update_interest(t)
                    if t.tls:
                        self._read_again[cid] = t

    def _drain(self, t: Transport) -> None:
        """Drop what a closing peer still sends; close at its EOF."""
        try:
            data = t.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return
        except OSError:
            data = b""
        if not data:
            reason, cause = t.closing or ("closed", Cause.US)
            self._close_now(t, reason, cause)

    # ---- write -----------------------------------------------------------
    def _write(self, t: Transport) -> None:
        if t.closed or t.draining or t.handshaking:
            return
        out = t.session.out
        if out.direct:
            status, err, left = out.flush()
        else:
            status, err = 0, 0
            try:
                left = out.write(t.send, t.chunk)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                left = len(out)
            except OSError as exc:
                self._close_now(t, f"send failed: {_errname(exc)}", Cause.BROKEN)
                return
        t.write_pending = left > 0
        if self._drain_waits and left <= _DRAINED and not status & native.S_OVERFLOW:
            then = self._drain_waits.pop(t.cid, None)
            if then is not None:
                then(True)
        if not status and not left and t.events == _READ and t.closing is None:
            return  # the common case: all written, still reading, nothing to change
        self._flushed(t, status & ~native.S_LOOP, err)

    def _flushed(self, t: Transport, status: int, err: int) -> None:
        """Act on what a flush (a worker's or ours) reported for `t`."""
        if status & native.S_LOOP:  # a TLS slot: this thread writes it
            self._write(t)
            return
        if status & native.S_ERROR:
            self._close_now(t, f"send failed: {errno.errorcode.get(err, err)}", Cause.BROKEN)
            return
        if status & native.S_LEFT:  # a worker's flush met a full socket: wait for EPOLLOUT
            t.write_pending = True
        if status & native.S_OVERFLOW and not t.expiring and t.closing is None:
            t.expiring = True
            t.reading = False
            self._post_end(t, Evict(Why.SLOW_READER))
        if t.closing is not None and not t.write_pending:  # the final frame is out
            self._start_draining(t)
        else:
            self._update_interest(t)

    def _update_interest(self, t: Transport) -> None:
        if t.closed:
            return
        if t.handshaking:
            events = t.handshake_wants
        else:
            reading = t.draining or (t.reading and not t.paused)
            events = (_READ if reading else 0) | (
                _WRITE if t.write_pending or t.read_wants_write else 0
            )
        if events != t.events:
            self.selector.modify(t.sock, events, t)
            t.events = events

    # ---- closing ---------------------------------------------------------
    def _expire(self, t: Transport, err: RemoteProtocolError, reason: str) -> None:
        """End `t` with a fatal error frame, built by its connection in its mailbox."""
        if t.expiring or t.closing is not None:
            return
        t.expiring = True
        t.reading = False
        self._update_interest(t)
        self._post_end(t, Abort(err, reason))

    def _close_after_flush(self, t: Transport, reason: str, cause: Cause) -> None:
        """The connection sent its final frame: close once it is out (lingering close)."""
        if t.closing is not None or t.closed:
            return
        t.closing = (reason, cause)
        t.reading = False
        t.linger_deadline = time.monotonic() + self._config.shutdown_grace
        self._write(t)  # during a TLS handshake: once it is done, or at the deadline

    def _start_draining(self, t: Transport) -> None:
        """Send FIN, then read and drop until the peer's EOF.

        Closing a socket that still has unread input makes the kernel send an
        RST, which can destroy the final frame (an error or a bye) before the
        peer reads it. Shutting down our side first delivers it, then EOF.
        """
        t.draining = True
        with contextlib.suppress(OSError):
            t.sock.shutdown(socket.SHUT_WR)
        self._update_interest(t)

    def _close_now(self, t: Transport, reason: str, cause: Cause) -> None:
        if t.closed:
            return
        t.closed = True
        del self._transports[t.cid]
        self._by_handle.pop(t.session.out.handle, None)
        self._paused.pop(t.cid, None)
        self._read_again.pop(t.cid, None)
        self._uncount(t)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(t.sock)
        t.session.out.close()  # first: from here on no worker's flush uses the fd
        t.sock.close()
        self._free_slots.append(t.slot)
        self.stats["closed"] += 1
        log.info("closed %s %s: %s", t.label(), cause.value, reason)
        if t.closing is None:  # the loop ended it: the connection still has to know
            self._post_end(t, PeerGone(reason, cause))
        else:
            self._cancel_drain_wait(t)

    def _post_end(self, t: Transport, item: Abort | Evict | PeerGone) -> None:
        """Tell a connection it is ending; a catch-up waiting for a drain stops first."""
        self._cancel_drain_wait(t)
        t.session.mailbox.post([item])

    def _cancel_drain_wait(self, t: Transport) -> None:
        then = self._drain_waits.pop(t.cid, None)
        if then is not None:
            then(False)

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
        """Every deadline: lingering closes, login, a started frame, idle, roster ack."""
        cfg = self._config
        for t in list(self._transports.values()):
            if t.closing is not None:
                if now >= t.linger_deadline:
                    why = "peer did not close" if t.draining else "flush timed out"
                    self._close_now(t, f"{t.closing[0]} ({why})", t.closing[1])
                continue
            if t.expiring:
                continue
            if t.cid in self._unauth and now - t.accepted_at >= cfg.auth_timeout:
                if t.handshaking:
                    self._close_now(t, "TLS handshake not completed in time", Cause.US)
                else:
                    self._time_out(t, Why.LOGIN)
            elif t.frame_started is not None and now - t.frame_started >= cfg.frame_timeout:
                self._time_out(t, Why.FRAME)
            elif cfg.idle_timeout > 0 and now - t.last_rx >= cfg.idle_timeout:
                if t.handshaking:
                    self._close_now(t, "TLS handshake not completed in time", Cause.US)
                else:
                    self._time_out(t, Why.IDLE)
        for session in self._hub.overdue(now):
            t = self._transports.get(session.cid)
            if t is not None:
                self._time_out(t, Why.ROSTER_ACK)

    def _time_out(self, t: Transport, why: Why) -> None:
        self._expire(t, RemoteProtocolError(Code.TIMEOUT, why), f"timeout: {why}")

    # ---- shutdown --------------------------------------------------------
    def _shutdown(self) -> None:
        """Stop accepting, say bye to everyone, flush within the grace period, close all.

        Every outbound buffer is sealed with `bye` here, by the loop: workers may
        still be answering frames, and sealing first is what makes `bye` the
        last frame each client gets (what they append after it is dropped).
        """
        if self._accepting:
            self.selector.unregister(self._listener)
            self._accepting = False
        self._listener.close()
        transports = list(self._transports.values())
        log.info("shutting down: saying bye to %d connections", len(transports))
        bye = encode(ServerBye(Why.SHUTDOWN))
        self._hub.close_all()
        for t in transports:
            t.session.out.seal(bye)
            if t.handshaking:
                self._close_now(t, "server shutdown", Cause.US)
            else:
                t.closing = None  # a close under way becomes the shutdown's
                self._close_after_flush(t, "server shutdown", Cause.US)
        deadline = time.monotonic() + self._config.shutdown_grace
        while self._transports and time.monotonic() < deadline:
            for key, events in self.selector.select(0.05):
                if isinstance(key.data, Transport):
                    self._on_event(key.data, events)
                elif key.data is _WAKE:
                    self._inbox.take()  # nothing more is written: everything is sealed
        for t in list(self._transports.values()):
            why = "peer did not close" if t.draining else "flush timed out"
            self._close_now(
                t, f"server shutdown ({why} in {self._config.shutdown_grace}s)", Cause.US
            )
        self.selector.close()
