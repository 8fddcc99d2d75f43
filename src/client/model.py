"""What the TUI shows, as plain data updated from network events.

The curses side only draws a `ChatModel`; every decision about what an
event means for the screen (notes in the history, dropping a selected user
who left, the status line, asking for the login form again) is made here,
where tests can reach it without a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chat.shared.messages import MsgId, Recipients

from . import events as ev
from .history import History
from .participants import Participants

OFFLINE = "offline"
CONNECTING = "connecting"
ONLINE = "online"
RECONNECTING = "reconnecting"
#: After the address on the status line while the connection is TLS (ASCII for any terminal).
TLS_MARK = "[tls]"


@dataclass
class ChatModel:
    host: str
    port: int
    user: str = ""
    state: str = OFFLINE
    status_note: str = ""
    want_login: bool = False  # the UI should show the login form again
    tls: str | None = None  # the TLS version of the connection that is up, None for plain TCP
    history: History = field(default_factory=History)
    participants: Participants = field(default_factory=Participants)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def status_text(self) -> str:
        who = self.user or "-"
        where = f"{self.address} {TLS_MARK}" if self.tls else self.address
        parts = [self.state, f"{who} @ {where}"]
        if self.state == ONLINE:
            parts.append(f"{len(self.participants.online) + 1} online")
        if self.status_note:
            parts.append(self.status_note)
        return " | ".join(parts)

    # --------------------------------------------------------- UI actions
    def begin_login(self, user: str, host: str, port: int, register: bool) -> None:
        self.user, self.host, self.port = user, host, port
        self.history.me = user
        self.state = CONNECTING
        self.tls = None
        self.status_note = "registering" if register else "logging in"

    def logged_out(self, note: str = "logged out") -> None:
        self.state = OFFLINE
        self.tls = None
        self.status_note = note
        self.participants.clear()
        self.history.note(note)

    def sending(self, msg_id: MsgId, to: Recipients, text: str) -> None:
        self.history.outgoing(msg_id, to, text)

    # ----------------------------------------------------- network events
    def apply(self, event: ev.NetEvent) -> None:
        h = self.history
        if isinstance(event, ev.ConnectFailed | ev.Disconnected | ev.Stopped):
            self.tls = None  # whatever comes next, this connection is not up
        match event:
            case ev.Connecting(attempt=attempt) if attempt > 1:
                self.status_note = f"reconnecting to {self.address} (attempt {attempt})"
            case ev.Connecting():
                self.status_note = f"connecting to {self.address}"
            case ev.Connected(tls=version) if version is not None:
                self.tls = version
                h.note(f"TLS ({version}): the certificate of {self.host} is verified")
            case ev.Connected():
                self.tls = None
            case ev.ConnectFailed(reason, None):
                self._failed(reason)
            case ev.ConnectFailed(reason, delay):
                self.state = RECONNECTING
                self.status_note = f"{reason}; retrying in {delay:.0f}s"
            case ev.LoginFailed(code, message):
                self._failed(f"login refused: {message}")
            case ev.LoggedIn(user, online, registered):
                self._logged_in(user, online, registered)
            case ev.RosterChanged(joined, left, _):
                self._roster(joined, left)
            case ev.Incoming(msg):
                h.incoming(msg)
            case ev.Delivered(msg_id, delivered, missing):
                h.delivered(msg_id, delivered, missing)
            case ev.SendRefused(msg_id, code, message):
                h.refused(msg_id, message)
            case ev.SendUnconfirmed(ids):
                h.unconfirmed(ids)
            case ev.ServerNotice(code, message):
                h.note(f"server: {message} ({code})", style="error")
            case ev.ServerBye(reason):
                h.note(f"the server said bye: {reason}", style="error")
            case ev.Disconnected(reason, None) if self.state == CONNECTING:
                self._failed(reason)  # never got in: show the login form again
            case ev.Disconnected(reason, None):
                if self.state != OFFLINE:
                    self.state = OFFLINE
                    self.status_note = reason
                    h.note(f"disconnected: {reason}", style="error")
            case ev.Disconnected(reason, delay):
                self.state = RECONNECTING
                self.status_note = f"{reason}; reconnecting in {delay:.0f}s"
                h.note(f"disconnected: {reason}; reconnecting in {delay:.0f}s", style="error")
            case ev.Stopped(reason):
                if self.state != OFFLINE:  # normally a Disconnected already said why
                    self.history.note(f"connection stopped: {reason}", style="error")
                    self.state, self.status_note = OFFLINE, reason

    def _failed(self, reason: str) -> None:
        self.state = OFFLINE
        self.status_note = reason
        self.history.note(reason, style="error")
        self.want_login = True

    def _logged_in(self, user: str, online: tuple[str, ...], registered: bool) -> None:
        again = self.state == RECONNECTING
        self.state, self.user, self.status_note = ONLINE, user, ""
        self.history.me = user
        dropped = self.participants.reset(online)
        what = "reconnected" if again else "registered and logged in" if registered else "logged in"
        self.history.note(f"{what} as {user}; online: {', '.join(online) or 'nobody else'}")
        self._dropped(dropped)

    def _roster(self, joined: tuple[str, ...], left: tuple[str, ...]) -> None:
        dropped = self.participants.apply(joined, left)
        for name in joined:
            self.history.note(f"{name} joined")
        for name in left:
            self.history.note(f"{name} left")
        self._dropped(dropped)

    def _dropped(self, names: list[str]) -> None:
        if names:
            self.history.note(f"removed from your selection (offline): {', '.join(names)}")
