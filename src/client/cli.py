"""`chat-client`: command line and config file, password lookup, then the TUI or line mode.

Every failure a person can cause (bad option, unknown host, refused
connection, wrong password, a bad config file) ends in one line on stderr
and a non-zero exit code, never a traceback. The command line wins over the
config file (`config.py`), which wins over the built-in defaults.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.metadata
import logging
import os
import ssl
import sys
from pathlib import Path
from typing import Any

from chat.shared.messages import BROADCAST, PASSWORD_MAX, valid_name
from chat.shared.rooms import valid_room
from chat.shared.version import VERSION

from . import config as cfg
from .lineformat import fatal
from .linehistory import run_history
from .linemode import EXIT_INTERRUPTED, run_line_mode
from .session import Session
from .tls import TlsSetupError, client_context

PASSWORD_ENV = "CHAT_PASSWORD"
EXIT_USAGE = 2
DISTRIBUTION = "chat-epoll"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7777


class UsageError(Exception):
    """A bad command line, reported in one line with exit code 2."""


def client_version() -> str:
    """The installed distribution's version, or the bundled constant in a one-file binary."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return VERSION


class _TlsSwitch(argparse.BooleanOptionalAction):
    """`--tls`/`--no-tls` that notes both on one command line (refused by `apply_config`
    rather than letting the last one silently win)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        before = getattr(namespace, self.dest)
        super().__call__(parser, namespace, values, option)
        if before is not None and before != getattr(namespace, self.dest):
            namespace.tls_both = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat-client",
        description="Chat client: a full-screen TUI, or line mode (--no-tui) for scripts. "
        "With --user and a password the TUI logs in (--register: registers) at start.",
        epilog=f"The password comes from --password, else ${PASSWORD_ENV}, else the config file, "
        "else it is asked for without echo. Defaults come from the config file "
        f"({cfg.default_path()}); the command line wins. See docs/client.md.",
    )
    parser.add_argument("--host", help=f"server address (default: {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, help=f"server port (default: {DEFAULT_PORT})")
    parser.add_argument("--user", help="user name (the TUI asks when it is missing)")
    parser.add_argument("--password", help=f"password (prefer ${PASSWORD_ENV}: argv is visible)")
    parser.add_argument("--register", action="store_true", help="create the account, then log in")
    parser.add_argument(
        "--no-tui",
        action="store_true",
        help="line mode: stdin lines are sent, events printed one per line",
    )
    parser.add_argument(
        "--json", action="store_true", help="line mode with JSON lines on stdout (implies --no-tui)"
    )
    parser.add_argument(
        "--history",
        type=int,
        metavar="N",
        help='print the last N messages of "*" (or of --with NAME), oldest first, then leave '
        "(implies --no-tui; stdin is not read)",
    )
    parser.add_argument(
        "--with",
        dest="peer",
        metavar="NAME",
        help='the conversation --history prints: a user name, a room (#name), or "*" for '
        "everyone (default)",
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="line mode: when the connection is lost, connect again (backoff 0.5 s to 15 s) "
        "instead of exiting 4",
    )
    parser.add_argument(
        "--join",
        action="append",
        metavar="ROOM",
        help="join this room (#name) at login, before any line is sent; line mode creates "
        "it when it does not exist, the TUI asks first; may be given several times",
    )
    parser.add_argument(
        "--tls",
        action=_TlsSwitch,
        help="connect with TLS; the server's certificate and host name (--host) are verified "
        "against the system's trust store (--no-tls: plain TCP, whatever the config file says)",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="trust this certificate or CA bundle (PEM) instead of the system's store "
        "(implies --tls)",
    )
    parser.add_argument(
        "--bell",
        action=argparse.BooleanOptionalAction,
        help="TUI: ring the terminal bell on a private message or a mention (default: on)",
    )
    parser.add_argument(
        "--colour",
        "--color",
        dest="colour",
        action=argparse.BooleanOptionalAction,
        help="TUI: colours (default: on, unless $NO_COLOR is set)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"the config file (default: {cfg.default_path()}, used when it exists)",
    )
    parser.add_argument(
        "--save-config",
        action="store_true",
        help="write host, port, user and the TLS and bell options given into the config file "
        "(mode 0600), then exit; the password only with --save-password",
    )
    parser.add_argument(
        "--save-password",
        action="store_true",
        help="with --save-config: store the password in the config file too (readable by "
        "anyone who can read your files as you)",
    )
    parser.add_argument("--log-file", help="write a debug log here (never passwords)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {client_version()}")
    return parser


def apply_config(
    args: argparse.Namespace, environ: dict[str, str] | None = None
) -> cfg.ClientConfig:
    """Fill what the command line left out from the config file, then the defaults."""
    env = dict(os.environ) if environ is None else environ
    try:
        if args.config:
            conf = cfg.load(Path(args.config), required=True)
        else:
            conf = cfg.load(cfg.default_path(env))
    except cfg.ConfigError as exc:
        raise UsageError(str(exc)) from None
    args.host = args.host or conf.host or DEFAULT_HOST
    args.port = args.port if args.port is not None else conf.port or DEFAULT_PORT
    args.user = args.user or conf.user
    if getattr(args, "tls_both", False) or (args.tls is False and args.tls_ca is not None):
        raise UsageError("--no-tls contradicts --tls and --tls-ca: give one or the other")
    if args.tls is False and args.tls_ca is None:  # --no-tls: plain TCP whatever the file says
        args.tls_ca = None
    else:
        args.tls_ca = args.tls_ca or conf.tls_ca
        args.tls = bool(args.tls or conf.tls or args.tls_ca)
    args.bell = args.bell if args.bell is not None else conf.bell is not False
    if args.colour is None:
        args.colour = conf.colours is not False and not env.get("NO_COLOR")
    args.config_password = conf.password
    args.palette = dict(conf.palette)
    return conf


def check_args(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be 1..65535, not {args.port}")
    if args.user is not None and not valid_name(args.user):
        raise UsageError(
            f"--user {args.user!r} is not a valid user name "
            "(letters, digits, '_', '.', '-'; 1-32; starts with a letter or digit)"
        )
    if args.password is not None and not 1 <= len(args.password) <= PASSWORD_MAX:
        raise UsageError(f"--password must be 1..{PASSWORD_MAX} characters")
    if args.history is not None and args.history < 1:
        raise UsageError(f"--history must be at least 1, not {args.history}")
    if args.peer is not None:
        if args.history is None:
            raise UsageError("--with only goes with --history N")
        if args.peer != BROADCAST and not valid_name(args.peer) and not valid_room(args.peer):
            raise UsageError(f'--with {args.peer!r} is not a user name (nor a #room, nor "*")')
    for room in args.join or ():
        if not valid_room(room):
            raise UsageError(f"--join {room!r} is not a room name (# then a user name)")
    if args.join and args.history is not None:
        raise UsageError("--join does not go with --history (a query reads, it joins nothing)")


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The verifying context for --tls / --tls-ca, None for plain TCP."""
    if not (args.tls or args.tls_ca):
        return None
    try:
        return client_context(args.tls_ca)
    except TlsSetupError as exc:
        raise UsageError(str(exc)) from None


def known_password(args: argparse.Namespace) -> str | None:
    """--password, else $CHAT_PASSWORD, else the config file's; None when none is set."""
    if args.password:
        return str(args.password)
    return os.environ.get(PASSWORD_ENV) or getattr(args, "config_password", None) or None


def save_config(args: argparse.Namespace) -> int:
    """--save-config: the connection options into the config file (0600), then exit."""
    path = Path(args.config) if args.config else cfg.default_path()
    values: dict[str, object] = {"host": args.host, "port": args.port, "user": args.user}
    if args.tls_ca:
        values["tls-ca"] = args.tls_ca
    elif args.tls:
        values["tls"] = True
    values["bell"] = args.bell
    if args.save_password:
        password = known_password(args)
        if password is None:
            if not args.user:
                raise UsageError("--save-password needs --user (and the password)")
            password = ask_password(args.user)
        values["password"] = password
    try:
        cfg.save(path, values)
    except (OSError, cfg.ConfigError) as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None
    saved = ", ".join(k for k, v in values.items() if v is not None)
    print(f"chat-client: saved {saved} to {path} (mode 0600)")
    return 0


def ask_password(user: str) -> str:
    """Ask on the controlling terminal without echo; stdin may be the message stream."""
    try:
        with open("/dev/tty", "r+b", buffering=0):
            pass
    except OSError:
        raise UsageError(
            f"no password: use --password or ${PASSWORD_ENV} (there is no terminal to ask on)"
        ) from None
    password = getpass.getpass(f"Password for {user}: ")
    if not 1 <= len(password) <= PASSWORD_MAX:
        raise UsageError(f"the password must be 1..{PASSWORD_MAX} characters")
    return password


def setup_logging(path: str | None) -> None:
    if not path:
        logging.getLogger("chat.client").addHandler(logging.NullHandler())
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(levelname)s %(message)s"))
    root = logging.getLogger("chat.client")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def line_mode(args: argparse.Namespace, tls: ssl.SSLContext | None) -> int:
    if not args.user:
        raise UsageError("line mode needs --user")
    password = known_password(args) or ask_password(args.user)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(encoding="utf-8", errors="replace", line_buffering=True)  # type: ignore[union-attr]
    session = Session(args.user, password, args.register)
    if args.history is not None:
        peer = args.peer or BROADCAST
        return run_history(
            args.host, args.port, session, args.history, peer, use_json=args.json, tls=tls
        )
    return run_line_mode(
        args.host,
        args.port,
        session,
        use_json=args.json,
        tls=tls,
        reconnect=args.reconnect,
        join=args.join,
    )


def tui_mode(args: argparse.Namespace, tls: ssl.SSLContext | None) -> int:
    from .terminal import prepare_terminal, tty_problem
    from .tui import TuiOptions, run_tui

    prepare_terminal()  # bundled terminfo and a UTF-8 locale, before setupterm looks
    problem = tty_problem()
    if problem is not None:
        print(f"chat-client: {problem}", file=sys.stderr)
        return 1
    options = TuiOptions(
        args.host,
        args.port,
        args.user or "",
        known_password(args) or "",
        args.register,
        tls,
        bell=args.bell,
        colours=args.colour,
        palette=args.palette,
        join=tuple(args.join or ()),
    )
    return run_tui(options)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        apply_config(args)
        check_args(args)
        if args.save_password and not args.save_config:
            raise UsageError("--save-password only goes with --save-config")
        if args.save_config:
            return save_config(args)
        tls = tls_context(args)
        setup_logging(args.log_file)
        if args.no_tui or args.json or args.history is not None:
            return line_mode(args, tls)
        return tui_mode(args, tls)
    except UsageError as exc:
        print(f"chat-client: {exc}", file=sys.stderr)
        if getattr(args, "json", False):  # a script reading only the JSON stream learns it
            print(fatal(str(exc), EXIT_USAGE), flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as exc:  # e.g. an unwritable --log-file
        print(
            f"chat-client: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
