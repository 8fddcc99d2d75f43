"""The screen model and the user's attention: the recipients, the bell, unread counts,
the reconnect countdown, and messages typed while disconnected."""

from __future__ import annotations

from chat.client import events as ev
from chat.client.history import WAITING
from chat.client.model import ONLINE, RECONNECTING, ChatModel
from chat.shared.messages import Msg


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def online_model(*users: str, clock: Clock | None = None) -> ChatModel:
    m = ChatModel("127.0.0.1", 7777, clock=clock or Clock())
    m.begin_login("alice", "127.0.0.1", 7777, register=False)
    m.apply(ev.LoggedIn("alice", users, False))
    return m


def notes(m: ChatModel) -> list[str]:
    return [e.text for e in m.history.entries]


def test_a_reconnect_keeps_the_buffer_on_screen_whoever_is_back() -> None:
    m = online_model("bob", "carol")
    m.open_query(("bob", "carol"))
    m.apply(ev.Disconnected("the server said bye (shutdown)", 1.0))
    assert not m.participants.connected
    m.apply(ev.LoggedIn("alice", ("carol",), False))
    assert m.target() == ("bob", "carol")
    assert m.describe_target() == "bob (offline), carol"
    assert m.current.lines.entries[-1].text == "offline: bob (messages are kept for them)"


def test_the_bell_rings_for_private_group_and_mentions_once_per_message() -> None:
    m = online_model("bob")
    m.apply(ev.Incoming(Msg(1, "bob", "*", "lunch?", 0.0)))
    assert not m.take_bell()
    m.apply(ev.Incoming(Msg(2, "bob", ("alice",), "psst", 0.0)))
    assert m.take_bell() and not m.take_bell()
    m.apply(ev.Incoming(Msg(2, "bob", ("alice",), "psst", 0.0, offline=True)))  # a repeat
    assert not m.take_bell()
    m.apply(ev.Incoming(Msg(3, "bob", "*", "ask Alice", 0.0)))
    assert m.take_bell()
    m.apply(ev.Incoming(Msg(4, "bob", ("alice", "carol"), "group", 0.0)))
    assert m.take_bell()


def test_history_pages_never_ring_nor_count_as_unread_without_read_markers() -> None:
    m = online_model("bob")
    m.open_query(("bob",), switch=False)
    for want in m.take_wants():
        m.apply(
            ev.HistoryLoaded(want.id, "bob", None, (Msg(9, "bob", ("alice",), "old", 0.0),), False)  # type: ignore[union-attr]
        )
    assert not m.take_bell() and m.buffers.get("bob").unread_count() == 0  # type: ignore[union-attr]


def test_unread_counts_per_buffer_until_the_user_looks_at_it() -> None:
    m = online_model("bob", "carol")
    m.apply(ev.Incoming(Msg(1, "bob", ("alice",), "one", 0.0)))
    m.apply(ev.Incoming(Msg(2, "bob", ("alice",), "two", 0.0)))
    m.apply(ev.Incoming(Msg(3, "carol", ("alice", "bob"), "three", 0.0)))
    bob, group = m.buffers.get("bob"), m.buffers.get("bob,carol")
    assert bob is not None and group is not None
    assert (bob.counts(), group.counts(), bob.activity()) == ("(2)", "(1)", "@")
    m.sending(7, ("bob", "carol"), "hi")  # writing to the group: the group is read
    assert (bob.unread_count(), group.unread_count()) == (2, 0)
    m.switch("bob")
    m.take_wants()  # the buffer on screen shows its newest line: read
    assert bob.unread_count() == 0
    m.apply(ev.Incoming(Msg(4, "bob", ("alice",), "in view", 0.0)))
    assert bob.unread_count() == 0  # on screen, at its newest line
    bob.lines.window(80, 5)
    bob.lines.scroll_by(1)  # scrolled up: not looking at the newest line
    bob.lines.window(80, 5)
    m.apply(ev.Incoming(Msg(5, "bob", ("alice",), "while scrolled up", 0.0)))
    m.take_wants()
    assert bob.unread_count() == 1


def test_mentions_are_counted_apart_in_all_and_rooms() -> None:
    m = online_model("bob")
    m.open_query(("bob",))
    m.apply(ev.Incoming(Msg(1, "bob", "*", "lunch?", 0.0)))
    m.apply(ev.Incoming(Msg(2, "bob", "*", "alice, you too?", 0.0)))
    everyone = m.buffers.get("*")
    assert everyone is not None and everyone.counts() == "(2, @1)"
    assert everyone.activity() == "@"


def test_the_status_line_counts_down_to_the_next_attempt_first() -> None:
    clock = Clock()
    m = online_model("bob", clock=clock)
    m.apply(ev.Disconnected("connection lost", 4.0))
    assert m.state == RECONNECTING
    assert m.status_text() == "reconnecting in 4s | alice @ 127.0.0.1:7777 | connection lost"
    clock.now += 2.5
    assert m.status_text().startswith("reconnecting in 2s | ")
    m.apply(ev.ConnectFailed("connection refused by 127.0.0.1:7777", 8.0))
    assert m.status_text() == (
        "reconnecting in 8s | alice @ 127.0.0.1:7777 | connection refused by 127.0.0.1:7777"
    )
    m.apply(ev.LoggedIn("alice", (), False))
    assert m.state == ONLINE and m.status_text().startswith("online | ")


def test_a_message_typed_while_disconnected_waits_and_goes_at_the_login() -> None:
    m = online_model("bob")
    m.apply(ev.Disconnected("connection lost", 1.0))
    m.sending(1, ("bob",), "later")
    entry = m.history.entries[-1]  # said in All, on screen, too
    assert entry.status == WAITING
    m.apply(ev.LoggedIn("alice", ("bob",), False))
    assert entry.status == "sending"
    m.apply(ev.Delivered(1, ("bob",), ()))
    assert entry.status == "delivered: bob"


def test_query_and_who_say_what_they_did() -> None:
    m = online_model("bob", "carol")
    m.open_query(("dave", "alice", "bob"))
    assert m.target() == ("bob", "dave")
    m.who()
    assert [e.text for e in m.current.lines.entries][-2:] == [
        "online (3): alice, bob, carol",
        "messages go to: bob, dave (offline)",
    ]
    m.switch("*")
    assert m.target() == "*"


def test_another_user_in_the_same_window_starts_with_only_all() -> None:
    m = online_model("bob")
    m.open_query(("bob",))
    m.logged_out()
    assert m.target() == ("bob",)  # a log out is not a change of mind
    m.begin_login("carol", "127.0.0.1", 7777, register=False)
    assert m.target() == "*" and len(m.buffers) == 1


def test_messages_waiting_for_a_reconnect_that_will_not_come_say_not_sent() -> None:
    m = online_model("bob")
    m.apply(ev.Disconnected("connection lost", 1.0))
    m.sending(1, ("bob",), "later")
    m.apply(ev.LoginFailed("bad_credentials", "invalid user name or password"))
    m.apply(ev.Disconnected("login refused", None))
    entry = m.history.entries[[e.text for e in m.history.entries].index("later")]
    assert (entry.status, entry.style) == ("not sent: not connected", "error")
