"""What a server alone keeps besides messages, in the same SQLite file: rooms, markers, contacts.

Every row is sealed through the cipher plugin with the store's keys and bound
to its key (a row moved to another key does not open), and every key is a
blind index: no room name, topic, member, marker or partner is in clear at rest
(protocol v1.1 section 5, v1.2 section 2). `MessageStore` owns one of these on
its connection; the store's writer thread writes through it, readers read.

- `rooms`: one row per room, its whole record (name, topic, owner, members in
  the order they joined, invites, newest message id).
- `markers`: one row per user and conversation: how far the user has read it.
- `contacts`: one row per user and person they exchanged a message with, so a
  login's `markers` frame knows every conversation of the user.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable

import msgspec

from chat.server.core.rooms import Room
from chat.server.crypto.cipher import CipherError
from chat.server.crypto.sealing import NONCE_BYTES, Sealer

log = logging.getLogger("chat.server.store")

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (key BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS markers (
    owner BLOB NOT NULL,
    conv BLOB NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (owner, conv)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contacts (
    owner BLOB NOT NULL,
    other BLOB NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (owner, other)
) WITHOUT ROWID;
"""

TAG_BYTES = 16


class _RoomRow(msgspec.Struct, array_like=True):
    name: str
    topic: str
    invite_only: bool
    owner: str
    created: float
    members: list[str]
    invites: list[tuple[str, str]]
    last: int


_encode = msgspec.json.Encoder().encode
_room_decoder = msgspec.json.Decoder(_RoomRow)
_marker_decoder = msgspec.json.Decoder(tuple[str, int])
_name_decoder = msgspec.json.Decoder(str)


class StateTables:
    def __init__(
        self, conn: sqlite3.Connection, sealer: Sealer, index: Callable[[bytes], bytes], where: str
    ) -> None:
        self._conn = conn
        self._sealer = sealer
        self._index = index
        self._where = where
        self._known: set[tuple[str, str]] = set()  # contact pairs written in this run

    # ---- sealing ------------------------------------------------------------------------
    def _seal(self, table: bytes, key: bytes, plain: bytes) -> bytes:
        nonce = Sealer.new_nonce()
        body = self._sealer.encrypt(plain, nonce)
        return nonce + body + self._sealer.tag(table + key + nonce + body)[:TAG_BYTES]

    def _open(self, table: bytes, key: bytes, blob: bytes) -> bytes | None:
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            return None
        nonce, body, tag = blob[:NONCE_BYTES], blob[NONCE_BYTES:-TAG_BYTES], blob[-TAG_BYTES:]
        if not self._sealer.verify(table + key + nonce + body, tag):
            return None
        try:
            return self._sealer.decrypt(body, nonce)
        except CipherError:
            return None

    def room_key(self, folded: str) -> bytes:
        return self._index(b"roomrec\0" + folded.encode())

    def user_key(self, name: str) -> bytes:
        return self._index(b"user\0" + name.encode())

    # ---- rooms (writer) ------------------------------------------------------------------------
    def save_room(self, folded: str, room: Room | None) -> None:
        """The room's record as it is now, or its removal (None: deleted)."""
        key = self.room_key(folded)
        if room is None:
            self._conn.execute("DELETE FROM rooms WHERE key = ?", (key,))
            return
        row = _RoomRow(
            room.name,
            room.topic,
            room.invite_only,
            room.owner,
            room.created,
            list(room.members),
            list(room.invites.items()),
            room.last,
        )
        body = self._seal(b"rooms", key, _encode(row))
        self._conn.execute("INSERT OR REPLACE INTO rooms (key, body) VALUES (?, ?)", (key, body))

    def load_rooms(self) -> list[Room]:
        """Every room (at start); a row that does not open is reported and left out."""
        rooms = []
        for key, body in self._conn.execute("SELECT key, body FROM rooms"):
            plain = self._open(b"rooms", bytes(key), bytes(body))
            if plain is None:
                log.error("%s: a room's record is damaged (integrity check failed)", self._where)
                continue
            try:
                row = _room_decoder.decode(plain)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.error("%s: a room's record does not decode", self._where)
                continue
            room = Room(row.name, row.topic, row.invite_only, row.owner, row.created)
            room.members = dict.fromkeys(row.members)
            room.invites = dict(row.invites)
            room.last = row.last
            rooms.append(room)
        return rooms

    # ---- markers -----------------------------------------------------------------------------
    def set_marker(self, user: str, conv: bytes, peer: str, upto: int) -> None:
        owner = self.user_key(user)
        body = self._seal(b"markers", owner + conv, _encode((peer, upto)))
        self._conn.execute(
            "INSERT OR REPLACE INTO markers (owner, conv, body) VALUES (?, ?, ?)",
            (owner, conv, body),
        )

    def markers(self, user: str) -> dict[str, int]:
        """peer ("*", a room, a user name) -> how far `user` has read it."""
        owner = self.user_key(user)
        out: dict[str, int] = {}
        for conv, body in self._conn.execute(
            "SELECT conv, body FROM markers WHERE owner = ?", (owner,)
        ):
            plain = self._open(b"markers", owner + bytes(conv), bytes(body))
            if plain is None:
                log.error("%s: a read marker is damaged: left out", self._where)
                continue
            peer, upto = _marker_decoder.decode(plain)
            out[peer] = upto
        return out

    def drop_user(self, user: str) -> None:
        """A deleted account's markers and contacts go (v1.2 section 7)."""
        owner = self.user_key(user)
        self._conn.execute("DELETE FROM markers WHERE owner = ?", (owner,))
        self._conn.execute("DELETE FROM contacts WHERE owner = ?", (owner,))
        # Written again when the name (a new account) exchanges messages with them.
        self._known = {pair for pair in self._known if user not in pair}

    # ---- contacts ------------------------------------------------------------------------------
    def contacts(self, pairs: Iterable[tuple[str, str]]) -> None:
        """`a` and `b` exchanged a message: each has the other as a contact (a pair written
        once per run: the set remembers it)."""
        rows = []
        for a, b in pairs:
            if (a, b) in self._known:
                continue
            self._known.add((a, b))
            for owner, other in ((a, b), (b, a)):
                okey, bkey = self.user_key(owner), self.user_key(other)
                rows.append((okey, bkey, self._seal(b"contacts", okey + bkey, _encode(other))))
        self._conn.executemany(
            "INSERT OR IGNORE INTO contacts (owner, other, body) VALUES (?, ?, ?)", rows
        )

    def partners(self, user: str) -> list[str]:
        owner = self.user_key(user)
        out = []
        for other, body in self._conn.execute(
            "SELECT other, body FROM contacts WHERE owner = ?", (owner,)
        ):
            plain = self._open(b"contacts", owner + bytes(other), bytes(body))
            if plain is not None:
                out.append(_name_decoder.decode(plain))
        return out
