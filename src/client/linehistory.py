"""`chat-client --history N [--with NAME]`: print the last N messages of a conversation, leave.

The server gives at most 200 messages a page, newest page first; more are
fetched with `before` = the oldest id so far, until N are there or the
conversation has no more. They are printed oldest first, in line mode's
usual format, then the client says `bye` and exits 0.

This is a query, not a session: stdin is not read, live messages and roster
changes are not printed, and offline messages are neither printed nor
acknowledged (they stay stored for the next real login).

Exit codes as line mode's: 0 printed; 1 cannot connect; 3 login refused;
4 connection lost before the end; 5 the server refused the history request
(its error is printed); 130 interrupted.
"""

from __future__ import annotations

import itertools
import queue
import ssl
import sys
from dataclasses import dataclass, field
from typing import TextIO

from chat.shared.messages import HISTORY_LIMIT_MAX, Msg

from . import events as ev
from .linemode import EXIT_INTERRUPTED, EXIT_NOT_SENT, EXIT_OK, Printer
from .net import NetworkClient
from .session import Session

#: A history request that failed with the connection (a Disconnected follows and says it).
LOST = "connection lost"


@dataclass
class HistoryFetch:
    """The pages of one conversation, newest first, until `count` messages or its start."""

    peer: str
    count: int
    got: dict[int, Msg] = field(default_factory=dict)
    oldest: int | None = None
    done: bool = False

    def next_page(self) -> tuple[int | None, int] | None:
        """(`before`, `limit`) of the page to ask for next; None when done."""
        if self.done:
            return None
        return self.oldest, min(self.count - len(self.got), HISTORY_LIMIT_MAX)

    def add(self, messages: tuple[Msg, ...], more: bool) -> None:
        new = [m for m in messages if m.id not in self.got]
        for m in new:
            self.got[m.id] = m
        if new:
            low = min(m.id for m in new)
            self.oldest = low if self.oldest is None else min(self.oldest, low)
        # A page with nothing new would only be asked for again: stop rather than loop.
        self.done = not more or not new or len(self.got) >= self.count

    def result(self) -> list[Msg]:
        """The newest `count` messages, oldest first."""
        return [self.got[i] for i in sorted(self.got)][-self.count :]


def run_history(
    host: str,
    port: int,
    session: Session,
    count: int,
    peer: str,
    *,
    use_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    tls: ssl.SSLContext | None = None,
) -> int:
    inbox: queue.Queue[ev.NetEvent] = queue.Queue()
    net = NetworkClient(host, port, session, inbox.put, reconnect=False, tls=tls)
    printer = Printer(session.user, out or sys.stdout, err or sys.stderr, use_json)
    fetch = HistoryFetch(peer, count)
    request_ids = (f"h{n}" for n in itertools.count(1))

    def ask() -> None:
        page = fetch.next_page()
        assert page is not None
        net.history(next(request_ids), peer, *page)

    net.start()
    try:
        while True:
            event = inbox.get()
            if (code := printer.ending(event)) is not None:
                return code
            match event:
                case ev.LoggedIn():
                    ask()
                case ev.HistoryLoaded(_, _, _, messages, more):
                    fetch.add(messages, more)
                    if not fetch.done:
                        ask()
                        continue
                    for msg in fetch.result():
                        printer.emit(ev.Incoming(msg))
                    return EXIT_OK
                case ev.HistoryFailed(_, _, _, code, message) if code is not None:
                    printer.emit(ev.ServerNotice(code, message))
                    return EXIT_NOT_SENT
                case ev.HistoryFailed(_, _, _, None, message) if message != LOST:
                    printer.fail(message, EXIT_NOT_SENT)  # e.g. a room on a server without rooms
                    return EXIT_NOT_SENT
                case ev.ServerNotice() | ev.ServerBye():
                    printer.emit(event)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        net.close()
