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
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

import npyscreen

from chat.shared.features import TYPING
from chat.shared.messages import BROADCAST, Recipients

from . import events as ev
from .commands import (
    COMMAND_WORDS,
    Invite,
    Join,
    Kick,
    Part,
    Query,
    Search,
    SendText,
    SendTo,
    ShowBuffer,
    Simple,
    Topic,
    Whois,
    help_lines,
    parse_command,
)
from .forms import PASSWORD_ADVICE, WEAK_PASSWORD, ChatForm, Credentials
from .inputline import word_before
from .model import (
    CONNECTING,
    OFFLINE,
    ONLINE,
    RECONNECTING,
    AckOffline,
    AskHistory,
    ChatModel,
    MarkRead,
    SendRequest,
)
from .names import FOLDS, MARK
from .net import NetworkClient
from .session import Session
from .terminal import prepare_terminal, stderr_on_terminal
from .theme import Theme

#: Bracketed paste on and off (xterm's mode 2004): a paste then arrives marked as one.
PASTE_MODE_ON, PASTE_MODE_OFF = b"\x1b[?2004h", b"\x1b[?2004l"

#: Events applied per drain, so a flood can't freeze the keyboard.
DRAIN_BATCH = 500
#: `typing: active` is sent again at most this often while typing (v1.2 section 5 relays
#: at most 2 a second; a receiver shows it for 6 s).
TYPING_EVERY = 3.0


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
    join: tuple[str, ...] = ()  # rooms to join after the first login (--join)


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
        #: A line that waits for the directory (`@bbo hi` with bbo not known yet).
        self._waiting_line: str | None = None
        #: Typing: where `active` was last sent, and when (monotonic).
        self._typing_to: Recipients | None = None
        self._typing_at = 0.0

    def onStart(self) -> None:
        """Log in (or register) at once when the command line says who and the password is
        known, as an IRC client given a server and a nick; else the welcome hints say how."""
        curses.mousemask(0)  # npyscreen grabs the mouse; give text selection back
        with contextlib.suppress(curses.error):
            curses.nonl()  # Enter is CR and ^J is LF: one sends, the other is a new line
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
        """Enter on the message line: a command, or a message to the current buffer.

        False when nothing was done; the text then stays in the line (a line that waits
        for the directory is run again when it answers).
        """
        model = self.model
        line = text
        try:
            command = parse_command(line)
        except ValueError as exc:
            model.note(str(exc), style="error")
            return False
        to: Recipients = model.target()
        match command:
            case Query(names):
                return self._query(line, names)
            case ShowBuffer(name):
                return self.show_buffer(name)
            case Simple(word):
                return self._simple(word)
            case Join(room):
                return self._online() and self.join_room(room)
            case Part(room):
                return self._in_room(room, "/part") and self._part(room)
            case Invite(user, room):
                return self._in_room(room, "/invite") and self._invite(user, room)
            case Kick(user, room):
                return self._in_room(room, "/kick") and self._kick(user, room)
            case Topic(topic):
                return self._topic(topic)
            case Whois(name):
                return self._whois(line, name)
            case Search(needle):
                model.search(needle)
                self._send_wants()
                return True
            case SendTo(target, text):
                if not self._exist(line, target):
                    return False
                to = target
            case SendText(text):
                pass
        return self.send(to, text)

    def _simple(self, word: str) -> bool:
        model = self.model
        if word == "who":
            model.who()
        elif word == "names":
            model.names()
        elif word == "help":
            self.help()
        elif word == "quit":
            self.quit()
        elif word == "close":
            why = model.close()
            if why is not None:
                model.note(why, style="error")
                return False
        elif word == "clear":
            model.clear()
        elif word == "filter":
            model.toggle_filter()
        elif word == "rooms":
            if not self._online() or not self._rooms_offered():
                return False
            model.list_rooms()
            self._send_wants()
        return True

    def _online(self) -> bool:
        if self.net is None or self.model.state != ONLINE:
            self.model.note("not connected: that needs the server", style="error")
            return False
        return True

    def _rooms_offered(self) -> bool:
        if "rooms" not in self.model.features:
            self.model.note("this server has no rooms (protocol v1.2)", style="error")
            return False
        return True

    def _in_room(self, room: str | None, command: str) -> bool:
        if not self._online() or not self._rooms_offered():
            return False
        if room is None and self.model.current.kind != "room":
            self.model.note(f"{command}: not in a room's buffer (name the room)", style="error")
            return False
        return True

    def _room(self, room: str | None) -> str:
        return room if room is not None else self.model.current.name

    def _part(self, room: str | None) -> bool:
        self.model.part(self._room(room))
        self._send_wants()
        return True

    def _invite(self, user: str, room: str | None) -> bool:
        self.model.invite(self._room(room), user)
        self._send_wants()
        return True

    def _kick(self, user: str, room: str | None) -> bool:
        self.model.kick(self._room(room), user)
        self._send_wants()
        return True

    def _topic(self, topic: str | None) -> bool:
        model = self.model
        buffer = model.current
        if buffer.kind != "room":
            model.note("/topic: not in a room's buffer", style="error")
            return False
        if topic is None:
            room = model.rooms.get(buffer.name)
            said = room.topic if room is not None and room.topic else "(no topic)"
            model.note(f"topic of {buffer.name}: {said}")
            return True
        if not self._online():
            return False
        model.set_topic(buffer.name, topic)
        self._send_wants()
        return True

    def join_room(self, room: str, joined: bool = False) -> bool:
        """`/join #room`, or a room picked in the `/rooms` form."""
        if not self._rooms_offered():
            return False
        model = self.model
        known = model.rooms.get(room)
        if joined or (known is not None and known.joined):
            model.open_room(room)
            return True
        model.join(room)
        self._send_wants()
        return True

    def create_room(self, room: str) -> None:
        self.model.join(room, create=True)
        self._send_wants()

    def _whois(self, line: str, name: str) -> bool:
        if not self._exist(line, (name,), quiet=True):
            return False
        self.model.whois(name)
        return True

    def _query(self, line: str, names: tuple[str, ...] | None) -> bool:
        if names is None:
            self.model.switch("*")
            return True
        if not self._exist(line, names):
            return False
        self.model.open_query(names)
        self._send_wants()
        return True

    def _exist(self, line: str, names: Recipients, quiet: bool = False) -> bool:
        """Whether every name is a registered user. An unknown one is said at once; one not
        known yet is asked of the directory, and the line waits in the message line (it
        runs again when the answer comes). A server without `user_search` (v1.1) cannot
        tell: the names are taken as they are."""
        model = self.model
        if isinstance(names, str) or not model.directory.available:
            return True
        verdicts = {n: model.directory.exists(n) for n in names if n != BROADCAST}
        missing = [n for n, known in verdicts.items() if known is False]
        if missing:
            for name in missing:
                close = model.directory.suggest(name)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                model.note(f"no such user: {name}{hint}", style="error")
            return False
        unknown = [n for n, known in verdicts.items() if known is None]
        if not unknown:
            return True
        if model.state != ONLINE:
            return True  # nobody to ask: as a v1.1 client, the server will say `missing`
        for name in unknown:
            model.lookup(name)
        self._send_wants()
        self._waiting_line = line
        if not quiet:
            model.note(f"looking up {', '.join(unknown)}...")
        return False

    def directory_answered(self) -> None:
        """The directory answered: the line that waited for it runs, when it is still the
        line being typed (and leaves it when it went)."""
        line, self._waiting_line = self._waiting_line, None
        form = self.getForm("MAIN")
        if line is None or (form.input.value or "") != line:
            return
        if self.submit(line):
            form.input.set_text("")

    def send(self, to: Recipients, text: str) -> bool:
        """A message to `to`; False (and the reason on screen) when it cannot go."""
        model = self.model
        if self.net is None or model.state not in (ONLINE, RECONNECTING, CONNECTING):
            model.note("not logged in: press ^X, then Log in", style="error")
            return False
        buffer = model.current
        room = isinstance(to, str) and to != BROADCAST
        if room and model.state == ONLINE and not self._rooms_offered():
            return False  # a v1.1 server: said here, no buffer opened
        if to == buffer.target and buffer.kind == "room" and not buffer.joined:
            model.note(f"not a member of {buffer.name}: /join {buffer.name}", style="error")
            return False
        self._typing_done()  # before the message: a receiver never sees typing after it
        try:
            msg_id = self.net.send(to, text)
        except ValueError as exc:
            model.note(f"not sent: {exc}", style="error")
            return False
        model.sending(msg_id, to, text)
        self._send_wants()
        return True

    def send_pasted(self, lines: tuple[str, ...]) -> None:
        """Pasted lines: each a message to the current buffer, as text (a pasted "/quit" is
        not a command), in order; a line that cannot go is said and the rest still go."""
        to = self.model.target()
        for line in lines:
            self.send(to, line)

    def completions(self, value: str, cursor: int) -> list[str]:
        """What Tab can complete the word before the cursor to: a command at the start of
        the line, a room after `#`, else a name (everyone known to exist: online, heard
        from, a room member, or found by the directory, whose answer for this prefix is
        asked for when it could tell more)."""
        model = self.model
        start, word = word_before(value, cursor)
        if start == 0 and word.startswith("/"):
            return [f"/{w}" for w in COMMAND_WORDS]
        if word.startswith("#"):
            return model.room_names()
        if word:
            model.lookup(word, "complete")
            self._send_wants()
        return sorted(model.directory.known - {model.user})

    def typing(self, value: str) -> None:
        """The message line changed: `typing: active` to the current buffer's people or
        room (never to All), at most every 3 s; `done` when the line is emptied."""
        model = self.model
        buffer = model.current
        if self.net is None or TYPING not in model.features or model.state != ONLINE:
            return
        text = value.strip()
        if not text or text.startswith("/"):
            self._typing_done()
            return
        if buffer.kind == "all" or (buffer.kind == "room" and not buffer.joined):
            return
        now = time.monotonic()
        if self._typing_to == buffer.target and now - self._typing_at < TYPING_EVERY:
            return
        if self._typing_to != buffer.target:
            self._typing_done()  # typing elsewhere now
        self._typing_to, self._typing_at = buffer.target, now
        self.net.typing(_typing_to(buffer.target), "active")

    def _typing_done(self) -> None:
        if self._typing_to is not None and self.net is not None:
            self.net.typing(_typing_to(self._typing_to), "done")
        self._typing_to = None

    def search_key(self, value: str) -> None:
        """^R: search the buffer for the line's text (empty: the last search, older)."""
        self.model.search(value or None)
        self._send_wants()

    def pick_people(self, names: tuple[str, ...] | None) -> None:
        """Enter in the participant list: that person's buffer, or the ticked people's."""
        if names is None:
            return
        self._query("", names)

    def switch(self, key: str) -> None:
        self.model.switch(key)
        self._send_wants()

    def go_to(self, number: int) -> None:
        self.model.switch_number(number)
        self._send_wants()

    def step(self, delta: int) -> None:
        self.model.step(delta)
        self._send_wants()

    def go_back(self) -> None:
        self.model.back()
        self._send_wants()

    def show_buffer(self, name: str) -> bool:
        buffer = self.model.buffers.find(name)
        if buffer is None:
            why = f"no buffer {name} (/query NAME or /join #room opens one)"
            self.model.note(why, style="error")
            return False
        self.switch(buffer.key)
        return True

    def help(self) -> None:
        model = self.model
        for line in help_lines():
            model.note(line)
        model.note(
            f"{MARK}name: looks like another name (differs only in {FOLDS}); /who lists them"
        )
        model.view.lines.scroll_to_end()

    def quit(self) -> None:
        """/quit: as the menu's Exit (bye to the server, the terminal restored)."""
        form = self.getForm("MAIN")
        form.h_exit()

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
                if isinstance(event, ev.LoggedIn) and self.options.join:
                    self._join_at_start()
        return self._send_wants() or changed

    def _join_at_start(self) -> None:
        """`--join`: the rooms to be in, once, after the first login (one that does not exist
        asks first, as `/join` does)."""
        rooms, self.options = self.options.join, replace(self.options, join=())
        for room in rooms:
            known = self.model.rooms.get(room)
            if known is None or not known.joined:
                self.join_room(room)

    def _send_wants(self) -> bool:
        """Hand what the model wants sent (history pages, the offline ack, read markers,
        requests) to the network."""
        wants = self.model.take_wants()
        if self.net is None:
            return bool(wants)
        for want in wants:
            match want:
                case AskHistory(request_id, peer, before, limit):
                    self.net.history(request_id, peer, before, limit)
                case AckOffline(upto):
                    self.net.offline_ack(upto)
                case MarkRead(peer, upto):
                    self.net.read(peer, upto)
                case SendRequest(message):
                    self.net.request(message)
        return bool(wants)

    def _stop_network(self) -> None:
        """Close the current connection politely (bye) and forget its events."""
        if self.net is not None:
            self._generation += 1
            self.net.close()
            self.net = None


def _typing_to(target: Recipients) -> str | tuple[str, ...]:
    """`typing.to`: a room as a string, people as a list (one person too: core-v3's server
    takes every string `to` for a room, and answers a name with `no_such_room`)."""
    return target if isinstance(target, str) else tuple(target)


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
    if not options.colours:  # NO_COLOR, --no-colour: npyscreen's own theme draws none either
        npyscreen.disableColor()
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
