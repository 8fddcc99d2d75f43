"""An account's failed-login turns across every node (`throttle.SharedTurns` over Redis).

Each node's throttle (accounts/throttle.py) serialises an account's password checks,
one per wait past its free failures. Alone, that is every check; in a cluster each node
would give the account its own turns, and a guesser connected to N nodes would get N
checks per wait. So the account also has one score and one next slot in Redis, which
every node takes a turn from before it checks (on the hash thread that checks) and adds
its failures to: the same arithmetic as the node's (free failures, then waits doubling
from `base` up to `cap`, one failure forgiven per `decay` seconds), on Redis' clock, so
the nodes' clocks need not agree. Each node still decides which of its waiting attempts
goes at its turn (the owner first): that needs no other node.

One small hash per account that failed lately (`keys.login_turns`, under the name's
blind index: no name in Redis), gone once its failures have decayed. A failure is also
said on a channel (`keys.TURNS`: the blind and the account's score), so every node knows
which accounts have failures anywhere: only their checks ask Redis for a turn (a script,
one round trip on the hash thread); a login to an account with none costs nothing here.
A failure on another node is heard a moment later (a pub/sub hop): what a guesser gets
in that moment is within the account's free failures.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import redis

from chat.server.accounts.throttle import BASE, CAP, DECAY, FREE
from chat.server.accounts.users_file import StoreAway, StoreError
from chat.server.cluster import keys
from chat.server.cluster.box import INDEX_BYTES, Box
from chat.server.cluster.link import Link

#: Seconds a free slot is kept for the node that has waited longest for one: nodes take
#: an account's turns in the order they asked (the owner's node is not beaten to every
#: slot by a guesser's), and a node whose attempt went away holds none longer than this.
GRACE = 0.1
#: Accounts a node remembers as having failures somewhere (the oldest forgotten first).
_HOT_KEPT = 100_000
#: The most failures a channel message may say (more is no account's real score).
_SCORE_MAX = 1e6

# KEYS[1]: the account's turns, KEYS[2]: the nodes waiting for one (ZSET node -> when it
# first asked). ARGV: op ("take", "fail" or "forgive"), free, base, cap, decay, amount
# (forgive), node, grace. Fields of KEYS[1]: s (failures as of t), t (Redis time of the
# last change), r (the Redis time before which the account's next check waits).
_TURN = """
local op = ARGV[1]
local free, base, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local decay, amount = tonumber(ARGV[5]), tonumber(ARGV[6])
local node, grace = ARGV[7], tonumber(ARGV[8])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 's', 't', 'r')
local score = tonumber(v[1]) or 0
local stamp = tonumber(v[2]) or now
local ready = tonumber(v[3]) or 0
score = math.max(0, score - math.max(0, now - stamp) / decay)
local function whole(x) return math.ceil(x - 0.001) end
local function penalty(x)
  local over = whole(x) - free
  if over <= 0 then return 0 end
  return math.min(cap, base * 2 ^ math.min(over - 1, 64))
end
local ttl = math.ceil(score * decay + cap) + 2
if op == 'take' then
  if whole(score) <= free then
    if v[1] then redis.call('ZREM', KEYS[2], node) end  -- an account without failures: no write
    return '0'
  end
  if ready > now + 0.000001 then
    redis.call('ZADD', KEYS[2], 'NX', now, node)
    redis.call('EXPIRE', KEYS[2], ttl)
    return tostring(ready - now)
  end
  -- The slot is free: the node that has waited longest for one goes first, if it comes
  -- within `grace` of the slot (a node whose attempt went away is passed over after it).
  while true do
    local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
    if head == nil or head == node then break end
    if now < ready + grace then
      redis.call('ZADD', KEYS[2], 'NX', now, node)
      redis.call('EXPIRE', KEYS[2], ttl)
      return tostring(ready + grace - now)
    end
    redis.call('ZREM', KEYS[2], head)
  end
  redis.call('ZREM', KEYS[2], node)
  ready = now + penalty(score)
elseif op == 'fail' then
  score = score + 1
  ready = math.max(ready, now + penalty(score))
  redis.call('HSET', KEYS[1], 's', tostring(score), 't', tostring(now), 'r', tostring(ready))
  redis.call('EXPIRE', KEYS[1], math.ceil(score * decay + cap) + 2)
  return tostring(score)
else
  score = math.max(0, score - amount)
  if score <= 0.000000001 then  -- within the free failures, the slot does not matter
    redis.call('DEL', KEYS[1], KEYS[2])
    return '0'
  end
end
redis.call('HSET', KEYS[1], 's', tostring(score), 't', tostring(now), 'r', tostring(ready))
redis.call('EXPIRE', KEYS[1], ttl)
return '0'
"""


class RedisTurns:
    """`SharedTurns` over Redis, counting as the throttle does (its defaults; `cap` is
    `--login-delay`, as the throttle's). `heard` takes what the turns channel
    says (cluster/presence.py subscribes to it for the node)."""

    def __init__(
        self,
        link: Link,
        box: Box,
        free: int = FREE,
        base: float = BASE,
        cap: float = CAP,
        decay: float = DECAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if free < 0 or base < 0 or cap < 0 or decay <= 0:
            raise ValueError("free, base, cap >= 0; decay > 0")
        self._link = link
        self._box = box
        self._args = (free, base, cap, decay)
        self._clock = clock
        self._node = secrets.token_hex(8)  # this process, in the accounts' waiting lines
        self._script = link.script(_TURN)
        self._lock = threading.Lock()
        #: blind -> clock() until which the account may have failures past its free ones
        #: somewhere in the cluster (its checks ask Redis for their turn till then).
        self._hot: OrderedDict[str, float] = OrderedDict()  # the latest heated last

    def take(self, account: str) -> float:
        blind = self._box.blind("user", account)
        if not self._is_hot(blind):
            return 0.0  # no failures anywhere lately: no turn to take
        return float(self._run("take", blind))

    def failed(self, account: str) -> None:
        blind = self._box.blind("user", account)
        score = float(self._run("fail", blind))
        self._heat(blind, score)
        try:
            self._link.publish(self._link.client, keys.TURNS, f"{blind} {score:.3f}")
        except redis.RedisError as exc:  # the others hear of the next one
            self._link.failed(exc)

    def forgive(self, account: str, amount: float) -> None:
        blind = self._box.blind("user", account)
        if self._is_hot(blind):
            self._run("forgive", blind, amount)

    def heard(self, data: bytes) -> None:
        """Another node's failure: `<blind> <score>` (anything else is ignored)."""
        try:
            blind, text = data.decode("ascii").split(" ")
            score = float(text)
        except ValueError:
            return
        if len(blind) == 2 * INDEX_BYTES and 0 <= score <= _SCORE_MAX:  # nan fails too
            self._heat(blind, score)

    def _heat(self, blind: str, score: float) -> None:
        """Hot while the account's failures may be past its free ones: the time they take
        to decay back (one per `decay` seconds), and a wait more."""
        free, _base, cap, decay = self._args
        until = self._clock() + max(0.0, score - free) * decay + cap + 1.0
        with self._lock:
            if until > self._hot.get(blind, 0.0):
                self._hot[blind] = until
                self._hot.move_to_end(blind)
            while len(self._hot) > _HOT_KEPT:  # a flood of names: the least recent go
                self._hot.popitem(last=False)

    def _is_hot(self, blind: str) -> bool:
        now = self._clock()
        with self._lock:
            until = self._hot.get(blind)
            if until is not None and until <= now:
                del self._hot[blind]  # cooled: forgotten
                return False
        return until is not None

    def _run(self, op: str, blind: str, amount: float = 0.0) -> bytes:
        turns, waiting = keys.login_turns(blind)
        if not self._link.reachable(turns):  # known away: no wait for a timeout (twice)
            raise StoreAway("cluster login turns: redis is away")
        free, base, cap, decay = self._args
        args = [op, free, base, cap, decay, amount, self._node, GRACE]
        try:
            result = self._script(keys=[turns, waiting], args=args)
        except redis.RedisError as exc:
            self._link.failed(exc)
            raise StoreError(f"cluster login turns: redis did not answer ({exc})") from None
        self._link.works()
        return bytes(result)
