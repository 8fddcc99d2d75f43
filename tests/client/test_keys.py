"""Escape sequences read whole: the keys curses does not know, and nothing as text."""

from __future__ import annotations

import curses

import pytest

from chat.client.keys import (
    ALT_LEFT,
    ALT_RIGHT,
    IGNORED,
    PASTE_END,
    PASTE_START,
    decode,
    is_final,
    with_alt,
)


@pytest.mark.parametrize(
    ("sequence", "key"),
    [
        ("[4~", curses.KEY_END),  # tmux's End under TERM=xterm-256color
        ("[1~", curses.KEY_HOME),
        ("[7~", curses.KEY_HOME),
        ("[8~", curses.KEY_END),
        ("[H", curses.KEY_HOME),
        ("[F", curses.KEY_END),
        ("OH", curses.KEY_HOME),
        ("OF", curses.KEY_END),
        ("[1;5H", curses.KEY_HOME),  # Ctrl+Home: the modifier is ignored
        ("[3~", curses.KEY_DC),
        ("[3;5~", curses.KEY_DC),
        ("[5~", curses.KEY_PPAGE),
        ("[6~", curses.KEY_NPAGE),
        ("[A", curses.KEY_UP),
        ("OB", curses.KEY_DOWN),
        ("[Z", curses.KEY_BTAB),
        ("[200~", PASTE_START),
        ("[201~", PASTE_END),
        ("[15~", curses.KEY_F5),  # F5/F6: the buffer before, after
        ("[17~", curses.KEY_F6),
        ("[1;3D", ALT_LEFT),  # Alt-Left/Right (xterm, tmux): the buffer before, after
        ("[1;3C", ALT_RIGHT),
        ("[1;9D", ALT_LEFT),
        ("[1;5D", curses.KEY_LEFT),  # Ctrl-Left: still Left
    ],
)
def test_known_sequences_are_their_keys(sequence: str, key: int) -> None:
    assert decode(sequence) == key


@pytest.mark.parametrize("sequence", ["[99~", "[?1;2c", "[", "O", "x", "[16;2~", "[1;5Q"])
def test_unknown_sequences_are_dropped_never_typed(sequence: str) -> None:
    assert decode(sequence) == IGNORED


def test_final_bytes_end_a_sequence_parameters_do_not() -> None:
    assert all(is_final(c) for c in "~AHFZ@")
    assert not any(is_final(c) for c in "0123456789;?")


def test_an_arrow_after_an_extra_escape_is_alt_and_that_arrow() -> None:
    assert with_alt(curses.KEY_LEFT) == ALT_LEFT and with_alt(curses.KEY_RIGHT) == ALT_RIGHT
    assert with_alt(curses.KEY_UP) == curses.KEY_UP
