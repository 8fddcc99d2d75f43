"""The event loop: one thread that owns epoll and every socket.

Each turn waits in epoll (`--max-events`, `--epoll-timeout`, logged at DEBUG),
accepts from the listeners (net/admission.py), hands socket events to the
transports' I/O (net/connections.py), runs what other threads asked through
the inbox (a flush to finish, a close after the final frame, a login done, a
catch-up waiting for a drain) and the deadlines. It is the only thread that
calls `accept`, `recv`, `send` on a TLS socket, `do_handshake`, `shutdown` or
`close`. On stop it says `bye` to everyone, flushes within the grace period,
and closes every socket and the epoll object.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import threading
import time
from collections.abc import Callable

from chat.server.core import native
from chat.server.core.hub import Hub
from chat.server.net.admission import Admission, MakeUser, eviction_error
from chat.server.net.connections import Connections
from chat.server.net.inbox import (
    Cause,
    CloseAfterFlush,
    EndSessions,
    Flushed,
    LoggedIn,
    LoopInbox,
    WhenDrained,
)
from chat.server.net.listeners import Listener
from chat.server.net.memory import release_free_memory
from chat.server.net.selector import TunedEpollSelector
from chat.server.net.transport import Transport
from chat.server.ops.config import ServerConfig
from chat.shared.errors import Code, RemoteProtocolError, Why
from chat.shared.messages import ServerBye, encode

log = logging.getLogger("chat.server")

_SCAN_EVERY = 1.0  # seconds between deadline scans
_TRIM_EVERY = 30.0  # seconds between returning freed heap to the system
_READ = selectors.EVENT_READ
_WAKE = "wake"


class EventLoop:
    def __init__(
        self,
        config: ServerConfig,
        listeners: list[Listener],
        hub: Hub,
        inbox: LoopInbox,
        table: native.OutTable,
        make_user: MakeUser,
    ) -> None:
        self._config = config
        self._listeners = listeners
        self._hub = hub
        self._inbox = inbox
        self._table = table
        self.selector = TunedEpollSelector(config.max_events, config.epoll_timeout_ms)
        self.admission = Admission(config, table, make_user)
        self.connections = Connections(
            self.selector, lambda: self._config.shutdown_grace, self.admission.closed
        )
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._stopping = threading.Event()
        self._paused_listeners: set[int] = set()
        self._next_scan = time.monotonic() + _SCAN_EVERY
        self._next_trim = time.monotonic() + _TRIM_EVERY
        self._reload: Callable[[], None] | None = None
        self._reload_asked = False
        self.selector.register(inbox.fd, _READ, _WAKE)
        for listener in listeners:
            self.selector.register(listener.sock, _READ, listener)

    @property
    def stats(self) -> dict[str, int]:
        return {**self.admission.stats, "closed": self.connections.closed_count}

    def configure(self, config: ServerConfig) -> None:
        """New settings from a reload (loop thread): limits and deadlines apply from now."""
        self._config = config
        self.admission.config = config
        self.selector.timeout_ms = config.epoll_timeout_ms

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Ask the loop to shut down (safe from a signal handler)."""
        self._stopping.set()
        self._inbox.wake()

    def ask_reload(self, reload: Callable[[], None]) -> None:
        """Run `reload` on the loop thread at its next turn (safe from a signal handler)."""
        self._reload = reload
        self._reload_asked = True
        self._inbox.wake()

    # ---- main loop -------------------------------------------------------------------
    def run(self) -> bool:
        """Serve until `stop`; then say bye to everyone and close. False when the loop itself
        failed (a bug): it is logged with its traceback, and the server still stops cleanly,
        with `bye` to everyone (its owner then exits non-zero)."""
        ok = True
        try:
            while not self._stopping.is_set():
                self._turn()
        except Exception:
            log.critical("the event loop failed; the server stops", exc_info=True)
            ok = False
        self._shutdown()
        return ok

    def _turn(self) -> None:
        connections = self.connections
        for key, events in self.selector.select(self._wait_seconds()):
            data = key.data
            if type(data) is Transport:  # the common event first
                connections.on_event(data, events)
            elif data is _WAKE:
                self._run_requests()
            elif isinstance(data, Listener):
                self._accept(data)
            else:
                connections.on_event(data, events)
        if connections.busy:
            connections.after_events()
        now = time.monotonic()
        if (
            now >= self._next_scan
            or now >= self._next_trim
            or (self._timers and self._timers[0][0] <= now)
        ):
            self._run_timers()
        if self._reload_asked:
            self._reload_asked = False
            if self._reload is not None:
                self._reload()

    def _wait_seconds(self) -> float | None:
        """The configured epoll timeout, cut short only when something is due sooner."""
        connections = self.connections
        if connections.busy:
            return connections.wait_hint
        if not connections.by_cid and not self._timers:
            return None
        due = min(self._next_scan, self._timers[0][0]) if self._timers else self._next_scan
        left = max(due - time.monotonic(), 0.0)
        return left if left < self._config.epoll_timeout_ms / 1000.0 else None

    def _run_requests(self) -> None:
        connections = self.connections
        by_cid = connections.by_cid
        for request in self._inbox.take():
            match request:
                case Flushed(results):
                    by_handle = connections.by_handle
                    for handle, status, err in results:
                        t = by_handle.get(handle)
                        if t is not None and not t.closed:
                            connections.flushed(t, status, err)
                case CloseAfterFlush(cid, reason, cause):
                    t = by_cid.get(cid)
                    if t is not None:
                        connections.close_after_flush(t, reason, cause)
                case LoggedIn(cid):
                    self.admission.logged_in(cid)
                case WhenDrained(cid, then):
                    connections.when_drained(cid, then)
                case EndSessions(name, why, then, keep):
                    ended = connections.end_user(name, why, keep)
                    try:
                        then(ended)
                    except Exception:
                        log.exception("telling who asked to end the sessions of %s failed", name)
                case _:
                    log.error("unknown loop request %r", request)

    # ---- accept ---------------------------------------------------------------------------
    def _accept(self, listener: Listener) -> None:
        made, pause = self.admission.accept(listener)
        for t in self.admission.take_evicted():
            self.connections.expire(t, eviction_error(), "evicted")
        for t, refusal in made:
            self.connections.add(t)
            if refusal is not None and not t.closed:
                self.connections.expire(t, RemoteProtocolError(Code.SERVER_FULL), "server_full")
        if pause:
            self.selector.unregister(listener.sock)
            self._paused_listeners.add(id(listener))
            self.call_later(self.admission.backoff, lambda: self._resume_accept(listener))

    def _resume_accept(self, listener: Listener) -> None:
        if id(listener) in self._paused_listeners and not self._stopping.is_set():
            self._paused_listeners.discard(id(listener))
            self.selector.register(listener.sock, _READ, listener)

    # ---- timers --------------------------------------------------------------------------
    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), fn))

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            heapq.heappop(self._timers)[2]()
        if now >= self._next_scan:
            self._next_scan = now + _SCAN_EVERY
            self._scan(now)
            self._table.trim()  # a drained buffer idle for a whole scan period goes
        if now >= self._next_trim:
            self._next_trim = now + _TRIM_EVERY
            release_free_memory()

    def _scan(self, now: float) -> None:
        """Every deadline: lingering closes, login, a started frame, idle, roster ack."""
        cfg, connections = self._config, self.connections
        late_logins = {t.cid for t in self.admission.expired_logins(now)}
        for t in list(connections.by_cid.values()):
            if t.closing is not None:
                if now >= t.linger_deadline:
                    why = "peer did not close" if t.draining else "flush timed out"
                    connections.close_now(t, f"{t.closing[0]} ({why})", t.closing[1])
                continue
            if not t.open:
                continue
            if t.cid in late_logins:
                self._time_out(t, Why.LOGIN)
            elif t.frame_started is not None and now - t.frame_started >= cfg.frame_timeout:
                self._time_out(t, Why.FRAME)
            elif cfg.idle_timeout > 0 and now - t.last_rx >= cfg.idle_timeout:
                self._time_out(t, Why.IDLE)
        for user in self._hub.overdue(now):
            t = connections.by_cid.get(user.cid)
            if t is not None:
                self._time_out(t, Why.ROSTER_ACK)

    def _time_out(self, t: Transport, why: Why) -> None:
        if t.handshaking:  # nothing can be said before the TLS layer is up
            self.connections.close_now(t, "TLS handshake not completed in time", Cause.US)
            return
        self.connections.expire(t, RemoteProtocolError(Code.TIMEOUT, why), f"timeout: {why}")

    # ---- shutdown --------------------------------------------------------------------------
    def _shutdown(self) -> None:
        """Stop accepting, say bye to everyone, flush within the grace period, close all.

        Every slot is sealed with `bye` here, by the loop: workers may still be
        answering frames, and sealing first is what makes `bye` the last frame
        each client gets (what they append after it is dropped).
        """
        for listener in self._listeners:
            if id(listener) not in self._paused_listeners:
                self.selector.unregister(listener.sock)
            listener.close()
        connections = self.connections
        transports = list(connections.by_cid.values())
        log.info("shutting down: saying bye to %d connections", len(transports))
        bye = encode(ServerBye(Why.SHUTDOWN))
        self._hub.close_all()
        for t in transports:
            t.user.out.seal(bye)
            if t.handshaking:
                connections.close_now(t, "server shutdown", Cause.US)
            else:
                connections.shut(t, "server shutdown")
        grace = self._config.shutdown_grace
        deadline = time.monotonic() + grace
        while len(connections) and time.monotonic() < deadline:
            for key, events in self.selector.select(0.05):
                if isinstance(key.data, Transport):
                    connections.on_event(key.data, events)
                elif key.data is _WAKE:
                    self._inbox.take()  # nothing more is written: everything is sealed
        for t in list(connections.by_cid.values()):
            why = "peer did not close" if t.draining else "flush timed out"
            connections.close_now(t, f"server shutdown ({why} in {grace}s)", Cause.US)
        self.selector.close()
