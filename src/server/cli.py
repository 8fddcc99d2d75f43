"""`chat-server` command line: parse, check, set up logging, load secrets, run.

Usage errors exit with 2 and one line; a users file that cannot be opened
(wrong key, damaged) exits with 1 and one line, leaving the file untouched.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from chat.shared.cipher import CipherLoadError, load_cipher
from chat.shared.framing import MAX_SERVER_FRAME

from .config import ServerConfig
from .keyfile import KeyFileError, load_or_create_key
from .server import ChatServer, open_listener, raise_fd_limit
from .store import StoreError, UserStore

log = logging.getLogger("chat.server")

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _ranged(kind: type, lo: float, hi: float | None = None):  # type: ignore[no-untyped-def]
    def parse(text: str):  # type: ignore[no-untyped-def]
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"{value} is out of range ({bounds})")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"chat-server: error: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    d = ServerConfig()
    p = _Parser(
        prog="chat-server",
        description="Multi-threaded epoll chat server (protocol v1; see docs/protocol.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = p.add_argument
    a("--host", default=d.host, help="address to listen on ('' = all interfaces)")
    a("--port", type=_ranged(int, 0, 65535), default=d.port, help="TCP port (0 = any free port)")
    a("--threads", type=_ranged(int, 1, 256), default=d.threads, help="worker pool size")
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
    a("--users-file", type=Path, default=d.users_file, help="encrypted user store")
    a(
        "--key-file",
        type=Path,
        default=d.key_file,
        help="key for the users file (raw bytes, >= 16; created with 32 random bytes if missing)",
    )
    a(
        "--cipher-lib",
        type=Path,
        default=None,
        help="cipher plugin (shared library with the chat_cipher.h ABI); default: bundled libxor",
    )
    a(
        "--max-frame",
        type=_ranged(int, 1, MAX_SERVER_FRAME),
        default=d.max_frame,
        metavar="BYTES",
        help="largest frame accepted from a client",
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
        "--max-outbuf",
        type=_ranged(int, 1024),
        default=d.max_outbuf,
        metavar="BYTES",
        help="per-connection send buffer; a client that lets it overflow is disconnected",
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
        help="scrypt cost for new passwords, log2(N); lower only for tests",
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


def _config(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        threads=args.threads,
        max_clients=args.max_clients,
        epoll_timeout_ms=args.epoll_timeout,
        max_events=args.max_events,
        users_file=args.users_file,
        key_file=args.key_file,
        cipher_lib=args.cipher_lib,
        max_frame=args.max_frame,
        ack_timeout=args.ack_timeout,
        idle_timeout=args.idle_timeout,
        max_outbuf=args.max_outbuf,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        hash_cost=args.hash_cost,
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = _config(args)
    try:
        setup_logging(args.log_level, args.log_file)
    except OSError as exc:
        return _fail(EXIT_USAGE, f"cannot open log file {args.log_file}: {exc.strerror}")
    log.info("starting: %s", ", ".join(f"{k}={v}" for k, v in _public(config).items()))
    try:
        key, created = load_or_create_key(config.key_file)
    except KeyFileError as exc:
        return _fail(EXIT_USAGE, str(exc))
    if created:
        log.info(
            "created a new key file %s (mode 0600): keep it with the users file", config.key_file
        )
    try:
        cipher = load_cipher(str(config.cipher_lib) if config.cipher_lib else None)
    except CipherLoadError as exc:
        return _fail(EXIT_USAGE, str(exc))
    log.info("cipher %r from %s", cipher.name, cipher.path)
    try:
        store = UserStore.open(config.users_file, key, cipher, config.hash_cost)
    except StoreError as exc:
        return _fail(EXIT_FAILURE, str(exc))
    log.info("users file %s: %d accounts", config.users_file, len(store))
    raise_fd_limit(config.max_clients)
    try:
        listener = open_listener(config.host, config.port, config.backlog)
    except OSError as exc:
        return _fail(
            EXIT_FAILURE,
            f"cannot listen on {config.host or '*'}:{config.port}: {exc.strerror or exc}",
        )
    server = ChatServer(config, store, listener, None)
    server.install_signal_handlers()
    server.run()
    return 0


def _public(config: ServerConfig) -> dict[str, object]:
    from dataclasses import asdict

    return {k: v for k, v in asdict(config).items() if k != "backlog"}


if __name__ == "__main__":
    sys.exit(main())
