"""The message line's memory and helpers, as plain data: input history, nick
completion, and how a paste splits into messages.

Kept apart from the npyscreen widget so each rule is tested without a terminal.
They follow readline, irssi and WeeChat: Up/Down walk back through what was
typed (the line being written is kept, not lost); Tab completes the word
before the cursor to a nickname, again Tab to the next one; a paste of more
than a few lines is held until the user says what to do with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .names import natural_sorted

#: Lines kept for Up/Down (irssi keeps 100 by default, WeeChat 100; we keep a day's worth).
HISTORY_SIZE = 500
#: A paste of more complete lines than this is not sent before the user says so
#: (irssi's paste_verify_line_count is 5; a chat line is shorter, so fewer).
PASTE_ASK_LINES = 3
#: After a nickname completed at the start of the line (irssi's completion_char).
COMPLETION_SUFFIX = ": "


@dataclass
class InputHistory:
    """What was typed, oldest first; a position while walking through it with Up/Down."""

    size: int = HISTORY_SIZE
    lines: list[str] = field(default_factory=list)
    _pos: int | None = None  # index into `lines` while walking; None at the draft
    _draft: str = ""

    def reset(self) -> None:
        """The line was emptied (`^U`): the next Up starts again from the newest line."""
        self._pos = None
        self._draft = ""

    def add(self, line: str) -> None:
        """A line was sent (or a command run): the newest entry; the walk starts over."""
        self._pos = None
        if not line.strip() or (self.lines and self.lines[-1] == line):
            return
        self.lines.append(line)
        del self.lines[: -self.size]

    def older(self, current: str) -> str | None:
        """Up: the line before; None at the oldest. The line being typed is kept as the draft."""
        if not self.lines or self._pos == 0:
            return None
        if self._pos is None:
            self._draft = current
            self._pos = len(self.lines)
        self._pos -= 1
        return self.lines[self._pos]

    def newer(self) -> str | None:
        """Down: the line after, then the draft; None when already at the draft."""
        if self._pos is None:
            return None
        self._pos += 1
        if self._pos >= len(self.lines):
            self._pos = None
            return self._draft
        return self.lines[self._pos]


@dataclass
class Completer:
    """Tab on the message line: the word before the cursor becomes a nickname.

    Candidates are matched case-insensitively by prefix, in natural order; another Tab
    right after (nothing typed in between) replaces it with the next one.
    At the start of the line a name is followed by ": " (addressing
    someone, as in IRC); after `@` or elsewhere by a space. `@bo` completes to
    `@bob `, so Tab also helps with the `@name text` form. The caller gives
    the candidates for the word: commands (`/jo`), rooms (`#d`) or names.
    """

    _last: tuple[str, int] | None = None  # (value, cursor) our last completion produced
    prefix: str = ""  # the word the last Tab completed (or found nothing for)
    _start: int = 0
    _prefix: str = ""
    _tail: str = ""  # what stood right of the cursor when the completion began
    _choices: list[str] = field(default_factory=list)
    _index: int = 0

    def complete(self, value: str, cursor: int, names: Iterable[str]) -> tuple[str, int] | None:
        """(new value, new cursor), or None when there is nothing to complete."""
        if self._last == (value, cursor) and self._choices:
            self._index = (self._index + 1) % len(self._choices)
        else:
            start, prefix = word_before(value, cursor)
            self.prefix = prefix
            choices = natural_sorted(n for n in set(names) if n.lower().startswith(prefix.lower()))
            if not prefix or not choices:
                self._last = None
                return None
            self._start, self._prefix, self._choices, self._index = start, prefix, choices, 0
            self._tail = value[cursor:]
        name = self._choices[self._index]
        head = value[: self._start]
        addressing = not head and name[:1] not in "/#"
        space = "" if self._tail.startswith(" ") else " "
        suffix = COMPLETION_SUFFIX if addressing else space
        new_value = head + name + suffix + self._tail
        new_cursor = len(head) + len(name) + len(suffix)
        self._last = (new_value, new_cursor)
        return new_value, new_cursor


def word_before(value: str, cursor: int) -> tuple[int, str]:
    """Where the word before the cursor starts, and the word (what Tab completes): back to
    a space, an `@` or a `,`."""
    start = cursor
    while start > 0 and not value[start - 1].isspace() and value[start - 1] not in "@,":
        start -= 1
    return start, value[start:cursor]


@dataclass(frozen=True, slots=True)
class Pasted:
    """A paste, split: complete lines to send (blank ones left out), and the rest to keep
    in the message line (the text after the last newline)."""

    lines: tuple[str, ...]
    rest: str

    @property
    def ask(self) -> bool:
        """Whether to ask before sending (more than a few lines)."""
        return len(self.lines) > PASTE_ASK_LINES


def split_paste(before: str, pasted: str, after: str = "") -> Pasted:
    """The line as it becomes with `pasted` put between `before` and `after` (the text
    left and right of the cursor), split at its newlines. A tab stays a tab in what is
    sent (pasted code or columns arrive as they were); the screen shows it as a space."""
    text = (before + pasted + after).replace("\r\n", "\n").replace("\r", "\n")
    *complete, rest = text.split("\n")
    return Pasted(tuple(line for line in complete if line.strip()), rest)
