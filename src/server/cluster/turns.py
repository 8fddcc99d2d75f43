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
blind index: no name in Redis), gone once its failures have decayed; one script, one
round trip per check, and none past it for a node whose checks pass.
"""

from __future__ import annotations

import secrets

import redis

from chat.server.cluster import keys
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link

#: Seconds a free slot is kept for the node that has waited longest for one: nodes take
#: an account's turns in the order they asked (the owner's node is not beaten to every
#: slot by a guesser's), and a node whose attempt went away holds none longer than this.
GRACE = 0.1

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
    """`SharedTurns` over Redis. The defaults are the throttle's (docs/operations.md);
    `cap` is `--login-delay`, as the throttle's."""

    def __init__(
        self,
        link: Link,
        box: Box,
        free: int = 5,
        base: float = 0.25,
        cap: float = 2.0,
        decay: float = 30.0,
    ) -> None:
        if free < 0 or base < 0 or cap < 0 or decay <= 0:
            raise ValueError("free, base, cap >= 0; decay > 0")
        self._link = link
        self._box = box
        self._args = (free, base, cap, decay)
        self._node = secrets.token_hex(8)  # this process, in the accounts' waiting lines
        self._script = link.script(_TURN)

    def take(self, account: str) -> float:
        return float(self._run("take", account))

    def failed(self, account: str) -> None:
        self._run("fail", account)

    def forgive(self, account: str, amount: float) -> None:
        self._run("forgive", account, amount)

    def _run(self, op: str, account: str, amount: float = 0.0) -> bytes:
        turns, waiting = keys.login_turns(self._box.blind("user", account))
        if not self._link.reachable(turns):  # known away: no wait for a timeout (twice)
            raise redis.ConnectionError("redis is away")
        free, base, cap, decay = self._args
        args = [op, free, base, cap, decay, amount, self._node, GRACE]
        try:
            result = self._script(keys=[turns, waiting], args=args)
        except redis.RedisError as exc:
            self._link.failed(exc)
            raise
        self._link.works()
        return bytes(result)
