"""Login storms in the hub (issue 22): a burst of roster changes is told once per window to
each subscriber, not once per login or per round trip, and every roster rule still holds
frame by frame (the full roster at once, seq + 1, one frame in flight, each user told of
each other once, never of itself, nothing told when nothing changed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chat.shared.messages import Auth, Roster, RosterAck
from chat.shared.roster import RosterView

from .harness import World


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Windows = list[tuple[float, Callable[[], None]]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def world(tmp_path: Path, clock: Clock) -> Iterator[World]:
    w = World(tmp_path, clock=clock)
    yield w
    w.close()


def windows(world: World) -> Windows:
    """The hub's windows, opened on a list the test runs (not on the timer thread)."""
    opened: Windows = []
    world.hub.windows(lambda delay, end: opened.append((delay, end)), world.core.ticks)
    return opened


class Peer:
    """A session that logs in and acks every roster frame at once, as a bench client does
    (the case where a delta per round trip made a storm quadratic in frames)."""

    def __init__(self, world: World, name: str, register: bool = True) -> None:
        self.world = world
        self.name = name
        self.session = world.connect()
        self.view = RosterView()
        self.frames: list[Roster] = []
        self.told: list[str] = []
        world.post(self.session, Auth(name, "pw", register))
        self.read()

    def read(self) -> None:
        while frames := [f for f in self.world.frames(self.session) if isinstance(f, Roster)]:
            for f in frames:
                assert self.name not in f.users + f.join + f.leave
                assert f.full == (f.seq == 1) and (f.full or f.join or f.leave)
                self.view.apply(f)  # seq + 1, or it raises
                self.frames.append(f)
                self.told += f.users + f.join
            assert len(frames) == 1, "a second roster frame while one was in flight"
            self.world.post(self.session, RosterAck(frames[-1].seq))


def read_all(peers: list[Peer]) -> None:
    for peer in peers:
        peer.read()


def test_a_login_storm_is_told_once_per_window_to_each_subscriber(
    world: World, clock: Clock
) -> None:
    opened = windows(world)
    peers = [Peer(world, "watcher")]
    for i in range(30):  # 30 logins at once (the clock stands still), each acked at once
        peers.append(Peer(world, f"u{i:02d}"))
        read_all(peers)
    watcher = peers[0]
    # The first changes were told at once, one delta each; the ninth began a storm: one
    # window opened, and since then nothing was told, not even at an ack that found
    # changes waiting (they wait for the window's end with everyone else's).
    assert [f.join for f in watcher.frames[1:]] == [(f"u{i:02d}",) for i in range(7)]
    assert len(opened) == 1 and opened[0][0] == pytest.approx(0.05)
    everyone = {p.name for p in peers}
    delay, end = opened.pop()
    clock.now += delay
    end()
    read_all(peers)
    # One delta per subscriber for the whole window, the joins in the order they came.
    assert watcher.frames[-1].join == tuple(f"u{i:02d}" for i in range(7, 30))
    assert len(watcher.frames) == 1 + 7 + 1
    for peer in peers:
        assert peer.view.online == everyone - {peer.name}, peer.name
        assert sorted(peer.told) == sorted(everyone - {peer.name}), peer.name
        assert len(peer.frames) <= 1 + 7 + 1, (peer.name, len(peer.frames))
    # The storm went on while that window filled: the next one is open; two quiet windows
    # in a row end the storm (one might be a pause), and a change is told at once again.
    for quiet in range(2):
        assert len(opened) == 1, quiet
        delay, end = opened.pop()
        clock.now += delay
        end()
        read_all(peers)
    assert opened == [] and all(len(p.frames) <= 9 for p in peers)
    late = Peer(world, "late")
    read_all(peers)
    assert watcher.frames[-1].join == ("late",) and opened == []
    assert late.view.online == everyone


def test_a_storm_keeps_leaves_and_comebacks_relative_to_the_last_frame(
    world: World, clock: Clock
) -> None:
    """In a window, a user who left and came back is in neither list, one who came and
    went too; a leave of someone told before is a leave."""
    opened = windows(world)
    peers = [Peer(world, "watcher"), Peer(world, "bob")]
    read_all(peers)
    burst = [Peer(world, f"u{i}") for i in range(10)]  # the storm begins
    read_all(peers + burst)
    assert len(opened) == 1
    bob, ghost = peers[1], burst[-1]
    for gone in (bob, ghost):
        world.hub.remove(gone.session, None)
    peers[1] = Peer(world, "bob", register=False)  # bob comes back within the window
    delay, end = opened.pop()
    clock.now += delay
    end()
    read_all(peers + burst[:-1])
    watcher = peers[0]
    told_in_window = watcher.frames[-1]
    assert "bob" not in told_in_window.join + told_in_window.leave
    assert "u9" not in told_in_window.join + told_in_window.leave
    assert watcher.view.online == {"bob", *(f"u{i}" for i in range(9))}
    assert peers[1].view.online == {"watcher", *(f"u{i}" for i in range(9))}


def test_a_full_roster_after_leaves_anywhere_names_exactly_who_is_online(world: World) -> None:
    """The visible names kept encoded (the full roster's bulk) lose a leaver in place,
    first, middle, last or only, and take a comeback at the end: each login's full roster
    is exactly who is online."""
    online: dict[str, Peer] = {}

    def check() -> None:
        probe = Peer(world, f"p{len(world.sessions)}")
        assert set(probe.frames[0].users) == set(online), probe.frames[0].users
        assert len(probe.frames[0].users) == len(online)
        world.hub.remove(probe.session, None)

    for name in ("a", "b.c", "b", "bb", "d-e"):
        online[name] = Peer(world, name)
    check()
    for gone in ("b", "a", "d-e", "bb", "b.c"):  # a middle one, the first, the last, ...
        world.hub.remove(online.pop(gone).session, None)
        check()
    for back in ("bb", "a", "b"):
        online[back] = Peer(world, back, register=False)
        check()
