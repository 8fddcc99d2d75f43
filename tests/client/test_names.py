"""Names as people see them: natural order, look-alikes marked, long names cut with "…"."""

from __future__ import annotations

import pytest

from chat.client.names import MARK, LookAlikes, natural_sorted, skeleton
from chat.client.participants import Participants
from chat.client.textwidth import ellipsize, text_width


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("alice", "Alice"),
        ("alice", "a1ice"),
        ("alice", "aIice"),
        ("bob0", "bobO"),
        ("mary", "rnary"),
        ("will", "vvill"),
        ("dan", "clan"),
        ("sam5", "samS"),
        ("z2", "zz"),
    ],
)
def test_look_alike_names_share_a_skeleton(a: str, b: str) -> None:
    assert skeleton(a) == skeleton(b)


@pytest.mark.parametrize(("a", "b"), [("alice", "alice_"), ("bob", "rob"), ("a.b", "a-b")])
def test_different_names_do_not(a: str, b: str) -> None:
    assert skeleton(a) != skeleton(b)


def test_both_look_alikes_are_marked_but_never_your_own_name() -> None:
    looks = LookAlikes(me="alice")
    assert looks.add("alice", "bob") == []
    assert looks.show("bob") == "bob"
    assert looks.add("a1ice") == [("a1ice", ["alice"])]
    assert looks.show("a1ice") == f"{MARK}a1ice" and looks.show("alice") == "alice"
    version = looks.version
    assert looks.add("Alice") == [("Alice", ["a1ice", "alice"])]
    assert looks.version > version
    assert looks.add("Alice") == []  # once is enough
    assert looks.groups() == [["a1ice", "Alice", "alice"]]  # equal but for case: A first
    other = LookAlikes(me="carol")
    other.add("alice", "Alice")
    assert other.show("alice") == f"{MARK}alice"


def test_natural_order_puts_x2_before_x10_and_ignores_case() -> None:
    assert natural_sorted(["x10", "x11", "x2", "Bob", "alice", "x1"]) == [
        "alice",
        "Bob",
        "x1",
        "x2",
        "x10",
        "x11",
    ]


def test_the_list_is_in_natural_order() -> None:
    p = Participants()
    p.reset(["x10", "x2", "x11", "x1"])
    assert p.rows() == ["All", "x1", "x2", "x10", "x11"]


def test_a_cut_ends_with_an_ellipsis_and_fits() -> None:
    assert ellipsize("short", 10) == "short"
    assert ellipsize("a_very_long_name_indeed", 10) == "a_very_lo…"
    assert text_width(ellipsize("你好你好你好", 5)) <= 5


def test_a_long_name_in_the_list_is_cut_with_an_ellipsis_and_its_marks_stay() -> None:
    p = Participants()
    long = "averyveryverylongname_32chars_xx"
    p.reset(["bob"])
    p.connected_once = True
    p.show("#dev", [long, "bob"])  # a room's members: the offline one after bob
    row = p.rows().index(long)
    label = p.label(row, 20)
    assert label.endswith("… (offline)") and text_width(label) == 20
    assert label.startswith("averyv")
    assert p.label(row) == f"{long} (offline)"  # no width: whole


def test_the_list_marks_look_alikes() -> None:
    looks = LookAlikes(me="carol")
    p = Participants(looks)
    p.reset(["alice", "a1ice", "bob"])
    looks.add("alice", "a1ice", "bob")
    labels = [p.label(row) for row in range(len(p.rows()))]
    assert labels == ["All", f"{MARK}a1ice", f"{MARK}alice", "bob"]
