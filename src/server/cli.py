"""`chat-server` command line: parse, check, set up logging, load secrets, run.

Exit codes: 2 and one line for a usage error (a bad option or config file,
TLS files that cannot be used, a key file that cannot be read); 1 and one
line for a start that cannot go on (a users file that cannot be opened, a
data folder in use by another server, a port that cannot be bound). A start
that fails creates nothing: the key and the users file are made only once
every check has passed and the port is bound (docs/operations.md).

`chat-server cert generate --out-dir DIR` writes a self-signed pair for a
first try with TLS.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import ipaddress
import json
import logging
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from chat.server.cipher import Cipher, CipherLoadError, load_cipher
from chat.shared.framing import MAX_SERVER_FRAME
from chat.shared.messages import PASSWORD_MAX, valid_name
from chat.shared.version import VERSION

from .cluster.url import ClusterError, redacted
from .config import ServerConfig
from .config_file import ConfigFileError, read_config_file
from .history import HistoryService, NoHistory
from .keyfile import KeyFileError, load_or_create_key, loose_mode, read_key
from .msgstore import MessageStore, MessageStoreError
from .server import ChatServer, ClusterParts, open_listener, raise_fd_limit
from .store import FolderLock, StoreError, UserStore
from .tls import DEFAULT_HOSTS, TLSConfigError, generate_self_signed, load_server_context

log = logging.getLogger("chat.server")

EXIT_USAGE = 2
EXIT_FAILURE = 1

USERS_FILE = "users.db"
KEY_FILE = "server.key"
HISTORY_FILE = "history.db"


def _longest_name() -> int:
    return max(n for n in range(1, 256) if valid_name("A" * n))


def min_max_frame() -> int:
    """The smallest --max-frame under which no login at all can succeed.

    The shortest valid auth: a one-character name and password. Below it
    every login fails (issue 8, defect 8); between it and `full_auth_frame()`
    short logins work, which small-frame tests rely on, and the start warns.
    """
    frame = {"type": "auth", "user": "A" * 1, "password": "p"}
    return len(json.dumps(frame, separators=(",", ":")).encode("ascii"))


def full_auth_frame() -> int:
    """The smallest --max-frame that every valid auth fits in.

    The largest auth frame: a name of the longest valid length, a password of
    PASSWORD_MAX code points each outside the BMP and written as an escaped
    surrogate pair (12 bytes, as Python's json.dumps does by default), and
    `"register": false`, with json.dumps' default spacing.
    """
    frame = {
        "type": "auth",
        "user": "A" * _longest_name(),
        "password": "\U0010ffff" * PASSWORD_MAX,
        "register": False,
    }
    return len(json.dumps(frame).encode("ascii"))


def version() -> str:
    try:
        return importlib.metadata.version("chat-epoll")
    except importlib.metadata.PackageNotFoundError:  # a frozen binary without metadata
        return VERSION


class _Ranged:
    """An argparse type: a number of `kind` within lo..hi (the config file reuses it)."""

    def __init__(self, kind: type, lo: float, hi: float | None = None) -> None:
        self.kind = kind
        self.lo = lo
        self.hi = hi

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        try:
            return self.check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    def check(self, value: Any) -> Any:
        value = self.kind(value)
        if value < self.lo or (self.hi is not None and value > self.hi):
            bounds = f"{self.lo}..{self.hi}" if self.hi is not None else f">= {self.lo}"
            raise ValueError(f"{value} is out of range ({bounds})")
        return value

    def __repr__(self) -> str:  # argparse names the type in some messages
        return self.kind.__name__


def _ranged(kind: type, lo: float, hi: float | None = None) -> _Ranged:
    return _Ranged(kind, lo, hi)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the ones that are None (their help says what happens)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    d = ServerConfig()
    p = _Parser(
        prog="chat-server",
        description=(
            "Multi-threaded epoll chat server (protocol v1.1; see docs/protocol.md). "
            "'chat-server cert generate --help': a self-signed certificate for a first try."
        ),
        formatter_class=_Help,
    )
    a = p.add_argument
    a("--version", action="version", version=f"chat-server {version()}")
    a(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML file with any of these options (keys without the dashes); the command line wins",
    )
    a("--host", default=d.host, help="address to listen on ('' = all interfaces)")
    a("--port", type=_ranged(int, 0, 65535), default=d.port, help="TCP port (0 = any free port)")
    a(
        "--threads",
        type=_ranged(int, 1, 256),
        default=d.threads,
        help="worker pool size (one runs a tick at a time: the GIL; docs/server.md)",
    )
    a(
        "--max-clients",
        type=_ranged(int, 1),
        default=d.max_clients,
        help="connections at once; the next one gets server_full",
    )
    a(
        "--epoll-timeout",
        type=_ranged(int, 0, 3_600_000),
        default=d.epoll_timeout_ms,
        metavar="MS",
        help="timeout of each epoll wait, in milliseconds",
    )
    a(
        "--max-events",
        type=_ranged(int, 1, 1_000_000),
        default=d.max_events,
        help="most events one epoll wait returns",
    )
    a(
        "--data-dir",
        type=Path,
        default=d.data_dir,
        metavar="DIR",
        help="folder of the key file and the users file (one server per folder: it is "
        "locked while the server runs)",
    )
    a(
        "--users-file",
        type=Path,
        default=None,
        help=f"encrypted user store (default: DATA_DIR/{USERS_FILE})",
    )
    a(
        "--key-file",
        type=Path,
        default=None,
        help="key for the users file (raw bytes, >= 16; created with 32 random bytes if "
        f"missing; default: DATA_DIR/{KEY_FILE})",
    )
    a(
        "--history-file",
        type=Path,
        default=None,
        help="encrypted message store: history and offline queues "
        f"(default: DATA_DIR/{HISTORY_FILE})",
    )
    a(
        "--history-days",
        type=_ranged(float, 0),
        default=d.history_days,
        metavar="DAYS",
        help="keep messages this long, in history and offline queues (0 = for ever)",
    )
    a(
        "--offline-max",
        type=_ranged(int, 1),
        default=d.offline_max,
        metavar="N",
        help="messages kept for one offline user; past it the oldest are dropped",
    )
    a(
        "--no-history",
        dest="keep_messages",
        action="store_false",
        help="keep no messages: no history, nothing queued for offline users "
        "(for benchmarks and ephemeral chat)",
    )
    a(
        "--cluster",
        default=None,
        metavar="URL",
        help="join a cluster over Redis: redis://[user:password@]HOST:PORT/DB or rediss://... "
        "(every node with the same URL and key file is one server; docs/cluster.md)",
    )
    a(
        "--cipher-lib",
        type=Path,
        default=None,
        help="cipher plugin (shared library with the chat_cipher.h ABI); default: bundled libxor",
    )
    a(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="PEM certificate chain: the port speaks TLS 1.2+ (needs --tls-key)",
    )
    a(
        "--tls-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="PEM private key of --tls-cert, unencrypted, mode 0600",
    )
    a(
        "--max-frame",
        type=_ranged(int, 1, MAX_SERVER_FRAME),
        default=d.max_frame,
        metavar="BYTES",
        help=f"largest frame accepted from a client (at least {min_max_frame()}, the shortest "
        f"valid auth; below {full_auth_frame()} long names and passwords cannot log in)",
    )
    a(
        "--ack-timeout",
        type=_ranged(float, 0.001),
        default=d.ack_timeout,
        metavar="SECONDS",
        help="close a connection that leaves a roster frame unacknowledged this long",
    )
    a(
        "--idle-timeout",
        type=_ranged(float, 0),
        default=d.idle_timeout,
        metavar="SECONDS",
        help="close a connection silent this long (0 = never); clients send ping to stay",
    )
    a(
        "--auth-timeout",
        type=_ranged(float, 0.001),
        default=d.auth_timeout,
        metavar="SECONDS",
        help="a login (TLS handshake included) must finish this long after the connect",
    )
    a(
        "--frame-timeout",
        type=_ranged(float, 0.001),
        default=d.frame_timeout,
        metavar="SECONDS",
        help="a frame whose header has arrived must be complete this long after",
    )
    a(
        "--max-outbuf",
        type=_ranged(int, 1024),
        default=d.max_outbuf,
        metavar="BYTES",
        help="per-connection send buffer; a client that lets it overflow is disconnected",
    )
    a(
        "--max-total-outbuf",
        type=_ranged(int, 1024),
        default=d.max_total_outbuf,
        metavar="BYTES",
        help="all send buffers together (at least --max-outbuf); past it the biggest go",
    )
    a(
        "--max-unauth-per-addr",
        type=_ranged(int, 0),
        default=d.max_unauth_per_addr,
        metavar="N",
        help="connections not logged in yet from one peer address (0 = no limit)",
    )
    a(
        "--rate-limit",
        type=_ranged(float, 0),
        default=d.rate_limit,
        metavar="PER_SECOND",
        help="sends per second per connection before rate_limited (0 = no limit)",
    )
    a(
        "--rate-burst",
        type=_ranged(int, 1),
        default=d.rate_burst,
        help="sends allowed in a burst above the rate",
    )
    a(
        "--hash-cost",
        type=_ranged(int, 10, 20),
        default=d.hash_cost,
        metavar="LOG2N",
        help="scrypt cost for new passwords, log2(N); accounts move to it at their next login",
    )
    a(
        "--hash-threads",
        type=_ranged(int, 1, 256),
        default=d.hash_threads,
        metavar="N",
        help="threads that hash passwords, apart from the workers",
    )
    a(
        "--hash-queue",
        type=_ranged(int, 1),
        default=d.hash_queue,
        metavar="N",
        help="logins that may wait for a hash thread",
    )
    a(
        "--login-delay",
        type=_ranged(float, 0, 3600),
        default=d.login_delay,
        metavar="SECONDS",
        help="past an account's free failed logins its password checks take turns, this "
        "far apart at most (from 0.25 s, doubling); 0 = no throttle (docs/operations.md)",
    )
    a(
        "--shutdown-grace",
        type=_ranged(float, 0),
        default=d.shutdown_grace,
        metavar="SECONDS",
        help="how long to flush goodbyes on stop",
    )
    a("--log-file", type=Path, default=None, help="log here instead of stderr")
    a(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DEBUG shows every epoll wait",
    )
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line over the config file over the defaults; exits 2 on any error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is not None:
        try:
            values = read_config_file(args.config, parser._actions)
        except ConfigFileError as exc:
            parser.error(str(exc))
        parser.set_defaults(**values)
        args = parser.parse_args(argv)
    problem = _check(args)
    if problem:
        parser.error(problem)
    return args


def _check(args: argparse.Namespace) -> str | None:
    minimum = min_max_frame()
    if args.max_frame < minimum:
        return (
            f"--max-frame {args.max_frame} is below {minimum}, the size of the shortest valid "
            "auth frame: no login could succeed"
        )
    if (args.tls_cert is None) != (args.tls_key is None):
        return "--tls-cert and --tls-key go together: give both, or neither for plain TCP"
    if args.max_total_outbuf < args.max_outbuf:
        return f"--max-total-outbuf {args.max_total_outbuf} is below --max-outbuf {args.max_outbuf}"
    return None


def _config(args: argparse.Namespace) -> ServerConfig:
    data_dir: Path = args.data_dir
    return ServerConfig(
        host=args.host,
        port=args.port,
        threads=args.threads,
        max_clients=args.max_clients,
        epoll_timeout_ms=args.epoll_timeout,
        max_events=args.max_events,
        data_dir=data_dir,
        users_file=args.users_file if args.users_file is not None else data_dir / USERS_FILE,
        key_file=args.key_file if args.key_file is not None else data_dir / KEY_FILE,
        history_file=args.history_file
        if args.history_file is not None
        else data_dir / HISTORY_FILE,
        history_days=args.history_days,
        offline_max=args.offline_max,
        keep_messages=args.keep_messages,
        cluster=args.cluster,
        cipher_lib=args.cipher_lib,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        max_frame=args.max_frame,
        ack_timeout=args.ack_timeout,
        idle_timeout=args.idle_timeout,
        auth_timeout=args.auth_timeout,
        frame_timeout=args.frame_timeout,
        max_outbuf=args.max_outbuf,
        max_total_outbuf=args.max_total_outbuf,
        max_unauth_per_addr=args.max_unauth_per_addr,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        hash_cost=args.hash_cost,
        hash_threads=args.hash_threads,
        hash_queue=args.hash_queue,
        login_delay=args.login_delay,
        shutdown_grace=args.shutdown_grace,
    )


def setup_logging(level: str, log_file: Path | None) -> None:
    handler: logging.Handler
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    )
    root = logging.getLogger("chat")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"chat-server: {message}\n")
    return code


def _usage(message: str) -> int:
    return _fail(EXIT_USAGE, f"error: {message}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["cert"]:
        return cert_main(argv[1:])
    args = parse_args(argv)
    config = _config(args)
    # 1. Everything that can be checked without creating anything. The TLS files and
    # the cipher are checked before the log starts: when the log is stderr, a bad
    # certificate must be the only line there (protocol v1.1 section 1).
    tls: ssl.SSLContext | None = None
    if config.tls_cert is not None and config.tls_key is not None:
        try:
            tls = load_server_context(config.tls_cert, config.tls_key)
        except TLSConfigError as exc:
            return _usage(str(exc))
    try:
        cipher = load_cipher(str(config.cipher_lib) if config.cipher_lib else None)
    except CipherLoadError as exc:
        return _usage(str(exc))
    try:
        setup_logging(args.log_level, args.log_file)
    except OSError as exc:
        return _usage(f"cannot open log file {args.log_file}: {exc.strerror}")
    log.info("starting: %s", ", ".join(f"{k}={v}" for k, v in _public(config).items()))
    if tls is not None and config.tls_key is not None:
        _warn_if_loose(config.tls_key, "TLS key")
        log.info("TLS with certificate %s", config.tls_cert)
    log.info("cipher %r from %s", cipher.name, cipher.path)
    if config.cluster is not None:
        return _main_cluster(config, tls, cipher)
    folder = config.users_file.parent
    lock: FolderLock | None = None
    if folder.exists():
        try:
            lock = FolderLock.acquire(folder)
        except StoreError as exc:
            return _fail(EXIT_FAILURE, str(exc))
    try:
        key = read_key(config.key_file)
    except KeyFileError as exc:
        return _usage(str(exc))
    # The message store may live in another folder: that one is locked too.
    history_folder = config.history_file.parent
    own_history_folder = config.keep_messages and not _same_folder(history_folder, folder)
    history_lock: FolderLock | None = None
    if own_history_folder and history_folder.exists():
        try:
            history_lock = FolderLock.acquire(history_folder)
        except StoreError as exc:
            return _fail(EXIT_FAILURE, str(exc))
    store: UserStore | None = None
    if key is not None:
        _warn_if_loose(config.key_file, "key file")
        try:
            store = UserStore.open(config.users_file, key, cipher, config.hash_cost)
            if config.keep_messages:
                MessageStore.check(config.history_file, key, cipher)
        except (StoreError, MessageStoreError) as exc:
            return _fail(EXIT_FAILURE, str(exc))
    else:
        for path, what in ((config.users_file, "the accounts"), (config.history_file, "it")):
            if path.exists() and (config.keep_messages or path == config.users_file):
                return _fail(
                    EXIT_FAILURE,
                    f"{path} exists but its key file {config.key_file} is missing: restore "
                    f"the key (without it {what} cannot be read)",
                )
    listener = _listen(config, tls)
    if isinstance(listener, int):
        return listener
    # 2. The checks passed and the port is ours: now files may be created.
    try:
        if lock is None:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = FolderLock.acquire(folder)
        if store is None:
            key, created = load_or_create_key(config.key_file)
            if created:
                log.info(
                    "created a new key file %s (mode 0600): keep it with the users file",
                    config.key_file,
                )
            store = UserStore.open(config.users_file, key, cipher, config.hash_cost)
        if own_history_folder and history_lock is None:
            history_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            history_lock = FolderLock.acquire(history_folder)
        keeper = _open_keeper(config, key, cipher)
    except (OSError, KeyFileError, StoreError, MessageStoreError) as exc:
        listener.close()
        text = f"{folder}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
        return _fail(EXIT_FAILURE, text)
    log.info("users file %s: %d accounts", config.users_file, len(store))
    server = ChatServer(config, store, listener, tls, keeper)
    server.install_signal_handlers()
    try:
        server.run()
    finally:
        lock.release()
        if history_lock is not None:
            history_lock.release()
    return 0


def _main_cluster(config: ServerConfig, tls: ssl.SSLContext | None, cipher: Cipher) -> int:
    """A node of a cluster: accounts, history and presence in Redis, nothing on disk but
    the key file (the same on every node), so several nodes may share a data folder."""
    import redis  # only a node of a cluster loads Redis' client library

    from .cluster.accounts import RedisAccounts
    from .cluster.box import Box
    from .cluster.link import Link
    from .cluster.messages import RedisIds, RedisMessageStore
    from .cluster.node import Outbound

    try:
        key = read_key(config.key_file)
        link = Link(config.cluster or "")
    except (KeyFileError, ClusterError) as exc:
        return _usage(str(exc))
    try:
        link.client.ping()
    except redis.RedisError as exc:
        return _fail(EXIT_FAILURE, f"cluster {link.shown}: cannot reach redis ({_one_line(exc)})")
    listener = _listen(config, tls)
    if isinstance(listener, int):
        return listener
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
        accounts = RedisAccounts(link, box, config.hash_cost)
        keeper: HistoryService | NoHistory = NoHistory()
        if config.keep_messages:
            store = RedisMessageStore(link, box, config.history_days * 86400)
            keeper = HistoryService(store, config.offline_max, ids=RedisIds(link))
        outbound = Outbound(link, box)
    except (OSError, KeyFileError) as exc:
        listener.close()
        return _fail(EXIT_FAILURE, str(exc))
    except redis.RedisError as exc:
        listener.close()
        return _fail(EXIT_FAILURE, f"cluster {link.shown}: {_one_line(exc)}")
    server = ChatServer(
        config, accounts, listener, tls, keeper, ClusterParts(link, box, accounts, outbound)
    )
    server.install_signal_handlers()
    try:
        server.run()
    except ClusterError as exc:
        return _fail(EXIT_FAILURE, str(exc))
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _same_folder(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _open_keeper(config: ServerConfig, key: bytes, cipher: Cipher) -> HistoryService | NoHistory:
    """The message store and its threads, or nothing kept (`--no-history`)."""
    if not config.keep_messages:
        log.info("message store: off (--no-history): no history, nothing queued for offline users")
        return NoHistory()
    started = time.monotonic()
    messages = MessageStore.open(config.history_file, key, cipher, config.history_days * 86400)
    keeper = HistoryService(messages, config.offline_max)
    log.info(
        "message store %s: open in %.0f ms; next id %d; keeps %s, %d offline messages per user",
        config.history_file,
        (time.monotonic() - started) * 1000,
        keeper.ids.peek(),
        f"{config.history_days:g} days" if config.history_days else "for ever",
        config.offline_max,
    )
    return keeper


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


def _listen(config: ServerConfig, tls: ssl.SSLContext | None) -> socket.socket | int:
    """The port, taken once every check has passed (a server alone and a node alike), and
    the warnings about what it exposes; an exit code when it cannot be had."""
    raise_fd_limit(config.max_clients)
    try:
        listener = open_listener(config.host, config.port, config.backlog)
    except OSError as exc:
        return _fail(
            EXIT_FAILURE,
            f"cannot listen on {config.host or '*'}:{config.port}: {exc.strerror or exc}",
        )
    if tls is None:
        _warn_if_exposed(listener)
    _warn_if_small_frames(config.max_frame)
    return listener


def _warn_if_small_frames(max_frame: int) -> None:
    full = full_auth_frame()
    if max_frame < full:
        log.warning(
            "--max-frame %d is below %d: an auth with a %d-character name and a "
            "%d-character password does not fit, so such logins fail with frame_too_large",
            max_frame,
            full,
            _longest_name(),
            PASSWORD_MAX,
        )


def _warn_if_exposed(listener: socket.socket) -> None:
    bound = str(listener.getsockname()[0])
    if not is_loopback(bound):
        log.warning(
            "no TLS on %s, which is not a loopback address: passwords would cross the "
            "network in clear (give --tls-cert and --tls-key, or --host 127.0.0.1)",
            bound,
        )


def _public(config: ServerConfig) -> dict[str, object]:
    """The configuration for the log: a cluster URL without its password."""
    from dataclasses import asdict

    shown = {k: v for k, v in asdict(config).items() if k != "backlog"}
    if config.cluster is not None:
        shown["cluster"] = redacted(config.cluster)
    return shown


# --------------------------------------------------------------------------
# chat-server cert generate
# --------------------------------------------------------------------------
def build_cert_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="chat-server cert",
        description="Certificates for --tls-cert / --tls-key.",
        formatter_class=_Help,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="generate")
    g = sub.add_parser(
        "generate",
        help="write a self-signed certificate and its key (0600) for a first try",
        description=(
            "Write DIR/cert.pem and DIR/key.pem (mode 0600), self-signed, with the openssl "
            "program. Clients must be told to trust it (chat-client --tls --tls-ca "
            "DIR/cert.pem); for a public server use a certificate from a CA."
        ),
        formatter_class=_Help,
    )
    g.error = p.error  # type: ignore[method-assign]  # one line, exit 2
    g.add_argument("--out-dir", type=Path, required=True, metavar="DIR", help="where to write")
    g.add_argument(
        "--host",
        action="append",
        default=None,
        metavar="NAME",
        help="a DNS name or IP address the certificate is for; repeat for several "
        f"(default: {', '.join(DEFAULT_HOSTS)})",
    )
    g.add_argument("--days", type=_ranged(int, 1, 36500), default=365, help="validity")
    g.add_argument("--force", action="store_true", help="replace existing files")
    return p


def cert_main(argv: list[str]) -> int:
    args = build_cert_parser().parse_args(argv)
    hosts = args.host or list(DEFAULT_HOSTS)
    try:
        cert, key = generate_self_signed(args.out_dir, hosts, args.days, force=args.force)
    except TLSConfigError as exc:
        return _fail(EXIT_FAILURE, f"error: {exc}")
    with contextlib.suppress(BrokenPipeError):
        print(f"wrote {cert} and {key} (mode 0600), valid {args.days} days for {', '.join(hosts)}")
        print(f"server:  chat-server --tls-cert {cert} --tls-key {key} ...")
        print(f"clients: chat-client --tls --tls-ca {cert} --host {hosts[0]} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
