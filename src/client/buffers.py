"""Buffers, as WeeChat, irssi and senpai have them: one per conversation.

`All` (messages to everyone), each room, each person and each group of people
the user writes with has a buffer: its lines, its history pages, its unread and
mention counts, who is typing there. The buffer on screen is who receives what
the user types; a message that arrives opens (or marks) the buffer it belongs
to and never changes the current one.

Every message belongs to exactly one buffer (`message_key`): to everyone, All;
to a room, that room; to a list of names, the people in it other than us (one
person: that person's buffer, several: that group's). A buffer's history is
the server's conversation with the same people (`with`: "*", the room, the
person, each member of a group), keeping only the messages of this buffer.

Read state (protocol v1.2 section 3) is per conversation: "*", a room, or a
person (at the receiver, a group message belongs to the conversation with its
sender). A buffer counts its messages not read yet, each with its
conversation, and the server's count of those it has not loaded (`base`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from chat.shared.messages import BROADCAST, Msg, Recipients
from chat.shared.rooms import is_room, room_key

from .backlog import Backlog
from .history import History

ALL, ROOM, PERSON, GROUP = "all", "room", "person", "group"
ALL_KEY = BROADCAST
ALL_NAME = "All"


def target_key(target: Recipients, me: str) -> str:
    """The buffer a message to `target` goes to: "*", a room's key, or the names joined."""
    if target == BROADCAST:
        return ALL_KEY
    if isinstance(target, str):
        return room_key(target)
    others = sorted(set(target) - {me}) or [me]
    return ",".join(others)


def message_target(msg: Msg, me: str) -> Recipients:
    """What to write to, to answer `msg` where it was said: everyone, the room, or the
    people in it other than us."""
    if msg.to == BROADCAST or is_room(msg.to):
        return msg.to
    others = (set(msg.to) | {msg.sender}) - {me}
    return tuple(sorted(others)) or (me,)


def message_key(msg: Msg, me: str) -> str:
    return target_key(message_target(msg, me), me)


def conversation_of(msg: Msg, me: str) -> str:
    """The read-marker conversation of a message received (v1.2 section 3)."""
    if msg.to == BROADCAST:
        return ALL_KEY
    if isinstance(msg.to, str):
        return room_key(msg.to)
    return msg.sender


def conversation_key(peer: str) -> str:
    """How a conversation is filed: a room by its key (one room whatever the case)."""
    return room_key(peer) if is_room(peer) else peer


@dataclass
class View:
    """What the history pane shows for one buffer: its lines, and the pages behind them."""

    peers: tuple[str, ...]  # ("*",), (room,), (person,), or the members of a group
    lines: History
    backlog: Backlog

    @classmethod
    def create(cls, peers: tuple[str, ...], me: str, title: str = "") -> View:
        return cls(peers, History(me=me, title=title), Backlog(peers))

    @property
    def is_all(self) -> bool:
        return self.peers == (BROADCAST,)


@dataclass
class Buffer:
    key: str
    kind: str  # ALL | ROOM | PERSON | GROUP
    target: Recipients  # what a line typed here is sent to
    view: View
    #: Messages not read yet: id -> its conversation (the key of its read marker).
    unread: dict[int, str] = field(default_factory=dict)
    mentions: set[int] = field(default_factory=set)  # those of them that call for attention
    #: The server's unread count per conversation for messages not loaded here:
    #: conversation -> (count, its newest id).
    base: dict[str, tuple[int, int]] = field(default_factory=dict)
    stirred: bool = False  # a join, a leave or another event since the user last looked
    typing: dict[str, float] = field(default_factory=dict)  # who -> until (monotonic)
    #: Who wrote here, and when (wall clock): the smart filter shows their joins and leaves.
    spoke: dict[str, float] = field(default_factory=dict)
    joined: bool = True  # a room: we are a member (a buffer stays after /part)

    @property
    def lines(self) -> History:
        return self.view.lines

    @property
    def name(self) -> str:
        if self.kind == ALL:
            return ALL_NAME
        if isinstance(self.target, str):
            return self.target
        return ", ".join(self.target)

    @property
    def people(self) -> tuple[str, ...]:
        """The person or the group's members (none for All and rooms)."""
        return () if isinstance(self.target, str) else tuple(self.target)

    @property
    def private(self) -> bool:
        return self.kind in (PERSON, GROUP)

    def unread_count(self) -> int:
        return len(self.unread) + sum(count for count, _ in self.base.values())

    def mention_count(self) -> int:
        """Messages that call for attention: all of a person's or a group's, mentions of us
        elsewhere."""
        return self.unread_count() if self.private else len(self.mentions)

    def activity(self) -> str:
        """The mark in the buffer list: `@` for attention, `+` for messages, `.` for events."""
        if self.mention_count():
            return "@"
        if self.unread_count():
            return "+"
        return "." if self.stirred else " "

    def counts(self) -> str:
        """`(5)`, `(5, @1)`, or "" when all is read."""
        unread = self.unread_count()
        if not unread:
            return ""
        mentions = len(self.mentions) if not self.private else 0
        return f"({unread}, @{mentions})" if mentions else f"({unread})"

    def read(self) -> None:
        """The user looked at everything here."""
        self.unread.clear()
        self.mentions.clear()
        self.base.clear()
        self.stirred = False

    def read_elsewhere(self, conversation: str, upto: int) -> bool:
        """Another session read `conversation` up to `upto`; True when a count changed."""
        gone = [i for i, conv in self.unread.items() if conv == conversation and i <= upto]
        for i in gone:
            del self.unread[i]
            self.mentions.discard(i)
        base = self.base.get(conversation)
        if base is not None and upto >= base[1]:
            del self.base[conversation]
            return True
        return bool(gone)


@dataclass
class BufferList:
    """The buffers in the order they were opened (All first), the current one, and the one
    before it (`^O` goes back and forth)."""

    buffers: list[Buffer] = field(default_factory=list)
    current_key: str = ALL_KEY
    previous_key: str | None = None

    def get(self, key: str) -> Buffer | None:
        return next((b for b in self.buffers if b.key == key), None)

    def __iter__(self) -> Iterator[Buffer]:
        return iter(self.buffers)

    def __len__(self) -> int:
        return len(self.buffers)

    @property
    def current(self) -> Buffer:
        found = self.get(self.current_key)
        return found if found is not None else self.buffers[0]

    def add(self, buffer: Buffer) -> Buffer:
        self.buffers.append(buffer)
        return buffer

    def number(self, buffer: Buffer) -> int:
        """The buffer's number in the list (Alt-1 is All), from 1."""
        return self.buffers.index(buffer) + 1

    def by_number(self, number: int) -> Buffer | None:
        return self.buffers[number - 1] if 1 <= number <= len(self.buffers) else None

    def find(self, name: str) -> Buffer | None:
        """A buffer by what the user types: its number, its name (a room's case ignored),
        or the start of a name when only one buffer has it."""
        if name.isdigit():
            return self.by_number(int(name))
        low = name.lower()
        for b in self.buffers:
            if b.name.lower() == low or b.key == low:
                return b
        starts = [b for b in self.buffers if b.name.lower().startswith(low)]
        return starts[0] if len(starts) == 1 else None

    def switch(self, key: str) -> bool:
        """Make `key` the current buffer; False when there is no such buffer."""
        if self.get(key) is None:
            return False
        if key != self.current_key:
            self.previous_key, self.current_key = self.current_key, key
        return True

    def step(self, delta: int) -> Buffer:
        """The buffer `delta` places after the current one, round the ends."""
        i = self.buffers.index(self.current)
        return self.buffers[(i + delta) % len(self.buffers)]

    def remove(self, key: str) -> None:
        self.buffers = [b for b in self.buffers if b.key != key]
        if self.previous_key == key:
            self.previous_key = None
        if self.current_key == key:
            self.current_key = self.previous_key or ALL_KEY
            self.previous_key = None
