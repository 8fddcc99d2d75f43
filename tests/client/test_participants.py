"""The participants list: "All" on top; a selection kept by name that never widens by itself."""

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


def test_a_selected_user_who_leaves_stays_selected_and_listed_as_offline() -> None:
    p = people("bob", "carol")
    p.toggle(1)
    p.toggle(2)
    assert p.apply(joined=(), left=("bob",)) == ["bob"]
    assert p.recipients() == ("bob", "carol")
    assert p.describe_target() == "bob (offline), carol"
    assert p.rows() == [ALL, "bob", "carol"] and p.label(1) == "bob (offline)"
    assert p.apply(joined=("erin",), left=()) == []
    assert p.apply(joined=("bob",), left=()) == []
    assert p.describe_target() == "bob, carol"


def test_someone_who_leaves_unselected_goes_from_the_list() -> None:
    p = people("bob", "carol")
    assert p.apply(joined=(), left=("bob",)) == []
    assert p.rows() == [ALL, "carol"]


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


def test_a_full_roster_after_a_reconnect_keeps_the_group() -> None:
    p = people("alice", "bob")
    p.toggle(1)
    p.toggle(2)
    p.disconnected()
    assert not p.connected and p.recipients() == ("alice", "bob")
    assert p.reset(["bob"]) == ["alice"]
    assert p.connected and p.recipients() == ("alice", "bob")
    assert p.describe_target() == "alice (offline), bob"


def test_log_out_keeps_the_selection_another_user_forgets_it() -> None:
    p = people("bob")
    p.toggle(1)
    p.clear()
    assert p.recipients() == ("bob",) and p.online == []
    p.forget()
    assert p.rows() == [ALL] and p.recipients() == "*"


def test_unread_counts_until_the_person_is_selected() -> None:
    p = people("bob", "carol")
    p.add_unread("bob")
    p.add_unread("bob")
    assert p.label(1) == "bob (2)"
    p.apply(joined=(), left=("bob",))
    assert p.rows() == [ALL, "bob", "carol"] and p.label(1) == "bob (2, offline)"
    p.select_only(1)
    assert p.recipients() == ("bob",) and p.label(1) == "bob (offline)"
    p.select(())
    assert p.rows() == [ALL, "carol"]


def test_select_names_people_who_are_not_listed() -> None:
    p = people("bob")
    p.select(["dave"])
    assert p.rows() == [ALL, "bob", "dave"] and p.describe_target() == "dave (offline)"
    p.select([])
    assert p.recipients() == "*" and p.rows() == [ALL, "bob"]
