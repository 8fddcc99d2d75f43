"""What network events do to the TUI's screen model (no terminal needed)."""

from __future__ import annotations

from chat.client import events as ev
from chat.client.model import OFFLINE, ONLINE, RECONNECTING, ChatModel
from chat.shared.messages import Msg


def notes(m: ChatModel) -> list[str]:
    return [e.text for e in m.history.entries]


def online_model(*users: str) -> ChatModel:
    m = ChatModel("127.0.0.1", 7777)
    m.begin_login("alice", "127.0.0.1", 7777, register=False)
    m.apply(ev.LoggedIn("alice", users, False))
    return m


def test_login_shows_who_is_online_and_the_status_line() -> None:
    m = online_model("bob", "carol")
    assert m.state == ONLINE
    assert m.participants.rows() == ["All", "bob", "carol"]
    assert "logged in as alice; online: bob, carol" in notes(m)[-1]
    assert m.status_text() == "online | alice @ 127.0.0.1:7777 | 3 online"


def test_roster_changes_update_the_list_and_leave_notes() -> None:
    m = online_model("bob")
    m.apply(ev.RosterChanged(("carol",), ("bob",), ("carol",)))
    assert m.participants.online == ["carol"]
    assert notes(m)[-2:] == ["carol joined", "bob left"]  # kept (shown with /filter off)
    assert all(e.hidden for e in m.history.entries if e.text in ("carol joined", "bob left"))


def test_the_person_on_screen_who_leaves_stays_the_recipient_with_a_note() -> None:
    m = online_model("bob", "carol")
    m.open_query(("bob",))
    m.apply(ev.RosterChanged((), ("bob",), ("carol",)))
    assert m.target() == ("bob",)
    assert m.describe_target() == "bob (offline)"
    assert m.current.lines.entries[-1].text == "bob is offline (messages are kept for them)"


def test_refused_login_asks_for_the_form_again_with_the_reason() -> None:
    m = ChatModel("127.0.0.1", 7777)
    m.begin_login("alice", "127.0.0.1", 7777, register=False)
    m.apply(ev.LoginFailed("bad_credentials", "invalid user name or password"))
    assert m.want_login and m.state == OFFLINE
    assert "login refused: invalid user name or password" in m.status_text()


def test_a_refused_registration_says_registration_and_the_servers_text() -> None:
    m = ChatModel("127.0.0.1", 7777)
    m.begin_login("dora", "127.0.0.1", 7777, register=True)
    m.apply(ev.LoginFailed("bad_request", "password too short: at least 12", register=True))
    assert m.want_login and m.registering  # the Register form opens again
    assert m.status_note == "registration refused: password too short: at least 12"


def test_register_for_an_account_that_exists_falls_back_to_the_login_form() -> None:
    m = ChatModel("127.0.0.1", 7777)
    m.begin_login("alice", "127.0.0.1", 7777, register=True)
    m.apply(ev.AccountExists("alice"))
    assert notes(m)[-1] == "account alice exists: leave out --register (logging in instead)"
    m.apply(ev.LoginFailed("bad_credentials", "invalid user name or password"))
    assert m.want_login and not m.registering  # the Log in form, not Register
    assert m.status_note == (
        "account alice exists (leave out --register); login refused: invalid user name or password"
    )


def test_connection_refused_on_first_connect_asks_for_the_form_again() -> None:
    m = ChatModel("127.0.0.1", 1)
    m.begin_login("alice", "127.0.0.1", 1, register=False)
    m.apply(ev.ConnectFailed("connection refused by 127.0.0.1:1", None))
    assert m.want_login and "connection refused" in m.status_text()


def test_server_going_away_shows_reconnecting_then_reconnected() -> None:
    m = online_model("bob")
    before = len(notes(m))
    m.apply(ev.ServerBye("shutdown"))
    m.apply(ev.Disconnected("the server said bye (shutdown)", 0.4))
    assert m.state == RECONNECTING
    # One line says it all (the bye and the reconnect), never "reconnecting in 0s".
    assert notes(m)[before:] == ["disconnected: the server said bye (shutdown); reconnecting in 1s"]
    assert "reconnecting in 1s" in m.status_text()
    m.apply(ev.LoggedIn("alice", (), False))
    assert m.state == ONLINE and notes(m)[-1].startswith("reconnected as alice")


def test_own_message_lifecycle() -> None:
    m = online_model("bob")
    m.sending(5, ("bob",), "hi")
    m.apply(ev.Delivered(5, ("bob",), ()))
    entry = m.history.entries[-1]
    assert entry.status == "delivered: bob"


def test_incoming_message_goes_to_its_buffer() -> None:
    m = online_model("bob")
    m.apply(ev.Incoming(Msg(1, "bob", ("alice",), "psst", 0.0)))
    buffer = m.buffers.get("bob")
    assert buffer is not None and buffer.lines.entries[-1].head == "[private] bob: "
    assert m.target() == "*"  # the buffer on screen did not change


def test_ipv6_address_is_bracketed() -> None:
    assert ChatModel("::1", 7777).address == "[::1]:7777"


def test_closed_before_login_shows_the_form_again() -> None:
    m = ChatModel("127.0.0.1", 7777)
    m.begin_login("alice", "127.0.0.1", 7777, register=False)
    m.apply(ev.Disconnected("the server closed the connection: server is full (server_full)", None))
    assert m.want_login and m.state == OFFLINE
    assert "server is full" in m.status_text()


def test_an_unexpected_stop_is_shown() -> None:
    m = online_model("bob")
    m.apply(ev.Stopped("internal error: boom"))
    assert m.state == OFFLINE and "internal error: boom" in m.status_text()
    before = len(m.history.entries)
    m.apply(ev.Stopped("again"))  # already offline: nothing more to say
    assert len(m.history.entries) == before


def test_a_tls_connection_puts_a_mark_on_the_status_line_until_it_ends() -> None:
    m = ChatModel("127.0.0.1", 7777)
    m.begin_login("alice", "127.0.0.1", 7777, register=False)
    m.apply(ev.Connected("127.0.0.1", 7777, "TLSv1.3"))
    assert notes(m)[-1] == "TLS (TLSv1.3): the certificate of 127.0.0.1 is verified"
    m.apply(ev.LoggedIn("alice", (), False))
    assert m.status_text() == "online | alice @ 127.0.0.1:7777 [tls] | 1 online"
    m.apply(ev.Disconnected("connection lost", 1.0))
    assert "[tls]" not in m.status_text()
    m.apply(ev.ConnectFailed("TLS: certificate verify failed: x (host 127.0.0.1)", 2.0))
    assert m.status_text() == (
        "reconnecting in 2s | alice @ 127.0.0.1:7777 | "
        "TLS: certificate verify failed: x (host 127.0.0.1)"
    )


def test_a_plain_connection_has_no_mark() -> None:
    m = ChatModel("127.0.0.1", 7777)
    m.begin_login("alice", "127.0.0.1", 7777, register=False)
    m.apply(ev.Connected("127.0.0.1", 7777, None))
    m.apply(ev.LoggedIn("alice", (), False))
    assert m.status_text() == "online | alice @ 127.0.0.1:7777 | 1 online"
