"""What crosses between nodes in an inbox payload: the compact encoding (issue 22, "6 of 6").

A node's inbox payload (cluster/broker.py) begins with a format byte. Format 2
(`COMPACT`, this module) is one msgpack array of items, each an array whose
first element is its kind:

- `["m", sender, to, ts, first, [text, ...], only?]`: messages `first`,
  `first + 1`, ... from `sender` to `to` (`"*"` or the list of names as sent),
  all at `ts`; `only` the indices in `to` of the recipients on the receiving
  node (absent: all of `to`, or everyone for `"*"`);
- `["e", sender, to, ts, first, [text, ...]]`: the same, the sender's own
  messages for its sessions there granted `echo` (protocol v1.2 section 4);
- `["r", user, peer, upto]`: a read marker moved;
- `["t", sender, [name, ...], room, frame]`: a typing notice, its frame as
  built by the sender's node (a few dozen bytes: rebuilding it would save little).

What a `msg` frame holds beyond these (its type, field names, quotes, `from`
again, the 4-byte length) is not carried: the receiving node rebuilds the
frames with `encode_msgs`, the function the sending node fanned out with, so a
recipient on another node gets the bytes a local one got (tested byte for
byte). A pair's message of 100 characters is about 136 bytes here against 215
as frames and a JSON head: it crosses Redis twice (in, and out to the node).
Nothing is compressed: several users' texts compressed together leak through
the sealed size how alike they are (CRIME, BREACH).

A room's messages cross the same way, in the room shard's log (cluster/rooms.py):
a payload `POST` (the byte 2: a rooms item of format 1 begins with its 4-byte
length, so with 0) then `[origin, room, sender, skip, ts, first, [text, ...]]`
(`Post`), read by every node; the room is the `to` of each frame.

Every number and count is bounded where it is decoded (msgspec's `Meta` and
`__post_init__`): ids within `MSG_ID_BOUNDS` (the last one too), times within
`TS_BOUNDS`, markers within `MARKER_BOUNDS`, names by the name rule, texts by
`TEXT_MAX`, lists by what a client's frame can hold. A payload that does not
decode raises `msgspec.DecodeError` or `msgspec.ValidationError`: the broker logs
it once and drops it; an item that does not decode costs only itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from chat.shared.fields import MAX_ID, NAME_RE, TEXT_MAX, TS_BOUNDS
from chat.shared.framing import MAX_SERVER_FRAME
from chat.shared.messages import BROADCAST, Msg, encode_msgs
from chat.shared.notices import MARKER_BOUNDS
from chat.shared.rooms import ROOM_RE

#: The format byte of a payload of this module's items.
COMPACT = b"\x02"
#: Names in a list at most: a client's frame (at most 16 MiB) holds fewer (`"a",` each).
NAMES_MAX = MAX_SERVER_FRAME // 4
#: Messages in one item at most: a group of sends comes from a client's frames, each of
#: them at least 40 bytes (`{"type":"send","id":0,"to":"*","text":""}`).
TEXTS_MAX = MAX_SERVER_FRAME // 40
#: Items in one payload at most (a packed publish is at most `broker.PACK_BYTES`, or one
#: item; an item is more than 8 bytes).
ITEMS_MAX = 1 << 16

#: A user's name in a message's item: its length bounded (1..32, `NAME_RE`'s). The name
#: rule itself (a regular expression per name: half the cost of decoding a pair's item) is
#: checked where the name came in, by the sending node; the seal says a node sent it.
Name = Annotated[str, Meta(min_length=1, max_length=32)]
Names = Annotated[list[Name], Meta(max_length=NAMES_MAX)]
#: A name checked by the rule (the rarer items: typing, room posts, markers).
RuleName = Annotated[str, Meta(pattern=f"^{NAME_RE.pattern}$")]
#: A conversation (`read.peer`): "*", a user's name or a room's.
Peer = Annotated[str, Meta(min_length=1, max_length=33)]
Room = Annotated[str, Meta(pattern=f"^{ROOM_RE.pattern}$")]
Ts = Annotated[float, Meta(ge=TS_BOUNDS[0], le=TS_BOUNDS[1])]
Id = Annotated[int, Meta(ge=1, le=MAX_ID)]
Texts = Annotated[
    list[Annotated[str, Meta(max_length=TEXT_MAX)]], Meta(min_length=1, max_length=TEXTS_MAX)
]
Index = Annotated[int, Meta(ge=0, lt=NAMES_MAX)]
#: A node's id (`secrets.token_hex(8)` in app.py; tests name theirs).
NodeId = Annotated[str, Meta(min_length=1, max_length=64)]
#: A connection's handle on its node (native/dispatch: a uint64_t, `cd_open`): at most
#: `SLOT_MAX`, which msgspec's `Meta` cannot say (its bounds are int64's); msgpack holds no
#: larger integer, and `Post` checks it for the JSON of format 1 (cluster/rooms.py).
SLOT_MAX = 2**64 - 1
Slot = Annotated[int, Meta(ge=0)]
Upto = Annotated[int, Meta(ge=MARKER_BOUNDS[0], le=MARKER_BOUNDS[1])]


class _Run(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """Messages `first`.. (consecutive ids) sharing their sender, recipients and time."""

    sender: Name
    to: Literal["*"] | Names
    ts: Ts
    first: Id
    texts: Texts

    def __post_init__(self) -> None:
        if self.first + len(self.texts) - 1 > MAX_ID:
            raise ValueError(f"message ids past {MAX_ID}")

    def frames(self) -> bytes:
        """The `msg` frames, byte for byte those the sending node fanned out."""
        to = BROADCAST if self.to == BROADCAST else tuple(self.to)
        sender, ts, first = self.sender, self.ts, self.first
        return encode_msgs([Msg(first + i, sender, to, t, ts) for i, t in enumerate(self.texts)])


class Msgs(_Run, tag="m"):
    """`msg`: for `names` on the receiving node (`only`: their indices in `to`)."""

    only: Annotated[list[Index], Meta(max_length=NAMES_MAX)] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.only is not None:
            if self.to == BROADCAST:
                raise ValueError("recipients named for a message to everyone")
            if any(i >= len(self.to) for i in self.only):
                raise ValueError("a recipient's index past the message's recipients")

    @property
    def names(self) -> tuple[str, ...] | None:
        """The recipients there (None: everyone but the sender)."""
        if self.to == BROADCAST:
            return None
        if self.only is None:
            return tuple(self.to)
        return tuple(self.to[i] for i in self.only)


class Echo(_Run, tag="e"):
    """`echo`: the sender's own messages, for its sessions there granted `echo`."""


class Read(msgspec.Struct, array_like=True, frozen=True, tag="r"):
    user: RuleName
    peer: Peer
    upto: Upto


class Typing(msgspec.Struct, array_like=True, frozen=True, tag="t"):
    sender: RuleName
    names: Names
    room: Room | None
    frame: Annotated[bytes, Meta(max_length=MAX_SERVER_FRAME)]


Item = Msgs | Echo | Read | Typing


class Post(msgspec.Struct, array_like=True, frozen=True):
    """A room's messages `first`.. (one group of sends: consecutive ids, one time) from
    `sender`, posted by node `origin` (whose connection `skip` sent them)."""

    origin: NodeId
    room: Room
    sender: RuleName
    skip: Slot
    ts: Ts
    first: Id
    texts: Texts

    def __post_init__(self) -> None:
        if self.first + len(self.texts) - 1 > MAX_ID:
            raise ValueError(f"message ids past {MAX_ID}")
        if self.skip > SLOT_MAX:
            raise ValueError(f"a connection's handle past {SLOT_MAX}")

    @property
    def last(self) -> int:
        return self.first + len(self.texts) - 1

    def frames(self) -> bytes:
        """The `msg` frames (`to` the room as written), byte for byte the sender's node's."""
        room, sender, ts, first = self.room, self.sender, self.ts, self.first
        return encode_msgs([Msg(first + i, sender, room, t, ts) for i, t in enumerate(self.texts)])


#: The first byte of a rooms item in this encoding.
POST = b"\x02"

_encode = msgspec.msgpack.Encoder().encode
_decode_items = msgspec.msgpack.Decoder(
    Annotated[list[msgspec.Raw], Meta(max_length=ITEMS_MAX)]
).decode
_decode_item = msgspec.msgpack.Decoder(Item).decode
_decode_post = msgspec.msgpack.Decoder(Post).decode


def msgs(sender: str, names: Sequence[str] | None, batch: Sequence[Msg]) -> list[bytes]:
    """The items of `batch` for `names` on another node (None: everyone): one per run of
    messages sharing recipients and time with consecutive ids (one for a group of sends).
    ValueError for what cannot cross as asked (another sender's message, a name not among
    the recipients, names for a message to everyone)."""
    out = []
    for to, ts, first, texts in _runs(sender, batch):
        only = None if names is None else _indices(to, names)
        out.append(_encode(Msgs(sender, to, ts, first, texts, only)))
    return out


def echo(sender: str, batch: Sequence[Msg]) -> list[bytes]:
    """The items of `batch`, the sender's own, for its sessions on another node."""
    return [_encode(Echo(sender, *run)) for run in _runs(sender, batch)]


def read(user: str, peer: str, upto: int) -> bytes:
    return _encode(Read(user, peer, upto))


def typing(sender: str, names: Sequence[str], room: str | None, frame: bytes) -> bytes:
    return _encode(Typing(sender, list(names), room, frame))


def payload(items: Sequence[bytes]) -> bytes:
    """One inbox payload (before sealing) of items encoded by the functions above."""
    return COMPACT + _encode([msgspec.Raw(item) for item in items])


def items(body: bytes | memoryview) -> list[msgspec.Raw]:
    """The items of a payload's body (after its format byte), each still encoded: one that
    does not decode costs only itself (`item`). msgspec.DecodeError or ValidationError
    when the body is not an array of at most `ITEMS_MAX`."""
    return _decode_items(body)


def item(raw: msgspec.Raw) -> Item:
    """One item; msgspec.DecodeError or ValidationError when it does not decode or a field
    is out of its bounds."""
    return _decode_item(raw)


def post(origin: str, room: str, skip: int, batch: Sequence[Msg]) -> bytes | None:
    """A rooms item (before sealing) of a group of sends to `room`; None when `batch` is not
    one run (ids not consecutive, times or senders apart: cluster/rooms.py then sends the
    frames as format 1 does)."""
    if not batch:
        return None
    m0 = batch[0]
    sender, ts, first = m0.sender, m0.ts, m0.id
    for i, m in enumerate(batch):
        if m.sender != sender or m.ts != ts or m.id != first + i or m.to != room:
            return None
    texts = [m.text for m in batch]
    return POST + _encode(Post(origin, room, sender, skip, float(ts), first, texts))


def posted(body: bytes | memoryview) -> Post:
    """A rooms item after its `POST` byte; msgspec.DecodeError or ValidationError."""
    return _decode_post(body)


def _runs(
    sender: str, batch: Sequence[Msg]
) -> Iterator[tuple[str | list[str], float, int, list[str]]]:
    """Maximal runs of `batch` sharing recipients and time, with consecutive ids: (to as
    msgpack takes it, ts, first id, texts)."""
    if len(batch) == 1:  # the common case: one send
        m = batch[0]
        to = m.to
        if m.sender != sender:
            raise ValueError("a message of another sender in a crossing")
        if type(to) is str and to != BROADCAST:
            raise ValueError("a room's message in a node's inbox (rooms have their logs)")
        yield (to if type(to) is str else list(to), float(m.ts), m.id, [m.text])
        return
    run: tuple[str | list[str], float, int, list[str]] | None = None
    to = None
    for m in batch:
        if m.sender != sender:
            raise ValueError("a message of another sender in a crossing")
        if run is not None and m.to == to and m.ts == run[1] and m.id == run[2] + len(run[3]):
            run[3].append(m.text)
            continue
        if run is not None:
            yield run
        to = m.to
        if type(to) is str and to != BROADCAST:
            raise ValueError("a room's message in a node's inbox (rooms have their logs)")
        run = (m.to if type(m.to) is str else list(m.to), float(m.ts), m.id, [m.text])
    if run is not None:
        yield run


def _indices(to: str | list[str], names: Sequence[str]) -> list[int] | None:
    """`names` as their indices in `to`; None when they are all of it, in its order."""
    if type(to) is str:
        raise ValueError("recipients named for a message to everyone")
    if len(names) == len(to) and list(names) == to:  # a pair, or a group all there
        return None
    where = {name: i for i, name in reversed(list(enumerate(to)))}
    try:
        return [where[name] for name in names]
    except KeyError:
        raise ValueError("a recipient not among the message's recipients") from None
