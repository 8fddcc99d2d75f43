"""The session's side of protocol v1.2 sections 6 and 7, bytes in and out: the token asked
for, kept and used at the next login, a refused token falling back to the password (or
failing the login when there is none), the password forgotten or kept, `passwd` and
`delete_account` paired with their answers, and the server's `bye`s that end a session."""

from __future__ import annotations

import pytest

from chat.client import events as ev
from chat.client.session import WANTED, Session
from chat.shared.errors import Code
from chat.shared.messages import AuthOk, Error, Ok, Roster, ServerBye
from chat.shared.requests import DeleteAccount, Passwd

from .test_session import frames, wire

GRANTED = ("rooms", "read", "echo", "typing", "resume")
TOKEN = "t0ken-from-the-server"


def login(s: Session, token: str | None = TOKEN) -> list[ev.NetEvent]:
    """Start a connection and answer its `auth` as a v1.2 server granting `resume`."""
    s.start()
    _, events = s.receive(
        wire(AuthOk(s.user, features=GRANTED, token=token), Roster(1, True, users=()))
    )
    return events


def test_the_auth_asks_resume_and_the_next_login_uses_the_token() -> None:
    s = Session("alice", "pw", register=True)
    (auth,) = frames(s.start())
    assert "resume" in WANTED and auth.features == WANTED
    assert (auth.password, auth.token, auth.register) == ("pw", None, True)
    s.receive(wire(AuthOk("alice", features=GRANTED, token=TOKEN), Roster(1, True, users=())))
    assert s.token == TOKEN and s.has_password  # a password it was given is kept
    s.connection_lost()
    (again,) = frames(s.start())
    assert (again.user, again.password, again.token, again.register) == (
        "alice",
        None,
        TOKEN,
        False,
    )
    assert "resume" in again.features
    # Each login brings a fresh token: the next one uses it.
    s.receive(wire(AuthOk("alice", features=GRANTED, token="fresh"), Roster(1, True, users=())))
    s.connection_lost()
    (third,) = frames(s.start())
    assert third.token == "fresh"


def test_a_typed_password_is_forgotten_once_a_token_is_granted() -> None:
    s = Session("alice", "typed", forget_password=True)
    login(s)
    assert not s.has_password and s.token == TOKEN
    # A server that grants no token (v1.1, or no resume): the password stays, it is all we have.
    kept = Session("alice", "typed", forget_password=True)
    login(kept, token=None)
    assert kept.has_password and kept.token is None
    kept.connection_lost()
    (auth,) = frames(kept.start())
    assert (auth.password, auth.token) == ("typed", None)


def test_a_refused_token_falls_back_to_the_password_on_the_same_connection() -> None:
    s = Session("alice", "pw")
    login(s)
    s.connection_lost()
    s.start()
    out, events = s.receive(wire(Error(Code.BAD_CREDENTIALS, "invalid user name or password")))
    assert events == [ev.TokenRefused("alice")]
    (auth,) = frames(out)
    assert (auth.password, auth.token) == ("pw", None)
    assert s.token is None and not s.login_failed and s.may_reconnect
    _, events = s.receive(
        wire(AuthOk("alice", features=GRANTED, token="new"), Roster(1, True, users=()))
    )
    assert isinstance(events[0], ev.LoggedIn) and s.token == "new"


def test_a_refused_token_without_a_password_fails_the_login_so_the_ui_asks() -> None:
    s = Session("alice", None, token="saved")  # e.g. from the config file
    (auth,) = frames(s.start())
    assert (auth.password, auth.token) == (None, "saved")
    out, events = s.receive(wire(Error(Code.BAD_CREDENTIALS, "invalid user name or password")))
    assert out == b""
    assert events == [
        ev.LoginFailed(Code.BAD_CREDENTIALS, "invalid user name or password", False, token=True)
    ]
    assert s.token_refused and s.login_failed and not s.may_reconnect and s.token is None


def test_a_banned_account_is_a_refused_login_never_retried() -> None:
    s = Session("alice", None, token="saved")
    s.start()
    _, events = s.receive(wire(Error(Code.BANNED, "this account is banned")))
    assert events == [ev.LoginFailed(Code.BANNED, "this account is banned")]
    assert not s.may_reconnect


def test_a_session_needs_a_password_or_a_token() -> None:
    with pytest.raises(ValueError):
        Session("alice", None)
    with pytest.raises(ValueError):
        Session("alice", "")


def test_registering_never_uses_a_token() -> None:
    s = Session("alice", "pw", register=True, token="old")
    (auth,) = frames(s.start())
    assert (auth.password, auth.token, auth.register) == ("pw", None, True)


def test_passwd_is_paired_and_its_new_password_replaces_the_dead_token() -> None:
    s = Session("alice", "old", forget_password=True)
    login(s)
    assert not s.has_password
    (frame,) = frames(s.passwd("p1", "old", "new password", logout_others=True))
    assert frame == Passwd("p1", "old", "new password", True)
    assert "new password" not in repr(frame) and "old" not in repr(frame).replace("p1", "")
    _, events = s.receive(wire(Ok("p1")))
    assert events == [ev.RequestDone("p1", "passwd")]
    assert s.token is None and s.has_password  # every token is dead: the new password logs in
    s.connection_lost()
    (auth,) = frames(s.start())
    assert (auth.password, auth.token) == ("new password", None)
    s.receive(wire(AuthOk("alice", features=GRANTED, token="after"), Roster(1, True, users=())))
    assert not s.has_password and s.token == "after"  # forgotten again


def test_a_refused_passwd_changes_nothing() -> None:
    s = Session("alice", "pw")
    login(s)
    s.passwd("p1", "wrong", "new password")
    _, events = s.receive(wire(Error(Code.BAD_CREDENTIALS, "invalid user name or password", "p1")))
    assert events == [
        ev.RequestFailed("p1", "passwd", Code.BAD_CREDENTIALS, "invalid user name or password")
    ]
    assert s.token == TOKEN
    with pytest.raises(ValueError):
        s.passwd("p2", "pw", "")
    with pytest.raises(ValueError):
        s.passwd("p3", "pw", "x" * 257)


def test_delete_account_ends_the_session_for_good() -> None:
    s = Session("alice", "pw")
    login(s)
    (frame,) = frames(s.request(DeleteAccount("d1", "pw")))
    assert frame == DeleteAccount("d1", "pw")
    _, events = s.receive(wire(Ok("d1"), ServerBye("account_deleted")))
    assert events == [ev.RequestDone("d1", "delete_account"), ev.ServerBye("account_deleted")]
    assert s.deleted and not s.may_reconnect


@pytest.mark.parametrize("reason", ["account_deleted", "banned", "kicked", "password_changed"])
def test_a_bye_about_the_account_stops_reconnecting(reason: str) -> None:
    s = Session("alice", "pw")
    login(s)
    s.receive(wire(ServerBye(reason)))
    assert not s.may_reconnect


def test_a_shutdown_bye_reconnects() -> None:
    s = Session("alice", "pw")
    login(s)
    s.receive(wire(ServerBye("shutdown")))
    assert s.may_reconnect


def test_account_requests_need_a_v12_server() -> None:
    s = Session("alice", "pw")
    s.start()
    s.receive(wire(AuthOk("alice"), Roster(1, True, users=())))  # v1.1: no features field
    with pytest.raises(ValueError, match="passwd"):
        s.passwd("p1", "pw", "new password")


def test_a_server_without_resume_refusing_the_token_field_is_a_refused_token_too() -> None:
    s = Session("alice", "pw", token="saved")
    s.start()
    out, events = s.receive(wire(Error(Code.BAD_REQUEST, "'token' needs the feature 'resume'")))
    assert events == [ev.TokenRefused("alice")]
    (auth,) = frames(out)
    assert (auth.password, auth.token) == ("pw", None)
