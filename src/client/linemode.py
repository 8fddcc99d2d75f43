"""`chat-client --no-tui`: stdin lines become messages, events become stdout lines.

For scripts and bots. Each line is sent as soon as the chat is ready (lines
read earlier wait for the login, and for the rooms of `--join`); after stdin
ends the client waits until every message it sent is answered by the server,
and until the messages stored while it was offline have arrived, says `bye`,
and exits. `@#room text` writes to a room.

Offline messages are acknowledged (`offline_ack`) only once they are
printed and flushed, so a crash in between means they come again at the
next login, never that they are lost.

With `--reconnect` a lost connection is tried again with the TUI's backoff
(0.5 s doubling to 15 s, with jitter); lines read meanwhile are sent after
the next login, and messages in flight when it died are reported unconfirmed.
With `--json` every failure said on stderr is also an object on stdout.

Exit codes: 0 done; 1 cannot connect (a failed TLS handshake or certificate
check included) or closed before the login;
3 login refused; 4 connection lost or closed by the server before the end;
5 some lines were not sent (refused by the server or not valid, or in flight
when the connection died), or a `--join` failed; 130 interrupted.
"""

from __future__ import annotations

import os
import queue
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from chat.shared.errors import Code
from chat.shared.messages import BROADCAST, MsgId, Recipients, RoomCreate, RoomJoin, valid_name
from chat.shared.rooms import valid_room

from . import events as ev
from .backoff import Backoff
from .lineformat import as_json, fatal, human, local_error
from .net import NetworkClient
from .session import Session

EXIT_OK = 0
EXIT_CONNECT = 1
EXIT_LOGIN = 3
EXIT_LOST = 4
EXIT_NOT_SENT = 5
EXIT_INTERRUPTED = 130


def parse_line(line: str) -> tuple[Recipients, str] | None:
    """`text` to all, `@bob text` to bob, `@bob,carol text` to a group, `@#dev text` to a
    room; None for a blank line.

    `@* text` also goes to all, and `@@text` sends `@text` to all. Raises
    ValueError when the recipient list is not valid.
    """
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if text.startswith("@@"):
        return BROADCAST, text[1:]
    if not text.startswith("@"):
        return BROADCAST, text
    head, _, body = text[1:].partition(" ")
    body = body.lstrip(" ")
    if not body:
        raise ValueError("nothing to send after the recipients")
    if head == "*":
        return BROADCAST, body
    if head.startswith("#"):
        if not valid_room(head):
            raise ValueError(f"not a valid room name: {head!r}")
        return head, body
    names = head.split(",")
    for name in names:
        if not valid_name(name):
            raise ValueError(f"not a valid user name: {name!r}")
    return tuple(dict.fromkeys(names)), body


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    text: str


class _Eof:
    pass


def read_lines(fd: int, put: Callable[[object], None]) -> None:
    """Reader thread: whole lines from `fd`, decoded as UTF-8 whatever the locale says.

    Raw `os.read` rather than `sys.stdin`: a daemon thread blocked inside a
    buffered reader holds its lock, and interpreter shutdown then aborts.
    """
    pending = b""
    number = 0
    while chunk := _read(fd):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            number += 1
            put(_Line(number, raw.decode("utf-8", "replace")))
    if pending:
        put(_Line(number + 1, pending.decode("utf-8", "replace")))
    put(_Eof())


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


@dataclass
class Printer:
    """Where line mode's output goes: events on `out`, one-line failures on `err`."""

    me: str
    out: TextIO
    err: TextIO
    use_json: bool = False
    logged_in: bool = False

    def emit(self, event: ev.NetEvent) -> None:
        lines = [as_json(event)] if self.use_json else human(event, self.me)
        for line in lines:
            if line is not None:
                print(line, file=self.out, flush=True)

    def fail(self, text: str, code: int | None = None) -> None:
        """A failure: one line on stderr; with `--json` an object on stdout too, so a script
        that reads only the JSON stream learns of it (`code`: the exit code it ends with)."""
        print(f"chat-client: {text}", file=self.err, flush=True)
        if self.use_json:
            print(fatal(text, code), file=self.out, flush=True)

    def refuse(self, line: int, reason: str) -> None:
        """A line not sent: said on stderr, and in `--json` also on stdout, so a script
        reading only the JSON stream learns of it (and of which line)."""
        print(f"chat-client: line {line} not sent: {reason}", file=self.err, flush=True)
        if self.use_json:
            print(local_error(line, reason), file=self.out, flush=True)

    def ending(self, event: ev.NetEvent) -> int | None:
        """The exit code when `event` ends the run (said in one line on stderr), else None.
        A connection lost with a reconnect coming (`--reconnect`) is no end."""
        match event:
            case ev.ConnectFailed(reason, None):
                self.fail(reason, EXIT_LOST if self.logged_in else EXIT_CONNECT)
                return EXIT_LOST if self.logged_in else EXIT_CONNECT
            case ev.LoginFailed(code, message, register) if register and code == Code.USER_EXISTS:
                self.fail(f"account {self.me} exists: leave out --register ({code})", EXIT_LOGIN)
                return EXIT_LOGIN
            case ev.LoginFailed(code, message, register):
                what = "registration" if register else "login"
                self.fail(f"{what} refused: {message} ({code})", EXIT_LOGIN)
                return EXIT_LOGIN
            case ev.Disconnected(reason, None) | ev.Stopped(reason):
                code = EXIT_LOST if self.logged_in else EXIT_CONNECT
                self.fail(f"disconnected: {reason}", code)
                return code
            case ev.LoggedIn():
                self.logged_in = True
        return None


@dataclass(kw_only=True)
class LineMode(Printer):
    """The main-thread side of line mode: what has been sent, what is still unanswered."""

    net: NetworkClient
    eof: bool = False
    caught_up: bool = False  # every offline message of the login has arrived
    not_sent: int = 0
    pending: set[MsgId] = field(default_factory=set)
    ack_upto: int | None = None  # offline messages printed and not acknowledged yet
    #: `--join`: the rooms to be in before the first line goes (request id -> room).
    joining: dict[str, str] = field(default_factory=dict)
    held: list[_Line] = field(default_factory=list)  # lines read while joining
    _joins: int = 0

    def join(self, rooms: list[str]) -> None:
        """`--join`: join these rooms first (a room that does not exist is created)."""
        for room in rooms:
            self._joins += 1
            request_id = f"join{self._joins}"
            self.joining[request_id] = room
            self.net.request(RoomJoin(request_id, room))

    def on_line(self, line: _Line) -> None:
        if self.joining:  # lines to a room must not overtake its join
            self.held.append(line)
            return
        try:
            parsed = parse_line(line.text)
            if parsed is None:
                return
            to, text = parsed
            # The id is the line's number, so "#4" in a report is the fourth line read.
            self.pending.add(self.net.send(to, text, msg_id=line.number))
        except ValueError as exc:
            self.not_sent += 1
            self.refuse(line.number, str(exc))

    def on_event(self, event: ev.NetEvent) -> int | None:
        """Handle one network event; an exit code when the run is over."""
        if (code := self.ending(event)) is not None:
            return code
        match event:
            case ev.Delivered(msg_id) | ev.RoomDelivered(msg_id) | ev.SendRefused(msg_id):
                self.pending.discard(msg_id)
                if isinstance(event, ev.SendRefused):
                    self.not_sent += 1
            case ev.SendUnconfirmed(ids):
                self.pending.difference_update(ids)
                self.not_sent += len(ids)
            case ev.CaughtUp():
                self.caught_up = True
            case ev.LoggedIn():
                self.caught_up = False  # a login (again): its own offline messages come
            case ev.RequestDone(request_id) | ev.RequestFailed(request_id) if (
                request_id in self.joining
            ):
                self._joined(event)  # type: ignore[arg-type]
                return None
        self.emit(event)
        if isinstance(event, ev.Incoming) and event.offline:  # printed: may be forgotten
            upto = event.msg.id
            self.ack_upto = upto if self.ack_upto is None else max(self.ack_upto, upto)
        return None

    def _joined(self, event: ev.RequestDone | ev.RequestFailed) -> None:
        """A `--join` answered: a room that does not exist is created, then the lines that
        waited go."""
        room = self.joining.pop(event.id)
        if isinstance(event, ev.RequestFailed) and event.code == Code.NO_SUCH_ROOM:
            request_id = f"create{event.id}"
            self.joining[request_id] = room
            self.net.request(RoomCreate(request_id, room))
            return
        if isinstance(event, ev.RequestFailed):
            self.not_sent += 1
            self.fail(f"--join {room}: {event.message} ({event.code or 'not sent'})")
        else:
            self.emit(event)
        if not self.joining:
            held, self.held = self.held, []
            for line in held:
                self.on_line(line)

    def flush_ack(self) -> None:
        """Acknowledge the offline messages printed so far (one frame for a batch)."""
        if self.ack_upto is not None:
            self.net.offline_ack(self.ack_upto)
            self.ack_upto = None

    @property
    def finished(self) -> bool:
        return (
            self.eof
            and self.logged_in
            and self.caught_up
            and not self.pending
            and not self.joining
            and not self.held
        )


def run_line_mode(
    host: str,
    port: int,
    session: Session,
    *,
    use_json: bool = False,
    stdin_fd: int = 0,
    out: TextIO | None = None,
    err: TextIO | None = None,
    tls: ssl.SSLContext | None = None,
    reconnect: bool = False,
    join: list[str] | None = None,
) -> int:
    inbox: queue.Queue[object] = queue.Queue()
    net = NetworkClient(
        host, port, session, inbox.put, reconnect=reconnect, backoff=Backoff(), tls=tls
    )
    mode = LineMode(session.user, out or sys.stdout, err or sys.stderr, use_json, net=net)
    mode.join(join or [])  # before any line: the joins are the first requests
    reader = threading.Thread(
        target=read_lines, args=(stdin_fd, inbox.put), name="chat-stdin", daemon=True
    )
    net.start()
    reader.start()
    try:
        while True:
            item = inbox.get()
            if isinstance(item, _Line):
                mode.on_line(item)
            elif isinstance(item, _Eof):
                mode.eof = True
            elif (code := mode.on_event(item)) is not None:  # type: ignore[arg-type]
                return code
            if mode.finished:
                mode.flush_ack()  # before the bye that `finally` says
                return EXIT_NOT_SENT if mode.not_sent else EXIT_OK
            if inbox.empty():  # a batch of offline messages is printed: one ack for it
                mode.flush_ack()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        net.close()
