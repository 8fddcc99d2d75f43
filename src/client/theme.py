"""How each kind of line looks: curses attributes, and colours when the terminal has them.

Without colours (`colours = false` in the config file, `--no-colour`, the
`NO_COLOR` environment variable, or a terminal without enough colour pairs)
everything is still told apart by attributes alone: bold, dim, underline,
reverse. Colours go on top; `[colours]` in the config file picks them.

Nick colours: each sender's name has a colour of its own, the same in every
session and on every machine (a CRC-32 of the name picks it: Python's `hash`
changes from one run to the next). The colours are mid-tones, readable on a
dark and on a light background (no yellow, white, black or grey); the
terminal's own background stays (`use_default_colors`).
"""

from __future__ import annotations

import curses
import zlib
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
    "found": curses.A_REVERSE | curses.A_BOLD,
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
#: Nick colours for a 256-colour terminal: xterm colours of middle lightness.
NICK_COLOURS_256 = (25, 28, 31, 32, 37, 64, 70, 97, 98, 130, 131, 133, 166, 167, 169, 172)
#: And for 8 colours: those readable on both backgrounds.
NICK_COLOURS_8 = (
    curses.COLOR_RED,
    curses.COLOR_GREEN,
    curses.COLOR_BLUE,
    curses.COLOR_MAGENTA,
    curses.COLOR_CYAN,
)
#: The nicks' pairs come after the styles'.
NICK_PAIR = FIRST_PAIR + 20


def nick_index(name: str, colours: int) -> int:
    """Which of `colours` colours is `name`'s: the same everywhere, every time."""
    return zlib.crc32(name.encode("utf-8")) % colours


@dataclass
class Theme:
    colours: bool = True
    palette: Mapping[str, str] = field(default_factory=dict)
    _pairs: dict[str, int] = field(default_factory=dict)
    _nicks: list[int] = field(default_factory=list)

    def setup(self) -> None:
        """Make the colour pairs; call once curses has started (npyscreen's `onStart`)."""
        self._pairs.clear()
        self._nicks.clear()
        try:  # the terminal's own colours for everything not coloured (not white on black)
            curses.use_default_colors()
            defaults = True
        except curses.error:
            defaults = False
        if not self.colours:
            return
        try:
            usable = curses.has_colors() and NICK_PAIR + 16 < curses.COLOR_PAIRS
        except (curses.error, AttributeError):  # start_color not called
            usable = False
        if not usable:
            return
        background = -1 if defaults else curses.COLOR_BLACK  # the terminal's own, dark or light
        wanted = {**DEFAULT_PALETTE, **self.palette}
        for number, (style, name) in enumerate(sorted(wanted.items()), start=FIRST_PAIR):
            colour = _CURSES_COLOURS.get(name)
            if colour is None:  # "default": attributes only
                continue
            try:
                curses.init_pair(number, colour, background)
            except curses.error:
                continue
            self._pairs[style] = curses.color_pair(number)
        nicks = NICK_COLOURS_256 if curses.COLORS >= 256 else NICK_COLOURS_8
        for number, colour in enumerate(nicks, start=NICK_PAIR):
            try:
                curses.init_pair(number, colour, background)
            except curses.error:
                self._nicks.clear()
                return
            self._nicks.append(curses.color_pair(number))

    def nick(self, name: str) -> int:
        """The colour attribute of a sender's name; 0 without colours."""
        if not self._nicks:
            return 0
        return self._nicks[nick_index(name, len(self._nicks))]

    def attr(self, style: str) -> int:
        base = ATTRS.get(style, 0)
        pair = self._pairs.get(style)
        if pair is None:
            return base | (MONO_EXTRA.get(style, 0) if not self._pairs else 0)
        return base | pair
