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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chat.shared.messages import BROADCAST, INVITE_MAX, PASSWORD_MAX, valid_name
from chat.shared.rooms import valid_room
from chat.shared.version import VERSION

from . import config as cfg
from .account import PASSWD_FORMAT, AccountError, fetch_token, read_passwd_input, run_passwd
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
        "else (no token saved there) it is asked for without echo. Defaults come from the "
        f"config file ({cfg.default_path()}); the command line wins. See docs/client.md.",
    )
    parser.add_argument("--host", help=f"server address (default: {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, help=f"server port (default: {DEFAULT_PORT})")
    parser.add_argument("--user", help="user name (the TUI asks when it is missing)")
    parser.add_argument("--password", help=f"password (prefer ${PASSWORD_ENV}: argv is visible)")
    parser.add_argument("--register", action="store_true", help="create the account, then log in")
    parser.add_argument(
        "--invite",
        metavar="CODE",
        help="with --register: the invite code the server's operator gave you (a server "
        "started with --registration invite)",
    )
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
        "(mode 0600), then exit; the password only with --save-password, a login token "
        "instead with --save-token",
    )
    parser.add_argument(
        "--save-password",
        action="store_true",
        help="with --save-config: store the password in the config file too (readable by "
        "anyone who can read your files as you)",
    )
    parser.add_argument(
        "--save-token",
        action="store_true",
        help="with --save-config: log in once and store a login token instead of the "
        "password (the server's 'resume', protocol v1.2): it logs in without the password, "
        "for --token-days on the server (renewed at each login), and stops working when "
        "the password is changed",
    )
    parser.add_argument(
        "--passwd",
        action="store_true",
        help=f"change the password, reading {PASSWD_FORMAT}; then exit",
    )
    parser.add_argument(
        "--logout-others",
        action="store_true",
        help="with --passwd: also log out every other session of the account",
    )
    parser.add_argument("--log-file", help="write a debug log here (never passwords or tokens)")
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
    # A saved token is the config user's: it logs in only as that user.
    args.config_token = conf.token if conf.user is not None and conf.user == args.user else None
    args.config_file = conf.path
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
    if args.save_password and args.save_token:
        raise UsageError("--save-password or --save-token: one of them (a token replaces it)")
    saving = (("--save-password", args.save_password), ("--save-token", args.save_token))
    for option, given in saving:
        if given and not args.save_config:
            raise UsageError(f"{option} only goes with --save-config")
    if args.invite is not None:
        if not args.register:
            raise UsageError("--invite only goes with --register")
        if not 1 <= len(args.invite) <= INVITE_MAX:
            raise UsageError(f"--invite must be 1..{INVITE_MAX} characters")
    if args.logout_others and not args.passwd:
        raise UsageError("--logout-others only goes with --passwd")
    if args.passwd:
        if args.password is not None:
            raise UsageError(f"--passwd reads both passwords from stdin ({PASSWD_FORMAT})")
        if args.register or args.history is not None or args.join or args.save_config:
            raise UsageError("--passwd goes alone (with --user, the server and --json)")


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
    """--save-config: the connection options into the config file (0600), then exit.
    With --save-token: a token from one login, instead of the password (taken out of the
    file if it was there: the token is what logs in now)."""
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
    drop: tuple[str, ...] = ()
    if args.save_token:
        if not args.user:
            raise UsageError("--save-token needs --user (and the password)")
        password = known_password(args) or ask_password(args.user)
        try:
            token = fetch_token(
                args.host,
                args.port,
                args.user,
                password,
                register=args.register,
                invite=args.invite,
                tls=tls_context(args),
            )
        except AccountError as exc:
            print(f"chat-client: no token saved: {exc}", file=sys.stderr)
            return exc.code
        values["token"], drop = token, ("password",)
    try:
        cfg.save(path, values, drop)
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


def saved_token_keeper(path: Path | None) -> Callable[[str], None] | None:
    """What replaces the token saved in the config file by each new one the server gives
    (so a client used within --token-days never needs the password); called on the
    network thread. A file that cannot be written keeps its token, said in the log
    (never the token itself)."""
    if path is None:
        return None

    def keep(token: str) -> None:
        try:
            cfg.save(path, {"token": token})
        except (OSError, cfg.ConfigError) as exc:
            logging.getLogger("chat.client").warning("token not saved to %s: %s", path, exc)

    return keep


def saved_token(args: argparse.Namespace) -> str | None:
    """The config file's token when it logs this user in (never to register)."""
    return None if args.register or not args.user else args.config_token


def session_for(args: argparse.Namespace) -> Session:
    """The session of the command line's login: the password given (kept as the fallback
    of a refused token: it is in the environment, argv or the file anyway), else the
    config file's token, else the password asked for (forgotten once the server gives a
    token: it then exists nowhere)."""
    password = known_password(args)
    token = saved_token(args)
    keeper = saved_token_keeper(args.config_file) if token is not None else None
    if password is None and token is None:
        password = ask_password(args.user)
        return Session(args.user, password, args.register, forget_password=True, invite=args.invite)
    return Session(
        args.user, password, args.register, token=token, on_token=keeper, invite=args.invite
    )


def line_mode(args: argparse.Namespace, tls: ssl.SSLContext | None) -> int:
    if not args.user:
        raise UsageError("line mode needs --user")
    if args.passwd:
        return passwd_mode(args, tls)
    session = session_for(args)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(encoding="utf-8", errors="replace", line_buffering=True)  # type: ignore[union-attr]
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


def passwd_mode(args: argparse.Namespace, tls: ssl.SSLContext | None) -> int:
    """--passwd: both passwords from stdin (never argv), one login, the change, exit."""
    try:
        old, new = read_passwd_input(sys.stdin.buffer.read(2 * PASSWORD_MAX * 4 + 8))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(encoding="utf-8", errors="replace", line_buffering=True)  # type: ignore[union-attr]
    return run_passwd(
        args.host,
        args.port,
        args.user,
        old,
        new,
        logout_others=args.logout_others,
        use_json=args.json,
        tls=tls,
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
        invite=args.invite,
        token=saved_token(args),
        keep_token=saved_token_keeper(args.config_file) if saved_token(args) else None,
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
        if args.save_config:
            return save_config(args)
        tls = tls_context(args)
        setup_logging(args.log_file)
        if args.no_tui or args.json or args.history is not None or args.passwd:
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
