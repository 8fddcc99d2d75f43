"""The message history as pure data, and how it is laid out in lines.

Entries keep what happened (who, to whom, what, and for our own messages
what the server answered); `window()` turns them into wrapped screen lines
for a given width, newest at the bottom, with a scroll offset counted in
lines from the bottom (0 follows new messages). Counting from the bottom is
what keeps the user's place when an older page is put in above.

Messages from the server are merged by id, so the same message shown live,
from the offline queue and in a history page is one line. A page that is
newer than everything shown goes before `anchor` (the note of the login
that asked for it); an older one goes above the oldest message.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from chat.shared.messages import BROADCAST, Msg, MsgId, Recipients

from .textwidth import printable, wrap

TIME_WIDTH = 9  # "HH:MM:SS "
#: The mark of a message that was stored while we were offline.
AWAY = "(while you were away)"


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
    style: str  # normal | own | private | note | error | more | day


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

    def render(self) -> str:
        tail = f"  [{self.status}]" if self.status else ""
        if self.away:
            tail += f"  {AWAY}"
        return f"{clock(self.ts)} {self.head}{printable(self.text)}{tail}"


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
    scroll: int = 0  # lines scrolled up from the bottom
    anchor: Entry | None = None  # newer history goes before this entry (None: at the end)
    title: str = ""  # shown above the lines when not empty (a conversation view)
    banner: str = ""  # the top line, above the oldest entry ("loading older messages")
    at_top: bool = False  # the last window() reached the oldest line
    older_wanted: bool = False  # the user scrolled up past the oldest line

    def _add(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        while len(self.entries) > self.limit:
            self._forget(self.entries.popleft())
        return entry

    def _forget(self, old: Entry) -> None:
        self.own = {k: v for k, v in self.own.items() if v is not old}
        if old.msg_id is not None:
            self.ids.pop(old.msg_id, None)
        if old is self.anchor:
            self.anchor = None

    # --------------------------------------------------------------- adding
    def note(self, text: str, ts: float | None = None, style: str = "note") -> Entry:
        return self._add(Entry(ts if ts is not None else time.time(), style, "* ", text))

    def anchor_at(self, entry: Entry | None) -> None:
        """History newer than what is shown will go before `entry` (None: at the end)."""
        self.anchor = entry

    def anchor_at_top(self) -> None:
        self.anchor = self.entries[0] if self.entries else None

    def incoming(self, msg: Msg) -> bool:
        """A message delivered to us (live or offline); False when it is already shown."""
        if msg.id in self.ids:
            return False
        self.ids[msg.id] = self._add(self._message_entry(msg))
        return True

    def outgoing(self, msg_id: MsgId, to: Recipients, text: str, ts: float | None = None) -> None:
        entry = Entry(
            ts if ts is not None else time.time(),
            "own",
            f"{_own_marker(to)}{self.me}: ",
            text,
            "sending",
            to=to,
            mine=True,
        )
        self.own[msg_id] = self._add(entry)

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
                and entry.text == msg.text
            ):
                return entry
        return None

    def _message_entry(self, msg: Msg) -> Entry:
        if msg.sender == self.me:  # our own, from a history page
            head, style = f"{_own_marker(msg.to)}{self.me}: ", "own"
            return Entry(msg.ts, style, head, msg.text, msg_id=msg.id, to=msg.to, mine=True)
        if msg.to == BROADCAST:
            head, style = f"{msg.sender}: ", "normal"
        elif tuple(msg.to) == (self.me,):
            head, style = f"[private] {msg.sender}: ", "private"
        else:
            head, style = f"[group: {', '.join(msg.to)}] {msg.sender}: ", "private"
        return Entry(msg.ts, style, head, msg.text, msg_id=msg.id, away=msg.offline)

    # ------------------------------------------------------- own messages
    def delivered(
        self,
        msg_id: MsgId,
        delivered: Iterable[str],
        missing: Iterable[str],
        queued: Iterable[str] = (),
    ) -> None:
        entry = self.own.pop(msg_id, None)
        if entry is None:
            return
        entry.status, bad = delivery_status(delivered, missing, queued)
        if bad:
            entry.style = "error"

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
    def window(self, width: int, height: int) -> list[Line]:
        """The `height` lines to show at `width` columns, honouring (and clamping) the scroll.

        A separator line with the date goes above the first entry and above
        every entry whose local day differs from the one before it.
        """
        if height <= 0 or width <= 0:
            return []
        needed = height + self.scroll
        newest_first: list[Line] = []
        entries = self.entries
        complete = True
        for i in range(len(entries) - 1, -1, -1):
            entry = entries[i]
            wrapped = wrap(entry.render(), width, TIME_WIDTH)
            newest_first.extend(Line(text, entry.style) for text in reversed(wrapped))
            if i == 0 or day(entries[i - 1].ts) != day(entry.ts):
                newest_first.append(Line(printable(day_separator(entry.ts))[:width], "day"))
            if len(newest_first) >= needed and i > 0:
                complete = False
                break
        if complete and self.banner:
            newest_first.append(Line(f"-- {self.banner} --", "more"))
        lines = newest_first[::-1]
        self.scroll = max(0, min(self.scroll, len(lines) - height))
        self.at_top = complete and self.scroll >= len(lines) - height
        end = len(lines) - self.scroll
        shown = lines[max(0, end - height) : end]
        if self.scroll and shown:
            shown[-1] = Line(f"-- {self.scroll} more lines below (End) --", "more")
        return shown

    def scroll_by(self, delta: int) -> None:
        """Positive scrolls back in time; `window()` clamps at the oldest line.

        Going up once more from there asks for older history (`older_wanted`)
        and stays put: the older page goes in above the lines shown, which
        keep their place (the scroll counts from the bottom).
        """
        if delta > 0 and self.at_top:
            self.older_wanted = True
            return
        self.scroll = max(0, self.scroll + delta)

    def scroll_to_end(self) -> None:
        self.scroll = 0


def _own_marker(to: Recipients) -> str:
    if to == BROADCAST:
        return ""
    if len(to) == 1:
        return f"[private to {to[0]}] "
    return f"[group: {', '.join(to)}] "
