"""What a line typed on the TUI's message line means, as plain data, and the one list of
commands and keys that `/help` prints and docs/client.md shows (a test holds them equal).

As in irssi and WeeChat, a line starting with `/` is a command and is never
sent as text: an unknown one is an error shown on screen (the line stays,
to be corrected), and `//text` sends "/text". `@name text` writes to those
people (`@#room text` to a room) whatever the buffer; `@@text` sends "@text".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chat.shared.messages import BROADCAST, Recipients, valid_name
from chat.shared.rooms import valid_room

from .actions import ACTION_PREFIX


@dataclass(frozen=True, slots=True)
class SendText:
    """A message to the current buffer."""

    text: str


@dataclass(frozen=True, slots=True)
class SendTo:
    """A message to these people, a room (a string) or `"*"`, whatever the buffer."""

    to: Recipients
    text: str


@dataclass(frozen=True, slots=True)
class Query:
    """Open (and show) the buffer of these people (None: All)."""

    names: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class ShowBuffer:
    """Show a buffer by number or name."""

    name: str


@dataclass(frozen=True, slots=True)
class Join:
    room: str


@dataclass(frozen=True, slots=True)
class Part:
    room: str | None  # None: the current buffer's room


@dataclass(frozen=True, slots=True)
class Invite:
    user: str
    room: str | None


@dataclass(frozen=True, slots=True)
class Kick:
    user: str
    room: str | None


@dataclass(frozen=True, slots=True)
class Topic:
    text: str | None  # None: say the topic


@dataclass(frozen=True, slots=True)
class Whois:
    name: str


@dataclass(frozen=True, slots=True)
class Search:
    text: str


@dataclass(frozen=True, slots=True)
class Simple:
    """A command without arguments: its word (`who`, `help`, `quit`, `close`, `clear`,
    `names`, `rooms`, `filter`)."""

    word: str


Command = (
    SendText
    | SendTo
    | Query
    | ShowBuffer
    | Join
    | Part
    | Invite
    | Kick
    | Topic
    | Whois
    | Search
    | Simple
)

#: Every command, for /help and docs/client.md, in the order shown.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("text", "to the current buffer: everyone in All, the room, the person or the group"),
    ("@NAME[,NAME...] text", "to those people (online or not), whatever the buffer"),
    ("@#room text", "to that room, whatever the buffer; @* text: to everyone"),
    ("/msg NAME[,NAME...]|#room text", "as @NAME text"),
    ("/query NAME[,NAME...]", "open that person's (or group's) buffer and go there"),
    ("/buffer NAME|N", "go to a buffer by name or number (/all: to All)"),
    ("/close", "close this buffer (the conversation stays on the server)"),
    ("/join #room", "join a room (it does not exist: asks, then creates it)"),
    ("/part [#room]", "leave this room (or that one); the buffer stays until /close"),
    ("/invite NAME [#room]", "invite someone to this room"),
    ("/kick NAME [#room]", "put someone out of this room (its owner only)"),
    ("/topic [text]", "set this room's topic (alone: say it)"),
    ("/rooms", "the public rooms and your invites: Enter joins"),
    ("/names", "who is in this buffer, online first"),
    ("/who", "who is online, and where your messages go"),
    ("/whois NAME", "online or not, registered, rooms in common"),
    ("/me text", "an action: * alice text (other clients see /me text)"),
    ("/search text", "find text in this buffer, older pages too (^R: the next)"),
    ("/filter", "show or hide joins and leaves of people silent for 10 minutes"),
    ("/clear", "empty this buffer on screen"),
    ("/help", "this list"),
    ("/quit", "say bye and leave (also ^X, e)"),
    ("//text", "sends /text; @@text sends @text"),
)

#: Every key, for /help and docs/client.md: (where, key, what it does).
KEYS: tuple[tuple[str, str, str], ...] = (
    ("message line", "Enter", "send (a command: run it)"),
    ("message line", "Alt-Enter, ^J", "a new line in the message"),
    ("message line", "Tab", "complete a command, a name (offline too) or a room; again: next"),
    ("message line", "Up/Down", "the lines typed before (after ^U: from the newest)"),
    ("message line", "^U, ^K, ^W", "delete to the start, to the end, the word before"),
    ("message line", "^A/Home, ^E/End", "start, end (End at the end: the newest line)"),
    ("message line", "PgUp/PgDn", "scroll this buffer"),
    ("message line", "^R", "search this buffer for the line's text (again: older)"),
    ("anywhere", "Alt-1..Alt-9", "buffer 1 to 9 (1 is All)"),
    ("anywhere", "Alt-Left/Right, F5/F6", "the buffer before, after"),
    ("anywhere", "^O", "back to the buffer shown before"),
    ("anywhere", "^N, ^P", "focus: people, history, buffers, message line (^P: back)"),
    ("anywhere", "^X", "the menu: log in, register, log out, exit"),
    ("people", "Space", "tick a person (ticked people form a group)"),
    ("people", "Enter", "open the ticked people's buffer, or this person's"),
    ("people", "Escape", "back to the message line (with people ticked: their buffer)"),
    ("history", "Up/Down, PgUp/PgDn, Home/End", "scroll (past the top: older pages)"),
    ("buffers", "Up/Down, Enter", "go to a buffer"),
    ("every list", "a letter", "goes to the message line, and the focus with it"),
)

_COMMAND = re.compile(r"/(\S*)(?:\s+(.*))?", re.DOTALL)
_SIMPLE = {"who", "help", "quit", "close", "clear", "names", "rooms", "filter"}
_ALIASES = {"exit": "quit", "j": "join", "q": "query", "leave": "part", "list": "rooms"}

#: Command words, for Tab.
COMMAND_WORDS: tuple[str, ...] = tuple(
    sorted(
        {*_SIMPLE, *_ALIASES, "msg", "query", "buffer", "all", "join", "part", "invite"}
        | {"kick", "topic", "whois", "me", "search", "history"}
    )
)


def parse_command(line: str) -> Command:
    """What a line means; ValueError (its text for the user) for a line that cannot be run."""
    if line.startswith("//"):
        return SendText(line[1:])
    if line.startswith("@@"):
        return SendText(line[1:])
    if line.startswith("@"):
        return _at(line[1:])
    stripped = line.strip()
    if not stripped.startswith("/"):
        return SendText(line)
    match = _COMMAND.fullmatch(stripped)
    assert match is not None  # any text after a slash matches
    word, rest = match.group(1).lower(), (match.group(2) or "").strip()
    word = _ALIASES.get(word, word)
    if word in _SIMPLE:
        if rest:
            raise ValueError(f"/{word} takes nothing after it")
        return Simple(word)
    if word == "all":
        if rest:
            raise ValueError("/all takes nothing after it")
        return ShowBuffer("1")
    if word == "msg":
        head, _, text = rest.partition(" ")
        if not head or not text.strip():
            raise ValueError("/msg NAME[,NAME...]|#room text")
        if head == BROADCAST:
            raise ValueError("/msg is for people and rooms; @* text goes to everyone")
        return SendTo(_recipients(head), text.lstrip(" "))
    if word in ("query", "history"):
        names = _names(re.split(r"[\s,]+", rest)) if rest else ()
        if BROADCAST in names or not names:
            return Query(None)
        return Query(names)
    if word == "buffer":
        if not rest:
            raise ValueError("/buffer NAME|N")
        return ShowBuffer(rest)
    if word == "join":
        return Join(_room(rest, "/join #room"))
    if word == "part":
        return Part(_room(rest, "/part [#room]") if rest else None)
    if word in ("invite", "kick"):
        args = rest.split()
        if not 1 <= len(args) <= 2:
            raise ValueError(f"/{word} NAME [#room]")
        user = _names([args[0]], strict=True)[0]
        room = _room(args[1], f"/{word} NAME [#room]") if len(args) == 2 else None
        return Invite(user, room) if word == "invite" else Kick(user, room)
    if word == "topic":
        return Topic(rest or None)
    if word == "whois":
        if not rest or " " in rest:
            raise ValueError("/whois NAME")
        return Whois(_names([rest], strict=True)[0])
    if word == "me":
        if not rest:
            raise ValueError("/me text")
        return SendText(ACTION_PREFIX + rest)
    if word == "search":
        if not rest:
            raise ValueError("/search text")
        return Search(rest)
    if not word:
        raise ValueError("a line that starts with / is a command (/help); // sends one /")
    raise ValueError(f"unknown command /{word} (/help lists the commands)")


def _at(rest: str) -> SendTo:
    head, _, text = rest.partition(" ")
    if not head:
        raise ValueError("@NAME text (@@ sends an @)")
    if not text.strip():
        raise ValueError(f"nothing to send after @{head}")
    if head == BROADCAST:
        return SendTo(BROADCAST, text.lstrip(" "))
    return SendTo(_recipients(head), text.lstrip(" "))


def _recipients(head: str) -> Recipients:
    if head.startswith("#"):
        return _room(head, "@#room text")
    return _names(head.split(","), strict=True)


def _room(text: str, usage: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError(usage)
    room = text if text.startswith("#") else f"#{text}"
    if " " in room or not valid_room(room):
        raise ValueError(f"not a valid room name: {text!r} (# then letters, digits, _ . -)")
    return room


def _names(words: list[str], strict: bool = False) -> tuple[str, ...]:
    """The names, each once; `strict`: an empty one (`bob,,carol`) is a mistake, as in
    line mode, rather than skipped."""
    names = tuple(dict.fromkeys(w for w in words if w or strict))
    if not names:
        raise ValueError("no names given")
    for name in names:
        if name != BROADCAST and not valid_name(name):
            raise ValueError(f"not a valid user name: {name!r}")
    return names


def help_lines() -> list[str]:
    """What /help prints: every command, then every key (the tables above)."""
    out = ["commands:"] + [f"{usage} -- {meaning}" for usage, meaning in COMMANDS]
    out += ["keys:"] + [f"{where}: {key} -- {does}" for where, key, does in KEYS]
    return out
