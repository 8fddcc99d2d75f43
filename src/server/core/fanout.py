"""The send path: a group of sends, routed once, fanned out in C, answered by `sent`.

Consecutive sends of one connection to the same recipients are a *group*:
one id block, one route, one native fan-out of all their frames, and a `sent`
each (with its own id). What the `sent` frames say is decided by the route
(`core.route`): here it is only carried out.

1. Outside any lock: the rate limit, the ids (never waiting), the messages,
   and which named recipients have an account.
2. `Hub.route`: a snapshot of who is where, the plan, and the messages handed
   to the store's queue, under the hub lock.
3. Outside the lock: one `cd_fanout` to every local slot, which says who it
   missed; the other nodes' copies published once the store has them.
4. The answer: at once, or when the store's receipt and the other nodes have
   answered (the mailbox holds meanwhile, so replies keep their order), and in
   a cluster within `deadline` whatever Redis does (issue "1 of 6", item 6):
   what has not answered by then counts as not done.

It is also the `Deliverer` of the broker: messages from other nodes fanned
out to this node's sessions, and what v1.2 relays between nodes (echoes,
markers, typing); and, through `Replica`, the `RoomFeed` of a cluster's rooms'
broker (cluster/rooms.py). In a cluster a message to a room goes into the
rooms' one order in Redis (`RoomBroker.post`) and its `sent` waits until it
comes back with every node's verdict, within the deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future

from chat.server.accounts.seam import Accounts
from chat.server.accounts.users_file import StoreError
from chat.server.core import native, route
from chat.server.core.broker import Broker, RoomBroker
from chat.server.core.deadlines import Deadlines
from chat.server.core.desk import Relay
from chat.server.core.hub import Hub
from chat.server.core.lookups import Lookups
from chat.server.core.presence import NoPresence, Presence
from chat.server.core.results import Answered, Confirmed, RoomPosted
from chat.server.core.rooms import Event, Room, RoomBook
from chat.server.core.route import NOBODY, Plan, Targets, Verdict
from chat.server.core.ticks import Ticks
from chat.server.core.user import User
from chat.server.store.seam import Store
from chat.server.store.sqlite import Kept
from chat.shared.connection import ServerConnection
from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError, Trouble
from chat.shared.messages import BROADCAST, Msg, Send, encode_delivery, encode_msgs

log = logging.getLogger("chat.server")

#: Why a send is refused while the store cannot give ids (the `rate_limited` text).
NO_IDS = "message ids are not available now: try again"
_NOBODY: frozenset[str] = frozenset()


class Pending:
    """A group of sends whose `sent` waits for results: the store's receipt, each other
    node's answer, and (in a cluster) a deadline. The mailbox resumes once, with what
    came: results after that are ignored (their callers are other threads)."""

    __slots__ = (
        "_done",
        "_left",
        "_lock",
        "_reached",
        "_receipt_due",
        "_stored",
        "_user",
        "missed",
        "msgs",
        "passed",
        "plan",
        "registered",
        "sends",
        "started",
        "verdict",
    )

    def __init__(
        self,
        user: User,
        sends: tuple[Send, ...],
        passed: tuple[bool, ...],
        plan: Plan,
        msgs: tuple[Msg, ...],
        registered: frozenset[str],
        missed: frozenset[str],
    ) -> None:
        self._user = user
        self.sends = sends
        self.passed = passed
        self.plan = plan
        self.msgs = msgs
        self.registered = registered
        self.missed = missed
        #: Set once the first results are settled and more copies must be stored.
        self.verdict: Verdict | None = None
        self.started = time.monotonic()  # the deadline counts from the route
        self._lock = threading.Lock()
        self._left = 1  # `ready` has not been called yet
        self._stored = True
        self._receipt_due = False
        self._reached: set[str] = set()
        self._done = False

    def expect_store(self, receipt: Future) -> None:
        with self._lock:
            self._left += 1
            self._receipt_due = True
        receipt.add_done_callback(self._receipt)

    def expect_node(self, node: str) -> Callable[[bool], None]:
        """The `then` of one node's publish."""
        with self._lock:
            self._left += 1

        def then(taken: bool) -> None:
            with self._lock:
                if taken:
                    self._reached.add(node)
            self._one_done()

        return then

    def ready(self) -> None:
        """Everything awaited is asked for."""
        self._one_done()

    def settled(self) -> bool:
        """Answered (read without the lock by the deadlines thread: a stale False only
        means `expire` is called, which then does nothing)."""
        return self._done

    def expire(self) -> None:
        """The deadline: answer with what came."""
        self._finish()

    def _receipt(self, receipt: Future) -> None:
        ok = not receipt.cancelled() and receipt.exception() is None and bool(receipt.result())
        with self._lock:
            self._stored = self._stored and ok
            self._receipt_due = False
        self._one_done()

    def _one_done(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left:
                return
        self._finish()

    def _finish(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            # A receipt that did not come in time: the copies are not known to be durable.
            result = Answered(self._stored and not self._receipt_due, frozenset(self._reached))
        self._user.mailbox.resume(result)


class RoomPending:
    """A group of sends to a room in a cluster, waiting for its verdict from the rooms'
    one order (or the deadline): the mailbox resumes once."""

    __slots__ = ("_done", "_lock", "_user", "msgs", "passed", "room", "sends")

    def __init__(
        self,
        user: User,
        sends: tuple[Send, ...],
        passed: tuple[bool, ...],
        msgs: tuple[Msg, ...],
        room: str,
    ) -> None:
        self._user = user
        self.sends = sends
        self.passed = passed
        self.msgs = msgs
        self.room = room
        self._lock = threading.Lock()
        self._done = False

    def verdict(self, verdict: Code | bool | None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._user.mailbox.resume(RoomPosted(verdict))

    def expire(self) -> None:
        self.verdict(False)

    def settled(self) -> bool:
        return self._done


class _Lookup:
    """A group held for `Accounts.confirm`: the mailbox resumes once, with the names found,
    or with none when the deadline comes first."""

    __slots__ = ("_done", "_lock", "_mailbox", "group", "passed")

    def __init__(self, user: User, group: tuple[Send, ...], passed: tuple[bool, ...]) -> None:
        self._mailbox = user.mailbox
        self.group = group
        self.passed = passed
        self._lock = threading.Lock()
        self._done = False

    def answer(self, found: frozenset[str]) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._mailbox.resume(Confirmed(self.group, self.passed, found))

    def settled(self) -> bool:
        return self._done

    def expire(self) -> None:
        self.answer(_NOBODY)


class Replica:
    """The core as the rooms' broker sees it (`RoomFeed`): the hub's replica of the rooms,
    each call with the calling thread's tick, and the store for this node's messages."""

    __slots__ = ("_hub", "_store", "_ticks")

    def __init__(self, hub: Hub, store: Store, ticks: Ticks) -> None:
        self._hub = hub
        self._store = store
        self._ticks = ticks

    def scratch(self, key: str, room: Room | None, users: Iterable[str]) -> RoomBook:
        return self._hub.room_scratch(key, room, users)

    def reset(self, rooms: list[Room], versions: dict[str, int]) -> None:
        self._hub.rooms_reset(rooms, versions)

    def replace(self, key: str, room: Room | None, version: int) -> None:
        self._hub.room_replace(key, room, version)

    def version(self, key: str) -> int:
        return self._hub.room_version(key)

    def changed(self, key: str, version: int, events: Sequence[Event]) -> bool:
        return self._hub.room_changed(key, version, events, self._ticks.current())

    def posted(self, sender: str, room: str, last: int, frames: bytes, skip: int) -> Code | None:
        return self._hub.room_posted(sender, room, last, frames, skip, self._ticks.current())

    def kept(self, msgs: tuple[Msg, ...]) -> None:
        self._store.keep(Kept(msgs, (), ()))  # the room's conversation; no queue

    def settled(self) -> None:
        self._ticks.flush()


class Fanout:
    def __init__(
        self,
        hub: Hub,
        store: Store,
        accounts: Accounts,
        presence: Presence,
        broker: Broker,
        table: native.OutTable,
        ticks: Ticks,
        deadlines: Deadlines,
        deadline: float | None = None,
        rooms: RoomBroker | None = None,
        lookups: Lookups | None = None,
    ) -> None:
        """`deadline`: seconds a `sent` may wait for other nodes and the store (a cluster,
        where they are behind Redis); None: the store's answer is awaited (a local disk).
        `rooms`: a cluster's rooms' broker (None: the hub decides, alone). `lookups`: where
        a cluster asks Redis about recipients this node has not heard of (None: the
        accounts' memory is the whole truth, alone)."""
        self._cluster = not isinstance(presence, NoPresence)
        self._rooms = rooms
        self.replica = Replica(hub, store, ticks)
        self._hub = hub
        self._store = store
        self._accounts = accounts
        self._presence = presence
        self._broker = broker
        self._table = table
        self._ticks = ticks
        self._deadlines = deadlines
        self._deadline = deadline
        self._lookups = lookups
        #: Read by the metrics at scrape time (ops/metrics.py): messages by kind, copies by
        #: where they went. Plain ints: the workers take turns (core/pool.py); `from_nodes`
        #: (frames of other nodes' messages handed to sessions here) is the broker thread's.
        self.counts = {"direct": 0, "everyone": 0, "room": 0, "local": 0, "queued": 0, "nodes": 0}
        self.from_nodes = 0

    # ---- a group of sends ------------------------------------------------------------------
    def send(
        self, user: User, sends: list[Send], tick: native.Tick, confirmed: Confirmed | None = None
    ) -> bool:
        """Route and fan out; True when the `sent` frames wait (the mailbox holds).
        `confirmed`: the second pass of a group held while the accounts were asked about
        names this node had not heard of (`_confirm`)."""
        group = tuple(sends)
        rate = user.rate
        if confirmed is not None:  # the rate was asked on the first pass
            passed = confirmed.passed
            texts = [s.text for s, ok in zip(group, passed, strict=True) if ok]
        elif rate is None:  # no limit (--rate-limit 0): every send passes
            passed = (True,) * len(group)
            texts = [s.text for s in group]
        else:
            passed = tuple(rate.take() for _ in group)
            texts = [s.text for s, ok in zip(group, passed, strict=True) if ok]
        to, name = group[0].to, user.conn.user or ""
        registered = _NOBODY
        if type(to) is str:
            if to != BROADCAST:  # a room (v1.2 section 2)
                return self._to_room(user, group, passed, texts, to, tick)
        elif self._store.keeps:
            accounts = self._accounts
            if confirmed is not None:
                found = confirmed.names
                registered = frozenset(n for n in to if n in found or n in accounts)
            else:
                registered = frozenset(n for n in to if n in accounts)
                if (
                    self._lookups is not None
                    and texts
                    and len(registered) < len(to)
                    and self._confirm(user, group, passed, to, registered)
                ):
                    return True
        plan = msgs = receipt = None
        echo = NOBODY
        if texts:
            plan, msgs, receipt, echo = self._hub.route(user, to, texts, registered, time.time())
        if plan is None or msgs is None:  # over the rate, or no ids now
            user.out.append(_refusals(user.conn, group, NO_IDS if texts else None), tick)
            return False
        n, counts = len(msgs), self.counts
        counts["everyone" if to == BROADCAST else "direct"] += n
        if plan.queued:
            counts["queued"] += n * len(plan.queued)
        if plan.nodes:
            counts["nodes"] += n * len(plan.nodes)
        if len(texts) == len(group) and not plan.nodes and receipt is None:  # the common case
            blob, sents = encode_delivery(
                msgs, [s.id for s in group], plan.delivered_json, plan.missing, plan.queued
            )
            missed = self._fan(plan.targets, blob, tick, n) if plan.targets.count else _NOBODY
            if echo.count:  # the sender's other sessions (v1.2 section 4)
                self._table.fanout(tick, blob, echo.handles, echo.count, 0)
            if self._cluster:
                self._echo_elsewhere(name, msgs)
            if not missed:
                user.out.append(sents, tick)
                return False
        else:
            blob = encode_msgs(msgs)
            missed = self._fan(plan.targets, blob, tick, n) if plan.targets.count else _NOBODY
            if echo.count:
                self._table.fanout(tick, blob, echo.handles, echo.count, 0)
            if self._cluster:
                self._echo_elsewhere(name, msgs)
            if not plan.nodes and receipt is None and not missed:
                verdict = Verdict(plan.delivered_json, plan.missing, plan.queued)
                user.out.append(_sents(user.conn, group, passed, verdict, msgs), tick)
                return False
        pending = user.pending = Pending(user, group, passed, plan, msgs, registered, missed)
        if receipt is not None:
            pending.expect_store(receipt)
        if plan.nodes:
            name = user.conn.user or ""
            thens = [(node, names, pending.expect_node(node)) for node, names in plan.nodes]
            if receipt is None:
                self._publish(name, thens, msgs)
            else:  # once stored: a recipient there who asks for the history finds it
                receipt.add_done_callback(lambda _r: self._publish(name, thens, msgs))
        if self._deadline is not None and (plan.nodes or receipt is not None):
            self._deadlines.after(self._deadline, pending.expire, pending.settled)
        pending.ready()
        return True

    def _confirm(
        self,
        user: User,
        group: tuple[Send, ...],
        passed: tuple[bool, ...],
        to: Sequence[str],
        registered: frozenset[str],
    ) -> bool:
        """Hold the group while Redis is asked about the names this node has not heard of:
        an account registered a moment ago on another node, whose news (the accounts
        channel) is still on its way, is queued for, not answered `missing`. False when
        the lookups are full: the group is routed at once on what this node knows."""
        unknown = tuple(dict.fromkeys(n for n in to if n not in registered))
        if not unknown:  # a name given twice
            return False
        lookup = _Lookup(user, group, passed)
        accounts = self._accounts

        def job() -> None:
            try:
                found = accounts.confirm(unknown)
            except StoreError as exc:  # Redis away (the link said so once): as memory says
                log.debug("looking up %d recipients failed: %s", len(unknown), exc)
                found = _NOBODY
            except Exception:  # a bug: logged; the send is answered as the memory says
                log.exception("looking up %d recipients failed", len(unknown))
                found = _NOBODY
            lookup.answer(found)

        assert self._lookups is not None
        if not self._lookups.submit(job):
            return False
        if self._deadline is not None:  # a stalled Redis: answered as the memory says
            self._deadlines.after(self._deadline, lookup.expire, lookup.settled)
        return True

    def answered(self, user: User, result: Answered, tick: native.Tick) -> bool:
        """The results a group waited for came (or its time ran out): its `sent` frames, or
        one more wait while copies for recipients lost on the way are made durable."""
        pending, user.pending = user.pending, None
        if not isinstance(pending, Pending):
            raise LocalProtocolError("results with no sends awaiting them")
        plan = pending.plan
        if pending.verdict is not None:  # the second wait: copies for the lost ones
            verdict = route.stored_more(pending.verdict, result.stored)
        else:
            reached = result.reached if plan.nodes else None
            unreached = reached is not None and any(n not in reached for n, _ in plan.nodes)
            verdict = route.settle(
                plan,
                stored=result.stored,
                reached=reached,
                missed=pending.missed,
                everyone_elsewhere=self._presence.everyone()
                if unreached and plan.to == BROADCAST
                else None,
                registered=pending.registered,
            )
            left = self._time_left(pending)
            if verdict.store_more and self._store.keeps and result.stored and left > 0:
                # Copies for the recipients lost on the way, within what is left of the
                # deadline: a store that did not answer the first time is not asked again.
                receipt = self._store.keep(Kept(pending.msgs, (), verdict.store_more), True)
                if receipt is not None:
                    again = user.pending = Pending(
                        user,
                        pending.sends,
                        pending.passed,
                        plan,
                        pending.msgs,
                        frozenset(),
                        pending.missed,
                    )
                    again.verdict = verdict
                    again.started = pending.started
                    again.expect_store(receipt)
                    if self._deadline is not None:
                        self._deadlines.after(left, again.expire, again.settled)
                    again.ready()
                    return False
            if verdict.store_more:
                verdict = route.stored_more(verdict, False)
        user.out.append(
            _sents(user.conn, pending.sends, pending.passed, verdict, pending.msgs), tick
        )
        return True

    def _to_room(
        self,
        user: User,
        group: tuple[Send, ...],
        passed: tuple[bool, ...],
        texts: list[str],
        room: str,
        tick: native.Tick,
    ) -> bool:
        """Sends to a room: routed, stored and fanned out by the hub's desk, in one order
        with the room's events; `sent` {id, msg_id, room} (no name lists)."""
        if self._rooms is not None:
            return self._to_room_in_cluster(user, group, passed, texts, room, tick)
        conn = user.conn
        msgs = None
        if texts:
            try:
                msgs = self._hub.room_send(user, room, texts, time.time(), tick, group[0].id)
            except RemoteProtocolError as err:  # not a member, no such room: every send
                refused = b"".join(
                    conn.error(RemoteProtocolError(err.code, err.message, s.id)) for s in group
                )
                user.out.append(refused, tick)
                return False
        if msgs is None:
            user.out.append(_refusals(conn, group, NO_IDS if texts else None), tick)
            return False
        self.counts["room"] += len(msgs)
        if len(msgs) == len(group):  # the common case: every send passed, one call
            user.out.append(conn.room_sent([s.id for s in group], [m.id for m in msgs], room), tick)
            return False
        ids = iter(m.id for m in msgs)
        user.out.append(
            b"".join(
                conn.room_sent((s.id,), (next(ids),), room)
                if ok
                else conn.error(RemoteProtocolError(Code.RATE_LIMITED, msg_id=s.id))
                for s, ok in zip(group, passed, strict=True)
            ),
            tick,
        )
        return False

    def _to_room_in_cluster(
        self,
        user: User,
        group: tuple[Send, ...],
        passed: tuple[bool, ...],
        texts: list[str],
        room: str,
        tick: native.Tick,
    ) -> bool:
        """Sends to a room in a cluster: checked here (the replica), given ids, and posted
        into the rooms' one order; every node (this one too) fans them out when they come
        back, and the `sent` frames wait for that verdict (True: the mailbox holds)."""
        assert self._rooms is not None
        conn = user.conn
        if not texts:  # every one over the rate
            user.out.append(_refusals(conn, group, None), tick)
            return False
        try:
            self._hub.check_member(user, room, group[0].id)
        except RemoteProtocolError as err:  # not a member, no such room: every send
            refused = b"".join(
                conn.error(RemoteProtocolError(err.code, err.message, s.id)) for s in group
            )
            user.out.append(refused, tick)
            return False
        first = self._store.ids.take(len(texts))
        if first is None:
            user.out.append(_refusals(conn, group, NO_IDS), tick)
            return False
        now, name = time.time(), user.name
        msgs = tuple(Msg(first + i, name, room, text, now) for i, text in enumerate(texts))
        pending = user.pending = RoomPending(user, group, passed, msgs, room)
        self._rooms.post(name, room, msgs, encode_msgs(msgs), user.out.handle, pending.verdict)
        self._deadlines.after(self._deadline or 0.0, pending.expire, pending.settled)
        return True

    def room_answered(self, user: User, result: RoomPosted, tick: native.Tick) -> bool:
        """The verdict on a group of room messages came (or its time ran out): `sent`
        {id, msg_id, room} each, or the refusal (`not_member` when the sender had just
        left), or `rate_limited` when no verdict came in time."""
        pending, user.pending = user.pending, None
        if not isinstance(pending, RoomPending):
            raise LocalProtocolError("a room's verdict with no sends awaiting it")
        conn, verdict = user.conn, result.verdict
        ids = iter(m.id for m in pending.msgs)
        frames = []
        for s, ok in zip(pending.sends, pending.passed, strict=True):
            if not ok:
                frames.append(conn.error(RemoteProtocolError(Code.RATE_LIMITED, msg_id=s.id)))
            elif verdict is None:
                frames.append(conn.room_sent((s.id,), (next(ids),), pending.room))
            elif verdict is False or verdict is True:
                error = RemoteProtocolError(Code.RATE_LIMITED, Trouble.CLUSTER, s.id)
                frames.append(conn.error(error))
            else:
                frames.append(conn.error(RemoteProtocolError(verdict, msg_id=s.id)))  # type: ignore[arg-type]
        user.out.append(b"".join(frames), tick)
        return True

    # ---- what v1.2 relays to other nodes (echo, markers, typing) -----------------------------
    def _echo_elsewhere(self, sender: str, msgs: tuple[Msg, ...]) -> None:
        """The sender's own message for its sessions on other nodes (v1.2 section 4): the
        messages cross, and that node rebuilds the frames local sessions got here."""
        for node in self._presence.nodes_of(sender):
            try:
                self._broker.echo(node, sender, msgs)
            except Exception:  # an echo is never worth a sender's `sent`
                log.exception("echoing to node %s failed", node)

    def relay_read(self, user: str, peer: str, upto: int) -> None:
        """A marker moved: the user's other nodes tell its `read` sessions there."""
        for node in self._presence.nodes_of(user):
            try:
                self._broker.read(node, user, peer, upto)
            except Exception:
                log.exception("telling node %s of a read marker failed", node)

    def relay_typing(self, sender: str, relay: Relay) -> None:
        for node in relay.nodes:
            try:
                self._broker.typing(node, sender, relay.names, relay.room, relay.frame)
            except Exception:
                log.exception("relaying typing to node %s failed", node)

    def _time_left(self, pending: Pending) -> float:
        """Seconds left of the deadline of `pending` (no deadline: as long as it takes)."""
        if self._deadline is None:
            return float("inf")
        return self._deadline - (time.monotonic() - pending.started)

    # ---- messages from other nodes (Deliverer: the broker's thread) ----------------------------
    def deliver(self, sender: str, names: Sequence[str] | None, frames: bytes) -> None:
        targets = self._hub.local_targets(sender, None if names is None else list(names))
        if targets.count:
            tick = self._ticks.current()
            took = self._table.fanout(tick, frames, targets.handles, targets.count, targets.exclude)
            self.from_nodes += took

    def delivered(self) -> None:
        self._ticks.flush()

    def echo(self, sender: str, frames: bytes) -> None:
        targets = self._hub.echo_targets(sender)
        if targets.count:
            self._table.fanout(self._ticks.current(), frames, targets.handles, targets.count, 0)

    def read(self, user: str, peer: str, upto: int) -> None:
        self._hub.read_elsewhere(user, peer, upto, self._ticks.current())

    def typing(self, sender: str, names: Sequence[str], room: str | None, frame: bytes) -> None:
        self._hub.typing_elsewhere(sender, names, room, frame, self._ticks.current())

    # ---- parts -------------------------------------------------------------------------------
    def _fan(self, targets: Targets, blob: bytes, tick: native.Tick, n: int) -> frozenset[str]:
        """One native call, without the GIL: the same bytes (`n` messages) to every slot; the
        users none of whose slots took them (an overflow is also reported by the flush at the
        tick's end)."""
        failed = tick.failed
        count = targets.count
        took = self._table.fanout(tick, blob, targets.handles, count, targets.exclude, failed)
        self.counts["local"] += took * n
        if took == targets.reach:  # every slot but the sender's own took it
            return _NOBODY
        marks = native.ffi.buffer(failed, count)[:]
        if 1 not in marks:
            return _NOBODY  # the ones not counted were the sender's, excluded
        users = targets.users
        missed = {users[i] for i, mark in enumerate(marks) if mark}
        return frozenset(missed.difference(users[i] for i, mark in enumerate(marks) if not mark))

    def _publish(
        self,
        sender: str,
        thens: list[tuple[str, tuple[str, ...] | None, Callable[[bool], None]]],
        msgs: tuple[Msg, ...],
    ) -> None:
        """`msgs` for each other node's recipients: the node rebuilds the frames fanned out
        here (`encode_msgs`, the same bytes) from what crosses (cluster/crossing.py)."""
        for node, names, then in thens:
            try:
                self._broker.publish(node, sender, names, msgs, then)
            except Exception:  # the answer must come whatever the broker does
                log.exception("publishing to node %s failed", node)
                then(False)


def _sents(
    conn: ServerConnection,
    sends: tuple[Send, ...],
    passed: tuple[bool, ...],
    verdict: Verdict,
    msgs: tuple[Msg, ...],
) -> bytes:
    """`sent` for every send that passed the rate limit (with its message's id), and
    `rate_limited` for the others."""
    delivered, missing, queued = verdict.delivered_json, verdict.missing, verdict.queued
    msg_ids = [m.id for m in msgs]
    if all(passed):  # the common case: one encoding of the lists for all
        return conn.sent((s.id for s in sends), delivered, missing, queued, msg_ids)
    ids = iter(msg_ids)
    return b"".join(
        conn.sent((s.id,), delivered, missing, queued, (next(ids),))
        if ok
        else conn.error(RemoteProtocolError(Code.RATE_LIMITED, msg_id=s.id))
        for s, ok in zip(sends, passed, strict=True)
    )


def _refusals(conn: ServerConnection, sends: tuple[Send, ...], why: str | None) -> bytes:
    """Every send of the group refused with `rate_limited` (over the rate, or no ids)."""
    return b"".join(
        conn.error(RemoteProtocolError(Code.RATE_LIMITED, why, msg_id=s.id)) for s in sends
    )
