"""`--history N`: how many pages are asked for, with which `before`, and what is printed."""

from __future__ import annotations

from chat.client.linehistory import HistoryFetch
from chat.shared.messages import Msg


def page(*ids: int) -> tuple[Msg, ...]:
    return tuple(Msg(i, "bob", "*", f"m{i}", float(i)) for i in ids)


def test_n_over_200_is_fetched_in_pages_before_the_oldest_id() -> None:
    f = HistoryFetch("*", 450)
    assert f.next_page() == (None, 200)
    f.add(page(*range(301, 501)), True)
    assert f.next_page() == (301, 200)
    f.add(page(*range(101, 301)), True)
    assert f.next_page() == (101, 50)
    f.add(page(*range(51, 101)), True)
    assert f.next_page() is None
    assert [m.id for m in f.result()] == list(range(51, 501))


def test_fewer_than_n_is_what_exists() -> None:
    f = HistoryFetch("bob", 100)
    f.add(page(3, 4, 9), False)
    assert f.next_page() is None
    assert [m.id for m in f.result()] == [3, 4, 9]


def test_an_empty_history_prints_nothing() -> None:
    f = HistoryFetch("*", 5)
    f.add((), False)
    assert f.done and f.result() == []


def test_a_page_with_nothing_new_ends_the_fetch_instead_of_looping() -> None:
    f = HistoryFetch("*", 10)
    f.add(page(5, 6), True)
    f.add(page(5, 6), True)  # a server that ignored `before`
    assert f.done and [m.id for m in f.result()] == [5, 6]


def test_more_than_asked_keeps_the_newest_n() -> None:
    f = HistoryFetch("*", 2)
    f.add(page(1, 2, 3), True)
    assert f.done and [m.id for m in f.result()] == [2, 3]
