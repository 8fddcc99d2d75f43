"""The composition root: every object of a running server, built whole, started and stopped.

`Engines` are what differs between a server alone and a node of a cluster:
the four seams (accounts, store, presence, broker: Centrifugo's engine
split) and the deadline a `sent` may wait for them. `build_cluster` makes
the Redis ones (ops/cli.py makes a server alone's from its files); `Server`
wires the rest the same way for both.

Lifetimes are structured (trio's rule): no constructor starts a thread;
`Server.run` starts every part in order, runs the loop on the calling thread,
and stops and joins every part in the reverse order, so nothing outlives the
server and no thread writes to a descriptor that was closed under it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import resource
import secrets
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from chat.server.accounts.hashing import HashExecutor
from chat.server.accounts.seam import Accounts
from chat.server.accounts.throttle import LoginThrottle, SharedTurns
from chat.server.accounts.tokens import Tokens
from chat.server.accounts.users_file import FolderLock, StoreError, UserStore
from chat.server.core import native
from chat.server.core.asks import Asks
from chat.server.core.broker import Broker, NoBroker, RoomBroker
from chat.server.core.care import Care
from chat.server.core.catchup import CatchUp
from chat.server.core.deadlines import Deadlines
from chat.server.core.dispatch import Dispatcher
from chat.server.core.ends import Ends
from chat.server.core.fanout import Fanout
from chat.server.core.frames import PeerFrames
from chat.server.core.hub import Hub
from chat.server.core.login import Login
from chat.server.core.lookups import Lookups
from chat.server.core.outbuf import SOFT_LIMIT, OutBuffer
from chat.server.core.outcomes import Outcomes
from chat.server.core.pool import WorkerPool
from chat.server.core.presence import NoPresence, Presence
from chat.server.core.ratelimit import TokenBucket
from chat.server.core.rooms import RoomBook
from chat.server.core.ticks import Ticks
from chat.server.core.user import User
from chat.server.crypto.cipher import Cipher
from chat.server.crypto.keyfile import KeyFileError, load_or_create_key, loose_mode, read_key
from chat.server.net.inbox import LoopInbox
from chat.server.net.listeners import Listener, ListenError, open_listener
from chat.server.net.loop import EventLoop
from chat.server.ops import status
from chat.server.ops.commands import Commands, NoPeers, Peers
from chat.server.ops.config import ServerConfig
from chat.server.ops.control import ControlError, ControlServer
from chat.server.ops.metrics import MetricsServer, ServerCollector
from chat.server.ops.reload import Reloader
from chat.server.ops.running import Forget, SessionEnds
from chat.server.ops.status import package_version
from chat.server.store.seam import NoStore, Store
from chat.server.store.service import StoreService
from chat.server.store.sqlite import MessageStore, MessageStoreError, start_floor
from chat.shared.states import State

log = logging.getLogger("chat.server")

_FD_RESERVE = 64  # descriptors kept for the listeners, epoll, logs, the users file
_LOGGED_IN = (State.ROSTER, State.CHAT)


@dataclass
class Engines:
    """The seams' implementations, and what else of theirs must be started and stopped."""

    accounts: Accounts
    store: Store
    presence: Presence = field(default_factory=NoPresence)
    broker: Broker = field(default_factory=NoBroker)
    #: Seconds a `sent` may wait for the store and other nodes (None: no limit).
    deadline: float | None = None
    #: Extra parts (a cluster's link and control channel): started first, stopped last.
    parts: list[Any] = field(default_factory=list)
    describe: str = "alone"
    #: The other processes an operator's kick, ban, delete or password reset must reach.
    peers: Peers = field(default_factory=NoPeers)
    #: The storage's figures for `chat-server status` and the metrics (ops/status.py).
    facts: Callable[[], dict[str, Any]] = dict
    #: Whether the storage answers now (a cluster's Redis), for /healthz.
    up: Callable[[], bool] = lambda: True
    #: A cluster's rooms, decided in Redis (`cluster.rooms.RedisRooms`); None: the hub's.
    rooms: RoomBroker | None = None
    #: The server's key (the key file): login tokens are made with a key derived from it,
    #: so they hold across restarts and on every node. None: a key of this process's own.
    key: bytes | None = None
    #: A cluster's thread for asking Redis what a send needs and this node has not heard
    #: of yet (core/lookups.py; one of `parts`). None: alone, memory is the whole truth.
    lookups: Lookups | None = None
    #: A cluster's failed-login turns shared by its nodes (cluster/turns.py). None: alone,
    #: the throttle's own turns are every turn.
    turns: SharedTurns | None = None


@dataclass
class Core:
    """The chat core of one process, wired: what a `User`'s mailbox runs, and the hub."""

    hub: Hub
    ticks: Ticks
    fanout: Fanout
    dispatcher: Dispatcher
    hasher: HashExecutor
    deadlines: Deadlines
    throttle: LoginThrottle
    login: Login
    #: The account commands (the operator's, and a user's own `passwd`/`delete_account`).
    commands: Commands
    care: Care


def build_core(
    config: ServerConfig, engines: Engines, table: native.OutTable, inbox: LoopInbox
) -> Core:
    """Every part of the core, whole, in the order they need each other (no thread starts).
    The server and the tests without sockets (tests/server/harness.py) both use it."""
    book = RoomBook(config.max_rooms_per_user, config.max_room_members)
    if engines.rooms is None:  # a cluster's rooms are read by their broker, subscribed first
        book.load(engines.store.load_rooms())
    hub = Hub(config.ack_timeout, engines.presence, engines.store, table, book=book)
    ticks = Ticks(table, inbox)
    hasher = HashExecutor(config.hash_threads, config.hash_queue)
    deadlines = Deadlines()
    throttle = LoginThrottle(
        cap=config.login_delay,
        runner=hasher,
        patience=config.auth_timeout / 2,
        shared=engines.turns,
    )
    ends = Ends(hub, inbox)
    fanout = Fanout(
        hub,
        engines.store,
        engines.accounts,
        engines.presence,
        engines.broker,
        table,
        ticks,
        deadlines,
        engines.deadline,
        engines.rooms,
        engines.lookups,
    )
    tokens = Tokens(engines.key or secrets.token_bytes(32), config.token_days)
    login = Login(
        hub,
        engines.accounts,
        throttle,
        inbox,
        ends,
        tokens,
        config.min_password,
        config.registration,
    )
    commands = Commands(
        engines.accounts,  # type: ignore[arg-type]  # both stores are AccountAdmin
        Forget(hub, ticks, engines.store, engines.rooms),
        SessionEnds(inbox),
        engines.peers,
        min_password=config.min_password,
    )
    care = Care(engines.accounts, throttle, commands, ends, config.min_password)
    catchup = CatchUp(engines.store, inbox, hub)
    alone = isinstance(engines.presence, NoPresence)
    asks = Asks(
        hub,
        engines.accounts,
        care,
        engines.rooms,
        None if alone else fanout,  # markers and typing relayed to other nodes
        deadlines,
        engines.deadline if engines.deadline is not None else CROSSING_DEADLINE,
    )
    frames = PeerFrames(hub, engines.store, login, catchup, ends, asks)
    outcomes = Outcomes(login, fanout, catchup, frames, ends, care)
    dispatcher = Dispatcher(frames, outcomes, fanout, ticks)
    hub.windows(deadlines.after, ticks)
    return Core(hub, ticks, fanout, dispatcher, hasher, deadlines, throttle, login, commands, care)


class Server:
    """The running server (see the module's docstring)."""

    def __init__(
        self,
        config: ServerConfig,
        listeners: list[Listener],
        engines: Engines,
        control: ControlServer | None = None,
        metrics: MetricsServer | None = None,
    ) -> None:
        self.config = config
        self.listeners = listeners
        self.engines = engines
        self.port = listeners[0].port if listeners else 0
        self.inbox = LoopInbox()
        # One outbound slot per connection; refused ones (server_full) linger briefly too.
        self.table = native.OutTable(
            2 * config.max_clients + 64, config.max_outbuf, SOFT_LIMIT, config.max_total_outbuf
        )
        core = self.core = build_core(config, engines, self.table, self.inbox)
        self.hub, self.ticks, self.fanout = core.hub, core.ticks, core.fanout
        self.hasher, self.deadlines, self.dispatcher = core.hasher, core.deadlines, core.dispatcher
        self.pool = WorkerPool(config.threads, self.ticks.flush)
        self.loop = EventLoop(config, listeners, self.hub, self.inbox, self.table, self._user)
        self._reloader: Reloader | None = None  # install_signal_handlers
        self.started = time.monotonic()
        # The operator's side (ops/): commands through the control socket, and what the
        # other nodes of a cluster tell this one to do.
        self.control = control
        self.commands = core.commands
        self.commands.facts = self._facts
        engines.peers.attach(self.commands.act)
        if control is not None:
            control.serve(self.commands.run)
        self.metrics = metrics
        if metrics is not None:
            metrics.serve(ServerCollector(self), self._healthy)
            if isinstance(engines.store, StoreService):
                engines.store.on_commit = metrics.commits.observe

    def _user(self, cid: int, fd: int, addr: Any, handle: int, direct: bool) -> User:
        """A new connection's `User`, whole: its slot, rate bucket and mailbox."""
        cfg = self.loop.admission.config  # the newest settings (a reload changes them)
        rate = TokenBucket(cfg.rate_limit, cfg.rate_burst) if cfg.rate_limit > 0 else None
        out = OutBuffer(self.table, handle, direct)
        return User(cid, fd, addr, out, rate, self.pool, self.dispatcher.handle_batch)

    def install_signal_handlers(self, reloader: Reloader | None = None) -> None:
        """SIGTERM and SIGINT stop the server (bye to everyone); SIGHUP reopens the log and
        reloads the settings that can change while it runs (ops/reload.py). The handlers
        only ask the loop: the work is done on its thread, between two turns."""

        def on_stop(signum: int, frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self.loop.stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.loop.ask_reload(self._reload)

        self._reloader = reloader
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _reload(self) -> None:
        """SIGHUP, on the loop thread: read the settings again, hand them to their owners."""
        if self._reloader is None:
            log.info("received SIGHUP: nothing to reload")
            return
        settings = self._reloader.reload()
        if settings is None:
            return
        config, tls = settings
        self.config = config
        self.loop.configure(config)
        for listener in self.listeners:
            if listener.tls is not None and tls is not None:
                listener.tls = tls  # new connections: a renewed certificate
        self.hub.set_ack_timeout(config.ack_timeout)
        self.core.login.min_password = config.min_password
        self.core.login.registration = config.registration
        self.core.login.tokens.days = config.token_days
        self.core.care.min_password = config.min_password
        self.commands.min_password = config.min_password

    # ---- the operator's side (ops/commands.py) --------------------------------------------
    def _healthy(self) -> tuple[bool, str]:
        """/healthz: serving; a node whose Redis is away says so (503)."""
        if self.loop.stopping:
            return False, "stopping"
        if not self.engines.up():
            return False, "redis is away: cross-node traffic has stopped"
        return True, "ok"

    def _facts(self) -> dict[str, Any]:
        """`chat-server status` (ops/status.py): read now, from the tables that hold them."""
        transports = [t for t in list(self.loop.connections.by_cid.values()) if t.open]
        logged_in = sum(1 for t in transports if t.user.conn.state in _LOGGED_IN)
        return {
            "version": package_version(),
            "uptime_seconds": int(time.monotonic() - self.started),
            "mode": self.engines.describe,
            "connections": len(transports),  # open: not those saying goodbye
            "logged_in": logged_in,
            "users_online": len(self.hub.online()),
            "users_online_here": len(self.hub.local_names()),
            "accounts": len(self.engines.accounts),
            "registration": self.core.login.registration,
            **self.engines.facts(),
        }

    # ---- lifetime ----------------------------------------------------------------------
    def run(self) -> int:
        """Start every part in order, run the loop here, stop every part in reverse; the exit
        code (1 when the loop failed and the server had to stop on its own)."""
        e = self.engines
        started: list[Any] = []
        ok = False
        try:
            for part in (*e.parts, e.store, self.deadlines, self.hasher, self.pool):
                part.start()
                started.append(part)
            e.presence.start(_Listener(self.hub, self.ticks))  # who is online elsewhere
            started.append(e.presence)
            e.broker.start(self.fanout)
            started.append(e.broker)
            if e.rooms is not None:  # subscribed, then every room read: the replica
                e.rooms.start(self.fanout.replica)
                started.append(e.rooms)
            for ops_part in (self.metrics, self.control):  # last: they use every part above
                if ops_part is not None:
                    ops_part.start()
                    started.append(ops_part)
            for listener in self.listeners:  # said once every part is up: clients are served
                log.info(
                    "listening on %s port %d (%s)",
                    listener.spec.host or "*",
                    listener.port,
                    "TLS" if listener.tls is not None else "plain TCP",
                )
            ok = self.loop.run()
        finally:
            # The loop has said bye to everyone and closed every socket. Threads that may
            # still append or ask the loop for I/O stop before its inbox closes.
            order = [self.control, self.metrics, self.hasher, self.pool, e.rooms, e.broker]
            order += [e.presence, self.deadlines, e.store]
            for part in [*order, *reversed(e.parts)]:
                if part in started:
                    _stop(part)
            for ops_part in (self.control, self.metrics):
                if ops_part is not None and ops_part not in started:
                    _stop(ops_part)  # bound but never served: its socket goes
            for listener in self.listeners:  # closed by the loop's shutdown, unless it never ran
                listener.close()
            self.inbox.close()
            self._persist()
            stats = self.loop.stats
            log.info(
                "stopped: %d accepted, %d rejected (server_full), %d closed, %d accounts",
                stats["accepted"],
                stats["rejected_full"],
                stats["closed"],
                len(e.accounts),
            )
        return 0 if ok else EXIT_FAILURE

    def _persist(self) -> None:
        try:
            self.engines.accounts.save()
        except StoreError as exc:
            log.error("%s", exc)


class _Listener:
    """The hub as the presence's listener: each call with the calling thread's tick."""

    __slots__ = ("_hub", "_ticks")

    def __init__(self, hub: Hub, ticks: Ticks) -> None:
        self._hub = hub
        self._ticks = ticks

    def elsewhere(self, name: str, visible: bool) -> None:
        self._hub.elsewhere(name, visible, self._ticks.current())

    def elsewhere_reset(self, names: set[str]) -> None:
        self._hub.elsewhere_reset(names, self._ticks.current())

    def settled(self) -> None:
        self._ticks.flush()


def _stop(part: Any) -> None:
    try:
        part.stop()
    except Exception:  # stopping the rest matters more than this one's error
        log.exception("stopping %s failed", type(part).__name__)


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


# --------------------------------------------------------------------------------------------
# Opening: the engines of a server alone (its files) or of a node (Redis), and the listeners.
# A start that fails creates nothing: every check runs first, then the ports are bound,
# and only then are files created (docs/operations.md, "Start-up").
# --------------------------------------------------------------------------------------------
USERS_FILE = "users.db"
KEY_FILE = "server.key"
HISTORY_FILE = "history.db"

EXIT_USAGE = 2
EXIT_FAILURE = 1


class StartError(Exception):
    """The server cannot start: one line for stderr, and the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Opened:
    """What `open_alone` or `open_cluster` made: a server to run, and what to release after."""

    server: Server
    release: Callable[[], None] = lambda: None


def listen(config: ServerConfig, tls: ssl.SSLContext | None) -> list[Listener]:
    """Bind every listener (StartError when one cannot be had), and warn about what they
    expose."""
    raise_fd_limit(config.max_clients)
    listeners: list[Listener] = []
    for spec in config.listeners():
        try:
            listeners.append(open_listener(spec, config.backlog, tls))
        except (OSError, ListenError) as exc:
            for done in listeners:
                done.close()
            # Not exc.strerror: create_server() puts the address, a tuple, in it.
            why = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
            raise StartError(EXIT_FAILURE, f"cannot listen on {spec}: {why}") from None
    for listener in listeners:
        if listener.tls is None:
            _warn_if_exposed(listener)
    return listeners


def bind_metrics(config: ServerConfig, listeners: list[Listener]) -> MetricsServer | None:
    """The metrics' listener (`--metrics`), bound with the chat ports: StartError (exit 1,
    the chat ports closed again) when its address cannot be had."""
    if config.metrics is None:
        return None
    host, port = config.metrics
    metrics = MetricsServer(host, port)
    try:
        metrics.bind()
    except OSError as exc:
        for listener in listeners:
            listener.close()
        why = exc.strerror or str(exc)
        raise StartError(EXIT_FAILURE, f"cannot serve metrics on {host}:{port}: {why}") from None
    if not is_loopback(host) and host not in ("localhost",):
        log.warning(
            "metrics on %s, which is not a loopback address: anyone who reaches it sees the "
            "server's figures (no names, no messages); keep it behind a firewall",
            host or "*",
        )
    return metrics


def open_alone(config: ServerConfig, tls: ssl.SSLContext | None, cipher: Cipher) -> Opened:
    """A server alone: its key, users file and message store, locked for this process."""
    folder = config.users_file.parent
    locks: list[FolderLock] = []

    def release() -> None:
        for lock in locks:
            lock.release()

    try:
        if folder.exists():
            locks.append(FolderLock.acquire(folder))
        key = read_key(config.key_file)
        history_folder = config.history_file.parent
        own_history_folder = config.keep_messages and not _same_folder(history_folder, folder)
        if own_history_folder and history_folder.exists():
            locks.append(FolderLock.acquire(history_folder))
        accounts: UserStore | None = None
        id_floor = 1
        if key is not None:
            _warn_if_loose(config.key_file, "key file")
            accounts = UserStore.open(
                config.users_file, key, cipher, config.hash_cost, config.refuse_case_variants
            )
            if config.keep_messages:
                MessageStore.check(config.history_file, key, cipher)
                # Above the users file's id mark; a lost store is refused unless said.
                id_floor = start_floor(
                    config.history_file,
                    config.users_file,
                    len(accounts),
                    accounts.id_mark,
                    config.new_history_store,
                )
        else:
            for path, what in ((config.users_file, "the accounts"), (config.history_file, "it")):
                if path.exists() and (config.keep_messages or path == config.users_file):
                    raise StartError(
                        EXIT_FAILURE,
                        f"{path} exists but its key file {config.key_file} is missing: restore "
                        f"the key (without it {what} cannot be read)",
                    )
        listeners = listen(config, tls)
        metrics = bind_metrics(config, listeners)
        # The checks passed and the ports are ours: now files may be created.
        try:
            if not locks or locks[0].folder != folder:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                locks.insert(0, FolderLock.acquire(folder))
            if accounts is None:
                key, created = load_or_create_key(config.key_file)
                if created:
                    log.info(
                        "created a new key file %s (mode 0600): keep it with the users file",
                        config.key_file,
                    )
                accounts = UserStore.open(
                    config.users_file, key, cipher, config.hash_cost, config.refuse_case_variants
                )
            if own_history_folder and len(locks) < 2:
                history_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                locks.append(FolderLock.acquire(history_folder))
            store = _open_store(config, key, cipher, id_floor, accounts)
            control = ControlServer(folder)
            control.bind()
        except (OSError, KeyFileError, StoreError, MessageStoreError, ControlError) as exc:
            for listener in listeners:
                listener.close()
            if metrics is not None:
                metrics.stop()
            text = f"{folder}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
            raise StartError(EXIT_FAILURE, text) from None
    except KeyFileError as exc:
        release()
        raise StartError(EXIT_USAGE, str(exc)) from None
    except (StoreError, MessageStoreError) as exc:
        release()
        raise StartError(EXIT_FAILURE, str(exc)) from None
    except StartError:
        release()
        raise
    log.info("users file %s: %d accounts", config.users_file, len(accounts))
    engines = Engines(accounts, store, facts=lambda: _file_facts(config), key=key)
    return Opened(Server(config, listeners, engines, control, metrics), release)


def _file_facts(config: ServerConfig) -> dict[str, Any]:
    """A server alone's storage, for `status` and the metrics."""
    counts = status.sqlite_counts(config.history_file) if config.keep_messages else (0, 0)
    return {
        "messages_stored": counts[0] if counts else None,
        "offline_queued": counts[1] if counts else None,
        "store_bytes": status.files_bytes(config.users_file, config.history_file),
        "nodes": 1,
    }


def open_cluster(config: ServerConfig, tls: ssl.SSLContext | None, cipher: Cipher) -> Opened:
    """A node of a cluster: accounts, history and presence in Redis, nothing on disk but
    the key file (the same on every node), so several nodes may share a data folder."""
    import redis  # only a node of a cluster loads Redis' client library

    from chat.server.cluster import keys
    from chat.server.cluster.accounts import RedisAccounts
    from chat.server.cluster.box import Box
    from chat.server.cluster.broker import RedisBroker
    from chat.server.cluster.link import Link
    from chat.server.cluster.messages import RedisIds, RedisMessageStore
    from chat.server.cluster.moderation import ClusterModeration
    from chat.server.cluster.presence import RedisPresence
    from chat.server.cluster.rooms import RedisRooms
    from chat.server.cluster.turns import RedisTurns
    from chat.server.cluster.url import ClusterError

    try:
        key = read_key(config.key_file)
        link = Link(config.cluster or "")
    except (KeyFileError, ClusterError) as exc:
        raise StartError(EXIT_USAGE, str(exc)) from None
    try:
        link.client.ping()
    except redis.RedisError as exc:
        raise StartError(
            EXIT_FAILURE, f"cluster {link.shown}: cannot reach redis ({_one_line(exc)})"
        ) from None
    listeners = listen(config, tls)
    metrics = bind_metrics(config, listeners)
    try:
        if key is None:
            config.key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            key, created = load_or_create_key(config.key_file)
            if created:
                log.info(
                    "created a new key file %s (mode 0600): every node of the cluster needs "
                    "this same file",
                    config.key_file,
                )
        else:
            _warn_if_loose(config.key_file, "key file")
        box = Box(key, cipher)
        node_id = secrets.token_hex(8)
        # Read when the node joins (RedisPresence.start runs `reload`).
        accounts = RedisAccounts(link, box, config.hash_cost, config.refuse_case_variants)
        lookups = Lookups(name="cluster-lookups")
        parts: list[Any] = [lookups]
        store: Store = NoStore()
        if config.keep_messages:
            ids = RedisIds(link)
            parts.append(ids)
            backend = RedisMessageStore(link, box, config.history_days * 86400)
            store = StoreService(backend, config.offline_max, ids=ids)
        moderation = ClusterModeration(link, box, node_id, accounts.forgot)
        turns = RedisTurns(link, box, cap=config.login_delay)
        presence = RedisPresence(
            link,
            box,
            node_id,
            control={
                keys.ACCOUNTS: lambda data: accounts.learned(data.decode()),
                keys.CONTROL: moderation.heard,
                keys.TURNS: turns.heard,
            },
            on_resync=[accounts.reload],
        )
        broker = RedisBroker(link, box, node_id)
        control: ControlServer | None = ControlServer(config.data_dir)
        try:
            config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            control.bind()  # type: ignore[union-attr]
        except (ControlError, OSError) as exc:  # nodes may share a folder: the first has it
            log.warning("%s; this node has no control socket", exc)
            control = None
        rooms = RedisRooms(link, box, node_id, broker, accounts.confirm)
    except (OSError, KeyFileError) as exc:
        for listener in listeners:
            listener.close()
        raise StartError(EXIT_FAILURE, str(exc)) from None
    except redis.RedisError as exc:
        for listener in listeners:
            listener.close()
        raise StartError(EXIT_FAILURE, f"cluster {link.shown}: {_one_line(exc)}") from None
    engines = Engines(
        accounts,
        store,
        presence,
        broker,
        CROSSING_DEADLINE,
        parts,
        f"node {node_id}",
        moderation,
        lambda: _redis_facts(link),
        lambda: link.up,
        rooms=rooms,
        key=key,
        lookups=lookups,
        turns=turns,
    )
    return Opened(Server(config, listeners, engines, control, metrics))


def _redis_facts(link: Any) -> dict[str, Any]:
    """A node's storage (Redis), for `status` and the metrics: None where it does not answer."""
    import redis

    from chat.server.cluster import keys

    facts: dict[str, Any] = {"messages_stored": None, "offline_queued": None}
    facts |= {"store_bytes": None, "nodes": None, "redis_rtt_seconds": None}
    try:
        started = time.monotonic()
        link.client.ping()
        facts["redis_rtt_seconds"] = time.monotonic() - started
        facts["nodes"] = int(link.client.zcard(keys.NODES))
        if link.cluster:  # every master's memory
            infos = link.client.info("memory", target_nodes=link.client.PRIMARIES)
            facts["store_bytes"] = sum(int(i["used_memory"]) for i in infos.values())
        else:
            facts["store_bytes"] = int(link.client.info("memory")["used_memory"])
    except (redis.RedisError, KeyError, ValueError):
        pass  # INFO is a @dangerous command an ACL user may not have: the rest stays
    facts["redis_up"] = int(link.up)
    facts["redis_outages"] = link.outages
    return facts


#: Seconds a node's `sent` may wait for Redis (the store and the other nodes): what has not
#: answered by then is not delivered, not queued (issue "1 of 6", item 6: within 1 s).
CROSSING_DEADLINE = 0.5


def _open_store(
    config: ServerConfig, key: bytes, cipher: Cipher, id_floor: int, users: UserStore
) -> Store:
    """The message store of a server alone (its pages checked), or nothing kept
    (`--no-history`). Each block of ids it reserves is copied into the users file before
    it is used, so that a lost message store never makes ids go back."""
    if not config.keep_messages:
        log.info("message store: off (--no-history): no history, nothing queued for offline users")
        return NoStore()
    started = time.monotonic()
    backend = MessageStore.open(config.history_file, key, cipher, config.history_days * 86400)
    store = StoreService(
        backend, config.offline_max, floor=id_floor, on_reserve=users.raise_id_mark
    )
    log.info(
        "message store %s: open in %.0f ms; next id %d; keeps %s, %d offline messages per user",
        config.history_file,
        (time.monotonic() - started) * 1000,
        store.ids.peek(),
        f"{config.history_days:g} days" if config.history_days else "for ever",
        config.offline_max,
    )
    return store


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _same_folder(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _warn_if_loose(path: Path, what: str) -> None:
    mode = loose_mode(path)
    if mode is not None:
        log.warning(
            "%s %s has mode %04o: group or others may read it; run: chmod 600 %s",
            what,
            path,
            mode,
            path,
        )


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and their IPv4-mapped forms; False for '', 0.0.0.0, ::."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _warn_if_exposed(listener: Listener) -> None:
    bound = str(listener.sock.getsockname()[0])
    if not is_loopback(bound):
        log.warning(
            "no TLS on %s, which is not a loopback address: passwords would cross the "
            "network in clear (give --tls-cert and --tls-key, or --host 127.0.0.1)",
            bound,
        )
