"""`--refuse-case-variants` across the nodes of a cluster, on a real Redis.

Names in Redis are blind indexes, so a case-folded blind index (`chat:{g}:folded`)
is kept beside `chat:{g}:users`; a registration checks and writes both in one
script. Two nodes registering `Bob` and `bob` at once: one wins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from conftest import ServerProc
from together import run_together

from .conftest import AnyRedis

Start = Callable[..., ServerProc]
PASSWORD = "a good password"


def _register(node: ServerProc, name: str, register: bool = True) -> dict[str, Any]:
    c = node.client()
    try:
        c.send({"type": "auth", "user": name, "password": PASSWORD, "register": register})
        return c.recv()
    finally:
        c.close()


def test_a_case_variant_registered_on_another_node_is_user_exists(
    redis_server: AnyRedis, start_node: Start
) -> None:
    a = start_node(redis_server.url, "--refuse-case-variants")
    b = start_node(redis_server.url, "--refuse-case-variants")
    assert _register(a, "alice") == {"type": "auth_ok", "user": "alice"}
    answer = _register(b, "Alice")
    assert (answer["type"], answer["code"]) == ("error", "user_exists"), answer
    assert _register(b, "alice", register=False) == {"type": "auth_ok", "user": "alice"}
    keys = redis_server.client().hkeys("chat:{g}:folded")
    assert len(keys) == 1 and b"alice" not in keys[0]  # a blind index, no name in clear


def test_without_the_option_the_cluster_keeps_names_case_sensitive(
    redis_server: AnyRedis, start_node: Start
) -> None:
    a = start_node(redis_server.url)
    b = start_node(redis_server.url)
    assert _register(a, "caseuser") == {"type": "auth_ok", "user": "caseuser"}
    assert _register(b, "Caseuser") == {"type": "auth_ok", "user": "Caseuser"}


def test_accounts_made_before_the_index_are_indexed_by_a_node_with_the_option(
    redis_server: AnyRedis, start_node: Start
) -> None:
    old = start_node(redis_server.url)
    assert _register(old, "carol") == {"type": "auth_ok", "user": "carol"}
    redis_server.client().delete("chat:{g}:folded")  # as a cluster from before the index
    new = start_node(redis_server.url, "--refuse-case-variants")
    deadline = time.monotonic() + 10  # logged as the node joins, after "listening"
    while "joined cluster" not in new.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "1 names added to the case-folded index" in new.log()
    assert _register(new, "Carol")["code"] == "user_exists"
    # Each node applies its own setting (docs: give every node the same one); the index is
    # kept by both, so a name the old node registers is known to the new one at once.
    assert _register(old, "Dave") == {"type": "auth_ok", "user": "Dave"}
    assert _register(new, "dave")["code"] == "user_exists"
    assert _register(old, "DAVE") == {"type": "auth_ok", "user": "DAVE"}


def test_two_nodes_registering_two_variants_at_once_have_one_winner(
    redis_server: AnyRedis, start_node: Start
) -> None:
    a = start_node(redis_server.url, "--refuse-case-variants", "--hash-threads", "4")
    b = start_node(redis_server.url, "--refuse-case-variants", "--hash-threads", "4")
    results: dict[str, dict[str, Any]] = {}
    jobs = [(a, f"pair{i}") for i in range(6)] + [(b, f"PAIR{i}") for i in range(6)]
    barrier = threading.Barrier(len(jobs))

    def register(node: ServerProc, name: str) -> None:
        barrier.wait(10)
        results[name] = _register(node, name)

    run_together(register, jobs, timeout=30)
    for i in range(6):
        pair = [results[f"pair{i}"], results[f"PAIR{i}"]]
        assert sorted(r["type"] for r in pair) == ["auth_ok", "error"], pair
