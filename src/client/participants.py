"""The participants list as pure data: "All" on top, people, the selection, unread counts.

The selection is whom the next message goes to, and only the user changes
it: nobody leaving, no reconnect, no roster ever widens it. A selected
person who goes offline stays selected and stays in the list, shown as
offline (a message to them is stored by the server, protocol v1.1 section
3), so the prompt always names exactly who gets the text. Nothing selected
means "All". It is kept by name, not by row, so people joining and leaving
around it never shift it onto someone else.

Unread counts work like a query window's activity in irssi: messages to you
from a person (privately or in a group) count until you turn to that
person (select them, write to them, or open their history). Someone with
unread messages stays listed after going offline, until read.
"""

from __future__ import annotations

from collections.abc import Iterable

from chat.shared.messages import BROADCAST, Recipients

from .names import LookAlikes, natural_sorted
from .textwidth import ellipsize, text_width

ALL = "All"


class Participants:
    def __init__(self, looks: LookAlikes | None = None) -> None:
        #: Names that look alike are marked wherever they are shown (see `names`).
        self.looks = looks if looks is not None else LookAlikes()
        self.online: list[str] = []
        self.selected: set[str] = set()
        self.unread: dict[str, int] = {}
        self.cursor = 0  # row index; row 0 is "All"
        #: False while not connected: the list is the last one known, shown greyed.
        self.connected = False
        #: Whether a roster ever came: before the first login nobody is offline, just unknown.
        self.connected_once = False

    def rows(self) -> list[str]:
        return [ALL, *natural_sorted(set(self.online) | self.selected | set(self.unread))]

    def is_online(self, name: str) -> bool:
        return name in self.online

    def is_checked(self, row: int) -> bool:
        rows = self.rows()
        if row == 0:
            return not self.selected
        return 0 < row < len(rows) and rows[row] in self.selected

    # ------------------------------------------------------------ roster
    def reset(self, online: Iterable[str]) -> list[str]:
        """Replace who is online (a full roster); returns the selected people not online."""
        self._update(set(online))
        self.connected = self.connected_once = True
        return self.selected_offline()

    def apply(self, joined: Iterable[str], left: Iterable[str]) -> list[str]:
        """Apply a roster delta; returns the selected people among those who left."""
        gone = set(left)
        self._update((set(self.online) - gone) | set(joined))
        return sorted(self.selected & (gone - set(self.online)))

    def disconnected(self) -> None:
        """The connection is gone: the list stays (greyed) until the next login says more."""
        self.connected = False

    def clear(self) -> None:
        """Logged out: nobody is known to be online; the selection stays."""
        self._update(set())
        self.connected = False

    def forget(self) -> None:
        """Another user logs in in this window: nothing of the last one's stays."""
        self.selected.clear()
        self.unread.clear()
        self._update(set())

    def selected_offline(self) -> list[str]:
        return sorted(self.selected - set(self.online))

    def _update(self, names: set[str]) -> None:
        rows = self.rows()
        under_cursor = rows[self.cursor] if self.cursor < len(rows) else ALL
        self.online = sorted(names)
        rows = self.rows()
        if under_cursor in rows:
            self.cursor = rows.index(under_cursor)
        else:
            self.cursor = min(self.cursor, len(rows) - 1)

    # ---------------------------------------------------------- keyboard
    def move(self, delta: int) -> None:
        self.cursor = max(0, min(len(self.rows()) - 1, self.cursor + delta))

    def toggle(self, row: int | None = None) -> None:
        """Space on a row: "All" clears the selection; a person is added or removed."""
        rows = self.rows()
        row = self.cursor if row is None else row
        if row == 0:
            self.selected.clear()
        elif 0 < row < len(rows):
            name = rows[row]
            if name in self.selected:
                self.selected.discard(name)
            else:
                self.selected.add(name)
                self.read(name)
            self._keep_cursor_on(name)

    def select_only(self, row: int | None = None) -> None:
        """Enter on a row: only that person (or "All": nobody) selected."""
        rows = self.rows()
        row = self.cursor if row is None else row
        name = rows[row] if 0 <= row < len(rows) else ALL
        self.select(() if name == ALL else (name,))

    def select(self, names: Iterable[str]) -> None:
        """Exactly these people (none: everyone), online or not; their messages are read."""
        under_cursor = self.rows()[self.cursor] if self.cursor < len(self.rows()) else ALL
        self.selected = set(names)
        self.read(*self.selected)
        self._keep_cursor_on(under_cursor)

    def _keep_cursor_on(self, name: str) -> None:
        rows = self.rows()
        self.cursor = rows.index(name) if name in rows else min(self.cursor, len(rows) - 1)

    # ----------------------------------------------------------- unread
    def add_unread(self, name: str) -> None:
        self.unread[name] = self.unread.get(name, 0) + 1

    def read(self, *names: str) -> None:
        for name in names:
            self.unread.pop(name, None)

    # ------------------------------------------------------- recipients
    def recipients(self) -> Recipients:
        """What a message typed now goes to: "*" or the selected names, sorted."""
        return tuple(sorted(self.selected)) if self.selected else BROADCAST

    def describe(self, names: Iterable[str]) -> str:
        """Names for people, each offline one marked: "bob, carol (offline)"."""
        show = self.looks.show
        return ", ".join(
            show(name)
            if self.is_online(name) or not self.connected_once
            else f"{show(name)} (offline)"
            for name in names
        )

    def describe_target(self) -> str:
        to = self.recipients()
        return "all" if to == BROADCAST else self.describe(to)

    def label(self, row: int, width: int | None = None) -> str:
        """A row's text after its checkbox: the name (marked when it looks like another),
        its unread count, offline or not. In `width` columns a long name is cut with "…"
        and what follows it stays whole."""
        rows = self.rows()
        name = rows[row]
        if row == 0:
            return name
        marks = []
        if self.unread.get(name):
            marks.append(str(self.unread[name]))
        if self.connected_once and not self.is_online(name):
            marks.append("offline")
        shown = self.looks.show(name)
        tail = f" ({', '.join(marks)})" if marks else ""
        if width is None or text_width(shown + tail) <= width:
            return shown + tail
        room = width - text_width(tail)
        if room < 4:  # no room for the name and its marks: the name comes first
            return ellipsize(shown + tail, width)
        return ellipsize(shown, room) + tail
