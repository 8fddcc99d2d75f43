"""The message store: every delivered or queued message, sealed, in one SQLite file (WAL).

Nothing here is in clear but what the store needs to work on its own: a row
id (the `msg.id`), a timestamp (for retention) and keyed blind indexes (an
HMAC of a conversation or of a user name). User names and text live only in
the sealed body. Every answer is checked against the authenticated record,
not the index: a row moved into another conversation's index, or a damaged
one, is reported and left out, never shown (docs/store.md, "Message store").

This module is synchronous and owns no thread: `history.HistoryService`
runs its writes on one writer thread (group commit) and its reads on reader
threads, each with a connection of its own.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from chat.shared.messages import BROADCAST, Msg, Recipients

from .cipher import Cipher, CipherError
from .keyfile import fsync_dir
from .sealing import NONCE_BYTES, Sealer

log = logging.getLogger("chat.server.store")

FORMAT_VERSION = 1
TAG_BYTES = 16  # HMAC-SHA256 truncated to 128 bits per record (RFC 2104 allows it)
INDEX_BYTES = 16  # blind index: HMAC-SHA256 truncated to 128 bits
_HKDF_SALT = b"chat-history-v1"
_STREAM = b"chat-history-stream-v1"
_KEY_CHECK = b"chat-history-key-check"
_MAX_ID = (1 << 63) - 1  # SQLite's INTEGER
_PURGE_CHUNK = 2000
_HEAD = struct.Struct(">qd")  # id, ts: bound into every record's tag

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    convs BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS convs (
    conv BLOB NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (conv, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offline (
    owner BLOB NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (owner, id)
) WITHOUT ROWID;
"""

_body_encoder = msgspec.json.Encoder()
_body_decoder = msgspec.json.Decoder(tuple[str, str | list[str], str])


class MessageStoreError(Exception):
    """The message store cannot be opened, verified or written; one line."""


@dataclass(frozen=True, slots=True)
class Kept:
    """One message to keep: who may see it (`named`) and who it is queued for."""

    msg: Msg
    #: Registered recipients (delivered or queued) other than the sender: one
    #: conversation index per pair with the sender. Empty for `"*"`.
    named: tuple[str, ...]
    queued: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Page:
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

    def __init__(self, path: Path, conn: sqlite3.Connection, sealer: Sealer) -> None:
        self.path = path
        self._conn = conn
        self._sealer = sealer
        self._index_key = sealer.subkey(b"index")
        self._all = self._index(b"all")
        self._where = f"history file {path}"

    # ---- opening ---------------------------------------------------------
    @classmethod
    def open(cls, path: Path, key: bytes, cipher: Cipher) -> MessageStore:
        """The writer's store: check the key against an existing file first, then set up.

        A wrong key is found through a read-only connection, before anything
        is written (not even the WAL switch), so the file keeps every byte.
        """
        path = Path(path)
        sealer = Sealer(key, cipher, salt=_HKDF_SALT, stream=_STREAM)
        fresh = not path.exists() or path.stat().st_size == 0
        if not fresh:
            cls._check_existing(path, sealer)
        else:
            _create_private(path)
        try:
            conn = _connect(path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # every commit fsyncs the WAL
            conn.executescript(SCHEMA)
            store = cls(path, conn, sealer)
            if fresh or store._meta("check") is None:
                store._init_meta()
                # Into the main file at once: a key check reads it there (`_read_meta`).
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise MessageStoreError(f"history file {path}: cannot open ({exc})") from None
        return store

    def reader(self) -> MessageStore:
        """Another connection to the same file, for a reader thread."""
        try:
            conn = _connect(self.path, read_only=True)
        except sqlite3.Error as exc:
            raise MessageStoreError(f"{self._where}: cannot open for reading ({exc})") from None
        return MessageStore(self.path, conn, self._sealer)

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
        newest = self._conn.execute("SELECT max(id) FROM messages").fetchone()[0] or 0
        return max(ceiling, newest + 1, 1)

    def reserve_ids(self, ceiling: int) -> None:
        """Ids below `ceiling` may be given out (in the caller's transaction)."""
        self._set_meta("id_ceiling", str(ceiling).encode())

    # ---- keys ----------------------------------------------------------------
    def _index(self, data: bytes) -> bytes:
        return hmac.digest(self._index_key, data, "sha256")[:INDEX_BYTES]

    def conversation(self, a: str, b: str) -> bytes:
        """Blind index of the conversation between two users (order does not matter)."""
        lo, hi = sorted((a, b))
        return self._index(b"pair\0" + lo.encode() + b"\0" + hi.encode())

    def broadcast(self) -> bytes:
        return self._all

    def owner(self, name: str) -> bytes:
        """Blind index of one user's offline queue."""
        return self._index(b"user\0" + name.encode())

    # ---- records -------------------------------------------------------------
    def _seal(self, msg: Msg, convs: bytes, nonce: bytes) -> bytes:
        to = msg.to if msg.to == BROADCAST else list(msg.to)
        plain = _body_encoder.encode((msg.sender, to, msg.text))
        ciphertext = self._sealer.encrypt(plain, nonce)
        head = _HEAD.pack(msg.id, msg.ts) + convs + nonce + ciphertext
        return nonce + ciphertext + self._sealer.tag(head)[:TAG_BYTES]

    def _open(self, msg_id: int, ts: float, convs: bytes, body: bytes) -> Msg | None:
        """The record, or None (logged) when it fails its tag or does not decode."""
        nonce, ciphertext = body[:NONCE_BYTES], body[NONCE_BYTES:-TAG_BYTES]
        tag = body[-TAG_BYTES:]
        head = _HEAD.pack(msg_id, ts) + convs + nonce + ciphertext
        if len(body) < NONCE_BYTES + TAG_BYTES or not self._sealer.verify(head, tag):
            log.error(
                "%s: message %d is damaged (integrity check failed): left out", self._where, msg_id
            )
            return None
        try:
            sender, to, text = _body_decoder.decode(self._sealer.decrypt(ciphertext, nonce))
        except (CipherError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("%s: message %d does not decode (%s): left out", self._where, msg_id, exc)
            return None
        recipients: Recipients = BROADCAST if to == BROADCAST else tuple(to)
        return Msg(msg_id, sender, recipients, text, ts)

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
        """Insert messages, their conversation indexes and offline entries (in a transaction).

        Returns the offline queues that grew (owner index -> name), for the quota.
        """
        nonces = os.urandom(NONCE_BYTES * len(kept))
        rows, conv_rows, offline_rows = [], [], []
        grown: dict[bytes, str] = {}
        for i, k in enumerate(kept):
            msg = k.msg
            if msg.to == BROADCAST:
                keys = [self._all]
            else:
                keys = [self.conversation(msg.sender, name) for name in k.named]
            convs = b"".join(keys)
            body = self._seal(msg, convs, nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES])
            rows.append((msg.id, msg.ts, convs, body))
            conv_rows.extend((key, msg.id) for key in keys)
            for name in k.queued:
                owner = self.owner(name)
                offline_rows.append((owner, msg.id))
                grown[owner] = name
        conn = self._conn
        conn.executemany("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?)", rows)
        conn.executemany("INSERT OR IGNORE INTO convs VALUES (?, ?)", conv_rows)
        if offline_rows:
            conn.executemany("INSERT OR IGNORE INTO offline VALUES (?, ?)", offline_rows)
        return grown

    def queue_length(self, owner: bytes) -> int:
        return self._conn.execute(
            "SELECT count(*) FROM offline WHERE owner = ?", (owner,)
        ).fetchone()[0]

    def drop_oldest(self, owner: bytes, count: int) -> int:
        """Remove the `count` oldest offline entries of one queue (the quota)."""
        cur = self._conn.execute(
            "DELETE FROM offline WHERE owner = ? AND id IN "
            "(SELECT id FROM offline WHERE owner = ? ORDER BY id LIMIT ?)",
            (owner, owner, count),
        )
        return cur.rowcount

    def ack(self, owner: bytes, upto: int) -> int:
        """Forget one user's offline entries up to `upto`: how many went."""
        upto = min(upto, _MAX_ID)
        cur = self._conn.execute("DELETE FROM offline WHERE owner = ? AND id <= ?", (owner, upto))
        return cur.rowcount

    def purge_before(self, cutoff: float) -> int:
        """Retention: remove messages older than `cutoff` (unix time), oldest first.

        Walks from the oldest row and stops at the first young one, so it
        costs what it removes, not the size of the store. Ids and timestamps
        rise together except across a clock step; a message kept a little
        longer because an older-looking one follows it is harmless.
        """
        removed = 0
        conn = self._conn
        while True:
            rows = conn.execute(
                "SELECT id, ts, convs FROM messages ORDER BY id LIMIT ?", (_PURGE_CHUNK,)
            ).fetchall()
            old = list(_prefix_older(rows, cutoff))
            if not old:
                return removed
            last = old[-1][0]
            with self.transaction():
                conn.executemany(
                    "DELETE FROM convs WHERE conv = ? AND id = ?",
                    [
                        (bytes(convs[i : i + INDEX_BYTES]), msg_id)
                        for msg_id, _, convs in old
                        for i in range(0, len(convs), INDEX_BYTES)
                    ],
                )
                conn.execute("DELETE FROM messages WHERE id <= ?", (last,))
                conn.execute("DELETE FROM offline WHERE id <= ?", (last,))
            removed += len(old)
            if len(old) < len(rows):
                return removed

    # ---- reading (reader threads) ----------------------------------------------
    def page(self, user: str, peer: str, before: int | None, limit: int) -> Page:
        """Up to `limit` messages of one conversation older than `before`, oldest first."""
        conv = self._all if peer == BROADCAST else self.conversation(user, peer)
        below = _MAX_ID if before is None else min(before, _MAX_ID)
        rows = self._conn.execute(
            "SELECT m.id, m.ts, m.convs, m.body FROM convs c JOIN messages m ON m.id = c.id "
            "WHERE c.conv = ? AND c.id < ? ORDER BY c.id DESC LIMIT ?",
            (conv, below, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        messages = []
        for msg_id, ts, convs, body in reversed(rows[:limit]):
            if not _names_index(bytes(convs), conv):  # the index points where the record does not
                log.error(
                    "%s: message %d is not in that conversation: left out", self._where, msg_id
                )
                continue
            msg = self._open(msg_id, ts, bytes(convs), bytes(body))
            if msg is not None and _visible(msg, user, peer):
                messages.append(msg)
        return Page(tuple(messages), more)

    def offline(self, user: str, after: int, limit: int, max_bytes: int) -> Page:
        """The oldest offline messages of `user` with an id above `after`."""
        rows = self._conn.execute(
            "SELECT m.id, m.ts, m.convs, m.body FROM offline o JOIN messages m ON m.id = o.id "
            "WHERE o.owner = ? AND o.id > ? ORDER BY o.id LIMIT ?",
            (self.owner(user), max(after, 0), limit + 1),
        ).fetchall()
        messages: list[Msg] = []
        size = last = 0
        for msg_id, ts, convs, body in rows[:limit]:
            if messages and size + len(body) > max_bytes:
                return Page(tuple(messages), True, last)
            size += len(body)
            last = msg_id
            msg = self._open(msg_id, ts, bytes(convs), bytes(body))
            if msg is not None and msg.to != BROADCAST and user in msg.to:
                messages.append(Msg(msg.id, msg.sender, msg.to, msg.text, msg.ts, offline=True))
            elif msg is not None:
                log.error(
                    "%s: offline entry %d does not name its owner: left out", self._where, msg_id
                )
        return Page(tuple(messages), len(rows) > limit, last)

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM messages").fetchone()[0]


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


def _prefix_older(
    rows: list[tuple[int, float, bytes]], cutoff: float
) -> Iterable[tuple[int, float, bytes]]:
    for row in rows:
        if row[1] >= cutoff:
            return
        yield row


def _names_index(convs: bytes, conv: bytes) -> bool:
    return any(convs[i : i + INDEX_BYTES] == conv for i in range(0, len(convs), INDEX_BYTES))


def _visible(msg: Msg, user: str, peer: str) -> bool:
    """The contract's rule, checked on the authenticated record (v1.1 section 4)."""
    if peer == BROADCAST:
        return msg.to == BROADCAST
    if msg.to == BROADCAST:
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
