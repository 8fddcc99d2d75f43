"""Protocol v1.2 section 6 from outside: login tokens (`resume`), on a real server.

A token comes only with `resume`, logs its user in without a password (across
a restart too), expires after `--token-days`, and dies at once with a new
password (the user's own or the operator's), a delete, a ban (refused
`banned` while it lasts, dead after the unban). A bad token is a wrong
password. No token is ever written in clear: not in the log, not in a file.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ServerProc
from e2e.server_support import PASSWORD, assert_error, raw_client
from e2e.v12_support import Frame, closing, login, module_server, restart, uniq
from wire import Closed

Start = Callable[..., ServerProc]
NEW = "a brand new password"
#: What a token looks like to anyone who did not make it: printable, bounded (v1.2: 1..512).
TOKEN = re.compile(r"[\x21-\x7e]{1,512}")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    yield from module_server(tmp_path_factory.mktemp("tokens"))


@pytest.fixture
def srv(shared: ServerProc) -> Iterator[ServerProc]:
    yield from closing(shared)


def token_of(server: ServerProc, name: str, password: str = PASSWORD, register: bool = True) -> str:
    """Log in asking for `resume` (registering `name` unless told): its token."""
    c = server.client()
    auth = {"type": "auth", "user": name, "password": password, "register": register}
    c.send(auth | {"features": ["resume"]})
    ok = c.recv()
    assert ok["type"] == "auth_ok" and ok["features"] == ["resume"], ok
    assert TOKEN.fullmatch(ok["token"]), ok
    c.close()
    return str(ok["token"])


def with_token(server: ServerProc, name: str, token: str, **extra: object) -> Frame:
    """A token login's first answer (`auth_ok`, or the error)."""
    c = server.client()
    c.send({"type": "auth", "user": name, "token": token, "features": ["resume"], **extra})
    return c.recv(10)


def refused(server: ServerProc, name: str, token: str) -> None:
    answer = with_token(server, name, token)
    assert_error(answer, "bad_credentials")
    assert answer["message"] == "invalid user name or password"  # as a wrong password


def cli(server: ServerProc, *words: str, stdin: str = "") -> None:
    args = [sys.executable, "-m", "chat.server", *words]
    args += ["--users-file", str(server.users_file), "--key-file", str(server.key_file)]
    args += ["--hash-cost", "10"]
    done = subprocess.run(
        args, cwd=server.users_file.parent, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, ""), done


# --------------------------------------------------------------------------
# what a token is, and when one is given
# --------------------------------------------------------------------------
def test_a_token_comes_only_with_resume(srv: ServerProc) -> None:
    name = uniq("tk")
    c = srv.client()
    c.send({"type": "auth", "user": name, "password": PASSWORD, "register": True})
    assert c.recv() == {"type": "auth_ok", "user": name}
    c = srv.client()
    c.send({"type": "auth", "user": name, "password": PASSWORD, "features": ["rooms", "echo"]})
    assert c.recv() == {"type": "auth_ok", "user": name, "features": ["rooms", "echo"]}
    c = srv.client()
    c.send({"type": "auth", "user": name, "password": PASSWORD, "features": ["rooms", "resume"]})
    ok = c.recv()
    assert set(ok) == {"type", "user", "features", "token"} and ok["features"] == [
        "rooms",
        "resume",
    ], ok
    assert TOKEN.fullmatch(ok["token"]), ok


def test_a_v11_auth_ok_is_unchanged_byte_for_byte(srv: ServerProc) -> None:
    name = uniq("v11")
    c = raw_client(srv)
    c.send({"type": "auth", "user": name, "password": PASSWORD, "register": True})
    assert c.recv_payload() == b'{"type":"auth_ok","user":"%s"}' % name.encode()
    c = raw_client(srv)
    c.send({"type": "auth", "user": name, "password": PASSWORD})
    assert c.recv_payload() == b'{"type":"auth_ok","user":"%s"}' % name.encode()


def test_a_registration_asking_resume_gets_a_token_that_logs_in(srv: ServerProc) -> None:
    name = uniq("reg")
    token = token_of(srv, name)
    ok = with_token(srv, name, token)
    assert ok["type"] == "auth_ok" and ok["user"] == name and ok["features"] == ["resume"]
    assert TOKEN.fullmatch(ok["token"])  # a fresh one each login


def test_a_token_login_is_a_whole_login(srv: ServerProc) -> None:
    """auth_ok, the full roster, CHAT: what a password login gives."""
    name, other = uniq("whole"), uniq("peer")
    token = token_of(srv, name)
    o = login(srv, other)
    c = srv.client()
    c.send({"type": "auth", "user": name, "token": token, "features": ["rooms", "resume"]})
    assert c.recv()["type"] == "auth_ok"
    roster = c.recv()
    assert roster["type"] == "roster" and roster["full"] is True and other in roster["users"]
    c.send({"type": "roster_ack", "seq": roster["seq"]})
    assert c.recv_type("rooms")["rooms"] == []
    c.send({"type": "send", "id": 1, "to": [other], "text": "by token"})
    assert c.recv_type("sent")["delivered"] == [other]
    assert o.msgs(1)[0]["text"] == "by token"


def test_a_token_login_must_ask_resume_and_carry_no_password(srv: ServerProc) -> None:
    name = uniq("shape")
    token = token_of(srv, name)
    c = srv.client()
    c.send({"type": "auth", "user": name, "token": token})
    assert_error(c.recv(), "bad_request")
    c.send({"type": "auth", "user": name, "token": token, "features": ["rooms"]})
    assert_error(c.recv(), "bad_request")
    c.send({"type": "auth", "user": name, "token": token, "password": PASSWORD})
    assert_error(c.recv(), "bad_request")
    c.send({"type": "auth", "user": name, "token": token, "register": True, "features": ["resume"]})
    assert_error(c.recv(), "bad_request")
    c.send({"type": "auth", "user": name, "token": token, "features": ["resume"]})
    assert c.recv()["type"] == "auth_ok"  # none of those counted, nor closed the connection


def test_another_users_token_a_forged_or_altered_one_is_bad_credentials(
    start_server: Start,
) -> None:
    srv = start_server("--login-delay", "0")  # many failures of one account, no waits
    name, other = uniq("own"), uniq("other")
    token, theirs = token_of(srv, name), token_of(srv, other)
    refused(srv, name, theirs)
    refused(srv, other, token)
    for i in range(len(token)):
        if token[i] in ".v1":
            continue
        swapped = "A" if token[i] != "A" else "B"
        refused(srv, name, token[:i] + swapped + token[i + 1 :])
    for forged in ("x", "v1.AAAAAAAAAAA." + "A" * 43, token[:-1], token + "A", "é" * 100):
        refused(srv, name, forged)
    refused(srv, uniq("nobody"), token)  # no such account: the same answer
    assert with_token(srv, name, token)["type"] == "auth_ok"


def test_bad_tokens_count_as_wrong_passwords(srv: ServerProc) -> None:
    """The fifth failed login on one connection is too_many_attempts, tokens or not."""
    name = uniq("count")
    token = token_of(srv, name)
    c = srv.client()
    bad = {"type": "auth", "user": name, "token": token[:-2] + "AA", "features": ["resume"]}
    for _ in range(4):
        c.send(bad)
        assert_error(c.recv(), "bad_credentials")
    c.send(bad)
    assert_error(c.recv(), "too_many_attempts")
    with pytest.raises(Closed):
        c.recv()


def test_a_token_works_across_a_restart(start_server: Start) -> None:
    server = start_server()
    name = uniq("restart")
    token = token_of(server, name)
    server = restart(server, start_server)
    assert with_token(server, name, token)["type"] == "auth_ok"


def test_a_token_expires_after_token_days_and_a_reload_shortens_it(start_server: Start) -> None:
    server = start_server("--token-days", str(3 / 86400))  # three seconds
    name = uniq("exp")
    token = token_of(server, name)
    assert with_token(server, name, token)["type"] == "auth_ok"
    time.sleep(3.2)
    refused(server, name, token)
    # A reload applies --token-days to tokens already issued (a config file: SIGHUP).
    config = server.users_file.parent / "reload.toml"
    config.write_text("token-days = 1.0\n")
    server = restart(server, start_server, "--config", str(config))
    token = token_of(server, name, register=False)
    assert with_token(server, name, token)["type"] == "auth_ok"
    config.write_text(f"token-days = {1 / 86400}\n")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload: token-days" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    time.sleep(1.1)
    refused(server, name, token)


# --------------------------------------------------------------------------
# revoked: a new password, a delete, a ban
# --------------------------------------------------------------------------
def test_a_passwd_kills_every_token_issued_before(srv: ServerProc) -> None:
    name = uniq("pw")
    first, second = token_of(srv, name), token_of(srv, name, register=False)
    s = login(srv, name, register=False)
    s.ok({"type": "passwd", "old": PASSWORD, "new": NEW})
    refused(srv, name, first)
    refused(srv, name, second)
    fresh = token_of(srv, name, NEW, register=False)
    assert with_token(srv, name, fresh)["type"] == "auth_ok"


def test_the_operator_s_passwd_kills_every_token_issued_before(srv: ServerProc) -> None:
    name = uniq("oppw")
    token = token_of(srv, name)
    cli(srv, "user", "passwd", name, stdin=f"{NEW}\n")
    refused(srv, name, token)
    assert with_token(srv, name, token_of(srv, name, NEW, register=False))["type"] == "auth_ok"


def test_a_deleted_account_s_tokens_never_work_again_even_for_the_name_re_registered(
    srv: ServerProc,
) -> None:
    name = uniq("del")
    token = token_of(srv, name)
    s = login(srv, name, register=False)
    s.send({"type": "delete_account", "id": 1, "password": PASSWORD})
    assert s.c.expect_closed(10)[-1] == {"type": "bye", "reason": "account_deleted"}
    refused(srv, name, token)
    token_of(srv, name, PASSWORD)  # the same name and password: a new account
    refused(srv, name, token)


def test_a_banned_user_s_token_is_refused_banned_and_dead_after_the_unban(srv: ServerProc) -> None:
    name = uniq("ban")
    token = token_of(srv, name)
    cli(srv, "user", "ban", name)
    c = srv.client()
    c.send({"type": "auth", "user": name, "token": token, "features": ["resume"]})
    assert c.recv() == {"type": "error", "code": "banned", "message": "this account is banned"}
    with pytest.raises(Closed):
        c.recv()  # fatal
    cli(srv, "user", "unban", name)
    refused(srv, name, token)
    fresh = token_of(srv, name, register=False)  # the password still works, and a new token
    assert with_token(srv, name, fresh)["type"] == "auth_ok"


def test_a_bad_token_of_a_banned_user_is_bad_credentials_not_banned(srv: ServerProc) -> None:
    """Like a wrong password: only a good credential learns of the ban."""
    name = uniq("banbad")
    token = token_of(srv, name)
    cli(srv, "user", "ban", name)
    refused(srv, name, token[:-2] + "AA")


# --------------------------------------------------------------------------
# never in clear; counted in the metrics
# --------------------------------------------------------------------------
def test_no_token_in_the_log_or_any_file(start_server: Start) -> None:
    server = start_server("--log-level", "DEBUG")
    name = uniq("clear")
    tokens = [token_of(server, name)]
    tokens.append(str(with_token(server, name, tokens[0])["token"]))
    refused(server, name, tokens[0][:-2] + "AA")
    s = login(server, name, register=False)
    s.ok({"type": "passwd", "old": PASSWORD, "new": NEW})
    server = restart(server, start_server)
    tokens.append(token_of(server, name, NEW, register=False))
    folder = server.users_file.parent
    parts = {p for t in tokens for p in t.split(".") if len(p) > 8}
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for part in parts:
                assert part.encode() not in data, (path.name, part)
    log = "".join(p.read_text() for p in folder.glob("*.log"))
    assert f"user={name} peer=" in log and "with a token" in log  # said, never shown


def test_token_logins_are_counted_by_result_in_the_metrics(start_server: Start) -> None:
    server = start_server("--metrics", "127.0.0.1:0")
    name = uniq("metr")
    token = token_of(server, name)
    assert with_token(server, name, token)["type"] == "auth_ok"
    refused(server, name, token[:-2] + "AA")
    deadline = time.monotonic() + 10
    while not (found := re.search(r"metrics on (http://\S+)/metrics", server.log())):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with urllib.request.urlopen(f"{found.group(1)}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def count(result: str, kind: str) -> float:
        return samples[("chat_logins_total", (("kind", kind), ("result", result)))]

    assert count("ok", "token") == 1 and count("bad_credentials", "token") == 1
    assert count("ok", "password") == 1  # the registration that gave the token
