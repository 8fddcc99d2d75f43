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
import json
import logging
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from chat.server import app
from chat.server.cluster.url import ClusterError, redacted
from chat.server.crypto.cipher import CipherLoadError, load_cipher
from chat.server.crypto.keyfile import loose_mode
from chat.server.net.listeners import ListenError, parse_listen
from chat.server.net.tls import (
    DEFAULT_HOSTS,
    TLSConfigError,
    generate_self_signed,
    load_server_context,
)
from chat.server.ops import admin
from chat.server.ops.config import ServerConfig
from chat.server.ops.config_file import SettingsError, read_config_file
from chat.server.ops.logfile import install, open_handler
from chat.server.ops.reload import Reloader
from chat.server.ops.status import package_version
from chat.shared.framing import MAX_SERVER_FRAME
from chat.shared.messages import PASSWORD_MAX, valid_name

log = logging.getLogger("chat.server")

EXIT_USAGE = 2
EXIT_FAILURE = 1

USERS_FILE = app.USERS_FILE
KEY_FILE = app.KEY_FILE
HISTORY_FILE = app.HISTORY_FILE


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
    return package_version()


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


#: `--token-days` at least: one second (fractions of a day are fine: tests use seconds).
TOKEN_DAYS_MIN = 1 / 86400

#: `--registration`: who may make an account (protocol v1.2 section 8).
REGISTRATION_MODES = ("open", "closed", "invite")


def _host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9100` for IPv6) for `--metrics`; PORT 0 takes a free one."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r} (e.g. 127.0.0.1:9100)")
    return host, int(port)


def _listen_spec(text: str) -> Any:
    try:
        return parse_listen(text)
    except ListenError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the ones that are None (their help says what happens) and
    those of flags: `--no-history (default: True)` read as "no history by default", when
    True is the value of what the flag turns off."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is argparse.SUPPRESS or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    d = ServerConfig()
    p = _Parser(
        prog="chat-server",
        description=(
            "Multi-threaded epoll chat server (protocol v1.2; a client that asks for no v1.2 "
            "feature is served v1.1; see docs/protocol.md). "
            "'chat-server cert generate --help': a self-signed certificate for a first try. "
            "Operator commands, given the server's own options: chat-server user "
            "list|passwd|delete|ban|unban|kick NAME, invite create, status, backup --out FILE, "
            "restore --from FILE (docs/operations.md)."
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
        "--listen",
        action="append",
        type=_listen_spec,
        default=None,
        metavar="[HOST:]PORT[,tls]",
        help="listen here; repeat for several addresses, plain or TLS (',tls' needs "
        "--tls-cert and --tls-key); without it, --host and --port (TLS with --tls-cert)",
    )
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
        "--new-history-store",
        action="store_true",
        help="start a new, empty message store when --history-file is missing or empty but "
        "the users file has accounts (a lost store: its offline queues are gone); ids go on "
        "above every id given before (docs/operations.md)",
    )
    a(
        "--cluster",
        default=None,
        metavar="URL",
        help="join a cluster over Redis: redis://[user:password@]HOST:PORT/DB or rediss://..., "
        "or a Redis Cluster: redis+cluster://[user:password@]HOST:PORT[,HOST:PORT...] or "
        "rediss+cluster://... (every node with the same URL and key file is one server; "
        "docs/cluster.md)",
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
        help=(
            "threads that hash passwords and check login tokens, apart from the workers "
            "(default: one per core this process may run on, %(default)s here)"
        ),
    )
    a(
        "--hash-queue",
        type=_ranged(int, 1),
        default=d.hash_queue,
        metavar="N",
        help="logins that may wait for a hash thread",
    )
    a(
        "--min-password",
        type=_ranged(int, 1, PASSWORD_MAX),
        default=d.min_password,
        metavar="N",
        help="shortest password a registration may choose, in characters (bad_request "
        "below it; existing accounts still log in); 8 is a sound choice",
    )
    a(
        "--refuse-case-variants",
        action="store_true",
        help="refuse to register a name equal to an existing one ignoring case (Alice when "
        "alice exists: user_exists); names stay case-sensitive otherwise. Off unless given",
    )
    a(
        "--max-rooms-per-user",
        type=_ranged(int, 1),
        default=d.max_rooms_per_user,
        metavar="N",
        help="rooms one user may be in (create or join past it: not_allowed)",
    )
    a(
        "--max-room-members",
        type=_ranged(int, 1),
        default=d.max_room_members,
        metavar="N",
        help="members one room may have (a join past it: not_allowed)",
    )
    a(
        "--registration",
        choices=REGISTRATION_MODES,
        default=d.registration,
        help="who may register: open (anyone who reaches the port), closed (no one; the "
        "accounts there keep logging in), invite (with a code of 'chat-server invite create')",
    )
    a(
        "--metrics",
        type=_host_port,
        default=None,
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus text format) and /healthz over HTTP here, never on "
        "the chat port; off unless given (docs/operations.md, 'Metrics')",
    )
    a(
        "--token-days",
        type=_ranged(float, TOKEN_DAYS_MIN, 36500),
        default=d.token_days,
        metavar="DAYS",
        help="a login token (clients that ask for 'resume') is good this long after it was "
        "issued; a reload applies the new value to tokens already issued too",
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
    try:
        return read_settings(argv, parser)
    except SettingsError as exc:
        parser.error(str(exc))
        raise  # parser.error exits


def read_settings(
    argv: list[str], parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    """The command line over the config file over the defaults, checked; SettingsError
    (one line) otherwise. At start and at each reload (SIGHUP), with the same checks."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if args.config is not None:
        parser.set_defaults(**read_config_file(args.config, parser._actions))
        args = parser.parse_args(argv)
    problem = _check(args)
    if problem:
        raise SettingsError(problem)
    return args


def option_names() -> dict[str, str]:
    """dest -> the long option's name without its dashes (`keep_messages`: `no-history`)."""
    return {a.dest: a.option_strings[-1][2:] for a in build_parser()._actions if a.option_strings}


def _check(args: argparse.Namespace) -> str | None:
    minimum = min_max_frame()
    if args.max_frame < minimum:
        return (
            f"--max-frame {args.max_frame} is below {minimum}, the size of the shortest valid "
            "auth frame: no login could succeed"
        )
    plain_only = args.tls_cert is None
    for spec in args.listen or ():
        if spec.tls and plain_only:
            return f"--listen {spec}: a TLS listener needs --tls-cert and --tls-key"
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
        new_history_store=args.new_history_store,
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
        min_password=args.min_password,
        refuse_case_variants=args.refuse_case_variants,
        login_delay=args.login_delay,
        token_days=args.token_days,
        max_rooms_per_user=args.max_rooms_per_user,
        max_room_members=args.max_room_members,
        shutdown_grace=args.shutdown_grace,
        listen=tuple(args.listen or ()),
        registration=args.registration,
        metrics=args.metrics,
    )


def setup_logging(level: str, log_file: Path | None) -> None:
    install(open_handler(log_file), level)  # a file is reopened on SIGHUP (logfile.py)
    threading.excepthook = _thread_failed


def _thread_failed(args: threading.ExceptHookArgs) -> None:
    """A thread that dies of an exception nobody caught (every loop of the server catches
    its own: this is the last net) is said in the log, with its traceback, not on stderr."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    log.critical(
        "thread %s died", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
    )


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"chat-server: {message}\n")
    return code


def _usage(message: str) -> int:
    return _fail(EXIT_USAGE, f"error: {message}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["cert"]:
        return cert_main(argv[1:])
    if argv[:1] and argv[0] in admin.FIRST_WORDS:  # the operator's commands (ops/admin.py)
        return admin.main(argv)
    args = parse_args(argv)
    config = _config(args)
    # 1. What can be checked without creating anything. The TLS files and the cipher are
    # checked before the log starts: when the log is stderr, a bad certificate must be the
    # only line there (protocol v1.1 section 1).
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
    # 2. The composition root opens the files (or Redis), binds the ports, builds it all.
    try:
        opened = (app.open_cluster if config.cluster is not None else app.open_alone)(
            config, tls, cipher
        )
    except app.StartError as exc:
        return _fail(exc.code, exc.message)
    _warn_if_small_frames(config.max_frame)
    server = opened.server
    server.install_signal_handlers(_reloader(argv, args, tls))
    try:
        return server.run()
    except ClusterError as exc:
        return _fail(EXIT_FAILURE, str(exc))
    finally:
        opened.release()


def _reloader(argv: list[str], args: argparse.Namespace, tls: ssl.SSLContext | None) -> Reloader:
    """What SIGHUP runs: the settings read again as at start (ops/reload.py)."""
    return Reloader(argv, args, read_settings, _config, option_names(), tls)


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
    return app.is_loopback(address)


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


def _public(config: ServerConfig) -> dict[str, object]:
    """The configuration for the log: a cluster URL without its password."""
    from dataclasses import asdict

    shown = {k: v for k, v in asdict(config).items() if k != "backlog"}
    shown["host"] = config.host or "*"  # every interface, as "listening on" says
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
