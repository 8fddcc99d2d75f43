"""The TUI model and protocol v1.2: buffers per conversation, read markers that agree
across sessions, your own messages from other sessions, rooms and their events with the
smart filter, typing, the directory, search (no terminal needed)."""

from __future__ import annotations

from chat.client import events as ev
from chat.client.history import UNREAD
from chat.client.model import (
    SMART_FILTER_SECONDS,
    AskHistory,
    ChatModel,
    MarkRead,
    SendRequest,
)
from chat.shared.messages import (
    Invitation,
    Marker,
    Msg,
    RoomCreate,
    RoomEvent,
    RoomJoin,
    RoomState,
    UserSearch,
)

FEATURES = frozenset({"rooms", "read", "echo", "typing"})


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def v12(*online: str, features: frozenset[str] = FEATURES, wall: Clock | None = None) -> ChatModel:
    m = ChatModel("127.0.0.1", 7777, clock=Clock(), wall=wall or Clock(10_000.0))
    m.begin_login("alice", "127.0.0.1", 7777, register=False)
    m.apply(ev.LoggedIn("alice", online, False, features))
    return m


def reads(wants: list) -> list[tuple[str, int]]:
    return [(w.peer, w.upto) for w in wants if isinstance(w, MarkRead)]


def texts(m: ChatModel, key: str) -> list[str]:
    buffer = m.buffers.get(key)
    assert buffer is not None, key
    return [line.text[9:] for line in buffer.lines.window(200, 100) if line.style != "day"]


def room(name: str = "#dev", *members: str, last: int = 0) -> RoomState:
    return RoomState(name, "plans", False, "bob", tuple(members or ("alice", "bob")), last)


def test_a_private_message_opens_the_senders_buffer_and_never_changes_the_recipient() -> None:
    m = v12("bob")
    m.apply(ev.Incoming(Msg(5, "bob", ("alice",), "sure?", 1.0)))
    assert m.target() == "*" and m.current.name == "All"
    bob = m.buffers.get("bob")
    assert bob is not None and bob.counts() == "(1)" and bob.activity() == "@"
    assert m.take_bell()


def test_looking_at_a_buffer_sends_its_read_marker_and_arrival_alone_does_not() -> None:
    m = v12("bob")
    m.take_wants()
    m.apply(ev.Incoming(Msg(5, "bob", ("alice",), "one", 1.0)))
    m.apply(ev.Incoming(Msg(6, "bob", ("alice",), "two", 2.0)))
    assert reads(m.take_wants()) == []  # it arrived; nobody looked at it
    m.switch("bob")
    assert reads(m.take_wants()) == [("bob", 6)]
    assert m.buffers.get("bob").unread_count() == 0  # type: ignore[union-attr]
    assert reads(m.take_wants()) == []  # said once


def test_markers_at_login_count_unread_and_a_page_makes_the_count_exact() -> None:
    m = v12("bob")
    m.apply(ev.RoomsState((room(last=12),), ()))
    m.apply(ev.MarkersLoaded((Marker("#dev", 10, 12, 2), Marker("bob", 0, 3, 1))))
    dev, bob = m.buffers.get("#dev"), m.buffers.get("bob")
    assert dev is not None and bob is not None
    assert (dev.counts(), bob.counts()) == ("(2)", "(1)")  # the server's counts, not loaded
    asks = {w.peer: w for w in m.take_wants() if isinstance(w, AskHistory)}
    page = (
        Msg(10, "bob", "#dev", "read already", 1.0),
        Msg(11, "bob", "#dev", "new one", 2.0),
        Msg(12, "carol", "#dev", "alice: and you?", 3.0),
    )
    m.apply(ev.HistoryLoaded(asks["#dev"].id, "#dev", None, page, False))
    assert dev.counts() == "(2, @1)"  # now from the messages themselves, a mention among them
    shown = [line.text for line in dev.lines.window(200, 100)]
    assert shown[-3] == UNREAD and shown[-2].endswith("bob: new one")  # the markers' line


def test_reading_on_another_session_clears_the_count_here() -> None:
    m = v12("bob")
    m.apply(ev.RoomsState((room(),), ()))
    m.take_wants()
    m.apply(ev.Incoming(Msg(20, "bob", "#dev", "hello room", 1.0)))
    m.apply(ev.Incoming(Msg(21, "bob", "#dev", "anyone?", 2.0)))
    dev = m.buffers.get("#dev")
    assert dev is not None and dev.counts() == "(2)"
    m.apply(ev.ReadMoved("#dev", 20))
    assert dev.counts() == "(1)"
    m.apply(ev.ReadMoved("#DEV", 21))  # the room whatever its case
    assert dev.counts() == "" and dev.activity() == " "
    assert UNREAD not in [line.text for line in dev.lines.window(200, 100)]  # read elsewhere


def test_a_read_never_passes_a_message_still_unread_in_another_buffer() -> None:
    m = v12("bob", "carol")
    m.take_wants()
    m.apply(ev.Incoming(Msg(5, "bob", ("alice", "carol"), "in the group", 1.0)))
    m.apply(ev.Incoming(Msg(6, "bob", ("alice",), "private", 2.0)))
    m.switch("bob")  # bob's conversation holds the group message too (v1.2 section 3)
    assert reads(m.take_wants()) == [("bob", 4)]
    m.switch("bob,carol")  # now all of it is seen
    assert reads(m.take_wants()) == [("bob", 6)]


def test_my_message_from_another_session_is_my_line_in_its_buffer() -> None:
    m = v12("bob")
    m.take_wants()
    m.apply(ev.Incoming(Msg(8, "alice", ("bob",), "from my phone", 1.0)))
    bob = m.buffers.get("bob")
    assert bob is not None and bob.unread_count() == 0 and not m.take_bell()
    assert texts(m, "bob")[-1] == "[private to bob] alice: from my phone"
    assert bob.lines.entries[-1].mine


def test_a_sent_message_takes_its_id_so_a_page_does_not_show_it_twice() -> None:
    m = v12("bob")
    m.take_wants()
    m.open_query(("bob",))
    (ask,) = [w for w in m.take_wants() if isinstance(w, AskHistory)]
    m.sending(1, ("bob",), "hi bob")
    m.sending(2, ("bob",), "hi bob")  # the same text twice: told apart by id
    m.apply(ev.Delivered(1, ("bob",), (), (), 40))
    m.apply(ev.Delivered(2, ("bob",), (), (), 41))
    page = (Msg(40, "alice", ("bob",), "hi bob", 1.0), Msg(41, "alice", ("bob",), "hi bob", 2.0))
    m.apply(ev.HistoryLoaded(ask.id, "bob", None, page, False))
    assert sum("hi bob" in t for t in texts(m, "bob")) == 2


def test_rooms_at_login_are_buffers_and_room_messages_go_to_them() -> None:
    m = v12("bob")
    m.apply(ev.RoomsState((room(), room("#ops", "alice")), (Invitation("#x", "bob"),)))
    assert [b.name for b in m.buffers] == ["All", "#dev", "#ops"]
    assert "bob invited you to #x (/join #x)" in texts(m, "*")[-1]
    m.apply(ev.Incoming(Msg(3, "bob", "#DEV", "standup?", 1.0)))  # the room whatever its case
    assert texts(m, "#dev")[-1] == "bob: standup?"
    m.switch("#dev")
    assert m.target() == "#dev" and m.title() == "#dev [2 members]: plans"
    assert m.participants.rows() == ["#dev", "bob"]


def test_joins_and_leaves_of_silent_people_are_hidden_by_the_smart_filter() -> None:
    wall = Clock(10_000.0)
    m = v12("bob", wall=wall)
    m.apply(ev.RoomsState((room(),), ()))
    dev = m.buffers.get("#dev")
    assert dev is not None
    before = texts(m, "#dev")
    for i in range(50):
        m.apply(ev.RoomNotice(RoomEvent("#dev", "joined", f"user{i}", 1.0)))
        m.apply(ev.RoomNotice(RoomEvent("#dev", "left", f"user{i}", 1.0)))
    assert texts(m, "#dev") == before and dev.activity() == " "
    m.apply(ev.Incoming(Msg(9, "bob", "#dev", "brb", wall.now - 60)))
    m.apply(ev.RoomNotice(RoomEvent("#dev", "left", "bob", 2.0)))
    assert texts(m, "#dev")[-1] == "* bob left #dev"  # spoke a minute ago: shown
    wall.now += SMART_FILTER_SECONDS + 1
    m.apply(ev.RoomNotice(RoomEvent("#dev", "joined", "bob", 3.0)))
    assert texts(m, "#dev")[-1] == "* bob left #dev"  # silent for 10 minutes: hidden
    m.toggle_filter()  # /filter: every join and leave
    assert sum("user7 joined #dev" in t for t in texts(m, "#dev")) == 1
    assert texts(m, "#dev")[-1] == "* bob joined #dev"


def test_joining_a_room_that_does_not_exist_asks_then_creates_and_goes_there() -> None:
    m = v12()
    m.take_wants()
    m.join("#new")
    (want,) = m.take_wants()
    assert isinstance(want, SendRequest) and want.message == RoomJoin(want.message.id, "#new")
    m.apply(ev.RequestFailed(want.message.id, "join", "no_such_room", "no such room", "#new"))
    assert m.want_create == "#new"
    m.join("#new", create=True)
    (create,) = m.take_wants()
    assert isinstance(create.message, RoomCreate)  # type: ignore[union-attr]
    m.apply(ev.RoomNotice(RoomEvent("#new", "created", "alice", 1.0, topic="")))
    m.apply(ev.RequestDone(create.message.id, "room_create", "#new"))  # type: ignore[union-attr]
    assert m.current.name == "#new" and m.target() == "#new"


def test_typing_shows_in_its_buffer_for_six_seconds_at_most() -> None:
    m = v12("bob")
    m.apply(ev.RoomsState((room(),), ()))
    m.apply(ev.TypingSeen("bob", ("alice",), "active"))  # no buffer of bob's yet: nothing
    m.open_query(("bob",))
    m.apply(ev.TypingSeen("bob", ("alice",), "active"))
    assert m.typing_text() == "bob is typing..." and "bob is typing..." in m.status_text()
    m.switch("#dev")
    assert m.typing_text() == ""  # it concerns bob's buffer only
    m.switch("bob")
    m.clock.now += 6.5  # type: ignore[attr-defined]
    assert m.typing_text() == ""
    m.apply(ev.TypingSeen("bob", ("alice",), "active"))
    m.apply(ev.Incoming(Msg(3, "bob", ("alice",), "done typing", 1.0)))
    assert m.typing_text() == ""


def test_the_directory_is_asked_at_login_and_tells_a_typo_from_someone_offline() -> None:
    m = v12("bob")
    requests = [w.message for w in m.take_wants() if isinstance(w, SendRequest)]
    assert [r.type for r in requests] == ["room_list", "user_search"]  # for Tab
    search = requests[1]
    assert search == UserSearch(search.id, "")
    m.apply(ev.UsersFound(search.id, "", ("alice", "bob", "dave"), False))
    assert m.directory.exists("dave") is True and m.directory.exists("bbo") is False
    assert m.directory.suggest("bbo") == ["bob"]
    assert m.directory_changed


def test_a_v11_server_gets_no_read_marker_no_search_and_pages_are_not_unread() -> None:
    m = v12("bob", features=frozenset())
    wants = m.take_wants()
    assert not any(isinstance(w, SendRequest) for w in wants)
    m.apply(ev.Incoming(Msg(5, "bob", ("alice",), "psst", 1.0)))
    m.switch("bob")
    wants = m.take_wants()
    assert reads(wants) == [] and m.buffers.get("bob").unread_count() == 0  # type: ignore[union-attr]
    (ask,) = [w for w in wants if isinstance(w, AskHistory)]
    old = Msg(2, "bob", ("alice",), "old", 0.5)
    m.switch("*")
    m.apply(ev.HistoryLoaded(ask.id, "bob", None, (old,), False))
    assert m.buffers.get("bob").unread_count() == 0  # type: ignore[union-attr]


def test_search_jumps_to_the_newest_match_then_older_ones_fetching_pages() -> None:
    m = v12("bob")
    (ask,) = [w for w in m.take_wants() if isinstance(w, AskHistory)]
    page = tuple(Msg(i, "bob", "*", f"line {i}", float(i)) for i in range(10, 20))
    m.apply(ev.HistoryLoaded(ask.id, "*", None, page, True))
    m.search("LINE 1")
    lines = m.current.lines
    assert lines.found is not None and lines.found.text == "line 19"
    m.search(None)  # ^R again: the next older match
    assert lines.found is not None and lines.found.text == "line 18"
    m.search("lunch")  # nowhere loaded: an older page is fetched for it
    (older,) = [w for w in m.take_wants() if isinstance(w, AskHistory)]
    assert older.before == 10
    m.apply(ev.HistoryLoaded(older.id, "*", 10, (Msg(3, "bob", "*", "lunch at 1?", 3.0),), False))
    assert lines.found is not None and lines.found.text == "lunch at 1?"
    m.search("nowhere at all")
    assert texts(m, "*")[-1] == "* not found: nowhere at all"


def test_an_action_is_shown_as_one() -> None:
    m = v12("bob")
    m.apply(ev.Incoming(Msg(3, "bob", "*", "/me waves", 1.0)))
    m.sending(1, "*", "/me waves back")
    assert texts(m, "*")[-2:] == ["* bob waves", "* alice waves back  [sending]"]


def test_a_message_of_several_lines_has_its_lines_under_the_first() -> None:
    m = v12("bob")
    m.apply(ev.Incoming(Msg(3, "bob", "*", "first\nsecond\nthird", 1.0)))
    rows = [line.text for line in m.current.lines.window(80, 20)][-3:]
    assert rows[0].endswith("bob: first") and rows[1:] == [" " * 9 + "second", " " * 9 + "third"]


def test_at_login_the_buffers_of_at_most_30_people_with_unread_messages_open() -> None:
    m = v12()
    markers = tuple(Marker(f"user{i:02d}", 0, 100 - i, 1) for i in range(40))  # newest first
    m.apply(ev.MarkersLoaded(markers))
    people = [b.name for b in m.buffers if b.kind == "person"]
    assert people == [f"user{i:02d}" for i in range(30)]
    assert all(b.counts() == "(1)" for b in m.buffers if b.kind == "person")
