"""The cluster's accounts: one Redis hash, every account sealed, names known to every node.

`chat:{g}:users` (cluster/keys.py) maps the blind index of a name to its sealed record (the users
file's fields: salt, scrypt hash, parameters); a registration is one HSETNX,
so two nodes registering one name at once cannot both win, and its reply
comes after Redis has it (durable with `appendfsync always`, which the node
checks at start: docs/cluster.md). Every node keeps the set of blind names
in memory (loaded at start, then told of each new account on
`chat:{g}:accounts`), because the fan-out asks "is this name an account?" under
the hub lock, where no Redis round trip may happen.

The names themselves are only inside the sealed records, yet `user_search`
(protocol v1.2 section 7) completes them from memory: every node also keeps
blind -> name, each record opened once (all of them at `reload`, a new one
when it learns of it: one HGET).

`chat:{g}:folded` maps the blind index of each name in lower case to the blind
name of the account that has it, so that `--refuse-case-variants` can refuse
`Bob` when `bob` exists without any name in clear: a registration is one
script that checks both hashes and writes both, atomically (two nodes
registering `Bob` and `bob` at once cannot both win). The index is kept
whether the option is on or not; a node started with the option fills in the
accounts made before the index existed (`reload`).

The operator's side (ops/commands.py): a ban is a field of `chat:{g}:banned`
(read by each login after its password, so every node refuses it at once); a
password reset and a delete are scripts that never bring back an account
another node deleted meanwhile, and an unban replaces the account's token
nonce in the same script that lifts it (tokens: accounts/tokens.py); invite
codes are fields of `chat:{g}:invites` under their blind index (the code
itself is nowhere in Redis), one use taken by a script, atomically. Telling
every node to close the sessions concerned is cluster/moderation.py's.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

from chat.server.accounts import invites as codes
from chat.server.accounts.invites import Invite
from chat.server.accounts.users_file import (
    DEFAULT_COST_LOG2,
    HASH_BYTES,
    SCRYPT_P,
    SCRYPT_R,
    Record,
    StoreAway,
    StoreError,
    folded,
    matches,
    new_record,
    record_from_json,
    record_to_json,
)
from chat.server.cluster import keys
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link

log = logging.getLogger("chat.server.cluster")

USERS = keys.USERS
FOLDED = keys.FOLDED
BANNED = keys.BANNED
INVITES = keys.INVITES
ACCOUNTS_CHANNEL = keys.ACCOUNTS

# KEYS: chat:{g}:users, chat:{g}:folded (one hash tag: one slot). ARGV: blind name, blind
# folded name, sealed record, "1" to refuse a case variant of an existing name.
# Returns 1: created; 0: taken.
_REGISTER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local owner = redis.call('HGET', KEYS[2], ARGV[2])
if owner and owner ~= ARGV[1] and redis.call('HEXISTS', KEYS[1], owner) == 1 then
  if ARGV[4] == '1' then return 0 end
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# The operator's commands (ops/commands.py). KEYS[1] is chat:{g}:users in each: an account
# that is not there (deleted meanwhile by another node) is never brought back or banned.
# ARGV: blind name, sealed record. Returns 1: replaced; 0: no such account.
_SET_PASSWORD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# KEYS: users, folded, banned. ARGV: blind name, blind folded name. Returns 1: deleted.
_DELETE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""
# KEYS: users, banned. ARGV: blind name, "1" to ban or "0" to lift it. Returns 1: done.
_BAN = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[2] == '1' then redis.call('HSET', KEYS[2], ARGV[1], '1')
else redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
"""
# KEYS: users, banned. ARGV: blind name, the sealed record as read, the same account with a
# new token nonce. Lifts a ban, replacing the record first (no token from before the ban
# works after it). Returns 1: done (or not banned: nothing to do); 0: no such account;
# -1: the record changed since it was read (a new password): read it again.
_UNBAN = """
local now = redis.call('HGET', KEYS[1], ARGV[1])
if not now then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 1 end
if now ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""
# KEYS: users. ARGV: blind name, the sealed record as read, its replacement. A re-hash: it
# never overwrites a record another node changed meanwhile (a new password, a new nonce).
_REPLACE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
#: Reads and retries of an unban whose record another node changes meanwhile.
_UNBAN_TRIES = 5
# KEYS: invites. ARGV: blind code. Takes one use of a valid code: returns its expiry ("-"
# for none), or false when the code is unknown, used up or expired (then removed).
_TAKE_INVITE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
local uses, expires = string.match(v, '^(%d+) (%S+)$')
uses = tonumber(uses)
local now = tonumber(redis.call('TIME')[1])
if not uses or uses < 1 or (expires ~= '-' and now >= tonumber(expires)) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return false
end
if uses == 1 then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], (uses - 1) .. ' ' .. expires) end
return expires
"""
# KEYS: invites. ARGV: blind code, its expiry. Gives one use back.
_RETURN_INVITE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
local uses = 0
if v then uses = tonumber(string.match(v, '^(%d+) ')) or 0 end
redis.call('HSET', KEYS[1], ARGV[1], (uses + 1) .. ' ' .. ARGV[2])
return 1
"""


class RedisAccounts:
    """The accounts seam (accounts/seam.py) over Redis."""

    def __init__(
        self,
        link: Link,
        box: Box,
        hash_cost_log2: int = DEFAULT_COST_LOG2,
        refuse_case_variants: bool = False,
    ) -> None:
        self._link = link
        self._box = box
        self._refuse_case_variants = refuse_case_variants
        client = link.client
        self._register = client.register_script(_REGISTER)
        self._set_password = client.register_script(_SET_PASSWORD)
        self._delete = client.register_script(_DELETE)
        self._ban = client.register_script(_BAN)
        self._unban = client.register_script(_UNBAN)
        self._replace = client.register_script(_REPLACE)
        self._take_invite = client.register_script(_TAKE_INVITE)
        self._return_invite = client.register_script(_RETURN_INVITE)
        self._n = 1 << hash_cost_log2
        self._known: set[str] = set()
        self._names: dict[str, str] = {}  # blind -> name (user_search)
        self._sorted: list[str] | None = None  # names(), until the next one is learned
        self._lock = threading.Lock()
        # An unknown name is hashed like a known one, so the time does not tell.
        self._dummy = new_record("", secrets.token_urlsafe(16), self._n)

    # ---- what every node knows --------------------------------------------------
    def reload(self) -> None:
        """Every account from Redis (at start, and after an outage): its blind name, and
        its name from its record (opened once)."""
        records = {bytes(k).decode(): v for k, v in self._link.client.hgetall(USERS).items()}
        found = {}
        for blind, sealed in records.items():
            record = self._open(blind, sealed)
            if record is not None:
                found[blind] = record.name
        names = set(records)
        with self._lock:
            self._known = names
            self._names = found
            self._sorted = None
        if self._refuse_case_variants:
            self._index_folded(names)

    def names(self) -> list[str]:
        """Every registered name, sorted (`user_search`)."""
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._names.values())
            return self._sorted

    def _index_folded(self, names: set[str]) -> None:
        """Fill the folded-names hash for accounts made before it existed (one read each, once:
        afterwards every registration keeps it)."""
        client = self._link.client
        owners = {bytes(v).decode() for v in client.hvals(FOLDED)}
        missing = sorted(names - owners)
        if not missing:
            return
        added = 0
        for blind, sealed in zip(missing, client.hmget(USERS, missing), strict=True):
            record = self._open(blind, sealed) if sealed is not None else None
            if record is not None:
                added += client.hsetnx(FOLDED, self._folded_blind(record.name), blind)
        if added:
            log.info("cluster accounts: %d names added to the case-folded index", added)

    def _folded_blind(self, name: str) -> str:
        return self._box.blind("user-folded", folded(name))

    def learned(self, blind: str, name: str | None = None) -> None:
        """An account was registered: here (`name` known), or by another node (a message
        on the accounts channel: its record is read for the name)."""
        with self._lock:
            self._known.add(blind)
            if name is None and blind in self._names:
                return
        if name is None:
            try:
                sealed = self._link.client.hget(USERS, blind)
            except redis.RedisError as exc:  # the next reload reads it
                self._link.failed(exc)
                return
            record = self._open(blind, sealed) if sealed is not None else None
            if record is None:
                return
            name = record.name
        with self._lock:
            if self._names.get(blind) != name:
                self._names[blind] = name
                self._sorted = None

    def forgot(self, blind: str) -> None:
        """An account was deleted (by this node's operator, or another's: the control
        channel, cluster/moderation.py)."""
        with self._lock:
            self._known.discard(blind)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        blind = self._box.blind("user", name)
        with self._lock:
            return blind in self._known

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)

    def confirm(self, names: Sequence[str]) -> frozenset[str]:
        """One HMGET of the accounts hash: a name registered on another node a moment ago
        is found before the accounts channel brings it here, and learned. A record that
        does not open with the key is no account (as `reload` counts it)."""
        blinds = [self._box.blind("user", name) for name in names]
        if not blinds:
            return frozenset()
        sealed = self._call(lambda c: c.hmget(USERS, blinds))
        found = set()
        for name, blind, value in zip(names, blinds, sealed, strict=True):
            if value is None:
                continue
            record = self._open(blind, value)
            if record is not None and record.name == name:
                self.learned(blind, name)
                found.add(name)
        return frozenset(found)

    def save(self) -> None:
        """Nothing to do: every account is in Redis from its registration on."""

    # ---- slow: hash threads ----------------------------------------------------------
    def register(self, name: str, password: str) -> bool:
        blind = self._box.blind("user", name)
        self._answering()
        if name in self:
            # Taken, as far as this node heard; but a delete on another node reaches it on
            # the control channel a moment later, and the name is free as soon as Redis
            # says so: the hash decides (one HEXISTS, on a hash thread), not the memory.
            try:
                taken = bool(self._link.client.hexists(USERS, blind))
            except redis.RedisError as exc:
                self._link.failed(exc)
                raise StoreError(f"cluster accounts: cannot read ({exc})") from None
            if taken:
                return False
            self.forgot(blind)
        record = new_record(name, password, self._n)
        sealed = self._box.seal(_context(blind), record_to_json(record))
        try:
            created = self._register(
                keys=[USERS, FOLDED],
                args=[blind, self._folded_blind(name), sealed, int(self._refuse_case_variants)],
            )
            if created:
                self._link.publish(self._link.client, ACCOUNTS_CHANNEL, blind)
        except redis.RedisError as exc:
            self._link.failed(exc)
            raise StoreError(f"cluster accounts: cannot save ({exc})") from None
        self._link.works()
        self.learned(blind, name)  # the blind is of this very name, created now or before
        return bool(created)

    def register_many(self, accounts: Iterable[tuple[str, str]]) -> int:
        """Create every account whose name is free, in one pipeline (imports, benchmarks)."""
        self._link.client.script_load(_REGISTER)  # a cluster's pipeline does not load it
        pipe = self._link.client.pipeline(transaction=False)
        blinds, names = [], []
        for name, password in accounts:
            blind = self._box.blind("user", name)
            record = new_record(name, password, self._n)
            sealed = self._box.seal(_context(blind), record_to_json(record))
            refuse = int(self._refuse_case_variants)
            self._register(
                keys=[USERS, FOLDED],
                args=[blind, self._folded_blind(name), sealed, refuse],
                client=pipe,
            )
            blinds.append(blind)
            names.append(name)
        created = [b for b, ok in zip(blinds, pipe.execute(), strict=True) if ok]
        named = dict(zip(blinds, names, strict=True))
        for blind in created:
            self._link.publish(self._link.client, ACCOUNTS_CHANNEL, blind)
            self.learned(blind, named[blind])
        return len(created)

    def verify(self, name: str, password: str) -> bool:
        blind = self._box.blind("user", name)
        self._answering()
        try:
            sealed = self._link.client.hget(USERS, blind)
        except redis.RedisError as exc:
            self._link.failed(exc)
            raise StoreError(f"cluster accounts: cannot read ({exc})") from None
        record = self._open(blind, sealed) if sealed is not None else None
        if record is None or record.name != name:
            matches(self._dummy, password)
            return False
        if not matches(record, password):
            return False
        if record.params != (self._n, SCRYPT_R, SCRYPT_P, HASH_BYTES):
            self._rehash(blind, bytes(sealed), record, password)
        return True

    def token_nonce(self, name: str) -> bytes | None:
        """Read from Redis at each token login (a hash thread): a new password or an unban on
        any node replaces it, so no node can go on taking a revoked token."""
        blind = self._box.blind("user", name)
        sealed = self._call(lambda c: c.hget(USERS, blind))
        record = self._open(blind, sealed) if sealed is not None else None
        return record.nonce if record is not None and record.name == name else None

    def _rehash(self, blind: str, sealed: bytes, old: Record, password: str) -> None:
        new = new_record(old.name, password, self._n, old.created, old.nonce)  # same tokens
        blob = self._box.seal(_context(blind), record_to_json(new))
        try:
            self._replace(keys=[USERS], args=[blind, sealed, blob])
        except redis.RedisError as exc:  # the old record still checks this password
            log.warning("re-hash of one account not saved: %s", exc)

    # ---- the operator's commands (ops/commands.py) -----------------------------------------
    def list_names(self) -> list[str]:
        """Every account's name, sorted, as Redis has it now (each record opened: an
        operator's command, O(N)); `names()` is this node's copy, for `user_search`."""
        found = []
        for blind, sealed in self._call(lambda c: c.hgetall(USERS)).items():
            record = self._open(bytes(blind).decode(), sealed)
            if record is not None:
                found.append(record.name)
        return sorted(found)

    def set_password(self, name: str, password: str) -> bool:
        blind = self._box.blind("user", name)
        sealed = self._call(lambda c: c.hget(USERS, blind))
        old = self._open(blind, sealed) if sealed is not None else None
        if old is None or old.name != name:
            return False
        new = new_record(name, password, self._n, old.created)
        blob = self._box.seal(_context(blind), record_to_json(new))
        return bool(self._call(lambda c: self._set_password(keys=[USERS], args=[blind, blob])))

    def delete(self, name: str) -> bool:
        blind = self._box.blind("user", name)
        done = self._call(
            lambda c: self._delete(
                keys=[USERS, FOLDED, BANNED], args=[blind, self._folded_blind(name)]
            )
        )
        self.forgot(blind)
        return bool(done)

    def ban(self, name: str) -> bool:
        return self._set_banned(name, True)

    def unban(self, name: str) -> bool:
        """Lift the ban, and replace the token nonce in the same script (a banned user's
        tokens stay dead after the unban)."""
        blind = self._box.blind("user", name)
        for _ in range(_UNBAN_TRIES):
            sealed = self._call(lambda c: c.hget(USERS, blind))
            record = self._open(blind, sealed) if sealed is not None else None
            if record is None or record.name != name:
                return False
            blob = self._box.seal(_context(blind), record_to_json(record.with_new_nonce()))
            done = self._call(
                lambda c, old=bytes(sealed), new=blob: self._unban(
                    keys=[USERS, BANNED], args=[blind, old, new]
                )
            )
            if done != -1:
                return bool(done)
        raise StoreError(f"cluster accounts: {name} kept changing; unban not done, try again")

    def banned(self, name: str) -> bool:
        """Read from Redis (a login asks it on a hash thread, after the password)."""
        blind = self._box.blind("user", name)
        return bool(self._call(lambda c: c.hexists(BANNED, blind)))

    def create_invite(self, uses: int, expires: float | None) -> str:
        code = codes.new_code()
        value = f"{uses} {'-' if expires is None else int(expires)}"
        self._call(lambda c: c.hset(INVITES, self._box.blind("invite", code), value))
        return code

    def take_invite(self, code: str) -> Invite | None:
        if not codes.well_formed(code):
            return None
        handle = self._box.blind("invite", code)
        got = self._call(lambda c: self._take_invite(keys=[INVITES], args=[handle]))
        if got is None:
            return None
        expires = bytes(got).decode()
        return Invite(1, None if expires == "-" else float(expires))

    def return_invite(self, code: str, taken: Invite) -> None:
        handle = self._box.blind("invite", code)
        expires = "-" if taken.expires is None else str(int(taken.expires))
        self._call(lambda c: self._return_invite(keys=[INVITES], args=[handle, expires]))

    def _set_banned(self, name: str, banned: bool) -> bool:
        blind = self._box.blind("user", name)
        flag = "1" if banned else "0"
        return bool(self._call(lambda c: self._ban(keys=[USERS, BANNED], args=[blind, flag])))

    def _answering(self) -> None:
        """StoreAway (a StoreError) at once while Redis (the node of the accounts' slot) is
        known to be away. Every account key shares one hash tag, so one node answers for all
        of them. Without this, each login of an outage waited out the link's timeout on a
        hash thread, and a handful of logins held every hash thread. The presence's heartbeat
        asks Redis meanwhile and says when it is back (cluster/presence.py)."""
        if not self._link.reachable(USERS):
            raise StoreAway("cluster accounts: redis is away")

    def _call(self, fn: Callable[[redis.Redis], Any]) -> Any:
        """One Redis call; StoreError (one line) when Redis does not answer, or at once
        when it is known away (`_answering`)."""
        self._answering()
        try:
            result = fn(self._link.client)
        except redis.RedisError as exc:
            self._link.failed(exc)
            raise StoreError(f"cluster accounts: redis did not answer ({exc})") from None
        self._link.works()
        return result

    def _open(self, blind: str, sealed: bytes) -> Record | None:
        plain = self._box.open(_context(blind), bytes(sealed))
        if plain is None:
            log.error("cluster accounts: account %s is damaged or sealed with another key", blind)
            return None
        try:
            return record_from_json(plain, "cluster account")
        except StoreError as exc:
            log.error("%s", exc)
            return None


def _context(blind: str) -> bytes:
    return f"{USERS}:{blind}".encode()
