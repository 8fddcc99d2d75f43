"""What a cluster keeps besides messages, in Redis: rooms, read markers, contacts.

The Redis side of `store.sqlite_state.StateTables` (the `state` of the store's
backend, cluster/messages.py), sealed like everything a node puts in Redis
(cluster/box.py: each value bound to its key, so a value copied to another key
does not open) under blind keys (cluster/keys.py):

- A room's record, `chat:{r:<blind>}:room` (blind of its folded name): the whole
  room (name, topic, owner, members in the order they joined, invites, newest
  message id) and its `version`, which rises by one with every change. A room
  deleted leaves a tombstone (its name and version, no members), so the
  version of a name never goes back when it is used again; `chat:{g}:rooms` is
  the set of every room key ever written (it only grows: that is what lets a
  room's transaction stay in its own slot, cluster/rooms.py).
- `chat:{u:<blind>}:markers`: conversation key -> (peer, upto), how far the user
  has read it; `chat:{u:<blind>}:contacts`: blind partner -> name, the people
  the user exchanged a message with (a login's `markers` frame lists them);
  `chat:{u:<blind>}:deleted`: when an account of the name was deleted (a new
  account of the name reads its private conversations from then on).
  `<blind>` is the user's queue blind: a user's keys share one slot.

Changes to rooms are made by the rooms' broker (cluster/rooms.py), which
reads and writes records through the codec here (`seal_room`, `open_room`);
`save_room` is the store seam's plain write (no version check), for what the
store service itself is handed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import msgspec

from chat.server.cluster import keys
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.core.rooms import Room, fold

log = logging.getLogger("chat.server.cluster")

_LOAD_STEP = 500  # room records read per pipeline at load


class _RoomRecord(msgspec.Struct, array_like=True):
    version: int
    name: str
    deleted: bool = False
    topic: str = ""
    invite_only: bool = False
    owner: str = ""
    created: float = 0.0
    members: list[str] = []
    invites: list[tuple[str, str]] = []
    last: int = 0


_encode = msgspec.json.Encoder().encode
_record_decoder = msgspec.json.Decoder(_RoomRecord)
_marker_decoder = msgspec.json.Decoder(tuple[str, int])
_name_decoder = msgspec.json.Decoder(str)
_time_decoder = msgspec.json.Decoder(float)


class RedisState:
    """Rooms, markers and contacts in Redis (thread-safe: the client's pool)."""

    def __init__(self, link: Link, box: Box) -> None:
        self._link = link
        self._box = box
        self._known: set[tuple[str, str]] = set()  # contact pairs written in this run

    # ---- keys -----------------------------------------------------------------------------
    def room_blind(self, folded: str) -> str:
        return self._box.blind("room", folded)

    def room_key(self, folded: str) -> str:
        return keys.room(self.room_blind(folded))

    def history_key(self, folded: str) -> str:
        return keys.room_history(self.room_blind(folded))

    def user_blind(self, name: str) -> str:
        """The blind of a user's keys: its queue's (one slot for all of them)."""
        return self._box.blind("queue", name)

    # ---- the room codec -------------------------------------------------------------------
    def seal_room(self, key: str, version: int, room: Room | None, name: str) -> bytes:
        """The record of `room` at `version` (None: the tombstone of `name`)."""
        if room is None:
            record = _RoomRecord(version, name, deleted=True)
        else:
            record = _RoomRecord(
                version,
                room.name,
                False,
                room.topic,
                room.invite_only,
                room.owner,
                room.created,
                list(room.members),
                list(room.invites.items()),
                room.last,
            )
        return self._box.seal(key.encode(), _encode(record))

    def open_room(self, key: str, blob: bytes | None) -> tuple[int, Room | None, str] | None:
        """(version, the room or None for a tombstone, its name); None when there is no
        record, or it is damaged (logged)."""
        if blob is None:
            return None
        plain = self._box.open(key.encode(), bytes(blob))
        if plain is None:
            log.error("cluster rooms: the record at %s is damaged or foreign: left out", key)
            return None
        try:
            r = _record_decoder.decode(plain)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("cluster rooms: the record at %s does not decode: left out", key)
            return None
        if r.deleted:
            return r.version, None, r.name
        room = Room(r.name, r.topic, r.invite_only, r.owner, r.created)
        room.members = dict.fromkeys(r.members)
        room.invites = dict(r.invites)
        room.last = r.last
        return r.version, room, r.name

    # ---- rooms ------------------------------------------------------------------------------
    def load_records(self) -> tuple[list[Room], dict[str, int]]:
        """Every room and the version of every room name (tombstones too), with each room's
        `last` from its history: a node's replica at its start."""
        client = self._link.client
        blinds = sorted(bytes(b).decode() for b in client.smembers(keys.ROOMS))
        rooms: list[Room] = []
        versions: dict[str, int] = {}
        for at in range(0, len(blinds), _LOAD_STEP):
            part = blinds[at : at + _LOAD_STEP]
            pipe = client.pipeline(transaction=False)
            for blind in part:
                pipe.get(keys.room(blind))
                pipe.zrevrange(keys.room_history(blind), 0, 0, withscores=True)
            replies = pipe.execute()
            for i, blind in enumerate(part):
                opened = self.open_room(keys.room(blind), replies[2 * i])
                if opened is None:
                    continue  # never written (a creation that lost its race), or damaged
                version, room, name = opened
                if self.room_blind(fold(name)) != blind:
                    log.error("cluster rooms: a record is not at its own key: left out")
                    continue
                versions[fold(name)] = version
                if room is not None:
                    newest = replies[2 * i + 1]
                    if newest:
                        room.last = max(room.last, int(newest[0][1]))
                    rooms.append(room)
        return rooms, versions

    def load_rooms(self) -> list[Room]:
        return self.load_records()[0]

    def save_room(self, folded: str, room: Room | None) -> None:
        """The store seam's write of a room as it is now (None: deleted, with its history):
        the next version, no check of what another node did meanwhile (a node's own room
        changes go through cluster/rooms.py)."""
        client, key = self._link.client, self.room_key(folded)
        opened = self.open_room(key, client.get(key))
        version = opened[0] + 1 if opened is not None else 1
        name = room.name if room is not None else opened[2] if opened is not None else folded
        pipe = client.pipeline(transaction=True)
        pipe.set(key, self.seal_room(key, version, room, name))
        if room is None:
            pipe.delete(self.history_key(folded))
        pipe.execute()
        client.sadd(keys.ROOMS, self.room_blind(folded))

    # ---- markers ----------------------------------------------------------------------------
    def set_marker(self, user: str, conv: Any, peer: str, upto: int) -> None:
        key = keys.markers(self.user_blind(user))
        field = str(conv)
        sealed = self._box.seal(f"{key}:{field}".encode(), _encode((peer, upto)))
        self._link.client.hset(key, field, sealed)

    def markers(self, user: str) -> dict[str, int]:
        """peer ("*", a room, a user name) -> how far `user` has read it."""
        key = keys.markers(self.user_blind(user))
        out: dict[str, int] = {}
        for field, sealed in self._link.client.hgetall(key).items():
            plain = self._box.open(f"{key}:{bytes(field).decode()}".encode(), bytes(sealed))
            if plain is None:
                log.error("cluster: a read marker is damaged: left out")
                continue
            try:
                peer, upto = _marker_decoder.decode(plain)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.error("cluster: a read marker does not decode: left out")
                continue
            out[peer] = upto
        return out

    def drop_user(self, user: str, at: float) -> None:
        """A deleted account's markers and contacts go (v1.2 section 7), and the time `at`
        is kept: the name's private history, for a new account, starts after it."""
        blind = self.user_blind(user)
        key = keys.deleted(blind)
        pipe = self._link.client.pipeline(transaction=True)  # one slot: the user's
        pipe.delete(keys.markers(blind), keys.contacts(blind))
        pipe.set(key, self._box.seal(key.encode(), _encode(at)))
        pipe.execute()
        self._known = {pair for pair in self._known if user not in pair}

    def deleted_at(self, user: str) -> float:
        """When an account of this name was last deleted (-inf: never); a damaged value
        hides the name's whole private history rather than show the old account's."""
        key = keys.deleted(self.user_blind(user))
        sealed = self._link.client.get(key)
        if sealed is None:
            return float("-inf")
        plain = self._box.open(key.encode(), bytes(sealed))
        if plain is not None:
            try:
                return _time_decoder.decode(plain)
            except msgspec.DecodeError:
                pass
        log.error("cluster: an account's deletion time is damaged: its old history is hidden")
        return float("inf")

    # ---- contacts -------------------------------------------------------------------------
    def add_contacts(self, pipe: Any, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """`a` and `b` exchanged a message: each has the other, in the caller's pipeline;
        the pairs it wrote, for `contacts_written` once the pipeline went through (a pair
        is written once per run)."""
        new = [pair for pair in pairs if pair not in self._known]
        for a, b in new:
            for owner, other in ((a, b), (b, a)):
                key, field = keys.contacts(self.user_blind(owner)), self.user_blind(other)
                pipe.hset(key, field, self._box.seal(f"{key}:{field}".encode(), _encode(other)))
        return new

    def contacts_written(self, pairs: list[tuple[str, str]]) -> None:
        self._known.update(pairs)

    def partners(self, user: str) -> list[str]:
        key = keys.contacts(self.user_blind(user))
        out = []
        for field, sealed in self._link.client.hgetall(key).items():
            plain = self._box.open(f"{key}:{bytes(field).decode()}".encode(), bytes(sealed))
            if plain is not None:
                out.append(_name_decoder.decode(plain))
        return out
