"""The hub with other nodes: one roster, routing across nodes, failures. No Redis.

The presence's thread tells the hub who appears or vanishes elsewhere (its
`PresenceListener` side: `elsewhere`, `elsewhere_reset`); the route asks the
presence where each name is (`nodes_of`, `nodes`, `everyone`). Here the hub,
mailboxes and store are the harness's real ones; the presence and the broker
are small in-memory doubles of their seams. How a real presence turns nodes'
sessions into those calls (a user on two nodes leaves with the last one, a dead
node takes only its own users) is RedisPresence's, tested on a real Redis in
tests/cluster (test_cluster.py) and tests/contracts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from unittest.mock import ANY

import pytest

from chat.server.app import Engines
from chat.server.core import route
from chat.server.core.broker import Deliverer
from chat.server.core.presence import PresenceListener
from chat.server.core.user import User
from chat.server.crypto.cipher import load_cipher
from chat.server.store.sqlite import MessageStore
from chat.shared.messages import Auth, Msg, Roster, RosterAck, Send, Sent, ServerMessage

from .harness import KEY, World


class MemoryPresence:
    """The presence seam in memory: where the test says each name is, and what this node
    announced (`told`)."""

    def __init__(self) -> None:
        self.where: dict[str, tuple[str, ...]] = {}  # name -> other nodes with a session
        self.told: list[tuple[str, bool]] = []

    def start(self, listener: PresenceListener) -> None:
        pass

    def stop(self) -> None:
        pass

    def arrived(self, name: str) -> None:
        self.told.append((name, True))

    def departed(self, name: str) -> None:
        self.told.append((name, False))

    def nodes_of(self, name: str) -> tuple[str, ...]:
        return self.where.get(name, ())

    def nodes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for nodes in self.where.values() for n in nodes))

    def everyone(self) -> dict[str, tuple[str, ...]]:
        return dict(self.where)


class MemoryBroker:
    """The broker seam in memory: each publish noted, and answered at once with whether
    its node takes it (`takes`; a node in `silent` never answers)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, tuple[str, ...] | None, tuple[Msg, ...]]] = []
        self.takes: dict[str, bool] = {}
        self.silent: set[str] = set()
        self.on_publish: Callable[[], None] = lambda: None

    def start(self, deliverer: Deliverer) -> None:
        pass

    def stop(self) -> None:
        pass

    def publish(
        self,
        node: str,
        sender: str,
        names: Sequence[str] | None,
        msgs: Sequence[Msg],
        then: Callable[[bool], None],
    ) -> None:
        self.published.append((node, sender, None if names is None else tuple(names), tuple(msgs)))
        self.on_publish()
        if node not in self.silent:
            then(self.takes.get(node, True))


class ClusterWorld(World):
    """A world whose node has a presence and a broker (doubles), as a cluster node's."""

    def __init__(self, tmp: Path, deadline: float | None = None) -> None:
        self.presence = MemoryPresence()
        self.broker = MemoryBroker()
        super().__init__(
            tmp,
            engines=lambda w: Engines(w.store, w.keeper, self.presence, self.broker, deadline),
        )

    def elsewhere(self, name: str, *nodes: str) -> None:
        """The presence's picture and what its thread tells the hub, as a real one would:
        `name` is on `nodes` (none: gone from every other node)."""
        visible = name in self.presence.where
        if nodes:
            self.presence.where[name] = nodes
        else:
            self.presence.where.pop(name, None)
        if visible != bool(nodes):
            self.hub.elsewhere(name, bool(nodes), None)


def history(world: World, user: str, peer: str) -> list[str]:
    """What another connection to the history file reads now (committed only)."""
    store = MessageStore.open(world.tmp / "history.db", KEY, load_cipher())
    try:
        return [m.text for m in store.page(user, peer, None, 50).messages]
    finally:
        store.close()


NONE: frozenset[str] = frozenset()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ClusterWorld]:
    w = ClusterWorld(tmp_path)
    yield w
    w.close()


def deltas(world: World, session: User) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Read and ack roster deltas until none comes: (join, leave) of each."""
    out = []
    while frames := [f for f in world.frames(session) if isinstance(f, Roster) and not f.full]:
        for frame in frames:
            out.append((frame.join, frame.leave))
            world.post(session, RosterAck(frame.seq))
    return out


def replies(world: World, session: User) -> list[ServerMessage]:
    """What `session` got but roster frames."""
    return [f for f in world.frames(session) if not isinstance(f, Roster)]


def test_a_user_on_another_node_joins_once_and_leaves_once(world: ClusterWorld) -> None:
    alice = world.login("alice")
    world.hub.elsewhere("bob", True, None)
    assert deltas(world, alice) == [(("bob",), ())]
    world.hub.elsewhere("bob", True, None)  # told again (a resync, a second node): no join
    assert deltas(world, alice) == [] and world.hub.online() == ["alice", "bob"]
    world.hub.elsewhere("bob", False, None)
    assert deltas(world, alice) == [((), ("bob",))]
    world.hub.elsewhere("bob", False, None)  # told again: no second leave
    assert deltas(world, alice) == [] and world.hub.online() == ["alice"]


def test_a_local_user_also_online_elsewhere_is_no_second_join_and_is_told_out(
    world: ClusterWorld,
) -> None:
    carol = world.login("carol")
    assert world.presence.told == [("carol", True)]
    world.hub.elsewhere("bob", True, None)
    assert deltas(world, carol) == [(("bob",), ())]
    bob = world.login("bob")  # bob's first session here: told to the cluster, no join
    assert world.presence.told[-1] == ("bob", True) and deltas(world, carol) == []
    world.hub.remove(bob, None)
    assert world.presence.told[-1] == ("bob", False)
    assert deltas(world, carol) == [] and "bob" in world.hub.online()  # still elsewhere
    world.hub.elsewhere("bob", False, None)  # and now gone from there too: the leave
    assert deltas(world, carol) == [((), ("bob",))]


def test_a_local_user_who_appears_and_vanishes_elsewhere_is_no_join_and_no_leave(
    world: ClusterWorld,
) -> None:
    carol = world.login("carol")
    bob = world.login("bob")
    assert deltas(world, carol) == [(("bob",), ())]
    world.hub.elsewhere("bob", True, None)
    world.hub.elsewhere("bob", False, None)
    assert deltas(world, carol) == [] and world.hub.online() == ["carol", "bob"]
    world.hub.elsewhere("bob", True, None)
    world.hub.remove(bob, None)  # the last session here; one is left elsewhere
    assert deltas(world, carol) == [] and world.presence.told[-1] == ("bob", False)


def test_a_full_roster_names_users_on_every_node(world: ClusterWorld) -> None:
    world.hub.elsewhere("bob", True, None)
    world.hub.elsewhere("carol", True, None)
    alice = world.connect()
    world.post(alice, Auth("alice", "pw", True))
    roster = world.frames(alice)[1]
    assert isinstance(roster, Roster) and set(roster.users) == {"bob", "carol"}


def test_a_dead_node_takes_only_the_users_it_says_are_gone(world: ClusterWorld) -> None:
    """The presence tells which names vanished with a dead node (those with no session on
    any other node): only they leave; a user also here is no leave."""
    alice = world.login("alice")
    world.login("dave")
    world.hub.elsewhere_reset({"bob", "carol", "dave"}, None)
    deltas(world, alice)
    world.hub.elsewhere_reset({"carol"}, None)  # n2 died: bob and dave were only there
    assert deltas(world, alice) == [((), ("bob",))]  # dave is still here
    assert sorted(world.hub.online()) == ["alice", "carol", "dave"]


def test_a_resync_announces_only_what_changed(world: ClusterWorld) -> None:
    alice = world.login("alice")
    world.hub.elsewhere_reset({"bob", "carol"}, None)
    assert net(deltas(world, alice)) == ({"bob", "carol"}, set())
    world.hub.elsewhere_reset({"bob", "dave"}, None)
    assert net(deltas(world, alice)) == ({"dave"}, {"carol"})
    world.hub.elsewhere_reset({"bob", "dave"}, None)
    assert deltas(world, alice) == []


def net(frames: list[tuple[tuple[str, ...], tuple[str, ...]]]) -> tuple[set[str], set[str]]:
    joined = {n for join, _ in frames for n in join}
    left = {n for _, leave in frames for n in leave}
    return joined - left, left - joined


def test_routes_name_other_nodes_and_count_their_users_delivered(world: ClusterWorld) -> None:
    alice = world.login("alice")
    world.login("erin")
    world.elsewhere("bob", "n2")
    world.elsewhere("carol", "n3")
    world.elsewhere("erin", "n3")  # erin is here and on n3
    plan, _, _, _ = world.hub.route(
        world.user("alice"), ("bob", "carol", "erin", "zed"), ["x"], NONE, 0.0
    )
    assert plan.delivered == ("bob", "carol", "erin") and plan.missing == ("zed",)
    assert plan.nodes == (("n2", ("bob",)), ("n3", ("carol", "erin")))
    assert plan.elsewhere == {"bob": ("n2",), "carol": ("n3",), "erin": ("n3",)}
    assert plan.targets.count == 1 and plan.targets.users == ("erin",)  # her local session
    # n2 did not take it: bob alone is not delivered (erin is also here).
    verdict = route.settle(plan, stored=True, reached=frozenset({"n3"}))
    assert verdict.delivered_json == b'["carol","erin"]' and verdict.missing == ("zed", "bob")
    # n3 did not take it: carol is lost, erin still got it here.
    verdict = route.settle(plan, stored=True, reached=frozenset({"n2"}))
    assert verdict.delivered_json == b'["bob","erin"]' and verdict.missing == ("zed", "carol")
    everyone, _, _, _ = world.hub.route(world.user("alice"), "*", ["x"], NONE, 0.0)
    assert set(everyone.delivered) == {"bob", "carol", "erin"}
    assert everyone.nodes == (("n2", None), ("n3", None))
    assert world.frames(alice) is not None


def test_a_send_to_another_node_is_published_once_stored_and_its_answer_settles_sent(
    world: ClusterWorld,
) -> None:
    alice = world.login("alice")
    world.elsewhere("bob", "n2")
    world.elsewhere("carol", "n3")
    on_disk: list[list[str]] = []
    world.broker.on_publish = lambda: on_disk.append(history(world, "bob", "alice"))
    world.post(alice, Send(1, ("bob", "carol"), "hi"))
    assert replies(world, alice) == [Sent(1, ("bob", "carol"), (), (), msg_id=ANY)]
    # When it went to the other nodes it was on disk: a recipient there may ask for it.
    assert on_disk == [["hi"], ["hi"]]
    published = {node: names for node, _, names, _ in world.broker.published}
    assert published == {"n2": ("bob",), "n3": ("carol",)}
    _, sender, _, msgs = world.broker.published[0]
    assert sender == "alice" and [m.text for m in msgs] == ["hi"]
    world.broker.takes["n3"] = False  # n3 is gone: carol is not delivered
    world.post(alice, Send(2, "*", "all"))
    assert replies(world, alice) == [Sent(2, ("bob",), ("carol",), (), msg_id=ANY)]


def test_a_node_that_does_not_take_a_message_leaves_its_registered_users_queued(
    world: ClusterWorld,
) -> None:
    carol = world.login("carol")
    world.post(carol, Send(0, "*", "x"))  # carol has an account
    world.hub.remove(carol, None)
    alice = world.login("alice")
    world.elsewhere("carol", "n3")
    world.elsewhere("zoe", "n3")  # online there, but no account: missing only
    world.broker.takes["n3"] = False
    world.post(alice, Send(1, ("carol", "zoe"), "for you"))
    assert replies(world, alice) == [Sent(1, (), ("carol", "zoe"), ("carol",), msg_id=ANY)]
    # The copy is durable: carol finds it at her next login here.
    world.elsewhere("carol")
    carol = world.connect()
    world.post(carol, Auth("carol", "pw", False))
    world.post(carol, RosterAck(world.frames(carol)[1].seq))
    assert [m.text for m in world.frames(carol) if isinstance(m, Msg)] == ["for you"]


def test_a_node_that_never_answers_counts_as_not_reached_at_the_deadline(
    tmp_path: Path,
) -> None:
    world = ClusterWorld(tmp_path, deadline=0.3)
    try:
        alice = world.login("alice")
        world.elsewhere("bob", "n2")
        world.elsewhere("carol", "n3")
        world.broker.silent.add("n3")
        started = time.monotonic()
        world.post(alice, Send(1, ("bob", "carol"), "hi"))
        assert replies(world, alice) == [Sent(1, ("bob",), ("carol",), (), msg_id=ANY)]
        assert 0.25 <= time.monotonic() - started < 5
    finally:
        world.close()
