"""The message history as pure data, and how it is laid out in lines.

Entries keep what happened (who, to whom, what, and for our own messages
what the server answered); `window()` turns them into wrapped screen lines
for a given width, newest at the bottom. The view either follows the newest
line or, once scrolled up, is pinned to the line at its bottom: new lines
below it and older pages above it never move what the user is reading, and
the count of lines below is exact. A "new messages" line marks the first
message that arrived while the user was not looking at the newest line
(scrolled up, or in another view), as WeeChat's read marker does.

Messages from the server are merged by id, so the same message shown live,
from the offline queue and in a history page is one line. A page that is
newer than everything shown goes before `anchor` (the note of the login
that asked for it); an older one goes above the oldest message.

A message of several lines is shown with each of its lines under the first,
indented as a wrapped line is. An action (`/me waves`, see `actions`) is
shown `* alice waves`. Joins and leaves of people who have not spoken
lately are kept but hidden (`hidden`, WeeChat's smart filter) while
`hide_smart` is on. A line found by a search is marked (`found`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chat.shared.messages import BROADCAST, Msg, MsgId, Recipients
from chat.shared.rooms import is_room

from .actions import action_text
from .attention import mentions
from .names import LookAlikes
from .textwidth import printable, wrap

TIME_WIDTH = 9  # "HH:MM:SS "
#: The mark of a message that was stored while we were offline.
AWAY = "(while you were away)"
#: The line above the first message that arrived while the user was not looking.
UNREAD = "-- new messages --"
#: The status of our own message typed while the connection is down.
WAITING = "queued until reconnected"
#: The status of our own message to a room once the server has it (no name lists: members
#: who are offline read it from the room's history).
ROOM_SENT = "sent"


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def day(ts: float) -> str:
    """The local date of `ts`, as on a separator line (no locale: always the same words)."""
    return time.strftime("%a %Y-%m-%d", time.localtime(ts))


def day_separator(ts: float) -> str:
    return f"-- {day(ts)} --"


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    style: str  # normal | own | private | mention | note | error | more | day | unread | found
    #: The entry this line belongs to (None: the banner), and its index in the entry's block
    #: (date separator, marker, then the wrapped text): what a pinned view holds on to.
    entry: Entry | None = field(default=None, compare=False, repr=False)
    part: int = field(default=0, compare=False)
    #: Where the sender's name is in `text` (start, end: character offsets), to draw it in
    #: the sender's colour; None on lines without it.
    nick: tuple[int, int] | None = field(default=None, compare=False)


@dataclass(slots=True)
class Entry:
    ts: float
    style: str
    head: str  # everything before the text: marker and sender
    text: str
    status: str = ""  # own messages: what the server said about them
    msg_id: int | None = None  # the server's id, for messages it sent us (or returned)
    to: Recipients | None = None  # own messages: the recipients as sent
    mine: bool = False
    away: bool = False  # delivered from the offline queue
    sender: str = ""  # who wrote it (messages only)
    #: The names in `head`, and `head` with `{0}`, `{1}`... in their places: drawn with the
    #: names as `LookAlikes.show` gives them at the time (a look-alike may come later).
    names: tuple[str, ...] = ()
    template: str = ""
    #: A join or a leave of someone who has not spoken lately: hidden by the smart filter.
    hidden: bool = False
    raw: str = ""  # own messages: the text as sent (an action's `/me ...` too)
    #: Caches: a window is laid out at every key and every event, over thousands of entries.
    _wrapped: tuple[str, int, list[str]] | None = field(default=None, compare=False, repr=False)
    _rendered: tuple[str, bool, int, str] | None = field(default=None, compare=False, repr=False)
    _nick: tuple[int, int] | None = field(default=None, compare=False, repr=False)
    _day: str = field(default="", compare=False, repr=False)

    @property
    def day(self) -> str:
        if not self._day:
            self._day = day(self.ts)
        return self._day

    def wrapped(self, width: int, looks: LookAlikes | None = None) -> list[str]:
        """The rows of the entry at `width` columns: each line of the text under the first,
        indented as a wrapped row is."""
        text = self.render(looks)
        cached = self._wrapped
        if cached is None or cached[0] is not text or cached[1] != width:
            first, *more = text.split("\n")
            rows = wrap(first, width, TIME_WIDTH)
            for line in more:
                rows += wrap(" " * TIME_WIDTH + line, width, TIME_WIDTH)
            cached = self._wrapped = (text, width, rows)
        return cached[2]

    def nick_span(self, looks: LookAlikes | None = None) -> tuple[int, int] | None:
        """Where the sender's name is in the first row (character offsets)."""
        self.render(looks)
        return self._nick

    def render(self, looks: LookAlikes | None = None) -> str:
        """The entry as one line of text (the same object while nothing changed)."""
        version = looks.version if looks is not None and self.names else 0
        cached = self._rendered
        if (
            cached is not None
            and cached[0] == self.status
            and cached[1] == self.away
            and cached[2] == version
        ):
            return cached[3]
        tail = f"  [{self.status}]" if self.status else ""
        if self.away:
            tail += f"  {AWAY}"
        head = self.head
        shown = self.names
        if looks is not None and self.names:
            shown = tuple(map(looks.show, self.names))
            head = self.template.format(*shown)
        lines = self.text.split("\n")
        body = "\n".join(printable(line) for line in lines)
        text = f"{clock(self.ts)} {head}{body}{tail}"
        self._nick = None
        if self.sender and shown:  # the sender is the template's last name
            before = self.template[: self.template.rindex("{")].format(*shown)
            start = len(clock(self.ts)) + 1 + len(before)
            self._nick = (start, start + len(shown[-1]))
        self._rendered = (self.status, self.away, version, text)
        return text


def delivery_status(
    delivered: Iterable[str], missing: Iterable[str], queued: Iterable[str] = ()
) -> tuple[str, bool]:
    """What a `sent` means for people, and whether it is bad news.

    A queued name (registered, offline: stored for them) is in `missing` on
    the wire too; it is shown as queued, and only the others as missing.
    """
    stored = sorted(set(queued))
    lost = sorted(set(missing) - set(stored))
    got = sorted(set(delivered))
    parts = []
    if got:
        parts.append(f"delivered: {', '.join(got)}")
    if stored:
        parts.append(f"queued for {', '.join(stored)} (offline)")
    if lost:
        parts.append(f"missing: {', '.join(lost)}")
    if not parts:
        return "nobody else online", False
    return " | ".join(parts), bool(lost) and not got and not stored


@dataclass(slots=True)
class History:
    me: str = ""
    limit: int = 2000
    entries: deque[Entry] = field(default_factory=deque)
    own: dict[MsgId, Entry] = field(default_factory=dict)
    ids: dict[int, Entry] = field(default_factory=dict)  # server message ids shown
    #: Hide the entries the smart filter marks (`/filter` turns it off and on).
    hide_smart: bool = True
    found: Entry | None = None  # the entry a search jumped to (shown marked)
    #: The line at the bottom of the view while scrolled up; None: following the newest.
    pin: tuple[Entry, int] | None = None
    anchor: Entry | None = None  # newer history goes before this entry (None: at the end)
    title: str = ""  # shown above the lines when not empty (a conversation view)
    banner: str = ""  # the top line, above the oldest entry ("loading older messages")
    at_top: bool = False  # the last window() reached the oldest line
    older_wanted: bool = False  # the user scrolled up past the oldest line
    on_screen: bool = True  # this view is the one shown (the model says)
    looks: LookAlikes | None = None  # marks names that look alike (the model's, shared)
    unread_mark: Entry | None = None  # the "new messages" line goes above this entry
    _seen_since_mark: bool = True  # the newest line was in view after the mark was set
    _scroll: int = 0  # lines to move the view by at the next window(); positive: back in time
    _lines_below: int = 0

    def _add(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        while len(self.entries) > self.limit:
            self._forget(self.entries.popleft())
        return entry

    def _forget(self, old: Entry) -> None:
        if old is self.found:
            self.found = None
        self.own = {k: v for k, v in self.own.items() if v is not old}
        if old.msg_id is not None:
            self.ids.pop(old.msg_id, None)
        if old is self.anchor:
            self.anchor = None
        if old is self.unread_mark:
            self.unread_mark = None
        if self.pin is not None and self.pin[0] is old:
            self.pin = (self.entries[0], 0) if self.entries else None

    # --------------------------------------------------------------- adding
    def note(
        self, text: str, ts: float | None = None, style: str = "note", hidden: bool = False
    ) -> Entry:
        """A line of our own (`* text`); `hidden`: one the smart filter hides."""
        entry = Entry(ts if ts is not None else time.time(), style, "* ", text, hidden=hidden)
        return self._add(entry)

    def shown_entries(self) -> Iterable[Entry]:
        """The entries on screen: all, or without the hidden ones while the filter is on."""
        if not self.hide_smart:
            return self.entries
        return (e for e in self.entries if not e.hidden)

    def clear(self) -> None:
        """`/clear`: nothing shown any more (what was shown stays known by id: a repeat of an
        old message is not shown again; scrolling up fetches the older ones again)."""
        self.entries.clear()
        self.own.clear()
        self.anchor = self.unread_mark = self.found = None
        self.pin, self._scroll = None, 0
        self._seen_since_mark = True

    @property
    def newest_id(self) -> int:
        """The highest server id shown (0: none)."""
        return max(self.ids, default=0)

    def anchor_at(self, entry: Entry | None) -> None:
        """History newer than what is shown will go before `entry` (None: at the end)."""
        self.anchor = entry

    def anchor_at_top(self) -> None:
        self.anchor = self.entries[0] if self.entries else None

    def incoming(self, msg: Msg) -> bool:
        """A message delivered to us (live or offline); False when it is already shown."""
        if msg.id in self.ids:
            return False
        entry = self._add(self._message_entry(msg))
        self.ids[msg.id] = entry
        if msg.sender != self.me and not self.looking:
            self._unseen(entry)
        return True

    @property
    def looking(self) -> bool:
        """Whether the newest line is in front of the user (on screen, not scrolled up)."""
        return self.on_screen and self.pin is None

    def _unseen(self, entry: Entry) -> None:
        if self.unread_mark is None or self._seen_since_mark:
            self.unread_mark, self._seen_since_mark = entry, False

    def all_read(self) -> None:
        """The user wrote something: everything above is read, the marker goes."""
        self.unread_mark, self._seen_since_mark = None, True

    def mark_unread_from(self, msg_id: int) -> None:
        """The "new messages" line above message `msg_id` (read markers said so), unless it
        stands above an older one already."""
        entry = self.ids.get(msg_id)
        if entry is None:
            return
        mark = self.unread_mark
        if mark is None or (mark.msg_id is not None and mark.msg_id > msg_id):
            self.unread_mark, self._seen_since_mark = entry, False

    def read_upto(self, upto: int) -> None:
        """Read elsewhere (another session) up to `upto`: a marker above that goes."""
        mark = self.unread_mark
        if mark is not None and mark.msg_id is not None and mark.msg_id <= upto:
            newer = [e for e in self.entries if e.msg_id is not None and e.msg_id > upto]
            unread = [e for e in newer if not e.mine]
            self.unread_mark = unread[0] if unread else None
            self._seen_since_mark = not unread

    def outgoing(
        self,
        msg_id: MsgId,
        to: Recipients,
        text: str,
        ts: float | None = None,
        status: str = "sending",
    ) -> None:
        action = action_text(text)
        entry = Entry(
            ts if ts is not None else time.time(),
            "own",
            text=text if action is None else action,
            status=status,
            to=to,
            mine=True,
            sender=self.me,
            **_head(*_own_marker(to), self.me, action is not None),
        )
        entry.raw = text
        self.own[msg_id] = self._add(entry)

    def delivered_room(self, msg_id: MsgId, stored: int) -> None:
        """The server's `sent` for our message to a room: it is stored, with that id."""
        entry = self.own.pop(msg_id, None)
        if entry is None:
            return
        entry.status = ROOM_SENT
        self._takes_id(entry, stored)

    def _takes_id(self, entry: Entry, stored: int | None) -> None:
        """Our own line is the message `stored` (v1.2 `sent.msg_id`): a page or an echo of
        it is the same line."""
        if stored is not None and stored not in self.ids:
            entry.msg_id = stored
            self.ids[stored] = entry

    def reconnected(self) -> None:
        """Messages that waited for the connection are being sent now."""
        for entry in self.own.values():
            if entry.status == WAITING:
                entry.status = "sending"

    def gave_up(self, reason: str) -> None:
        """No connection will come back (logged out, or the login refused): what waited for
        it is not sent, and says so."""
        for msg_id, entry in list(self.own.items()):
            if entry.status == WAITING:
                entry.status, entry.style = f"not sent: {reason}", "error"
                del self.own[msg_id]

    def merge(self, messages: Iterable[Msg]) -> int:
        """Put history messages in place by id; returns how many lines are new.

        One of our own messages that is already shown (sent from this
        screen, so without a server id) takes the id instead of a second
        line: the oldest shown one with the same recipients and text.
        """
        added = 0
        for msg in sorted(messages, key=lambda m: m.id):
            if msg.id in self.ids:
                continue
            if msg.sender == self.me and (mine := self._unmatched_own(msg)) is not None:
                mine.msg_id = msg.id
                self.ids[msg.id] = mine
                continue
            entry = self._message_entry(msg)
            self.entries.insert(self._place(msg.id), entry)
            self.ids[msg.id] = entry
            added += 1
        self.limit += added  # asked for: not dropped again by the next live line
        return added

    def _place(self, msg_id: int) -> int:
        """Before the first message with a greater id, and never after the anchor."""
        end = len(self.entries)
        if self.anchor is not None:
            end = self.entries.index(self.anchor)
        for i, entry in enumerate(self.entries):
            if i >= end:
                break
            if entry.msg_id is not None and entry.msg_id > msg_id:
                return i
        return end

    def _unmatched_own(self, msg: Msg) -> Entry | None:
        for entry in self.entries:
            if (
                entry.mine
                and entry.msg_id is None
                and entry.to == msg.to
                and (entry.raw or entry.text) == msg.text
            ):
                return entry
        return None

    def _message_entry(self, msg: Msg) -> Entry:
        action = action_text(msg.text)
        text = msg.text if action is None else action
        if msg.sender == self.me:  # our own: from a history page, or from another session
            head = _head(*_own_marker(msg.to), self.me, action is not None)
            return Entry(
                msg.ts, "own", text=text, msg_id=msg.id, to=msg.to, mine=True,
                sender=self.me, **head,
            )  # fmt: skip
        if msg.to == BROADCAST or is_room(msg.to):
            head = _head("", (), msg.sender, action is not None)
            style = "mention" if mentions(msg.text, self.me) else "normal"
        elif tuple(msg.to) == (self.me,):
            head, style = _head("[private] ", (), msg.sender, action is not None), "private"
        else:
            marker = _own_marker(msg.to, "group")
            head, style = _head(*marker, msg.sender, action is not None), "private"
        return Entry(
            msg.ts, style, text=text, msg_id=msg.id, away=msg.offline, sender=msg.sender,
            **head,
        )  # fmt: skip

    # ------------------------------------------------------- own messages
    def delivered(
        self,
        msg_id: MsgId,
        delivered: Iterable[str],
        missing: Iterable[str],
        queued: Iterable[str] = (),
        stored: int | None = None,
    ) -> None:
        entry = self.own.pop(msg_id, None)
        if entry is None:
            return
        entry.status, bad = delivery_status(delivered, missing, queued)
        if bad:
            entry.style = "error"
        self._takes_id(entry, stored)

    def refused(self, msg_id: MsgId, message: str) -> None:
        entry = self.own.pop(msg_id, None)
        if entry is not None:
            entry.status = f"not sent: {message}"
            entry.style = "error"

    def unconfirmed(self, ids: Iterable[MsgId]) -> None:
        for msg_id in ids:
            entry = self.own.pop(msg_id, None)
            if entry is not None:
                entry.status = "not confirmed: connection lost"
                entry.style = "error"

    # -------------------------------------------------------------- layout
    def layout(self, width: int) -> list[Line]:
        """Every line at `width` columns, oldest first: the banner, then each entry's block
        (its date separator when the day changes, the unread marker, its wrapped text)."""
        lines = [self._banner_line(width)] if self.banner else []
        previous_day = None
        for entry in self.shown_entries():
            lines += self._block(entry, previous_day, width)
            previous_day = entry.day
        return lines

    def _banner_line(self, width: int) -> Line:
        return Line(clip_line(f"-- {self.banner} --", width), "more")

    def _block(self, entry: Entry, previous_day: str | None, width: int) -> list[Line]:
        heads: list[tuple[str, str]] = []
        if entry.day != previous_day:
            heads.append((clip_line(day_separator(entry.ts), width), "day"))
        if entry is self.unread_mark:
            heads.append((clip_line(UNREAD, width), "unread"))
        style = "found" if entry is self.found else entry.style
        rows = entry.wrapped(width, self.looks)
        lines = [Line(text, kind, entry, part) for part, (text, kind) in enumerate(heads)]
        nick = entry.nick_span(self.looks)
        for i, text in enumerate(rows):
            span = nick if i == 0 and nick is not None and nick[1] <= len(text) else None
            lines.append(Line(text, style, entry, len(heads) + i, span))
        return lines

    def _block_size(self, entry: Entry, previous_day: str | None, width: int) -> int:
        extra = (entry.day != previous_day) + (entry is self.unread_mark)
        return extra + len(entry.wrapped(width, self.looks))

    def window(self, width: int, height: int) -> list[Line]:
        """The `height` lines to show at `width` columns, newest at the bottom.

        Scrolled up, the bottom row says how many lines are below it (exactly,
        the rows it takes included) and the view stays pinned to the line
        above it, whatever arrives. Only the lines shown are made; the others
        are counted (each entry keeps its wrapped lines for the width).
        """
        if height <= 0 or width <= 0:
            return []
        total = 1 if self.banner else 0
        pinned: int | None = None  # one past the pinned line
        previous_day = None
        for entry in self.shown_entries():
            size = self._block_size(entry, previous_day, width)
            previous_day = entry.day
            if self.pin is not None and entry is self.pin[0]:
                pinned = total + min(self.pin[1], size - 1) + 1
            total += size
        end = total if pinned is None else pinned
        end -= self._scroll
        self._scroll = 0
        rows = height if end >= total else height - 1
        # Never fewer lines than fit: near the top the view starts at the oldest line.
        end = max(end, min(total, rows))
        if end >= total:
            end, rows = total, height
        start = max(0, end - rows)
        shown = self._lines(width, start, end)
        self.at_top = start == 0
        self._lines_below = total - end
        if end >= total:
            self.pin = None
            if self.on_screen:
                self._seen_since_mark = True
        else:
            bottom = shown[-1]
            self.pin = (bottom.entry, bottom.part) if bottom.entry is not None else None
            below = self._lines_below
            plural = "" if below == 1 else "s"
            shown.append(Line(f"-- {below} more line{plural} below (End) --", "more"))
        return shown

    def _lines(self, width: int, start: int, end: int) -> list[Line]:
        """Lines `start` to `end` of `layout(width)`, without making the others."""
        out: list[Line] = []
        position = 0
        if self.banner:
            if start == 0 and end > 0:
                out.append(self._banner_line(width))
            position = 1
        previous_day = None
        for entry in self.shown_entries():
            if position >= end:
                break
            size = self._block_size(entry, previous_day, width)
            if position + size > start:
                block = self._block(entry, previous_day, width)
                out += block[max(0, start - position) : end - position]
            position += size
            previous_day = entry.day
        return out

    @property
    def lines_below(self) -> int:
        """Lines below the view at the last window() (0 when following the newest)."""
        return self._lines_below

    def scroll_by(self, delta: int) -> None:
        """Positive scrolls back in time; the next `window()` moves the view and clamps.

        Going up once more when the oldest line is in view asks for older
        history (`older_wanted`) and stays put: the older page goes in above
        the lines shown, which keep their place (the view is pinned).
        """
        if delta > 0 and self.at_top and self._scroll <= 0:
            self.older_wanted = True
            return
        self._scroll += delta

    def scroll_to_end(self) -> None:
        self.pin, self._scroll = None, 0

    @property
    def following(self) -> bool:
        return self.pin is None and self._scroll <= 0


def clip_line(text: str, width: int) -> str:
    return printable(text)[:width]


def _own_marker(to: Recipients, group: str = "") -> tuple[str, tuple[str, ...]]:
    """The marker before the sender as a template and its names: `[private to {0}] `, or
    `[group: {0}, {1}] ` (always a group when `group` is set: a message to us and others);
    none for everyone or a room (the buffer says which)."""
    if to == BROADCAST or is_room(to):
        return "", ()
    names = tuple(to)
    if len(names) == 1 and not group:
        return "[private to {0}] ", names
    return "[group: " + ", ".join(f"{{{i}}}" for i in range(len(names))) + "] ", names


def _head(marker: str, names: tuple[str, ...], sender: str, action: bool = False) -> dict[str, Any]:
    """An entry's head (plain), its names and its template: the marker, then the sender
    (`* alice ` for an action, `alice: ` otherwise)."""
    template = f"{marker}* {{{len(names)}}} " if action else f"{marker}{{{len(names)}}}: "
    everyone = (*names, sender)
    return {"head": template.format(*everyone), "names": everyone, "template": template}
