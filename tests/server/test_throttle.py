"""The failed-login throttle, driven by a clock the test advances (no sleeping)."""

from __future__ import annotations

import threading

import pytest

from chat.server.accounts.throttle import LoginThrottle


class Clock:
    """A plain function object: the test moves time forward by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _fail(throttle: LoginThrottle, times: int, account: str = "alice", addr: str = "10.0.0.1"):
    for _ in range(times):
        throttle.failure(account, addr)


def test_a_fresh_key_is_not_delayed(clock: Clock) -> None:
    assert LoginThrottle(clock).delay("alice", "10.0.0.1") == 0.0


def test_the_first_failures_of_an_account_are_free(clock: Clock) -> None:
    t = LoginThrottle(clock, free=5)
    _fail(t, 5)
    assert t.delay("alice", "10.0.0.2") == 0.0


def test_then_the_delay_doubles_from_base_up_to_the_cap(clock: Clock) -> None:
    t = LoginThrottle(clock, free=5, base=0.25, cap=2.0, addr_free=1000)
    _fail(t, 5)
    seen = []
    for _ in range(6):
        t.failure("alice", "10.0.0.1")
        seen.append(t.delay("alice", "10.0.0.9"))
    assert seen == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_the_delay_counts_from_the_last_failure(clock: Clock) -> None:
    t = LoginThrottle(clock, free=0, base=1.0, cap=8.0)
    t.failure("alice", "10.0.0.1")
    clock.advance(0.4)
    assert t.delay("alice", "x") == pytest.approx(0.6)
    clock.advance(1.0)
    assert t.delay("alice", "x") == 0.0


def test_an_attempt_waits_the_longer_of_its_account_and_its_address(clock: Clock) -> None:
    t = LoginThrottle(clock, free=0, addr_free=0, base=0.25, cap=2.0)
    _fail(t, 3, account="alice", addr="10.0.0.1")  # alice: 1.0 s
    _fail(t, 1, account="bob", addr="10.0.0.2")
    assert t.delay("bob", "10.0.0.2") == 0.25
    assert t.delay("alice", "10.0.0.2") == 1.0  # the account is worse
    assert t.delay("carol", "10.0.0.1") == 1.0  # the address is worse (3 failures from it)
    assert t.delay("carol", "10.0.0.3") == 0.0


def test_one_address_trying_many_accounts_is_slowed_by_the_address(clock: Clock) -> None:
    t = LoginThrottle(clock, free=5, addr_free=20)
    for i in range(20):
        t.failure(f"user{i}", "10.6.6.6")
        assert t.delay(f"user{i + 1}", "10.6.6.6") == 0.0
    t.failure("user20", "10.6.6.6")
    assert t.delay("user21", "10.6.6.6") == 0.25
    assert t.delay("user21", "10.0.0.1") == 0.0  # another address is not concerned


def test_many_addresses_against_one_account_are_slowed_by_the_account(clock: Clock) -> None:
    t = LoginThrottle(clock, free=5)
    for i in range(8):
        t.failure("alice", f"10.0.0.{i}")
    assert t.delay("alice", "10.9.9.9") == 1.0


def test_failures_decay_one_per_decay_period(clock: Clock) -> None:
    t = LoginThrottle(clock, free=2, base=0.25, cap=2.0, decay=30.0)
    _fail(t, 4)
    assert t.failures(account="alice") == 4
    clock.advance(60)  # two forgiven
    assert t.failures(account="alice") == pytest.approx(2)
    t.failure("alice", "10.0.0.1")  # back to 3: one over the free two
    assert t.delay("alice", "x") == 0.25
    clock.advance(10_000)
    assert t.failures(account="alice") == 0
    t.failure("alice", "10.0.0.1")
    assert t.delay("alice", "x") == 0.0


def test_a_good_login_clears_the_account_but_not_the_address(clock: Clock) -> None:
    t = LoginThrottle(clock, free=1, addr_free=1)
    _fail(t, 3)
    t.success("alice", "10.0.0.1")
    assert t.failures(account="alice") == 0
    assert t.failures(addr="10.0.0.1") == 3
    assert t.delay("alice", "10.0.0.2") == 0.0
    assert t.delay("alice", "10.0.0.1") > 0  # what was pending for the address stays


def test_a_good_login_adds_no_delay(clock: Clock) -> None:
    t = LoginThrottle(clock, free=0)
    for _ in range(100):
        t.success("alice", "10.0.0.1")
    assert t.delay("alice", "10.0.0.1") == 0.0
    assert len(t) == 0


def test_it_never_refuses_the_delay_is_capped_however_many_failures(clock: Clock) -> None:
    t = LoginThrottle(clock, cap=2.0)
    _fail(t, 10_000)
    assert t.delay("alice", "10.0.0.1") == 2.0


def test_memory_is_bounded_oldest_keys_go_first(clock: Clock) -> None:
    t = LoginThrottle(clock, free=0, addr_free=0, max_keys=1000)
    _fail(t, 3, account="victim", addr="10.0.0.1")
    for i in range(5000):
        clock.advance(0.001)
        t.failure(f"u{i}", "10.0.0.2")
    assert len(t) <= 1000
    assert t.failures(account="victim") == 0  # evicted: the oldest
    assert t.failures(addr="10.0.0.2") > 4000  # refreshed at each failure, never evicted


def test_a_test_suite_on_127_0_0_1_with_occasional_wrong_passwords_is_hardly_slowed(
    clock: Clock,
) -> None:
    """200 logins, one in ten with a wrong password, different accounts: no delay."""
    t = LoginThrottle(clock)
    total = 0.0
    for i in range(200):
        name = f"user{i % 40}"
        total += t.delay(name, "127.0.0.1")
        clock.advance(0.05)
        if i % 10 == 0:
            t.failure(name, "127.0.0.1")
        else:
            t.success(name, "127.0.0.1")
    assert total == 0.0


def test_defaults_are_the_documented_numbers(clock: Clock) -> None:
    t = LoginThrottle(clock)
    _fail(t, 5, addr="10.0.0.1")
    assert t.delay("alice", "10.0.0.2") == 0.0
    delays = []
    for _ in range(5):
        t.failure("alice", "10.0.0.1")
        delays.append(t.delay("alice", "10.0.0.2"))
    assert delays == [0.25, 0.5, 1.0, 2.0, 2.0]
    clock.advance(30)
    assert t.failures(account="alice") == pytest.approx(9)
    for i in range(20):
        t.failure(f"n{i}", "10.1.1.1")
    assert t.delay("zed", "10.1.1.1") == 0.0
    t.failure("n20", "10.1.1.1")
    assert t.delay("zed", "10.1.1.1") == 0.25


def test_concurrent_use_from_threads_loses_no_failure(clock: Clock) -> None:
    t = LoginThrottle(clock, max_keys=100_000)
    start = threading.Barrier(8)

    def hammer(n: int) -> None:
        start.wait()
        for i in range(2000):
            t.failure("shared", f"10.0.{n}.{i % 50}")
            t.delay("shared", f"10.0.{n}.1")
            t.success(f"other{n}", "10.0.0.1")

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.failures(account="shared") == 16_000
    assert len(t) == 1 + 8 * 50


@pytest.mark.parametrize(
    "kw", [{"free": -1}, {"decay": 0}, {"cap": -1}, {"base": -0.1}, {"max_keys": 1}]
)
def test_nonsense_parameters_are_refused(kw) -> None:
    with pytest.raises(ValueError):
        LoginThrottle(**kw)


def test_a_quick_burst_is_delayed_right_after_the_free_failures(clock: Clock) -> None:
    """Time passes between real failures: the decayed score must still count whole ones."""
    t = LoginThrottle(clock, free=5)
    for _ in range(5):
        t.failure("alice", "10.0.0.1")
        clock.advance(0.003)  # a scrypt check's worth
    assert t.delay("alice", "10.0.0.1") == 0.0
    t.failure("alice", "10.0.0.1")
    clock.advance(0.003)
    assert t.delay("alice", "10.0.0.1") > 0.2
