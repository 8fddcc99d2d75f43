"""Assembles the server from its parts and runs it until a signal stops it."""

from __future__ import annotations

import logging
import resource
import signal
import socket
import ssl
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from . import native
from .config import ServerConfig
from .dispatch import Accounts, Dispatcher, NoRelay
from .hashing import HashExecutor
from .history import HistoryService, NoHistory
from .hub import Hub
from .inbox import LoopInbox
from .loop import EventLoop
from .outbuf import SOFT_LIMIT
from .pool import WorkerPool
from .store import StoreError
from .throttle import LoginThrottle

if TYPE_CHECKING:  # a server alone never imports the cluster (and Redis' client library)
    from .cluster.accounts import RedisAccounts
    from .cluster.box import Box
    from .cluster.link import Link
    from .cluster.node import ClusterNode, Outbound

log = logging.getLogger("chat.server")

_FD_RESERVE = 64  # descriptors kept for the listener, epoll, logs, the users file


def raise_fd_limit(max_clients: int) -> int:
    """Raise the soft open-file limit to the hard one; say when max_clients cannot fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, max_clients + _FD_RESERVE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    if max_clients + _FD_RESERVE > soft:
        log.warning(
            "--max-clients %d does not fit in the open-file limit %d: beyond about %d "
            "connections accept() fails with EMFILE (logged, backed off)",
            max_clients,
            soft,
            soft - _FD_RESERVE,
        )
    return soft


def open_listener(host: str, port: int, backlog: int) -> socket.socket:
    if host in ("", "::") and socket.has_dualstack_ipv6():
        sock = socket.create_server(
            ("::", port), family=socket.AF_INET6, backlog=backlog, dualstack_ipv6=True
        )
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host or "0.0.0.0", port), family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


@dataclass(frozen=True, slots=True)
class ClusterParts:
    """What a node of a cluster is made with (cli.py builds it; docs/cluster.md)."""

    link: Link
    box: Box
    accounts: RedisAccounts
    outbound: Outbound


class ChatServer:
    """The running server. `listener` is bound before anything is written to disk (cli.py),
    so a start that fails creates nothing; `tls` is None for plain TCP; `keeper` is the
    message store (or `NoHistory`)."""

    def __init__(
        self,
        config: ServerConfig,
        store: Accounts,
        listener: socket.socket,
        tls: ssl.SSLContext | None,
        keeper: HistoryService | NoHistory,
        cluster: ClusterParts | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.keeper = keeper
        self.listener = listener
        self.tls = tls
        self.port = self.listener.getsockname()[1]
        outbound = cluster.outbound if cluster is not None else None
        self.hub = Hub(config.ack_timeout, on_local=outbound.local if outbound else None)
        self.inbox = LoopInbox()
        self.hasher = HashExecutor(config.hash_threads, config.hash_queue)
        # One outbound slot per connection; refused ones (server_full) linger briefly too.
        self.table = native.OutTable(
            2 * config.max_clients + 64, config.max_outbuf, SOFT_LIMIT, config.max_total_outbuf
        )
        self.dispatcher = Dispatcher(
            self.hub,
            store,
            LoginThrottle(
                cap=config.login_delay, runner=self.hasher, patience=config.auth_timeout / 2
            ),
            self.inbox,
            keeper,
            self.table,
            outbound if outbound is not None else NoRelay(),
        )
        self.pool = WorkerPool(config.threads, self.dispatcher.end_tick)
        self.loop = EventLoop(
            config, listener, tls, self.hub, self.dispatcher, self.pool, self.inbox, self.table
        )
        self.node: ClusterNode | None = None
        if cluster is not None:
            from .cluster.node import ClusterNode

            self.node = ClusterNode(
                cluster.link,
                cluster.box,
                cluster.accounts,
                cluster.outbound,
                self.hub,
                self.table,
                self.inbox,
            )

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self.loop.stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    def run(self) -> None:
        log.info(
            "listening on %s port %d (%s)",
            self.config.host or "*",
            self.port,
            "TLS" if self.tls is not None else "plain TCP",
        )
        if self.node is not None:
            self.node.join()  # who is online elsewhere, before the first client logs in
        try:
            self.loop.run()
        finally:
            # Threads that may still ask the loop for I/O stop before its inbox closes.
            self.hasher.stop()
            self.pool.stop()
            if self.node is not None:
                self.node.stop()
            self.keeper.stop()  # what the workers handed over is stored before the exit
            self.inbox.close()
            self._persist()
            stats = self.loop.stats
            log.info(
                "stopped: %d accepted, %d rejected (server_full), %d closed, %d accounts",
                stats["accepted"],
                stats["rejected_full"],
                stats["closed"],
                len(self.store),
            )

    def _persist(self) -> None:
        try:
            self.store.save()
        except StoreError as exc:
            log.error("%s", exc)
