"""What the TUI shows, as plain data updated from network events.

The curses side only draws a `ChatModel`; every decision about what an
event means for the screen (notes in the history, dropping a selected user
who left, the status line, asking for the login form again, which history
to ask the server for and when to acknowledge offline messages) is made
here, where tests can reach it without a terminal. What the model wants
sent comes out of `take_wants()`; the app hands it to the network thread.

Two views: the view of all (everything that happens, backfilled from the
history of `"*"` at each login) and, on demand, the history of a
conversation (one person, or each member of a group merged by id).

Attention: a private message or a mention asks for the bell
(`take_bell()`), counts as unread for its sender until the user turns to
them, and a message that arrives while the user is not looking at the
newest line gets the "new messages" marker above it (see `history`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from chat.shared.errors import Code
from chat.shared.messages import BROADCAST, HISTORY_LIMIT_DEFAULT, Msg, MsgId, Recipients

from . import events as ev
from .attention import is_for_me
from .backlog import Ask, Backlog
from .history import WAITING, History
from .names import FOLDS, MARK, LookAlikes, natural_sorted
from .participants import Participants

OFFLINE = "offline"
CONNECTING = "connecting"
ONLINE = "online"
RECONNECTING = "reconnecting"
#: After the address on the status line while the connection is TLS (ASCII for any terminal).
TLS_MARK = "[tls]"


LOADING = "loading history..."
BEGINNING = "beginning of the history"


@dataclass(frozen=True, slots=True)
class AskHistory:
    """Send a `history` request with this id (the model's own, never a message id)."""

    id: str
    peer: str
    before: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class AckOffline:
    """Send `offline_ack`: every offline message up to `upto` is in the view."""

    upto: int


Want = AskHistory | AckOffline


@dataclass
class View:
    """What the history pane shows: its lines, and the history pages behind them."""

    peers: tuple[str, ...]  # ("*",) for the view of all
    lines: History
    backlog: Backlog

    @classmethod
    def create(cls, peers: tuple[str, ...], me: str, title: str = "") -> View:
        return cls(peers, History(me=me, title=title), Backlog(peers))

    def with_person(self, name: str) -> bool:
        """Whether this view is the conversation with `name` (alone or in its group)."""
        return not self.is_all and name in self.peers

    @property
    def is_all(self) -> bool:
        return self.peers == (BROADCAST,)

    def shows(self, sender: str, to: Recipients, me: str) -> bool:
        """Whether a live message is part of this view (the server's rule for `with`)."""
        if self.is_all:
            return True
        if to == BROADCAST:
            return False
        if sender == me:
            return any(name in self.peers for name in to)
        return sender in self.peers  # it reached us: we are named in `to`


def refusal_text(user: str, code: str, message: str, register: bool, exists: bool) -> str:
    """Why the login (or registration) was refused, in the words of what was tried; the
    server's own text is always there (e.g. its minimum password length)."""
    if exists:  # --register found the account, and the login with that password failed
        return f"account {user} exists (leave out --register); login refused: {message}"
    if register and code == Code.USER_EXISTS:
        return f"registration refused: {message} (choose another name, or Log in if it is yours)"
    if register:
        return f"registration refused: {message}"
    return f"login refused: {message}"


def _all_view() -> View:
    return View.create((BROADCAST,), "")


@dataclass
class ChatModel:
    host: str
    port: int
    user: str = ""
    state: str = OFFLINE
    status_note: str = ""
    want_login: bool = False  # the UI should show the login form again
    #: Whether the login under way registers (the form that opens again on a refusal).
    registering: bool = False
    tls: str | None = None  # the TLS version of the connection that is up, None for plain TCP
    main: View = field(default_factory=_all_view)
    convo: View | None = None  # the history of a conversation, when the user asked for it
    participants: Participants = field(default_factory=Participants)
    #: Every name seen, so that names which look alike are marked wherever they are shown.
    looks: LookAlikes = field(default_factory=LookAlikes)
    page_size: int = HISTORY_LIMIT_DEFAULT
    _wants: list[Want] = field(default_factory=list)
    _ack_upto: int | None = None
    _request_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _logged_in_as: str | None = None
    _account_exists: bool = False  # registering found the account: this login is the fallback
    #: When the next reconnect attempt starts (a monotonic time), for a live countdown.
    retry_at: float | None = None
    clock: Callable[[], float] = time.monotonic
    _bell: bool = False

    def __post_init__(self) -> None:
        self.participants.looks = self.looks
        self.main.lines.looks = self.looks

    @property
    def history(self) -> History:
        """The view of all's lines (where notes go)."""
        return self.main.lines

    @property
    def view(self) -> View:
        """The view on screen."""
        return self.convo or self.main

    def views(self) -> list[View]:
        return [self.main] if self.convo is None else [self.main, self.convo]

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def status_text(self) -> str:
        """State first (with the reconnect countdown), then who and where, then the reason:
        a narrow terminal cuts the reason, never the countdown."""
        who = self.user or "-"
        where = f"{self.address} {TLS_MARK}" if self.tls else self.address
        parts = [self.state_text(), f"{who} @ {where}"]
        if self.state == ONLINE:
            parts.append(f"{len(self.participants.online) + 1} online")
        if self.status_note:
            parts.append(self.status_note)
        return " | ".join(parts)

    def state_text(self) -> str:
        if self.state == RECONNECTING and self.retry_at is not None:
            left = max(0, math.ceil(self.retry_at - self.clock()))
            return f"reconnecting in {left}s" if left else "reconnecting now"
        return self.state

    def take_bell(self) -> bool:
        """Whether something arrived that rings the bell since the last call."""
        bell, self._bell = self._bell, False
        return bell

    # --------------------------------------------------------- UI actions
    def begin_login(self, user: str, host: str, port: int, register: bool) -> None:
        if self._logged_in_as is not None and self._logged_in_as != user:
            self.main, self.convo = _all_view(), None  # never show one user's messages to another
            self.main.lines.looks = self.looks
            self.participants.forget()  # nor whom they were writing to
        self._network_gone()  # a new network thread: the old one's answers are discarded
        self.user, self.host, self.port = user, host, port
        self.looks.me = user
        self.looks.add(user)
        for view in self.views():
            view.lines.me = user
        self.state = CONNECTING
        self.tls = None
        self.retry_at = None
        self.registering = register
        self._account_exists = False
        self.status_note = "registering" if register else "logging in"

    def logged_out(self, note: str = "logged out") -> None:
        self.state = OFFLINE
        self.tls = None
        self.retry_at = None
        self.status_note = note
        self.participants.clear()
        self.show_all()
        self._network_gone()
        self.history.note(note)

    def note(self, text: str, style: str = "note") -> None:
        """A note for the user: in the view of all, and errors in the view on screen too."""
        self.main.lines.note(text, style=style)
        if self.convo is not None and style == "error":
            self.convo.lines.note(text, style=style)

    def sending(self, msg_id: MsgId, to: Recipients, text: str) -> None:
        """Our message is on its way (or waits for the connection): shown, and whoever it
        goes to is read (as in a query window, writing to someone means you saw them)."""
        status = "sending" if self.state == ONLINE else WAITING
        for view in self.views():
            if view.shows(self.user, to, self.user):
                view.lines.outgoing(msg_id, to, text, status=status)
        if to != BROADCAST:
            self._know(*to)
            self.participants.read(*to)
        self.view.lines.all_read()
        self.view.lines.scroll_to_end()

    def select(self, names: tuple[str, ...]) -> None:
        """Select exactly these people (none: everyone); said in a note, since the
        prompt changes."""
        names = tuple(sorted(set(names) - {self.user, BROADCAST}))
        self._know(*names)
        self.participants.select(names)
        if names:
            self.note(f"selected: {self.participants.describe(names)}")
        else:
            self.note("selected: everyone")

    def who(self) -> None:
        everyone = natural_sorted({*self.participants.online, self.user} - {""})
        shown = ", ".join(map(self.looks.show, everyone))
        if self.state == ONLINE:
            self.note(f"online ({len(everyone)}): {shown}")
        else:
            self.note(f"not connected ({self.state}); last known online: {shown}")
        self.note(f"messages go to: {self.participants.describe_target()}")
        for group in self.looks.groups():
            self.note(
                f"look-alike names, each marked {MARK} (they differ only in {FOLDS}): "
                f"{', '.join(group)}",
                style="error",
            )

    def open_history(self, peers: tuple[str, ...]) -> None:
        """Show the history with these people (each one's conversation, merged by id)."""
        names = tuple(sorted(set(peers) - {self.user, BROADCAST}))
        if not names:
            self.show_all()
            return
        self.participants.read(*names)
        if self.convo is not None and self.convo.peers == names:
            return
        self.convo = View.create(names, self.user, f"history with {', '.join(names)}")
        self.convo.lines.looks = self.looks
        self.main.lines.on_screen = False
        self._ask(self.convo, self.convo.backlog.latest())

    def show_all(self) -> None:
        self.convo = None  # answers to its requests now find no view and are dropped
        self.main.lines.on_screen = True

    def take_wants(self) -> list[Want]:
        """What to send now: history pages to fetch, the offline ack. Emptied by the call."""
        view = self.view
        if view.lines.older_wanted:
            view.lines.older_wanted = False
            if self.state != OFFLINE:
                self._ask(view, view.backlog.older())
        if self._ack_upto is not None:
            self._wants.append(AckOffline(self._ack_upto))
            self._ack_upto = None
        wants, self._wants = self._wants, []
        return wants

    def _ask(self, view: View, asks: list[Ask]) -> None:
        for ask in asks:
            request_id = f"h{next(self._request_ids)}"
            view.backlog.asked(request_id, ask)
            self._wants.append(AskHistory(request_id, ask.peer, ask.before, self.page_size))
        self._banner(view)

    def _banner(self, view: View) -> None:
        backlog = view.backlog
        if backlog.pending:
            view.lines.banner = LOADING
        elif backlog.complete:
            view.lines.banner = BEGINNING
        else:
            view.lines.banner = ""

    def _network_gone(self) -> None:
        """No answer will come to what was asked (the network thread is gone), and messages
        that waited for a reconnect will not go."""
        for view in self.views():
            view.backlog.forget_pending()
            view.lines.gave_up("not connected")
            self._banner(view)

    # ----------------------------------------------------- network events
    def apply(self, event: ev.NetEvent) -> None:
        h = self.history
        if isinstance(event, ev.ConnectFailed | ev.Disconnected | ev.Stopped):
            self.tls = None  # whatever comes next, this connection is not up
            self.participants.disconnected()
            self.retry_at = None
        match event:
            case ev.Connecting(attempt=attempt) if attempt > 1:
                self.retry_at = None
                self.status_note = f"connecting to {self.address} (attempt {attempt})"
            case ev.Connecting():
                self.status_note = f"connecting to {self.address}"
            case ev.Connected(tls=version) if version is not None:
                self.tls = version
                h.note(f"TLS ({version}): the certificate of {self.host} is verified")
            case ev.Connected():
                self.tls = None
            case ev.ConnectFailed(reason, None):
                self._failed(reason)
            case ev.ConnectFailed(reason, delay):
                self.state = RECONNECTING
                self.retry_at = self.clock() + delay
                self.status_note = reason
            case ev.AccountExists(user):
                self.registering, self._account_exists = False, True
                self.status_note = f"account {user} exists: logging in"
                self.note(f"account {user} exists: leave out --register (logging in instead)")
            case ev.LoginFailed(code, message, register):
                self._failed(refusal_text(self.user, code, message, register, self._account_exists))
            case ev.LoggedIn(user, online, registered):
                self._logged_in(user, online, registered)
            case ev.RosterChanged(joined, left, _):
                self._roster(joined, left)
            case ev.Incoming(msg):
                self._incoming(msg)
            case ev.Delivered(msg_id, delivered, missing, queued):
                for view in self.views():
                    view.lines.delivered(msg_id, delivered, missing, queued)
            case ev.SendRefused(msg_id, code, message):
                for view in self.views():
                    view.lines.refused(msg_id, message)
            case ev.SendUnconfirmed(ids):
                for view in self.views():
                    view.lines.unconfirmed(ids)
            case ev.HistoryLoaded(request_id, _, _, messages, more):
                self._page(request_id, messages, more)
            case ev.HistoryFailed(request_id, peer, _, code, message):
                self._page_failed(request_id, peer, code, message)
            case ev.ServerNotice(code, message):
                self.note(f"server: {message} ({code})", style="error")
            case ev.ServerBye():
                pass  # the Disconnected that follows says it, with what happens next
            case ev.Disconnected(reason, None) if self.state == CONNECTING:
                self._network_gone()
                self._failed(reason)  # never got in: show the login form again
            case ev.Disconnected(reason, None):
                self._network_gone()
                if self.state != OFFLINE:
                    self.state = OFFLINE
                    self.status_note = reason
                    self.note(f"disconnected: {reason}", style="error")
            case ev.Disconnected(reason, delay):
                self.state = RECONNECTING
                self.retry_at = self.clock() + delay
                self.status_note = reason
                self.note(
                    f"disconnected: {reason}; reconnecting in {math.ceil(delay)}s", style="error"
                )
            case ev.Stopped(reason):
                self._network_gone()
                if self.state != OFFLINE:  # normally a Disconnected already said why
                    self.note(f"connection stopped: {reason}", style="error")
                    self.state, self.status_note = OFFLINE, reason

    def _failed(self, reason: str) -> None:
        self.state = OFFLINE
        self.status_note = reason
        self.note(reason, style="error")
        self.want_login = True

    def _logged_in(self, user: str, online: tuple[str, ...], registered: bool) -> None:
        again = self.state == RECONNECTING
        self.state, self.user, self.status_note = ONLINE, user, ""
        self._logged_in_as = user
        self.retry_at = None
        for view in self.views():
            view.lines.me = user
            view.lines.reconnected()
        away = self.participants.reset(online)
        met = self.looks.add(user, *online)
        what = "reconnected" if again else "registered and logged in" if registered else "logged in"
        others = ", ".join(map(self.looks.show, natural_sorted(online))) or "nobody else"
        note = self.history.note(f"{what} as {user}; online: {others}")
        # The first backfill goes on top; after that, what was missed goes before this note.
        if self.main.backlog.cursors[BROADCAST].loaded:
            self.main.lines.anchor_at(note)
        else:
            self.main.lines.anchor_at_top()
        for view in self.views():
            self._ask(view, view.backlog.latest())
        self._say_look_alikes(met)
        if away:
            self.history.note(
                f"selected and offline: {', '.join(away)} (messages are kept for them)"
            )

    def _know(self, *names: str) -> None:
        """Names seen: one that looks like a name already known is said, once."""
        self._say_look_alikes(self.looks.add(*names))

    def _say_look_alikes(self, met: list[tuple[str, list[str]]]) -> None:
        for name, others in met:
            self.note(
                f"look-alike names: {name} looks like {', '.join(others)}; each is marked "
                f"{MARK} (they differ only in {FOLDS}; /who lists them)",
                style="error",
            )

    def _know_message(self, msg: Msg) -> None:
        self._know(msg.sender, *(() if msg.to == BROADCAST else msg.to))

    def _incoming(self, msg: Msg) -> None:
        self._know_message(msg)
        new = False
        for view in self.views():
            if view.shows(msg.sender, msg.to, self.user):
                new = view.lines.incoming(msg) or new
        if new and is_for_me(msg, self.user):
            self._bell = True
            if msg.to != BROADCAST and not self._turned_to(msg.sender):
                self.participants.add_unread(msg.sender)
        if msg.offline:  # in the view now: the server may forget it
            self._ack_upto = msg.id if self._ack_upto is None else max(self._ack_upto, msg.id)

    def _page(self, request_id: MsgId, messages: tuple[Msg, ...], more: bool) -> None:
        for msg in messages:
            self._know_message(msg)
        for view in self.views():
            released = view.backlog.answer(request_id, messages, more)
            if released is not None:
                view.lines.merge(released)
                self._banner(view)
                return

    def _page_failed(self, request_id: MsgId, peer: str, code: str | None, message: str) -> None:
        for view in self.views():
            released = view.backlog.failed(request_id)
            if released is not None:
                view.lines.merge(released)
                self._banner(view)
                if code is not None:  # a lost connection is already told
                    who = "all" if peer == BROADCAST else peer
                    view.lines.note(f"no history of {who}: {message} ({code})", style="error")
                return

    def _turned_to(self, name: str) -> bool:
        """Whether the user is in a conversation with `name` (selected, or its history on
        screen): then a message from them is read, not unread."""
        return name in self.participants.selected or (
            self.convo is not None and self.convo.with_person(name)
        )

    def _roster(self, joined: tuple[str, ...], left: tuple[str, ...]) -> None:
        gone = self.participants.apply(joined, left)
        show = self.looks.show
        for name in joined:
            self.history.note(f"{show(name)} joined")
            self._know(name)
        for name in left:
            if name in gone:
                self.history.note(
                    f"{show(name)} left (still selected: messages are kept for {name})"
                )
            else:
                self.history.note(f"{show(name)} left")
