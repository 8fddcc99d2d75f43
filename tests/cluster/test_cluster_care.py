"""Tokens and one's own account in a cluster (protocol v1.2 sections 6 and 7): every node.

Two real nodes, each with its own data folder and the same key file, on a
real redis-server (the `pair` of test_cluster_operator.py). A token made on
one node logs in on the other; a `passwd` or `delete_account` on one ends
the sessions and kills the tokens on the other at once; no token is ever in
Redis.
"""

from __future__ import annotations

from typing import Any

from conftest import ServerProc
from e2e.server_support import PASSWORD, assert_error, request, roster_changes
from e2e.v12_support import Session, login

from .conftest import RedisProc

NEW = "a brand new password"


def token_of(node: ServerProc, name: str, password: str = PASSWORD, register: bool = True) -> str:
    c = node.client()
    auth = {"type": "auth", "user": name, "password": password, "register": register}
    c.send(auth | {"features": ["resume"]})
    ok = c.recv()
    assert ok["type"] == "auth_ok" and isinstance(ok.get("token"), str), ok
    c.close()
    return str(ok["token"])


def with_token(node: ServerProc, name: str, token: str) -> dict[str, Any]:
    c = node.client()
    c.send({"type": "auth", "user": name, "token": token, "features": ["resume"]})
    return c.recv(10)


def ended_with(session: Session | Any, reason: str) -> None:
    c = session.c if isinstance(session, Session) else session
    frames = [f for f in c.expect_closed(10) if f["type"] != "roster"]
    assert frames and frames[-1] == {"type": "bye", "reason": reason}, frames


def test_a_token_from_one_node_logs_in_on_the_other(pair: Any) -> None:
    a, b, _cli = pair
    token = token_of(a, "alice")
    ok = with_token(b, "alice", token)
    assert ok["type"] == "auth_ok" and ok["user"] == "alice" and isinstance(ok["token"], str)
    assert with_token(a, "alice", ok["token"])["type"] == "auth_ok"  # and B's on A


def test_a_passwd_on_one_node_kills_the_tokens_on_the_other_at_once(pair: Any) -> None:
    a, b, _cli = pair
    token = token_of(a, "alice")
    assert with_token(b, "alice", token)["type"] == "auth_ok"
    s = login(a, "alice", register=False)
    s.ok({"type": "passwd", "old": PASSWORD, "new": NEW})
    assert_error(with_token(b, "alice", token), "bad_credentials")  # no wait: the next login
    assert with_token(b, "alice", token_of(a, "alice", NEW, register=False))["type"] == "auth_ok"


def test_passwd_logout_others_ends_the_sessions_on_every_node_but_this_one(pair: Any) -> None:
    a, b, _cli = pair
    register_on = login(a, "bob")
    s = login(a, "alice")
    here, there = login(a, "alice", register=False), login(b, "alice", register=False)
    s.ok({"type": "passwd", "old": PASSWORD, "new": NEW, "logout_others": True})
    ended_with(here, "password_changed")
    ended_with(there, "password_changed")
    s.sync()
    assert "logout of alice, told by node" in b.log()
    register_on.sync()


def test_a_delete_account_on_one_node_ends_the_sessions_and_tokens_on_every_node(
    pair: Any,
) -> None:
    a, b, _cli = pair
    bob = b.client()
    bob.login("bob", PASSWORD)
    assert request(bob, {"type": "ping"}) == {"type": "pong"}
    token = token_of(a, "alice")
    for i in range(2):  # queued for alice, offline: her catch-up gets them, unacknowledged
        answer = request(bob, {"type": "send", "id": i, "to": ["alice"], "text": f"q{i}"})
        assert answer["queued"] == ["alice"], answer
    s = login(a, "alice", register=False)
    assert [m["text"] for m in s.msgs(2)] == ["q0", "q1"]
    there = login(b, "alice", register=False)
    roster_changes(bob, join=["alice"])
    s.send({"type": "delete_account", "id": "d", "password": PASSWORD})
    frames = s.c.expect_closed(10)
    assert frames[-2:] == [{"type": "ok", "id": "d"}, {"type": "bye", "reason": "account_deleted"}]
    ended_with(there, "account_deleted")
    roster_changes(bob, leave=["alice"])
    assert_error(with_token(b, "alice", token), "bad_credentials")
    c = b.client()
    c.send({"type": "auth", "user": "alice", "password": PASSWORD})
    assert_error(c.recv(), "bad_credentials")
    fresh = login(b, "alice", password=NEW)  # the name is free on every node: a new account
    assert not [f for f in fresh.login_frames if f["type"] == "msg"]  # her queue went with her
    assert fresh.drain() == []
    assert_error(with_token(a, "alice", token), "bad_credentials")


def test_an_unban_given_to_one_node_kills_the_old_tokens_on_every_node(pair: Any) -> None:
    a, b, cli = pair
    token = token_of(a, "alice")
    assert cli(a, "user", "ban", "alice").returncode == 0
    banned = with_token(b, "alice", token)
    assert banned == {"type": "error", "code": "banned", "message": "this account is banned"}
    assert cli(a, "user", "unban", "alice").returncode == 0
    assert_error(with_token(b, "alice", token), "bad_credentials")
    assert with_token(b, "alice", token_of(b, "alice", register=False))["type"] == "auth_ok"


def test_no_token_in_redis(pair: Any, redis_server: RedisProc) -> None:
    a, b, _cli = pair
    tokens = [token_of(a, "alice"), token_of(b, "bob")]
    tokens.append(str(with_token(b, "alice", tokens[0])["token"]))
    parts = {p for t in tokens for p in t.split(".") if len(p) > 8}
    client = redis_server.client()
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "hash":
            blobs = [key, *(x for kv in client.hgetall(key).items() for x in kv)]
        elif kind == "string":
            blobs = [key, client.get(key)]
        elif kind == "zset":
            blobs = [key, *(m for m, _ in client.zrange(key, 0, -1, withscores=True))]
        elif kind == "list":
            blobs = [key, *client.lrange(key, 0, -1)]
        elif kind == "set":
            blobs = [key, *client.smembers(key)]
        elif kind == "stream":
            blobs = [key, *(v for _, f in client.xrange(key) for kv in f.items() for v in kv)]
        else:
            raise AssertionError(f"a {kind} at {key!r}: scan it too")
        for blob in blobs:
            for part in parts:
                assert part.encode() not in blob, (key, part)
