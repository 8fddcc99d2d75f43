"""The npyscreen application: one chat form, one network thread per login.

Threading rule: the network thread only puts `(generation, event)` pairs on
`inbox`, a FIFO `queue.Queue` (npyscreen's own event queue is LIFO); the UI
thread drains it in `ChatForm.while_waiting` and `adjust_widgets`, applies
each event to the `ChatModel`, and redraws. The generation tags events so
that a network thread from an earlier login can't touch the current one.
"""

from __future__ import annotations

import contextlib
import curses
import itertools
import os
import queue
import signal
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import npyscreen

from chat.shared.messages import BROADCAST, Recipients

from . import events as ev
from .commands import (
    HELP,
    Help,
    Query,
    Quit,
    SendText,
    SendTo,
    ShowAll,
    ShowHistory,
    Who,
    parse_command,
)
from .forms import HELP as KEY_HELP
from .forms import PASSWORD_ADVICE, WEAK_PASSWORD, ChatForm, Credentials
from .model import CONNECTING, OFFLINE, ONLINE, RECONNECTING, AckOffline, AskHistory, ChatModel
from .names import FOLDS, MARK
from .net import NetworkClient
from .session import Session
from .terminal import prepare_terminal, stderr_on_terminal
from .theme import Theme

#: Bracketed paste on and off (xterm's mode 2004): a paste then arrives marked as one.
PASTE_MODE_ON, PASTE_MODE_OFF = b"\x1b[?2004h", b"\x1b[?2004l"

#: Events applied per drain, so a flood can't freeze the keyboard.
DRAIN_BATCH = 500


@dataclass(frozen=True, slots=True)
class TuiOptions:
    host: str
    port: int
    user: str
    password: str
    register: bool
    tls: ssl.SSLContext | None = None  # every connection is TLS when set
    bell: bool = True  # ring the terminal bell on a private message or a mention
    colours: bool = True
    palette: Mapping[str, str] = field(default_factory=dict)


class ChatApp(npyscreen.NPSAppManaged):
    def __init__(self, options: TuiOptions) -> None:
        super().__init__()
        self.options = options
        self.theme = Theme(options.colours, options.palette)
        self.model = ChatModel(options.host, options.port, options.user)
        self.inbox: queue.Queue[tuple[int, ev.NetEvent]] = queue.Queue()
        self.net: NetworkClient | None = None
        self._generation = 0
        self._ids = itertools.count(1)  # message ids stay unique across logins

    def onStart(self) -> None:
        """Log in (or register) at once when the command line says who and the password is
        known, as an IRC client given a server and a nick; else the welcome hints say how."""
        curses.mousemask(0)  # npyscreen grabs the mouse; give text selection back
        self.theme.setup()
        options = self.options
        self.addForm("MAIN", ChatForm, name="chat")
        self.model.history.note("Welcome. ^X opens the menu (log in, register, log out, exit).")
        self.model.history.note("/help lists the commands and keys.")
        if options.user and options.password:
            if options.register and len(options.password) < PASSWORD_ADVICE:
                self.model.note(WEAK_PASSWORD, style="error")
            # --register for an account that exists logs in with that password instead.
            self.connect(
                Credentials(
                    options.host, options.port, options.user, options.password, options.register
                ),
                login_if_exists=True,
            )
        elif options.user:  # no password known: the form asks for it (nothing typed is lost)
            key, action = ("r", "register") if options.register else ("l", "log in")
            self.model.history.note(
                f"Press ^X, then {key} to {action} as {options.user}: type the password there."
            )
        else:
            self.model.history.note("Press ^X, then l to log in or r to register.")

    # ------------------------------------------------------ UI-thread API
    def connect(self, cred: Credentials, login_if_exists: bool = False) -> None:
        """Log in (or register) on a new network thread; the password stays in its session
        only (the form never shows it again)."""
        self._stop_network()
        self._generation += 1
        generation = self._generation
        self.model.begin_login(cred.user, cred.host, cred.port, cred.register)
        session = Session(cred.user, cred.password, cred.register, login_if_exists)
        self.net = NetworkClient(
            cred.host,
            cred.port,
            session,
            lambda event: self.inbox.put((generation, event)),
            reconnect=True,
            ids=self._ids,
            tls=self.options.tls,
        )
        self.net.start()

    def submit(self, text: str) -> bool:
        """Enter on the message line: a command, or a message to the selection
        (nothing selected = All).

        False when nothing was done; the text then stays in the line.
        """
        model = self.model
        try:
            command = parse_command(text)
        except ValueError as exc:
            model.note(str(exc), style="error")
            return False
        to: Recipients = model.participants.recipients()
        match command:
            case ShowHistory(peers):
                return self.show_history(peers)
            case ShowAll():
                model.show_all()
                return True
            case Query(names):
                model.select(names or ())
                return True
            case Who():
                model.who()
                return True
            case Help():
                self.help()
                return True
            case Quit():
                self.quit()
                return True
            case SendTo(names, text):
                to = names
            case SendText(text):
                pass
        return self.send(to, text)

    def send(self, to: Recipients, text: str) -> bool:
        """A message to `to`; False (and the reason on screen) when it cannot go."""
        model = self.model
        if self.net is None or model.state not in (ONLINE, RECONNECTING, CONNECTING):
            model.note("not logged in: press ^X, then Log in", style="error")
            return False
        try:
            msg_id = self.net.send(to, text)
        except ValueError as exc:
            model.note(f"not sent: {exc}", style="error")
            return False
        model.sending(msg_id, to, text)
        return True

    def send_pasted(self, lines: tuple[str, ...]) -> None:
        """Pasted lines: each a message to the selection, as text (a pasted "/quit" is not a
        command), in order; a line that cannot go is said and the rest still go."""
        to = self.model.participants.recipients()
        for line in lines:
            self.send(to, line)

    def completion_names(self) -> list[str]:
        """Who Tab can complete to: everyone in the list, and anyone heard from."""
        model = self.model
        heard = {entry.sender for entry in model.history.entries if entry.sender}
        names = set(model.participants.rows()[1:]) | heard
        return sorted(names - {model.user})

    def help(self) -> None:
        model = self.model
        for usage, meaning in HELP:
            model.note(f"{usage}  {meaning}")
        model.note(f"keys:{KEY_HELP['input']}")
        model.note(f"list (^N):{KEY_HELP['list'].removeprefix(' list:')}")
        model.note("history (^N twice): Home/End, Up/Down; ^O: history of the selection")
        model.note(
            f"{MARK}name: looks like another name (differs only in {FOLDS}); /who lists them"
        )
        model.view.lines.scroll_to_end()

    def quit(self) -> None:
        """/quit: as the menu's Exit (bye to the server, the terminal restored)."""
        form = self.getForm("MAIN")
        form.h_exit()

    def show_history(self, peers: tuple[str, ...] | None) -> bool:
        """The history with `peers` (None: the selection; nobody selected: the view of all)."""
        model = self.model
        names = peers if peers is not None else model.participants.recipients()
        if names == BROADCAST:
            model.show_all()
            return True
        if self.net is None:
            model.note("not logged in: press ^X, then Log in", style="error")
            return False
        model.open_history(tuple(names))
        self._send_wants()
        return True

    def toggle_history(self) -> None:
        """^O: the selection's history; again (or with All selected): the view of all."""
        model = self.model
        selection = model.participants.recipients()
        if model.convo is not None and (selection == BROADCAST or model.convo.peers == selection):
            model.show_all()
        elif selection == BROADCAST:
            model.note("^O shows the history of the people selected (Tab, then Enter or Space)")
        else:
            self.show_history(None)

    def logout(self) -> None:
        if self.model.state == OFFLINE and self.net is None:
            self.model.status_note = "not logged in"
            return
        self._stop_network()
        self.model.logged_out()

    def exit(self) -> None:
        self._stop_network()

    def drain(self) -> bool:
        """Apply queued network events to the model; True when anything changed."""
        changed = False
        for _ in range(DRAIN_BATCH):
            try:
                generation, event = self.inbox.get_nowait()
            except queue.Empty:
                break
            if generation == self._generation:
                self.model.apply(event)
                changed = True
        return self._send_wants() or changed

    def _send_wants(self) -> bool:
        """Hand what the model wants sent (history pages, the offline ack) to the network."""
        wants = self.model.take_wants()
        if self.net is None:
            return bool(wants)
        for want in wants:
            match want:
                case AskHistory(request_id, peer, before, limit):
                    self.net.history(request_id, peer, before, limit)
                case AckOffline(upto):
                    self.net.offline_ack(upto)
        return bool(wants)

    def _stop_network(self) -> None:
        """Close the current connection politely (bye) and forget its events."""
        if self.net is not None:
            self._generation += 1
            self.net.close()
            self.net = None


class _Terminated(Exception):
    """SIGTERM or SIGHUP: leave through the normal path, so curses restores the terminal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.code = 128 + signum


def _raise_terminated(signum: int, _frame: object) -> None:
    raise _Terminated(signum)


@contextlib.contextmanager
def bracketed_paste() -> Iterator[None]:
    """Ask the terminal to mark pastes (a terminal without bracketed paste ignores this)."""
    _write_terminal(PASTE_MODE_ON)
    try:
        yield
    finally:
        _write_terminal(PASTE_MODE_OFF)


def _write_terminal(data: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(1, data)


def run_tui(options: TuiOptions) -> int:
    prepare_terminal()
    app = ChatApp(options)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_terminated)
    with stderr_on_terminal(), bracketed_paste():
        try:
            app.run(fork=False)
        except KeyboardInterrupt:
            return 130
        except _Terminated as exc:
            return exc.code
        finally:
            app.exit()  # says bye when still connected
    return 0
