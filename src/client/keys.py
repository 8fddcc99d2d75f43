"""Escape sequences that curses does not know, turned into keys (or into nothing).

curses only recognises the sequences the terminfo entry of `$TERM` lists.
Terminals and multiplexers send others: tmux sends `ESC [ 4 ~` for End and
`ESC [ 1 ~` for Home whatever `$TERM` says, which xterm-256color lists as
`ESC O F` / `ESC O H`. Left to npyscreen, such a sequence is Escape, then
Alt+[, then the text "4~" in the message line. Here every sequence is read
whole; a known one becomes its key, an unknown one is dropped, so no key
ever turns into text. Bracketed paste (`ESC [ 200 ~` ... `ESC [ 201 ~`)
gets two keys of its own, so a paste can be told from typing.
"""

from __future__ import annotations

import curses

#: Keys of our own, above every curses key code.
PASTE_START = 0x10_0000
PASTE_END = PASTE_START + 1
#: A sequence that was read whole and means nothing to us: ignore it.
IGNORED = PASTE_START + 2
#: Alt-Left and Alt-Right (`ESC [ 1 ; 3 D`, or Escape then Left as some terminals send).
ALT_LEFT = PASTE_START + 3
ALT_RIGHT = PASTE_START + 4
#: Alt with the arrow's modifier number (xterm: 3 Alt, 9 Meta; with Shift/Ctrl: 4, 7, 8).
_ALT_MODIFIERS = frozenset({"3", "4", "7", "8", "9", "10"})

#: The final byte of `ESC [ ... X` / `ESC O X` (modifiers ignored).
_FINAL = {
    "A": curses.KEY_UP,
    "B": curses.KEY_DOWN,
    "C": curses.KEY_RIGHT,
    "D": curses.KEY_LEFT,
    "H": curses.KEY_HOME,
    "F": curses.KEY_END,
    "Z": curses.KEY_BTAB,
}
#: `ESC [ N ~` (modifiers after a `;` ignored).
_TILDE = {
    "1": curses.KEY_HOME,
    "7": curses.KEY_HOME,
    "4": curses.KEY_END,
    "8": curses.KEY_END,
    "2": curses.KEY_IC,
    "3": curses.KEY_DC,
    "5": curses.KEY_PPAGE,
    "6": curses.KEY_NPAGE,
    "15": curses.KEY_F5,
    "17": curses.KEY_F6,
    "200": PASTE_START,
    "201": PASTE_END,
}
#: Bytes that may stand between `ESC [` and the final byte (ECMA-48).
PARAMETER_BYTES = frozenset(chr(c) for c in range(0x20, 0x40))


def is_final(ch: str) -> bool:
    """Whether `ch` ends a CSI sequence (ECMA-48: 0x40..0x7E)."""
    return len(ch) == 1 and 0x40 <= ord(ch) <= 0x7E


def decode(sequence: str) -> int:
    """The key a whole sequence after ESC means (`[4~`, `OF`, `[1;5H`); IGNORED when none."""
    if len(sequence) < 2 or sequence[0] not in "[O":
        return IGNORED
    body, final = sequence[1:-1], sequence[-1]
    if final == "~" and sequence[0] == "[":
        return _TILDE.get(body.split(";", 1)[0], IGNORED)
    if final in _FINAL and all(c in "0123456789;" for c in body):
        modifier = body.rpartition(";")[2] if ";" in body else ""
        if final in "CD" and modifier in _ALT_MODIFIERS:
            return ALT_RIGHT if final == "C" else ALT_LEFT
        return _FINAL[final]
    return IGNORED


def with_alt(key: int) -> int:
    """An arrow read after an extra Escape (`ESC ESC [ D`): Alt and that arrow."""
    return {curses.KEY_LEFT: ALT_LEFT, curses.KEY_RIGHT: ALT_RIGHT}.get(key, key)


#: Keys a terminfo entry names beyond the standard set (ncurses' extended keys, e.g.
#: `kLFT3` for Alt-Left under TERM=tmux-256color), by name: curses gives them codes of
#: its own, known only through `curses.keyname`.
_EXTENDED = {
    b"kLFT3": ALT_LEFT,
    b"kLFT9": ALT_LEFT,
    b"kRIT3": ALT_RIGHT,
    b"kRIT9": ALT_RIGHT,
}


def extended(name: bytes) -> int | None:
    """Our key for an extended terminfo key's name (`kLFT3`), None when it is not one."""
    return _EXTENDED.get(name)
