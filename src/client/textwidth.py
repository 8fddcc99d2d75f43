"""Terminal column widths and wrapping that know CJK takes two columns.

npyscreen counts every character as one column, so wide characters would
overflow lines; everything the client lays out goes through these helpers.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=4096)
def char_width(ch: str) -> int:
    """Columns one character takes: 0 (combining, control), 1, or 2 (wide, fullwidth)."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    if unicodedata.category(ch) == "Cc":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


def printable(text: str) -> str:
    """Control characters (newlines, ESC of a terminal sequence) made harmless for curses."""
    return "".join(_printable_char(ch) for ch in text)


def _printable_char(ch: str) -> str:
    if unicodedata.category(ch) != "Cc":
        return ch
    return " " if ch in "\t\n\r" else "?"


def clip(text: str, width: int) -> str:
    """The longest prefix of `text` that fits in `width` columns."""
    used = 0
    for i, ch in enumerate(text):
        used += char_width(ch)
        if used > width:
            return text[:i]
    return text


#: Ends a text cut to fit (one column in every terminal that shows it at all).
ELLIPSIS = "\u2026"


def ellipsize(text: str, width: int) -> str:
    """`text` if it fits in `width` columns, else as much as fits followed by "…", so a cut
    is never taken for the whole (a name cut at the edge could be another name)."""
    if text_width(text) <= width:
        return text
    if width <= 0:
        return ""
    return clip(text, width - 1) + ELLIPSIS


def wrap(text: str, width: int, indent: int = 0) -> list[str]:
    """Break `text` into lines of at most `width` columns, preferring spaces.

    Continuation lines start with `indent` spaces (part of their width).
    Never returns an empty list; a width too small for anything still
    makes progress one character per line.
    """
    width = max(1, width)
    indent = indent if indent < width else 0
    lines: list[str] = []
    prefix = ""
    rest = text
    while True:
        room = width - text_width(prefix)
        head = clip(rest, room)
        if len(head) == len(rest):
            lines.append(prefix + rest)
            return lines
        if not head:  # a wide character and one column left
            head = rest[:1]
        cut = len(head) if rest[len(head) : len(head) + 1] == " " else head.rfind(" ")
        if cut > 0:
            lines.append(prefix + head[:cut])
            rest = rest[cut + 1 :]
        else:
            lines.append(prefix + head)
            rest = rest[len(head) :]
        if not rest:
            return lines
        prefix = " " * indent
