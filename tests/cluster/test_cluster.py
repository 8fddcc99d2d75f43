"""Protocol v1.1 section 6 from outside: three real nodes on one real Redis behave as one server."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from chat.server.cluster.accounts import RedisAccounts
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.crypto.cipher import load_cipher
from chat.server.crypto.keyfile import load_or_create_key
from conftest import ServerProc
from e2e.server_support import (
    PASSWORD,
    messages,
    next_frame,
    register,
    request,
    roster_changes,
)

from .conftest import AnyRedis, at_rest

Start = Callable[..., ServerProc]


def full_roster(client: Any) -> set[str]:
    return set(client.login_roster["users"])


def login(node: ServerProc, name: str, register_: bool = True) -> Any:
    c = node.client()
    roster = c.login(name, PASSWORD, register=register_)
    assert request(c, {"type": "ping"}) == {"type": "pong"}
    c.login_roster = roster
    return c


def send(client: Any, to: Any, text: str, msg_id: Any = "m") -> dict[str, Any]:
    answer = request(client, {"type": "send", "id": msg_id, "to": to, "text": text})
    while answer["type"] == "msg":
        answer = next_frame(client)
    assert answer["type"] == "sent" and answer["id"] == msg_id, answer
    return answer


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --- one roster ----------------------------------------------------------------------------
def test_users_on_other_nodes_are_in_every_roster_and_join_once(three: list[ServerProc]) -> None:
    a, b, c = three
    alice = login(a, "alice")
    bob = login(b, "bob")
    assert full_roster(bob) == {"alice"}
    roster_changes(alice, join=["bob"])
    carol = login(c, "carol")
    assert full_roster(carol) == {"alice", "bob"}
    roster_changes(alice, join=["carol"])
    roster_changes(bob, join=["carol"])


def test_a_second_session_elsewhere_is_no_join_and_only_the_last_one_leaves(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    watcher = login(c, "carol")
    first = login(a, "alice")
    roster_changes(watcher, join=["alice"])
    second = login(b, "alice", register_=False)
    assert watcher.silent(0.5)  # no second join
    first.send({"type": "bye"})
    first.expect_closed()
    assert watcher.silent(0.5)  # alice is still on node b: no leave
    second.send({"type": "bye"})
    second.expect_closed()
    roster_changes(watcher, leave=["alice"])


# --- delivery ----------------------------------------------------------------------------
def test_everyone_one_person_and_a_group_across_nodes_with_the_right_sent(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    alice, bob, carol = login(a, "alice"), login(b, "bob"), login(c, "carol")
    roster_changes(alice, join=["bob", "carol"])
    roster_changes(bob, join=["carol"])
    sent = send(alice, "*", "hello all", "all")
    assert sorted(sent["delivered"]) == ["bob", "carol"] and sent["missing"] == []
    assert [m["text"] for m in messages(bob, 1)] == ["hello all"]
    assert [m["text"] for m in messages(carol, 1)] == ["hello all"]
    sent = send(bob, ["carol"], "just you", "one")
    assert sent["delivered"] == ["carol"] and sent["missing"] == []
    (msg,) = messages(carol, 1)
    assert msg["from"] == "bob" and msg["to"] == ["carol"]
    register(a, "dave")
    sent = send(carol, ["alice", "bob", "dave", "zed"], "a group", "group")
    assert sent["delivered"] == ["alice", "bob"]
    assert sent["missing"] == ["dave", "zed"] and sent["queued"] == ["dave"]
    assert [m["text"] for m in messages(alice, 1)] == ["a group"]
    assert [m["text"] for m in messages(bob, 1)] == ["a group"]


def test_a_message_to_everyone_never_reaches_the_senders_sessions_on_other_nodes(
    three: list[ServerProc],
) -> None:
    a, b, _ = three
    alice_a = login(a, "alice")
    alice_b = login(b, "alice", register_=False)
    bob = login(b, "bob")
    roster_changes(alice_b, join=["bob"])
    roster_changes(alice_a, join=["bob"])
    send(alice_a, "*", "to everyone else")
    assert [m["text"] for m in messages(bob, 1)] == ["to everyone else"]
    assert alice_b.silent(0.5)


def test_five_hundred_messages_from_one_sender_arrive_in_order_on_other_nodes(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    alice = login(a, "alice")
    bob, carol = login(b, "bob"), login(c, "carol")
    roster_changes(alice, join=["bob", "carol"])  # node a knows where they are
    for i in range(500):
        alice.send(
            {"type": "send", "id": i, "to": "*" if i % 2 else ["bob", "carol"], "text": f"m{i}"}
        )
    for reader in (bob, carol):
        got = [m["text"] for m in messages(reader, 500, timeout=30)]
        assert got == [f"m{i}" for i in range(500)]


def test_ids_are_unique_across_nodes_and_rise_per_sender(three: list[ServerProc]) -> None:
    a, b, c = three
    alice, bob, carol = login(a, "alice"), login(b, "bob"), login(c, "carol")
    roster_changes(alice, join=["bob", "carol"])
    roster_changes(bob, join=["carol"])
    for i in range(20):
        alice.send({"type": "send", "id": i, "to": ["carol"], "text": f"a{i}"})
        bob.send({"type": "send", "id": i, "to": ["carol"], "text": f"b{i}"})
    got = messages(carol, 40, timeout=20)
    ids = [m["id"] for m in got]
    assert len(set(ids)) == 40
    for sender in ("alice", "bob"):
        mine = [m["id"] for m in got if m["from"] == sender]
        assert mine == sorted(mine)


# --- accounts, offline queue, history ---------------------------------------------------
def test_an_account_registered_on_one_node_logs_in_on_another_at_once(
    three: list[ServerProc],
) -> None:
    a, b, _ = three
    fresh = a.client()
    assert fresh.login("newcomer", PASSWORD, register=True)["type"] == "roster"
    other = b.client()
    assert other.login("newcomer", PASSWORD, register=False)["type"] == "roster"
    taken = b.client()
    taken.send({"type": "auth", "user": "newcomer", "password": "x", "register": True})
    assert taken.recv()["code"] == "user_exists"


def test_a_send_to_an_account_made_a_moment_ago_elsewhere_is_queued_not_missing(
    redis_server: AnyRedis, start_node: Start
) -> None:
    """A node hears of an account made on another node on the accounts channel, a moment
    later. A send naming it meanwhile is held while Redis is asked (core/fanout.py
    `_confirm`) and queued, never answered `missing` and dropped. Here the moment lasts:
    the account is made as another node makes it, but nothing is published on the
    channel, so only Redis can tell node a."""
    a = start_node(redis_server.url)
    alice = login(a, "alice")
    link = Link(redis_server.url)
    link.publish = lambda *args: None  # type: ignore[method-assign]  # the news: not said
    elsewhere = RedisAccounts(link, Box(load_or_create_key(a.key_file)[0], load_cipher()), 10)
    assert elsewhere.register("newcomer", PASSWORD)
    first = send(alice, ["newcomer", "nobody-at-all"], "welcome", "w1")
    # `missing`: not delivered now; `queued`: kept for the account (v1.1 section 3).
    assert first["queued"] == ["newcomer"], first
    assert first["missing"] == ["newcomer", "nobody-at-all"] and first["delivered"] == []
    again = send(alice, ["newcomer"], "known now", "w2")  # learned: routed as any account
    assert again["queued"] == ["newcomer"], again
    newcomer = a.client()
    newcomer.login("newcomer", PASSWORD, register=False)
    assert [m["text"] for m in messages(newcomer, 2)] == ["welcome", "known now"]
    assert send(alice, ["newcomer"], "live", "w3")["delivered"] == ["newcomer"]


def test_offline_queue_and_history_are_one_for_the_cluster(three: list[ServerProc]) -> None:
    a, b, c = three
    register(b, "bob")
    alice = login(a, "alice")
    sent = send(alice, ["bob"], "while you were away", "q")
    assert sent["queued"] == ["bob"]
    bob = c.client()
    bob.login("bob", PASSWORD, register=False)
    (stored,) = messages(bob, 1)
    assert stored["offline"] is True and stored["text"] == "while you were away"
    bob.send({"type": "offline_ack", "upto": stored["id"]})
    send(bob, ["alice"], "back now", "r")
    messages(alice, 1)
    page = request(alice, {"type": "history", "id": "h", "with": "bob"})
    assert [m["text"] for m in page["messages"]] == ["while you were away", "back now"]
    again = login(b, "bob", register_=False)  # acked on node c: gone for every node
    assert again.silent(0.5)


# --- failures ------------------------------------------------------------------------------
def test_a_node_killed_costs_only_its_own_users_who_leave_within_ten_seconds(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    alice, bob = login(a, "alice"), login(b, "bob")
    login(c, "carol")
    roster_changes(alice, join=["bob", "carol"])
    roster_changes(bob, join=["carol"])
    c.stop(signal.SIGKILL)
    started = time.monotonic()
    roster_changes(alice, leave=["carol"], timeout=12)
    assert time.monotonic() - started < 10
    roster_changes(bob, leave=["carol"], timeout=5)
    sent = send(alice, "*", "still here", "after")
    assert sent["delivered"] == ["bob"]
    assert [m["text"] for m in messages(bob, 1)] == ["still here"]


def test_redis_going_away_keeps_local_chat_and_cross_node_traffic_comes_back(
    start_redis: Callable[..., AnyRedis], start_node: Start
) -> None:
    redis_server = start_redis()  # its own: it is killed and started again, empty
    a, b = start_node(redis_server.url), start_node(redis_server.url)
    alice, carol = login(a, "alice"), login(a, "carol")
    bob = login(b, "bob")
    roster_changes(alice, join=["carol", "bob"])
    roster_changes(carol, join=["bob"])
    redis_server.stop(signal.SIGKILL)
    sent = send(alice, ["carol", "bob"], "during the outage", "out")
    assert sent["delivered"] == ["carol"] and "bob" in sent["missing"]
    assert [m["text"] for m in messages(carol, 1)] == ["during the outage"]
    assert wait_until(lambda: "went away" in a.log())
    redis_server.start()  # the same port, an empty redis: the nodes put back what they know
    assert wait_until(lambda: "resynchronised" in a.log() and "resynchronised" in b.log(), 20)
    deadline = time.monotonic() + 15
    while True:
        sent = send(alice, ["bob"], "after the outage", f"try{time.monotonic()}")
        if sent["delivered"] == ["bob"]:
            break
        assert time.monotonic() < deadline, sent
        time.sleep(0.3)
    texts: list[str] = []
    while "after the outage" not in texts:
        texts.append(next_frame(bob)["text"])
    assert "during the outage" not in texts  # it was not delivered to bob, as `sent` said


# --- at rest and on the wire -------------------------------------------------------------------
SECRETS = ["alice", "bob", "carol", "the door code is 4711", "встреча"]


def test_nothing_in_redis_and_nothing_it_carries_is_in_clear(
    redis_server: AnyRedis, start_node: Start
) -> None:
    seen: list[bytes] = []
    stop = threading.Event()

    def watch(monitor_client: Any) -> None:  # every server of a Redis Cluster
        with monitor_client.monitor() as m:
            for command in m.listen():
                seen.append(command["command"].encode("utf-8", "surrogateescape"))
                if stop.is_set():
                    return

    for node_client in redis_server.node_clients():
        threading.Thread(target=watch, args=(node_client,), daemon=True).start()
    time.sleep(0.3)
    a, b = start_node(redis_server.url), start_node(redis_server.url)
    register(a, "carol")
    alice, bob = login(a, "alice"), login(b, "bob")
    roster_changes(alice, join=["bob"])
    send(alice, ["bob"], "the door code is 4711", "1")
    send(bob, ["carol"], "встреча", "2")
    send(bob, "*", "the door code is 4711", "3")
    request(alice, {"type": "history", "id": "h", "with": "bob"})
    time.sleep(0.5)
    stop.set()
    for node_client in redis_server.node_clients():
        node_client.ping()  # one more command, so each monitor loop sees `stop`
    stored = b"".join(at_rest(redis_server.client()))
    assert len(seen) > 20 and stored
    for secret in SECRETS:
        for encoding in ("utf-8", "utf-16-le"):
            word = secret.encode(encoding)
            assert word not in stored, (secret, "stored")
            assert not any(word in c for c in seen), (secret, "on the wire")
        # MONITOR shows bytes outside ASCII escaped: look for that spelling too.
        escaped = "".join(
            chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in secret.encode()
        ).encode()
        assert not any(escaped in c for c in seen), (secret, "escaped on the wire")


def test_a_password_in_the_url_works_and_never_reaches_the_log(
    start_redis: Callable[..., AnyRedis], start_node: Start
) -> None:
    secured = start_redis(password="s3cr3t-redis-pw")
    a, b = start_node(secured.url), start_node(secured.url)
    alice, bob = login(a, "alice"), login(b, "bob")
    roster_changes(alice, join=["bob"])
    send(alice, ["bob"], "over an authenticated redis", "p")
    assert [m["text"] for m in messages(bob, 1)] == ["over an authenticated redis"]
    for node in (a, b):
        text = node.log()
        assert "s3cr3t-redis-pw" not in text
        assert re.search(r"redis(\+cluster)?://:\*\*\*@127\.0\.0\.1:\d+", text)


def test_an_acl_user_limited_to_the_chat_keys_works_and_its_password_never_shows(
    start_redis: Callable[..., AnyRedis], start_node: Start
) -> None:
    """`redis://user:password@host`: an ACL user who may touch only `chat:*` keys and
    channels and no @dangerous command (so not CONFIG: the durability check says it cannot
    look), as an operator would give a chat node."""
    secured = start_redis(password="admin-pw-not-for-nodes")
    for node_client in secured.node_clients():  # every server of a Redis Cluster
        node_client.acl_setuser(
            "chatnode",
            enabled=True,
            passwords=["+n0de-s3cret"],
            keys=["chat:*"],
            channels=["chat:*"],
            commands=["+@all", "-@dangerous"],
        )
    url = secured.url_as("chatnode", "n0de-s3cret")
    a, b = start_node(url), start_node(url)
    alice, bob = login(a, "alice"), login(b, "bob")
    roster_changes(alice, join=["bob"])
    send(alice, ["bob"], "through an ACL user", "p")
    assert [m["text"] for m in messages(bob, 1)] == ["through an ACL user"]
    for node in (a, b):
        text = node.log()
        assert "n0de-s3cret" not in text
        assert re.search(r"redis(\+cluster)?://chatnode:\*\*\*@127\.0\.0\.1:\d+", text)
        assert "cannot read redis' persistence settings" in text
    assert all(key.startswith(b"chat:") for key in secured.client().scan_iter(count=1000))


def test_a_node_warns_when_redis_keeps_nothing_durably(three: list[ServerProc]) -> None:
    assert "appendfsync" in three[0].log() and "WARNING" in three[0].log()


def test_a_node_with_another_key_file_refuses_to_join(
    redis_server: AnyRedis, start_node: Start, tmp_path: Any
) -> None:
    start_node(redis_server.url)
    other_key = tmp_path / "other.key"
    other_key.write_bytes(bytes(range(50, 82)))
    other_key.chmod(0o600)
    refused = start_node(redis_server.url, key_file=other_key, wait=False)
    assert refused.proc.wait(15) == 1
    err = refused.proc.stderr.read().decode()  # type: ignore[union-attr]
    assert err.count("\n") == 1 and "same key" in err


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/0",
        "redis://",
        "redis+cluster://",
        "redis+cluster://127.0.0.1:7000,:7001",
        "rediss+cluster://127.0.0.1:notaport",
        "redis+cluster://127.0.0.1:7000/3",  # a Redis Cluster has database 0 only
    ],
)
def test_a_url_that_is_not_redis_is_one_line_and_exit_2(start_node: Start, url: str) -> None:
    node = start_node(url, wait=False)
    assert node.proc.wait(15) == 2
    assert node.proc.stderr.read().decode().count("\n") == 1  # type: ignore[union-attr]


def test_a_redis_over_tls_verified_against_its_certificate(
    start_redis: Callable[..., AnyRedis], start_node: Start, tmp_path: Any, redis_kind: str
) -> None:
    from certs import make_pair

    cert, key = make_pair(tmp_path / "tls", "redis")
    if redis_kind == "redis":
        port = _free_port()
        tls = start_redis(
            *("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)),
            *("--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"),
            tls_port=port,
            tls_ca=str(cert),
        )
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        untrusted = f"rediss://127.0.0.1:{port}/0"
    else:  # rediss+cluster://: every master TLS only, the cluster bus too
        tls = start_redis(tls=(str(cert), str(key)))
        url = tls.url
        assert url.startswith("rediss+cluster://")
        untrusted = url.partition("?")[0]
    a, b = start_node(url), start_node(url)
    alice, bob = login(a, "alice"), login(b, "bob")
    roster_changes(alice, join=["bob"])
    send(alice, ["bob"], "over tls", "t")
    assert [m["text"] for m in messages(bob, 1)] == ["over tls"]
    # Without the CA the certificate is not trusted: one line, no start.
    refused = start_node(untrusted, wait=False)
    assert refused.proc.wait(15) != 0
    assert refused.proc.stderr.read().decode().count("\n") == 1  # type: ignore[union-attr]


def _free_port() -> int:
    from .conftest import free_port

    return free_port()
