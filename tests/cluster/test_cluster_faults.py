"""Issue "1 of 6", items 6 and 7: what Redis does never holds a sender, and an ack is final.

Real nodes on a real redis-server. Item 6 freezes Redis with SIGSTOP (a Redis that
neither answers nor closes: the worst case for a client library's timeouts) and
checks that a send whose recipient is on another node is answered within a second,
and that the sender's later frames are not stuck behind it. Item 7 acknowledges
offline messages on one node, leaves, and logs in at once on another: nothing comes
again.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from conftest import ServerProc
from e2e.server_support import PASSWORD, messages, next_frame, register, request

from .conftest import AnyRedis
from .test_cluster import login, send, wait_until

Start = Callable[..., ServerProc]


def test_a_frozen_redis_never_holds_a_send_more_than_a_second(
    redis_server: AnyRedis, start_node: Start
) -> None:
    a, b = start_node(redis_server.url), start_node(redis_server.url)
    alice, bob, carol = login(a, "alice"), login(b, "bob"), login(a, "carol")
    register(a, "dave")
    assert wait_until(lambda: "bob" in send(alice, ["bob"], "warm up", "w")["delivered"])
    messages(bob, 1)
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(3):  # the first meets the freeze; the later ones a node that knows
            started = time.monotonic()
            alice.send({"type": "send", "id": f"s{i}", "to": ["bob"], "text": f"frozen {i}"})
            alice.send({"type": "ping"})
            answer = next_frame(alice, timeout=10)
            took = time.monotonic() - started
            assert answer["type"] == "sent" and answer["id"] == f"s{i}", answer
            assert took < 1.0, f"send {i} answered after {took:.2f}s"
            assert "bob" not in answer["delivered"]
            assert "bob" in answer["missing"]
            assert next_frame(alice, timeout=1)["type"] == "pong"
        # Local chat on the node goes on meanwhile, at once.
        started = time.monotonic()
        sent = send(carol, ["alice"], "local", "l")
        assert sent["delivered"] == ["alice"] and time.monotonic() - started < 1.0
        assert [m["text"] for m in messages(alice, 1)] == ["local"]
        # A name the node has not heard of is asked of Redis (it may be an account made a
        # moment ago elsewhere): a frozen Redis holds that send at most its deadline.
        started = time.monotonic()
        unknown = send(carol, ["not-heard-of", "alice"], "who?", "u")
        assert time.monotonic() - started < 1.0, unknown
        assert unknown["missing"] == ["not-heard-of"] and unknown["delivered"] == ["alice"]
        assert [m["text"] for m in messages(alice, 1)] == ["who?"]
        # A login needs the accounts in Redis: it is answered (refused for now), not held.
        started = time.monotonic()
        dave = a.client()
        dave.send({"type": "auth", "user": "dave", "password": PASSWORD})
        answer = next_frame(dave, timeout=10)
        assert time.monotonic() - started < 2.0, answer
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    # Redis is back: crossing works again.
    assert wait_until(lambda: "bob" in send(alice, ["bob"], "thawed", "t")["delivered"], timeout=20)


def test_an_acknowledged_message_never_comes_again_on_another_node(
    redis_server: AnyRedis, start_node: Start
) -> None:
    a, b = start_node(redis_server.url), start_node(redis_server.url)
    register(b, "bob")
    alice = login(a, "alice")
    # Node a may not have heard of bob's account yet (the accounts channel): Redis is asked.
    for n, text in enumerate(("stored one", "stored two")):
        assert send(alice, ["bob"], text, f"q{n}")["queued"] == ["bob"]
    for attempt in range(5):
        bob = b.client()
        bob.login("bob", PASSWORD, register=False)
        got = messages(bob, 2) if attempt == 0 else []
        if attempt == 0:
            assert [m["text"] for m in got] == ["stored one", "stored two"]
            bob.send({"type": "offline_ack", "upto": got[-1]["id"]})
        bob.send({"type": "bye"})
        assert next_frame(bob)["type"] == "bye"
        bob.close()
        # At once, on the other node: nothing of what was acknowledged.
        again = a.client()
        again.login("bob", PASSWORD, register=False)
        assert request(again, {"type": "ping"}) == {"type": "pong"}, "offline messages again"
        again.close()


def test_logins_while_redis_is_known_away_are_answered_at_once(
    redis_server: AnyRedis, start_node: Start
) -> None:
    """A node that knows Redis is away answers a login at once (refused for now): before,
    every login waited out the link's one-second timeout on a hash thread, so six logins on
    the node's two hash threads (the cores) took three seconds, and a crowd took longer."""
    a = start_node(redis_server.url, "--hash-threads", "2")
    names = [f"early{i}" for i in range(6)]
    for name in names:
        register(a, name)
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        # The heartbeat meets the freeze within a beat and a timeout and says it once; in a
        # Redis Cluster once per master, the next beat asking each (the accounts' is one).
        masters = 3 if redis_server.kind == "redis-cluster" else 1
        assert wait_until(lambda: a.log().count("went away") >= masters, timeout=15), a.log()
        clients = [a.client() for _ in names]
        started = time.monotonic()
        for client, name in zip(clients, names, strict=True):
            client.send({"type": "auth", "user": name, "password": PASSWORD})
        answers = [next_frame(client, timeout=10) for client in clients]
        took = time.monotonic() - started
        # Said, and the connection ended (a login the server could not check: protocol
        # v1 `bye` with the reason).
        assert all(x["type"] == "bye" and "try again" in x["reason"] for x in answers), answers
        assert took < 0.9, f"six logins answered in {took:.2f}s"
        # The outage was said once, by the link: not again for every login of it.
        told = [line for line in a.log().splitlines() if "of early" in line]
        assert told == [], told
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)

    # Back: the heartbeat hears Redis again, and a login works.
    def logs_in() -> bool:
        client = a.client()
        try:
            client.send({"type": "auth", "user": names[0], "password": PASSWORD})
            return next_frame(client, timeout=5)["type"] == "auth_ok"
        finally:
            client.close()

    assert wait_until(logs_in, timeout=20)
