"""The message history: markers, own-message status, wrapping, scrolling, merging by id."""

from __future__ import annotations

import time

from chat.client.history import AWAY, UNREAD, WAITING, History
from chat.client.textwidth import text_width
from chat.shared.messages import Msg


def texts(h: History, width: int = 200, height: int = 50) -> list[str]:
    """The lines shown, without the date separators (tested on their own)."""
    return [line.text for line in h.window(width, height) if line.style != "day"]


def test_broadcast_private_and_group_messages_are_marked() -> None:
    h = History(me="alice")
    h.incoming(Msg(1, "bob", "*", "to all", 0.0))
    h.incoming(Msg(2, "bob", ("alice",), "just you", 0.0))
    h.incoming(Msg(3, "bob", ("alice", "carol"), "a few", 0.0))
    shown = [t[9:] for t in texts(h)]
    assert shown == ["bob: to all", "[private] bob: just you", "[group: alice, carol] bob: a few"]


def test_own_messages_show_who_got_them_and_who_was_missing() -> None:
    h = History(me="alice")
    h.outgoing(1, ("bob", "carol"), "hi")
    assert texts(h)[-1].endswith("[group: bob, carol] alice: hi  [sending]")
    h.delivered(1, ["bob"], ["carol"])
    assert texts(h)[-1].endswith("[delivered: bob | missing: carol]")


def test_own_message_refused_or_unconfirmed() -> None:
    h = History(me="alice")
    h.outgoing(1, "*", "a")
    h.outgoing(2, ("bob",), "b")
    h.refused(1, "slow down")
    h.unconfirmed([2])
    out = texts(h)
    assert out[0].endswith("[not sent: slow down]")
    assert "[private to bob]" in out[1] and out[1].endswith("[not confirmed: connection lost]")


def test_long_lines_wrap_within_the_width() -> None:
    h = History(me="alice")
    h.incoming(Msg(1, "bob", "*", "слово 字 " * 40, 0.0))
    lines = texts(h, width=30)
    assert len(lines) > 5
    assert all(text_width(line) <= 30 for line in lines)
    assert all(line.startswith(" " * 9) for line in lines[1:])


def test_scrolling_shows_older_lines_and_clamps() -> None:
    h = History(me="a")
    for i in range(30):
        h.note(f"n{i}")
    assert texts(h, height=5)[-1].endswith("n29")
    h.scroll_by(10)
    shown = texts(h, height=5)  # 4 lines, then how many are below them
    assert shown[0].endswith("n16") and shown[3].endswith("n19")
    assert shown[-1] == "-- 10 more lines below (End) --"
    h.scroll_by(1000)
    assert texts(h, height=5)[0].endswith("n0")
    h.scroll_to_end()
    assert texts(h, height=5)[-1].endswith("n29")


def test_history_is_bounded() -> None:
    h = History(me="a", limit=10)
    for i in range(25):
        h.outgoing(i, "*", f"m{i}")
    assert len(h.entries) == 10
    assert set(h.own) == set(range(15, 25))


def test_tiny_sizes_do_not_fail() -> None:
    h = History(me="a")
    h.note("hello 你好")
    assert h.window(0, 5) == [] and h.window(5, 0) == []
    assert all(text_width(line.text) <= 2 for line in h.window(1, 100))


# ------------------------------------------------------------------ v1.1
def local(year: int, month: int, day: int, hour: int = 12) -> float:
    return time.mktime((year, month, day, hour, 0, 0, 0, 0, -1))


def msg(msg_id: int, ts: float = 0.0, sender: str = "bob", to: object = "*", **kw: object) -> Msg:
    return Msg(msg_id, sender, to, f"m{msg_id}", ts or float(msg_id), **kw)  # type: ignore[arg-type]


def all_texts(h: History, width: int = 200, height: int = 50) -> list[str]:
    return [line.text for line in h.window(width, height)]


def test_a_date_separator_goes_above_the_first_line_and_wherever_the_day_changes() -> None:
    h = History(me="alice")
    h.merge(
        [msg(1, local(2025, 3, 3, 23)), msg(2, local(2025, 3, 4, 1)), msg(3, local(2025, 3, 4))]
    )
    lines = h.window(200, 50)
    assert [
        (line.style, line.text[9:] if line.style != "day" else line.text) for line in lines
    ] == [
        ("day", "-- Mon 2025-03-03 --"),
        ("normal", "bob: m1"),
        ("day", "-- Tue 2025-03-04 --"),
        ("normal", "bob: m2"),
        ("normal", "bob: m3"),
    ]


def test_the_same_message_live_and_in_a_page_is_one_line() -> None:
    h = History(me="alice")
    assert h.incoming(msg(5))
    assert not h.incoming(msg(5))
    assert h.merge([msg(4), msg(5), msg(6)]) == 2
    assert [t[9:] for t in texts(h)] == ["bob: m4", "bob: m5", "bob: m6"]


def test_older_pages_go_above_the_oldest_message_and_newer_ones_before_the_anchor() -> None:
    h = History(me="alice")
    h.note("welcome")
    h.anchor_at_top()
    h.merge([msg(10), msg(11)])  # the first backfill: above everything
    login = h.note("reconnected")
    h.anchor_at(login)
    h.incoming(msg(20))  # live, after the login note
    h.merge([msg(12), msg(13), msg(20)])  # missed while away: before the reconnect note
    h.merge([msg(8), msg(9)])  # an older page: on top
    assert [t[9:] for t in texts(h)] == [
        "bob: m8",
        "bob: m9",
        "bob: m10",
        "bob: m11",
        "* welcome",
        "bob: m12",
        "bob: m13",
        "* reconnected",
        "bob: m20",
    ]


def test_history_never_goes_below_the_anchor_among_offline_messages() -> None:
    h = History(me="alice")
    login = h.note("logged in")
    h.anchor_at(login)
    h.incoming(msg(30, to=("alice",), offline=True))
    h.merge([msg(10), msg(40)])
    assert [t[9:] for t in texts(h)] == [
        "bob: m10",
        "bob: m40",
        "* logged in",
        f"[private] bob: m30  {AWAY}",
    ]


def test_our_own_message_in_a_page_takes_the_id_of_the_line_already_shown() -> None:
    h = History(me="alice")
    h.outgoing(1, ("bob",), "hi")
    h.delivered(1, ["bob"], [])
    h.merge([Msg(77, "alice", ("bob",), "hi", 5.0), Msg(78, "alice", ("bob",), "again", 6.0)])
    assert [t[9:] for t in texts(h)] == [
        "[private to bob] alice: hi  [delivered: bob]",
        "[private to bob] alice: again",
    ]
    assert h.merge([Msg(77, "alice", ("bob",), "hi", 5.0)]) == 0


def test_offline_messages_are_marked_while_you_were_away() -> None:
    h = History(me="alice")
    h.incoming(msg(3, to=("alice",), offline=True))
    h.incoming(msg(4, to=("alice",)))
    assert [t[9:] for t in texts(h)] == [f"[private] bob: m3  {AWAY}", "[private] bob: m4"]
    assert AWAY == "(while you were away)"


def test_queued_recipients_are_shown_as_queued_and_unknown_ones_as_missing() -> None:
    h = History(me="alice")
    h.outgoing(1, ("bob",), "a")
    h.outgoing(2, ("bob", "carol", "ghost"), "b")
    h.outgoing(3, ("ghost",), "c")
    h.delivered(1, [], ["bob"], ["bob"])
    h.delivered(2, ["carol"], ["bob", "ghost"], ["bob"])
    h.delivered(3, [], ["ghost"], [])
    out = texts(h)
    assert out[0].endswith("[queued for bob (offline)]") and "missing" not in out[0]
    assert out[1].endswith("[delivered: carol | queued for bob (offline) | missing: ghost]")
    assert out[2].endswith("[missing: ghost]")
    assert [e.style for e in h.entries] == ["own", "own", "error"]


def test_scrolling_up_past_the_oldest_line_asks_for_older_history_once_there() -> None:
    h = History(me="alice")
    h.merge([msg(i) for i in range(10, 30)])
    h.window(80, 5)
    h.scroll_by(1)
    assert not h.older_wanted  # not at the top yet
    h.scroll_by(1000)
    h.window(80, 5)
    assert h.at_top and not h.older_wanted
    h.scroll_by(1)
    assert h.older_wanted


def test_an_older_page_keeps_the_lines_the_user_was_looking_at() -> None:
    h = History(me="alice")
    h.merge([msg(i) for i in range(10, 30)])
    h.scroll_by(1000)
    before = all_texts(h, 80, 5)
    h.scroll_by(5)  # the key that asks for the older page does not move the view
    h.banner = "loading history..."
    h.merge([msg(i) for i in range(1, 10)])
    h.banner = ""
    after = all_texts(h, 80, 5)
    assert after[1:] == before[1:]  # the same lines where they were (the top one was the date)
    assert after[0].endswith("bob: m9")


def test_the_banner_is_the_top_line_when_the_oldest_line_is_in_view() -> None:
    h = History(me="alice", banner="beginning of the history")
    h.merge([msg(1)])
    assert all_texts(h)[0] == "-- beginning of the history --"
    h.merge([msg(i) for i in range(2, 40)])
    assert "-- beginning of the history --" not in all_texts(h, 80, 5)


def test_pages_asked_for_are_kept_on_top_of_the_limit() -> None:
    h = History(me="a", limit=10)
    for i in range(10):
        h.note(f"n{i}")
    h.anchor_at_top()
    h.merge([msg(i) for i in range(1, 6)])
    h.note("one more")
    assert texts(h)[0].endswith("bob: m2") and len(h.entries) == 15


# ------------------------------------------------- scrolled up: the view stays put
def test_scrolled_up_new_lines_do_not_move_the_view_and_the_count_is_exact() -> None:
    h = History(me="alice")
    for i in range(30):
        h.incoming(msg(i + 1))
    h.window(80, 6)
    h.scroll_by(10)
    before = all_texts(h, 80, 6)
    assert before[-1] == "-- 10 more lines below (End) --"
    h.incoming(msg(100))
    after = all_texts(h, 80, 6)
    assert after[:-1] == before[:-1]
    assert after[-1] == "-- 12 more lines below (End) --"  # the marker line and the message
    h.scroll_by(-11)
    assert all_texts(h, 80, 6)[-1] == "-- 1 more line below (End) --"


def test_a_long_message_counts_every_row_it_takes() -> None:
    h = History(me="alice")
    for i in range(20):
        h.incoming(msg(i + 1))
    h.window(40, 5)
    h.scroll_by(3)
    h.window(40, 5)
    h.incoming(Msg(50, "bob", "*", "word " * 30, 50.0))
    rows = len(h.layout(40)[-1].entry.wrapped(40))  # type: ignore[union-attr]
    assert all_texts(h, 40, 5)[-1] == f"-- {3 + 1 + rows} more lines below (End) --"


def test_following_the_newest_line_there_is_no_marker() -> None:
    h = History(me="alice")
    h.incoming(msg(1))
    h.window(80, 5)
    h.incoming(msg(2))
    assert UNREAD not in all_texts(h)


def test_the_marker_stands_above_the_first_message_missed_and_moves_on_next_time() -> None:
    h = History(me="alice")
    for i in range(20):
        h.incoming(msg(i + 1))
    h.window(80, 5)
    h.scroll_by(5)
    h.window(80, 5)
    h.incoming(msg(21))
    h.incoming(msg(22))
    h.scroll_to_end()
    shown = all_texts(h, 80, 10)
    marker = shown.index(UNREAD)
    assert shown[marker + 1].endswith("bob: m21") and shown[marker - 1].endswith("bob: m20")
    h.incoming(msg(23))  # read at the bottom: the marker stays where it was
    assert all_texts(h, 80, 10).index(UNREAD) == marker - 1
    h.scroll_by(3)
    h.window(80, 10)
    h.incoming(msg(24))  # missed again: the marker moves to it
    h.scroll_to_end()
    shown = all_texts(h, 80, 10)
    assert shown[shown.index(UNREAD) + 1].endswith("bob: m24")
    h.all_read()
    assert UNREAD not in all_texts(h, 80, 10)


def test_a_view_not_on_screen_marks_what_arrives_in_it() -> None:
    h = History(me="alice")
    h.incoming(msg(1))
    h.window(80, 5)
    h.on_screen = False
    h.incoming(msg(2))
    h.incoming(Msg(3, "alice", "*", "mine", 3.0))  # our own does not count
    h.on_screen = True
    shown = all_texts(h)
    assert shown[shown.index(UNREAD) + 1].endswith("bob: m2")


def test_a_mention_of_me_is_styled_for_attention() -> None:
    h = History(me="alice")
    h.incoming(Msg(1, "bob", "*", "what does Alice say?", 0.0))
    h.incoming(Msg(2, "bob", "*", "malice", 0.0))
    assert [e.style for e in h.entries] == ["mention", "normal"]


def test_messages_typed_offline_wait_then_go_when_reconnected() -> None:
    h = History(me="alice")
    h.outgoing(1, ("bob",), "later", status=WAITING)
    assert texts(h)[-1].endswith(f"[{WAITING}]")
    h.reconnected()
    assert texts(h)[-1].endswith("[sending]")
