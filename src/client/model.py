"""What the TUI shows, as plain data updated from network events.

The curses side only draws a `ChatModel`; every decision about what an
event means for the screen (which buffer a message goes to, notes, the
status line, asking for the login form again, which history to ask the
server for, when a buffer is read and when to acknowledge offline messages)
is made here, where tests can reach it without a terminal. What the model
wants sent comes out of `take_wants()`; the app hands it to the network
thread.

Buffers (see `buffers`): All, each room, each person, each group. The
current buffer is both what is on screen and who gets what is typed; an
incoming message opens (or marks) its own buffer and never changes the
current one. A buffer is read when the user looks at it (it is on screen
and shows its newest line), not when a message merely arrives: then a
`read` marker goes to the server (v1.2 section 3), which tells the user's
other sessions, so every device shows the same unread counts.

Attention: a private message or a mention asks for the bell
(`take_bell()`), counts in its buffer's mentions, and a message that
arrives while the user is not looking gets the "new messages" marker above
it (see `history`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from chat.shared.errors import Code
from chat.shared.features import READ, ROOMS
from chat.shared.messages import (
    BROADCAST,
    HISTORY_LIMIT_DEFAULT,
    Marker,
    Msg,
    MsgId,
    Recipients,
    RoomCreate,
    RoomEvent,
    RoomInfo,
    RoomInvite,
    RoomJoin,
    RoomKick,
    RoomLeave,
    RoomListRequest,
    RoomTopic,
    UserSearch,
)
from chat.shared.rooms import is_room, room_key

from . import events as ev
from .attention import is_for_me
from .backlog import Ask
from .buffers import (
    ALL,
    ALL_KEY,
    GROUP,
    PERSON,
    ROOM,
    Buffer,
    BufferList,
    View,
    conversation_key,
    conversation_of,
    message_key,
    message_target,
    target_key,
)
from .directory import Directory
from .history import WAITING, Entry, History
from .names import FOLDS, MARK, LookAlikes, natural_sorted
from .participants import Participants
from .roombook import RoomBook
from .session import Request

OFFLINE = "offline"
CONNECTING = "connecting"
ONLINE = "online"
RECONNECTING = "reconnecting"
#: After the address on the status line while the connection is TLS (ASCII for any terminal).
TLS_MARK = "[tls]"

LOADING = "loading history..."
BEGINNING = "beginning of the history"

#: WeeChat's smart filter: joins and leaves of people silent for this long are hidden.
SMART_FILTER_SECONDS = 10 * 60
#: A `typing: active` shows for this long without a newer one (v1.2 section 5: at most 6 s).
TYPING_SHOWN = 6.0
#: A search fetches at most this many older pages before it says it found nothing.
SEARCH_PAGES = 20
#: At login, the people with unread messages (the newest first) whose buffers open.
OPEN_AT_LOGIN = 30


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


@dataclass(frozen=True, slots=True)
class MarkRead:
    """Send `read`: the user has seen `peer` up to `upto`."""

    peer: str
    upto: int


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send this v1.2 request (its id is the model's own)."""

    message: Request


Want = AskHistory | AckOffline | MarkRead | SendRequest


@dataclass(frozen=True, slots=True)
class _Pending:
    """What a request was for, to act on its answer."""

    kind: str  # the request's type, or "lookup" / "complete" / "directory" for searches
    room: str = ""
    user: str = ""
    switch: bool = False  # a join or a creation the user asked for: go to the room


@dataclass
class _Search:
    text: str
    buffer: str
    #: The oldest entry looked at so far (the next match is older); None: from the newest.
    below: Entry | None = None
    pages: int = 0  # older pages fetched for it
    waiting: bool = False  # a page is on its way


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


def _all_buffers() -> BufferList:
    return BufferList([Buffer(ALL_KEY, ALL, BROADCAST, View.create((BROADCAST,), ""))])


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
    buffers: BufferList = field(default_factory=_all_buffers)
    participants: Participants = field(default_factory=Participants)
    #: Every name seen, so that names which look alike are marked wherever they are shown.
    looks: LookAlikes = field(default_factory=LookAlikes)
    rooms: RoomBook = field(default_factory=RoomBook)
    directory: Directory = field(default_factory=Directory)
    #: The v1.2 features of the connection (none from a v1.1 server).
    features: frozenset[str] = frozenset()
    #: How far each conversation is read (v1.2 markers), by `conversation_key`.
    markers: dict[str, int] = field(default_factory=dict)
    smart_filter: bool = True
    page_size: int = HISTORY_LIMIT_DEFAULT
    #: The UI asks whether to create this room (a `/join` of a room that does not exist).
    want_create: str | None = None
    #: The UI shows these rooms in the `/rooms` form.
    want_rooms: tuple[RoomInfo, ...] | None = None
    #: A `user_search` answer came: the UI runs again what waited for it (a line, a Tab).
    directory_changed: bool = False
    _wants: list[Want] = field(default_factory=list)
    _ack_upto: int | None = None
    _request_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _pending: dict[MsgId, _Pending] = field(default_factory=dict)
    _logged_in_as: str | None = None
    _account_exists: bool = False  # registering found the account: this login is the fallback
    #: Who wrote anything, anywhere, and when (wall clock): the smart filter of All.
    _spoke: dict[str, float] = field(default_factory=dict)
    _search: _Search | None = None
    _listed: set[str] = field(default_factory=set)  # room names a `room_list` gave
    #: When the next reconnect attempt starts (a monotonic time), for a live countdown.
    retry_at: float | None = None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    _bell: bool = False

    def __post_init__(self) -> None:
        self.participants.looks = self.looks
        for buffer in self.buffers:
            buffer.lines.looks = self.looks
        self._refresh_people()

    # ---------------------------------------------------------------- views
    @property
    def main(self) -> View:
        """The buffer All's view."""
        return self.buffers.buffers[0].view

    @property
    def history(self) -> History:
        """All's lines (where the connection's notes go)."""
        return self.main.lines

    @property
    def current(self) -> Buffer:
        return self.buffers.current

    @property
    def view(self) -> View:
        """The view on screen: the current buffer's."""
        return self.current.view

    def views(self) -> list[View]:
        return [b.view for b in self.buffers]

    def target(self) -> Recipients:
        """What a line typed now goes to: the current buffer's people, room, or everyone."""
        return self.current.target

    def buffer_name(self, buffer: Buffer) -> str:
        """A buffer's name as shown: its people's names marked when they look alike."""
        if buffer.private:
            return ", ".join(map(self.looks.show, buffer.people))
        return buffer.name

    def describe_target(self) -> str:
        buffer = self.current
        if buffer.kind == ALL:
            return "all"
        if buffer.kind == ROOM:
            return buffer.name if buffer.joined else f"{buffer.name} (not a member)"
        return self.participants.describe(buffer.people)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def status_text(self) -> str:
        """State first (with the reconnect countdown), then who and where, then who is
        typing here, then the reason: a narrow terminal cuts the end, never the countdown."""
        who = self.user or "-"
        where = f"{self.address} {TLS_MARK}" if self.tls else self.address
        parts = [self.state_text(), f"{who} @ {where}"]
        if self.state == ONLINE:
            parts.append(f"{len(self.participants.online) + 1} online")
        typing = self.typing_text()
        if typing:
            parts.append(typing)
        if self.status_note:
            parts.append(self.status_note)
        return " | ".join(parts)

    def typing_text(self) -> str:
        """`bob is typing...` for the current buffer (an `active` shows for at most 6 s)."""
        now = self.clock()
        buffer = self.current
        for name, until in list(buffer.typing.items()):
            if until <= now:
                del buffer.typing[name]
        names = natural_sorted(buffer.typing)
        if not names:
            return ""
        verb = "is" if len(names) == 1 else "are"
        return f"{', '.join(map(self.looks.show, names))} {verb} typing..."

    def state_text(self) -> str:
        if self.state == RECONNECTING and self.retry_at is not None:
            left = max(0, math.ceil(self.retry_at - self.clock()))
            return f"reconnecting in {left}s" if left else "reconnecting now"
        return self.state

    def title(self) -> str:
        """The history pane's title for the current buffer ("" for All): a room and its
        topic, a person or a group and who is offline."""
        buffer = self.current
        if buffer.kind == ALL:
            return ""
        if buffer.kind == ROOM:
            room = self.rooms.get(buffer.name)
            name = room.name if room is not None else buffer.name
            topic = room.topic if room is not None else ""
            count = 0 if room is None else room.member_count()
            members = "" if room is None else f" [{count} member{'' if count == 1 else 's'}]"
            if not buffer.joined:
                return f"{name} (not a member: /join {name})"
            return f"{name}{members}: {topic}" if topic else f"{name}{members}"
        return self.participants.describe(buffer.people)

    def take_bell(self) -> bool:
        """Whether something arrived that rings the bell since the last call."""
        bell, self._bell = self._bell, False
        return bell

    # --------------------------------------------------------- UI actions
    def begin_login(self, user: str, host: str, port: int, register: bool) -> None:
        if self._logged_in_as is not None and self._logged_in_as != user:
            # never show one user's messages to another, nor whom they were writing to
            self.buffers = _all_buffers()
            self.buffers.buffers[0].lines.looks = self.looks
            self.participants.forget()
            self.markers.clear()
            self.rooms = RoomBook()
            self.directory = Directory()
            self._refresh_people()
        self._network_gone()  # a new network thread: the old one's answers are discarded
        self.user, self.host, self.port = user, host, port
        self.looks.me = self.rooms.me = self.directory.me = user
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
        self._network_gone()
        self.system(note)

    def note(self, text: str, style: str = "note") -> None:
        """A note for the user, in the buffer on screen (what a command says)."""
        self.current.lines.note(text, style=style)

    def system(self, text: str, style: str = "note") -> Entry:
        """A note about the connection: in All, and in the buffer on screen too."""
        entry = self.history.note(text, style=style)
        if self.current.kind != ALL:
            self.current.lines.note(text, style=style)
        return entry

    def sending(self, msg_id: MsgId, to: Recipients, text: str) -> None:
        """Our message is on its way (or waits for the connection): shown in its buffer (and
        in the one on screen, when that is another), and its buffer is read (writing there
        means you saw it)."""
        status = "sending" if self.state == ONLINE else WAITING
        if to != BROADCAST and not isinstance(to, str):
            self._know(*to)
        buffer = self._buffer_for(to)
        buffer.lines.outgoing(msg_id, to, text, status=status)
        buffer.lines.all_read()
        buffer.lines.scroll_to_end()
        self._read(buffer)
        here = self.current
        if here is not buffer:  # `/msg carol hi` from elsewhere: said here too, as irssi does
            here.lines.outgoing(msg_id, to, text, status=status)
            here.lines.scroll_to_end()

    def switch(self, key: str) -> bool:
        """Show the buffer `key` (what is typed now goes there); False when there is none."""
        old = self.current
        if not self.buffers.switch(key):
            return False
        new = self.current
        if new is not old:
            old.lines.on_screen = False
            new.lines.on_screen = True
            self._search = None
            self._refresh_people()
        return True

    def switch_number(self, number: int) -> bool:
        buffer = self.buffers.by_number(number)
        return buffer is not None and self.switch(buffer.key)

    def step(self, delta: int) -> None:
        self.switch(self.buffers.step(delta).key)

    def back(self) -> None:
        """`^O`: the buffer shown before this one."""
        previous = self.buffers.previous_key
        if previous is not None:
            self.switch(previous)

    def open_query(self, names: tuple[str, ...], switch: bool = True) -> Buffer:
        """The buffer of these people (one person's or a group's; none: All), opened."""
        names = tuple(sorted(set(names) - {self.user, BROADCAST}))
        self._know(*names)
        buffer = self._buffer_for(names or BROADCAST)
        if switch:
            self.switch(buffer.key)
        return buffer

    def open_room(self, name: str, switch: bool = True) -> Buffer:
        buffer = self._buffer_for(self.rooms.name_of(name))
        if switch:
            self.switch(buffer.key)
        return buffer

    def close(self) -> str | None:
        """`/close`: the current buffer goes (the conversation stays on the server); None,
        or why it cannot."""
        buffer = self.current
        if buffer.kind == ALL:
            return "All cannot be closed"
        self.buffers.remove(buffer.key)
        self.current.lines.on_screen = True
        self._refresh_people()
        return None

    def who(self) -> None:
        everyone = natural_sorted({*self.participants.online, self.user} - {""})
        shown = ", ".join(map(self.looks.show, everyone))
        if self.state == ONLINE:
            self.note(f"online ({len(everyone)}): {shown}")
        else:
            self.note(f"not connected ({self.state}); last known online: {shown}")
        self.note(f"messages go to: {self.describe_target()}")
        for group in self.looks.groups():
            self.note(
                f"look-alike names, each marked {MARK} (they differ only in {FOLDS}): "
                f"{', '.join(group)}",
                style="error",
            )

    def names(self) -> None:
        """`/names`: the current buffer's people, online first."""
        buffer = self.current
        if buffer.kind == ALL:
            self.who()
            return
        if buffer.kind == ROOM:
            room = self.rooms.get(buffer.name)
            members = list(room.members) if room is not None else []
            on = natural_sorted(
                m for m in members if m in self.participants.online or m == self.user
            )
            off = natural_sorted(set(members) - set(on))
            owner = room.owner if room is not None else ""

            def shown(name: str) -> str:
                return f"{self.looks.show(name)}{' (owner)' if name == owner else ''}"

            self.note(f"{buffer.name}: {len(members)} members known")
            self.note(f"online ({len(on)}): {', '.join(map(shown, on)) or 'nobody'}")
            if off:
                self.note(f"offline ({len(off)}): {', '.join(map(shown, off))}")
            if room is not None and room.count is not None and room.count > len(members):
                self.note(
                    f"{room.count - len(members)} more (protocol v1.2 names a room's members "
                    "only at login: they show as they join or write)"
                )
            return
        self.note(f"{buffer.name}: {self.participants.describe(buffer.people)}")

    def whois(self, name: str) -> None:
        """`/whois NAME`: online or not, registered, when last seen here, rooms in common."""
        exists = self.directory.exists(name)
        online = name in self.participants.online or name == self.user
        status = "online" if online else "offline"
        known = {True: "registered", False: "no such user", None: "not known to be registered"}
        self.note(f"{self.looks.show(name)}: {status}, {known[exists]}")
        seen = self._spoke.get(name)
        if seen is not None:
            self.note(
                f"last message seen here: {time.strftime('%Y-%m-%d %H:%M', time.localtime(seen))}"
            )
        common = [r.name for r in self.rooms.member_rooms() if name in r.members]
        if common:
            self.note(f"rooms in common: {', '.join(natural_sorted(common))}")
        self.note(
            "sessions and last seen: not told by the server (protocol v1.2 has no such request)"
        )

    def toggle_filter(self) -> None:
        self.smart_filter = not self.smart_filter
        for buffer in self.buffers:
            buffer.lines.hide_smart = self.smart_filter
        if self.smart_filter:
            self.note("smart filter on: joins and leaves of people silent for 10 minutes hidden")
        else:
            self.note("smart filter off: every join and leave is shown")

    def clear(self) -> None:
        self.current.lines.clear()

    # ------------------------------------------------------------- search
    def search(self, text: str | None) -> None:
        """`/search text` (`^R`): the newest line of the current buffer that holds `text`
        (case ignored), or the next older one when searching again; older pages are
        fetched while nothing is found. None: search again for the last text."""
        buffer = self.current
        last = self._search
        if text is None or not text.strip():
            if last is None or last.buffer != buffer.key:
                self.note("search: /search text (then ^R for the next older match)")
                return
            text = last.text
        if last is None or last.text != text or last.buffer != buffer.key:
            self._search = _Search(text, buffer.key)
        self._search_on()

    def _search_on(self) -> None:
        search = self._search
        if search is None:
            return
        buffer = self.buffers.get(search.buffer)
        if buffer is None:
            self._search = None
            return
        lines = buffer.lines
        entries = list(lines.shown_entries())
        if search.below is not None and search.below in entries:
            entries = entries[: entries.index(search.below)]
        needle = search.text.lower()
        for entry in reversed(entries):
            if needle in entry.text.lower() or needle in entry.head.lower():
                search.below = entry
                lines.found = entry
                lines.pin, lines._scroll = (entry, 10**6), -3  # a few newer lines under it
                return
        backlog = buffer.view.backlog
        if entries:
            search.below = entries[0]
        if not backlog.complete and search.pages < SEARCH_PAGES and self.state == ONLINE:
            asks = backlog.older()
            if asks:
                search.pages += 1
                search.waiting = True
                self._ask(buffer.view, asks)
                return
            if backlog.pending:
                search.waiting = True
                return
        lines.found = None
        self._search = None
        lines.note(f"not found: {search.text}")
        lines.scroll_to_end()  # where the note is

    def end_search(self) -> None:
        self._search = None
        self.current.lines.found = None

    # ------------------------------------------------------------ requests
    def request(self, build: Callable[[str], Request], pending: _Pending | None = None) -> str:
        """Send a v1.2 request made with a fresh id; `pending` says what to do with its
        answer (by default: say it)."""
        request_id = f"r{next(self._request_ids)}"
        message = build(request_id)
        self._pending[request_id] = pending or _Pending(
            message.type, getattr(message, "room", ""), getattr(message, "user", "")
        )
        self._wants.append(SendRequest(message))
        return request_id

    def join(self, room: str, create: bool = False) -> None:
        """`/join #room`: join it (when it does not exist, the UI asks whether to create it)."""
        if create:
            self.request(lambda i: RoomCreate(i, room), _Pending("room_create", room, switch=True))
        else:
            self.request(lambda i: RoomJoin(i, room), _Pending("join", room, switch=True))

    def part(self, room: str) -> None:
        self.request(lambda i: RoomLeave(i, self.rooms.name_of(room)))

    def invite(self, room: str, user: str) -> None:
        self.request(lambda i: RoomInvite(i, self.rooms.name_of(room), user))

    def kick(self, room: str, user: str) -> None:
        self.request(lambda i: RoomKick(i, self.rooms.name_of(room), user))

    def set_topic(self, room: str, topic: str) -> None:
        self.request(lambda i: RoomTopic(i, self.rooms.name_of(room), topic))

    def list_rooms(self) -> None:
        self.request(lambda i: RoomListRequest(i))

    def lookup(self, prefix: str, why: str = "lookup") -> None:
        """Ask the directory (`user_search`) about names starting with `prefix`."""
        if self.directory.needs_search(prefix) and self.state == ONLINE:
            self.directory.searched[prefix.lower()] = (frozenset(), True)  # asked once
            self.request(lambda i: UserSearch(i, prefix), _Pending(why, user=prefix))

    # -------------------------------------------------------------- wants
    def take_wants(self) -> list[Want]:
        """What to send now: history pages to fetch, the offline ack, read markers,
        requests. Emptied by the call. The buffer on screen is read here when it shows
        its newest line."""
        view = self.view
        if view.lines.older_wanted:
            view.lines.older_wanted = False
            if self.state != OFFLINE:
                self._ask(view, view.backlog.older())
        if self.current.lines.following and self.current.lines.on_screen:
            self._read(self.current)
        if self._ack_upto is not None:
            self._wants.append(AckOffline(self._ack_upto))
            self._ack_upto = None
        wants, self._wants = self._wants, []
        return wants

    def _read(self, buffer: Buffer) -> None:
        """The user has seen all of `buffer`: its counts go, and the server is told how far
        each of its conversations is read (never past a message still unread elsewhere)."""
        buffer.read()
        if READ not in self.features or self.state != ONLINE:
            return
        for peer, upto in self._read_points(buffer):
            key = conversation_key(peer)
            if upto > self.markers.get(key, 0):
                self.markers[key] = upto
                self._wants.append(MarkRead(peer, upto))

    def _read_points(self, buffer: Buffer) -> list[tuple[str, int]]:
        """The conversations `buffer` shows, each with how far it is read now: up to the
        newest message of it in any buffer, or just below the oldest one still unread
        somewhere (a person's conversation holds the group messages they sent too)."""
        if buffer.kind == ALL:
            peers = [BROADCAST]
        elif buffer.kind == ROOM:
            peers = [self.rooms.name_of(buffer.name)]
        elif buffer.kind == PERSON:
            peers = [buffer.people[0]]
        else:
            senders = {e.sender for e in buffer.lines.ids.values() if not e.mine}
            peers = [name for name in buffer.people if name in senders]
        points = []
        for peer in peers:
            key = conversation_key(peer)
            unread = [i for b in self.buffers for i, conv in b.unread.items() if conv == key]
            if unread:
                points.append((peer, min(unread) - 1))
            else:
                points.append((peer, max((self._newest(b, key) for b in self.buffers), default=0)))
        return points

    def _newest(self, buffer: Buffer, conversation: str) -> int:
        """The newest message of `conversation` in `buffer` (0: none)."""
        ids = buffer.lines.ids
        if buffer.kind in (ALL, ROOM):
            return buffer.lines.newest_id if buffer.key == conversation else 0
        if buffer.kind == PERSON:
            return buffer.lines.newest_id if buffer.people[0] == conversation else 0
        return max(
            (
                i
                for i, e in ids.items()
                if e.sender == conversation
                or (e.mine and e.to is not None and conversation in e.to)
            ),
            default=0,
        )

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
        self._pending.clear()
        if self._search is not None:
            self._search.waiting = False

    # ------------------------------------------------------------ buffers
    def _buffer_for(self, target: Recipients) -> Buffer:
        """The buffer of `target` ("*", a room, people), opened at the end of the list when
        it is not open (its history is asked for at once when online)."""
        key = target_key(target, self.user)
        found = self.buffers.get(key)
        if found is not None:
            return found
        if target == BROADCAST:
            kind, peers = ALL, (BROADCAST,)
        elif isinstance(target, str):
            target = self.rooms.name_of(target)
            kind, peers = ROOM, (target,)
        else:
            target = tuple(natural_sorted(set(target) - {self.user})) or (self.user,)
            kind, peers = (PERSON if len(target) == 1 else GROUP), tuple(target)
        buffer = Buffer(key, kind, target, View.create(peers, self.user))
        buffer.lines.looks = self.looks
        buffer.lines.hide_smart = self.smart_filter
        buffer.lines.on_screen = False
        if kind == ROOM:
            room = self.rooms.get(target)  # type: ignore[arg-type]
            buffer.joined = room is not None and room.joined
        self.buffers.add(buffer)
        if self.state == ONLINE:
            self._ask(buffer.view, buffer.view.backlog.latest())
        return buffer

    def _refresh_people(self) -> None:
        """The participant list shows the current buffer's people."""
        buffer = self.current
        if buffer.kind == ALL:
            self.participants.show(buffer.name, None)
        elif buffer.kind == ROOM:
            room = self.rooms.get(buffer.name)
            members = [] if room is None else [m for m in room.members if m != self.user]
            self.participants.show(buffer.name, members)
        else:  # a person: only the top row; a group: its members below it
            title = self.participants.describe(buffer.people)
            self.participants.show(title, buffer.people if buffer.kind == GROUP else [])

    def _stir(self, buffer: Buffer) -> None:
        if buffer is not self.current:
            buffer.stirred = True

    # ----------------------------------------------------- network events
    def apply(self, event: ev.NetEvent) -> None:
        h = self.history
        if isinstance(event, ev.ConnectFailed | ev.Disconnected | ev.Stopped):
            self.tls = None  # whatever comes next, this connection is not up
            self.participants.disconnected()
            self.retry_at = None
            for buffer in self.buffers:
                buffer.typing.clear()
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
            case ev.LoggedIn(user, online, registered, features):
                self._logged_in(user, online, registered, features)
            case ev.RosterChanged(joined, left, _):
                self._roster(joined, left)
            case ev.Incoming(msg):
                self._incoming(msg)
            case ev.Delivered(msg_id, delivered, missing, queued, stored):
                for view in self.views():
                    view.lines.delivered(msg_id, delivered, missing, queued, stored)
            case ev.RoomDelivered(msg_id, stored, _):
                for view in self.views():
                    view.lines.delivered_room(msg_id, stored)
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
            case ev.RoomsState(rooms, invites):
                self._rooms_state(rooms, invites)
            case ev.RoomNotice(event):
                self._room_event(event)
            case ev.MarkersLoaded(markers):
                self._markers(markers)
            case ev.ReadMoved(peer, upto):
                self._read_elsewhere(peer, upto)
            case ev.TypingSeen(sender, to, state):
                self._typing(sender, to, state)
            case ev.RequestDone() | ev.RequestFailed() | ev.RoomsListed() | ev.UsersFound():
                self._answer(event)
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
                    self.system(f"disconnected: {reason}", style="error")
            case ev.Disconnected(reason, delay):
                self.state = RECONNECTING
                self.retry_at = self.clock() + delay
                self.status_note = reason
                self.system(
                    f"disconnected: {reason}; reconnecting in {math.ceil(delay)}s", style="error"
                )
            case ev.Stopped(reason):
                self._network_gone()
                if self.state != OFFLINE:  # normally a Disconnected already said why
                    self.system(f"connection stopped: {reason}", style="error")
                    self.state, self.status_note = OFFLINE, reason

    def _failed(self, reason: str) -> None:
        self.state = OFFLINE
        self.status_note = reason
        self.system(reason, style="error")
        self.want_login = True

    def _logged_in(
        self, user: str, online: tuple[str, ...], registered: bool, features: frozenset[str]
    ) -> None:
        again = self.state == RECONNECTING
        self.state, self.user, self.status_note = ONLINE, user, ""
        self.features = features
        self.directory.available = bool(features)  # a v1.2 server: it answers user_search
        self.directory.searched.clear()
        self._logged_in_as = user
        self.retry_at = None
        for view in self.views():
            view.lines.me = user
            view.lines.reconnected()
        self.participants.reset(online)
        self.directory.add(user, *online)
        met = self.looks.add(user, *online)
        what = "reconnected" if again else "registered and logged in" if registered else "logged in"
        others = ", ".join(map(self.looks.show, natural_sorted(online))) or "nobody else"
        note = self.history.note(f"{what} as {user}; online: {others}")
        # The first backfill goes on top; after that, what was missed goes before this note.
        if self.main.backlog.cursors[BROADCAST].loaded:
            self.main.lines.anchor_at(note)
        else:
            self.main.lines.anchor_at_top()
        for buffer in self.buffers:
            if buffer is not self.buffers.buffers[0]:
                buffer.lines.anchor_at(buffer.lines.note(f"{what} as {user}"))
            if buffer.kind != ROOM or ROOMS in features:
                self._ask(buffer.view, buffer.view.backlog.latest())
        self._say_look_alikes(met)
        self._refresh_people()
        if ROOMS in features:
            self.list_rooms_quietly()  # public rooms, for Tab
        current = self.current
        if current.private and not all(n in online for n in current.people):
            away = [n for n in current.people if n not in online]
            self.note(f"offline: {', '.join(away)} (messages are kept for them)")
        self.lookup("", "directory")

    def _know(self, *names: str) -> None:
        """Names seen: one that looks like a name already known is said, once."""
        self.directory.add(*names)
        self._say_look_alikes(self.looks.add(*names))

    def _say_look_alikes(self, met: list[tuple[str, list[str]]]) -> None:
        for name, others in met:
            self.note(
                f"look-alike names: {name} looks like {', '.join(others)}; each is marked "
                f"{MARK} (they differ only in {FOLDS}; /who lists them)",
                style="error",
            )

    def _know_message(self, msg: Msg) -> None:
        self._know(msg.sender, *(() if isinstance(msg.to, str) else msg.to))

    def _looking(self, buffer: Buffer) -> bool:
        return buffer is self.current and buffer.lines.following

    def _incoming(self, msg: Msg) -> None:
        self._know_message(msg)
        buffer = self._buffer_for(message_target(msg, self.user))
        if not buffer.lines.incoming(msg):
            if msg.offline:
                self._ack_offline(msg.id)
            return
        if msg.sender != self.user:
            self._spoke[msg.sender] = buffer.spoke[msg.sender] = msg.ts
            buffer.typing.pop(msg.sender, None)
            if is_for_me(msg, self.user):
                self._bell = True
            if not self._looking(buffer):
                self._unread(buffer, msg)
        if msg.offline:  # in the view now: the server may forget it
            self._ack_offline(msg.id)

    def _ack_offline(self, msg_id: int) -> None:
        self._ack_upto = msg_id if self._ack_upto is None else max(self._ack_upto, msg_id)

    def _unread(self, buffer: Buffer, msg: Msg) -> None:
        buffer.unread[msg.id] = conversation_of(msg, self.user)
        if is_for_me(msg, self.user):
            buffer.mentions.add(msg.id)

    def _page(self, request_id: MsgId, messages: tuple[Msg, ...], more: bool) -> None:
        for msg in messages:
            self._know_message(msg)
        for buffer in self.buffers:
            view = buffer.view
            released = view.backlog.answer(request_id, messages, more)
            if released is None:
                continue
            mine = [m for m in released if message_key(m, self.user) == buffer.key]
            new = [m for m in mine if m.id not in view.lines.ids]
            view.lines.merge(mine)
            self._banner(view)
            for msg in new:
                if msg.sender != self.user:
                    buffer.spoke[msg.sender] = max(buffer.spoke.get(msg.sender, 0.0), msg.ts)
            if READ in self.features and not self._looking(buffer):
                unread = [m for m in new if self._unread_by_marker(m)]
                for msg in unread:
                    self._unread(buffer, msg)
                if unread:
                    buffer.lines.mark_unread_from(min(m.id for m in unread))
                self._settle_base(buffer)
            if self._search is not None and self._search.buffer == buffer.key:
                self._search.waiting = False
                self._search_on()
            return

    def _unread_by_marker(self, msg: Msg) -> bool:
        if msg.sender == self.user:
            return False
        conversation = conversation_of(msg, self.user)
        return msg.id > self.markers.get(conversation, 0)

    def _settle_base(self, buffer: Buffer) -> None:
        """The server's counts, less the unread messages now loaded here."""
        for conv, (count, last) in list(buffer.base.items()):
            loaded = sum(1 for c in buffer.unread.values() if c == conv)
            left = count - loaded
            if left <= 0:
                del buffer.base[conv]
            else:
                buffer.base[conv] = (left, last)

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

    def _silent(self, spoke: dict[str, float], name: str) -> bool:
        """Not spoken for 10 minutes: a join or a leave of theirs is hidden."""
        last = spoke.get(name)
        return last is None or self.wall() - last > SMART_FILTER_SECONDS

    def _roster(self, joined: tuple[str, ...], left: tuple[str, ...]) -> None:
        self.participants.apply(joined, left)
        show = self.looks.show
        for name in joined:
            self.history.note(f"{show(name)} joined", hidden=self._silent(self._spoke, name))
            self._know(name)
        for name in left:
            self.history.note(f"{show(name)} left", hidden=self._silent(self._spoke, name))
        for name in (*joined, *left):
            buffer = self.buffers.get(name)
            if buffer is not None:
                state = "online" if name in joined else "offline (messages are kept for them)"
                buffer.lines.note(f"{show(name)} is {state}")
        self._refresh_people()

    def _rooms_state(self, rooms: tuple, invites: tuple) -> None:  # type: ignore[type-arg]
        self.rooms.load(rooms, invites)
        for state in rooms:
            self._know(*state.members)
            buffer = self._buffer_for(state.room)
            buffer.joined = True
        for buffer in self.buffers:
            if buffer.kind == ROOM and self.rooms.get(buffer.name) is None:
                buffer.joined = False
        for invite in invites:
            self.system(f"{invite.by} invited you to {invite.room} (/join {invite.room})")
        self._refresh_people()

    def _room_event(self, event: RoomEvent) -> None:
        change = self.rooms.apply(event)
        self._know(event.user)
        if change.invited:
            self.system(change.text)
            return
        key = room_key(event.room)
        buffer = self.buffers.get(key)
        if buffer is None and not change.me_in:
            return
        if buffer is None:
            buffer = self._buffer_for(event.room)
        hidden = change.quiet and self._silent(buffer.spoke, change.about)
        buffer.lines.note(change.text, ts=event.ts, hidden=hidden)
        if change.me_in:
            buffer.joined = True
            buffer.target = self.rooms.name_of(event.room)
        if change.me_out:
            buffer.joined = False
        if not hidden:
            self._stir(buffer)
        if buffer is self.current:
            self._refresh_people()

    def _markers(self, markers: tuple[Marker, ...]) -> None:
        for marker in markers:
            key = conversation_key(marker.peer)
            self.markers[key] = max(self.markers.get(key, 0), marker.upto)
        opened = 0
        for marker in markers:  # newest first
            if not marker.unread or marker.last <= marker.upto:
                continue
            key = conversation_key(marker.peer)
            if key != ALL_KEY and not is_room(marker.peer) and self.buffers.get(key) is None:
                opened += 1
                if opened > OPEN_AT_LOGIN:
                    continue  # the others open when they write again
            if key == ALL_KEY:
                buffer = self.buffers.buffers[0]
            elif is_room(marker.peer):
                found = self.buffers.get(key)
                if found is None:
                    continue
                buffer = found
            else:
                buffer = self._buffer_for((marker.peer,))
            if self._looking(buffer):
                continue
            for msg_id, entry in buffer.lines.ids.items():  # loaded before the markers came
                if msg_id > marker.upto and not entry.mine and entry.sender:
                    buffer.unread[msg_id] = key
            buffer.base[key] = (marker.unread, marker.last)
            self._settle_base(buffer)

    def _read_elsewhere(self, peer: str, upto: int) -> None:
        key = conversation_key(peer)
        self.markers[key] = max(self.markers.get(key, 0), upto)
        for buffer in self.buffers:
            if buffer.read_elsewhere(key, upto) and not buffer.unread_count():
                buffer.lines.read_upto(upto)

    def _typing(self, sender: str, to: str | tuple[str, ...], state: str) -> None:
        if isinstance(to, str) and is_room(to):
            key = room_key(to)
        elif isinstance(to, str):
            key = target_key((sender,), self.user)
        else:
            key = target_key((*to, sender), self.user)
        buffer = self.buffers.get(key)
        if buffer is None:
            return
        if state == "active":
            buffer.typing[sender] = self.clock() + TYPING_SHOWN
        else:
            buffer.typing.pop(sender, None)

    def _answer(
        self, event: ev.RequestDone | ev.RequestFailed | ev.RoomsListed | ev.UsersFound
    ) -> None:
        pending = self._pending.pop(event.id, None)
        if pending is None:
            return
        match event:
            case ev.UsersFound(_, prefix, users, more):
                self.directory.found(prefix, users, more)
                self._know(*users)
                self.directory_changed = True
            case ev.RoomsListed(_, rooms):
                for info in rooms:
                    self.rooms.listed(info)
                self._listed = {info.room for info in rooms}
                if pending.kind == "room_list":  # the user's /rooms (not one after a join)
                    self.want_rooms = rooms
            case ev.RequestFailed(_, _, Code.NO_SUCH_ROOM, _) if pending.kind == "join":
                self.want_create = pending.room
            case ev.RequestFailed(_, kind, code, message):
                if pending.kind in ("directory", "complete"):
                    return  # nothing the user asked for: Tab simply knows less
                if pending.kind == "lookup":
                    self.directory.searched.pop(pending.user.lower(), None)
                    self.directory_changed = True
                what = " ".join(x for x in (kind, pending.room, pending.user) if x)
                why = message if code is None else f"{message} ({code})"
                self.note(f"{what}: {why}", style="error")
            case ev.RequestDone(_, kind, room, user):
                self._done(kind, room, user, pending)

    def _done(self, kind: str, room: str, user: str, pending: _Pending) -> None:
        if kind in ("join", "room_create"):
            buffer = self.open_room(room, switch=pending.switch)
            buffer.joined = True
            if kind == "room_create":
                self.note(f"created {buffer.name}: you own it (/topic, /invite NAME)")
            self.list_rooms_quietly()
        elif kind == "leave":
            self.note(f"you left {room} (/close closes this buffer)")
        elif kind == "invite":
            self.note(f"invited {user} to {room}")
        elif kind == "kick":
            self.note(f"{user} is no longer in {room}")
        elif kind == "topic":
            pass  # the room_event says it

    def list_rooms_quietly(self) -> None:
        """A `room_list` to learn the public rooms (Tab completes them) and a room's topic,
        owner and member count (after a join: the protocol names a room's members only at
        login); no form opens for it."""
        self.request(lambda i: RoomListRequest(i), _Pending("room_list_quiet"))

    def take_room_list(self) -> tuple[RoomInfo, ...] | None:
        rooms, self.want_rooms = self.want_rooms, None
        return rooms

    def room_names(self) -> list[str]:
        """Rooms to complete with Tab: ours, and those of the last room list."""
        rooms = {r.name for r in self.rooms.rooms.values()} | self._listed
        rooms |= {b.name for b in self.buffers if b.kind == ROOM}
        return natural_sorted(rooms)


__all__ = [
    "BEGINNING",
    "CONNECTING",
    "GROUP",
    "LOADING",
    "OFFLINE",
    "ONLINE",
    "PERSON",
    "RECONNECTING",
    "AckOffline",
    "AskHistory",
    "ChatModel",
    "MarkRead",
    "SendRequest",
    "View",
    "Want",
    "refusal_text",
]
