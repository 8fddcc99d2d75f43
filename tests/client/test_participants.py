"""The participant list: the current buffer on top, its people below, ticks to form a group."""

from __future__ import annotations

from chat.client.participants import ALL, Participants


def people(*names: str) -> Participants:
    p = Participants()
    p.reset(names)
    return p


def test_in_all_the_buffer_is_on_top_and_everyone_online_below_sorted() -> None:
    p = people("carol", "bob")
    assert p.rows() == [ALL, "bob", "carol"]
    assert p.is_checked(0) and not p.is_checked(1)  # nobody ticked: to the buffer


def test_a_rooms_members_online_first_then_offline() -> None:
    p = people("carol", "bob")
    p.show("#dev", ["dave", "bob", "carol", "abe"])
    assert p.rows() == ["#dev", "bob", "carol", "abe", "dave"]
    assert p.label(3) == "abe (offline)"
    p.apply(joined=("dave",), left=("carol",))
    assert p.rows() == ["#dev", "bob", "dave", "abe", "carol"]


def test_ticking_people_then_enter_picks_them_and_the_ticks_go() -> None:
    p = people("bob", "carol", "dave")
    p.toggle(1)
    p.toggle(3)
    assert not p.is_checked(0) and p.is_checked(1) and p.is_checked(3)
    assert p.picked() == ("bob", "dave")
    assert p.ticked == set() and p.is_checked(0)


def test_enter_with_nothing_ticked_picks_the_row_or_nothing_on_top() -> None:
    p = people("bob", "carol")
    p.cursor = 2
    assert p.picked() == ("carol",)
    p.cursor = 0
    assert p.picked() is None


def test_space_on_the_top_row_clears_the_ticks_and_leaving_takes_them() -> None:
    p = people("bob", "carol")
    p.toggle(1)
    p.toggle(0)
    assert p.take_ticked() is None
    p.toggle(2)
    assert p.take_ticked() == ("carol",) and p.take_ticked() is None


def test_the_cursor_follows_its_name_when_rows_shift() -> None:
    p = people("bob", "carol")
    p.cursor = 2  # carol
    p.apply(joined=("alice", "aaron"), left=())
    assert p.rows()[p.cursor] == "carol"


def test_cursor_stays_in_range_when_its_user_leaves() -> None:
    p = people("bob", "carol")
    p.cursor = 2
    p.apply(joined=(), left=("carol",))
    assert p.cursor == 1
    p.move(10)
    assert p.cursor == 1
    p.move(-10)
    assert p.cursor == 0


def test_ticks_of_people_no_longer_shown_go() -> None:
    p = people("bob", "carol")
    p.toggle(1)
    p.show("#dev", ["carol"])
    assert p.ticked == set()


def test_offline_is_said_only_after_a_roster_came() -> None:
    p = Participants()
    p.show("bob", ["bob"])
    assert p.describe(["bob"]) == "bob"  # not known yet: not "offline"
    p.reset(["carol"])
    assert p.describe(["bob", "carol"]) == "bob (offline), carol"


def test_disconnected_keeps_the_list_log_out_empties_it_another_user_forgets_ticks() -> None:
    p = people("bob")
    p.disconnected()
    assert not p.connected and p.rows() == [ALL, "bob"]
    p.clear()
    assert p.rows() == [ALL]
    p.reset(["bob"])
    p.toggle(1)
    p.forget()
    assert p.ticked == set() and p.rows() == [ALL]
