"""The failed-login throttle, driven by a clock the test advances (no sleeping)."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable

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
    # The account, each address, and the account as seen from each address.
    assert len(t) == 1 + 8 * 50 + 8 * 50


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


# ---- turns: one account's checks are serialised (issue 17, item 8) ------------------------


class Runner:
    """The hash executor's contract (`submit(job, delay, force=)`) on the test's clock: a
    job runs when the test moves time past its start, one at a time, instantly (as one
    hash thread with a cheap check)."""

    def __init__(self, clock: Clock, max_queued: int = 10_000) -> None:
        self.clock = clock
        self.max_queued = max_queued
        self.jobs: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def submit(self, job: Callable[[], None], delay: float = 0.0, *, force: bool = False) -> bool:
        if len(self.jobs) >= self.max_queued and not force:
            return False
        heapq.heappush(self.jobs, (self.clock.now + max(delay, 0.0), next(self._seq), job))
        return True

    def run_until(self, until: float) -> None:
        while self.jobs and self.jobs[0][0] <= until:
            due, _, job = heapq.heappop(self.jobs)
            self.clock.now = max(self.clock.now, due)
            job()
        self.clock.now = max(self.clock.now, until)


class Attack:
    """Guessers, one per address, each sending its next wrong password as soon as the
    last one is answered; `starts` is when each check ran, and for whom."""

    def __init__(self, t: LoginThrottle, runner: Runner, addrs: list[str], account: str) -> None:
        self.t, self.runner, self.account = t, runner, account
        self.ready = list(addrs)  # guessers about to send
        self.starts: list[tuple[float, str]] = []
        self.refused = 0
        self.gave_up = 0

    def _guess(self, addr: str, right: bool = False) -> Callable[[bool], None]:
        def check(now: bool) -> None:
            if not now:  # waited too long: answered rate_limited, it tries again
                self.gave_up += 1
                self.ready.append(addr)
                return
            self.starts.append((self.runner.clock.now, addr))
            if right:
                self.t.success(self.account, addr)
            else:
                self.t.failure(self.account, addr)
                self.ready.append(addr)  # answered: its next guess follows

        return check

    def send(self) -> None:
        ready, self.ready = self.ready, []
        for addr in ready:
            if self.t.submit(self.account, addr, self._guess(addr)) is not None:
                self.refused += 1

    def owner(self, addr: str) -> None:
        assert self.t.submit(self.account, addr, self._guess(addr, right=True)) is None

    def run(self, until: float) -> None:
        clock = self.runner.clock
        while clock.now < until:
            self.send()
            jobs = self.runner.jobs
            self.runner.run_until(min(jobs[0][0], until) if jobs else until)

    def wrong(self) -> list[float]:
        return [when for when, addr in self.starts if addr != "owner"]


def _throttle(clock: Clock, runner: Runner, **kw) -> LoginThrottle:
    return LoginThrottle(clock, runner=runner, **kw)


def _addrs(n: int) -> list[str]:
    return [f"10.1.{i // 250}.{i % 250}" for i in range(n)]


def test_many_addresses_get_no_more_checks_than_one_address_in_a_row(clock: Clock) -> None:
    counts = {}
    for guessers in (1, 40):
        c = Clock()
        runner = Runner(c)
        attack = Attack(_throttle(c, runner), runner, _addrs(guessers), "alice")
        attack.run(c.now + 60)
        wrong = attack.wrong()
        counts[guessers] = len(wrong)
        # Past the 6 free checks and the ramp (0.25, 0.5, 1), one per 2 s at most.
        gaps = [b - a for a, b in itertools.pairwise(wrong[5:])]
        assert gaps[:3] == pytest.approx([0.25, 0.5, 1.0]), gaps[:3]
        assert min(gaps[3:]) >= 2.0 - 1e-9, (guessers, min(gaps[3:]))
    # The old throttle gave each of 40 connections the same delay: about 40x the checks.
    assert counts[40] == counts[1], counts
    assert 6 + 3 + 28 <= counts[1] <= 6 + 3 + 30, counts


def test_100_wrong_passwords_from_25_addresses_take_over_a_minute_the_owner_one_step(
    clock: Clock,
) -> None:
    """The issue's target with the defaults: >= 60 s for 100, the owner within 5 s."""
    runner = Runner(clock)
    attack = Attack(_throttle(clock, runner), runner, _addrs(25), "alice")
    began = clock.now
    waits = []
    for at in (20.3, 61.1, 100.7, 150.2):
        attack.run(began + at)
        asked = clock.now
        attack.owner("owner")
        attack.run(asked + 2.5)
        owner_starts = [when for when, addr in attack.starts if addr == "owner"]
        assert owner_starts and owner_starts[-1] >= asked, (at, owner_starts)
        waits.append(owner_starts[-1] - asked)
    while len(attack.wrong()) < 100:
        attack.run(clock.now + 10)
    took = attack.wrong()[99] - began
    assert took >= 60, took
    assert 150 <= took <= 200, took  # 6 free, 0.25 + 0.5 + 1, then 2 s each: about 185 s
    assert max(waits) <= 2.0 + 1e-9, waits  # one step: the owner's address has no failure
    assert attack.refused == 0


def test_a_fresh_address_goes_before_the_guesses_waiting(clock: Clock) -> None:
    runner = Runner(clock)
    t = _throttle(clock, runner)
    attack = Attack(t, runner, _addrs(30), "alice")
    attack.run(clock.now + 25)  # every guesser has failed: they wait again
    assert t.waiting("alice") >= 28
    asked = clock.now
    attack.owner("owner")
    attack.run(asked + 2.0 + 1e-6)
    after = [addr for when, addr in attack.starts if when >= asked]
    assert after[0] == "owner", after[:3]


def test_the_first_wave_of_fresh_guessers_does_not_hold_a_later_owner(clock: Clock) -> None:
    """Before their first failure the guessers' addresses are fresh too: among equals the
    newest goes first, so the owner who comes after them is not behind them."""
    runner = Runner(clock)
    t = _throttle(clock, runner)
    attack = Attack(t, runner, _addrs(30), "alice")
    attack.send()
    runner.run_until(clock.now)  # the 6 free checks; 24 fresh guesses wait
    assert t.waiting("alice") == 24
    clock.advance(0.1)
    asked = clock.now
    attack.owner("owner")
    attack.run(asked + 2.0)
    after = [addr for when, addr in attack.starts if when >= asked]
    assert after[0] == "owner", after[:3]


def test_an_address_with_an_attempt_waiting_is_not_fresh_for_the_next(clock: Clock) -> None:
    """One address with many connections gets one place among the fresh, not many."""
    runner = Runner(clock)
    t = _throttle(clock, runner)
    for i in range(10):  # 10 wrong passwords from other addresses: past the free ones
        t.failure("alice", f"10.9.0.{i}")
    order: list[str] = []

    def guess(n: int) -> None:
        order.append(f"six{n}")
        t.failure("alice", "10.6.6.6")

    assert t.submit("alice", "10.7.7.7", lambda now: order.append("owner")) is None
    for n in range(8):  # then 8 connections of one (fresh) address at once
        assert t.submit("alice", "10.6.6.6", lambda now, n=n: guess(n)) is None
    for _ in range(20):
        runner.run_until(clock.now + 2.0)
    # Newest first among the fresh: the first of the eight; its other seven are not fresh.
    assert order == ["six0", "owner", *(f"six{n}" for n in range(1, 8))], order


def test_an_address_in_its_own_delay_does_not_hold_the_others(clock: Clock) -> None:
    runner = Runner(clock)
    t = _throttle(clock, runner, addr_free=0, base=2.0, cap=8.0)
    began = clock.now
    for _ in range(6):
        t.failure("alice", "10.0.0.1")  # the account: its next slot 2 s on
    for _ in range(2):
        t.failure("bob", "10.6.6.6")  # this address: 4 s of its own
    assert t.delay("alice", "10.6.6.6") == pytest.approx(4.0)
    assert t.delay("alice", "10.7.7.7") == pytest.approx(2.0)
    order: list[tuple[float, str]] = []
    assert t.submit("alice", "10.6.6.6", lambda now: order.append((clock.now, "six"))) is None
    clock.advance(0.5)
    assert t.submit("alice", "10.7.7.7", lambda now: order.append((clock.now, "seven"))) is None
    runner.run_until(clock.now + 20)
    # The account's slot goes to the address that may try; the other waits its own delay.
    assert order[0] == (pytest.approx(began + 2.0), "seven"), order
    assert order[1][1] == "six" and order[1][0] >= began + 4.0, order


def test_waiting_attempts_are_bounded_with_places_kept_for_fresh_addresses(clock: Clock) -> None:
    runner = Runner(clock)
    t = _throttle(clock, runner, waiting=10, kept_for_fresh=3)
    for i in range(20):
        t.failure("alice", f"10.9.0.{i}")  # 20 addresses that failed here
    suspects = [t.submit("alice", f"10.9.0.{i}", lambda now: None) for i in range(20)]
    assert suspects[:7] == [None] * 7  # 10 places, 3 of them kept
    assert all(r is not None and "7 logins already wait" in r for r in suspects[7:]), suspects
    fresh = [t.submit("alice", f"10.8.0.{i}", lambda now: None) for i in range(5)]
    assert fresh[:3] == [None] * 3
    assert fresh[3] is not None and "10 logins already wait" in fresh[3]
    assert t.waiting("alice") == 10
    assert t.submit("bob", "10.9.0.1", lambda now: None) is None  # other accounts are not full


def test_waiting_attempts_hold_no_thread_one_call_per_account_is_planned(clock: Clock) -> None:
    runner = Runner(clock)
    t = _throttle(clock, runner)
    attack = Attack(t, runner, _addrs(40), "alice")
    attack.run(clock.now + 20)
    assert t.waiting("alice") >= 38
    planned = [due for due, _, _ in runner.jobs]
    assert len(planned) <= 2, planned  # the account's next turn (and maybe a stale one)


def test_a_good_login_forgives_only_the_failures_from_its_own_address(clock: Clock) -> None:
    runner = Runner(clock)
    t = _throttle(clock, runner, free=0)
    for i in range(8):
        t.failure("alice", f"10.9.0.{i}")  # a guesser
    t.failure("alice", "10.1.1.1")
    t.failure("alice", "10.1.1.1")  # the owner's two typos
    assert t.failures(account="alice") == pytest.approx(10)
    t.success("alice", "10.1.1.1")
    assert t.failures(account="alice") == pytest.approx(8)
    assert t.failures(account="alice", addr="10.1.1.1") == 0
    assert t.failures(account="alice", addr="10.9.0.3") == pytest.approx(1)


def test_within_the_free_allowance_attempts_run_at_once_in_parallel(clock: Clock) -> None:
    runner = Runner(clock)
    t = _throttle(clock, runner, free=5)
    for i in range(6):  # 5 free failures: the 6th attempt is not delayed either
        assert t.submit("alice", f"10.0.0.{i}", lambda now: None) is None
    assert [due for due, _, _ in runner.jobs] == [clock.now] * 6
    assert t.submit("alice", "10.0.0.9", lambda now: None) is None
    assert t.waiting("alice") == 1  # the 7th waits one step (0.25 s) after the 6th


def test_one_connection_in_a_row_is_spaced_like_many(clock: Clock) -> None:
    runner = Runner(clock)
    attack = Attack(_throttle(clock, runner), runner, ["10.0.0.1"], "alice")
    attack.run(clock.now + 30)
    gaps = [b - a for a, b in itertools.pairwise(attack.wrong())]
    assert gaps[:5] == [0.0] * 5 and gaps[5:8] == pytest.approx([0.25, 0.5, 1.0]), gaps
    assert min(gaps[8:]) >= 2.0 - 1e-9


def test_a_check_that_raises_still_ends_its_turn(clock: Clock) -> None:
    runner = Runner(clock)
    t = _throttle(clock, runner, free=0)

    def broken(now: bool) -> None:
        raise RuntimeError("a bug in the check")

    assert t.submit("alice", "10.0.0.1", broken) is None
    with pytest.raises(RuntimeError):
        runner.run_until(clock.now)
    ran: list[str] = []
    assert t.submit("alice", "10.0.0.2", lambda now: ran.append("next")) is None
    runner.run_until(clock.now + 1)
    assert ran == ["next"]


def test_a_full_runner_refuses_and_counts_nothing(clock: Clock) -> None:
    runner = Runner(clock, max_queued=1)
    t = _throttle(clock, runner)
    assert t.submit("alice", "10.0.0.1", lambda now: None) is None
    assert t.submit("alice", "10.0.0.2", lambda now: None) == "hash queue full"
    runner.run_until(clock.now)
    assert t.submit("alice", "10.0.0.2", lambda now: None) is None


def test_a_zero_cap_turns_the_throttle_off(clock: Clock) -> None:
    """--login-delay 0: no attempt waits, however many."""
    runner = Runner(clock)
    attack = Attack(_throttle(clock, runner, cap=0.0), runner, _addrs(20), "alice")
    for _ in range(50):  # time does not move: every check runs at once
        attack.send()
        runner.run_until(clock.now)
    assert len(attack.wrong()) == 20 * 50


def test_an_attempt_that_waits_too_long_is_given_up_and_frees_its_place(clock: Clock) -> None:
    """A login deadline holds while waiting for a turn: past `patience` the attempt is
    answered (rate_limited), even when the account's next turn is far away."""
    runner = Runner(clock)
    t = _throttle(clock, runner, cap=600.0, base=600.0, patience=10.0)
    for i in range(6):
        t.failure("alice", f"10.9.0.{i}")  # the next turn is 600 s away
    answers: list[tuple[float, bool]] = []
    asked = clock.now
    assert t.submit("alice", "10.0.0.1", lambda now: answers.append((clock.now, now))) is None
    clock.advance(4)
    assert t.submit("alice", "10.0.0.2", lambda now: answers.append((clock.now, now))) is None
    runner.run_until(asked + 20)
    assert answers == [(asked + 10.0, False), (asked + 14.0, False)], answers
    assert t.waiting("alice") == 0
    runner.run_until(asked + 700)
    assert len(answers) == 2  # given up means never checked later


def test_patience_and_the_bounds_are_checked() -> None:
    for kw in ({"patience": 0}, {"waiting": 4, "kept_for_fresh": 4}, {"pair_decay": 0}):
        with pytest.raises(ValueError):
            LoginThrottle(**kw)
