"""The TUI model's side of v1.1: backfill, offline messages and their ack, each buffer's
history (a person's, a group's: each member's conversation merged by id, only the group's
messages kept)."""

from __future__ import annotations

from chat.client import events as ev
from chat.client.history import AWAY, UNREAD
from chat.client.model import BEGINNING, LOADING, AckOffline, AskHistory, ChatModel
from chat.shared.messages import Msg


def shown(m: ChatModel, key: str | None = None) -> list[str]:
    """The lines of the buffer on screen (or of buffer `key`), without their time; no date
    separators."""
    view = m.view if key is None else m.buffers.get(key).view  # type: ignore[union-attr]
    lines = view.lines.window(200, 100)
    return [
        line.text if line.style in ("more", "unread") else line.text[9:]
        for line in lines
        if line.style != "day"
    ]


def bcast(msg_id: int, sender: str = "bob") -> Msg:
    return Msg(msg_id, sender, "*", f"m{msg_id}", float(msg_id))


def private(msg_id: int, sender: str = "bob", offline: bool = False) -> Msg:
    return Msg(msg_id, sender, ("alice",), f"p{msg_id}", float(msg_id), offline)


def logged_in(m: ChatModel | None = None, *online: str) -> ChatModel:
    m = m or ChatModel("127.0.0.1", 7777)
    m.begin_login("alice", "127.0.0.1", 7777, register=False)
    m.apply(ev.LoggedIn("alice", online, False))
    return m


def answer(m: ChatModel, want: AskHistory, *messages: Msg, more: bool = False) -> None:
    m.apply(ev.HistoryLoaded(want.id, want.peer, want.before, messages, more))


def test_login_backfills_the_last_page_of_all_and_then_shows_offline_messages_marked() -> None:
    m = ChatModel("127.0.0.1", 7777)
    m.history.note("welcome")
    m = logged_in(m)
    m.apply(ev.Incoming(private(30, offline=True)))
    m.apply(ev.Incoming(private(31, "carol", offline=True)))
    m.apply(ev.CaughtUp(2))
    wants = m.take_wants()
    asks = [w for w in wants if isinstance(w, AskHistory)]
    assert [(a.peer, a.before, a.limit) for a in asks] == [
        ("*", None, 50),
        ("bob", None, 50),  # the buffers the offline messages opened
        ("carol", None, 50),
    ]
    assert wants[-1] == AckOffline(31)  # the highest offline id, once they are in a buffer
    assert m.take_wants() == []  # acknowledged once
    answer(m, asks[0], bcast(10), bcast(12, "alice"), more=True)
    assert shown(m) == [
        "bob: m10",
        "alice: m12",
        "* welcome",
        "* logged in as alice; online: nobody else",
    ]
    # Not on screen when it came: the "new messages" line stands above it.
    assert shown(m, "bob") == [f"-- {LOADING} --", UNREAD, f"[private] bob: p30  {AWAY}"]
    assert shown(m, "carol")[-1] == f"[private] carol: p31  {AWAY}"


def test_a_reconnect_merges_by_id_and_puts_what_was_missed_before_its_note() -> None:
    m = logged_in()
    (ask,) = m.take_wants()
    answer(m, ask, bcast(10), bcast(11), more=False)
    m.apply(ev.Incoming(bcast(12)))
    m.apply(ev.Disconnected("connection lost", 1.0))
    m.apply(ev.LoggedIn("alice", (), False))
    (ask,) = m.take_wants()
    m.apply(ev.Incoming(bcast(15)))  # live, before the page comes back
    answer(m, ask, bcast(10), bcast(11), bcast(12), bcast(13), bcast(14), bcast(15))
    assert shown(m) == [
        f"-- {BEGINNING} --",
        "bob: m10",
        "bob: m11",
        "* logged in as alice; online: nobody else",
        "bob: m12",
        "* disconnected: connection lost; reconnecting in 1s",
        "bob: m13",
        "bob: m14",
        "* reconnected as alice; online: nobody else",
        "bob: m15",
    ]


def test_an_offline_message_delivered_again_is_one_line_and_acked_again() -> None:
    m = logged_in()
    m.apply(ev.Incoming(private(30, offline=True)))
    m.take_wants()
    m.apply(ev.Disconnected("connection lost", 1.0))
    m.apply(ev.LoggedIn("alice", (), False))
    m.apply(ev.Incoming(private(30, offline=True)))
    assert m.take_wants()[-1] == AckOffline(30)
    assert sum("p30" in line for line in shown(m, "bob")) == 1


def test_scrolling_past_the_top_asks_for_the_page_before_the_oldest_message_of_all() -> None:
    m = logged_in()
    (ask,) = m.take_wants()
    m.apply(ev.Incoming(private(3)))  # an older private message (another buffer)
    m.take_wants()
    answer(m, ask, *[bcast(i) for i in range(10, 60)], more=True)
    lines = m.view.lines
    lines.scroll_by(10**6)
    lines.window(80, 10)
    lines.scroll_by(1)
    (older,) = m.take_wants()
    assert (older.peer, older.before) == ("*", 10)
    assert lines.banner == LOADING
    lines.window(80, 10)
    lines.scroll_by(1)
    assert m.take_wants() == []  # one page at a time
    answer(m, older, bcast(8), bcast(9), more=False)
    assert lines.banner == BEGINNING
    assert shown(m)[:3] == [f"-- {BEGINNING} --", "bob: m8", "bob: m9"]


def test_no_history_is_asked_for_while_offline() -> None:
    m = logged_in()
    (ask,) = m.take_wants()
    answer(m, ask, bcast(10), more=True)
    m.apply(ev.Disconnected("the server said bye (shutdown)", None))
    m.view.lines.window(80, 10)
    m.view.lines.scroll_by(1)
    assert m.take_wants() == []


def test_a_persons_buffer_shows_its_conversation_and_its_live_messages() -> None:
    m = logged_in(None, "bob", "carol")
    m.take_wants()
    m.open_query(("bob",))
    (ask,) = m.take_wants()
    assert (ask.peer, ask.before) == ("bob", None)
    assert m.title() == "bob" and m.view.lines.banner == LOADING
    group = Msg(4, "bob", ("alice", "carol"), "a group's", 4.0)  # the group's buffer, not bob's
    answer(m, ask, group, private(5), Msg(6, "alice", ("bob",), "hi bob", 6.0))
    m.apply(ev.Incoming(bcast(20)))  # to all: not part of the conversation
    m.apply(ev.Incoming(private(21, "carol")))
    m.apply(ev.Incoming(private(22)))
    m.sending(1, ("bob",), "yo")
    m.apply(ev.Delivered(1, (), ("bob",), ("bob",)))
    assert shown(m) == [
        f"-- {BEGINNING} --",
        "[private] bob: p5",
        "[private to bob] alice: hi bob",
        "[private] bob: p22",
        "[private to bob] alice: yo  [queued for bob (offline)]",
    ]
    m.switch("*")
    assert m.view is m.main and "bob: m20" in shown(m) and "p21" not in " ".join(shown(m))
    assert shown(m, "carol")[-1] == "[private] carol: p21"


def test_a_groups_buffer_is_each_members_conversation_merged_by_id_its_messages_only() -> None:
    m = logged_in()
    m.take_wants()
    m.open_query(("carol", "bob", "alice"))  # our own name is not a conversation
    asks = m.take_wants()
    assert [(a.peer, a.before) for a in asks] == [("bob", None), ("carol", None)]
    assert m.title() == "bob (offline), carol (offline)"
    group = Msg(7, "bob", ("alice", "carol"), "all three", 7.0)
    answer(m, asks[0], private(5), group)
    assert shown(m) == [f"-- {LOADING} --"]  # carol's page may hold messages between
    answer(m, asks[1], private(6, "carol"), group)
    assert shown(m)[1:] == ["[group: alice, carol] bob: all three"]


def test_answers_for_a_closed_buffer_are_dropped() -> None:
    m = logged_in()
    m.take_wants()
    m.open_query(("bob",))
    (ask,) = m.take_wants()
    assert m.close() is None
    before = shown(m)
    answer(m, ask, private(5))
    assert shown(m) == before and m.buffers.get("bob") is None


def test_a_refused_history_request_is_told_in_its_buffer() -> None:
    m = logged_in()
    m.take_wants()
    m.open_query(("bob",))
    (ask,) = m.take_wants()
    m.apply(ev.HistoryFailed(ask.id, "bob", None, "bad_request", "nope"))
    assert shown(m)[-1] == "* no history of bob: nope (bad_request)"


def test_logging_in_as_someone_else_shows_nothing_of_the_previous_user() -> None:
    m = logged_in()
    m.apply(ev.Incoming(private(5)))
    m.logged_out()
    m.begin_login("bob", "127.0.0.1", 7777, register=False)
    assert not any("p5" in line for line in shown(m))


def test_log_out_forgets_requests_that_will_never_be_answered() -> None:
    m = logged_in()
    (ask,) = m.take_wants()
    answer(m, ask, bcast(10), more=True)
    m.view.lines.window(80, 10)
    m.view.lines.scroll_by(1)
    assert len(m.take_wants()) == 1
    m.logged_out()
    m = logged_in(m)
    (ask,) = m.take_wants()
    assert (ask.peer, ask.before) == ("*", None)
    answer(m, ask, bcast(10), more=True)
    m.view.lines.window(80, 10)
    m.view.lines.scroll_by(1)
    assert [(a.peer, a.before) for a in m.take_wants()] == [("*", 10)]
