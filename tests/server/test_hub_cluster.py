"""The hub's picture of other nodes: one roster, routing across nodes, failures. No Redis.

The cluster's threads call `remote_change`, `node_gone`, `remote_reset`; the
dispatcher routes with `route`; `on_local` is what a node would publish.
These run here on the real hub, mailboxes and store of the harness.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.server.core.hub import Hub
from chat.shared.messages import Auth, Roster, RosterAck

from .harness import World


class ClusterWorld(World):
    """A world whose hub reports its local users, as a cluster node's would."""

    def __init__(self, tmp: Path) -> None:
        self.told: list[tuple[str, bool]] = []
        super().__init__(tmp)

    def make_hub(self) -> Hub:
        return Hub(ack_timeout=30.0, on_local=lambda name, up: self.told.append((name, up)))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ClusterWorld]:
    w = ClusterWorld(tmp_path)
    yield w
    w.close()


def deltas(world: World, session) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:  # type: ignore[no-untyped-def]
    """Read and ack roster deltas until none comes: (join, leave) of each."""
    out = []
    while frames := [f for f in world.frames(session) if isinstance(f, Roster) and not f.full]:
        for frame in frames:
            out.append((frame.join, frame.leave))
            world.post(session, RosterAck(frame.seq))
    return out


def test_a_user_on_another_node_joins_once_and_leaves_with_its_last_node(
    world: ClusterWorld,
) -> None:
    alice = world.login("alice")
    world.hub.remote_change("n2", "bob", True, None)
    assert deltas(world, alice) == [(("bob",), ())]
    world.hub.remote_change("n3", "bob", True, None)  # a second session, elsewhere
    world.hub.remote_change("n2", "bob", False, None)
    assert deltas(world, alice) == []
    world.hub.remote_change("n3", "bob", False, None)
    assert deltas(world, alice) == [((), ("bob",))]


def test_a_local_user_also_online_elsewhere_is_no_second_join_and_is_told_out(
    world: ClusterWorld,
) -> None:
    carol = world.login("carol")
    world.hub.remote_change("n2", "bob", True, None)
    deltas(world, carol)
    bob = world.login("bob")  # bob's first session here: told to the cluster, no join
    assert ("bob", True) in world.told and deltas(world, carol) == []
    world.hub.remove(bob, None)
    assert ("bob", False) in world.told and deltas(world, carol) == []  # still on n2


def test_a_full_roster_names_users_on_every_node(world: ClusterWorld) -> None:
    world.hub.remote_change("n2", "bob", True, None)
    world.hub.remote_change("n3", "carol", True, None)
    alice = world.connect()
    world.post(alice, Auth("alice", "pw", True))
    roster = world.frames(alice)[1]
    assert isinstance(roster, Roster) and set(roster.users) == {"bob", "carol"}


def test_a_dead_node_takes_only_its_own_users(world: ClusterWorld) -> None:
    alice = world.login("alice")
    world.hub.remote_change("n2", "bob", True, None)
    world.hub.remote_change("n2", "carol", True, None)
    world.hub.remote_change("n3", "carol", True, None)
    deltas(world, alice)
    world.hub.node_gone("n2", None)
    assert deltas(world, alice) == [((), ("bob",))]  # carol is still on n3


def test_a_resync_announces_only_what_changed(world: ClusterWorld) -> None:
    alice = world.login("alice")
    world.hub.remote_reset({"n2": {"bob", "carol"}}, None)
    assert net(deltas(world, alice)) == ({"bob", "carol"}, set())
    world.hub.remote_reset({"n2": {"bob"}, "n3": {"dave"}}, None)
    assert net(deltas(world, alice)) == ({"dave"}, {"carol"})


def net(frames: list[tuple[tuple[str, ...], tuple[str, ...]]]) -> tuple[set[str], set[str]]:
    joined = {n for join, _ in frames for n in join}
    left = {n for _, leave in frames for n in leave}
    return joined - left, left - joined


def test_routes_name_other_nodes_and_count_their_users_delivered(world: ClusterWorld) -> None:
    alice = world.login("alice")
    world.login("erin")
    world.hub.remote_change("n2", "bob", True, None)
    world.hub.remote_change("n3", "carol", True, None)
    world.hub.remote_change("n3", "erin", True, None)  # erin is here and on n3
    route, _ = world.hub.route("alice", ("bob", "carol", "erin", "zed"), lambda route: None)
    assert route.delivered == ("bob", "carol", "erin") and route.missing == ("zed",)
    assert dict(route.remote) == {"n2": ("bob",), "n3": ("carol", "erin")}
    assert route.remote_only == {"bob": ("n2",), "carol": ("n3",)}  # erin is also local
    assert route.targets.count == 1  # erin's local session
    assert world.hub.unreached(route, {"n3"}) == ("bob",)
    everyone, _ = world.hub.route("alice", "*", lambda route: None)
    assert set(everyone.delivered) == {"bob", "carol", "erin"}
    assert dict(everyone.remote) == {"n2": None, "n3": None}
    assert world.frames(alice) is not None
