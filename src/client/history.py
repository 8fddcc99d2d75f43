"""The message history as pure data, and how it is laid out in lines.

Entries keep what happened (who, to whom, what, and for our own messages
what the server answered); `window()` turns them into wrapped screen lines
for a given width, newest at the bottom, with a scroll offset counted in
lines from the bottom (0 follows new messages).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from chat.shared.messages import BROADCAST, Msg, MsgId, Recipients

from .textwidth import printable, wrap

TIME_WIDTH = 9  # "HH:MM:SS "


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    style: str  # normal | own | private | note | error | more


@dataclass(slots=True)
class Entry:
    ts: float
    style: str
    head: str  # everything before the text: marker and sender
    text: str
    status: str = ""  # own messages: what the server said about them

    def render(self) -> str:
        tail = f"  [{self.status}]" if self.status else ""
        return f"{clock(self.ts)} {self.head}{printable(self.text)}{tail}"


@dataclass(slots=True)
class History:
    me: str = ""
    limit: int = 2000
    entries: deque[Entry] = field(default_factory=deque)
    own: dict[MsgId, Entry] = field(default_factory=dict)
    scroll: int = 0  # lines scrolled up from the bottom

    def _add(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        while len(self.entries) > self.limit:
            old = self.entries.popleft()
            self.own = {k: v for k, v in self.own.items() if v is not old}
        return entry

    # --------------------------------------------------------------- adding
    def note(self, text: str, ts: float | None = None, style: str = "note") -> None:
        self._add(Entry(ts if ts is not None else time.time(), style, "* ", text))

    def incoming(self, msg: Msg) -> None:
        if msg.to == BROADCAST:
            head, style = f"{msg.sender}: ", "normal"
        elif tuple(msg.to) == (self.me,):
            head, style = f"[private] {msg.sender}: ", "private"
        else:
            head, style = f"[group: {', '.join(msg.to)}] {msg.sender}: ", "private"
        self._add(Entry(msg.ts, style, head, msg.text))

    def outgoing(self, msg_id: MsgId, to: Recipients, text: str, ts: float | None = None) -> None:
        if to == BROADCAST:
            marker = ""
        elif len(to) == 1:
            marker = f"[private to {to[0]}] "
        else:
            marker = f"[group: {', '.join(to)}] "
        entry = Entry(
            ts if ts is not None else time.time(), "own", f"{marker}{self.me}: ", text, "sending"
        )
        self.own[msg_id] = self._add(entry)

    # ------------------------------------------------------- own messages
    def delivered(self, msg_id: MsgId, delivered: Iterable[str], missing: Iterable[str]) -> None:
        entry = self.own.pop(msg_id, None)
        if entry is None:
            return
        got, lost = ", ".join(sorted(delivered)), ", ".join(sorted(missing))
        if got and lost:
            entry.status = f"delivered: {got} | missing: {lost}"
        elif got:
            entry.status = f"delivered: {got}"
        elif lost:
            entry.status = f"missing: {lost}"
            entry.style = "error"
        else:
            entry.status = "nobody else online"

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
        """The `height` lines to show at `width` columns, honouring (and clamping) the scroll."""
        if height <= 0 or width <= 0:
            return []
        needed = height + self.scroll
        newest_first: list[Line] = []
        for entry in reversed(self.entries):
            wrapped = wrap(entry.render(), width, TIME_WIDTH)
            newest_first.extend(Line(text, entry.style) for text in reversed(wrapped))
            if len(newest_first) >= needed:
                break
        lines = newest_first[::-1]
        self.scroll = max(0, min(self.scroll, len(lines) - height))
        end = len(lines) - self.scroll
        shown = lines[max(0, end - height) : end]
        if self.scroll and shown:
            shown[-1] = Line(f"-- {self.scroll} more lines below (End) --", "more")
        return shown

    def scroll_by(self, delta: int) -> None:
        """Positive scrolls back in time; `window()` clamps at the oldest line."""
        self.scroll = max(0, self.scroll + delta)

    def scroll_to_end(self) -> None:
        self.scroll = 0
