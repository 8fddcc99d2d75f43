"""Protocol v1.2 section 7 from outside: `passwd` and `delete_account`, on a real server.

A user changes its own password or deletes its own account from a session in
`CHAT`; the tests judge what every session of it, the other users, a login
afterwards and a restart see, over real sockets. The operator's `user delete`
(section 8) must leave the server exactly as a `delete_account` does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from conftest import ServerProc
from e2e.server_support import PASSWORD, assert_error, online, request
from e2e.v12_support import (
    Frame,
    Session,
    closing,
    login,
    module_server,
    restart,
    uniq,
    uniq_room,
)
from wire import WireClient

Start = Callable[..., ServerProc]
NEW = "a brand new password"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    yield from module_server(tmp_path_factory.mktemp("care"))


@pytest.fixture
def srv(shared: ServerProc) -> Iterator[ServerProc]:
    yield from closing(shared)


def login_answer(server: ServerProc, name: str, password: str) -> Frame:
    """What a password login of `name` is answered (its first frame)."""
    c = server.client()
    c.send({"type": "auth", "user": name, "password": password})
    return c.recv(10)


def logs_in(server: ServerProc, name: str, password: str) -> bool:
    answer = login_answer(server, name, password)
    assert answer["type"] in ("auth_ok", "error"), answer
    if answer["type"] == "error":
        assert_error(answer, "bad_credentials")
    return answer["type"] == "auth_ok"


def ended_with(client: WireClient | Session, reason: str) -> list[Frame]:
    """The connection's frames up to its EOF; the last one is `bye` with `reason`."""
    c = client.c if isinstance(client, Session) else client
    frames = [f for f in c.expect_closed(10) if not (f["type"] == "roster" and not f["full"])]
    assert frames and frames[-1] == {"type": "bye", "reason": reason}, frames
    return frames


def cli(server: ServerProc, *words: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`chat-server WORDS` with the server's own file options (an operator's command)."""
    args = [sys.executable, "-m", "chat.server", *words]
    args += ["--users-file", str(server.users_file), "--key-file", str(server.key_file)]
    args += ["--hash-cost", "10"]
    done = subprocess.run(
        args, cwd=server.users_file.parent, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, ""), done
    return done


# --------------------------------------------------------------------------
# passwd
# --------------------------------------------------------------------------
def test_passwd_is_ok_and_then_only_the_new_password_logs_in(srv: ServerProc) -> None:
    name = uniq("pw")
    s = login(srv, name)
    rid = s.new_id()
    assert s.ask({"type": "passwd", "id": rid, "old": PASSWORD, "new": NEW}) == {
        "type": "ok",
        "id": rid,
    }
    assert not logs_in(srv, name, PASSWORD)
    assert logs_in(srv, name, NEW)
    s.sync()  # the session that asked goes on
    assert s.ask({"type": "user_search", "prefix": name})["users"] == [name]


def test_passwd_with_a_wrong_old_password_is_bad_credentials_and_changes_nothing(
    srv: ServerProc,
) -> None:
    name = uniq("pwbad")
    s = login(srv, name)
    answer = s.ask({"type": "passwd", "id": 7, "old": "not it", "new": NEW})
    assert_error(answer, "bad_credentials", 7)
    assert answer["message"] == "invalid user name or password"
    for _ in range(5):  # non-fatal, and not counted toward too_many_attempts (a v1 login's)
        s.refused({"type": "passwd", "old": "not it", "new": NEW}, "bad_credentials")
    s.sync()
    assert logs_in(srv, name, PASSWORD) and not logs_in(srv, name, NEW)


def test_passwd_out_of_the_protocol_s_bounds_is_bad_request_with_the_id(srv: ServerProc) -> None:
    s = login(srv, uniq("pwb"))
    for bad in ({"old": PASSWORD, "new": ""}, {"old": "", "new": NEW}, {"old": PASSWORD}):
        s.refused({"type": "passwd", **bad}, "bad_request")
    s.refused({"type": "passwd", "old": PASSWORD, "new": "x" * 257}, "bad_request")
    s.refused({"type": "passwd", "old": PASSWORD, "new": NEW, "logout_others": 1}, "bad_request")


def test_passwd_below_min_password_is_bad_request_uncounted_and_changes_nothing(
    start_server: Start,
) -> None:
    server = start_server("--min-password", "8")
    name = uniq("pwmin")
    s = login(server, name, password="long enough")
    for _ in range(8):  # never hashed, never counted: no delay builds up
        answer = s.ask({"type": "passwd", "id": "short", "old": "long enough", "new": "short"})
        assert answer == {
            "type": "error",
            "code": "bad_request",
            "message": "password too short: this server wants at least 8 characters",
            "id": "short",
        }
    started = time.monotonic()
    s.ok({"type": "passwd", "old": "long enough", "new": "eight ch"})
    assert time.monotonic() - started < 1.0
    assert logs_in(server, name, "eight ch") and not logs_in(server, name, "long enough")


def test_passwd_logout_others_ends_every_other_session_and_keeps_this_one(
    srv: ServerProc,
) -> None:
    name, watcher = uniq("pwlo"), uniq("watch")
    s = login(srv, name)
    other = login(srv, name, register=False)
    v11 = online(srv, name, register=False)  # a v1.1 client of the same account
    w = login(srv, watcher)
    s.ok({"type": "passwd", "old": PASSWORD, "new": NEW, "logout_others": True})
    ended_with(other, "password_changed")
    ended_with(v11, "password_changed")
    s.sync()
    assert s.ask({"type": "user_search", "prefix": name})["users"] == [name]
    # Still online through the session that asked: the watcher sees no leave.
    assert w.drain() == [] and not any(
        name in f.get("leave", ()) for f in w.seen if f["type"] == "roster"
    )
    assert "logged in" in srv.log()
    assert logs_in(srv, name, NEW)


def test_passwd_without_logout_others_keeps_every_session(srv: ServerProc) -> None:
    name = uniq("pwkeep")
    s = login(srv, name)
    other = login(srv, name, register=False)
    s.ok({"type": "passwd", "old": PASSWORD, "new": NEW})
    other.sync()
    assert other.c.silent(0.3)


def test_wrong_passwords_in_passwd_and_delete_count_for_the_account_everywhere(
    start_server: Start,
) -> None:
    """As failed logins of the account (its throttle), whichever connection sent them: past
    the account's 5 free failures its checks take turns, logins from elsewhere included."""
    server = start_server()
    name, other = uniq("thr"), uniq("fresh")
    s, o = login(server, name), login(server, other)
    started = time.monotonic()
    for i in range(8):
        kind = {"type": "passwd", "old": f"wrong {i}", "new": NEW}
        if i % 2:
            kind = {"type": "delete_account", "password": f"wrong {i}"}
        assert_error(s.ask(kind, timeout=15), "bad_credentials")
    spent = time.monotonic() - started
    assert spent >= 0.25 + 0.5, spent  # the 7th and 8th waited their turn
    started = time.monotonic()
    assert logs_in(server, name, PASSWORD)  # another connection: it waits its turn too
    waited = time.monotonic() - started
    assert waited >= 0.8, waited  # the 9th check of the account: one second after the 8th
    started = time.monotonic()
    assert logs_in(server, other, PASSWORD)  # another account: no wait
    assert time.monotonic() - started < 0.5
    o.sync()


def test_passwd_is_durable_across_a_restart(start_server: Start) -> None:
    server = start_server()
    name = uniq("pwdur")
    s = login(server, name)
    s.ok({"type": "passwd", "old": PASSWORD, "new": NEW})
    server = restart(server, start_server)
    assert logs_in(server, name, NEW) and not logs_in(server, name, PASSWORD)


def test_passwd_writes_no_password_anywhere(start_server: Start) -> None:
    server = start_server()
    name = uniq("pwlog")
    secret_old, secret_new = "old-secret-Xq7", "new-secret-Zr9"
    s = login(server, name, password=secret_old)
    s.refused({"type": "passwd", "old": "wrong-secret-Kp3", "new": secret_new}, "bad_credentials")
    s.ok({"type": "passwd", "old": secret_old, "new": secret_new})
    server = restart(server, start_server)
    assert logs_in(server, name, secret_new)
    folder = server.users_file.parent
    for path in folder.iterdir():
        if path.is_file():
            data = path.read_bytes()
            for word in (secret_old, secret_new, "wrong-secret-Kp3"):
                assert word.encode() not in data, (path.name, word)
    assert f"audit: passwd user={name} by=self" in server.log() or any(
        f"audit: passwd user={name} by=self" in p.read_text() for p in folder.glob("*.log")
    )


# --------------------------------------------------------------------------
# delete_account
# --------------------------------------------------------------------------
def test_delete_account_with_a_wrong_password_is_bad_credentials_and_deletes_nothing(
    srv: ServerProc,
) -> None:
    name = uniq("delbad")
    s = login(srv, name)
    s.refused({"type": "delete_account", "password": "not it"}, "bad_credentials")
    s.sync()
    assert logs_in(srv, name, PASSWORD)
    assert s.ask({"type": "user_search", "prefix": name})["users"] == [name]


def test_delete_account_is_ok_then_bye_on_every_session_this_one_last(srv: ServerProc) -> None:
    name, watcher = uniq("del"), uniq("dwatch")
    w = login(srv, watcher)
    s = login(srv, name)
    other = login(srv, name, register=False)
    v11 = online(srv, name, register=False)
    w.drain()
    rid = s.new_id()
    s.send({"type": "delete_account", "id": rid, "password": PASSWORD})
    s.send({"type": "ping"})  # after the final frame: never answered
    frames = ended_with(s, "account_deleted")
    assert frames[-2:] == [{"type": "ok", "id": rid}, {"type": "bye", "reason": "account_deleted"}]
    assert all(f["type"] != "pong" for f in frames), frames
    ended_with(other, "account_deleted")
    ended_with(v11, "account_deleted")
    deadline = time.monotonic() + 5
    while not any(name in f.get("leave", ()) for f in w.seen if f["type"] == "roster"):
        assert time.monotonic() < deadline, w.seen
        w.sync()
    assert w.ask({"type": "user_search", "prefix": name})["users"] == []
    assert not logs_in(srv, name, PASSWORD)
    entry = f"audit: delete user={name} by=self"
    assert entry in srv.log()


def test_a_deleted_name_can_be_registered_again_as_a_new_account(srv: ServerProc) -> None:
    name = uniq("again")
    s = login(srv, name)
    s.send({"type": "delete_account", "id": 1, "password": PASSWORD})
    ended_with(s, "account_deleted")
    fresh = login(srv, name, password=NEW)  # register: the name is free
    assert fresh.auth_ok["user"] == name
    assert not logs_in(srv, name, PASSWORD) and logs_in(srv, name, NEW)


def rooms_of(frame: Frame) -> dict[str, Frame]:
    return {r["room"]: r for r in frame["rooms"]}


def _delete_scenario(
    server: ServerProc, delete: Callable[[ServerProc, Session, str], None]
) -> None:
    """alice owns a room with bob, is in carol's room, is alone in a third, is invited to a
    fourth; she read bob's messages up to one and has two of them queued, unacknowledged.
    `delete` deletes her account; then everything that was hers must be gone, and what
    others have stays (the history, the rooms with their other members)."""
    alice, bob, carol = uniq("alice"), uniq("bob"), uniq("carol")
    own, theirs, alone, invited = (
        uniq_room("own"),
        uniq_room("th"),
        uniq_room("al"),
        uniq_room("iv"),
    )
    a, b, c = login(server, alice), login(server, bob), login(server, carol)
    a.ok({"type": "room_create", "room": own})
    b.ok({"type": "join", "room": own})
    c.ok({"type": "room_create", "room": theirs})
    a.ok({"type": "join", "room": theirs})
    a.ok({"type": "room_create", "room": alone})
    c.ok({"type": "room_create", "room": invited, "invite_only": True})
    c.ok({"type": "invite", "room": invited, "user": alice})
    first = b.ask({"type": "send", "to": [alice], "text": "read this"})["msg_id"]
    a.take(lambda f: f["type"] == "msg" and f["id"] == first)
    a.send({"type": "read", "with": bob, "upto": first})
    a.sync()
    a.close()
    time.sleep(0.2)
    queued = [b.ask({"type": "send", "to": [alice], "text": f"queued {i}"}) for i in range(2)]
    assert all(q["queued"] == [alice] for q in queued), queued
    b.drain()
    c.drain()
    again = login(server, alice, register=False)  # gets the queued two, acknowledges nothing
    again.msgs(2)
    delete(server, again, alice)
    # The members were told: ownership passed to bob, alice left carol's room.
    b.event(own, "left")
    owner = b.event(own, "owner")
    assert owner["user"] == bob
    c.event(theirs, "left")
    listing = b.ask({"type": "room_list"})
    rooms = {r["room"]: r for r in listing["rooms"]}
    assert rooms[own]["owner"] == bob and rooms[own]["members"] == 1
    assert alone not in rooms  # its last member left: deleted
    assert c.ask({"type": "room_list"})["rooms"]  # carol still has hers
    # History stays: bob still reads what he sent her.
    page = b.ask({"type": "history", "with": alice})
    assert [m["text"] for m in page["messages"]] == ["read this", "queued 0", "queued 1"]
    # The name again, a new account: no rooms, no invite, no queue, no marker.
    fresh = login(server, alice, password=NEW)
    state = fresh.login_frame("rooms")
    assert state == {"type": "rooms", "rooms": [], "invites": []}, state
    assert fresh.login_frame("markers")["markers"] == []  # her markers and contacts went
    assert not [f for f in fresh.login_frames if f["type"] == "msg"], fresh.login_frames
    assert fresh.drain() == []
    # Once bob writes to the new alice, the conversation is hers: history included, unread.
    sent = b.ask({"type": "send", "to": [alice], "text": "hello, new one"})
    fresh.msgs(1)
    fresh.close()
    later = login(server, alice, register=False, password=NEW)
    mark = {"with": bob, "upto": 0, "last": sent["msg_id"], "unread": 4}
    assert later.login_frame("markers")["markers"] == [mark]


def _by_the_user(server: ServerProc, session: Session, name: str) -> None:
    session.send({"type": "delete_account", "id": "bye", "password": PASSWORD})
    frames = ended_with(session, "account_deleted")
    assert {"type": "ok", "id": "bye"} in frames


def _by_the_operator(server: ServerProc, session: Session, name: str) -> None:
    cli(server, "user", "delete", name)
    ended_with(session, "account_deleted")


@pytest.mark.parametrize("delete", [_by_the_user, _by_the_operator], ids=["wire", "operator"])
def test_a_delete_leaves_the_rooms_drops_queue_markers_invites_and_keeps_history(
    srv: ServerProc, delete: Callable[[ServerProc, Session, str], None]
) -> None:
    _delete_scenario(srv, delete)


def test_the_operator_s_delete_on_a_stopped_server_s_files_does_the_same(
    start_server: Start,
) -> None:
    server = start_server()
    alice, bob = uniq("alice"), uniq("bob")
    own, alone = uniq_room("own"), uniq_room("al")
    a, b = login(server, alice), login(server, bob)
    a.ok({"type": "room_create", "room": own})
    b.ok({"type": "join", "room": own})
    a.ok({"type": "room_create", "room": alone})
    a.close()
    b.close()
    assert server.stop(signal.SIGTERM) == 0
    cli(server, "user", "delete", alice)
    server = start_server()
    b = login(server, bob, register=False)
    rooms = rooms_of(b.login_frame("rooms"))
    assert rooms[own]["owner"] == bob and rooms[own]["members"] == [bob]
    assert alone not in {r["room"] for r in b.ask({"type": "room_list"})["rooms"]}
    fresh = login(server, alice, password=NEW)
    assert fresh.login_frame("rooms") == {"type": "rooms", "rooms": [], "invites": []}


def test_a_delete_is_durable_across_a_restart(start_server: Start) -> None:
    server = start_server()
    alice, bob = uniq("alice"), uniq("bob")
    own = uniq_room("own")
    a, b = login(server, alice), login(server, bob)
    a.ok({"type": "room_create", "room": own})
    b.ok({"type": "join", "room": own})
    a.send({"type": "delete_account", "id": 1, "password": PASSWORD})
    ended_with(a, "account_deleted")
    b.event(own, "owner")
    server = restart(server, start_server)
    assert not logs_in(server, alice, PASSWORD)
    b = login(server, bob, register=False)
    assert rooms_of(b.login_frame("rooms"))[own]["members"] == [bob]
    assert rooms_of(b.login_frame("rooms"))[own]["owner"] == bob
    c = server.client()
    c.send({"type": "auth", "user": alice, "password": NEW, "register": True})
    assert c.recv() == {"type": "auth_ok", "user": alice}


def test_care_requests_need_chat(srv: ServerProc) -> None:
    c = srv.client()
    c.send({"type": "passwd", "id": 1, "old": PASSWORD, "new": NEW})
    assert_error(c.recv(), "not_authenticated")
    c.send({"type": "delete_account", "id": 2, "password": PASSWORD})
    assert_error(c.recv(), "not_authenticated")
    name = uniq("early")
    c.send({"type": "auth", "user": name, "password": PASSWORD, "register": True})
    assert c.recv()["type"] == "auth_ok"
    c.recv()  # the full roster, not acknowledged: ROSTER
    answer = request(c, {"type": "delete_account", "id": 3, "password": PASSWORD})
    assert_error(answer, "not_ready")
    assert logs_in(srv, name, PASSWORD)
