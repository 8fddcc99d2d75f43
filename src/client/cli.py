"""`chat-client`: command line, password lookup, then the TUI or line mode.

Every failure a person can cause (bad option, unknown host, refused
connection, wrong password) ends in one line on stderr and a non-zero exit
code, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.metadata
import logging
import os
import ssl
import sys

from chat.shared.messages import BROADCAST, PASSWORD_MAX, valid_name
from chat.shared.version import VERSION

from .linehistory import run_history
from .linemode import EXIT_INTERRUPTED, run_line_mode
from .session import Session
from .tls import TlsSetupError, client_context

PASSWORD_ENV = "CHAT_PASSWORD"
EXIT_USAGE = 2
DISTRIBUTION = "chat-epoll"


class UsageError(Exception):
    """A bad command line, reported in one line with exit code 2."""


def client_version() -> str:
    """The installed distribution's version, or the bundled constant in a one-file binary."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return VERSION


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat-client",
        description="Chat client: a full-screen TUI, or line mode (--no-tui) for scripts.",
        epilog=f"The password comes from --password, else ${PASSWORD_ENV}, else it is asked "
        "for without echo. See docs/client.md.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=7777, help="server port (default: %(default)s)")
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
        help='the conversation --history prints: a user name, or "*" for everyone (default)',
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="connect with TLS; the server's certificate and host name (--host) are verified "
        "against the system's trust store",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="trust this certificate or CA bundle (PEM) instead of the system's store "
        "(implies --tls)",
    )
    parser.add_argument("--log-file", help="write a debug log here (never passwords)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {client_version()}")
    return parser


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
        if args.peer != BROADCAST and not valid_name(args.peer):
            raise UsageError(f'--with {args.peer!r} is not a user name (nor "*")')


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The verifying context for --tls / --tls-ca, None for plain TCP."""
    if not (args.tls or args.tls_ca):
        return None
    try:
        return client_context(args.tls_ca)
    except TlsSetupError as exc:
        raise UsageError(str(exc)) from None


def known_password(args: argparse.Namespace) -> str | None:
    """--password, else $CHAT_PASSWORD; None when neither is set."""
    if args.password:
        return str(args.password)
    return os.environ.get(PASSWORD_ENV) or None


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
    return run_line_mode(args.host, args.port, session, use_json=args.json, tls=tls)


def tui_mode(args: argparse.Namespace, tls: ssl.SSLContext | None) -> int:
    from .terminal import prepare_terminal, tty_problem
    from .tui import TuiOptions, run_tui

    prepare_terminal()  # bundled terminfo and a UTF-8 locale, before setupterm looks
    problem = tty_problem()
    if problem is not None:
        print(f"chat-client: {problem}", file=sys.stderr)
        return 1
    options = TuiOptions(
        args.host, args.port, args.user or "", known_password(args) or "", args.register, tls
    )
    return run_tui(options)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        tls = tls_context(args)
        setup_logging(args.log_file)
        if args.no_tui or args.json or args.history is not None:
            return line_mode(args, tls)
        return tui_mode(args, tls)
    except UsageError as exc:
        print(f"chat-client: {exc}", file=sys.stderr)
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
