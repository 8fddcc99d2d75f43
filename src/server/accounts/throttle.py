"""Failed-login throttle: one account's password checks take turns, one per step.

Each key (an account name, a peer address, an account seen from one address)
has a score: +1 per failure, minus one per `decay` seconds (`pair_decay` for an
account seen from one address). Past an account's free allowance its attempts
are *serialised*: the account has a next slot, and each check it gets pushes
that slot one step later (`base`, twice that, ... up to `cap`), however many
connections and addresses ask at once: N guessers in parallel get no more
checks than one guesser in a row (Dovecot's per-address auth penalty lists
parallel lookups as its known gap; here parallel asks share the turns). An
attempt also waits for its address's own delay, counted from that address's
last failure (one address trying many accounts).

The real owner cannot be told from a guesser before the check, so the order
of the waiting attempts decides who is held behind whom: at each slot the
account checks the attempt whose address has the fewest failures on this
account (counting that address's attempts waiting or under check ahead of it),
the newest first among equals. The owner's address has none, so the owner gets
the next slot (within one step) however many guesses wait; a guessing address
gets ahead only once per account, before its first failure. At most `waiting`
attempts wait per account, `kept_for_fresh` places of them for addresses with
no failure there; beyond, `submit` refuses (the login is answered
`rate_limited`), so a flood costs no memory it can grow. An attempt that has
waited `patience` seconds without its turn is given up (answered
`rate_limited` too): a login deadline still holds, and a guesser who gave up
waiting leaves no check behind. docs/operations.md has the reasoning and the
numbers.

A waiting attempt holds no thread: the throttle asks a `Runner` (the hash
executor, `hashing.py`) to call it back at the account's next slot, and the
check runs in that call. A good login forgives the account the failures that
came from its address (the owner's own typos), not the others', and never
clears the address's score (an attacker's own account must not wash it out).
At most `max_keys` scores are kept; the least recently failed go first.

Defaults (docs/operations.md): an account gets 5 free failures, an address 20
(many users may share one address, and a test suite logs in from 127.0.0.1
all day); then 0.25, 0.5, 1, 2, 2, ... s; one failure forgiven per 30 s (per
hour for an account seen from one address); 64 waiting per account, 16 of
those kept for addresses without failures; at most 100,000 keys.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from chat.server.accounts.users_file import StoreError

__all__ = ["HASH_QUEUE_FULL", "Check", "LoginThrottle", "Runner", "SharedTurns"]

log = logging.getLogger("chat.server.throttle")

#: Why `submit` refused when the runner (the hash queue) is full: worth a warning.
HASH_QUEUE_FULL = "hash queue full"

_ACCOUNT = "u"
_ADDR = "a"
_PAIR = "p"  # an account seen from one address
_EARLY = 1e-6  # a callback may come this much before its time (float rounding)


class Runner(Protocol):
    """Runs a job later without holding a thread meanwhile (`hashing.HashExecutor`)."""

    def submit(self, job: Callable[[], None], delay: float = 0.0, *, force: bool = False) -> bool:
        """False when the job cannot be queued (only without `force`)."""
        ...


class SharedTurns(Protocol):
    """An account's turns across every process that serves it (a cluster's nodes:
    cluster/turns.py), beside each process's own. Without it, N nodes would give an
    account N checks per wait. Called on the runner's thread (a hash thread: a Redis round
    trip there delays no chat), never under the throttle's lock."""

    def take(self, account: str) -> float:
        """0: the account may be checked now (past its free failures, its next slot across
        every process moves one wait on); else the seconds until that slot, nothing taken.
        StoreError when the storage does not answer (the throttle then lets the check go:
        it meets the same storage for the account, and fails there)."""
        ...

    def failed(self, account: str) -> None:
        """One more failure of the account, seen by every process."""
        ...

    def forgive(self, account: str, amount: float) -> None:
        """A good login forgave the account `amount` failures (its own address's)."""
        ...


@dataclass(slots=True)
class _Entry:
    score: float  # failures, as of `stamp`
    stamp: float  # clock() of the last failure
    ready: float  # clock() before which the next attempt waits (an account: its next slot)


#: What the throttle calls for an attempt: True on its turn (check the password now),
#: False when it waited `patience` without one (answer `rate_limited`).
Check = Callable[[bool], None]


@dataclass(slots=True)
class _Waiting:
    seq: int
    addr: str
    check: Check
    fresh: bool  # its address had no failure and nothing waiting here when it came
    since: float  # clock() when it came


@dataclass(slots=True)
class _Turns:
    """The attempts of one account that wait for a slot or are being checked."""

    queue: list[_Waiting] = field(default_factory=list)  # in arrival order
    running: Counter[str] = field(default_factory=Counter)  # address -> checks under way
    fresh: int = 0  # how many in `queue` are `fresh`
    token: int = 0  # the callback that counts; older ones are stale
    call_at: float | None = None  # when that callback comes
    shared: float = 0.0  # clock() before which the cluster's turn is not ours (SharedTurns)


#: An account's defaults (docs/operations.md): failures free of any wait, the first wait,
#: the longest (`--login-delay`), seconds to forgive one failure. A cluster's shared turns
#: (cluster/turns.py) count with the same.
FREE = 5
BASE = 0.25
CAP = 2.0
DECAY = 30.0


class LoginThrottle:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        free: int = FREE,
        base: float = BASE,
        cap: float = CAP,
        decay: float = DECAY,
        *,
        addr_free: int = 20,
        max_keys: int = 100_000,
        runner: Runner | None = None,
        waiting: int = 64,
        kept_for_fresh: int = 16,
        pair_decay: float = 3600.0,
        patience: float = 30.0,
        shared: SharedTurns | None = None,
    ) -> None:
        if free < 0 or addr_free < 0 or base < 0 or cap < 0 or decay <= 0 or max_keys < 2:
            raise ValueError("free, addr_free, base, cap >= 0; decay > 0; max_keys >= 2")
        if not 0 <= kept_for_fresh < waiting or pair_decay <= 0 or patience <= 0:
            raise ValueError("0 <= kept_for_fresh < waiting; pair_decay, patience > 0")
        self._clock = clock
        self._free = {_ACCOUNT: free, _ADDR: addr_free}
        self._base = base
        self._cap = cap
        self._decays = {_ACCOUNT: decay, _ADDR: decay, _PAIR: pair_decay}
        self._max_keys = max_keys
        self._runner = runner
        self._waiting = waiting
        self._kept = kept_for_fresh
        self._patience = patience
        self._shared = shared
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        self._turns: dict[str, _Turns] = {}  # accounts with attempts waiting or under check
        self._seq = itertools.count()
        self._tokens = itertools.count(1)  # unique across accounts and their lifetimes

    # ---- an attempt --------------------------------------------------------
    def submit(self, account: str, addr: str, check: Check) -> str | None:
        """Call `check(True)` (a password check that reports `failure` or `success`) on
        the runner when the account's turn comes, or `check(False)` once it has waited
        `patience`. None once it is queued; else why it is refused (answer
        `rate_limited`): the runner is full, or too many wait here."""
        runner = self._runner
        if runner is None:
            raise RuntimeError("a throttle that runs checks needs a runner")
        with self._lock:
            now = self._clock()
            turns = self._turns.get(account)
            if turns is None or not turns.queue:
                addr_wait = self._addr_wait(addr, now)
                if self._slot(account, turns, now) <= now:  # its turn: no queue
                    fresh = turns is None or self._ahead(account, addr, turns, now) == 0
                    attempt = _Waiting(next(self._seq), addr, check, fresh, now)
                    run = self._wrapped(account, attempt)
                    if not runner.submit(run, addr_wait):
                        return HASH_QUEUE_FULL
                    self._start(account, addr, now + addr_wait)
                    return None
            if turns is None:
                turns = self._turns[account] = _Turns()
            fresh = self._ahead(account, addr, turns, now) == 0
            queued = len(turns.queue)
            if queued >= self._waiting or (
                not fresh and queued - turns.fresh >= self._waiting - self._kept
            ):
                return f"{queued} logins already wait for this account"
            turns.queue.append(_Waiting(next(self._seq), addr, check, fresh, now))
            turns.fresh += fresh
            self._call_at(account, turns, self._next_call(account, turns, now), now)
            return None

    def failure(self, account: str, addr: str) -> None:
        """A wrong password, an unknown name, or a register that found the name taken."""
        now = self._clock()
        with self._lock:
            for key in ((_ACCOUNT, account), (_ADDR, addr), (_PAIR, account, addr)):
                kind = key[0]
                entry = self._entries.pop(key, None)
                score = 1.0 + (self._decayed(entry, now, kind) if entry is not None else 0.0)
                ready = now + self._penalty(score, self._free[kind]) if kind != _PAIR else 0.0
                if entry is not None:
                    ready = max(ready, entry.ready)  # an account's next slot stays taken
                self._entries[key] = _Entry(score, now, ready)  # now the newest key
            self._trim()
        if self._shared is not None:
            self._tell(self._shared.failed, account)

    def success(self, account: str, addr: str) -> None:
        """A good login: the account is forgiven what came from this address; the
        address keeps its score."""
        now = self._clock()
        with self._lock:
            pair = self._entries.pop((_PAIR, account, addr), None)
            entry = self._entries.get((_ACCOUNT, account))
            if entry is None:
                return
            own = self._decayed(pair, now, _PAIR) if pair is not None else 0.0
            left = self._decayed(entry, now, _ACCOUNT) - own
            if left <= 1e-9 and account not in self._turns:
                del self._entries[(_ACCOUNT, account)]
            else:
                entry.score, entry.stamp = max(left, 0.0), now
        if self._shared is not None and own > 0:
            self._tell(self._shared.forgive, account, own)

    @staticmethod
    def _tell(fn: Callable[..., None], *args: object) -> None:
        """The cluster's share of a result: a storage that does not answer costs only that."""
        try:
            fn(*args)
        except StoreError as exc:  # Redis away: the link said so once
            log.debug("the cluster's login turns did not answer: %s", exc)
        except Exception:
            log.exception("telling the cluster's login turns failed")

    # ---- introspection (logs, tests) ---------------------------------------
    def delay(self, account: str, addr: str) -> float:
        """Seconds an attempt made now would wait, if none were waiting before it."""
        with self._lock:
            now = self._clock()
            slot = self._slot(account, self._turns.get(account), now)
            return max(slot - now, self._addr_wait(addr, now), 0.0)

    def failures(self, account: str | None = None, addr: str | None = None) -> float:
        """The current (decayed) score of an account, an address, or both together."""
        if account is not None and addr is not None:
            key: tuple[str, ...] = (_PAIR, account, addr)
        elif account is not None:
            key = (_ACCOUNT, account)
        else:
            key = (_ADDR, addr or "")
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            return self._decayed(entry, now, key[0]) if entry is not None else 0.0

    def waiting(self, account: str) -> int:
        """Attempts of `account` waiting for a slot (not those under check)."""
        with self._lock:
            turns = self._turns.get(account)
            return len(turns.queue) if turns is not None else 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # ---- turns (all under the lock) ---------------------------------------
    def _slot(self, account: str, turns: _Turns | None, now: float) -> float:
        """When the account's next check may start: now within its free allowance (here,
        and the cluster's as last heard: `_wait_shared`)."""
        shared = turns.shared if turns is not None else 0.0
        entry = self._entries.get((_ACCOUNT, account))
        if entry is None or self._prior(account, turns, now) <= self._free[_ACCOUNT]:
            return max(now, shared)
        return max(now, entry.ready, shared)

    def _prior(self, account: str, turns: _Turns | None, now: float) -> int:
        """The account's failures, counting each check under way as one (it may be)."""
        entry = self._entries.get((_ACCOUNT, account))
        score = self._whole(self._decayed(entry, now, _ACCOUNT)) if entry is not None else 0
        return score + (turns.running.total() if turns is not None else 0)

    def _start(self, account: str, addr: str, start: float) -> None:
        """A check of `account` starts at `start`: the next one waits a step more."""
        turns = self._turns.get(account)
        if turns is None:
            turns = self._turns[account] = _Turns()
        turns.running[addr] += 1
        step = self._penalty(self._prior(account, turns, start), self._free[_ACCOUNT])
        key = (_ACCOUNT, account)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(0.0, start, start + step)
            self._trim()
        else:
            entry.ready = max(entry.ready, start + step)

    def _finish(self, account: str, addr: str) -> None:
        with self._lock:
            turns = self._turns.get(account)
            if turns is None:
                return
            turns.running[addr] -= 1
            if turns.running[addr] <= 0:
                del turns.running[addr]
            if not turns.queue and not turns.running:
                del self._turns[account]

    def _wrapped(self, account: str, attempt: _Waiting) -> Callable[[], None]:
        """The check on its turn here; in a cluster, also on the account's turn across every
        node (`SharedTurns`): until then it waits here again, first in line by the same rule
        as before (`_wait_shared`), so a node has one attempt at a time asking for the
        cluster's turn, the owner's when it waits."""
        shared, addr = self._shared, attempt.addr

        def run() -> None:
            if shared is not None:
                try:
                    wait = shared.take(account)
                except StoreError as exc:  # Redis away (said once): the check meets it too
                    log.debug("the cluster's login turns did not answer: %s", exc)
                    wait = 0.0
                except Exception:  # a bug: said; the check goes on as without the turns
                    log.exception("taking the cluster's login turn of %s failed", account)
                    wait = 0.0
                if wait > 0:
                    self._wait_shared(account, attempt, wait)
                    return
            try:
                attempt.check(True)
            finally:
                self._finish(account, addr)

        return run

    def _wait_shared(self, account: str, attempt: _Waiting, wait: float) -> None:
        """The cluster's turn is not yet this account's: back among those waiting here (its
        arrival and freshness kept, so the order and `patience` hold), and this node asks
        again once `wait` has passed."""
        with self._lock:
            now = self._clock()
            turns = self._turns.get(account)
            if turns is None:  # cannot be (it runs): keep the rule, not the attempt
                turns = self._turns[account] = _Turns()
            turns.running[attempt.addr] -= 1
            if turns.running[attempt.addr] <= 0:
                del turns.running[attempt.addr]
            turns.shared = max(turns.shared, now + wait)
            entry = self._entries.get((_ACCOUNT, account))
            if entry is not None:  # the step `_start` took here: no check ran, the turn is back
                entry.ready = min(entry.ready, turns.shared)
            turns.queue.append(attempt)
            turns.fresh += attempt.fresh
            self._call_at(account, turns, self._next_call(account, turns, now), now)

    def _ahead(self, account: str, addr: str, turns: _Turns, now: float) -> int:
        """Failures of `addr` on `account`, plus its attempts waiting or under check there."""
        pair = self._entries.get((_PAIR, account, addr))
        failed = self._whole(self._decayed(pair, now, _PAIR)) if pair is not None else 0
        return failed + turns.running[addr] + sum(w.addr == addr for w in turns.queue)

    def _call_at(self, account: str, turns: _Turns, at: float, now: float) -> None:
        """Make sure the runner calls `_turn` for `account` by `at`."""
        if turns.call_at is not None and turns.call_at <= at + _EARLY:
            return
        token = next(self._tokens)
        turns.token, turns.call_at = token, at
        runner = self._runner
        assert runner is not None
        runner.submit(lambda: self._turn(account, token), at - now, force=True)

    def _next_call(self, account: str, turns: _Turns, now: float) -> float:
        """When `_turn` must run: the account's slot, or the first wait that runs out."""
        oldest = min(w.since for w in turns.queue)
        return min(self._slot(account, turns, now), oldest + self._patience)

    def _turn(self, account: str, token: int) -> None:
        """The account's slot: check the waiting attempt that goes first (on the runner);
        give up those that waited too long."""
        chosen: _Waiting | None = None
        with self._lock:
            turns = self._turns.get(account)
            if turns is None or turns.token != token:
                return  # replaced by an earlier call, or nothing waits any more
            turns.call_at = None
            now = self._clock()
            late = [w for w in turns.queue if now - w.since >= self._patience - _EARLY]
            for w in late:
                turns.queue.remove(w)
                turns.fresh -= w.fresh
            at = self._slot(account, turns, now)
            if turns.queue and at <= now + _EARLY:
                chosen = self._choose(account, turns, now)
                if chosen is not None:
                    turns.queue.remove(chosen)
                    turns.fresh -= chosen.fresh
                    self._start(account, chosen.addr, now)
                    at = self._slot(account, turns, now)
                else:  # every waiting address still has its own delay
                    at = now + min(self._addr_wait(w.addr, now) for w in turns.queue)
            if turns.queue:
                oldest = min(w.since for w in turns.queue)
                self._call_at(account, turns, min(at, oldest + self._patience), now)
            elif not turns.running:
                del self._turns[account]
        try:
            for w in late:  # outside the lock: they answer their connections
                try:
                    w.check(False)
                except Exception:  # one broken answer must not strand the others
                    log.exception("giving up a login of %s failed", account)
        finally:
            if chosen is not None:
                self._wrapped(account, chosen)()

    def _choose(self, account: str, turns: _Turns, now: float) -> _Waiting | None:
        """The fewest failures of its address here first (counting its attempts ahead of
        it), the newest first among equals; only addresses past their own delay."""
        failed: dict[str, int] = {}
        seen: Counter[str] = Counter()
        best: _Waiting | None = None
        best_key = (0, 0)
        for w in turns.queue:
            if w.addr not in failed:
                pair = self._entries.get((_PAIR, account, w.addr))
                whole = self._whole(self._decayed(pair, now, _PAIR)) if pair is not None else 0
                failed[w.addr] = whole + turns.running[w.addr]
            key = (failed[w.addr] + seen[w.addr], -w.seq)
            seen[w.addr] += 1
            if self._addr_wait(w.addr, now) > 0:
                continue
            if best is None or key < best_key:
                best, best_key = w, key
        return best

    # ---- arithmetic ---------------------------------------------------------
    def _addr_wait(self, addr: str, now: float) -> float:
        entry = self._entries.get((_ADDR, addr))
        return max(entry.ready - now, 0.0) if entry is not None else 0.0

    def _decayed(self, entry: _Entry, now: float, kind: str) -> float:
        return max(0.0, entry.score - max(0.0, now - entry.stamp) / self._decays[kind])

    def _penalty(self, score: float, free: int) -> float:
        over = self._whole(score) - free
        if over <= 0:
            return 0.0
        return min(self._cap, self._base * 2.0 ** min(over - 1, 64))

    @staticmethod
    def _whole(score: float) -> int:
        # The score decays all the time: six quick failures score 5.9999, which is six.
        return math.ceil(score - 1e-3)

    def _trim(self) -> None:
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
