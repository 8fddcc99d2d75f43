"""The participants list: "All" on top, selection kept by name across roster changes."""

from __future__ import annotations

from chat.client.participants import ALL, Participants


def people(*names: str) -> Participants:
    p = Participants()
    p.reset(names)
    return p


def test_all_is_on_top_and_users_are_sorted() -> None:
    assert people("carol", "bob").rows() == [ALL, "bob", "carol"]


def test_nothing_selected_means_all() -> None:
    p = people("bob")
    assert p.recipients() == "*"
    assert p.is_checked(0) and not p.is_checked(1)


def test_one_selected_user_is_a_private_message_and_several_a_group() -> None:
    p = people("bob", "carol", "dave")
    p.toggle(1)
    assert p.recipients() == ("bob",)
    p.toggle(3)
    assert p.recipients() == ("bob", "dave")
    assert not p.is_checked(0)


def test_toggling_all_clears_the_selection() -> None:
    p = people("bob", "carol")
    p.toggle(1)
    p.toggle(0)
    assert p.recipients() == "*"


def test_select_only_replaces_the_selection() -> None:
    p = people("bob", "carol")
    p.toggle(1)
    p.cursor = 2
    p.select_only()
    assert p.recipients() == ("carol",)


def test_a_selected_user_who_leaves_is_dropped_and_reported() -> None:
    p = people("bob", "carol")
    p.toggle(1)
    p.toggle(2)
    assert p.apply(joined=(), left=("bob",)) == ["bob"]
    assert p.recipients() == ("carol",)
    assert p.apply(joined=("erin",), left=()) == []


def test_selection_follows_the_name_when_rows_shift() -> None:
    p = people("bob", "carol")
    p.cursor = 2  # carol
    p.toggle()
    p.apply(joined=("alice", "aaron"), left=())
    assert p.rows()[p.cursor] == "carol"
    assert p.recipients() == ("carol",)


def test_cursor_stays_in_range_when_its_user_leaves() -> None:
    p = people("bob", "carol")
    p.cursor = 2
    p.apply(joined=(), left=("carol",))
    assert p.cursor == 1
    p.move(10)
    assert p.cursor == 1
    p.move(-10)
    assert p.cursor == 0


def test_full_roster_after_reconnect_drops_who_is_gone() -> None:
    p = people("bob", "carol")
    p.toggle(1)
    assert p.reset(["carol"]) == ["bob"]
    assert p.recipients() == "*"


def test_clear_forgets_everyone() -> None:
    p = people("bob")
    p.toggle(1)
    p.clear()
    assert p.rows() == [ALL] and p.recipients() == "*"
