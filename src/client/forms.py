"""The two npyscreen forms: the chat screen and the login popup.

`ChatForm` draws a `ChatModel` (status line, participants, history, message
line, key help) and lays itself out again on every resize. Network events
are applied only here, on the UI thread, from the app's FIFO inbox, drained
both when idle (`while_waiting`) and after every key (`adjust_widgets`),
since npyscreen stops calling the idle hook while someone types.
"""

from __future__ import annotations

import curses
import curses.ascii
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import npyscreen
from npyscreen import wgwidget
from npyscreen.wgNMenuDisplay import HasMenus

from chat.shared.messages import PASSWORD_MAX, valid_name

from .history import History
from .model import ONLINE
from .textwidth import text_width, wrap
from .widgets import (
    Box,
    HistoryView,
    InputLine,
    ParticipantsView,
    PasswordInput,
    TitleInput,
    put,
)

#: The bottom line names the widget that has the focus and its keys (the focus is never
#: somewhere invisible).
HELP = {
    "input": " ^X Menu | Enter send | Tab nick | Up/Down typed | PgUp/PgDn scroll | ^N list"
    " | ^O history | /help",
    "list": " list: Up/Down move | Space tick | Enter pick | ^O history | Esc: back to typing",
    "history": " history: Up/Down/PgUp/PgDn scroll | Home/End | Esc: back to typing",
}
MIN_LINES, MIN_COLUMNS = 6, 30
#: Rows of the login popup given to its message (a refusal, a connection error).
MESSAGE_ROWS = 4
LOGIN_KEYS = {"login": "l", "register": "r", "logout": "o", "exit": "e"}


@dataclass(frozen=True, slots=True)
class Layout:
    participants: Box
    history: Box
    input: Box
    fits: bool


def layout(lines: int, columns: int) -> Layout:
    """Where everything goes on a lines x columns screen (pure, so it is tested)."""
    if lines < MIN_LINES or columns < MIN_COLUMNS:
        nothing = Box(0, 0, 0, 0)
        return Layout(nothing, nothing, nothing, False)
    body = lines - 3  # status line on top, message line and key help below
    side = max(12, min(24, columns // 4))
    return Layout(
        Box(1, 0, body, side),
        Box(1, side + 1, body, columns - side - 1),
        Box(lines - 2, 0, 1, columns - 1),
        True,
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


@dataclass(frozen=True, slots=True)
class Credentials:
    host: str
    port: int
    user: str
    password: str
    register: bool


class LoginPopup(npyscreen.ActionPopup):
    """Server, user and password; OK logs in (or registers), Cancel goes back."""

    def __init__(
        self,
        *args: Any,
        register: bool,
        server: str,
        user: str,
        password: str,
        message: str = "",
        message_rows: int = MESSAGE_ROWS,
        **kw: Any,
    ) -> None:
        self._register = register
        self._message_rows = max(1, message_rows)
        self._initial = (server, user, password, message)
        self.result: Credentials | None = None
        super().__init__(*args, **kw)

    def create(self) -> None:
        server, user, password, message = self._initial
        self.server = self.add(TitleInput, name="Server:", value=server, begin_entry_at=12)
        self.user = self.add(TitleInput, name="User:", value=user, begin_entry_at=12)
        self.password = self.add(
            TitleSubmitPassword, name="Password:", value=password, begin_entry_at=12
        )
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
            return self._complain("password: 1 to 256 characters")
        self.result = Credentials(host, port, user, password, self._register)
        return False

    def on_cancel(self) -> bool:
        self.result = None
        return False

    def _complain(self, text: str) -> bool:
        self._show_message(text)
        for line in self.message_lines:
            line.display()
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
        menu.addItem("Exit", self.h_exit, LOGIN_KEYS["exit"])
        # ^O is npyscreen's help key; this form has no help text, so it is ours.
        self.add_handlers({"^O": lambda _: self.parentApp.toggle_history()})

    # ----------------------------------------------------------- building
    def create(self) -> None:
        self.keypress_timeout = 1  # tenths of a second: the idle hook runs 10 times a second
        self.model = self.parentApp.model
        self._status = ""  # the status line as last drawn
        boxes = layout(self.lines, self.columns)
        self.participants = self.add(
            ParticipantsView,
            box=boxes.participants,
            model=self.model.participants,
            on_history=lambda: self.parentApp.show_history(None),
        )
        self.history = self.add(HistoryView, box=boxes.history, view=self.view_lines)
        self.input = self.add(
            InputLine,
            box=boxes.input,
            prompt=self.prompt,
            on_submit=self.parentApp.submit,
            on_paste=self.parentApp.send_pasted,
            history=self.view_lines,
            names=self.parentApp.completion_names,
        )
        self.editw = self._widgets__.index(self.input)
        self.how_exited_handers[wgwidget.EXITED_ESCAPE] = self.focus_input

    def resize(self) -> None:
        boxes = layout(self.lines, self.columns)
        self.participants.place(boxes.participants)
        self.history.place(boxes.history)
        self.input.place(boxes.input)

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
        return "input"

    def type_into_input(self, text: str) -> None:
        """A key typed in the list or the history: it goes to the message line."""
        self.input.insert(text)

    def paste_into_input(self, text: str) -> None:
        self.input.handle_paste(text)

    def target(self) -> str:
        """Who gets a message typed now, for people."""
        return self.model.participants.describe_target()

    def history_height(self) -> int:
        return self.history.height

    def view_lines(self) -> History:
        """The lines of the view on screen; asked for at every key and every draw."""
        return self.model.view.lines

    def prompt(self) -> str:
        """`[bob, carol (offline)] > `: exactly who gets the text. A group too long for half
        the line names as many as fit and counts the others (all are ticked in the list)."""
        participants = self.model.participants
        to = participants.recipients()
        if isinstance(to, str):
            return "[all] > "
        return f"[{group_label([participants.describe([n]) for n in to], self.columns // 2)}] > "

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
        put(pad, lines - 1, 0, HELP[self.focused()], curses.A_DIM, columns - 1)

    def _draw_too_small(self) -> None:
        """The reason in whole words, as many lines as the screen has."""
        text = f"Terminal too small ({self.columns}x{self.lines}); ^X: menu"
        width = max(1, self.columns - 1)
        for row, line in enumerate(wrap(text, width)[: self.lines]):
            put(self.curses_pad, row, 0, line, curses.A_BOLD, width)

    # ---------------------------------------------- events from the network
    def while_waiting(self) -> None:
        if self.size_changed():
            self._resize()
        if self.parentApp.drain() or self.model.status_text() != self._status:
            self.display()  # new events, or the reconnect countdown ticked
        self._attention()
        self._maybe_login_again()

    def adjust_widgets(self) -> None:
        self.parentApp.drain()
        self.display()
        self._attention()
        self._maybe_login_again()

    def _attention(self) -> None:
        if self.model.take_bell() and self.parentApp.options.bell:
            with suppress(curses.error):
                curses.beep()

    def _maybe_login_again(self) -> None:
        """The login failed (or credentials are missing): the form, with the reason."""
        if self.model.want_login and self.editing:
            self.model.want_login = False
            self.h_login(self.parentApp.last_register, self.model.status_note)

    # -------------------------------------------------------- menu actions
    def h_login(self, register: bool, message: str = "") -> None:
        """The login (or register) form; `message` says why it opened by itself. Opened from
        the menu it says nothing: an old reason is not about the new attempt."""
        if self.model.state == ONLINE:
            self.model.status_note = "already logged in (Log out first)"
            return
        app = self.parentApp
        self.DISPLAY()  # the menu that led here is still drawn
        # As many message rows as the screen allows (a short terminal keeps the buttons).
        message_rows = max(1, min(MESSAGE_ROWS, self.lines - 9))
        rows, cols = 9 + message_rows, min(60, max(32, self.columns - 2))
        popup = LoginPopup(
            name="Register" if register else "Log in",
            register=register,
            server=self.model.address,
            user=app.options.user or self.model.user,
            password=app.password,
            message=message,
            message_rows=message_rows,
            lines=rows,
            columns=cols,
        )
        # Set after construction: npyscreen reads a 0 passed in as "use the class default".
        popup.show_atx = max(0, (self.columns - cols) // 2)
        popup.show_aty = max(0, (self.lines - rows) // 2)
        popup.edit()
        if popup.result is not None:
            app.connect(popup.result)
        self.DISPLAY()

    def h_logout(self) -> None:
        self.parentApp.logout()

    def h_exit(self) -> None:
        self.parentApp.exit()
        self.exit_editing()
        self.parentApp.setNextForm(None)
