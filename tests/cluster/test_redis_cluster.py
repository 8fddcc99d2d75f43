"""What only a Redis Cluster does to the cluster: slots that move under traffic, a lost shard.

Issue "6 of 6": a reshard (the slots of every key and channel in use moved to
other masters, key by key, as `redis-cli --cluster reshard` does) while users
on two nodes talk, privately and in a room, loses no acknowledged message,
duplicates none and keeps each conversation's and the room's order; a master
killed is reported as an outage of its keys (v1.1: `missing`, or `queued` where
the queue still answers), no thread dies, and the node serves again once the
master is back. A private Redis Cluster of three masters each (the test moves
its slots and kills its processes). With a replica per master (six
redis-servers), a master killed fails over to its replica: the nodes follow it,
and a failover that lost the newest writes loses no message said delivered
after it.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from chat.server.cluster import bus, keys
from chat.server.cluster.broker import INBOX_KEEPS
from chat.server.cluster.link import Link
from conftest import ServerProc
from e2e.server_support import register

from .conftest import RedisClusterProc, free_cluster_port, need_redis
from .test_cluster import wait_until
from .v12 import Session, ok

Start = Callable[..., ServerProc]
only_cluster = pytest.mark.parametrize("redis_kind", ["redis-cluster"])


def node_ids(rc: RedisClusterProc) -> list[str]:
    return sorted(m.decode() for m in rc.client().zrange(keys.NODES, 0, -1))


def busy_slots(rc: RedisClusterProc, channels: list[str]) -> list[int]:
    """The slots of every key the cluster holds now, and of `channels`."""
    found = {key_slot(c.encode()) for c in channels}
    for c in rc.node_clients():
        found |= {key_slot(k) for k in c.scan_iter(count=1000)}
    return sorted(found)


def node_with_users(rc: RedisClusterProc, count: int) -> str:
    """The id of the node with `count` users in CHAT (each test puts a different number on
    each node)."""
    found = [n for n in node_ids(rc) if rc.client().hlen(keys.node_users(n)) == count]
    assert len(found) == 1, found
    return found[0]


@only_cluster
def test_a_reshard_during_traffic_loses_nothing_duplicates_nothing_and_keeps_order(
    start_redis: Callable[..., Any], start_node: Start
) -> None:
    rc: RedisClusterProc = start_redis()
    a, b = start_node(rc.url), start_node(rc.url)
    alice = Session(a, "alice", register=True)
    bob = Session(b, "bob", register=True)
    carol = Session(b, "carol", register=True)
    ok(alice.ask({"type": "room_create", "id": "c", "room": "#moving"}))
    ok(carol.ask({"type": "join", "id": "j", "room": "#moving"}))
    ok(bob.ask({"type": "join", "id": "j", "room": "#moving"}))
    assert wait_until(lambda: len(node_ids(rc)) == 2)
    assert bob.ask({"type": "send", "id": "w", "to": ["bob"], "text": "warm"})["type"] == "sent"

    answers: dict[str, dict[str, Any]] = {}
    moving = threading.Event()
    moving.set()
    failures: list[BaseException] = []

    def talk() -> None:
        try:
            i = 0
            while moving.is_set() or i < 200:
                for kind, to in (("p", ["bob"]), ("r", "#moving")):
                    sid = f"{kind}{i}"
                    answers[sid] = alice.ask(
                        {"type": "send", "id": sid, "to": to, "text": sid}, timeout=10
                    )
                i += 1
        except BaseException as exc:  # the main thread reports it
            failures.append(exc)

    talker = threading.Thread(target=talk)
    talker.start()
    try:
        time.sleep(0.3)  # traffic first
        # Every slot in use moves to the next master, key by key, while alice talks: the
        # nodes' inboxes, the room's shard, alice's and bob's keys, the global keys.
        used = busy_slots(rc, [keys.node_inbox(n) for n in node_ids(rc)])
        before = {slot: rc.slot_owner(slot) for slot in used}
        for n, slot in enumerate(used):
            owner = before[slot]
            target = rc.ports[(rc.ports.index(owner) + 1 + n % 2) % len(rc.ports)]
            rc.move_slot(slot, target, pause=0.02)
        rc.wait_ok()
        assert all(rc.slot_owner(slot) != before[slot] for slot in used)
    finally:
        time.sleep(0.3)  # traffic after the moves too
        moving.clear()
        talker.join(120)
    assert not failures, failures
    assert not talker.is_alive()

    sent = {sid: f for sid, f in answers.items() if f["type"] == "sent"}
    private = [sid for sid in sent if sid.startswith("p")]
    delivered = [sid for sid in private if "bob" in sent[sid]["delivered"]]
    queued = [sid for sid in private if "bob" in sent[sid]["queued"]]
    room = [sid for sid in sent if sid.startswith("r")]
    assert len(delivered) + len(queued) == len(private), (
        "a private message neither delivered nor queued"
    )
    assert len(private) >= 200 and len(room) >= 150, (len(private), len(room))

    def texts(s: Session, room_msgs: bool) -> list[str]:
        return [
            m["text"] for m in s.inbox if m["type"] == "msg" and (m["to"] == "#moving") == room_msgs
        ]

    # Bob: every private message acknowledged as delivered, once each, in the order sent.
    assert wait_until(
        lambda: (bob.pump(0.2), set(delivered) <= set(texts(bob, False)))[1], timeout=20
    ), sorted(set(delivered) - set(texts(bob, False)))
    got = [t for t in texts(bob, False) if t.startswith("p")]
    assert len(got) == len(set(got)), "a message came twice"
    assert got == sorted(got, key=lambda t: int(t[1:])), "out of order"
    assert not set(got) & set(queued), "a message said queued came live as well"
    # Carol and bob (the room, on node b): every room message acknowledged, once, in order.
    for member in (carol, bob):
        assert wait_until(
            lambda m=member: (m.pump(0.2), set(room) <= set(texts(m, True)))[1], timeout=20
        ), (member.name, sorted(set(room) - set(texts(member, True))))
        seen = texts(member, True)
        assert len(seen) == len(set(seen)), "a room message came twice"
        assert seen == sorted(seen, key=lambda t: int(t[1:])), "room order broken"
    assert a.proc.poll() is None and b.proc.poll() is None
    for node in (a, b):
        assert "Traceback" not in node.log(), node.log()[-3000:]


def crosses_again(sender: Session, receiver: Session, prefix: str) -> None:
    """Messages from `sender` to `receiver` (on another node) are delivered again: sent until
    one is (each node's view of the masters comes back on its own clock, and meanwhile an
    honest `missing`), and that one arrives."""
    tries: list[str] = []

    def delivered() -> bool:
        tries.append(f"{prefix}{len(tries)}")
        asked = {"type": "send", "id": tries[-1], "to": [receiver.name], "text": tries[-1]}
        return receiver.name in sender.ask(asked)["delivered"]

    assert wait_until(delivered, timeout=30)
    receiver.expect("msg", text=tries[-1], timeout=10)


def every_one_delivered_once(sender: Session, receiver: Session, prefix: str) -> None:
    """Ten messages: each `delivered` (none `queued` while the receiver reads live), and
    received once each, in order."""
    texts = [f"{prefix}{n}" for n in range(10)]
    for text in texts:
        sent = sender.ask({"type": "send", "id": text, "to": [receiver.name], "text": text})
        assert sent["delivered"] == [receiver.name] and sent["queued"] == [], sent
    receiver.pump(1.0)
    got = [m["text"] for m in receiver.inbox if m["type"] == "msg" and m["text"] in texts]
    assert got == texts, got


@only_cluster
def test_a_lost_shard_is_missing_or_queued_no_thread_dies_and_the_node_recovers(
    start_redis: Callable[..., Any], start_node: Start
) -> None:
    rc: RedisClusterProc = start_redis()
    a, b = start_node(rc.url), start_node(rc.url)
    register(b, "bob")
    alice = Session(a, "alice", register=True)
    carol = Session(a, "carol", register=True)
    bob = Session(b, "bob")
    assert wait_until(lambda: len(node_ids(rc)) == 2)
    assert wait_until(
        lambda: (
            "bob" in alice.ask({"type": "send", "id": "w", "to": ["bob"], "text": "w"})["delivered"]
        )
    )
    for n in range(30):  # node b's inbox numbered well past where a restart begins again
        sent = alice.ask({"type": "send", "id": n, "to": ["bob"], "text": f"w{n}"})
        assert "bob" in sent["delivered"], sent
    # The master to lose serves node b's inbox; the global keys (accounts, heartbeats) and
    # node a's inbox are moved off it first: what is lost is b's inbox and whatever else of
    # the users' keys that master holds.
    b_inbox = keys.node_inbox(node_with_users(rc, 1))
    a_inbox = keys.node_inbox(node_with_users(rc, 2))
    victim = rc.owner_port(b_inbox)
    others = [p for p in rc.ports if p != victim]
    for key in (keys.NODES, a_inbox):
        if rc.owner_port(key) == victim:
            rc.move_slot(key_slot(key.encode()), others[0])
    i = rc.ports.index(victim)
    rc.procs[i].send_signal(signal.SIGKILL)
    rc.procs[i].wait(10)
    try:
        for n in range(3):
            started = time.monotonic()
            answer = alice.ask({"type": "send", "id": f"l{n}", "to": ["bob"], "text": f"l{n}"})
            took = time.monotonic() - started
            assert answer["type"] == "sent", answer
            assert took < 1.0, f"answered after {took:.2f}s"
            assert "bob" not in answer["delivered"], answer
            assert "bob" in answer["missing"], answer
        # Local chat goes on, at once.
        answer = carol.ask({"type": "send", "id": "loc", "to": ["alice"], "text": "local"})
        assert answer["delivered"] == ["alice"], answer
        alice.expect("msg", text="local")
    finally:
        rc.restart_node(i)
    # The master is back (empty: no persistence): crossing works again, both ways, and a
    # message said delivered arrives (node b's inbox starts again from number 1). From b
    # too: a master that timed out b's subscription while the restarted one rejoined is
    # away in b's view until b's heartbeat asks again.
    crosses_again(alice, bob, "back")
    crosses_again(bob, alice, "from b ")
    assert a.proc.poll() is None and b.proc.poll() is None
    for node in (a, b):
        text = node.log()
        assert "Traceback" not in text and "died" not in text, text[-3000:]
        assert "went away" in text or node is a


def _replicated(rc: RedisClusterProc) -> bool:
    """Every replica has every byte its master wrote (INFO replication offsets)."""
    for port in rc.masters():
        info = rc.node_client(port).info("replication")
        offset = int(info["master_repl_offset"])
        replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        if not replicas or any(int(r["offset"]) < offset for r in replicas):
            return False
    return True


@contextlib.contextmanager
def _replicas(tmp_path: Path, *extra: str) -> Iterator[RedisClusterProc]:
    """A Redis Cluster of three masters with a replica each (six redis-servers), with a
    shorter node timeout than the other tests' (a failover waits for it)."""
    need_redis()  # as every Redis fixture here: CI installs it
    folder = tmp_path / "rc-replicas"
    folder.mkdir()
    ports = [free_cluster_port() for _ in range(6)]
    rc = RedisClusterProc(folder, ports, ("--cluster-node-timeout", "1500", *extra), replicas=1)
    rc.start()
    try:
        assert wait_until(lambda: len(rc.masters()) == 3, timeout=20)
        yield rc
    finally:
        rc.stop(signal.SIGKILL)


def _two_nodes(
    rc: RedisClusterProc, start_node: Start, *a_args: str
) -> tuple[ServerProc, ServerProc, Session, Session]:
    """Nodes a (alice and carol) and b (bob), a message crossing from a to b."""
    a, b = start_node(rc.url, *a_args), start_node(rc.url)
    register(b, "bob")
    alice = Session(a, "alice", register=True)
    Session(a, "carol", register=True)  # two on a, one on b: `node_with_users` tells them
    bob = Session(b, "bob")
    assert wait_until(lambda: len(node_ids(rc)) == 2)
    assert wait_until(
        lambda: (
            "bob" in alice.ask({"type": "send", "id": "w", "to": ["bob"], "text": "w"})["delivered"]
        )
    )
    bob.expect("msg", text="w")
    return a, b, alice, bob


@pytest.mark.parametrize("lost", ["inbox", "accounts"])
def test_a_master_failing_over_to_its_replica_loses_nothing_replicated_and_crossing_goes_on(
    tmp_path: Path, start_node: Start, lost: str
) -> None:
    """Production clusters run a replica per master: a master's death is then a failover,
    its replica promoted with its slots (docs/cluster.md). The master killed serves node b's
    inbox, or the global keys (accounts, heartbeats); what was replicated before (an offline
    user's queue, b's inbox log, the accounts) is still there after, sends are answered
    within the deadline meanwhile, and once the replica serves, messages cross both ways,
    room requests are decided, a user logs in, and a node's /healthz says it serves (before
    the fix, the nodes waited for the dead master for good)."""
    with _replicas(tmp_path) as rc:
        a, b, alice, bob = _two_nodes(rc, start_node, "--metrics", "127.0.0.1:0")
        register(b, "dave")
        # Dave is offline: his copy waits in his queue (a key of his, on some master).
        queued = alice.ask({"type": "send", "id": "q", "to": ["dave"], "text": "kept for dave"})
        assert queued["queued"] == ["dave"], queued
        assert wait_until(lambda: _replicated(rc), timeout=10)

        key = keys.node_inbox(node_with_users(rc, 1)) if lost == "inbox" else keys.USERS
        victim = rc.owner_port(key)
        assert victim in rc.masters()
        rc.procs[rc.ports.index(victim)].send_signal(signal.SIGKILL)
        rc.procs[rc.ports.index(victim)].wait(10)
        started = time.monotonic()
        while not rc.healthy(without=victim):  # sends meanwhile: answered in time
            sent_at = time.monotonic()
            n = f"f{int((sent_at - started) * 10)}"
            answer = alice.ask({"type": "send", "id": n, "to": ["bob"], "text": n}, timeout=5)
            assert answer["type"] == "sent", answer
            assert time.monotonic() - sent_at < 1.5, answer
            assert time.monotonic() - started < 30, "no failover in 30 s"
            time.sleep(0.2)
        assert victim not in rc.masters()

        # The replica serves: crossing works again, both ways.
        crosses_again(alice, bob, "back")
        crosses_again(bob, alice, "from b ")

        # Room requests are decided in Redis again, on both nodes (each node's view of the
        # masters forgets the one that no longer serves any slot: before, it stayed "away"
        # for good, every room request was refused and the node's health check failed).
        # (Within a heartbeat or two: each node reads the slot map again on its own clock.)
        def done(session: Session, kind: str) -> bool:
            asked = {"type": kind, "id": f"{kind}{time.monotonic()}", "room": "#after"}
            return session.ask(asked)["type"] == "ok"

        assert wait_until(lambda: done(bob, "room_create"), timeout=10)
        assert wait_until(lambda: done(alice, "join"), timeout=10)
        posted = alice.ask({"type": "send", "id": "rm", "to": "#after", "text": "in the room"})
        assert posted["type"] == "sent", posted
        bob.expect("msg", text="in the room")
        # Node a's health, asked as a load balancer would: serving again.
        found = re.search(r"metrics on (http://\S+)/metrics", a.log())
        assert found, a.log()

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{found.group(1)}/healthz", timeout=5) as answer:
                    return bool(answer.status == 200)
            except urllib.error.HTTPError:
                return False

        assert wait_until(healthy, timeout=10)
        # What was replicated before the kill is still there: dave's queued message.
        dave = Session(b, "dave")
        got = dave.expect("msg", text="kept for dave", timeout=10)
        assert got["from"] == "alice" and got.get("offline") is True, got
        for node in (a, b):
            assert node.proc.poll() is None
            text = node.log()
            assert "Traceback" not in text and "died" not in text, text[-3000:]


def test_a_failover_that_lost_the_newest_writes_loses_no_message_said_delivered_after_it(
    tmp_path: Path, start_node: Start
) -> None:
    """Redis replicates asynchronously: a master killed while its replica lags takes its
    newest writes with it, among them the numbers of node b's inbox log that b had already
    taken live. The promoted replica numbers the next messages from where its copy ends,
    numbers b has seen: each must still reach b (a `sent` says `delivered`), not be taken
    for one b already had."""
    with _replicas(tmp_path, "--enable-debug-command", "yes") as rc:
        _a, b, alice, bob = _two_nodes(rc, start_node)
        assert wait_until(lambda: _replicated(rc), timeout=10)
        victim = rc.owner_port(keys.node_inbox(node_with_users(rc, 1)))
        info = rc.node_client(victim).info("replication")
        replica = int(info["slave0"]["port"])
        # The replica stalls; the master goes on alone, then dies with what it did not send.
        stall = threading.Thread(
            target=lambda: rc.node_client(replica).execute_command("DEBUG", "SLEEP", "1.5")
        )
        stall.start()
        time.sleep(0.2)
        # Its link dropped by the master: what follows is written nowhere else.
        rc.node_client(victim).execute_command("CLIENT", "KILL", "TYPE", "replica")
        for n in range(5):
            sent = alice.ask({"type": "send", "id": f"t{n}", "to": ["bob"], "text": f"t{n}"})
            assert sent["delivered"] == ["bob"], sent
            bob.expect("msg", text=f"t{n}")
        rc.procs[rc.ports.index(victim)].send_signal(signal.SIGKILL)
        rc.procs[rc.ports.index(victim)].wait(10)
        stall.join(10)
        assert wait_until(lambda: rc.healthy(without=victim), timeout=30)
        # After it (once the nodes know where the slots are): every message said delivered
        # arrives.
        said: list[str] = []
        deadline = time.monotonic() + 30
        n = 0
        while len(said) < 10 and time.monotonic() < deadline:
            sent = alice.ask({"type": "send", "id": f"n{n}", "to": ["bob"], "text": f"n{n}"})
            if sent["delivered"] == ["bob"]:
                said.append(f"n{n}")
            n += 1
            time.sleep(0.05)
        assert len(said) >= 10, (n, said)
        bob.pump(3.0)
        got = [m["text"] for m in bob.inbox if m["type"] == "msg"]
        assert [t for t in said if t not in got] == [], (said, got)
        assert len(got) == len(set(got)), got  # and none twice
        # The case arose: node b's log had numbers its new master does not have.
        assert "went back from" in b.log(), b.log()[-3000:]


def test_a_master_frozen_until_its_replica_took_over_leaves_no_subscription_on_it(
    tmp_path: Path, start_node: Start
) -> None:
    """A master frozen (SIGSTOP) past the node timeout: its replica takes its slots, and when
    it thaws it is a replica itself, its connections never broken (a kill breaks them).
    The chaos soak (tests/soak, seed 1) found node b subscribed to its inbox on the thawed
    master after this: every message taken live there while every sender was told
    `missing` and `queued`, for good. Whether the node subscribes again with a stale slot
    map is a race here (the deterministic test is the next one); this one checks the whole
    path from outside: after the thaw, every message to b is `delivered`, once, in order."""
    with _replicas(tmp_path) as rc:
        _a, _b, alice, bob = _two_nodes(rc, start_node)
        assert wait_until(lambda: _replicated(rc), timeout=10)
        victim = rc.owner_port(keys.node_inbox(node_with_users(rc, 1)))
        replica = rc.replica_of(victim)
        proc = rc.procs[rc.ports.index(victim)]
        proc.send_signal(signal.SIGSTOP)

        def meanwhile(check: Callable[[], bool]) -> Callable[[], bool]:
            # The users read (and ack their roster) while the test waits for Redis.
            return lambda: (alice.pump(0.05), bob.pump(0.05), check())[-1]

        def promoted() -> bool:  # asked of the replica: the frozen one would not answer
            return bool(rc.node_client(replica).execute_command("ROLE")[0] == b"master")

        try:  # frozen until its replica serves its slots
            assert wait_until(meanwhile(promoted), timeout=30)
            assert wait_until(meanwhile(lambda: rc.healthy(without=victim)), timeout=30)
        finally:
            proc.send_signal(signal.SIGCONT)
        # A replica now, of its former replica.
        assert wait_until(meanwhile(lambda: victim not in rc.masters()), timeout=20)
        assert wait_until(meanwhile(rc.healthy), timeout=30)
        crosses_again(alice, bob, "after ")
        every_one_delivered_once(alice, bob, "s")


def test_no_subscription_stays_on_a_replica_that_a_stale_slot_map_names(
    tmp_path: Path,
) -> None:
    """A node subscribes with the slot map it has; after a failover that map can still name
    the old master (a thawed master asked for the map before it heard it was demoted, or
    no refresh yet). Redis 7.0 takes SSUBSCRIBE on a replica and passes its master's
    messages on to it, but the master's SPUBLISH counts only its own subscribers: the
    node got every message while every publisher was told nobody took it (`missing`,
    `queued`, then each message a second time at the next login), for good. Found by the
    chaos soak (tests/soak, seed 1: a master frozen 4.8 s, its replica took over). The
    subscriber now asks the node it subscribed on whether it is a master (CLUSTER NODES);
    a replica's subscription is undone (`open` fails, as for any node that cannot take it;
    later, it is tried again with the map read again)."""
    with _replicas(tmp_path) as rc:
        link = Link(rc.url)  # its slot map, read now, is stale after the failover below
        inbox = bus.Log(link, keys.node_inbox("n-demoted"), INBOX_KEEPS, settles=True)
        inbox.ensure(link.client)
        old = rc.owner_port(inbox.channel)
        new = rc.replica_of(old)
        assert wait_until(lambda: _replicated(rc), timeout=10)
        rc.node_client(new).execute_command("CLUSTER", "FAILOVER")
        assert wait_until(lambda: rc.owner_port(inbox.channel) == new, timeout=20)
        assert wait_until(lambda: old not in rc.masters(), timeout=20)

        def subscribers(port: int) -> int:
            reply = rc.node_client(port).execute_command("PUBSUB", "SHARDNUMSUB", inbox.channel)
            return int(reply[1])

        sub = bus.Subscriber(link, [inbox.channel])
        try:
            # Asked to subscribe where the stale map says: the former master, a replica now,
            # would take it (before: subscribed there, and every message "taken by nobody").
            with pytest.raises(redis.ConnectionError, match="replica"):
                sub.open()
            assert subscribers(old) == 0, "a subscription left on the replica"
            link.client.nodes_manager.initialize()  # the map read again, as a retry does
            sub = bus.Subscriber(link, [inbox.channel])
            sub.open()
            assert subscribers(new) == 1
            _number, took = inbox.publish(link.client, b"after", inbox.mark())
            assert int(took) == 1, "the master's SPUBLISH reached nobody"
            got = [e for _ in range(20) for e in sub.poll(0.1)]
            assert any(isinstance(e, bus.Message) and e.data.endswith(b"after") for e in got), got
        finally:
            sub.close()
            link.client.close()


def test_a_manual_failover_moves_the_subscriptions_to_the_new_master(
    tmp_path: Path, start_node: Start
) -> None:
    """`CLUSTER FAILOVER` on a replica (how operators upgrade or move a master without
    losing writes): the old master becomes a replica with every connection kept. A
    subscription left there would take every message (a replica passes its master's on)
    while the new master's SPUBLISH counts nobody: every message to b said `missing`. Here
    the subscription moves (this test also passes without the once-a-second check of the
    slot map: the demoted master tells its subscribers; the frozen-and-thawed master of the
    chaos soak did not), and every message after the failover is delivered, once."""
    with _replicas(tmp_path) as rc:
        _a, b, alice, bob = _two_nodes(rc, start_node)
        inbox = keys.node_inbox(node_with_users(rc, 1))
        old = rc.owner_port(inbox)
        new = rc.replica_of(old)
        assert wait_until(lambda: _replicated(rc), timeout=10)
        assert rc.node_client(new).execute_command("CLUSTER", "FAILOVER") == b"OK"
        assert wait_until(lambda: rc.owner_port(inbox) == new, timeout=20)
        crosses_again(alice, bob, "moved ")
        every_one_delivered_once(alice, bob, "m")
        assert "Traceback" not in b.log(), b.log()[-3000:]
