"""The participants list as pure data: "All" on top, online users, a selection.

The selection is kept by name, not by row, so users joining and leaving
around it never shift it onto someone else. Nothing selected means "All".
"""

from __future__ import annotations

from collections.abc import Iterable

from chat.shared.messages import BROADCAST, Recipients

ALL = "All"


class Participants:
    def __init__(self) -> None:
        self.online: list[str] = []
        self.selected: set[str] = set()
        self.cursor = 0  # row index; row 0 is "All"

    def rows(self) -> list[str]:
        return [ALL, *self.online]

    def is_checked(self, row: int) -> bool:
        if row == 0:
            return not self.selected
        return self.online[row - 1] in self.selected

    # ------------------------------------------------------------ roster
    def reset(self, online: Iterable[str]) -> list[str]:
        """Replace the whole list (a full roster); returns selected users now gone."""
        names = set(online)
        return self._update(names)

    def apply(self, joined: Iterable[str], left: Iterable[str]) -> list[str]:
        """Apply a roster delta; returns the selected users who left (now unselected)."""
        names = (set(self.online) - set(left)) | set(joined)
        return self._update(names)

    def clear(self) -> None:
        """Logged out: nobody is known to be online."""
        self._update(set())

    def _update(self, names: set[str]) -> list[str]:
        under_cursor = self.rows()[self.cursor] if self.cursor < len(self.rows()) else ALL
        dropped = sorted(self.selected - names)
        self.selected &= names
        self.online = sorted(names)
        rows = self.rows()
        if under_cursor in rows:
            self.cursor = rows.index(under_cursor)
        else:
            self.cursor = min(self.cursor, len(rows) - 1)
        return dropped

    # ---------------------------------------------------------- keyboard
    def move(self, delta: int) -> None:
        self.cursor = max(0, min(len(self.online), self.cursor + delta))

    def toggle(self, row: int | None = None) -> None:
        """Space on a row: "All" clears the selection; a user is added or removed."""
        row = self.cursor if row is None else row
        if row == 0:
            self.selected.clear()
        elif 0 < row <= len(self.online):
            self.selected ^= {self.online[row - 1]}

    def select_only(self, row: int | None = None) -> None:
        row = self.cursor if row is None else row
        self.selected.clear()
        self.toggle(row)

    def recipients(self) -> Recipients:
        """What a message typed now goes to: "*" or the selected names, sorted."""
        return tuple(sorted(self.selected)) if self.selected else BROADCAST

    def describe_target(self) -> str:
        to = self.recipients()
        return "all" if to == BROADCAST else ", ".join(to)
