"""The TUI model and one's own account (protocol v1.2 sections 6-8): a refused token asks
for the password, the server's `bye`s that end the account's sessions open the login form
instead of reconnecting, `passwd` and `delete_account` are requests whose answers are said
(no terminal needed)."""

from __future__ import annotations

from chat.client import events as ev
from chat.client.model import OFFLINE, RECONNECTING, ChatModel, SendRequest
from chat.shared.errors import Code
from chat.shared.requests import DeleteAccount, Passwd

from .test_model_v12 import texts, v12


def test_a_refused_token_without_a_password_opens_the_form_saying_why() -> None:
    m = v12()
    m.apply(ev.Disconnected("the server said bye (shutdown)", 1.0))
    assert m.state == RECONNECTING and not m.want_login
    m.apply(ev.LoginFailed(Code.BAD_CREDENTIALS, "invalid user name or password", token=True))
    assert m.want_login and m.state == OFFLINE
    assert m.status_note == (
        "login refused: the login token was refused (expired, or revoked by a password "
        "change): type the password (bad_credentials)"
    )


def test_a_token_refused_with_a_password_to_fall_back_on_is_a_note() -> None:
    m = v12()
    m.apply(ev.TokenRefused("alice"))
    assert not m.want_login
    assert texts(m, "*")[-1].endswith("the login token was refused (expired, or revoked by a "
                                      "password change): logging in with the password")  # fmt: skip


def test_a_final_bye_opens_the_log_in_form_and_a_shutdown_does_not() -> None:
    for reason in ("account_deleted", "banned", "kicked", "password_changed"):
        m = ChatModel("127.0.0.1", 7777)
        m.begin_login("alice", "127.0.0.1", 7777, register=True)
        m.apply(ev.LoggedIn("alice", (), True, frozenset({"rooms"})))
        m.apply(ev.ServerBye(reason))
        m.apply(ev.Disconnected(f"the server said bye ({reason}): ...", None))
        assert m.want_login and m.state == OFFLINE, reason
        assert not m.registering  # registered at the first login: the form logs in
    m = v12()
    m.apply(ev.ServerBye("shutdown"))
    m.apply(ev.Disconnected("the server said bye (shutdown)", None))  # no reconnect: no form
    assert not m.want_login and m.state == OFFLINE


def test_passwd_and_delete_are_requests_and_their_answers_are_said() -> None:
    m = v12()
    m.take_wants()  # the login's (history, rooms, the directory)
    m.passwd("old", "new password", logout_others=True)
    (want,) = m.take_wants()
    assert isinstance(want, SendRequest) and isinstance(want.message, Passwd)
    assert (want.message.old, want.message.new, want.message.logout_others) == (
        "old",
        "new password",
        True,
    )
    m.apply(ev.RequestDone(want.message.id, "passwd"))
    assert texts(m, "*")[-1].endswith(
        "password changed; your other sessions are logged out (your login tokens are revoked)"
    )
    m.passwd("wrong", "new password", logout_others=False)
    (want,) = m.take_wants()
    m.apply(ev.RequestFailed(want.message.id, "passwd", Code.BAD_CREDENTIALS, "invalid ..."))
    assert texts(m, "*")[-1].endswith(
        "password not changed: the password is wrong (bad_credentials)"
    )
    m.delete_account("pw")
    (want,) = m.take_wants()
    assert isinstance(want.message, DeleteAccount) and want.message.password == "pw"
    m.apply(ev.RequestDone(want.message.id, "delete_account"))
    assert texts(m, "*")[-1].endswith("account alice deleted")


def test_a_closed_registration_says_where_an_invite_code_goes() -> None:
    m = ChatModel("127.0.0.1", 7777)
    m.begin_login("alice", "127.0.0.1", 7777, register=True)
    m.apply(
        ev.LoginFailed(Code.REGISTRATION_CLOSED, "registration needs a valid invite code", True)
    )
    assert m.want_login and m.registering  # the Register form again
    assert m.status_note == (
        "registration refused: registration needs a valid invite code (an invite code from the "
        "operator: chat-client --register --invite CODE)"
    )

    closed = ChatModel("127.0.0.1", 7777)
    closed.begin_login("alice", "127.0.0.1", 7777, register=True)
    closed.apply(
        ev.LoginFailed(Code.REGISTRATION_CLOSED, "registration is closed on this server", True)
    )
    assert closed.status_note == "registration refused: registration is closed on this server"
