"""Commands typed on the TUI's message line (`/history`, `/all`, `/msg`), as plain data.

Only these words are commands; any other text, `/me waves` included, is a
message as before, so nobody's habit of starting a line with a slash
breaks. `//history` sends the text `/history`.

`/msg NAME[,NAME...] text` is how to write to people who are not online
(the participant list only lists those who are): the server stores it for
them (v1.1 offline delivery).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chat.shared.messages import BROADCAST, valid_name


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
    """A message to these people, whatever the selection (online or not)."""

    to: tuple[str, ...]
    text: str


Command = ShowHistory | ShowAll | SendText | SendTo

_WORDS = re.compile(r"/(history|all|msg)(?:\s+(.*))?", re.DOTALL)


def parse_command(line: str) -> Command:
    """What a line typed on the message line means; ValueError for a bad command."""
    if line.startswith("//"):
        return SendText(line[1:])
    match = _WORDS.fullmatch(line.strip())
    if match is None:
        return SendText(line)
    word, rest = match.group(1), (match.group(2) or "").strip()
    if word == "msg":
        return _msg(rest)
    if word == "all":
        if rest:
            raise ValueError("/all takes nothing after it")
        return ShowAll()
    if not rest:
        return ShowHistory(None)
    names = _names(re.split(r"[\s,]+", rest))
    return ShowAll() if names == (BROADCAST,) else ShowHistory(names)


def _msg(rest: str) -> SendTo:
    head, _, text = rest.partition(" ")
    if not head or not text.strip():
        raise ValueError("/msg NAME[,NAME...] text")
    names = _names(head.split(","))
    if BROADCAST in names:
        raise ValueError("/msg is for people; a line without it goes to the selection")
    return SendTo(names, text.lstrip(" "))


def _names(words: list[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(w for w in words if w))
    for name in names:
        if name != BROADCAST and not valid_name(name):
            raise ValueError(f"not a valid user name: {name!r}")
    return names
