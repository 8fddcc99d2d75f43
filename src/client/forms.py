"""The npyscreen forms: the chat screen, the login popup, a question, the room list.

`ChatForm` draws a `ChatModel` (status line, the current buffer's people, the
buffer list, the buffer's history, message line, key help) and lays itself
out again on every resize, and whenever the message line grows (a message of
several lines) or the buffer list does. Network events are applied only here,
on the UI thread, from the app's FIFO inbox, drained both when idle
(`while_waiting`) and after every key (`adjust_widgets`), since npyscreen stops
calling the idle hook while someone types.
"""

from __future__ import annotations

import curses
import curses.ascii
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import npyscreen
from npyscreen import wgwidget
from npyscreen.wgNMenuDisplay import HasMenus

from chat.shared.messages import PASSWORD_MAX, RoomInfo, valid_name

from . import keys
from .history import History
from .model import ONLINE, RECONNECTING
from .textwidth import ellipsize, text_width, wrap
from .widgets import (
    Box,
    BufferListView,
    HistoryView,
    InputLine,
    ParticipantsView,
    PasswordInput,
    TitleInput,
    TitlePasswordInput,
    UnicodeKeys,
    put,
)

#: The bottom line names the widget that has the focus and its keys (the focus is never
#: somewhere invisible). Each hint has a rank: a narrow terminal drops whole hints, the
#: lowest rank first, and keeps the others in their order (never a word cut in two).
HINTS: dict[str, tuple[tuple[str, int], ...]] = {
    "input": (
        ("^X Menu", 9),
        ("Enter send", 8),
        ("Alt-1..9 buffers", 6),
        ("Tab complete", 4),
        ("Up/Down typed", 2),
        ("PgUp/PgDn scroll", 3),
        ("^N lists", 5),
        ("/help", 7),
    ),
    "list": (
        ("list: Up/Down move", 9),
        ("Space tick", 6),
        ("Enter open", 7),
        ("Esc: back to typing", 8),
    ),
    "history": (
        ("history: Up/Down/PgUp/PgDn scroll", 9),
        ("Home/End", 6),
        ("Esc: back to typing", 8),
    ),
    "buffers": (
        ("buffers: Up/Down move", 9),
        ("Enter go", 7),
        ("Esc: back to typing", 8),
    ),
}
HELP = {focus: " " + " | ".join(hint for hint, _ in hints) for focus, hints in HINTS.items()}
MIN_LINES, MIN_COLUMNS = 6, 30
#: Rows of the login popup given to its message (a refusal, a connection error).
MESSAGE_ROWS = 4
#: Registering with a shorter password asks once more (the server may have its own minimum).
PASSWORD_ADVICE = 8
WEAK_PASSWORD = f"warning: a password under {PASSWORD_ADVICE} characters is easy to guess"
LOGIN_KEYS = {"login": "l", "register": "r", "logout": "o", "delete": "d", "exit": "e"}


def help_line(focus: str, width: int) -> str:
    """The key help of `focus` in `width` columns: whole hints, the least needed dropped."""
    hints = list(HINTS[focus])

    def text() -> str:
        return " " + " | ".join(hint for hint, _ in hints)

    while len(hints) > 1 and text_width(text()) > width:
        hints.remove(min(hints, key=lambda hint: hint[1]))
    return text() if text_width(text()) <= width else wrap(text(), max(1, width))[0]


@dataclass(frozen=True, slots=True)
class Layout:
    participants: Box
    history: Box
    input: Box
    fits: bool
    buffers: Box


def layout(lines: int, columns: int, input_rows: int = 1, buffers: int = 1) -> Layout:
    """Where everything goes on a lines x columns screen (pure, so it is tested): the
    status line on top, the key help at the bottom, the message line above it
    (`input_rows` high), and between them the people over the buffer list (`buffers`
    rows and a title, at most half the height) on the left, the history on the right."""
    if lines < MIN_LINES or columns < MIN_COLUMNS:
        nothing = Box(0, 0, 0, 0)
        return Layout(nothing, nothing, nothing, False, nothing)
    input_rows = max(1, min(input_rows, lines - MIN_LINES + 1))
    body = lines - 2 - input_rows
    side = max(12, min(24, columns // 4))
    listed = min(buffers + 1, max(2, body // 2))
    people = body - listed
    return Layout(
        Box(1, 0, people, side),
        Box(1, side + 1, body, columns - side - 1),
        Box(lines - 1 - input_rows, 0, input_rows, columns - 1),
        True,
        Box(1 + people, 0, listed, side),
    )


def group_label(names: list[str], limit: int) -> str:
    """The names joined, or as many as fit in `limit` columns and a count of the others
    (at least one name: the widget clips what still does not fit)."""
    text = ", ".join(names)
    if text_width(text) <= limit:
        return text
    for shown in range(len(names) - 1, 0, -1):
        text = f"{', '.join(names[:shown])}, +{len(names) - shown} more"
        if text_width(text) <= limit:
            return text
    return text


def parse_server(text: str) -> tuple[str, int]:
    """ "host:port" (IPv6 as "[::1]:7777"); ValueError with a readable reason."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError("server must be host:port")
    host = host.strip("[]")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("port must be 1..65535")
    return host, int(port)


class SubmitPassword(PasswordInput):
    """Enter in the password field submits the login form."""

    def set_up_handlers(self) -> None:
        super().set_up_handlers()
        for key in (curses.ascii.NL, curses.ascii.CR, curses.KEY_ENTER):
            self.handlers[key] = self.h_submit

    def h_submit(self, _input: int) -> None:
        self.editing = False
        self.how_exited = False
        self.parent._on_ok()


class TitleSubmitPassword(npyscreen.TitleText):
    _entry_type = SubmitPassword


class PasswordToOk(PasswordInput):
    """Enter in the password field moves to the form's OK button (Delete), which then
    needs its own Enter: the password proves who asks, the button says yes."""

    def set_up_handlers(self) -> None:
        super().set_up_handlers()
        for key in (curses.ascii.NL, curses.ascii.CR, curses.KEY_ENTER):
            self.handlers[key] = self.h_to_ok

    def h_to_ok(self, _input: int) -> None:
        self.editing = False
        self.how_exited = False
        form = self.parent
        button = form._added_buttons["ok_button"]
        button.how_exited = False  # (a button not visited yet has none)
        form.editw = form._widgets__.index(button)


class TitlePasswordToOk(npyscreen.TitleText):
    _entry_type = PasswordToOk


@dataclass(frozen=True, slots=True)
class Credentials:
    host: str
    port: int
    user: str
    password: str
    register: bool


def too_small_lines(columns: int, lines: int, leave: str) -> list[str]:
    """ "Terminal too small" in whole words, as many lines as the screen has; `leave` says
    which key still works (the keys keep working while the screen is too small)."""
    text = f"Terminal too small ({columns}x{lines}); {leave}"
    return wrap(text, max(1, columns - 1))[:lines]


class FitsOrSaysSo:
    """For popups: on a terminal smaller than the popup, the "too small" message instead
    of the part of the popup that happens to fit (or nothing at all, when curses is asked to
    draw it off the screen). The popup is centred again on every draw, so it follows the
    terminal; `backdrop` redraws the screen under it after a resize."""

    curses_pad: Any
    lines: int
    columns: int
    show_atx: int
    show_aty: int
    show_from_x: int
    show_from_y: int
    backdrop: Callable[[], None] | None = None
    keypress_timeout: int | None
    live: Callable[[], bool] | None = None
    LEAVE = "Escape: back"

    def keep_live(self, live: Callable[[], bool]) -> None:
        """`live`: the chat under the popup, kept going while it is open (applies what the
        network brought and redraws the screen under the popup: True when it did), run
        when no key came for a tenth of a second, as the chat's own idle hook is."""
        self.live = live
        self.keypress_timeout = 1

    def while_waiting(self) -> None:
        """A popup left open (the user away) does not freeze the chat: messages are drawn
        under it, and the network's events applied, as they come."""
        if self.live is not None and self.live():
            self.display()  # type: ignore[attr-defined]

    def terminal_size(self) -> tuple[int, int]:
        rows, cols = self._max_physical()  # type: ignore[attr-defined]
        return rows + 1, cols + 1

    def fits(self) -> bool:
        rows, cols = self.terminal_size()
        return rows >= self.lines and cols >= self.columns

    def refresh(self) -> None:
        rows, cols = self.terminal_size()
        if self.fits():
            self.show_aty, self.show_atx = (rows - self.lines) // 2, (cols - self.columns) // 2
        else:  # over whatever the widgets drew: the pad covers the whole screen from 0,0
            self.show_aty = self.show_atx = self.show_from_y = self.show_from_x = 0
            self.curses_pad.erase()
            width = max(1, min(cols, self.columns) - 1)
            for row, line in enumerate(too_small_lines(cols, min(rows, self.lines), self.LEAVE)):
                put(self.curses_pad, row, 0, line, curses.A_BOLD, width)
        super().refresh()  # type: ignore[misc]

    def resize(self) -> None:
        """A KEY_RESIZE while the popup is open: the chat screen under it first."""
        if self.backdrop is not None:
            self.backdrop()


class _KeptKeys(UnicodeKeys):
    """A button that reads keys whole: a letter typed at it is ignored, never elsewhere; so
    is Space (npyscreen presses a button with it), so that words typed on at a question
    that came by itself (the `/join` that asks) cannot answer it halfway and leave the rest
    of the line to be sent: only Enter presses it."""

    handlers: dict[Any, Any]

    def set_up_handlers(self) -> None:
        super().set_up_handlers()  # type: ignore[misc]
        self.handlers.pop(curses.ascii.SP, None)


class _KeptKeysOk(_KeptKeys, npyscreen.ActionPopup.OK_Button):
    pass


class _KeptKeysCancel(_KeptKeys, npyscreen.ActionPopup.Cancel_Button):
    pass


class _TextPopup(FitsOrSaysSo, npyscreen.ActionPopup):
    """A popup that says `text` (wrapped to its width) above what a subclass adds, with two
    buttons that keep every key in it until it closes; Escape cancels. Sized by `rows_for`
    before it is made (the caller needs the height to place it)."""

    OKBUTTON_TYPE = _KeptKeysOk
    CANCELBUTTON_TYPE = _KeptKeysCancel
    CANCEL_BUTTON_TEXT = "Cancel"
    #: Rows beyond the text's: borders, buttons, and what the subclass adds.
    EXTRA_ROWS = 5

    def __init__(
        self, *args: Any, text: str, backdrop: Callable[[], None] | None = None, **kw: Any
    ) -> None:
        self._text = text
        self.backdrop = backdrop
        super().__init__(*args, **kw)

    @classmethod
    def rows_for(cls, text: str, columns: int) -> int:
        return len(wrap(text, columns - 6)) + cls.EXTRA_ROWS

    def create(self) -> None:
        for line in wrap(self._text, self.columns - 6):
            self.add(npyscreen.FixedText, value=line, editable=False)
        self.how_exited_handers[wgwidget.EXITED_ESCAPE] = self._on_cancel


_P = TypeVar("_P", bound=_TextPopup)


class ConfirmPopup(_TextPopup):
    """A question with two buttons: letters typed at it do nothing, Enter presses the
    button that has the focus (Cancel at first, so a password typed blindly after the menu
    key goes nowhere)."""

    OK_BUTTON_TEXT = "Log out"
    CANCEL_BUTTON_BR_OFFSET = (2, 18)  # left of the wider OK button

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.confirmed = False
        super().__init__(*args, **kw)

    def pre_edit_loop(self) -> None:
        super().pre_edit_loop()
        self.editw = self._widgets__.index(self._added_buttons["cancel_button"])

    def on_ok(self) -> bool:
        self.confirmed = True
        return False

    def on_cancel(self) -> bool:
        self.confirmed = False
        return False


class CreatePopup(ConfirmPopup):
    """`/join` of a room that does not exist: create it? (Cancel has the focus.)"""

    OK_BUTTON_TEXT = "Create"


class LoginPopup(FitsOrSaysSo, npyscreen.ActionPopup):
    """Server, user and password (twice to register); OK logs in (or registers), Cancel goes
    back. The password field always starts empty: the form never shows a password again."""

    def __init__(
        self,
        *args: Any,
        register: bool,
        server: str,
        user: str,
        message: str = "",
        message_rows: int = MESSAGE_ROWS,
        backdrop: Callable[[], None] | None = None,
        **kw: Any,
    ) -> None:
        self._register = register
        self._message_rows = max(1, message_rows)
        self._initial = (server, user, message)
        self._warned: str | None = None  # the short password already warned about
        self.backdrop = backdrop
        self.result: Credentials | None = None
        super().__init__(*args, **kw)

    @staticmethod
    def rows_for(register: bool, message_rows: int) -> int:
        return 9 + register + message_rows

    def create(self) -> None:
        server, user, message = self._initial
        self.server = self.add(TitleInput, name="Server:", value=server, begin_entry_at=12)
        self.user = self.add(TitleInput, name="User:", value=user, begin_entry_at=12)
        self.confirm: Any = None
        if self._register:  # Enter in the password goes on to the confirmation
            self.password = self.add(TitlePasswordInput, name="Password:", begin_entry_at=12)
            self.confirm = self.add(TitleSubmitPassword, name="Again:", begin_entry_at=12)
        else:
            self.password = self.add(TitleSubmitPassword, name="Password:", begin_entry_at=12)
        self.nextrely += 1
        self.message_lines = [
            self.add(npyscreen.FixedText, value="", editable=False)
            for _ in range(self._message_rows)
        ]
        self._show_message(message)
        self.preserve_selected_widget = True
        self.editw = 1 if not user else 2
        self.how_exited_handers[wgwidget.EXITED_ESCAPE] = self._on_cancel  # Escape cancels

    def on_ok(self) -> bool:
        """Validate; True keeps the form open with the reason shown."""
        try:
            host, port = parse_server(self.server.value or "")
        except ValueError as exc:
            return self._complain(str(exc))
        user, password = (self.user.value or "").strip(), self.password.value or ""
        if not valid_name(user):
            return self._complain("user: letters, digits, _ . - (1-32)")
        if not 1 <= len(password) <= PASSWORD_MAX:
            return self._complain(f"password: 1 to {PASSWORD_MAX} characters")
        if self.confirm is not None:
            if (self.confirm.value or "") != password:
                self.password.value = self.confirm.value = ""
                self.editw = self._widgets__.index(self.password)
                self.password.how_exited = False  # its Enter said "next": stay here now
                return self._complain("the two passwords differ: type them again")
            if len(password) < PASSWORD_ADVICE and self._warned != password:
                self._warned = password  # the same password once more: the user's choice
                return self._complain(f"{WEAK_PASSWORD}: Enter again to use it anyway")
        self.result = Credentials(host, port, user, password, self._register)
        return False

    def on_cancel(self) -> bool:
        self.result = None
        return False

    def _complain(self, text: str) -> bool:
        self._show_message(text)
        self.display()
        return True

    def _show_message(self, text: str) -> None:
        """The message wrapped over the rows kept for it, whole words, never cut off
        (a longer one ends with "...", which no reason here needs)."""
        width = max(10, self.columns - 6)
        lines = wrap(text, width) if text else []
        rows = self._message_rows
        if len(lines) > rows:
            lines = [*lines[: rows - 1], lines[rows - 1][: width - 3] + "..."]
        for widget, line in zip(self.message_lines, [*lines, *[""] * rows], strict=False):
            widget.value = line


class SubmitCheckbox(UnicodeKeys, npyscreen.Checkbox):
    """A tick (Space or x) whose Enter submits the form it is in, as the last field does.
    npyscreen's vi keys (h j k l move the focus) are taken out: a password typed on at the
    tick must not land in the fields above it."""

    def set_up_handlers(self) -> None:
        super().set_up_handlers()
        for key in (curses.ascii.NL, curses.ascii.CR, curses.KEY_ENTER):
            self.handlers[key] = self.h_submit
        for letter in "hjkl":
            self.handlers.pop(ord(letter), None)

    def h_submit(self, _input: int) -> None:
        self.editing = False
        self.how_exited = False
        self.parent._on_ok()


@dataclass(frozen=True, slots=True)
class PasswordChange:
    old: str
    new: str
    logout_others: bool


class PasswdPopup(FitsOrSaysSo, npyscreen.ActionPopup):
    """`/passwd`: the old password, the new one twice, and whether to log out the other
    sessions. Enter goes from field to field, and on the tick (Space ticks it) submits.
    The fields start empty and the form keeps nothing once closed."""

    def __init__(
        self, *args: Any, user: str, backdrop: Callable[[], None] | None = None, **kw: Any
    ) -> None:
        self._user = user
        self._warned: str | None = None
        self.backdrop = backdrop
        self.result: PasswordChange | None = None
        super().__init__(*args, **kw)

    ROWS = 13

    def create(self) -> None:
        self.add(npyscreen.FixedText, value=f"New password for {self._user}", editable=False)
        self.old = self.add(TitlePasswordInput, name="Old:", begin_entry_at=12)
        self.new = self.add(TitlePasswordInput, name="New:", begin_entry_at=12)
        self.again = self.add(TitlePasswordInput, name="Again:", begin_entry_at=12)
        self.others = self.add(SubmitCheckbox, name="Log out my other sessions", value=False)
        self.nextrely += 1
        self.message = self.add(npyscreen.FixedText, value="", editable=False)
        self.preserve_selected_widget = True
        self.editw = 1
        self.how_exited_handers[wgwidget.EXITED_ESCAPE] = self._on_cancel

    def on_ok(self) -> bool:
        """Check; True keeps the form open with the reason (and the fields to retype)."""
        old, new = self.old.value or "", self.new.value or ""
        if not 1 <= len(old) <= PASSWORD_MAX:
            return self._complain(f"old password: 1 to {PASSWORD_MAX} characters", self.old)
        if not 1 <= len(new) <= PASSWORD_MAX:
            return self._complain(f"new password: 1 to {PASSWORD_MAX} characters", self.new)
        if (self.again.value or "") != new:
            self.new.value = self.again.value = ""
            return self._complain("the two new passwords differ: type them again", self.new)
        if len(new) < PASSWORD_ADVICE and self._warned != new:
            self._warned = new  # the same password once more: the user's choice
            return self._complain(f"{WEAK_PASSWORD}: Enter again to use it anyway", self.others)
        self.result = PasswordChange(old, new, bool(self.others.value))
        return False

    def on_cancel(self) -> bool:
        self.result = None
        return False

    def _complain(self, text: str, focus: Any) -> bool:
        self.message.value = ellipsize(text, max(10, self.columns - 6))
        self.editw = self._widgets__.index(focus)
        focus.how_exited = False  # its Enter said "next": stay there now
        self.display()
        return True


class DeletePopup(_TextPopup):
    """ "Delete my account": what it does, and the password to prove it. Enter in the
    password field moves to Delete, Enter there deletes; Escape (or Cancel) keeps the
    account. Nothing is deleted without the password, which the server checks."""

    OK_BUTTON_TEXT = "Delete"
    CANCEL_BUTTON_BR_OFFSET = (2, 16)
    EXTRA_ROWS = 8  # a blank row, the password, the message

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.password_given: str | None = None
        super().__init__(*args, **kw)

    def create(self) -> None:
        super().create()
        self.nextrely += 1
        self.password = self.add(TitlePasswordToOk, name="Password:", begin_entry_at=12)
        self.message = self.add(npyscreen.FixedText, value="", editable=False)

    def pre_edit_loop(self) -> None:
        super().pre_edit_loop()
        self.editw = self._widgets__.index(self.password)

    def on_ok(self) -> bool:
        password = self.password.value or ""
        if not 1 <= len(password) <= PASSWORD_MAX:
            self.message.value = "type your password to delete the account"
            self.editw = self._widgets__.index(self.password)
            self.password.how_exited = False
            self.display()
            return True
        self.password_given = password
        return False

    def on_cancel(self) -> bool:
        self.password_given = None
        return False


class _RoomRows(UnicodeKeys, npyscreen.MultiLine):
    """The rooms, one a row; Enter picks the one under the cursor, Escape cancels."""

    def set_up_handlers(self) -> None:
        super().set_up_handlers()
        for key in (curses.ascii.NL, curses.ascii.CR, curses.KEY_ENTER):
            self.handlers[key] = self.h_pick
        self.handlers[curses.ascii.ESC] = self.h_cancel

    def h_pick(self, _input: int) -> None:
        self.parent.picked = self.cursor_line
        self.parent.editing = False
        self.editing = False

    def h_cancel(self, _input: int) -> None:
        self.parent.picked = None
        self.parent.editing = False
        self.editing = False


def room_row(info: RoomInfo, width: int) -> str:
    """One room of the `/rooms` form: name, members, what we are to it, topic."""
    marks = [f"{info.members} member{'s' if info.members != 1 else ''}"]
    if info.member:
        marks.append("joined")
    if info.invited:
        marks.append("invited")
    if info.invite_only:
        marks.append("invite only")
    text = f"{info.room}  ({', '.join(marks)})  {info.topic}".rstrip()
    return ellipsize(text, max(1, width))


class RoomsPopup(FitsOrSaysSo, npyscreen.Popup):
    """`/rooms`: the public rooms, and those we are in or invited to; Enter joins the
    one under the cursor, Escape closes."""

    def __init__(
        self,
        *args: Any,
        rooms: tuple[RoomInfo, ...],
        backdrop: Callable[[], None] | None = None,
        **kw: Any,
    ) -> None:
        self._rooms = rooms
        self.backdrop = backdrop
        self.picked: int | None = None
        super().__init__(*args, **kw)

    def create(self) -> None:
        width = self.columns - 6
        self.add(
            npyscreen.FixedText,
            value=ellipsize("Enter: join the room  Escape: close", width),
            editable=False,
        )
        values = [room_row(r, width) for r in self._rooms] or ["(no rooms: /join #name makes one)"]
        self.rows = self.add(_RoomRows, values=values, max_height=self.lines - 5)

    def choice(self) -> RoomInfo | None:
        if self.picked is None or not self._rooms or not 0 <= self.picked < len(self._rooms):
            return None
        return self._rooms[self.picked]


class ChatForm(npyscreen.FormBaseNew, HasMenus):
    FRAMED = False
    FIX_MINIMUM_SIZE_WHEN_CREATED = False
    BLANK_LINES_BASE = 0
    BLANK_COLUMNS_RIGHT = 0
    MENU_KEY = "^X"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, minimum_lines=1, minimum_columns=1, cycle_widgets=True, **kw)
        self.initialize_menus()
        menu = self.new_menu(name="Menu")
        menu.addItem("Log in", lambda: self.h_login(False), LOGIN_KEYS["login"])
        menu.addItem("Register", lambda: self.h_login(True), LOGIN_KEYS["register"])
        menu.addItem("Log out", self.h_logout, LOGIN_KEYS["logout"])
        menu.addItem("Delete my account", self.h_delete_account, LOGIN_KEYS["delete"])
        menu.addItem("Exit", self.h_exit, LOGIN_KEYS["exit"])
        # ^O is npyscreen's help key; this form has no help text, so it is ours.
        app = self.parentApp
        handlers: dict[Any, Callable[[Any], None]] = {
            "^O": lambda _: app.go_back(),
            keys.ALT_LEFT: lambda _: app.step(-1),
            keys.ALT_RIGHT: lambda _: app.step(1),
            curses.KEY_F5: lambda _: app.step(-1),
            curses.KEY_F6: lambda _: app.step(1),
        }
        for digit in range(1, 10):  # Alt-1..9: Escape then the digit
            handlers[curses.ascii.alt(ord(str(digit)))] = lambda _, n=digit: app.go_to(n)
        self.add_handlers(handlers)

    # ----------------------------------------------------------- building
    def create(self) -> None:
        self.keypress_timeout = 1  # tenths of a second: the idle hook runs 10 times a second
        self.model = self.parentApp.model
        self._status = ""  # the status line as last drawn
        self._help = "input"  # whose keys the help line shows
        app = self.parentApp
        boxes = self._layout()
        # Added in the order ^N visits them, from the message line (the last) round.
        self.participants = self.add(
            ParticipantsView,
            box=boxes.participants,
            model=self.model.participants,
            on_pick=app.pick_people,
        )
        self.history = self.add(
            HistoryView, box=boxes.history, view=self.view_lines, title=self.model.title
        )
        self.buffer_list = self.add(
            BufferListView,
            box=boxes.buffers,
            buffers=lambda: self.model.buffers,
            on_pick=app.switch,
        )
        self.input = self.add(
            InputLine,
            box=boxes.input,
            prompt=self.prompt,
            on_submit=app.submit,
            on_paste=app.send_pasted,
            history=self.view_lines,
            names=app.completions,
            on_typing=app.typing,
            on_search=app.search_key,
        )
        self.editw = self._widgets__.index(self.input)
        self.how_exited_handers[wgwidget.EXITED_ESCAPE] = self.focus_input

    def _layout(self) -> Layout:
        rows = self.input.rows_wanted() if hasattr(self, "input") else 1
        return layout(self.lines, self.columns, rows, len(self.model.buffers))

    def resize(self) -> None:
        boxes = self._layout()
        self.participants.place(boxes.participants)
        self.history.place(boxes.history)
        self.buffer_list.place(boxes.buffers)
        self.input.place(boxes.input)

    def _relayout(self) -> None:
        """The message line grew or shrank, or a buffer came or went: lay out again."""
        boxes = self._layout()
        if boxes.input != self.input.box or boxes.buffers != self.buffer_list.box:
            self.resize()

    def size_changed(self) -> bool:
        """True when the terminal's size is not the form's (a popup ate the KEY_RESIZE)."""
        rows, cols = self._max_physical()
        return (rows + 1, cols + 1) != (self.lines, self.columns)

    def DISPLAY(self) -> None:
        if self.size_changed():
            self._resize()  # lays out again, then comes back here with the sizes equal
            return
        super().DISPLAY()

    def focus_input(self) -> None:
        self.editw = self._widgets__.index(self.input)

    def find_previous_editable(self, *args: Any) -> None:
        """^P / Shift-Tab: the previous widget, round the end as ^N goes round."""
        self.editw = (self.editw - 1) % len(self._widgets__)

    def focused(self) -> str:
        """Which widget has the focus (`add` hands out weak proxies: compared by index)."""
        if self.editw == self._widgets__.index(self.participants):
            return "list"
        if self.editw == self._widgets__.index(self.history):
            return "history"
        if self.editw == self._widgets__.index(self.buffer_list):
            return "buffers"
        return "input"

    def type_into_input(self, text: str) -> None:
        """A key typed in the list or the history: it goes to the message line."""
        self.input.insert(text)

    def paste_into_input(self, text: str) -> None:
        self.input.handle_paste(text)

    def target(self) -> str:
        """Who gets a message typed now, for people."""
        return self.model.describe_target()

    def history_height(self) -> int:
        return self.history.height

    def view_lines(self) -> History:
        """The lines of the view on screen; asked for at every key and every draw."""
        return self.model.view.lines

    def prompt(self) -> str:
        """`[bob, carol (offline)] > `, `[#dev] > `, `[all] > `: exactly who gets the text
        (the current buffer). A group too long for half the line names as many as fit and
        counts the others (`/names` lists them)."""
        model = self.model
        buffer = model.current
        if not buffer.private:
            return f"[{model.describe_target()}] > "
        named = [model.participants.describe([n]) for n in buffer.people]
        return f"[{group_label(named, self.columns // 2)}] > "

    # ------------------------------------------------------------ drawing
    def draw_form(self) -> None:
        pad, lines, columns = self.curses_pad, self.lines, self.columns
        if not layout(lines, columns).fits:
            self._draw_too_small()
            return
        self._status = self.model.status_text()
        put(pad, 0, 0, f" {self._status}".ljust(columns), curses.A_REVERSE, columns)
        side = self.participants.box.width
        with suppress(curses.error):
            pad.vline(1, side, curses.ACS_VLINE, lines - 3)
        self._help = self.focused()
        put(pad, lines - 1, 0, help_line(self._help, columns - 1), curses.A_DIM, columns - 1)

    def _draw_too_small(self) -> None:
        """The reason in whole words, as many lines as the screen has."""
        width = max(1, self.columns - 1)
        for row, line in enumerate(too_small_lines(self.columns, self.lines, "^X: menu")):
            put(self.curses_pad, row, 0, line, curses.A_BOLD, width)

    def while_editing(self, *_args: Any) -> None:
        """The focus moved to another widget (npyscreen draws only that widget then): the
        help line must name the new one, so the whole form is drawn again."""
        if self._help != self.focused():
            self.display()

    # ---------------------------------------------- events from the network
    def while_waiting(self) -> None:
        if self.size_changed():
            self._resize()
        if self.parentApp.drain() or self.model.status_text() != self._status:
            self._relayout()
            self.display()  # new events, or the reconnect countdown ticked
        self._attention()
        self._maybe_login_again()
        self._maybe_ask()

    def _live(self) -> bool:
        """The chat under an open popup (its `live`): what `while_waiting` does but asking
        nothing (a question waits until the popup closes) and drawing the whole screen,
        the popup's caller redrawing it over. True when anything was drawn."""
        if not self.parentApp.drain() and self.model.status_text() == self._status:
            return False
        self._relayout()
        self.DISPLAY()
        self._attention()
        return True

    def adjust_widgets(self) -> None:
        self.parentApp.drain()
        self._relayout()
        self.display()
        self._attention()
        self._maybe_login_again()
        self._maybe_ask()

    def _maybe_ask(self) -> None:
        """What an answer asks of the user: create a room that is not there, pick a room
        from the list; and what waited for the directory (a line, a Tab) is tried again."""
        app, model = self.parentApp, self.model
        if model.directory_changed:
            model.directory_changed = False
            app.directory_answered()
            self.input.complete_again()
            self.display()
        if model.rooms_listed:  # a Tab typed before the login's room list came: now
            model.rooms_listed = False
            self.input.complete_again()
            self.display()
        if not self.editing:
            return
        if app.want_passwd:
            app.want_passwd = False
            self.h_passwd()
        if model.want_create is not None:
            room, model.want_create = model.want_create, None
            question = f"There is no room {room}. Create it, with you as its owner?"
            if self._confirm(question):
                app.create_room(room)
            self.DISPLAY()
        rooms = model.take_room_list()
        if rooms is not None:
            cols = self._popup_columns()
            rows = max(6, min(self.lines - 2, len(rooms) + 6))
            popup = RoomsPopup(
                name="Rooms", rooms=rooms, backdrop=self.DISPLAY, lines=rows, columns=cols
            )
            popup.keep_live(self._live)
            popup.edit()
            chosen = popup.choice()
            if chosen is not None:
                app.join_room(chosen.room, joined=chosen.member)
            self.DISPLAY()

    def _confirm(self, text: str) -> bool:
        popup = self._text_popup(CreatePopup, "Question", text)
        return popup.confirmed

    def _attention(self) -> None:
        if self.model.take_bell() and self.parentApp.options.bell:
            with suppress(curses.error):
                curses.beep()

    def _maybe_login_again(self) -> None:
        """The login failed (or credentials are missing): the form, with the reason."""
        if self.model.want_login and self.editing:
            self.model.want_login = False
            self.h_login(self.model.registering, self.model.status_note)

    # -------------------------------------------------------- menu actions
    def h_login(self, register: bool, message: str = "") -> None:
        """The login (or register) form; `message` says why it opened by itself. Opened from
        the menu it says nothing: an old reason is not about the new attempt. Logged in, it
        asks first whether to log out: the form never opens on top of a session, and what is
        typed after the menu key stays in the question or the form, never in the chat."""
        app = self.parentApp
        self.DISPLAY()  # the menu that led here is still drawn
        if self.model.state in (ONLINE, RECONNECTING):
            if not self._confirm_log_out(register):
                self.DISPLAY()
                return
            app.logout()
            self.DISPLAY()
        # As many message rows as the screen allows (a short terminal keeps the buttons).
        message_rows = max(1, min(MESSAGE_ROWS, self.lines - LoginPopup.rows_for(register, 0)))
        rows, cols = LoginPopup.rows_for(register, message_rows), self._popup_columns()
        popup = LoginPopup(
            name="Register" if register else "Log in",
            register=register,
            server=self.model.address,
            user=app.options.user or self.model.user,
            message=message,
            message_rows=message_rows,
            backdrop=self.DISPLAY,
            lines=rows,
            columns=cols,
        )
        popup.keep_live(self._live)
        popup.edit()
        if popup.result is not None:
            app.connect(popup.result)
        self.DISPLAY()

    def _confirm_log_out(self, register: bool) -> bool:
        what = "register a new account" if register else "log in again (as anyone)"
        text = f"You are logged in as {self.model.user}. Log out first, to {what}?"
        popup = self._text_popup(ConfirmPopup, "Register" if register else "Log in", text)
        return popup.confirmed

    def _text_popup(self, kind: type[_P], name: str, text: str) -> _P:
        """`kind` saying `text`, sized to it and to the screen, over this form; edited
        until it closes."""
        cols = self._popup_columns()
        popup = kind(
            name=name,
            text=text,
            backdrop=self.DISPLAY,
            lines=kind.rows_for(text, cols),
            columns=cols,
        )
        popup.keep_live(self._live)
        popup.edit()
        return popup

    def _popup_columns(self) -> int:
        return min(60, max(32, self.columns - 2))

    def h_logout(self) -> None:
        self.parentApp.logout()

    def h_passwd(self) -> None:
        """`/passwd`: the form, then the request (its answer is a note)."""
        app = self.parentApp
        self.DISPLAY()
        cols = self._popup_columns()
        popup = PasswdPopup(
            name="Change password",
            user=self.model.user,
            backdrop=self.DISPLAY,
            lines=PasswdPopup.ROWS,
            columns=cols,
        )
        popup.keep_live(self._live)
        popup.edit()
        if popup.result is not None:
            app.change_password(popup.result)
        self.DISPLAY()

    def h_delete_account(self) -> None:
        """The menu's "Delete my account": only logged in, behind the password."""
        app = self.parentApp
        self.DISPLAY()
        if self.model.state != ONLINE:
            self.model.status_note = "log in first, to delete your account"
            self.DISPLAY()
            return
        user = self.model.user
        text = (
            f"Delete the account {user} for good? Your rooms, read markers and stored "
            "messages go; what you wrote stays in others' history; the name can be "
            "registered again. Your password:"
        )
        popup = self._text_popup(DeletePopup, "Delete my account", text)
        if popup.password_given is not None:
            app.delete_account(popup.password_given)
        self.DISPLAY()

    def h_exit(self) -> None:
        self.parentApp.exit()
        self.exit_editing()
        self.parentApp.setNextForm(None)
