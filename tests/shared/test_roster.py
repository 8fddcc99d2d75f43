"""Roster rules: one frame in flight, seq +1, coalesced deltas relative to the last frame."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError
from chat.shared.messages import Roster, encode, encode_name_items, encode_roster
from chat.shared.roster import ChangeLog, RosterOutbox, RosterView


def started(users: list[str] | None = None) -> tuple[RosterOutbox, Roster]:
    outbox = RosterOutbox()
    return outbox, outbox.full(users or [])


def test_first_frame_is_a_full_snapshot_with_seq_1_in_flight() -> None:
    outbox, first = started(["bob", "carol"])
    assert first == Roster(1, True, users=("bob", "carol"))
    assert outbox.in_flight == 1


def test_full_snapshot_is_sent_only_once() -> None:
    outbox, _ = started()
    with pytest.raises(LocalProtocolError):
        outbox.full([])


def test_changes_before_the_snapshot_are_dropped() -> None:
    outbox = RosterOutbox()
    assert outbox.joined("bob") is None
    outbox.full(["bob"])
    assert outbox.ack(1) is None


def test_changes_while_a_frame_is_in_flight_wait_for_its_ack() -> None:
    outbox, _ = started()
    assert outbox.joined("bob") is None
    assert outbox.joined("carol") is None
    delta = outbox.ack(1)
    assert delta == Roster(2, False, join=("bob", "carol"), leave=())
    assert outbox.in_flight == 2


def test_join_then_leave_meanwhile_appears_in_neither_list() -> None:
    outbox, _ = started(["dave"])
    outbox.joined("bob")
    outbox.left("bob")
    outbox.left("dave")
    assert outbox.ack(1) == Roster(2, False, join=(), leave=("dave",))


def test_leave_then_rejoin_meanwhile_appears_in_neither_list() -> None:
    outbox, _ = started(["bob"])
    outbox.left("bob")
    outbox.joined("bob")
    assert outbox.ack(1) is None
    assert outbox.in_flight is None


def test_no_delta_after_an_ack_when_nothing_changed() -> None:
    outbox, _ = started()
    assert outbox.ack(1) is None
    assert outbox.in_flight is None


def test_change_with_nothing_in_flight_is_sent_at_once_with_the_next_seq() -> None:
    outbox, _ = started()
    outbox.ack(1)
    assert outbox.joined("bob") == Roster(2, False, join=("bob",), leave=())
    assert outbox.left("bob") is None  # frame 2 is in flight
    assert outbox.ack(2) == Roster(3, False, join=(), leave=("bob",))


@pytest.mark.parametrize("seq", [0, 2, -1, 99])
def test_ack_with_a_wrong_seq_is_bad_request_and_changes_nothing(seq: int) -> None:
    outbox, _ = started()
    with pytest.raises(RemoteProtocolError) as info:
        outbox.ack(seq)
    assert info.value.code is Code.BAD_REQUEST and not info.value.fatal
    assert outbox.in_flight == 1
    assert outbox.ack(1) is None


def test_ack_with_nothing_in_flight_is_bad_request() -> None:
    outbox, _ = started()
    outbox.ack(1)
    with pytest.raises(RemoteProtocolError) as info:
        outbox.ack(1)
    assert info.value.code is Code.BAD_REQUEST


def test_view_applies_snapshot_then_deltas_and_reports_the_change() -> None:
    view = RosterView()
    assert view.apply(Roster(1, True, users=("a", "b"))) == ({"a", "b"}, set())
    assert view.apply(Roster(2, False, join=("c",), leave=("a",))) == ({"c"}, {"a"})
    assert view.online == {"b", "c"} and view.last_seq == 2


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_view_refuses_a_seq_that_is_not_the_next(seq: int) -> None:
    view = RosterView()
    view.apply(Roster(1, True, users=()))
    with pytest.raises(RemoteProtocolError) as info:
        view.apply(Roster(seq, False, join=("x",)))
    assert info.value.code is Code.BAD_REQUEST
    assert view.online == set()


NAMES = ["ann", "bob", "cid", "dee", "eve", "fay"]


class RosterProtocol(RuleBasedStateMachine):
    """Random joins, leaves and acks; the client's view must catch up at every ack."""

    @initialize(first=st.sets(st.sampled_from(NAMES)))
    def start(self, first: set[str]) -> None:
        self.truth = set(first)
        self.outbox = RosterOutbox()
        self.view = RosterView()
        self.unacked: Roster | None = None
        self.last_seq = 0
        self.receive(self.outbox.full(sorted(first)))

    def receive(self, frame: Roster | None) -> None:
        if frame is None:
            return
        assert self.unacked is None, "a second frame while one is in flight"
        assert frame.seq == self.last_seq + 1
        if not frame.full:
            assert frame.join or frame.leave, "an empty delta"
            assert not set(frame.join) & set(frame.leave)
            assert not set(frame.join) & self.view.online
            assert set(frame.leave) <= self.view.online
        self.view.apply(frame)
        self.unacked, self.last_seq = frame, frame.seq

    @rule(name=st.sampled_from(NAMES))
    def join(self, name: str) -> None:
        if name not in self.truth:  # the server never joins someone online
            self.truth.add(name)
            self.receive(self.outbox.joined(name))

    @rule(name=st.sampled_from(NAMES))
    def leave(self, name: str) -> None:
        if name in self.truth:
            self.truth.discard(name)
            self.receive(self.outbox.left(name))

    @precondition(lambda self: self.unacked is not None)
    @rule()
    def ack(self) -> None:
        assert self.unacked is not None
        seq, self.unacked = self.unacked.seq, None
        self.receive(self.outbox.ack(seq))
        assert self.view.online == self.truth

    @rule(wrong=st.integers(min_value=-2, max_value=50))
    def wrong_ack(self, wrong: int) -> None:
        if self.unacked is not None and wrong == self.unacked.seq:
            return
        with pytest.raises(RemoteProtocolError):
            self.outbox.ack(wrong)

    @invariant()
    def one_frame_in_flight(self) -> None:
        assert self.outbox.in_flight == (self.unacked.seq if self.unacked else None)

    @invariant()
    def view_is_true_whenever_nothing_is_in_flight(self) -> None:
        if self.unacked is None:
            assert self.view.online == self.truth


TestRosterProtocol = RosterProtocol.TestCase
TestRosterProtocol.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# --------------------------------------------------------------------------
# A change log shared by several outboxes (the server's arrangement)
# --------------------------------------------------------------------------
def test_shared_log_outboxes_each_get_the_net_change_since_their_own_last_frame() -> None:
    log = ChangeLog()
    alice, bob = RosterOutbox(log, own="alice"), RosterOutbox(log, own="bob")
    alice.full([])
    bob.full(["alice"])
    bob.ack(1)  # bob has nothing in flight, alice still waits on her full roster
    log.append("carol", True)
    assert bob.changed() == Roster(2, False, join=("carol",), leave=())
    assert alice.changed() is None  # in flight: the change waits for her ack
    log.append("carol", False)
    log.append("dave", True)
    assert alice.ack(1) == Roster(2, False, join=("dave",), leave=())  # carol came and went
    assert bob.ack(2) == Roster(3, False, join=("dave",), leave=("carol",))


def test_shared_log_never_tells_a_session_about_its_own_user() -> None:
    log = ChangeLog()
    second = RosterOutbox(log, own="bob")
    second.full(["alice"])
    second.ack(1)
    log.append("bob", False)  # bob's other session left
    assert second.changed() is None
    assert second.cursor == log.end


def test_shared_log_is_trimmed_only_up_to_the_oldest_cursor() -> None:
    log = ChangeLog()
    slow, fast = RosterOutbox(log, own="s"), RosterOutbox(log, own="f")
    slow.full([])
    fast.full([])
    fast.ack(1)
    for i in range(10):
        log.append(f"u{i}", True)
        fast.changed()
        fast.ack(fast.in_flight)  # type: ignore[arg-type]
    log.trim(min(slow.cursor, fast.cursor))
    assert len(log) == 10  # slow has not been told anything yet
    assert slow.ack(1) == Roster(2, False, join=tuple(sorted(f"u{i}" for i in range(10))), leave=())
    log.trim(min(slow.cursor, fast.cursor))
    assert len(log) == 0


def test_a_shared_log_is_appended_to_by_its_owner_only() -> None:
    outbox = RosterOutbox(ChangeLog())
    with pytest.raises(LocalProtocolError):
        outbox.joined("bob")


class _Session:
    def __init__(self, log: ChangeLog, own: str, online: set[str]) -> None:
        self.own = own
        self.outbox = RosterOutbox(log, own=own)
        self.view = RosterView()
        self.unacked: Roster | None = None
        self.receive(self.outbox.full(sorted(online - {own})))

    def receive(self, frame: Roster | None) -> None:
        if frame is None:
            return
        assert self.unacked is None, "a second frame while one is in flight"
        assert self.own not in frame.users + frame.join + frame.leave
        if not frame.full:
            assert frame.join or frame.leave, "an empty delta"
        self.view.apply(frame)
        self.unacked = frame


class SharedLogProtocol(RuleBasedStateMachine):
    """Several sessions on one log, random changes, acks and trims (the server's shape)."""

    @initialize(first=st.sets(st.sampled_from(NAMES)))
    def start(self, first: set[str]) -> None:
        self.truth = set(first)
        self.log = ChangeLog()
        self.sessions = [_Session(self.log, own, self.truth) for own in NAMES[:3]]

    def announce(self) -> None:
        for s in self.sessions:
            if s.unacked is None:
                s.receive(s.outbox.changed())

    @rule(name=st.sampled_from(NAMES))
    def toggle(self, name: str) -> None:
        joined = name not in self.truth
        (self.truth.add if joined else self.truth.discard)(name)
        self.log.append(name, joined)
        self.announce()

    @rule(i=st.integers(0, 2))
    def ack(self, i: int) -> None:
        s = self.sessions[i]
        if s.unacked is not None:
            seq, s.unacked = s.unacked.seq, None
            s.receive(s.outbox.ack(seq))
            assert s.view.online == self.truth - {s.own}

    @rule()
    def trim(self) -> None:
        self.log.trim(min(s.outbox.cursor for s in self.sessions))

    @invariant()
    def views_are_true_whenever_nothing_is_in_flight(self) -> None:
        for s in self.sessions:
            if s.unacked is None:
                assert s.view.online == self.truth - {s.own}


TestSharedLogProtocol = SharedLogProtocol.TestCase
TestSharedLogProtocol.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def _reference_net(events: list[tuple[str, bool]], skip: str | None) -> tuple:
    first: dict[str, bool] = {}
    last: dict[str, bool] = {}
    for name, joined in events:
        if name != skip:
            first.setdefault(name, joined)
            last[name] = joined
    # In the order of the changes (each name where it first changed): no sort per frame.
    join = tuple(n for n, j in first.items() if j and last[n])
    leave = tuple(n for n, j in first.items() if not j and not last[n])
    return join, leave


@settings(deadline=None, max_examples=300)
@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.booleans()), max_size=40),
    st.integers(min_value=0, max_value=45),
    st.integers(min_value=0, max_value=45),
    st.sampled_from([None, "a", "c"]),
)
def test_net_changes_match_the_plain_definition_with_and_without_leaves(
    steps: list[tuple[str, bool]], since: int, trim: int, skip: str | None
) -> None:
    """The joins-only fast path (a login burst) and the general path agree with the
    definition, before and after a trim."""
    log = ChangeLog()
    events: list[tuple[str, bool]] = []
    online: set[str] = set()
    for name, join in steps:  # joins and leaves of a name alternate, as the server ensures
        if join == (name in online):
            continue
        (online.add if join else online.discard)(name)
        log.append(name, join)
        events.append((name, join))
    trim = min(trim, since, len(events))
    log.trim(trim)
    since = min(since, len(events))
    assert log.net(since, skip) == _reference_net(events[since:], skip)


@settings(deadline=None, max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("toggle"), st.sampled_from("abcdef"), st.none()),
            st.tuples(st.just("trim"), st.integers(0, 70), st.none()),
            st.tuples(st.just("net"), st.integers(0, 70), st.sampled_from([None, "a", "b"])),
        ),
        max_size=70,
    )
)
def test_net_items_are_the_encoded_net_changes_through_appends_and_trims(
    ops: list[tuple[str, object, object]],
) -> None:
    """What the server copies into frames (`net_items`: the names kept encoded, sliced)
    is the encoded definition, asked twice in a row (the slice kept for a window's
    subscribers) and across trims that drop the front of the buffer."""
    log = ChangeLog()
    events: list[tuple[str, bool]] = []
    online: set[str] = set()
    trimmed = 0
    for op, arg, skip in ops:
        if op == "toggle":
            name = str(arg)
            join = name not in online
            (online.add if join else online.discard)(name)
            log.append(name, join)
            events.append((name, join))
        elif op == "trim":
            keep = min(int(arg), len(events))  # type: ignore[call-overload]
            log.trim(keep)
            trimmed = max(trimmed, keep)
        else:
            since = min(max(int(arg), trimmed), len(events))  # type: ignore[call-overload]
            join, leave = _reference_net(events[since:], skip)  # type: ignore[arg-type]
            want = (encode_name_items(join), encode_name_items(leave))
            assert log.net_items(since, skip) == want  # type: ignore[arg-type]
            assert log.net_items(since, skip) == want  # type: ignore[arg-type]


@settings(deadline=None, max_examples=200)
@given(
    st.integers(min_value=1, max_value=2**40),
    st.booleans(),
    st.lists(st.sampled_from(NAMES), max_size=6),
    st.lists(st.sampled_from(NAMES), max_size=6),
)
def test_roster_frames_from_encoded_names_are_the_encoded_roster(
    seq: int, full: bool, first: list[str], second: list[str]
) -> None:
    """`encode_roster` (names copied as encoded items) writes what `encode(Roster)` does."""
    if full:
        want = encode(Roster(seq, True, users=tuple(first)))
        got = encode_roster(seq, True, users=encode_name_items(first))
    else:
        want = encode(Roster(seq, False, join=tuple(first), leave=tuple(second)))
        got = encode_roster(
            seq, False, join=encode_name_items(first), leave=encode_name_items(second)
        )
    assert got == want
    if full:  # a login's auth_ok goes ahead of its full roster, in the same append
        assert encode_roster(seq, True, users=encode_name_items(first), before=b"x") == b"x" + want
