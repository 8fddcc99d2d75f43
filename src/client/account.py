"""One's own account from the command line (protocol v1.2 sections 6 and 7): a login
token for `--save-config --save-token`, and `--passwd`.

Both are one short session, not a chat: log in, ask, take the answer, say
`bye`. Neither prints nor logs a password or a token: the token goes to the
config file (0600) and nowhere else.

`--passwd` reads its two passwords from stdin, so that they are in neither
`ps` nor the shell's history: exactly two lines, the old password then the new
one (each line ends at its newline, which is not part of the password; a
`\\r` before it is dropped too; nothing else is trimmed: spaces count).
"""

from __future__ import annotations

import queue
import ssl
import sys
from dataclasses import dataclass
from typing import TextIO

from chat.shared.messages import PASSWORD_MAX
from chat.shared.requests import Passwd

from . import events as ev
from .linemode import EXIT_CONNECT, EXIT_LOGIN, EXIT_LOST, Printer
from .net import NetworkClient
from .session import Session

#: The format `--passwd` reads, as --help and docs/client.md say it.
PASSWD_FORMAT = "two lines on stdin: the old password, then the new one"
#: `RequestFailed.message` of a request whose connection died before its answer.
LOST = "connection lost"
#: How long one of these short sessions may take (a login, one request) before giving up.
WAIT = 60.0


class AccountError(Exception):
    """The session could not do what was asked; `code` is the exit code (line mode's)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def read_passwd_input(data: bytes) -> tuple[str, str]:
    """(old, new) from what stdin held; ValueError in one line for anything else."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("--passwd: stdin is not UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the last line's newline
    if len(lines) != 2:
        raise ValueError(f"--passwd reads {PASSWD_FORMAT} (got {len(lines)} lines)")
    old, new = (line.removesuffix("\r") for line in lines)
    for what, password in (("old", old), ("new", new)):
        if not 1 <= len(password) <= PASSWORD_MAX:
            raise ValueError(f"--passwd: the {what} password must be 1..{PASSWORD_MAX} characters")
    return old, new


@dataclass
class _Short:
    """One short session on its own network thread; events come back on a FIFO queue."""

    host: str
    port: int
    session: Session
    tls: ssl.SSLContext | None

    def __post_init__(self) -> None:
        self.inbox: queue.Queue[ev.NetEvent] = queue.Queue()
        self.net = NetworkClient(self.host, self.port, self.session, self.inbox.put, tls=self.tls)

    def next(self) -> ev.NetEvent:
        """The next event; an ending one (no login, the connection gone) raises."""
        try:
            event = self.inbox.get(timeout=WAIT)
        except queue.Empty:
            raise AccountError("no answer from the server in time", EXIT_LOST) from None
        match event:
            case ev.LoginFailed(code, message, register):
                what = "registration" if register else "login"
                raise AccountError(f"{what} refused: {message} ({code})", EXIT_LOGIN)
            case ev.ConnectFailed(reason) | ev.Disconnected(reason) | ev.Stopped(reason):
                logged_in = self.session.ever_logged_in
                raise AccountError(reason, EXIT_LOST if logged_in else EXIT_CONNECT)
        return event


def fetch_token(
    host: str,
    port: int,
    user: str,
    password: str,
    *,
    register: bool = False,
    invite: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> str:
    """Log in once (asking `resume`) and return the token of the `auth_ok`."""
    short = _Short(host, port, Session(user, password, register, invite=invite), tls)
    short.net.start()
    try:
        while not isinstance(short.next(), ev.LoggedIn):
            pass
        token = short.session.token
    finally:
        short.net.close()
    if token is None:
        raise AccountError(
            f"{host}:{port} gave no login token (it does not offer 'resume', protocol v1.2)",
            EXIT_LOGIN,
        )
    return token


def run_passwd(
    host: str,
    port: int,
    user: str,
    old: str,
    new: str,
    *,
    logout_others: bool = False,
    use_json: bool = False,
    tls: ssl.SSLContext | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`--passwd`: log in with the old password, change it, say so; line mode's exit codes
    (0 changed, 1 cannot connect, 3 login or change refused, 4 connection lost)."""
    printer = Printer(user, out or sys.stdout, err or sys.stderr, use_json)
    session = Session(user, old)
    short = _Short(host, port, session, tls)
    short.net.request(Passwd("passwd1", old, new, logout_others))  # goes right after the login
    short.net.start()
    try:
        while True:
            event = short.next()
            match event:
                case ev.RequestDone(_, "passwd"):
                    printer.emit(event)
                    return 0
                case ev.RequestFailed(_, "passwd", None, message) if message == LOST:
                    raise AccountError(
                        "the connection was lost before the answer: the password may or may "
                        "not have changed (try to log in with the new one)",
                        EXIT_LOST,
                    )
                case ev.RequestFailed(_, "passwd", code, message):
                    raise AccountError(
                        f"password not changed: {message} ({code or 'not sent'})", EXIT_LOGIN
                    )
    except AccountError as exc:
        printer.fail(str(exc), exc.code)
        return exc.code
    finally:
        short.net.close()
