"""The message store: every delivered or queued message, sealed, in one SQLite file (WAL).

Messages are kept in *chunks*: the messages of one conversation written in
one batch (at most 256, 64 KiB), sealed together under one nonce and one tag.
Sealing goes through the cipher plugin and costs a few microseconds of
Python per call; per message, it cost the chat 20 % of its throughput under
load, per chunk it costs almost nothing (docs/store.md, bench/README.md).

Nothing here is in clear but what the store needs to work on its own: id
ranges, a timestamp (for retention) and keyed blind indexes (an HMAC of a
conversation or of a user name). User names and text live only in sealed
bodies. Every answer is checked against the authenticated chunk, not the
index: a chunk moved into another conversation, or a damaged one, is
reported and left out, never shown (docs/store.md, "Message store").

This module is synchronous and owns no thread: `store.service.StoreService`
runs its writes on one writer thread (group commit) and its reads on reader
threads, each with a connection of its own.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import shutil
import sqlite3
import struct
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from chat.server.crypto.cipher import Cipher, CipherError
from chat.server.crypto.keyfile import fsync_dir
from chat.server.crypto.sealing import NONCE_BYTES, HmacKey, Sealer
from chat.server.store.sqlite_state import STATE_SCHEMA, StateTables
from chat.shared.messages import BROADCAST, Msg

log = logging.getLogger("chat.server.store")

FORMAT_VERSION = 1
TAG_BYTES = 16  # HMAC-SHA256 truncated to 128 bits per chunk (RFC 2104 allows it)
INDEX_BYTES = 16  # blind index: HMAC-SHA256 truncated to 128 bits
CHUNK_MESSAGES = 256  # messages per chunk at most
CHUNK_TEXT = 64 * 1024  # and characters of text
_HKDF_SALT = b"chat-history-v1"
_STREAM = b"chat-history-stream-v1"
_KEY_CHECK = b"chat-history-key-check"
_MAX_ID = (1 << 63) - 1  # SQLite's INTEGER
_PURGE_STEP = 2000
_HEAD = struct.Struct(">qqd")  # first id, last id, ts: bound into every chunk's tag
#: Seconds `PRAGMA quick_check` may take at start; past it the tables the server reads
#: are checked instead (docs/store.md, "Checks at start").
CHECK_BUDGET = 2.0
#: The first id of a new store whose users file has accounts but no id mark (written by an
#: older server): above any id a server can have given (docs/store.md, "Id mark").
NO_MARK_FLOOR = 1 << 52
#: What the operator can do about a lost or damaged store (docs/operations.md).
REMEDY = (
    "restore it from a backup, or start a new, empty message store with "
    "--new-history-store (docs/operations.md)"
)

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    seq INTEGER PRIMARY KEY,
    conv BLOB NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    ts REAL NOT NULL,
    n INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_conv ON chunks (conv, first);
CREATE INDEX IF NOT EXISTS chunks_counts ON chunks (conv, first, n, last, ts);
CREATE TABLE IF NOT EXISTS offline (
    owner BLOB NOT NULL,
    id INTEGER NOT NULL,
    conv BLOB NOT NULL,
    PRIMARY KEY (owner, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS own_runs (
    first INTEGER PRIMARY KEY,
    conv BLOB NOT NULL,
    owner BLOB NOT NULL,
    n INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS own_runs_by_sender ON own_runs (conv, owner, first);
"""
    + STATE_SCHEMA
)

_Row = tuple[int, float, str, "str | list[str]", str]  # id, ts, from, to, text
_TEXT = operator.itemgetter(4)
_body_encoder = msgspec.json.Encoder()
_body_decoder = msgspec.json.Decoder(list[tuple[int, float, str, str | list[str], str]])


class MessageStoreError(Exception):
    """The message store cannot be opened, verified or written; one line."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A read the store could not answer (a damaged page, a lost connection).

    The client that asked gets an error and the log an ERROR line: a failed
    read must never look like an empty history or an empty offline queue.
    """

    reason: str


class Kept(msgspec.Struct, frozen=True):
    """Messages to keep (a group of sends to the same recipients), who may see them
    (`named`) and who they are queued for. A frozen msgspec Struct: made on the send path
    (under the hub lock), where a dataclass's Python __init__ cost a call."""

    msgs: tuple[Msg, ...]
    #: Registered recipients (delivered or queued) other than the sender: one
    #: conversation per pair with the sender. Empty for `"*"`.
    named: tuple[str, ...]
    queued: tuple[str, ...]


class Page(msgspec.Struct, frozen=True):
    messages: tuple[Msg, ...]
    more: bool
    #: The newest id looked at (damaged records included): where the next page starts.
    last: int = 0


def _connect(path: Path, read_only: bool = False, immutable: bool = False) -> sqlite3.Connection:
    query = "?immutable=1" if immutable else "?mode=ro" if read_only else ""
    uri = f"file:{path.as_posix()}{query}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


class MessageStore:
    """The file, its keys, and every SQL statement. One instance per connection's thread."""

    #: What `store.service.StoreService` catches from these methods (logged, not fatal).
    errors: tuple[type[Exception], ...] = (sqlite3.Error, MessageStoreError)

    def __init__(
        self, path: Path, conn: sqlite3.Connection, sealer: Sealer, retention: float = 0.0
    ) -> None:
        self.path = path
        #: Seconds a message is shown (0: for ever). Chunks are removed whole once their
        #: newest message is past it; reads hide the older messages of a chunk at once.
        self.retention = retention
        self._conn = conn
        self._sealer = sealer
        self._index_key = HmacKey(sealer.subkey(b"index"))
        self._all = self._index(b"all")
        #: Rooms, read markers and contacts: the same file, the same keys.
        self.state = StateTables(conn, sealer, self._index, f"history file {path}")
        self._where = f"history file {path}"
        self._own_from: int | None = None  # meta `own_from`, read once (it never changes)

    # ---- opening ---------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: Path,
        key: bytes,
        cipher: Cipher,
        retention: float = 0.0,
        check_budget: float = CHECK_BUDGET,
    ) -> MessageStore:
        """The writer's store: check the key and the pages of an existing file, then set up.

        A wrong key is found through a read-only connection, before anything
        is written (not even the WAL switch), so the file keeps every byte. A
        damaged file is refused before anything is written too (`_check_pages`).
        """
        path = Path(path)
        sealer = Sealer(key, cipher, salt=_HKDF_SALT, stream=_STREAM)
        fresh = is_missing(path)
        if not fresh:
            cls._check_existing(path, sealer)
        else:
            _create_private(path)
        where = f"history file {path}"
        conn: sqlite3.Connection | None = None
        try:
            conn = _connect(path)
            if not fresh:
                _check_pages(conn, path, check_budget)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # every commit fsyncs the WAL
            conn.executescript(SCHEMA)
            _own_runs_from_own(conn)
            store = cls(path, conn, sealer, retention)
            if fresh or store._meta("check") is None:
                store._init_meta()
            if store._meta("own_from") is None:  # a file of an older server: see `unread`
                with store.transaction():
                    store._set_meta("own_from", str(0 if fresh else store.id_floor()).encode())
                # Into the main file at once: a key check reads it there (`_read_meta`).
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except (sqlite3.Error, MessageStoreError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, MessageStoreError):
                raise
            if is_damage(exc):
                raise MessageStoreError(f"{where}: damaged ({exc}): {REMEDY}") from None
            raise MessageStoreError(f"{where}: cannot open ({exc})") from None
        return store

    def reader(self) -> MessageStore:
        """Another connection to the same file, for a reader thread."""
        try:
            conn = _connect(self.path, read_only=True)
        except sqlite3.Error as exc:
            raise MessageStoreError(f"{self._where}: cannot open for reading ({exc})") from None
        return MessageStore(self.path, conn, self._sealer, self.retention)

    @classmethod
    def check(cls, path: Path, key: bytes, cipher: Cipher) -> None:
        """Raise MessageStoreError when an existing file does not open with this key.

        Read-only: a start that fails later has written nothing.
        """
        path = Path(path)
        if path.exists() and path.stat().st_size > 0:
            cls._check_existing(path, Sealer(key, cipher, salt=_HKDF_SALT, stream=_STREAM))

    @staticmethod
    def _check_existing(path: Path, sealer: Sealer) -> None:
        where = f"history file {path}"
        rows = _read_meta(path, where)
        if bytes(rows.get("format", b"")) != str(FORMAT_VERSION).encode():
            raise MessageStoreError(f"{where}: unknown format {rows.get('format')!r}")
        stored = bytes(rows.get("cipher", b"")).decode("ascii", "replace")
        if stored != sealer.cipher.name:
            raise MessageStoreError(
                f"{where}: written with cipher {stored!r} but the loaded cipher is "
                f"{sealer.cipher.name!r} (use --cipher-lib with the matching plugin)"
            )
        if not sealer.verify(_KEY_CHECK, bytes(rows.get("check", b""))):
            raise MessageStoreError(f"{where}: wrong key (the key check failed)")

    def _init_meta(self) -> None:
        with self.transaction():
            self._set_meta("format", str(FORMAT_VERSION).encode())
            self._set_meta("cipher", self._sealer.cipher.name.encode("ascii"))
            self._set_meta("check", self._sealer.tag(_KEY_CHECK))

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    # ---- meta --------------------------------------------------------------
    def _meta(self, k: str) -> bytes | None:
        row = self._conn.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return None if row is None else bytes(row[0])

    def _set_meta(self, k: str, v: bytes) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, v))

    def id_floor(self) -> int:
        """No id below this was ever given: the reserved ceiling, or past the newest row."""
        ceiling = int(self._meta("id_ceiling") or b"0")
        row = self._conn.execute("SELECT last FROM chunks ORDER BY seq DESC LIMIT 1").fetchone()
        return max(ceiling, (row[0] if row else 0) + 1, 1)

    def reserve_ids(self, ceiling: int) -> None:
        """Ids below `ceiling` may be given out (in the caller's transaction)."""
        self._set_meta("id_ceiling", str(ceiling).encode())

    # ---- keys ----------------------------------------------------------------
    def _index(self, data: bytes) -> bytes:
        return self._index_key.digest(data)[:INDEX_BYTES]

    def conversation(self, a: str, b: str) -> bytes:
        """Blind index of the conversation between two users (order does not matter)."""
        lo, hi = sorted((a, b))
        return self._index(b"pair\0" + lo.encode() + b"\0" + hi.encode())

    def broadcast(self) -> bytes:
        return self._all

    def room(self, room: str) -> bytes:
        """Blind index of a room's conversation (its name folded: one room per name)."""
        return self._index(b"room\0" + room.lower().encode())

    def conv_of(self, user: str, peer: str) -> bytes:
        """The conversation `user` calls `peer`: "*", a room, or another user's name."""
        if peer == BROADCAST:
            return self._all
        if peer.startswith("#"):
            return self.room(peer)
        return self.conversation(user, peer)

    def owner(self, name: str) -> bytes:
        """Blind index of one user's offline queue."""
        return self._index(b"user\0" + name.encode())

    # ---- chunks ----------------------------------------------------------------
    def _seal(
        self, conv: bytes, rows: list[_Row], nonce: bytes
    ) -> tuple[int, int, float, int, bytes]:
        first, last, ts = rows[0][0], rows[-1][0], rows[-1][1]
        ciphertext = self._sealer.encrypt(_body_encoder.encode(rows), nonce)
        tag = self._sealer.tag(_HEAD.pack(first, last, ts) + conv + nonce + ciphertext)
        return first, last, ts, len(rows), nonce + ciphertext + tag[:TAG_BYTES]

    def _open(self, conv: bytes, first: int, last: int, ts: float, body: bytes) -> list[Msg]:
        """The chunk's messages, or none (logged) when it fails its tag or does not decode."""
        nonce, ciphertext = body[:NONCE_BYTES], body[NONCE_BYTES:-TAG_BYTES]
        head = _HEAD.pack(first, last, ts) + conv + nonce + ciphertext
        if len(body) < NONCE_BYTES + TAG_BYTES or not self._sealer.verify(head, body[-TAG_BYTES:]):
            log.error(
                "%s: messages %d..%d are damaged (integrity check failed): left out",
                self._where,
                first,
                last,
            )
            return []
        try:
            rows = _body_decoder.decode(self._sealer.decrypt(ciphertext, nonce))
        except (CipherError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("%s: messages %d..%d do not decode (%s)", self._where, first, last, exc)
            return []
        return [
            Msg(i, sender, to if isinstance(to, str) else tuple(to), text, t)
            for i, t, sender, to, text in rows
        ]

    # ---- writing (writer thread) ---------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def put(self, kept: Sequence[Kept]) -> dict[bytes, str]:
        """Insert messages, in chunks per conversation, and offline entries (in a transaction).

        A message to `"*"` joins the conversation of everyone; a list joins one
        conversation per registered recipient (the pair with the sender), so a
        group message is in each pair's chunks. Returns the offline queues that
        grew (owner index -> name), for the quota.
        """
        by_conv: dict[bytes, list[_Row]] = {}
        offline_rows: list[tuple[bytes, int, bytes]] = []
        own_convs: set[bytes] = set()  # "*" and rooms: who sent what is counted (`own_runs`)
        owners: dict[str, bytes] = {}
        grown: dict[bytes, str] = {}
        pairs: set[tuple[str, str]] = set()
        everyone, conversation = self._all, self.conversation
        for k in kept:
            msgs = k.msgs
            to = msgs[0].to
            if isinstance(to, str):  # "*", or a room: its own conversation, no queue (v1.2 §2)
                conv = everyone if to == BROADCAST else self.room(to)
                by_conv.setdefault(conv, []).extend(
                    [(m.id, m.ts, m.sender, to, m.text) for m in msgs]
                )
                own_convs.add(conv)
                continue
            sender = msgs[0].sender
            rows = [(m.id, m.ts, m.sender, list(m.to), m.text) for m in msgs]
            for name in k.named:
                by_conv.setdefault(conversation(sender, name), []).extend(rows)
                pairs.add((sender, name))
            # A queued name outside `named` was lost on the way (its session refused the
            # message): the conversation holds it already, only the queue entry is new.
            for name in k.queued:
                conv, owner = conversation(sender, name), self.owner(name)
                offline_rows += [(owner, m.id, conv) for m in msgs]
                grown[owner] = name
        if pairs:
            self.state.contacts(pairs)
        chunks = [(conv, part) for conv, rows in by_conv.items() for part in _split(rows)]
        nonces = os.urandom(NONCE_BYTES * len(chunks))
        seal = self._seal
        conn = self._conn
        conn.executemany(
            "INSERT INTO chunks (conv, first, last, ts, n, body) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (conv, *seal(conv, part, nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]))
                for i, (conv, part) in enumerate(chunks)
            ],
        )
        if offline_rows:
            conn.executemany("INSERT OR IGNORE INTO offline VALUES (?, ?, ?)", offline_rows)
        if own_convs:
            own_rows = []
            for conv, part in chunks:
                if conv in own_convs:
                    own_rows += self._own_runs(conv, part, owners)
            conn.executemany("INSERT OR IGNORE INTO own_runs VALUES (?, ?, ?, ?)", own_rows)
        return grown

    def _own_runs(
        self, conv: bytes, part: list[_Row], owners: dict[str, bytes]
    ) -> list[tuple[int, bytes, bytes, int]]:
        """Who sent the messages of one chunk of `"*"` or a room: a row per sender (its
        first id there, how many), not per message. `unread` counts a user's own messages
        from a chunk's first id on, and a chunk's messages are all on one side of that, so
        a row never straddles what it asks. A row per message cost the writer more than
        everything else it does for a message (4.4 of 7 us at 400 messages of 50 senders a
        transaction: two B-tree inserts at random places each; bench/README.md)."""
        runs: dict[str, list[int]] = {}
        for row in part:
            run = runs.get(row[2])
            if run is None:
                runs[row[2]] = [row[0], 1]
            else:
                run[1] += 1
        out = []
        for sender, (first, n) in runs.items():
            owner = owners.get(sender)
            if owner is None:
                owner = owners[sender] = self.owner(sender)
            out.append((first, conv, owner, n))
        return out

    def trim_queue(self, owner: bytes, keep: int) -> int:
        """The quota: drop the oldest offline entries of one queue past `keep`; how many."""
        conn = self._conn
        (length,) = conn.execute(
            "SELECT count(*) FROM offline WHERE owner = ?", (owner,)
        ).fetchone()
        if length <= keep:
            return 0
        cur = conn.execute(
            "DELETE FROM offline WHERE owner = ? AND id IN "
            "(SELECT id FROM offline WHERE owner = ? ORDER BY id LIMIT ?)",
            (owner, owner, length - keep),
        )
        return int(cur.rowcount)

    def ack(self, owner: bytes, upto: int) -> int:
        """Forget one user's offline entries up to `upto`: how many went."""
        upto = min(upto, _MAX_ID)
        cur = self._conn.execute("DELETE FROM offline WHERE owner = ? AND id <= ?", (owner, upto))
        return cur.rowcount

    def purge_before(self, cutoff: float) -> int:
        """Retention: remove chunks whose newest message is older than `cutoff`; how many
        messages went (each group message counted once per conversation).

        Walks from the oldest chunk and stops at the first young one, so it
        costs what it removes, not the size of the store. Times rise with the
        write order except across a clock step; a chunk kept a little longer
        because an older-looking one follows it is harmless.
        """
        removed = 0
        conn = self._conn
        while True:
            rows = conn.execute(
                "SELECT seq, ts, last, n FROM chunks ORDER BY seq LIMIT ?",
                (_PURGE_STEP,),
            ).fetchall()
            old = list(_prefix_older(rows, cutoff))
            if not old:
                return removed
            with self.transaction():
                conn.execute("DELETE FROM chunks WHERE seq <= ?", (old[-1][0],))
                conn.execute("DELETE FROM offline WHERE id <= ?", (max(r[2] for r in old),))
                conn.execute("DELETE FROM own_runs WHERE first <= ?", (max(r[2] for r in old),))
            removed += sum(r[3] for r in old)
            if len(old) < len(rows):
                return removed

    # ---- reading (reader threads) ----------------------------------------------
    def page(self, user: str, peer: str, before: int | None, limit: int) -> Page:
        """Up to `limit` messages of one conversation older than `before`, oldest first (a
        room's to members only: the caller has checked)."""
        conv = self.conv_of(user, peer)
        below = _MAX_ID if before is None else min(before, _MAX_ID)
        found: list[Msg] = []
        seen: set[int] = set()
        oldest = self._oldest(user, peer)
        cursor = self._conn.execute(
            "SELECT first, last, ts, body FROM chunks WHERE conv = ? AND first < ? "
            "ORDER BY first DESC",
            (conv, below),
        )
        for first, last, ts, body in cursor:
            for msg in reversed(self._open(conv, first, last, ts, bytes(body))):
                if msg.ts < oldest:
                    continue
                if msg.id < below and msg.id not in seen and visible(msg, user, peer):
                    seen.add(msg.id)
                    found.append(msg)
            if len(found) > limit:
                break
        cursor.close()
        found.sort(key=lambda m: m.id)
        return Page(tuple(found[-limit:]), len(found) > limit)

    def unread(self, user: str, peer: str, upto: int, cap: int) -> tuple[int, int]:
        """(the newest message id of the conversation, how many after `upto` came from
        someone else, counted up to `cap`): a login's `markers` frame (v1.2 section 3).

        `"*"` and rooms are counted from indexes, without opening their messages: the chunks
        after the marker say how many messages they hold (`n`, summed by SQLite from
        `chunks_counts`, a range that starts at the marker: never the history before it),
        `own_runs` (a row per sender per chunk) which of them the user sent. Only the chunk
        the marker falls in, and chunks written before the table existed (`own_from`), are
        opened and counted one by one. A login with 200 rooms of 1,000 unread each opened
        about 200 x 170 chunks before (bench/README.md, "Rooms (issue 19)"); it opens at
        most one per room now. A conversation with a person is read as before: its pair's
        chunks hold group messages too, which only the sealed `to` tells apart."""
        if peer != BROADCAST and not peer.startswith("#"):
            return self._unread_opened(user, peer, upto, cap)
        conv = self.conv_of(user, peer)
        oldest = self._oldest()
        own_from = self._own_start()
        upto = max(upto, 0)
        conn = self._conn
        newest = opened = summed = mine = 0
        low = 0  # the oldest chunk counted from `n`: own messages are those from it on

        def own() -> int:
            if not low:
                return 0
            (mine,) = conn.execute(
                "SELECT coalesce(sum(n), 0) FROM own_runs WHERE conv = ? AND owner = ? "
                "AND first >= ?",
                (conv, self.owner(user), low),
            ).fetchone()
            return int(mine)

        def count_opened(seq: int, first: int, last: int, ts: float) -> int:
            (body,) = conn.execute("SELECT body FROM chunks WHERE seq = ?", (seq,)).fetchone()
            found = self._open(conv, first, last, ts, bytes(body))
            return sum(1 for m in found if m.id > upto and m.ts >= oldest and m.sender != user)

        # The chunks that start after the marker, newest first, summed by SQLite from the
        # covering index `chunks_counts` (a range: never the history before the marker),
        # `cap` chunks at a time (each holds one message at least): one window answers
        # unless the user's own messages are many.
        floor = max(upto, own_from - 1)
        keep = oldest if oldest != float("-inf") else -1e300
        below = _MAX_ID
        while True:
            chunks, count, lo, hi = conn.execute(
                "SELECT count(*), sum(n), min(first), max(last) FROM (SELECT n, first, last "
                "FROM chunks WHERE conv = ? AND first > ? AND first < ? AND ts >= ? "
                "ORDER BY first DESC LIMIT ?)",
                (conv, floor, below, keep, cap),
            ).fetchone()
            if not chunks:
                break
            summed += count
            low, below = lo, lo
            newest = max(newest, hi)
            mine = own()
            if summed - mine >= cap:
                return newest, cap
            if chunks < cap:
                break
        # Chunks written before the table (after the marker): opened, newest first.
        if own_from - 1 > upto:
            cursor = conn.execute(
                "SELECT seq, first, last, ts FROM chunks WHERE conv = ? AND first > ? "
                "AND first < ? ORDER BY first DESC",
                (conv, upto, own_from),
            )
            for seq, first, last, ts in cursor:
                if ts < oldest:
                    break
                newest = max(newest, last)
                opened += count_opened(seq, first, last, ts)
                if summed - mine + opened >= cap:
                    cursor.close()
                    return newest, cap
            cursor.close()
        # The chunk the marker falls in: a conversation's chunks never overlap (ids rise
        # with the write order), so it is the newest chunk that starts at or below it.
        row = conn.execute(
            "SELECT seq, first, last, ts FROM chunks WHERE conv = ? AND first <= ? "
            "ORDER BY first DESC LIMIT 1",
            (conv, upto),
        ).fetchone()
        if row is not None:
            newest = max(newest, row[2])  # nothing after the marker: it is at or below it
            if row[2] > upto and row[3] >= oldest:
                opened += count_opened(*row)
        return newest, min(summed - mine + opened, cap)

    def _own_start(self) -> int:
        """The first id `own_runs` (once `own`) covers (messages below it were stored before it
        existed; a new file: 0, every message)."""
        if self._own_from is None:
            self._own_from = int(self._meta("own_from") or str(_MAX_ID).encode())
        return self._own_from

    def _unread_opened(self, user: str, peer: str, upto: int, cap: int) -> tuple[int, int]:
        """`unread` by opening every chunk after the marker (a conversation with a person)."""
        conv = self.conv_of(user, peer)
        oldest = self._oldest(user, peer)
        newest = count = 0
        cursor = self._conn.execute(
            "SELECT first, last, ts, body FROM chunks WHERE conv = ? AND last > ? "
            "ORDER BY first DESC",
            (conv, max(upto, 0)),
        )
        seen: set[int] = set()
        for first, last, ts, body in cursor:
            for msg in self._open(conv, first, last, ts, bytes(body)):
                if msg.id <= upto or msg.id in seen or msg.ts < oldest:
                    continue
                if not visible(msg, user, peer):
                    continue
                seen.add(msg.id)
                newest = max(newest, msg.id)
                if msg.sender != user:
                    count += 1
            if count >= cap:
                break
        cursor.close()
        if not newest:  # nothing after the marker: the newest id is at or below it
            row = self._conn.execute(
                "SELECT last FROM chunks WHERE conv = ? ORDER BY first DESC LIMIT 1", (conv,)
            ).fetchone()
            newest = row[0] if row else 0
        return newest, min(count, cap)

    def drop_conversation(self, peer: str) -> None:
        """A room deleted: its history goes with it (v1.2 section 2)."""
        conv = self.room(peer)
        self._conn.execute("DELETE FROM chunks WHERE conv = ?", (conv,))
        self._conn.execute("DELETE FROM own_runs WHERE conv = ?", (conv,))

    def offline(self, user: str, after: int, limit: int, max_bytes: int) -> Page:
        """The oldest offline messages of `user` with an id above `after`."""
        entries = self._conn.execute(
            "SELECT id, conv FROM offline WHERE owner = ? AND id > ? ORDER BY id LIMIT ?",
            (self.owner(user), max(after, 0), limit + 1),
        ).fetchall()
        messages: list[Msg] = []
        opened: dict[tuple[bytes, int], dict[int, Msg]] = {}
        oldest = self._oldest()
        size = last = 0
        for msg_id, conv in entries[:limit]:
            conv = bytes(conv)
            msg = self._find(conv, msg_id, opened)
            if msg is not None and size + len(msg.text) > max_bytes and messages:
                return Page(tuple(messages), True, last)
            last = msg_id
            if msg is None:
                continue
            if msg.ts < oldest:
                continue
            if isinstance(msg.to, tuple) and user in msg.to:
                size += len(msg.text)
                messages.append(Msg(msg.id, msg.sender, msg.to, msg.text, msg.ts, offline=True))
            else:
                log.error(
                    "%s: offline entry %d does not name its owner: left out", self._where, msg_id
                )
        return Page(tuple(messages), len(entries) > limit, last)

    def newest(self, conv: bytes) -> int:
        """The newest message id stored in a conversation (0: none): a room's `last` at
        start, which its record does not follow message by message."""
        row = self._conn.execute("SELECT MAX(last) FROM chunks WHERE conv = ?", (conv,)).fetchone()
        return int(row[0] or 0)

    def _oldest(self, user: str = "", peer: str = BROADCAST) -> float:
        """The time before which a message is not shown: the retention's cutoff, and for a
        private conversation the deletion of an earlier account of `user`'s name (its
        messages stay for the other party, never for a newcomer with the same name)."""
        cutoff = time.time() - self.retention if self.retention > 0 else float("-inf")
        if peer == BROADCAST or peer.startswith("#"):
            return cutoff
        return max(cutoff, self.state.deleted_at(user))

    def _find(
        self, conv: bytes, msg_id: int, opened: dict[tuple[bytes, int], dict[int, Msg]]
    ) -> Msg | None:
        """One message by id within its conversation (chunks opened once per page)."""
        row = self._conn.execute(
            "SELECT first, last, ts, body FROM chunks WHERE conv = ? AND first <= ? "
            "ORDER BY first DESC LIMIT 1",
            (conv, msg_id),
        ).fetchone()
        if row is None or row[1] < msg_id:
            return None  # gone with the retention
        first, last, ts, body = row
        chunk = opened.get((conv, first))
        if chunk is None:
            chunk = opened[(conv, first)] = {
                m.id: m for m in self._open(conv, first, last, ts, bytes(body))
            }
        return chunk.get(msg_id)


def _own_runs_from_own(conn: sqlite3.Connection) -> None:
    """A file of a server before `own_runs` kept a row per message in `own`: each is a run
    of one. Moved over and the old table dropped in one transaction (a crash leaves one or
    the other, whole)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'own'").fetchone():
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT OR IGNORE INTO own_runs SELECT id, conv, owner, 1 FROM own")
            conn.execute("DROP TABLE own")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _split(rows: list[_Row]) -> Iterator[list[_Row]]:
    """Chunks of at most CHUNK_MESSAGES rows and CHUNK_TEXT characters (at least one row)."""
    if len(rows) <= CHUNK_MESSAGES and sum(map(len, map(_TEXT, rows))) <= CHUNK_TEXT:
        yield rows  # the writer's common case: a batch's conversation fits one chunk
        return
    part: list[_Row] = []
    size = 0
    for row in rows:
        if part and (len(part) >= CHUNK_MESSAGES or size + len(row[4]) > CHUNK_TEXT):
            yield part
            part, size = [], 0
        part.append(row)
        size += len(row[4])
    if part:
        yield part


def _read_meta(path: Path, where: str) -> dict[str, bytes]:
    """The meta rows, read without changing a byte of the store or its folder.

    The main file is opened immutable (no -wal, no -shm is created or
    touched): the meta rows are written there when the store is made and
    never change. Only a store killed within moments of its creation has
    them in its WAL alone; that small pair is then read from a private copy.
    """

    def read(file: Path) -> dict[str, bytes]:
        conn = _connect(file, immutable=True)
        try:
            return {k: bytes(v) for k, v in conn.execute("SELECT k, v FROM meta")}
        finally:
            conn.close()

    try:
        try:
            return read(path)
        except sqlite3.OperationalError:
            wal = path.with_name(path.name + "-wal")
            if not wal.exists():
                raise
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / path.name
            shutil.copyfile(path, copy)
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            conn = _connect(copy)  # recovers the WAL into the copy
            try:
                return {k: bytes(v) for k, v in conn.execute("SELECT k, v FROM meta")}
            finally:
                conn.close()
    except (sqlite3.Error, OSError) as exc:
        raise MessageStoreError(f"{where}: not a readable message store ({exc})") from None


def _quick_check(conn: sqlite3.Connection, budget: float) -> list[tuple[str]] | None:
    """`PRAGMA quick_check`'s rows, or None when it took longer than `budget` seconds.

    SQLite 3.40 calls no progress handler while it walks the b-trees (one VM
    step), so the walk is stopped from a timer thread with `interrupt()`,
    which it does honour. The lock keeps a late timer from interrupting
    anything after the check.
    """
    lock = threading.Lock()
    running = True

    def stop() -> None:
        with lock:
            if running:
                conn.interrupt()

    timer = threading.Timer(budget, stop)
    timer.daemon = True
    timer.start()
    try:
        return conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError as exc:
        if "interrupt" not in str(exc):
            raise
        return None
    finally:
        with lock:
            running = False
        timer.cancel()


def is_missing(path: Path) -> bool:
    """No store at `path` yet: no file, or an empty one (SQLite makes a new store of it)."""
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


def is_damage(exc: BaseException) -> bool:
    """Whether SQLite says the file itself is damaged (not busy, not out of space)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"


#: What the server reads, walked when `PRAGMA quick_check` does not finish in time: the
#: meta rows, every offline entry, the conversation index, and the head of every chunk
#: (without the sealed body, which the chunk's tag checks whenever it is read).
#: `total()`, not `sum()`: ids reach 2**52 and more (an id mark's floor), and sum() of a few
#: thousand of them overflows a 64-bit integer, which SQLite raises as an error.
_READ_PATHS = (
    "SELECT count(*), total(length(k) + length(v)) FROM meta",
    "SELECT count(*), total(id), total(length(owner) + length(conv)) FROM offline",
    "SELECT count(*), total(first), total(length(conv)) FROM chunks INDEXED BY chunks_by_conv "
    "WHERE conv IS NOT NULL",
    "SELECT count(*), total(first), total(last), total(n), total(ts) FROM chunks",
)


def _check_pages(conn: sqlite3.Connection, path: Path, budget: float) -> None:
    """Refuse a damaged file before serving from it (docs/store.md, "Checks at start").

    `PRAGMA quick_check` walks every page: on this machine about 0.2 s per
    1,000,000 messages from the page cache, 2.7 s from a cold disk. Past
    `budget` it is interrupted and `_READ_PATHS` are walked instead (about
    0.9 s cold for the same store): every page the server reads to find
    messages, but not the sealed bodies' overflow pages. A chunk whose body is
    damaged fails its tag when it is read; that is logged and left out.
    """
    where = f"history file {path}"
    rows = _quick_check(conn, budget) if budget > 0 else None
    if rows is not None:
        problems = [
            " ".join(line.split())
            for row in rows
            if row[0] != "ok"
            for line in str(row[0]).splitlines()
            if line.strip() and not line.startswith("*** in database")
        ]
        if problems:
            more = f" and {len(problems) - 2} more" if len(problems) > 2 else ""
            raise MessageStoreError(
                f"{where}: damaged (PRAGMA quick_check: {'; '.join(problems[:2])}{more}): {REMEDY}"
            )
        return
    log.info(
        "%s: PRAGMA quick_check did not finish within %g s (%d MB): checking the pages the "
        "server reads instead; with the server stopped, `sqlite3 %s 'PRAGMA integrity_check'` "
        "checks every page",
        where,
        budget,
        path.stat().st_size >> 20,
        path,
    )
    for sql in _READ_PATHS:
        conn.execute(sql).fetchall()


def start_floor(
    path: Path, users_file: Path, accounts: int, id_mark: int | None, new_store: bool
) -> int:
    """The lowest id the message store at `path` may give, from the users file's facts.

    A users file with accounts next to no store (or an empty one) means the
    store was lost: its offline queues and its ids with it. That start is
    refused (MessageStoreError) unless `new_store` says to start a new one,
    whose ids then go on above the users file's id mark (protocol v1.1
    section 2: ids never go back), or above NO_MARK_FLOOR when the users file
    is older than marks. A users file without accounts never saw a message.
    """
    floor = id_mark or 1
    if not is_missing(path):
        if new_store:
            log.warning(
                "--new-history-store given but %s holds a message store: it is used as it is; "
                "remove the option, so that a store lost later is never replaced without a word",
                path,
            )
        return floor
    if accounts == 0:
        return floor
    if not new_store:
        raise MessageStoreError(
            f"history file {path} is missing or empty but users file {users_file} holds "
            f"{accounts} accounts (their offline messages and history were in it): {REMEDY}"
        )
    if id_mark is None:
        log.warning(
            "users file %s has no id mark (written by an older server): the new message "
            "store's ids start at %d, above any id a server can have given",
            users_file,
            NO_MARK_FLOOR,
        )
        floor = NO_MARK_FLOOR
    log.warning(
        "--new-history-store: a new, empty message store %s; the offline messages and "
        "history of the old one are gone; ids go on from %d",
        path,
        floor,
    )
    return floor


def _prefix_older(
    rows: list[tuple[int, float, bytes]], cutoff: float
) -> Iterable[tuple[int, float, bytes]]:
    for row in rows:
        if row[1] >= cutoff:
            return
        yield row


def visible(msg: Msg, user: str, peer: str) -> bool:
    """The contract's rule, checked on the authenticated record (v1.1 section 4; a room's
    messages are its members', v1.2 section 2: membership is checked by the caller)."""
    if peer == BROADCAST:
        return msg.to == BROADCAST
    if peer.startswith("#"):
        return isinstance(msg.to, str) and msg.to.lower() == peer.lower()
    if isinstance(msg.to, str):  # "*" or a room
        return False
    return (msg.sender == user and peer in msg.to) or (msg.sender == peer and user in msg.to)


def _create_private(path: Path) -> None:
    """Create the file 0600 before SQLite opens it: its -wal and -shm take the same mode."""
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
