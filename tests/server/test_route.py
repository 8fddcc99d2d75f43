"""The one route (core/route.py): every rule of `sent` it decides, on plain data.

Protocol v1 "Messaging rules" and clarification 8; v1.1 section 3 (`queued`),
section 6 (other nodes; "delivered never lies"). `plan` and `plan_everyone` say
where a send goes and what `sent` says if all goes well; `settle` and
`stored_more` what it says once the results are in. No lock, no thread, no I/O:
the functions are pure, so each rule is checked directly, and the invariants
for any recipients with hypothesis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from hypothesis import given
from hypothesis import strategies as st

from chat.server.core import route
from chat.server.core.route import NOBODY, Plan, Targets, Verdict
from chat.shared.messages import encode_names

NONE: frozenset[str] = frozenset()


def names(delivered: bytes | tuple[str, ...]) -> tuple[str, ...]:
    """`sent.delivered`: JSON encoded once (for "*") or the names (a list's)."""
    return tuple(json.loads(delivered)) if isinstance(delivered, bytes) else tuple(delivered)


def handles(targets: Targets) -> list[int]:
    return [int(targets.handles[i]) for i in range(targets.count)]


def plan(
    to: Sequence[str],
    local: Mapping[str, Sequence[int]] | None = None,
    elsewhere: Mapping[str, tuple[str, ...]] | None = None,
    registered: frozenset[str] = NONE,
    sender: str = "alice",
) -> Plan:
    return route.plan(sender, tuple(to), local or {}, elsewhere or {}, registered)


def sent(verdict: Verdict) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """`sent`'s (delivered, missing, queued)."""
    return names(verdict.delivered_json), verdict.missing, verdict.queued


# ---- a list of names ------------------------------------------------------------------------
def test_each_name_counts_once_in_the_order_given() -> None:
    p = plan(("carol", "bob", "carol", "zed", "bob", "yan"), {"bob": [1], "carol": [2]})
    assert p.delivered == ("carol", "bob") and names(p.delivered_json) == p.delivered
    assert p.missing == ("zed", "yan")
    assert handles(p.targets) == [2, 1] and p.targets.users == ("carol", "bob")


def test_every_session_of_a_recipient_gets_it_and_delivered_names_it_once() -> None:
    p = plan(("bob",), {"bob": [1, 2, 3]})
    assert p.delivered == ("bob",) and handles(p.targets) == [1, 2, 3]
    assert p.targets.users == ("bob", "bob", "bob") and p.targets.exclude == 0


def test_the_senders_own_name_is_ignored_and_its_other_sessions_get_nothing() -> None:
    p = plan(("alice", "bob", "alice"), {"alice": [7], "bob": [1]}, {"alice": ("n2",)})
    assert p.delivered == ("bob",) and p.missing == () and p.queued == ()
    assert handles(p.targets) == [1] and p.nodes == () and p.elsewhere is None
    alone = plan(("alice",), {"alice": [7]}, registered=frozenset({"alice"}))
    assert (alone.delivered, alone.missing, alone.queued) == ((), (), ())
    assert alone.targets is NOBODY and not alone.stores


def test_an_offline_name_is_missing_and_queued_only_when_it_has_an_account() -> None:
    p = plan(("bob", "zed", "dave"), {"bob": [1]}, registered=frozenset({"dave", "bob"}))
    assert p.delivered == ("bob",)
    assert p.missing == ("zed", "dave") and p.queued == ("dave",)  # zed: no account
    # The store files it under each conversation it belongs to: delivered, then queued.
    assert p.named == ("bob", "dave") and p.stores


def test_a_server_that_keeps_nothing_queues_nothing() -> None:
    """`registered` is empty when the server keeps no messages (fanout.py): no `queued`."""
    p = plan(("bob", "dave"), {"bob": [1]}, registered=NONE)
    assert p.missing == ("dave",) and p.queued == ()


def test_a_send_that_reaches_nobody_and_queues_nothing_is_not_stored() -> None:
    p = plan(("zed", "yan"))
    assert p.delivered == () and p.missing == ("zed", "yan") and p.queued == ()
    assert p.named == () and not p.stores and p.targets.count == 0
    assert names(p.delivered_json) == ()


def test_users_on_other_nodes_are_delivered_and_listed_per_node() -> None:
    p = plan(
        ("bob", "carol", "erin", "zed", "dave"),
        {"erin": [5]},
        {"bob": ("n2",), "carol": ("n3", "n2"), "erin": ("n3",), "dave": ("n4",)},
        registered=frozenset({"zed"}),
    )
    assert p.delivered == ("bob", "carol", "erin", "dave")
    assert p.missing == ("zed",) and p.queued == ("zed",)
    # Nodes in the order their first recipient came; each node's names in the given order.
    assert p.nodes == (("n2", ("bob", "carol")), ("n3", ("carol", "erin")), ("n4", ("dave",)))
    assert p.elsewhere == {
        "bob": ("n2",),
        "carol": ("n3", "n2"),
        "erin": ("n3",),
        "dave": ("n4",),
    }
    assert handles(p.targets) == [5] and p.targets.users == ("erin",)


def test_a_plan_with_no_other_node_names_none() -> None:
    p = plan(("bob",), {"bob": [1]})
    assert p.nodes == () and p.elsewhere is None


# ---- everyone -------------------------------------------------------------------------------
def test_everyone_is_every_other_visible_name_and_queues_nothing() -> None:
    everyone = Targets.of([("alice", 1), ("bob", 2), ("bob", 3)])
    others = ("bob", "carol")
    p = route.plan_everyone("alice", everyone.but(9), others, encode_names(others), ("n2",))
    assert p.to == "*" and p.delivered == others and names(p.delivered_json) == others
    assert p.missing == () and p.queued == () and p.named == ()
    assert p.stores  # the history of everyone
    assert p.nodes == (("n2", None),)  # every user there: no list
    assert p.targets.exclude == 9 and handles(p.targets) == [1, 2, 3]


def test_everyone_with_nobody_else_online_reaches_nobody() -> None:
    p = route.plan_everyone("alice", NOBODY, (), b"[]", ())
    assert (p.delivered, p.missing, p.queued, p.nodes) == ((), (), (), ())
    assert p.stores and p.targets.count == 0


# ---- settle: what happened ------------------------------------------------------------------
def test_when_all_went_well_sent_is_the_plan() -> None:
    p = plan(("bob", "carol", "dave"), {"bob": [1]}, {"carol": ("n2",)}, frozenset({"dave"}))
    assert sent(route.settle(p, stored=True)) == (("bob", "carol"), ("dave",), ("dave",))
    both = route.settle(p, stored=True, reached=frozenset({"n2"}))
    assert sent(both) == (("bob", "carol"), ("dave",), ("dave",)) and both.store_more == ()
    assert both.delivered_json is p.delivered_json  # encoded once


def test_a_store_that_could_not_keep_it_queues_nobody() -> None:
    p = plan(("bob", "dave"), {"bob": [1]}, registered=frozenset({"dave"}))
    v = route.settle(p, stored=False)
    assert sent(v) == (("bob",), ("dave",), ()) and v.store_more == ()


def test_a_node_that_did_not_take_it_makes_its_names_missing_and_stored_for() -> None:
    p = plan(
        ("bob", "carol", "zed", "dave"),
        elsewhere={"bob": ("n2",), "carol": ("n3",), "dave": ("n3",)},
        registered=frozenset({"carol", "zed"}),
    )
    assert p.queued == ("zed",)
    v = route.settle(p, stored=True, reached=frozenset({"n2"}), registered=frozenset({"carol"}))
    # n3 did not answer: carol and dave are missing (after the plan's own), carol has an
    # account, so a copy must be made durable before `sent` may call her queued.
    assert sent(v) == (("bob",), ("zed", "carol", "dave"), ("zed",))
    assert v.store_more == ("carol",)
    assert sent(route.stored_more(v, True)) == (
        ("bob",),
        ("zed", "carol", "dave"),
        ("zed", "carol"),
    )
    assert route.stored_more(v, True).store_more == ()
    assert sent(route.stored_more(v, False)) == (("bob",), ("zed", "carol", "dave"), ("zed",))


def test_no_node_answered_and_nothing_is_durable() -> None:
    p = plan(("bob", "carol"), elsewhere={"bob": ("n2",), "carol": ("n3",)})
    v = route.settle(p, stored=False, reached=NONE, registered=frozenset({"bob"}))
    assert sent(v) == ((), ("bob", "carol"), ()) and v.store_more == ("bob",)


def test_a_name_on_two_nodes_is_delivered_when_either_took_it() -> None:
    p = plan(("carol",), elsewhere={"carol": ("n2", "n3")})
    assert sent(route.settle(p, stored=True, reached=frozenset({"n3"}))) == (("carol",), (), ())
    lost = route.settle(p, stored=True, reached=NONE, registered=frozenset({"carol"}))
    assert sent(lost) == ((), ("carol",), ()) and lost.store_more == ("carol",)


def test_a_name_also_here_is_delivered_when_its_node_did_not_take_it() -> None:
    p = plan(("erin",), {"erin": [4]}, {"erin": ("n3",)})
    assert sent(route.settle(p, stored=True, reached=NONE)) == (("erin",), (), ())


def test_everyone_on_a_node_that_did_not_take_it_is_missing_and_never_stored_for() -> None:
    here = Targets.of([("bob", 1)])
    others = ("bob", "carol", "dave", "erin")
    p = route.plan_everyone("alice", here.but(0), others, encode_names(others), ("n2", "n3"))
    elsewhere = {"carol": ("n2",), "dave": ("n3",), "erin": ("n3", "n2")}
    v = route.settle(
        p,
        stored=True,
        reached=frozenset({"n2"}),
        everyone_elsewhere=elsewhere,
        registered=frozenset(others),
    )
    # "*" queues nothing, whoever has an account: dave is missing, not stored for.
    assert sent(v) == (("bob", "carol", "erin"), ("dave",), ()) and v.store_more == ()


def test_a_local_recipient_none_of_whose_sessions_took_it_is_missing() -> None:
    p = plan(("bob", "carol", "dave"), {"bob": [1, 2], "carol": [3]}, registered=frozenset())
    v = route.settle(p, stored=True, missed=frozenset({"carol"}), registered=frozenset({"carol"}))
    assert sent(v) == (("bob",), ("dave", "carol"), ()) and v.store_more == ("carol",)
    assert sent(route.stored_more(v, True)) == (("bob",), ("dave", "carol"), ("carol",))


def test_a_missed_local_recipient_reached_elsewhere_is_delivered() -> None:
    p = plan(("carol",), {"carol": [3]}, {"carol": ("n2",)})
    assert sent(route.settle(p, stored=True, missed=frozenset({"carol"}))) == (("carol",), (), ())
    assert sent(
        route.settle(p, stored=True, reached=frozenset({"n2"}), missed=frozenset({"carol"}))
    ) == (("carol",), (), ())
    v = route.settle(p, stored=True, reached=NONE, missed=frozenset({"carol"}))
    assert sent(v) == ((), ("carol",), ())


def test_a_missed_recipient_of_everyone_is_missing_and_never_stored_for() -> None:
    here = Targets.of([("bob", 1), ("carol", 2)])
    p = route.plan_everyone("alice", here.but(0), ("bob", "carol"), b'["bob","carol"]', ())
    v = route.settle(p, stored=True, missed=frozenset({"bob"}), registered=frozenset({"bob"}))
    assert sent(v) == (("carol",), ("bob",), ()) and v.store_more == ()


def test_stored_more_without_anything_to_store_changes_nothing() -> None:
    v = Verdict(b'["bob"]', ("zed",), ("zed",))
    assert route.stored_more(v, True) == v and route.stored_more(v, False) == v


# ---- for any recipients ---------------------------------------------------------------------
NAMES = ("alice", "bob", "carol", "dave", "erin", "zed")
NODES = ("n2", "n3", "n4")

recipients = st.lists(st.sampled_from(NAMES), max_size=10)
locals_ = st.dictionaries(
    st.sampled_from(NAMES), st.lists(st.integers(1, 2**63), min_size=1, max_size=3), max_size=6
)
elsewheres = st.dictionaries(
    st.sampled_from(NAMES),
    st.lists(st.sampled_from(NODES), min_size=1, max_size=3, unique=True).map(tuple),
    max_size=6,
)
subsets = st.frozensets(st.sampled_from(NAMES))
node_sets = st.frozensets(st.sampled_from(NODES))


@given(recipients, locals_, elsewheres, subsets, st.sampled_from(NAMES))
def test_any_plan_splits_the_unique_names_but_the_senders_into_delivered_and_missing(
    to: list[str],
    local: dict[str, list[int]],
    elsewhere: dict[str, tuple[str, ...]],
    registered: frozenset[str],
    sender: str,
) -> None:
    p = plan(to, local, elsewhere, registered, sender)
    unique = [n for n in dict.fromkeys(to) if n != sender]
    assert set(p.delivered) | set(p.missing) == set(unique)
    assert not set(p.delivered) & set(p.missing)
    assert [n for n in unique if n in p.delivered] == list(p.delivered)  # the order given
    assert [n for n in unique if n in p.missing] == list(p.missing)
    assert set(p.queued) <= set(p.missing)
    assert p.queued == tuple(n for n in p.missing if n in registered)
    assert p.delivered == tuple(n for n in unique if local.get(n) or elsewhere.get(n))
    assert names(p.delivered_json) == p.delivered
    assert handles(p.targets) == [h for n in p.delivered for h in local.get(n, ())]
    assert p.named == p.delivered + p.queued
    for node, there in p.nodes:
        assert there is not None
        assert list(there) == [n for n in p.delivered if node in elsewhere.get(n, ())]
    assert {node for node, _ in p.nodes} == {
        node for n in p.delivered for node in elsewhere.get(n, ())
    }


@given(
    recipients,
    locals_,
    elsewheres,
    subsets,
    st.booleans(),
    st.one_of(st.none(), node_sets),
    subsets,
    subsets,
)
def test_any_settled_sent_never_lies_and_loses_no_name(
    to: list[str],
    local: dict[str, list[int]],
    elsewhere: dict[str, tuple[str, ...]],
    registered: frozenset[str],
    stored: bool,
    reached: frozenset[str] | None,
    missed: frozenset[str],
    lost_registered: frozenset[str],
) -> None:
    p = plan(to, local, elsewhere, registered)
    missed = missed & set(p.targets.users)
    v = route.settle(p, stored=stored, reached=reached, missed=missed, registered=lost_registered)
    delivered, missing, queued = sent(v)
    assert set(delivered) | set(missing) == set(p.delivered) | set(p.missing)
    assert not set(delivered) & set(missing)
    assert set(delivered) <= set(p.delivered) and missing[: len(p.missing)] == p.missing
    for name in p.delivered:  # "delivered never lies", and nobody who got it is missing:
        here = name in p.targets.users and name not in missed  # a session here took it
        there = any(reached is None or n in reached for n in elsewhere.get(name, ()))
        assert (name in delivered) == (here or there), name
    assert queued == (p.queued if stored else ())
    assert set(queued) <= set(missing)
    lost = [n for n in p.delivered if n not in delivered]
    assert v.store_more == tuple(n for n in lost if n in lost_registered)
    for ok in (True, False):
        after = route.stored_more(v, ok)
        assert after.missing == v.missing and after.delivered_json == v.delivered_json
        assert set(after.queued) <= set(after.missing) and after.store_more == ()
        assert after.queued == (queued + v.store_more if ok else queued)


@given(
    st.lists(st.sampled_from(NAMES[1:]), unique=True),
    elsewheres,
    st.booleans(),
    st.one_of(st.none(), node_sets),
    subsets,
)
def test_any_settled_send_to_everyone_queues_nothing_and_stores_for_nobody(
    here: list[str],
    elsewhere: dict[str, tuple[str, ...]],
    stored: bool,
    reached: frozenset[str] | None,
    missed: frozenset[str],
) -> None:
    """Alice sends to everyone: `here` are the other users with a session on this node,
    `elsewhere` the users on other nodes."""
    elsewhere = {n: nodes for n, nodes in elsewhere.items() if n != "alice"}
    visible = tuple(dict.fromkeys([*here, *elsewhere]))
    targets = Targets.of([(n, i + 1) for i, n in enumerate(here)])
    nodes = tuple(dict.fromkeys(n for ns in elsewhere.values() for n in ns))
    p = route.plan_everyone("alice", targets, visible, encode_names(visible), nodes)
    missed = missed & set(here)
    v = route.settle(
        p,
        stored=stored,
        reached=reached,
        missed=missed,
        everyone_elsewhere=elsewhere,
        registered=frozenset(NAMES),
    )
    delivered, missing, queued = sent(v)
    assert queued == () and v.store_more == ()
    assert set(delivered) | set(missing) == set(visible) and not set(delivered) & set(missing)
    for name in visible:
        ok_here = name in here and name not in missed
        ok_there = any(reached is None or n in reached for n in elsewhere.get(name, ()))
        assert (name in delivered) == (ok_here or ok_there), name
