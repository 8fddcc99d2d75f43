"""The cluster's history, offline queues and message ids, in Redis.

A `Backend` of the store seam (store/seam.py), like the SQLite
`store.sqlite.MessageStore`, so the same `store.service.StoreService` (one
writer thread with group commit, readers behind a barrier) runs it: a batch
of messages is one pipeline, one round trip. Keys (cluster/keys.py):
a conversation's history and a user's offline queue are sorted sets scored by
message id, and `chat:{g}:ids` gives every node its blocks of ids.

A conversation is named by a blind index (`Box.blind`) of the two names, or
of `all`; a queue by one of its owner's name. A history's member is a *chunk*: the
messages of one writer's batch for that conversation (at most `CHUNK_MAX`, never two
id blocks), sealed together as `0x03` and msgpack `[[id - first, ts, from, to,
text], ...]`, scored by its first id: one seal, one member and one ZADD argument for
what a busy conversation or `"*"` gets in a batch, as the server alone's file keeps
chunks (store/sqlite.py). A queue's member is one message, `0x02` and `[ts, from, to,
text]` (its id is the score), since a queue is acknowledged up to an id. Members of
the first format (JSON `[id, ts, from, to, text]`, one message) are still read
anywhere. Each is bound to its key and score, so a member moved to another
conversation or id does not open. A page is a ZREVRANGEBYSCORE of a few chunks
(another when they held too few messages); a queue
is read with ZRANGEBYSCORE and acknowledged with ZREMRANGEBYSCORE; the quota
is ZREMRANGEBYRANK. A room's messages go into the room's history, next to its
record (`chat:{r:<blind>}:h`), never into a queue (protocol v1.2 section 2).

Rooms, read markers and contacts are its `state` (cluster/state.py), as the
SQLite backend's are in its file; `unread` counts a conversation's messages
after a marker for a login's `markers` frame.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import msgspec
import redis

from chat.server.cluster import keys
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.cluster.state import RedisState
from chat.server.core.rooms import fold
from chat.server.store.sqlite import Kept, MessageStoreError, Page, visible
from chat.shared.fields import MAX_ID
from chat.shared.messages import BROADCAST, Msg

log = logging.getLogger("chat.server.cluster")

ID_BLOCK = 1 << 16  # ids a node takes at once; the next block is fetched at half
_PURGE_STEP = 200
_PAGE_CHUNKS = 4  # chunks a page asks for first (more when they held too few messages)
_UNREAD_STEP = 500  # members opened per read while counting unread messages

#: The first byte of a queue member's plaintext (a JSON one, of the first format, begins
#: with `[`): msgpack `[ts, from, to, text]`, 25-30 B less than the JSON row with its id
#: for a short message (a queued copy crosses Redis once as such a member).
_ROW = b"\x02"
_Row = tuple[float, str, str | list[str], str]
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder(_Row).decode
#: The first byte of a history chunk's plaintext: msgpack `[[id - first, ts, from, to,
#: text], ...]`, ids rising.
_CHUNK = b"\x03"
#: Messages in one chunk at most: a page opens a few chunks, never a batch's worth.
CHUNK_MAX = 64
_ChunkRow = tuple[int, float, str, str | list[str], str]  # id - first, ts, from, to, text
_unpack_chunk = msgspec.msgpack.Decoder(
    Annotated[list[_ChunkRow], msgspec.Meta(max_length=CHUNK_MAX)]
).decode
_decode_json = msgspec.json.Decoder(tuple[int, float, str, str | list[str], str]).decode


class RedisMessageStore:
    """The store seam's `Backend` in Redis (thread-safe client: one object serves the writer
    and the readers)."""

    errors: tuple[type[Exception], ...] = (redis.RedisError, MessageStoreError)

    def __init__(self, link: Link, box: Box, retention: float = 0.0) -> None:
        self._link = link
        self._box = box
        self.retention = retention
        #: Rooms, read markers, contacts (store.service runs their jobs through it).
        self.state = RedisState(link, box)

    # ---- the parts of MessageStore that mean a file ------------------------------
    def reader(self) -> RedisMessageStore:
        return self  # the client is thread-safe: one object serves the readers too

    def close(self) -> None:
        """The link is closed with the node."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield  # each put is one pipeline: atomic enough, and durable once answered

    # ---- keys ------------------------------------------------------------------------
    def conversation(self, a: str, b: str) -> str:
        lo, hi = sorted((a, b))
        return keys.conversation(self._box.blind("pair", lo, hi))

    def broadcast(self) -> str:
        return keys.conversation(self._box.blind("all"))

    def owner(self, name: str) -> str:
        return keys.queue(self._box.blind("queue", name))

    def conv_of(self, user: str, peer: str) -> str:
        """The key of the conversation `user` calls `peer`: "*", a room, or a user."""
        if peer == BROADCAST:
            return self.broadcast()
        if peer.startswith("#"):
            return self.state.history_key(fold(peer))
        return self.conversation(user, peer)

    # ---- sealed members -----------------------------------------------------------------
    def _seal(self, key: str, msg: Msg) -> bytes:
        row: _Row = (
            msg.ts,
            msg.sender,
            msg.to if isinstance(msg.to, str) else list(msg.to),  # "*" or a room: a string
            msg.text,
        )
        return self._box.seal(f"{key}:{msg.id}".encode(), _ROW + _pack(row))

    def _seal_chunk(self, key: str, msgs: Sequence[Msg]) -> bytes:
        """`msgs` (ids rising, one id block) as one member scored by the first id."""
        first = msgs[0].id
        rows: list[_ChunkRow] = [
            (m.id - first, m.ts, m.sender, m.to if isinstance(m.to, str) else list(m.to), m.text)
            for m in msgs
        ]
        return self._box.seal(f"{key}:{first}".encode(), _CHUNK + _pack(rows))

    def _open(self, key: str, member: bytes, score: float) -> list[Msg]:
        """The messages of one member, ids rising (none when it is damaged: logged)."""
        first = int(score)
        plain = self._box.open(f"{key}:{first}".encode(), bytes(member))
        if plain is None:
            log.error("cluster history: message %d in %s is damaged: left out", first, key)
            return []
        try:
            kind = plain[:1]
            if kind == _CHUNK:
                return _chunk_msgs(first, _unpack_chunk(memoryview(plain)[1:]))
            if kind == _ROW:
                ts, sender, to, text = _unpack(memoryview(plain)[1:])
            else:  # the first format: the id inside too (the seal binds it to the score)
                i, ts, sender, to, text = _decode_json(plain)
                if i != first:
                    return []
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            log.error("cluster history: message %d in %s does not decode: left out", first, key)
            return []
        return [Msg(first, sender, to if isinstance(to, str) else tuple(to), text, ts)]

    # ---- writing -------------------------------------------------------------------------
    def put(self, kept: Sequence[Kept]) -> dict[str, str]:
        """Every message into its conversations (a chunk per conversation) and offline
        queues (a member per message): one pipeline, one ZADD per key."""
        pipe = self._link.client.pipeline(transaction=False)
        histories: dict[str, list[Msg]] = {}
        queues: dict[str, dict[bytes, int]] = {}
        grown: dict[str, str] = {}
        pairs: set[tuple[str, str]] = set()
        everyone = self.broadcast()

        def keep(key: str, msg: Msg) -> None:
            found = histories.get(key)
            if found is None:
                histories[key] = [msg]
            else:
                found.append(msg)

        for k in kept:
            for msg in k.msgs:
                if msg.to == BROADCAST:
                    keep(everyone, msg)
                    continue
                if isinstance(msg.to, str):  # a room: its history, no queue
                    keep(self.state.history_key(fold(msg.to)), msg)
                    continue
                for name in k.named:
                    keep(self.conversation(msg.sender, name), msg)
                    pairs.add((msg.sender, name))
                for name in k.queued:
                    queue = self.owner(name)
                    queues.setdefault(queue, {})[self._seal(queue, msg)] = msg.id
                    grown[queue] = name
        for key, msgs in histories.items():
            pipe.zadd(key, {self._seal_chunk(key, c): c[0].id for c in _chunks(msgs)})
        for key, members in queues.items():
            pipe.zadd(key, members)
        new_contacts = self.state.add_contacts(pipe, sorted(pairs)) if pairs else []
        self._execute(pipe)
        self.state.contacts_written(new_contacts)
        return grown

    def ack(self, owner: str, upto: int) -> int:
        return int(self._run(lambda c: c.zremrangebyscore(owner, "-inf", upto)))

    def trim_queue(self, owner: str, keep: int) -> int:
        return int(self._run(lambda c: c.zremrangebyrank(owner, 0, -(keep + 1))))

    def purge_before(self, cutoff: float) -> int:
        """Retention, by one node at a time (a lock key): the oldest members of every
        conversation and queue whose time is past `cutoff`, walking from the oldest."""
        client = self._link.client
        if not self._run(lambda c: c.set(keys.PURGE_LOCK, b"1", nx=True, ex=600)):
            return 0
        removed = 0
        try:
            for pattern in (keys.HISTORY_PATTERN, keys.ROOM_HISTORY_PATTERN, keys.QUEUE_PATTERN):
                for key in client.scan_iter(match=pattern, count=500):
                    removed += self._purge_key(key.decode(), cutoff)
        finally:
            with contextlib.suppress(redis.RedisError):
                client.delete(keys.PURGE_LOCK)
        return removed

    def _purge_key(self, key: str, cutoff: float) -> int:
        client, removed = self._link.client, 0
        while True:
            rows = client.zrange(key, 0, _PURGE_STEP - 1, withscores=True)
            last = None
            for member, score in rows:
                msgs = self._open(key, member, score)  # a chunk goes once its newest is old
                if msgs and max(m.ts for m in msgs) >= cutoff:
                    break
                last = score
            if last is None:
                return removed
            removed += int(client.zremrangebyscore(key, "-inf", last))
            if len(rows) < _PURGE_STEP:
                return removed

    # ---- reading -------------------------------------------------------------------------
    def page(self, user: str, peer: str, before: int | None, limit: int) -> Page:
        """Up to `limit` messages of one conversation older than `before`, oldest first (a
        room's to members only: the caller has checked)."""
        key = self.conv_of(user, peer)
        top = "+inf" if before is None else f"({before}"
        found: list[Msg] = []  # newest first, up to limit + 1 (the last one says `more`)
        skip, ask = 0, min(limit + 1, _PAGE_CHUNKS)
        while len(found) <= limit:
            rows = self._run(
                lambda c, s=skip, n=ask: c.zrevrangebyscore(
                    key, top, "-inf", start=s, num=n, withscores=True
                )
            )
            for member, score in rows:
                for msg in reversed(self._open(key, member, score)):
                    if before is None or msg.id < before:  # a chunk may reach past `before`
                        found.append(msg)
            if len(rows) < ask:
                break
            skip += ask
            ask = max(limit + 1 - len(found), 1)  # each chunk holds one message at least
        found.sort(key=_by_id, reverse=True)
        oldest = self._oldest(user, peer)
        messages = [m for m in reversed(found[:limit]) if m.ts >= oldest and visible(m, user, peer)]
        return Page(tuple(messages), len(found) > limit)

    def unread(self, user: str, peer: str, upto: int, cap: int) -> tuple[int, int]:
        """(the newest message id of the conversation, how many after `upto` came from
        someone else, counted up to `cap`): a login's `markers` frame (v1.2 section 3)."""
        key = self.conv_of(user, peer)
        newest_rows = self._run(lambda c: c.zrevrange(key, 0, 0, withscores=True))
        newest = 0
        if newest_rows:  # the newest chunk's last message (or its first, if it is damaged)
            member, score = newest_rows[0]
            newest = max((m.id for m in self._open(key, member, score)), default=int(score))
        if newest <= upto:
            return newest, 0
        oldest, after = self._oldest(user, peer), max(upto, 0)

        def counted(rows: list[Any]) -> int:
            n = 0
            for member, score in rows:
                for msg in self._open(key, member, score):
                    fresh = msg.id > upto and msg.ts >= oldest and msg.sender != user
                    if fresh and visible(msg, user, peer):
                        n += 1
            return n

        # The chunk that begins at or before `upto` may hold messages after it.
        count = counted(
            self._run(
                lambda c: c.zrevrangebyscore(key, after, "-inf", start=0, num=1, withscores=True)
            )
        )
        while count < cap:
            rows = self._run(
                lambda c, a=after: c.zrangebyscore(
                    key, f"({a}", "+inf", start=0, num=_UNREAD_STEP, withscores=True
                )
            )
            count += counted(rows)
            if len(rows) < _UNREAD_STEP:
                break
            after = int(rows[-1][1])
        return newest, min(count, cap)

    def drop_conversation(self, peer: str) -> None:
        """A room deleted: its history goes with it (v1.2 section 2)."""
        self._run(lambda c: c.delete(self.state.history_key(fold(peer))))

    def offline(self, user: str, after: int, limit: int, max_bytes: int) -> Page:
        key = self.owner(user)
        rows = self._run(
            lambda c: c.zrangebyscore(
                key, f"({after}", "+inf", start=0, num=limit + 1, withscores=True
            )
        )
        oldest = self._oldest()
        messages: list[Msg] = []
        size = last = 0
        for member, score in rows[:limit]:
            opened = self._open(key, member, score)  # one message: a queue is never chunked
            msg = opened[0] if len(opened) == 1 else None
            if msg is not None and messages and size + len(msg.text) > max_bytes:
                return Page(tuple(messages), True, last)
            last = int(score)
            if msg is None or msg.ts < oldest:
                continue
            if msg.to != BROADCAST and user in msg.to:
                size += len(msg.text)
                messages.append(Msg(msg.id, msg.sender, msg.to, msg.text, msg.ts, offline=True))
        return Page(tuple(messages), len(rows) > limit, last)

    def _oldest(self, user: str = "", peer: str = BROADCAST) -> float:
        """The time before which a message is not shown: the retention's cutoff, and for a
        private conversation the deletion of an earlier account of `user`'s name (as the
        store of a server alone, store/sqlite.py)."""
        cutoff = time.time() - self.retention if self.retention > 0 else float("-inf")
        if peer == BROADCAST or peer.startswith("#"):
            return cutoff
        return max(cutoff, self._run(lambda c: self.state.deleted_at(user)))

    # ---- plumbing ------------------------------------------------------------------------
    def _run(self, command: Any) -> Any:
        try:
            result = command(self._link.client)
        except redis.RedisError as exc:
            self._link.failed(exc)
            raise
        self._link.works()
        return result

    def _execute(self, pipe: Any) -> None:
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self._link.failed(exc)
            raise
        self._link.works()


class RedisIds:
    """`msg.id` for the cluster: blocks from one Redis counter (INCRBY), so ids are unique
    across nodes, rise for each sender (its node's blocks rise) and never go back (the
    counter is persisted with the rest).

    `take` never waits for Redis (issue "1 of 6", item 6): this node keeps one block in
    use and one in reserve, and its own fetcher thread (started by `start`, joined by
    `stop`) takes the next block from Redis when the reserve is used; if Redis stays
    away for longer than two blocks' worth of messages, `take` answers None.
    """

    def __init__(self, link: Link) -> None:
        self._link = link
        self._cond = threading.Condition(threading.Lock())
        self._next = self._end = 0
        self._reserve: list[tuple[int, int]] = []  # [start, end) blocks fetched, in order
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """The first blocks, from Redis (RedisError when it cannot be reached), then the
        fetcher thread."""
        self._next, self._end = self._fetch()
        self._reserve.append(self._fetch())
        self._thread = threading.Thread(target=self._fetch_loop, name="cluster-ids")
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)

    def _fetch(self) -> tuple[int, int]:
        end = int(self._link.client.incrby(keys.IDS, ID_BLOCK)) + 1
        return end - ID_BLOCK, end

    def peek(self) -> int:
        with self._cond:
            return self._next

    @property
    def ahead(self) -> bool:
        """Whether the next block is fetched already (as `MessageIds.ahead`)."""
        with self._cond:
            return bool(self._reserve)

    def take(self, count: int) -> int | None:
        with self._cond:
            while self._end - self._next < count:
                if not self._reserve:
                    self._cond.notify_all()
                    return None
                self._next, self._end = self._reserve.pop(0)
                self._cond.notify_all()  # the fetcher refills the reserve
            start = self._next
            self._next += count
            return start

    def _fetch_loop(self) -> None:
        while True:
            with self._cond:
                while self._reserve and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
            try:
                block = self._fetch()
            except redis.RedisError as exc:
                self._link.failed(exc)
                with self._cond:
                    self._cond.wait(0.5)
                continue
            except Exception:
                log.exception("cluster: fetching message ids failed")
                with self._cond:
                    self._cond.wait(0.5)
                continue
            self._link.works()
            with self._cond:
                self._reserve.append(block)


def _by_id(msg: Msg) -> int:
    return msg.id


def _chunks(msgs: list[Msg]) -> Iterator[list[Msg]]:
    """`msgs` of one conversation in chunks: ids rising, at most `CHUNK_MAX`, never across
    an id block (a node's ids rise within its blocks, and another node's block may lie
    between two of its own: a chunk never spans an id another node may give out, so the
    chunks of a conversation never overlap and a page can go by their first ids)."""
    msgs.sort(key=_by_id)
    chunk: list[Msg] = []
    for msg in msgs:
        if chunk and msg.id == chunk[-1].id:
            continue  # the same message named twice
        if chunk and (
            len(chunk) == CHUNK_MAX or (msg.id - 1) // ID_BLOCK != (chunk[0].id - 1) // ID_BLOCK
        ):
            yield chunk
            chunk = []
        chunk.append(msg)
    if chunk:
        yield chunk


def _chunk_msgs(first: int, rows: list[_ChunkRow]) -> list[Msg]:
    """A chunk's messages; ValueError when its ids do not start at `first` and rise."""
    msgs, prev = [], -1
    for offset, ts, sender, to, text in rows:
        if offset <= prev or first + offset > MAX_ID:
            raise ValueError("a chunk's ids do not rise from its score")
        if prev < 0 and offset != 0:
            raise ValueError("a chunk's first id is not its score")
        prev = offset
        msgs.append(Msg(first + offset, sender, to if isinstance(to, str) else tuple(to), text, ts))
    if not msgs:
        raise ValueError("an empty chunk")
    return msgs
