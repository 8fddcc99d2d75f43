"""Who gets a connection slot: accepting from every listener, the limits, the eviction rule.

Everything a stranger can hold before logging in is bounded here:
`--max-clients` slots (the next connection gets `server_full`), at most
`--max-unauth-per-addr` connections not logged in from one address, and,
when the server is full, room is made at once by evicting a connection that
has not logged in yet, by the rule of net/unauth.py (never one whose login is
being checked while another is left; from the address with the most; its
oldest) (docs/server.md, "Deadlines, back-pressure and limits").
A refused connection takes no slot of `--max-clients`: it is answered in its
mailbox like any fatal error and lingers at most `--shutdown-grace`.
`accept()` failing for want of descriptors or memory backs off, never spins.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from chat.server.core import native
from chat.server.core.user import User
from chat.server.net.listeners import Listener
from chat.server.net.transport import Transport
from chat.server.net.unauth import NotLoggedIn
from chat.server.ops.config import ServerConfig
from chat.shared.errors import Code, RemoteProtocolError, Why

log = logging.getLogger("chat.server")

_ACCEPT_BATCH = 64
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

#: Makes the user of a new connection: (cid, fd, peer address, slot handle, direct).
MakeUser = Callable[[int, int, Any, int, bool], User]


class Admission:
    def __init__(self, config: ServerConfig, table: native.OutTable, make_user: MakeUser) -> None:
        self.config = config  # replaced on a reload (SIGHUP)
        self._table = table
        self._make_user = make_user
        self._free_slots = list(range(table.slots - 1, -1, -1))  # popped from the end
        self._cids = itertools.count(1)
        self.live = 0  # transports holding one of --max-clients
        self._unauth: NotLoggedIn[Transport] = NotLoggedIn()  # not logged in yet
        self.stats = {"accepted": 0, "rejected_full": 0, "evicted": 0}
        self.backoff = 0.0
        self.evicted: list[Transport] = []  # made room for a newcomer: the loop ends them

    # ---- accept ------------------------------------------------------------------------
    def accept(self, listener: Listener) -> tuple[list[tuple[Transport, str | None]], bool]:
        """Accept what waits on `listener`: new transports, each with why it is refused
        (None: admitted); and True when accepting must pause (out of descriptors)."""
        made: list[tuple[Transport, str | None]] = []
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, addr = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    self.backoff = min(max(self.backoff * 2, 0.05), 2.0)
                    log.warning("accept failed: %s; pausing accepts for %.2fs", exc, self.backoff)
                    return made, True
                log.warning("accept failed: %s", exc)  # e.g. ECONNABORTED: try the next
                continue
            self.backoff = 0.0
            admitted = self._admit(listener, sock, addr)
            if admitted is not None:
                made.append(admitted)
        return made, False

    def _admit(
        self, listener: Listener, sock: socket.socket, addr: Any
    ) -> tuple[Transport, str | None] | None:
        sock.setblocking(False)
        now = time.monotonic()
        ip = _plain_ip(addr[0])
        addr = (ip, addr[1])
        refusal: str | None = None
        per_addr = self.config.max_unauth_per_addr  # 0: no limit
        if 0 < per_addr <= self._unauth.count(ip):  # first: a refusal evicts no one
            refusal = f"server_full ({self._unauth.count(ip)} connections not logged in from {ip})"
        elif self.live >= self.config.max_clients and not self._make_room(now):
            refusal = f"server_full ({self.live} clients)"
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._free_slots:  # only with far more refused connections than slots
            log.warning("no outbound slot for %s: closed at once", ip)
            sock.close()
            return None
        if listener.tls is not None:
            sock = listener.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        slot = self._free_slots.pop()
        direct = listener.tls is None  # plain TCP: the library sends; TLS: the loop does
        handle = self._table.open(slot, sock.fileno(), direct)
        user = self._make_user(next(self._cids), sock.fileno(), addr, handle, direct)
        decoder = listener.codec.decoder(self.config.max_frame)
        t = Transport(sock, user, slot, decoder, now, counted=refusal is None)
        if refusal is not None:
            self.stats["rejected_full"] += 1
            log.info("rejected %s: %s", user.addr, refusal)
        else:
            self.live += 1
            self._unauth.add(t.cid, ip, t)
            self.stats["accepted"] += 1
            log.info("accepted %s (%d connected)", t.label(), self.live)
        return t, refusal

    def _make_room(self, now: float) -> bool:
        """Full: make room at once by taking the slot of a connection that has not logged
        in (net/unauth.py's rule); the loop then ends it (`evicted`). Its `held` flag is
        read without the mailbox's lock: a stale answer only changes which stranger goes."""
        t = self._unauth.victim(lambda t: t.user.mailbox.held)
        if t is None:
            return False
        self.release(t)
        log.info(
            "evicting %s: server full, not logged in after %.1fs (%d from its address)",
            t.label(),
            now - t.accepted_at,
            self._unauth.count(t.user.ip) + 1,
        )
        self.evicted.append(t)
        self.stats["evicted"] += 1
        return True

    def take_evicted(self) -> list[Transport]:
        """Connections `accept` evicted to make room: the loop ends each (`server_full`)."""
        evicted, self.evicted = self.evicted, []
        return evicted

    # ---- counts ----------------------------------------------------------------------------
    def logged_in(self, cid: int) -> None:
        self._unauth.pop(cid)

    def expired_logins(self, now: float) -> list[Transport]:
        """Connections past `--auth-timeout` without logging in."""
        limit = self.config.auth_timeout
        return [t for t in self._unauth.items() if now - t.accepted_at >= limit]

    def release(self, t: Transport) -> None:
        """`t` no longer holds one of --max-clients (evicted, or closed)."""
        if t.counted:
            t.counted = False
            self.live -= 1
        self._unauth.pop(t.cid)

    def closed(self, t: Transport) -> None:
        """`t` is closed: its counts and its native slot go back."""
        self.release(t)
        self._free_slots.append(t.slot)


def _plain_ip(ip: str) -> str:
    """An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, from a dual-stack listener) as the
    IPv4 address it is: one address counts as one, and the log says what people expect."""
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def eviction_error() -> RemoteProtocolError:
    return RemoteProtocolError(Code.SERVER_FULL, Why.EVICTED)
