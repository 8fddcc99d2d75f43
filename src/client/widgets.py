"""npyscreen widgets for the chat screen, laid out by the form, drawn with real widths.

npyscreen assumes one column per character and sizes widgets once; these
widgets take their box from the form's layout on every resize, measure
text with `textwidth`, and never raise for lack of space (a box of zero
rows or columns just draws nothing).

Keys: escape sequences are read whole (`keys`), so Home/End under tmux, or
any sequence curses does not know, never become text; a bracketed paste
arrives as one piece. Typing is never lost: a character typed while the
participant list or the history has the focus goes to the message line,
and the focus with it.
"""

from __future__ import annotations

import contextlib
import curses
import curses.ascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import npyscreen
from npyscreen import wgwidget

from . import keys
from .buffers import BufferList
from .history import History
from .inputline import Completer, InputHistory, Pasted, split_paste
from .participants import Participants
from .textwidth import clip, ellipsize, printable, text_width


@dataclass(frozen=True, slots=True)
class Box:
    y: int
    x: int
    height: int
    width: int


def put(pad: Any, y: int, x: int, text: str, attr: int = 0, width: int | None = None) -> None:
    """addstr clipped to `width` columns; curses errors (last cell, off-pad) are ignored."""
    if width is not None:
        text = clip(text, width)
    if not text or y < 0 or x < 0:
        return
    with contextlib.suppress(curses.error):
        pad.addstr(y, x, text, attr)


class UnicodeKeys:
    """Keyboard input as whole characters, whatever npyscreen thinks of the locale.

    npyscreen assembles UTF-8 by hand only when the preferred encoding is
    spelled exactly 'UTF-8' (Python's UTF-8 mode says 'utf-8'), and it runs
    every character through `curses.ascii.unctrl`, which maps e.g. Cyrillic
    'И' (U+0418) to '^X', the menu key. `get_wch` gives whole characters,
    and non-ASCII text goes straight to the text handler.
    """

    parent: Any
    _last_get_ch_was_unicode: bool

    def _get_ch(self) -> int | str:
        try:
            ch = self.parent.curses_pad.get_wch()
        except curses.error:  # halfdelay timeout: no key
            self._last_get_ch_was_unicode = False
            return -1
        if isinstance(ch, str) and len(ch) == 1 and ord(ch) < 128:
            self._last_get_ch_was_unicode = False
            return ord(ch)  # handlers are keyed by int for ASCII and control keys
        if isinstance(ch, int) and ch > curses.KEY_MAX:  # a terminfo extended key (kLFT3)
            with contextlib.suppress(ValueError, curses.error):
                ch = keys.extended(curses.keyname(ch)) or ch
        self._last_get_ch_was_unicode = isinstance(ch, str)
        return ch

    def get_and_use_key_press(self) -> None:
        """npyscreen's key loop, minus its Escape race.

        After Escape npyscreen reads one more key without waiting and treats
        it as Alt+key; a terminal resize landing right then (KEY_RESIZE)
        swallowed the Escape and the resize both. Here a resize is put back.
        """
        pad = self.parent.curses_pad
        curses.raw()
        curses.cbreak()
        curses.meta(True)
        pad.keypad(True)
        if self.parent.keypress_timeout:
            curses.halfdelay(self.parent.keypress_timeout)
            ch = self._get_ch()
            if ch == -1:
                self.try_while_waiting()  # type: ignore[attr-defined]
                return
        else:
            pad.timeout(-1)
            ch = self._get_ch()
        if ch == curses.ascii.ESC:
            ch = self._after_escape()
        self.handle_input(ch)
        if self.check_value_change:  # type: ignore[attr-defined]
            self.when_check_value_changed()  # type: ignore[attr-defined]
        if self.check_cursor_move:  # type: ignore[attr-defined]
            self.when_check_cursor_moved()  # type: ignore[attr-defined]
        self.try_adjust_widgets()  # type: ignore[attr-defined]

    def _after_escape(self) -> int | str:
        """What follows an Escape: nothing (Escape itself), a whole sequence (its key, or
        nothing), or one character (Alt+it). A resize or a wide character is put back."""
        pad = self.parent.curses_pad
        pad.nodelay(True)
        try:
            follow = pad.get_wch()
        except curses.error:
            return curses.ascii.ESC
        finally:
            pad.timeout(-1)
        if follow in ("[", "O"):
            key = self._sequence(str(follow))
            if key == keys.PASTE_START:
                self.handle_paste(self._read_paste())
                return keys.IGNORED
            return key
        if follow == "\x1b":  # Escape, then a sequence: Alt and that key (Alt-Left)
            pad.timeout(SEQUENCE_WAIT_MS)
            try:
                again = pad.get_wch()
            except curses.error:
                return curses.ascii.ESC
            finally:
                pad.timeout(-1)
            if again in ("[", "O"):
                return keys.with_alt(self._sequence(str(again)))
            return keys.IGNORED
        if isinstance(follow, str) and len(follow) == 1 and ord(follow) < 128:
            return curses.ascii.alt(ord(follow))
        if isinstance(follow, str):
            curses.unget_wch(follow)
        else:
            curses.ungetch(follow)  # KEY_RESIZE and other keys: handled next, not lost
        return curses.ascii.ESC

    def _sequence(self, first: str) -> int:
        """The rest of `ESC [ ...` or `ESC O x`, read whole (it is already in the buffer)."""
        pad = self.parent.curses_pad
        text = first
        pad.timeout(SEQUENCE_WAIT_MS)
        try:
            while len(text) < MAX_SEQUENCE:
                try:
                    ch = pad.get_wch()
                except curses.error:
                    break
                if not isinstance(ch, str):
                    curses.ungetch(ch)
                    break
                text += ch
                if first == "O" or (ch not in keys.PARAMETER_BYTES and keys.is_final(ch)):
                    break
        finally:
            pad.timeout(-1)
        return keys.decode(text)

    def _read_paste(self) -> str:
        """The text of a bracketed paste, up to `ESC [ 201 ~` (or a pause: a broken paste
        ends rather than swallowing the keyboard)."""
        pad = self.parent.curses_pad
        chunks: list[str] = []
        try:
            while True:
                pad.timeout(PASTE_WAIT_MS)
                try:
                    ch = pad.get_wch()
                except curses.error:
                    break
                if ch == "\x1b":
                    pad.timeout(SEQUENCE_WAIT_MS)
                    try:
                        follow = pad.get_wch()
                    except curses.error:
                        continue
                    if follow == "[" and self._sequence("[") == keys.PASTE_END:
                        break
                    continue
                if isinstance(ch, str):
                    chunks.append(ch)
                elif ch in (curses.KEY_ENTER,):
                    chunks.append("\n")
        finally:
            pad.timeout(-1)
        return "".join(chunks)

    def handle_paste(self, text: str) -> None:
        """A paste in a one-line field (a login form's): its first line, as if typed."""
        for ch in text.replace("\r", "\n").split("\n", 1)[0]:
            if ord(ch) >= 128:
                self.text_input(ch)
            elif curses.ascii.isprint(ord(ch)):
                self.handle_input(ord(ch))

    def handle_input(self, _input: int | str) -> bool:
        if _input == keys.IGNORED:
            return True
        if isinstance(_input, str):
            return self.text_input(_input)
        if _input > 255:  # a curses key (or one of ours): never through npyscreen's `unctrl`,
            # which takes its low 7 bits for a control key (F6, 270, would be ^N)
            handlers: dict[Any, Any] = getattr(self, "handlers", {})
            handler = handlers.get(_input) or getattr(self.parent, "handlers", {}).get(_input)
            if handler is not None:
                handler(_input)
            return True  # a key nothing here knows: dropped, never taken for another
        return super().handle_input(_input)  # type: ignore[misc]

    def text_input(self, ch: str) -> bool:
        """A non-ASCII character was typed; text widgets insert it, others ignore it."""
        return True


#: How long the rest of an escape sequence may take to arrive (it is normally there already).
SEQUENCE_WAIT_MS = 30
MAX_SEQUENCE = 16
#: A bracketed paste with a pause this long in it is over (its end sequence got lost).
PASTE_WAIT_MS = 500


class TypingGoesToInput:
    """For the list and the history: a character typed there goes to the message line,
    and the focus with it, so nothing typed ever vanishes."""

    parent: Any
    handlers: dict[Any, Any]

    def text_input(self, ch: str) -> bool:
        self.parent.type_into_input(ch)
        self.h_exit_escape(0)  # type: ignore[attr-defined]
        return True

    def handle_paste(self, text: str) -> None:
        """A paste belongs to the message line, whatever has the focus."""
        self.parent.paste_into_input(text)
        self.h_exit_escape(0)  # type: ignore[attr-defined]

    def t_typed(self, inp: int | str) -> bool:
        return isinstance(inp, int) and inp not in self.handlers and curses.ascii.isprint(inp)

    def h_typed(self, inp: int) -> None:
        self.text_input(chr(inp))


class Placed:
    """Geometry comes from `box`, assigned by the form's layout, not from npyscreen's sizing."""

    box: Box

    def set_size(self) -> None:
        self.rely, self.relx = self.box.y, self.box.x
        self.height, self.width = max(self.box.height, 0), max(self.box.width, 0)

    def set_relyx(self, y: int, x: int) -> None:
        self._requested_rely, self._requested_relx = y, x
        box = getattr(self, "box", None)
        self.rely, self.relx = (box.y, box.x) if box else (max(y, 0), max(x, 0))

    def place(self, box: Box) -> None:
        """Take a new box. An empty box draws nothing but is never `hidden`: npyscreen's
        edit loop runs off the end of its widget list when every widget is hidden."""
        self.box = box
        self.set_size()


class TextInput(UnicodeKeys, npyscreen.Textfield):
    def text_input(self, ch: str) -> bool:
        self.h_addch(ch)
        return True


class PasswordInput(UnicodeKeys, npyscreen.PasswordEntry):
    def text_input(self, ch: str) -> bool:
        self.h_addch(ch)
        return True


class TitleInput(npyscreen.TitleText):
    _entry_type = TextInput


class TitlePasswordInput(npyscreen.TitleText):
    _entry_type = PasswordInput


#: The message line grows to at most this many rows for a message of several lines.
MAX_INPUT_ROWS = 5
#: Alt-Enter (Escape then Enter) and Alt-^J: a new line in the message, as ^J is.
ALT_ENTER = (curses.ascii.alt(curses.ascii.CR), curses.ascii.alt(curses.ascii.NL))


def input_rows(value: str) -> int:
    """The rows the message line takes for `value` (one per line, at most 5)."""
    return min(MAX_INPUT_ROWS, value.count("\n") + 1)


class InputLine(Placed, TextInput):
    """The message line: a prompt naming the recipients, then the text being typed.

    Enter hands the text to `on_submit`; Alt-Enter and ^J put a new line in the
    message (the line grows to show it, up to 5 rows); Up/Down walk through what was
    typed (after ^U from the newest again); Tab completes a command, a name or a
    room; PgUp/PgDn scroll the history, and End at the end of the line goes back to
    the newest message, so the hands never leave the line. ^N/^P (and Shift-Tab)
    move the focus. A paste of more than a few lines waits here for Enter (send
    them) or Escape (drop them).
    """

    def __init__(
        self,
        screen: Any,
        box: Box,
        prompt: Callable[[], str],
        on_submit: Callable[[str], bool],
        on_paste: Callable[[tuple[str, ...]], None],
        history: Callable[[], History],
        names: Callable[[str, int], list[str]],
        on_typing: Callable[[str], None] = lambda _: None,
        on_search: Callable[[str], None] = lambda _: None,
        **kw: Any,
    ) -> None:
        self.box = box
        self._prompt, self._on_submit, self._on_paste = prompt, on_submit, on_paste
        self._history, self._names = history, names
        self._on_typing, self._on_search = on_typing, on_search
        self.typed = InputHistory()
        self.completer = Completer()
        self.pending_paste: Pasted | None = None
        #: (value, cursor) after a Tab that found nothing yet (the directory may answer).
        self.tab_waits: tuple[str, int] | None = None
        super().__init__(screen, **kw)

    def set_up_handlers(self) -> None:
        super().set_up_handlers()
        page = lambda: max(1, self.parent.history_height() - 1)  # noqa: E731
        self.handlers.update(
            {
                curses.ascii.NL: self.h_newline,  # ^J (Enter is CR: the form sets nonl)
                curses.ascii.CR: self.h_submit,
                curses.KEY_ENTER: self.h_submit,
                ALT_ENTER[0]: self.h_newline,
                ALT_ENTER[1]: self.h_newline,
                curses.ascii.TAB: self.h_complete,
                curses.KEY_UP: self.h_older,
                curses.KEY_DOWN: self.h_newer,
                curses.KEY_PPAGE: lambda _: self._history().scroll_by(page()),
                curses.KEY_NPAGE: lambda _: self._history().scroll_by(-page()),
                curses.KEY_HOME: self.h_home,
                curses.KEY_END: self.h_end,
                curses.ascii.ESC: self.h_escape,
                "^A": self.h_home,
                "^E": self.h_end,
                "^W": self.h_erase_word,
                "^U": self.h_erase_left,
                "^R": lambda _: self._on_search(self.value or ""),
            }
        )

    def handle_input(self, _input: int | str) -> bool:
        if self.pending_paste is not None and _input not in (
            curses.ascii.NL,
            curses.ascii.CR,
            curses.KEY_ENTER,
            curses.ascii.ESC,
            curses.KEY_RESIZE,
            keys.IGNORED,
        ):
            return True  # the question on the line waits for Enter or Escape
        before = self.value or ""
        done = super().handle_input(_input)
        if (self.value or "") != before:
            self._on_typing(self.value or "")
        return done

    def h_submit(self, _input: int) -> None:
        """Send; the text stays in the line when it could not be sent (e.g. not logged in).
        A line of spaces is cleared: there is nothing to send, and it must not stick to the
        next message invisibly."""
        if self.pending_paste is not None:
            pasted, self.pending_paste = self.pending_paste, None
            self._on_paste(pasted.lines)
            self._set(pasted.rest)
            return
        text = self.value or ""
        if not text.strip():
            self._set("")
            return
        self.typed.add(text)
        if self._on_submit(text):
            self._set("")

    def h_newline(self, _input: int) -> None:
        """A new line in the message (Alt-Enter, ^J): sent with it, as one message."""
        if self.pending_paste is None:
            self.insert("\n")

    def h_erase_left(self, _input: int) -> None:
        """^U: what is left of the cursor goes; the next Up starts from the newest line."""
        value, pos = self.value or "", self._cursor()
        self.value, self.cursor_position, self.begin_at = value[pos:], 0, 0
        self.typed.reset()

    def h_escape(self, _input: int) -> None:
        if self.pending_paste is not None:
            count = len(self.pending_paste.lines)
            self.pending_paste = None
            self.parent.parentApp.model.note(f"paste of {count} lines dropped")
            return
        self.parent.parentApp.model.end_search()

    def handle_paste(self, text: str) -> None:
        value, pos = self.value or "", self._cursor()
        pasted = split_paste(value[:pos], text, value[pos:])
        if not pasted.lines:  # no complete line: it is text in the line, as if typed
            self.value = pasted.rest
            self.cursor_position = len(pasted.rest) - len(value[pos:])
        elif pasted.ask:
            self.pending_paste = pasted
        else:
            self._on_paste(pasted.lines)
            self._set(pasted.rest)

    def paste_question(self) -> str:
        assert self.pending_paste is not None
        count = len(self.pending_paste.lines)
        return (
            f"paste of {count} lines: Enter sends {count} messages to "
            f"{self.parent.target()}, Escape drops them"
        )

    def h_complete(self, _input: int) -> None:
        value, cursor = self.value or "", self._cursor()
        done = self.completer.complete(value, cursor, self._names(value, cursor))
        if done is not None:
            self.value, self.cursor_position = done
            self.tab_waits = None
        else:
            self.tab_waits = (value, cursor)  # the directory may answer: Tab again then

    def complete_again(self) -> None:
        """The directory answered after a Tab that found nothing: try it again, when the
        line is still as that Tab left it."""
        if self.tab_waits == (self.value or "", self._cursor()):
            self.tab_waits = None
            self.h_complete(curses.ascii.TAB)

    def h_older(self, _input: int) -> None:
        line = self.typed.older(self.value or "")
        if line is not None:
            self._set(line, at_end=True)

    def h_newer(self, _input: int) -> None:
        line = self.typed.newer()
        if line is not None:
            self._set(line, at_end=True)

    def h_home(self, _input: int) -> None:
        self.cursor_position = 0

    def h_end(self, _input: int) -> None:
        """End of the line; at the end already (an empty line too): the newest message."""
        end = len(self.value or "")
        if self._cursor() >= end:
            self._history().scroll_to_end()
            self.parent.parentApp.model.end_search()
        self.cursor_position = end

    def h_erase_word(self, _input: int) -> None:
        value, pos = self.value or "", self._cursor()
        start = len(value[:pos].rstrip(" "))
        while start > 0 and value[start - 1] not in " \n":
            start -= 1
        self.value, self.cursor_position = value[:start] + value[pos:], start

    def insert(self, text: str) -> None:
        """Typed while another widget had the focus: goes in at the cursor."""
        value, pos = self.value or "", self._cursor()
        self.value = value[:pos] + text + value[pos:]
        self.cursor_position = pos + len(text)

    def set_text(self, value: str) -> None:
        self._set(value)

    def _cursor(self) -> int:
        value = self.value or ""
        pos = self.cursor_position
        return len(value) if pos is False or pos is None else max(0, min(int(pos), len(value)))

    def _set(self, value: str, at_end: bool = True) -> None:
        self.value, self.begin_at = value, 0
        self.cursor_position = len(value) if at_end else 0

    def rows_wanted(self) -> int:
        if self.pending_paste is not None:
            return 1
        return input_rows(self.value or "")

    def update(self, clear: bool = True, cursor: bool = True) -> None:
        if clear:
            self.clear()
        if self.hidden or self.width <= 0 or self.height <= 0:
            return
        pad, y, x = self.parent.curses_pad, self.rely, self.relx
        if self.pending_paste is not None:
            put(pad, y, x, self.paste_question(), curses.A_BOLD | curses.A_REVERSE, self.width - 1)
            return
        prompt = self._prompt()
        prompt_w = min(text_width(prompt), max(0, self.width - 2))
        put(pad, y, x, prompt, curses.A_BOLD, prompt_w)
        room = self.width - prompt_w - 1  # the last column stays free for the cursor
        if room <= 0:
            return
        value = self.value or ""
        editing_pos = self.editing and self.cursor_position is not False
        pos = max(0, min(self.cursor_position if editing_pos else len(value), len(value)))
        if self.editing:
            self.cursor_position = pos
        # The line of the message the cursor is on, and the rows around it.
        starts = [0] + [i + 1 for i, ch in enumerate(value) if ch == "\n"]
        row = value.count("\n", 0, pos)
        rows = max(1, self.height)
        first = max(0, min(row, len(starts) - rows))
        if row >= first + rows:
            first = row - rows + 1
        left = x + prompt_w
        for r in range(rows):
            i = first + r
            if i >= len(starts):
                break
            start = starts[i]
            end = starts[i + 1] - 1 if i + 1 < len(starts) else len(value)
            if i != row:
                put(pad, y + r, left, printable(value[start:end]), 0, room)
                continue
            begin = max(start, min(self.begin_at, pos))
            # Measured as drawn: a tab (or another control character) takes one column.
            while begin < pos and text_width(printable(value[begin:pos])) > room - 1:
                begin += 1
            self.begin_at = begin
            put(pad, y + r, left, printable(value[begin:end]), 0, room)
            if self.editing and cursor:
                under = printable(value[pos]) if pos < end else " "
                column = left + text_width(printable(value[begin:pos]))
                put(pad, y + r, column, under, curses.A_REVERSE)


class ParticipantsView(TypingGoesToInput, UnicodeKeys, Placed, wgwidget.Widget):
    """The current buffer on top, then its people, each with a checkbox: Space ticks,
    Enter opens the buffer of the ticked people (or of the one under the cursor);
    leaving the list with people ticked opens theirs. Greyed, under "Disconnected",
    while the connection is down."""

    def __init__(
        self,
        screen: Any,
        box: Box,
        model: Participants,
        on_pick: Callable[[tuple[str, ...] | None], None],
        **kw: Any,
    ) -> None:
        self.box, self.model, self._on_pick = box, model, on_pick
        self._top = 0
        super().__init__(screen, **kw)

    def set_up_handlers(self) -> None:
        super().set_up_handlers()
        self.handlers.update(
            {
                curses.KEY_UP: lambda _: self.model.move(-1),
                curses.KEY_DOWN: lambda _: self.model.move(1),
                curses.KEY_PPAGE: lambda _: self.model.move(-max(1, self.height - 1)),
                curses.KEY_NPAGE: lambda _: self.model.move(max(1, self.height - 1)),
                curses.KEY_HOME: lambda _: self.model.move(-len(self.model.rows())),
                curses.KEY_END: lambda _: self.model.move(len(self.model.rows())),
                curses.ascii.SP: lambda _: self.model.toggle(),
                curses.ascii.NL: self.h_pick,
                curses.ascii.CR: self.h_pick,
                curses.KEY_ENTER: self.h_pick,
                curses.ascii.ESC: self.h_leave,
                curses.KEY_LEFT: self.h_leave,
                curses.KEY_RIGHT: self.h_leave,
            }
        )
        self.complex_handlers.append((self.t_typed, self.h_typed))

    def h_pick(self, _input: int) -> None:
        """Enter: the ticked people's buffer, or this person's; back to the message line."""
        self._on_pick(self.model.picked())
        self.h_exit_escape(_input)

    def h_leave(self, _input: int) -> None:
        """Back to the message line; people ticked: their buffer."""
        ticked = self.model.take_ticked()
        if ticked is not None:
            self._on_pick(ticked)
        self.h_exit_escape(_input)

    def update(self, clear: bool = True) -> None:
        if clear:
            self.clear()
        if self.hidden or self.height <= 0 or self.width <= 0:
            return
        pad = self.parent.curses_pad
        connected = self.model.connected
        if connected:
            title = "Online"
        else:  # the last list known, greyed; nothing known before the first login
            title = "Disconnected" if self.model.connected_once else "Offline"
        title_attr = curses.A_REVERSE if self.editing else curses.A_UNDERLINE
        title_attr |= curses.A_BOLD if connected else curses.A_DIM
        put(pad, self.rely, self.relx, title.ljust(self.width), title_attr, self.width)
        rows = self.model.rows()
        theme = self.parent.parentApp.theme
        visible = self.height - 1
        if visible <= 0:
            return
        cursor = self.model.cursor
        self._top = max(0, min(self._top, cursor, len(rows) - visible))
        if cursor >= self._top + visible:
            self._top = cursor - visible + 1
        for i, name in enumerate(rows[self._top : self._top + visible]):
            row = self._top + i
            mark = "[x]" if self.model.is_checked(row) else "[ ]"
            attr = curses.A_REVERSE if self.editing and row == cursor else 0
            if row == 0:
                attr |= curses.A_BOLD
            elif not self.model.is_online(name) or not connected:
                attr |= theme.attr("offline")
            if not connected:
                attr |= curses.A_DIM
            text = f"{mark} {self.model.label(row, self.width - len(mark) - 1)}"
            put(pad, self.rely + 1 + i, self.relx, text.ljust(self.width), attr, self.width)


class BufferListView(TypingGoesToInput, UnicodeKeys, Placed, wgwidget.Widget):
    """The buffers, numbered (Alt-1 is All), each with its activity mark (`@` a private
    message or a mention, `+` messages, `.` joins and other events) and counts
    (`(5)` unread, `(5, @1)` with a mention); the current one is marked `>`.
    Up/Down move, Enter goes to the buffer."""

    def __init__(
        self,
        screen: Any,
        box: Box,
        buffers: Callable[[], BufferList],
        on_pick: Callable[[str], None],
        **kw: Any,
    ) -> None:
        self.box, self._buffers, self._on_pick = box, buffers, on_pick
        self.cursor = 0
        self._top = 0
        super().__init__(screen, **kw)

    def set_up_handlers(self) -> None:
        super().set_up_handlers()
        self.handlers.update(
            {
                curses.KEY_UP: lambda _: self.move(-1),
                curses.KEY_DOWN: lambda _: self.move(1),
                curses.KEY_HOME: lambda _: self.move(-(10**6)),
                curses.KEY_END: lambda _: self.move(10**6),
                curses.ascii.NL: self.h_pick,
                curses.ascii.CR: self.h_pick,
                curses.KEY_ENTER: self.h_pick,
                curses.ascii.ESC: self.h_exit_escape,
                curses.KEY_LEFT: self.h_exit_escape,
                curses.KEY_RIGHT: self.h_exit_escape,
            }
        )
        self.complex_handlers.append((self.t_typed, self.h_typed))

    def edit(self) -> None:
        """The focus comes here: the cursor starts on the current buffer."""
        buffers = self._buffers()
        self.cursor = buffers.number(buffers.current) - 1
        super().edit()  # type: ignore[misc]

    def move(self, delta: int) -> None:
        self.cursor = max(0, min(len(self._buffers()) - 1, self.cursor + delta))

    def h_pick(self, _input: int) -> None:
        buffers = self._buffers()
        chosen = buffers.by_number(self.cursor + 1)
        if chosen is not None:
            self._on_pick(chosen.key)
        self.h_exit_escape(_input)

    def update(self, clear: bool = True) -> None:
        if clear:
            self.clear()
        if self.hidden or self.height <= 0 or self.width <= 0:
            return
        pad = self.parent.curses_pad
        theme = self.parent.parentApp.theme
        title_attr = (curses.A_REVERSE if self.editing else curses.A_UNDERLINE) | curses.A_BOLD
        put(pad, self.rely, self.relx, "Buffers".ljust(self.width), title_attr, self.width)
        buffers = self._buffers()
        visible = self.height - 1
        if visible <= 0:
            return
        items = list(buffers)
        self.cursor = max(0, min(self.cursor, len(items) - 1))
        current = buffers.current
        focus = self.cursor if self.editing else items.index(current)
        self._top = max(0, min(self._top, focus, len(items) - visible))
        if focus >= self._top + visible:
            self._top = focus - visible + 1
        for i, buffer in enumerate(items[self._top : self._top + visible]):
            row = self._top + i
            mark = ">" if buffer is current else buffer.activity()
            head = f"{row + 1:>2}{mark}"
            counts = buffer.counts()
            tail = f" {counts}" if counts else ""
            room = self.width - text_width(head) - text_width(tail)
            name = self.parent.model.buffer_name(buffer)
            text = f"{head}{ellipsize(name, max(1, room))}{tail}"
            attr = 0
            if buffer is current:
                attr |= curses.A_BOLD
            elif mark == "@":
                attr |= theme.attr("mention")
            elif mark == "+":
                attr |= curses.A_BOLD
            elif buffer.kind == "room" and not buffer.joined:
                attr |= curses.A_DIM
            if self.editing and row == self.cursor:
                attr |= curses.A_REVERSE
            put(pad, self.rely + 1 + i, self.relx, text.ljust(self.width), attr, self.width)


class HistoryView(TypingGoesToInput, UnicodeKeys, Placed, wgwidget.Widget):
    """The scrollable message history of the current buffer, under its title (a room and
    its topic, a person); Up/Down/PgUp/PgDn/Home/End when focused. Each sender's name
    is drawn in its own colour (the theme's; none without colours)."""

    def __init__(
        self,
        screen: Any,
        box: Box,
        view: Callable[[], History],
        title: Callable[[], str] = lambda: "",
        **kw: Any,
    ) -> None:
        self.box, self._view, self._title = box, view, title
        super().__init__(screen, **kw)

    @property
    def model(self) -> History:
        """The lines of the buffer on screen."""
        return self._view()

    def set_up_handlers(self) -> None:
        super().set_up_handlers()
        page = lambda: max(1, self.height - 1)  # noqa: E731
        self.handlers.update(
            {
                curses.KEY_UP: lambda _: self.model.scroll_by(1),
                curses.KEY_DOWN: lambda _: self.model.scroll_by(-1),
                curses.KEY_PPAGE: lambda _: self.model.scroll_by(page()),
                curses.KEY_NPAGE: lambda _: self.model.scroll_by(-page()),
                curses.KEY_HOME: lambda _: self.model.scroll_by(10**9),
                curses.KEY_END: lambda _: self.model.scroll_to_end(),
                curses.KEY_LEFT: self.h_exit_escape,
                curses.KEY_RIGHT: self.h_exit_escape,
                curses.ascii.NL: self.h_exit_escape,
                curses.ascii.CR: self.h_exit_escape,
                curses.ascii.ESC: self.h_exit_escape,
            }
        )
        self.complex_handlers.append((self.t_typed, self.h_typed))

    def update(self, clear: bool = True) -> None:
        if clear:
            self.clear()
        if self.hidden or self.height <= 0 or self.width <= 0:
            return
        pad = self.parent.curses_pad
        theme = self.parent.parentApp.theme
        history = self.model
        rows, first = self.height, self.rely
        title = self._title()
        if title and rows > 1:  # a buffer other than All: say which (a room: its topic)
            put(pad, first, self.relx, title, curses.A_BOLD | curses.A_UNDERLINE, self.width)
            rows, first = rows - 1, first + 1
        lines = history.window(self.width, rows)
        top = first + rows - len(lines)
        for i, line in enumerate(lines):
            attr = theme.attr(line.style)
            if self.editing and i == len(lines) - 1:
                attr |= curses.A_REVERSE
            put(pad, top + i, self.relx, line.text, attr, self.width)
            if line.nick is not None and line.style != "found":
                start, end = line.nick
                colour = theme.nick(line.text[start:end].lstrip("!"))
                if colour:
                    column = self.relx + text_width(line.text[:start])
                    room = self.width - (column - self.relx)
                    if room > 0:
                        put(pad, top + i, column, line.text[start:end], attr | colour, room)
