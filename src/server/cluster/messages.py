"""The cluster's history, offline queues and message ids, in Redis.

The same methods as the SQLite `msgstore.MessageStore`, so the same
`history.HistoryService` (one writer thread with group commit, readers
behind a barrier) runs it: a batch of messages is one pipeline, one round
trip. Layout (docs/cluster.md):

    chat:h:<conv>    ZSET  score = msg id, member = one sealed message
    chat:q:<owner>   ZSET  score = msg id, member = one sealed message (offline)
    chat:ids         INT   INCRBY: every node takes blocks of ids from it

`<conv>` and `<owner>` are blind indexes (`Box.blind`): the conversation of
two names, or `all`; one user's queue. A sealed member holds `[id, ts, from,
to, text]` and is bound to its key and score, so a member moved to another
conversation or id does not open. A page is one ZREVRANGEBYSCORE; a queue
is read with ZRANGEBYSCORE and acknowledged with ZREMRANGEBYSCORE; the quota
is ZREMRANGEBYRANK.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import redis

from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.store.sqlite import Kept, MessageStoreError, Page, visible
from chat.shared.messages import BROADCAST, Msg

log = logging.getLogger("chat.server.cluster")

IDS = "chat:ids"
ID_BLOCK = 1 << 16  # ids a node takes at once; the next block is fetched at half
_PURGE_LOCK = "chat:purge-lock"
_PURGE_STEP = 200

_Row = tuple[int, float, str, "str | list[str]", str]
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(tuple[int, float, str, str | list[str], str]).decode


class RedisMessageStore:
    """What `history.HistoryService` needs of a store, in Redis (thread-safe client)."""

    errors: tuple[type[Exception], ...] = (redis.RedisError, MessageStoreError)

    def __init__(self, link: Link, box: Box, retention: float = 0.0) -> None:
        self._link = link
        self._box = box
        self.retention = retention

    # ---- the parts of MessageStore that mean a file ------------------------------
    def reader(self) -> RedisMessageStore:
        return self  # the client is thread-safe: one object serves the readers too

    def close(self) -> None:
        """The link is closed with the node."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield  # each put is one pipeline: atomic enough, and durable once answered

    def id_floor(self) -> int:
        raise MessageStoreError("a cluster takes its ids from Redis (RedisIds)")

    def reserve_ids(self, ceiling: int) -> None:
        raise MessageStoreError("a cluster takes its ids from Redis (RedisIds)")

    # ---- keys ------------------------------------------------------------------------
    def conversation(self, a: str, b: str) -> str:
        lo, hi = sorted((a, b))
        return "chat:h:" + self._box.blind("pair", lo, hi)

    def broadcast(self) -> str:
        return "chat:h:" + self._box.blind("all")

    def owner(self, name: str) -> str:
        return "chat:q:" + self._box.blind("queue", name)

    # ---- sealed members -----------------------------------------------------------------
    def _seal(self, key: str, msg: Msg) -> bytes:
        row: _Row = (
            msg.id,
            msg.ts,
            msg.sender,
            msg.to if msg.to == BROADCAST else list(msg.to),
            msg.text,
        )
        return self._box.seal(f"{key}:{msg.id}".encode(), _encode(row))

    def _open(self, key: str, member: bytes, score: float) -> Msg | None:
        msg_id = int(score)
        plain = self._box.open(f"{key}:{msg_id}".encode(), bytes(member))
        if plain is None:
            log.error("cluster history: message %d in %s is damaged: left out", msg_id, key)
            return None
        try:
            i, ts, sender, to, text = _decode(plain)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("cluster history: message %d in %s does not decode: left out", msg_id, key)
            return None
        if i != msg_id:
            return None
        return Msg(i, sender, BROADCAST if to == BROADCAST else tuple(to), text, ts)

    # ---- writing -------------------------------------------------------------------------
    def put(self, kept: Sequence[Kept]) -> dict[str, str]:
        """Every message into its conversations and offline queues: one pipeline."""
        pipe = self._link.client.pipeline(transaction=False)
        grown: dict[str, str] = {}
        everyone = self.broadcast()
        for k in kept:
            for msg in k.msgs:
                if msg.to == BROADCAST:
                    pipe.zadd(everyone, {self._seal(everyone, msg): msg.id})
                    continue
                for name in k.named:
                    conv = self.conversation(msg.sender, name)
                    pipe.zadd(conv, {self._seal(conv, msg): msg.id})
                for name in k.queued:
                    queue = self.owner(name)
                    pipe.zadd(queue, {self._seal(queue, msg): msg.id})
                    grown[queue] = name
        self._execute(pipe)
        return grown

    def ack(self, owner: str, upto: int) -> int:
        return int(self._run(lambda c: c.zremrangebyscore(owner, "-inf", upto)))

    def trim_queue(self, owner: str, keep: int) -> int:
        return int(self._run(lambda c: c.zremrangebyrank(owner, 0, -(keep + 1))))

    def purge_before(self, cutoff: float) -> int:
        """Retention, by one node at a time (a lock key): the oldest members of every
        conversation and queue whose time is past `cutoff`, walking from the oldest."""
        client = self._link.client
        if not self._run(lambda c: c.set(_PURGE_LOCK, b"1", nx=True, ex=600)):
            return 0
        removed = 0
        try:
            for pattern in ("chat:h:*", "chat:q:*"):
                for key in client.scan_iter(match=pattern, count=500):
                    removed += self._purge_key(key.decode(), cutoff)
        finally:
            with contextlib.suppress(redis.RedisError):
                client.delete(_PURGE_LOCK)
        return removed

    def _purge_key(self, key: str, cutoff: float) -> int:
        client, removed = self._link.client, 0
        while True:
            rows = client.zrange(key, 0, _PURGE_STEP - 1, withscores=True)
            last = None
            for member, score in rows:
                msg = self._open(key, member, score)
                if msg is not None and msg.ts >= cutoff:
                    break
                last = score
            if last is None:
                return removed
            removed += int(client.zremrangebyscore(key, "-inf", last))
            if len(rows) < _PURGE_STEP:
                return removed

    # ---- reading -------------------------------------------------------------------------
    def page(self, user: str, peer: str, before: int | None, limit: int) -> Page:
        key = self.broadcast() if peer == BROADCAST else self.conversation(user, peer)
        top = "+inf" if before is None else f"({before}"
        rows = self._run(
            lambda c: c.zrevrangebyscore(key, top, "-inf", start=0, num=limit + 1, withscores=True)
        )
        oldest = self._oldest()
        messages = []
        for member, score in reversed(rows[:limit]):
            msg = self._open(key, member, score)
            if msg is not None and msg.ts >= oldest and visible(msg, user, peer):
                messages.append(msg)
        return Page(tuple(messages), len(rows) > limit)

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
            msg = self._open(key, member, score)
            if msg is not None and messages and size + len(msg.text) > max_bytes:
                return Page(tuple(messages), True, last)
            last = int(score)
            if msg is None or msg.ts < oldest:
                continue
            if msg.to != BROADCAST and user in msg.to:
                size += len(msg.text)
                messages.append(Msg(msg.id, msg.sender, msg.to, msg.text, msg.ts, offline=True))
        return Page(tuple(messages), len(rows) > limit, last)

    def _oldest(self) -> float:
        return time.time() - self.retention if self.retention > 0 else float("-inf")

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
    counter is persisted with the rest). The next block is fetched, off the chat path,
    when half of this one is gone; only if it has not come by the end does `take` wait."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._cond = threading.Condition(threading.Lock())
        self._blocks: list[tuple[int, int]] = []  # [start, end) ranges fetched, in order
        self._fetching = False
        self._next, self._end = self._fetch()

    def _fetch(self) -> tuple[int, int]:
        end = int(self._link.client.incrby(IDS, ID_BLOCK)) + 1
        return end - ID_BLOCK, end

    def peek(self) -> int:
        with self._cond:
            return self._next

    def take(self, count: int) -> int:
        with self._cond:
            while True:
                if self._end - self._next >= count:
                    start = self._next
                    self._next += count
                    if self._end - self._next < ID_BLOCK // 2 and not self._blocks:
                        self._prefetch()
                    return start
                if self._blocks:
                    self._next, self._end = self._blocks.pop(0)
                    continue
                self._prefetch()
                self._cond.wait(1.0)

    def _prefetch(self) -> None:
        """Fetch the next block on a thread of its own (lock held by the caller)."""
        if self._fetching:
            return
        self._fetching = True

        def fetch() -> None:
            while True:
                try:
                    block = self._fetch()
                except redis.RedisError as exc:
                    self._link.failed(exc)
                    time.sleep(0.5)
                    continue
                self._link.works()
                break
            with self._cond:
                self._blocks.append(block)
                self._fetching = False
                self._cond.notify_all()

        threading.Thread(target=fetch, name="cluster-ids", daemon=True).start()
