"""Paging a view's history: cursors per peer, and a group's pages merged by id without gaps."""

from __future__ import annotations

from chat.client.backlog import Ask, Backlog
from chat.shared.messages import Msg


def msgs(*ids: int, sender: str = "bob") -> tuple[Msg, ...]:
    return tuple(Msg(i, sender, ("alice",), f"m{i}", float(i)) for i in ids)


def ids(messages: list[Msg] | None) -> list[int]:
    assert messages is not None
    return [m.id for m in messages]


def test_one_peer_newest_page_then_the_page_before_its_oldest_id() -> None:
    b = Backlog(("*",))
    assert b.latest() == [Ask("*", None)]
    assert b.older() == []  # nothing to go back from before the first page
    b.asked("h1", Ask("*", None))
    assert b.older() == []  # still waiting
    assert ids(b.answer("h1", msgs(10, 11, 12), True)) == [10, 11, 12]
    assert b.older() == [Ask("*", 10)]
    b.asked("h2", Ask("*", 10))
    assert b.loading_older
    assert ids(b.answer("h2", msgs(7, 9), False)) == [7, 9]
    assert b.older() == [] and b.complete


def test_an_answer_to_someone_elses_request_is_not_ours() -> None:
    b = Backlog(("*",))
    assert b.answer("h7", msgs(1), False) is None
    assert b.failed("h7") is None


def test_a_newer_page_after_a_reconnect_keeps_the_oldest_and_whether_more_exist() -> None:
    b = Backlog(("*",))
    b.asked("h1", Ask("*", None))
    b.answer("h1", msgs(10, 11), True)
    b.asked("h2", Ask("*", None))  # the next login
    assert ids(b.answer("h2", msgs(11, 12, 13), True)) == [11, 12, 13]
    assert b.older() == [Ask("*", 10)]
    b.asked("h3", Ask("*", None))
    b.answer("h3", msgs(11, 12, 13), False)  # nothing before 11: nothing before 10 either
    assert b.older() == [] and b.complete


def test_an_empty_page_means_nothing_older() -> None:
    b = Backlog(("bob",))
    b.asked("h1", Ask("bob", None))
    assert b.answer("h1", (), False) == []
    assert b.complete and b.older() == []


def test_a_group_waits_for_every_member_and_holds_back_what_could_be_overtaken() -> None:
    b = Backlog(("bob", "carol"))
    b.asked("h1", Ask("bob", None))
    b.asked("h2", Ask("carol", None))
    assert b.answer("h1", msgs(50, 60, 70), True) == []  # carol not heard yet
    # carol's page reaches back to 20, bob's only to 50: 20..49 of carol wait for bob's older page.
    assert ids(b.answer("h2", msgs(20, 55, 65, sender="carol"), True)) == [50, 55, 60, 65, 70]
    assert b.older() == [Ask("bob", 50)]
    b.asked("h3", Ask("bob", 50))
    assert ids(b.answer("h3", msgs(30, 40), True)) == [30, 40]  # carol's 20 still waits
    assert b.older() == [Ask("bob", 30)]
    b.asked("h4", Ask("bob", 30))
    assert ids(b.answer("h4", msgs(10), False)) == [20]  # now carol limits, at 20: 10 waits
    assert b.older() == [Ask("carol", 20)]
    b.asked("h5", Ask("carol", 20))
    assert ids(b.answer("h5", msgs(5, sender="carol"), False)) == [5, 10]
    assert b.complete


def test_a_group_message_in_both_conversations_is_shown_once() -> None:
    b = Backlog(("bob", "carol"))
    b.asked("h1", Ask("bob", None))
    b.asked("h2", Ask("carol", None))
    b.answer("h1", msgs(5, 8), False)
    assert ids(b.answer("h2", msgs(8, 9, sender="carol"), False)) == [5, 8, 9]


def test_a_members_failed_first_page_does_not_block_the_others() -> None:
    b = Backlog(("bob", "carol"))
    b.asked("h1", Ask("bob", None))
    b.asked("h2", Ask("carol", None))
    b.answer("h1", msgs(5, 8), False)
    assert ids(b.failed("h2")) == [5, 8]


def test_a_failed_page_of_one_conversation_can_be_asked_again() -> None:
    b = Backlog(("*",))
    b.asked("h1", Ask("*", None))
    b.answer("h1", msgs(10), True)
    b.asked("h2", Ask("*", 10))
    assert b.failed("h2") == []
    assert b.older() == [Ask("*", 10)]


def test_forgetting_pending_requests_allows_asking_again() -> None:
    b = Backlog(("*",))
    b.asked("h1", Ask("*", None))
    b.answer("h1", msgs(10), True)
    b.asked("h2", Ask("*", 10))
    assert b.older() == []
    b.forget_pending()
    assert b.older() == [Ask("*", 10)]
