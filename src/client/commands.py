"""What a line typed on the TUI's message line means, as plain data.

As in irssi and WeeChat, a line starting with `/` is a command and is never
sent as text: an unknown one is an error shown on screen (the line stays,
to be corrected), and `//text` sends "/text". `@name text` writes to those
people whatever the selection, as line mode does; `@@text` sends "@text".

| line | meaning |
|---|---|
| `text` | to the selection (nothing selected: everyone) |
| `@bob text`, `@bob,carol text` | to those people, online or not (the server keeps it for them) |
| `@* text` | to everyone, whatever the selection |
| `/msg NAME[,NAME...] text` | as `@NAME text` |
| `/query NAME[,NAME...]` | select those people (online or not); `/query` alone: everyone |
| `/who` | who is online, and who is selected |
| `/history [NAME[,NAME...]]` | the history with them (default: the selection) |
| `/all` | back to the view of all |
| `/help` | the commands and keys |
| `/quit` (or `/exit`) | say bye and leave |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chat.shared.messages import BROADCAST, Recipients, valid_name


@dataclass(frozen=True, slots=True)
class ShowHistory:
    """Show a conversation's history: these people, or (None) the selection."""

    peers: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class ShowAll:
    """Back to the view of all."""


@dataclass(frozen=True, slots=True)
class SendText:
    """A message to the selection."""

    text: str


@dataclass(frozen=True, slots=True)
class SendTo:
    """A message to these people (or `"*"`), whatever the selection (online or not)."""

    to: Recipients
    text: str


@dataclass(frozen=True, slots=True)
class Query:
    """Select these people (None: nobody, which means everyone)."""

    names: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Who:
    """Say who is online and who is selected."""


@dataclass(frozen=True, slots=True)
class Help:
    """Show the commands and keys."""


@dataclass(frozen=True, slots=True)
class Quit:
    """Say bye and leave."""


Command = ShowHistory | ShowAll | SendText | SendTo | Query | Who | Help | Quit

#: For /help: each command and what it does, in the order shown.
HELP = (
    ("/msg NAME[,NAME...] text", "to those people only (also when offline: kept for them)"),
    ("@NAME[,NAME...] text", "the same, shorter; @* text: to everyone"),
    ("/query NAME[,NAME...]", "select them (online or not); /query alone: everyone"),
    ("/who", "who is online, and who is selected"),
    ("/history [NAME[,NAME...]]", "the history with them (default: the selection); /all: back"),
    ("/help", "this list"),
    ("/quit", "say bye and leave (also ^X, e)"),
    ("//text", "sends /text; @@text sends @text"),
)

_COMMAND = re.compile(r"/(\S*)(?:\s+(.*))?", re.DOTALL)
_NO_ARGUMENTS = {"who": Who(), "help": Help(), "quit": Quit(), "exit": Quit(), "all": ShowAll()}


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
    if word in _NO_ARGUMENTS:
        if rest:
            raise ValueError(f"/{word} takes nothing after it")
        return _NO_ARGUMENTS[word]
    if word == "msg":
        head, _, text = rest.partition(" ")
        if not head or not text.strip():
            raise ValueError("/msg NAME[,NAME...] text")
        names = _names(head.split(","), strict=True)
        if BROADCAST in names:
            raise ValueError("/msg is for people; @* text (or no command) goes to everyone")
        return SendTo(names, text.lstrip(" "))
    if word == "query":
        names = _names(re.split(r"[\s,]+", rest)) if rest else ()
        if BROADCAST in names:
            return Query(None)
        return Query(names or None)
    if word == "history":
        if not rest:
            return ShowHistory(None)
        names = _names(re.split(r"[\s,]+", rest))
        return ShowAll() if names == (BROADCAST,) else ShowHistory(names)
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
    return SendTo(_names(head.split(","), strict=True), text.lstrip(" "))


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
