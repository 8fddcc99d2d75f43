"""The participant list as pure data: the current buffer's people, and ticks to form a group.

The top row names the current buffer (`All`, `#dev`, `bob`, `bob, carol`); below it
are its people: in All everyone online, in a room its members (online first), in
a person's or a group's buffer those people. Each row has a checkbox. Ticking
people (Space) and leaving the list opens the buffer of the ticked people, one
person's or a group's; Enter on a person with nothing ticked opens theirs. The
top row is ticked while nobody is: what is typed goes to the buffer.

Who is online is kept here too (the roster), with whether the connection is
up: while it is down the list is the last one known, shown greyed.
"""

from __future__ import annotations

from collections.abc import Iterable

from .names import LookAlikes, natural_sorted
from .textwidth import ellipsize, text_width

ALL = "All"


class Participants:
    def __init__(self, looks: LookAlikes | None = None) -> None:
        #: Names that look alike are marked wherever they are shown (see `names`).
        self.looks = looks if looks is not None else LookAlikes()
        self.online: list[str] = []
        self.title = ALL  # the current buffer's name: the top row
        self.people: list[str] = []  # the current buffer's people, in the order shown
        self.everyone = True  # the people are whoever is online (the buffer All)
        self.ticked: set[str] = set()
        self.cursor = 0  # row index; row 0 is the buffer
        #: False while not connected: the list is the last one known, shown greyed.
        self.connected = False
        #: Whether a roster ever came: before the first login nobody is offline, just unknown.
        self.connected_once = False

    def rows(self) -> list[str]:
        people = natural_sorted(self.online) if self.everyone else self.people
        return [self.title, *people]

    def is_online(self, name: str) -> bool:
        return name in self.online

    def is_checked(self, row: int) -> bool:
        rows = self.rows()
        if row == 0:
            return not self.ticked
        return 0 < row < len(rows) and rows[row] in self.ticked

    # ------------------------------------------------------------ roster
    def reset(self, online: Iterable[str]) -> None:
        """Replace who is online (a full roster)."""
        self._update(set(online))
        self.connected = self.connected_once = True

    def apply(self, joined: Iterable[str], left: Iterable[str]) -> None:
        """Apply a roster delta."""
        self._update((set(self.online) - set(left)) | set(joined))

    def disconnected(self) -> None:
        """The connection is gone: the list stays (greyed) until the next login says more."""
        self.connected = False

    def clear(self) -> None:
        """Logged out: nobody is known to be online."""
        self._update(set())
        self.connected = False

    def forget(self) -> None:
        """Another user logs in in this window: nothing of the last one's stays."""
        self.ticked.clear()
        self._update(set())

    def show(self, title: str, people: Iterable[str] | None) -> None:
        """The current buffer's name and people (None: everyone online, for All); online
        people first, in natural order, then the others."""
        under = self._under_cursor()
        self.title = title
        self.everyone = people is None
        if people is not None:
            names = set(people)
            self.people = natural_sorted(names & set(self.online)) + natural_sorted(
                names - set(self.online)
            )
        self.ticked &= set(self.rows()[1:])
        self._keep_cursor_on(under)

    def _under_cursor(self) -> str:
        rows = self.rows()
        return rows[self.cursor] if self.cursor < len(rows) else self.title

    def _update(self, names: set[str]) -> None:
        under = self._under_cursor()
        self.online = sorted(names)
        if not self.everyone:  # online first: the order may change
            self.show(self.title, self.people)
        self._keep_cursor_on(under)

    def _keep_cursor_on(self, name: str) -> None:
        rows = self.rows()
        if self.cursor > 0 and name in rows[1:]:
            self.cursor = rows.index(name, 1)
        else:
            self.cursor = max(0, min(self.cursor, len(rows) - 1))

    # ---------------------------------------------------------- keyboard
    def move(self, delta: int) -> None:
        self.cursor = max(0, min(len(self.rows()) - 1, self.cursor + delta))

    def toggle(self, row: int | None = None) -> None:
        """Space on a row: the top row clears the ticks; a person is ticked or not."""
        rows = self.rows()
        row = self.cursor if row is None else row
        if row == 0:
            self.ticked.clear()
        elif 0 < row < len(rows):
            self.ticked ^= {rows[row]}

    def picked(self, row: int | None = None) -> tuple[str, ...] | None:
        """Enter on a row: the people whose buffer to open (the ticked ones, else the one
        under the cursor), or None for the top row with nobody ticked. The ticks go."""
        rows = self.rows()
        row = self.cursor if row is None else row
        ticked, self.ticked = self.ticked, set()
        if ticked:
            return tuple(natural_sorted(ticked))
        if 0 < row < len(rows):
            return (rows[row],)
        return None

    def take_ticked(self) -> tuple[str, ...] | None:
        """Leaving the list: the ticked people (their buffer opens), or None."""
        if not self.ticked:
            return None
        return self.picked()

    # ------------------------------------------------------- recipients
    def describe(self, names: Iterable[str]) -> str:
        """Names for people, each offline one marked: "bob, carol (offline)"."""
        show = self.looks.show
        return ", ".join(
            show(name)
            if self.is_online(name) or not self.connected_once
            else f"{show(name)} (offline)"
            for name in names
        )

    def label(self, row: int, width: int | None = None) -> str:
        """A row's text after its checkbox: the name (marked when it looks like another),
        offline or not. In `width` columns a long name is cut with "…" and what follows
        it stays whole."""
        rows = self.rows()
        name = rows[row]
        if row == 0:
            return name if width is None else ellipsize(name, width)
        shown = self.looks.show(name)
        tail = " (offline)" if self.connected_once and not self.is_online(name) else ""
        if width is None or text_width(shown + tail) <= width:
            return shown + tail
        room = width - text_width(tail)
        if room < 4:  # no room for the name and its marks: the name comes first
            return ellipsize(shown + tail, width)
        return ellipsize(shown, room) + tail
