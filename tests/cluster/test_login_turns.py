"""An account's failed-login turns are one for the whole cluster (cluster/turns.py).

Each node's throttle gives an account one password check per wait past its free failures
(tests/e2e/test_server_login_throttle.py). Without a shared turn, a guesser connected to
two nodes gets two checks per wait. Real nodes on a real Redis (one instance and a Redis
Cluster), guessers from several loopback addresses on each node; `--login-delay 0.2` makes
a wait short enough for a test.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest

from chat.server.accounts.hashing import HashExecutor
from chat.server.accounts.throttle import LoginThrottle
from chat.server.accounts.users_file import StoreError
from chat.server.cluster import keys
from chat.server.cluster.box import Box
from chat.server.cluster.bus import Message, Subscriber
from chat.server.cluster.link import Link
from chat.server.cluster.turns import GRACE, RedisTurns
from chat.server.crypto.cipher import load_cipher
from conftest import ServerProc
from e2e.server_support import register
from e2e.test_server_login_throttle import FREE, STEP, Guessers, owner_login

from .conftest import AnyRedis, at_rest, free_port

Start = Callable[..., ServerProc]
KEY = bytes(range(32))


def _evalsha_calls(redis_proc: AnyRedis) -> int:
    total = 0
    for client in redis_proc.node_clients():
        stats = client.info("commandstats")
        total += int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return total


def _hear(subscriber: Subscriber, learner: RedisTurns) -> None:
    """What the turns channel said by now, to `learner` (as a node's control subscriber)."""
    deadline = time.monotonic() + 0.5
    while (left := deadline - time.monotonic()) > 0:
        for event in subscriber.poll(left):
            if isinstance(event, Message):
                learner.heard(event.data)


def test_turns_are_shared_by_every_process_and_decay_and_forgive(redis_server: AnyRedis) -> None:
    """The seam itself, two processes' worth over one Redis: what one fails, the other
    hears of and waits for; nothing of the name in Redis; nothing kept once forgiven."""
    box = Box(KEY, load_cipher())
    a = RedisTurns(Link(redis_server.url), box, free=2, base=STEP, cap=STEP, decay=30)
    b = RedisTurns(Link(redis_server.url), box, free=2, base=STEP, cap=STEP, decay=30)
    subscriber = Subscriber(Link(redis_server.url), [keys.TURNS])
    subscriber.open()
    try:
        before = _evalsha_calls(redis_server)
        assert a.take("victim") == 0 and b.take("victim") == 0  # no failure: no turn to take
        assert _evalsha_calls(redis_server) == before  # ...and no round trip for it
        for turns in (a, a, a):  # three failures on a: past the two free ones
            turns.failed("victim")
        _hear(subscriber, b)  # b hears of them (the channel), as its node would
        b.failed("victim")  # one more, from b: the next slot is a step away
        wait = a.take("victim")  # a asks first: first in the line for the next slot
        assert 0 < wait <= STEP + 0.01, wait
        wait = b.take("victim")  # b's failure holds the next slot for both
        assert 0 < wait <= STEP + 0.01, wait
        time.sleep(wait)
        kept = b.take("victim")  # the slot is free, but kept a moment for a, who asked first
        assert 0 < kept <= GRACE + 0.01, kept
        assert a.take("victim") == 0  # a takes it...
        wait = b.take("victim")
        assert STEP / 2 < wait <= STEP + 0.01, wait  # ...and b waits a step, first in line now
        assert a.take("somebody-else") == 0  # another account has its own turns
        client = redis_server.client()
        key, _waiting = keys.login_turns(box.blind("user", "victim"))
        assert 0 < client.ttl(key) <= 4 * 30 + 3  # gone once its 4 failures have decayed
        assert not any(b"victim" in blob for blob in at_rest(client))
        b.forgive("victim", 4)  # a good login that forgives them all
        assert not client.exists(key)
        assert a.take("victim") == 0 and b.take("victim") == 0
    finally:
        subscriber.close()


def test_guessers_on_two_nodes_get_one_check_per_step_for_the_whole_cluster(
    redis_server: AnyRedis, start_node: Start
) -> None:
    a = start_node(redis_server.url, "--login-delay", str(STEP))
    b = start_node(redis_server.url, "--login-delay", str(STEP))
    register(a, "victim")
    wanted = 36
    attacks = [Guessers(a, 4), Guessers(b, 4)]
    try:
        deadline = time.monotonic() + 40
        while sum(g.count() for g in attacks) < 2 * FREE + 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        owner = [owner_login(a), owner_login(b)]  # the owner, on each node, meanwhile
        while sum(g.count() for g in attacks) < wanted:
            assert time.monotonic() < deadline, "too few answered in 40 s"
            time.sleep(0.02)
    finally:
        times = sorted(itertools.chain.from_iterable(g.finish() for g in attacks))
    for g in attacks:
        assert not [f for f in g.other if "exception" not in f], g.other[:5]
    checked = times[:wanted]
    # Each node alone would give the account a check per step: two nodes, two per step
    # (the wanted answers in half the time). Shared, one per step for the cluster (the
    # free ones of each node's own throttle aside: at most 2 * FREE without a wait).
    took = checked[-1] - checked[2 * FREE - 1]
    assert took >= (wanted - 2 * FREE) * STEP * 0.85, f"{wanted} wrong passwords in {took:.2f}s"
    # The owner, from an address without failures, still gets in within a few steps on
    # either node (the nodes' chosen attempts race for each turn).
    assert max(owner) < 6 * STEP + 1.0, owner


def test_turns_that_do_not_answer_let_the_check_go_and_cost_nothing_else() -> None:
    """Redis away: the check goes (it meets the same Redis for the account, and fails
    there, answered `store_failed`), and the throttle's bookkeeping never raises."""
    nobody_there = f"redis://127.0.0.1:{free_port()}/0"
    turns = RedisTurns(Link(nobody_there), Box(KEY, load_cipher()), cap=STEP)
    runner = HashExecutor(1, 8)
    throttle = LoginThrottle(cap=STEP, runner=runner, shared=turns)
    runner.start()
    try:
        checked = threading.Event()
        assert throttle.submit("victim", "127.0.0.9", lambda now: now and checked.set()) is None
        assert checked.wait(10)
        throttle.failure("victim", "127.0.0.9")
        throttle.success("victim", "127.0.0.9")
    finally:
        runner.stop()


def test_only_accounts_said_to_have_failures_ask_redis_and_they_cool_down() -> None:
    """What the turns channel says decides which logins ask Redis (here a Redis that is
    not there: asking it is a StoreError, not asking is a 0); a message out of its bounds
    is ignored; an account cools down once its failures would have decayed."""
    now = [1000.0]
    box = Box(KEY, load_cipher())
    nobody_there = f"redis://127.0.0.1:{free_port()}/0"
    turns = RedisTurns(Link(nobody_there), box, free=5, cap=2.0, decay=30, clock=lambda: now[0])
    assert turns.take("victim") == 0  # nothing said: no round trip
    blind = box.blind("user", "victim")
    for bad in (b"nonsense", f"{blind} nan".encode(), f"{blind} -1".encode(),
                f"{blind} 1e12".encode(), f"{blind[:-2]} 9".encode(), b"\xff\xfe 9"):  # fmt: skip
        turns.heard(bad)
        assert turns.take("victim") == 0, bad
    turns.heard(f"{blind} 7.000".encode())  # two past the free five
    with pytest.raises(StoreError):
        turns.take("victim")  # hot: Redis is asked (and is not there)
    assert turns.take("someone-else") == 0
    now[0] += 2 * 30 + 2.0 + 1.0 - 0.01  # the failures past the free ones decayed, a wait more
    with pytest.raises(StoreError):
        turns.take("victim")
    now[0] += 0.02
    assert turns.take("victim") == 0  # cooled down: forgotten
