"""How each kind of line looks: curses attributes, and colours when the terminal has them.

Without colours (`colours = false` in the config file, `--no-colour`, the
`NO_COLOR` environment variable, or a terminal without enough colour pairs)
everything is still told apart by attributes alone: bold, dim, underline,
reverse. Colours go on top; `[colours]` in the config file picks them.
"""

from __future__ import annotations

import curses
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Attributes with or without colour.
ATTRS: dict[str, int] = {
    "normal": 0,
    "own": curses.A_BOLD,
    "private": curses.A_BOLD,
    "mention": curses.A_BOLD,
    "note": curses.A_DIM,
    "error": curses.A_BOLD | curses.A_UNDERLINE,
    "more": curses.A_REVERSE,
    "day": curses.A_BOLD,
    "unread": curses.A_BOLD,
    "offline": curses.A_DIM,
}
#: Added when there is no colour, so what colour tells apart still differs.
MONO_EXTRA: dict[str, int] = {"mention": curses.A_REVERSE, "unread": curses.A_UNDERLINE}
DEFAULT_PALETTE: dict[str, str] = {
    "private": "magenta",
    "mention": "yellow",
    "error": "red",
    "day": "cyan",
    "unread": "red",
}
_CURSES_COLOURS = {
    "black": curses.COLOR_BLACK,
    "red": curses.COLOR_RED,
    "green": curses.COLOR_GREEN,
    "yellow": curses.COLOR_YELLOW,
    "blue": curses.COLOR_BLUE,
    "magenta": curses.COLOR_MAGENTA,
    "cyan": curses.COLOR_CYAN,
    "white": curses.COLOR_WHITE,
}
#: Our colour pairs start here, above the ~20 npyscreen's theme defines.
FIRST_PAIR = 40


@dataclass
class Theme:
    colours: bool = True
    palette: Mapping[str, str] = field(default_factory=dict)
    _pairs: dict[str, int] = field(default_factory=dict)

    def setup(self) -> None:
        """Make the colour pairs; call once curses has started (npyscreen's `onStart`)."""
        self._pairs.clear()
        if not self.colours:
            return
        try:
            usable = curses.has_colors() and FIRST_PAIR + len(ATTRS) < curses.COLOR_PAIRS
        except (curses.error, AttributeError):  # start_color not called
            usable = False
        if not usable:
            return
        wanted = {**DEFAULT_PALETTE, **self.palette}
        for number, (style, name) in enumerate(sorted(wanted.items()), start=FIRST_PAIR):
            colour = _CURSES_COLOURS.get(name)
            if colour is None:  # "default": attributes only
                continue
            try:
                curses.init_pair(number, colour, curses.COLOR_BLACK)
            except curses.error:
                continue
            self._pairs[style] = curses.color_pair(number)

    def attr(self, style: str) -> int:
        base = ATTRS.get(style, 0)
        pair = self._pairs.get(style)
        if pair is None:
            return base | (MONO_EXTRA.get(style, 0) if not self._pairs else 0)
        return base | pair
