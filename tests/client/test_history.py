"""The message history: markers, own-message status, wrapping and scrolling."""

from __future__ import annotations

from chat.client.history import History
from chat.client.textwidth import text_width
from chat.shared.messages import Msg


def texts(h: History, width: int = 200, height: int = 50) -> list[str]:
    return [line.text for line in h.window(width, height)]


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
    shown = texts(h, height=5)
    assert shown[0].endswith("n15") and "more lines below" in shown[-1]
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
