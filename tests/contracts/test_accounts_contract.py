"""The accounts seam's contract, run against both implementations.

`alone`: the encrypted users file (`accounts.users_file.UserStore`). `cluster`: one
Redis hash (`cluster.accounts.RedisAccounts`) on a real redis-server, read with
`reload()` as a node does when it joins. What differs (where the bytes lie, what a
second instance over the same storage is) is in the `Keeper` classes, never in a test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.server.accounts.seam import Accounts
from chat.server.accounts.users_file import Record, StoreError, UserStore, record_from_json
from chat.server.cluster import keys
from chat.server.cluster.accounts import RedisAccounts
from chat.server.cluster.box import Box
from chat.server.cluster.bus import Message, Subscriber
from chat.server.cluster.link import Link
from chat.server.crypto.cipher import Cipher
from cluster.conftest import free_port

from .conftest import IMPLEMENTATIONS, KEY, KINDS, AnyRedis, at_rest, wait_until

COST = 10  # fast hashes for tests; the server default is 14
NAMES = ("alice-account", "bob-account")
PASSWORDS = ("wonderland-pass-1", "builder-pass-22")


class Keeper:
    """One implementation's storage, and instances of the seam over it."""

    def open(self, cost: int = 0) -> Accounts:
        """An instance over the storage, ready as the server makes it (`--hash-cost`: `cost`,
        else the tests' own)."""
        raise NotImplementedError

    def at_rest(self) -> list[bytes]:
        """Every byte the storage holds."""
        raise NotImplementedError

    def records(self) -> list[Record]:
        """The stored records, opened with the key (what must not be in clear)."""
        raise NotImplementedError

    def told(self, learner: Accounts) -> None:
        """Bring a second instance up to date the way its server does."""

    def close(self) -> None:
        pass


class FileKeeper(Keeper):
    def __init__(self, path: Path, cipher: Cipher) -> None:
        self.path = path
        self._cipher = cipher

    def open(self, cost: int = 0) -> UserStore:
        return UserStore.open(self.path, KEY, self._cipher, hash_cost_log2=cost or COST)

    def at_rest(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.path.parent.iterdir()) if p.is_file()]

    def records(self) -> list[Record]:
        return list(self.open()._users.values())  # opened and checked with the key

    def told(self, learner: Accounts) -> None:
        raise AssertionError("a users file has one server: a second one reopens it")


class RedisKeeper(Keeper):
    def __init__(self, redis_proc: AnyRedis, box: Box) -> None:
        self._redis = redis_proc
        self._box = box
        self.client = redis_proc.client()
        self._pubsub: Subscriber | None = None

    def open(self, cost: int = 0) -> RedisAccounts:
        accounts = RedisAccounts(Link(self._redis.url), self._box, cost or COST)
        accounts.reload()
        return accounts

    def at_rest(self) -> list[bytes]:
        return at_rest(self.client)

    def records(self) -> list[Record]:
        out = []
        for blind, sealed in self.client.hgetall(keys.USERS).items():
            plain = self._box.open(f"{keys.USERS}:{blind.decode()}".encode(), sealed)
            assert plain is not None, "a stored account does not open with the key"
            out.append(record_from_json(plain, "test"))
        return out

    def listen(self) -> None:
        """Subscribe to the accounts channel now, as a node does before it serves."""
        self._pubsub = Subscriber(Link(self._redis.url), [keys.ACCOUNTS])
        self._pubsub.open()

    def told(self, learner: Accounts) -> None:
        """Hand what the accounts channel said to `learner.learned`, as the node's control
        subscriber does (cluster/presence.py)."""
        assert self._pubsub is not None and isinstance(learner, RedisAccounts)
        deadline = time.monotonic() + 0.5  # what was published by now has come by then
        while (left := deadline - time.monotonic()) > 0:
            for event in self._pubsub.poll(left):
                if isinstance(event, Message):
                    learner.learned(event.data.decode())

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()


@pytest.fixture(params=IMPLEMENTATIONS)
def keeper(request: pytest.FixtureRequest, tmp_path: Path, cipher: Cipher) -> Iterator[Keeper]:
    if request.param == "alone":
        made: Keeper = FileKeeper(tmp_path / "data" / "users.db", cipher)
    else:
        made = RedisKeeper(request.getfixturevalue("redis_of")(request.param), Box(KEY, cipher))
    yield made
    made.close()


@pytest.fixture
def accounts(keeper: Keeper) -> Accounts:
    return keeper.open()


def test_a_registered_account_verifies_with_its_password_only(accounts: Accounts) -> None:
    assert accounts.register(NAMES[0], PASSWORDS[0]) is True
    assert accounts.verify(NAMES[0], PASSWORDS[0]) is True
    assert accounts.verify(NAMES[0], PASSWORDS[1]) is False
    assert accounts.verify(NAMES[0], "") is False
    assert accounts.verify(NAMES[0], PASSWORDS[0] + " ") is False
    assert accounts.verify(NAMES[0].upper(), PASSWORDS[0]) is False


def test_an_unknown_name_is_refused_and_hashed_all_the_same(accounts: Accounts) -> None:
    assert accounts.verify("nobody", "whatever") is False  # an empty store hashes a dummy
    accounts.register(NAMES[0], PASSWORDS[0])
    assert accounts.verify("nobody", PASSWORDS[0]) is False
    assert accounts.verify("", PASSWORDS[0]) is False


def test_a_taken_name_cannot_be_registered_again(accounts: Accounts) -> None:
    assert accounts.register(NAMES[0], PASSWORDS[0]) is True
    assert accounts.register(NAMES[0], PASSWORDS[1]) is False
    assert accounts.verify(NAMES[0], PASSWORDS[0]) is True  # the first one stays
    assert accounts.verify(NAMES[0], PASSWORDS[1]) is False


def test_membership_and_count_follow_registrations(accounts: Accounts) -> None:
    assert len(accounts) == 0 and NAMES[0] not in accounts
    for i, (name, password) in enumerate(zip(NAMES, PASSWORDS, strict=True), 1):
        assert accounts.register(name, password)
        assert name in accounts and len(accounts) == i
    assert "nobody" not in accounts
    assert 42 not in accounts  # type: ignore[operator]
    accounts.register(NAMES[0], "again")
    assert len(accounts) == len(NAMES)


def test_save_is_harmless(keeper: Keeper, accounts: Accounts) -> None:
    accounts.save()  # nothing registered yet
    accounts.register(NAMES[0], PASSWORDS[0])
    accounts.save()
    accounts.save()
    assert len(accounts) == 1 and accounts.verify(NAMES[0], PASSWORDS[0])
    again = keeper.open()
    assert len(again) == 1 and again.verify(NAMES[0], PASSWORDS[0])


def test_no_name_and_no_hash_in_clear_at_rest(keeper: Keeper, accounts: Accounts) -> None:
    for name, password in zip(NAMES, PASSWORDS, strict=True):
        accounts.register(name, password)
    accounts.save()
    records = keeper.records()
    assert sorted(r.name for r in records) == sorted(NAMES)
    secrets = [*(n.encode() for n in NAMES), *(p.encode() for p in PASSWORDS)]
    for record in records:
        secrets += [
            record.hash,
            record.hash.hex().encode(),
            record.salt,
            record.salt.hex().encode(),
        ]
    blobs = keeper.at_rest()
    assert sum(len(b) for b in blobs) > 100, "the storage holds nothing: nothing was checked"
    for blob in blobs:
        for secret in secrets:
            assert secret not in blob, f"{secret[:12]!r}... in clear at rest"


def test_a_second_instance_over_the_same_storage_sees_the_registrations(keeper: Keeper) -> None:
    if isinstance(keeper, RedisKeeper):
        keeper.listen()
    first = keeper.open()
    assert first.register(NAMES[0], PASSWORDS[0])
    second = keeper.open()
    assert NAMES[0] in second and len(second) == 1
    assert second.verify(NAMES[0], PASSWORDS[0])
    assert second.register(NAMES[0], PASSWORDS[1]) is False  # taken, seen through storage
    assert second.register(NAMES[1], PASSWORDS[1])
    if isinstance(keeper, RedisKeeper):
        # Both run at once: the first logs the account in at once (it reads Redis), and
        # knows the name once the accounts channel told it, as its node's subscriber does.
        assert first.verify(NAMES[1], PASSWORDS[1])
        keeper.told(first)
        assert NAMES[1] in first and len(first) == 2
        assert first.register(NAMES[1], PASSWORDS[0]) is False
    third = keeper.open()
    assert len(third) == 2 and all(n in third for n in NAMES)
    assert third.verify(NAMES[1], PASSWORDS[1]) and not third.verify(NAMES[1], PASSWORDS[0])


def test_a_name_told_by_the_channel_alone_is_known_to_a_running_instance(
    redis_server: AnyRedis, cipher: Cipher
) -> None:
    """Cluster only: a node that did not register the name learns it without a reload."""
    keeper = RedisKeeper(redis_server, Box(KEY, cipher))
    try:
        keeper.listen()
        watcher = keeper.open()
        other = keeper.open()
        assert other.register(NAMES[0], PASSWORDS[0])
        assert NAMES[0] not in watcher  # not told yet: it answers from memory
        keeper.told(watcher)
        assert wait_until(lambda: NAMES[0] in watcher, 2)
        assert len(watcher) == 1
    finally:
        keeper.close()


def test_confirm_asks_the_storage_about_names_the_memory_does_not_know(keeper: Keeper) -> None:
    """What a send to a just-registered account needs (core/fanout.py `_confirm`): the
    storage decides, and a name found is known from then on. A second instance is the
    node that has not been told yet (the Redis kinds; a users file has one server)."""
    first = keeper.open()
    assert first.confirm([]) == frozenset()
    assert first.confirm(["nobody"]) == frozenset()
    assert first.register(NAMES[0], PASSWORDS[0])
    assert first.confirm([NAMES[0], "nobody", NAMES[0]]) == {NAMES[0]}
    assert first.confirm([NAMES[0].upper()]) == frozenset()  # names are case-sensitive
    if not isinstance(keeper, RedisKeeper):
        return
    second = keeper.open()
    assert first.register(NAMES[1], PASSWORDS[1])
    assert NAMES[1] not in second  # not told yet (no channel listened to here)
    assert second.confirm([NAMES[1], "nobody"]) == {NAMES[1]}
    assert NAMES[1] in second and len(second) == 2  # learned: the route knows it now
    assert NAMES[1] in second.names()  # type: ignore[attr-defined]


@pytest.mark.parametrize("keeper", KINDS, indirect=True)  # Redis only: a foreign record
def test_confirm_counts_no_record_that_does_not_open_with_the_key(
    keeper: Keeper, cipher: Cipher
) -> None:
    """A value under an account's blind name sealed with another key (or damaged) is no
    account: the node would queue messages for a name nobody can log in as."""
    assert isinstance(keeper, RedisKeeper)
    accounts = keeper.open()
    blind = Box(KEY, cipher).blind("user", "forged")
    keeper.client.hset(keys.USERS, blind, b"\x00" * 80)
    assert accounts.confirm(["forged"]) == frozenset()
    assert "forged" not in accounts
    other = Box(b"another key of 32 bytes, not it!", cipher)
    keeper.client.hset(keys.USERS, blind, other.seal(f"{keys.USERS}:{blind}".encode(), b"{}"))
    assert accounts.confirm(["forged"]) == frozenset()


def test_confirm_says_so_when_the_storage_does_not_answer(cipher: Cipher) -> None:
    """Cluster only: Redis away is a StoreError (the send is then answered from memory,
    never held for ever), not an empty answer taken for the truth."""
    nobody_there = f"redis://127.0.0.1:{free_port()}/0"
    accounts = RedisAccounts(Link(nobody_there), Box(KEY, cipher), COST)
    with pytest.raises(StoreError):
        accounts.confirm(["someone"])


# ---- the operator's side (AccountAdmin: ops/commands.py) ------------------------------------
def test_names_are_every_account_sorted(accounts: Accounts) -> None:
    assert accounts.list_names() == []  # type: ignore[attr-defined]
    for name in ("carol", "Alice", "bob"):
        accounts.register(name, "pw")
    assert accounts.list_names() == ["Alice", "bob", "carol"]  # type: ignore[attr-defined]


def test_a_new_password_replaces_the_old_one_durably(keeper: Keeper, accounts: Accounts) -> None:
    accounts.register(NAMES[0], PASSWORDS[0])
    assert accounts.set_password(NAMES[0], PASSWORDS[1]) is True  # type: ignore[attr-defined]
    assert accounts.verify(NAMES[0], PASSWORDS[1]) and not accounts.verify(NAMES[0], PASSWORDS[0])
    again = keeper.open()
    assert again.verify(NAMES[0], PASSWORDS[1]) and not again.verify(NAMES[0], PASSWORDS[0])
    assert accounts.set_password("nobody", "x") is False  # type: ignore[attr-defined]
    assert "nobody" not in keeper.open()  # not created by the attempt


def test_a_deleted_account_is_gone_and_its_name_free(keeper: Keeper, accounts: Accounts) -> None:
    for name, password in zip(NAMES, PASSWORDS, strict=True):
        accounts.register(name, password)
    accounts.ban(NAMES[0])  # type: ignore[attr-defined]
    assert accounts.delete(NAMES[0]) is True  # type: ignore[attr-defined]
    assert NAMES[0] not in accounts and len(accounts) == 1
    assert not accounts.verify(NAMES[0], PASSWORDS[0])
    again = keeper.open()
    assert NAMES[0] not in again and NAMES[1] in again and len(again) == 1
    assert accounts.delete(NAMES[0]) is False  # type: ignore[attr-defined]
    # Registered again: a new account, with its new password, and not banned.
    assert accounts.register(NAMES[0], "a new one")
    assert accounts.verify(NAMES[0], "a new one") and not accounts.banned(NAMES[0])


def test_a_ban_is_durable_and_can_be_lifted(keeper: Keeper, accounts: Accounts) -> None:
    accounts.register(NAMES[0], PASSWORDS[0])
    assert not accounts.banned(NAMES[0])
    assert accounts.ban(NAMES[0]) is True and accounts.ban(NAMES[0]) is True  # type: ignore[attr-defined]
    assert accounts.banned(NAMES[0]) and keeper.open().banned(NAMES[0])
    assert accounts.verify(NAMES[0], PASSWORDS[0])  # the password is kept: the login refuses
    assert accounts.unban(NAMES[0]) is True  # type: ignore[attr-defined]
    assert not accounts.banned(NAMES[0]) and not keeper.open().banned(NAMES[0])
    assert accounts.ban("nobody") is False and accounts.unban("nobody") is False  # type: ignore[attr-defined]
    assert not accounts.banned("nobody")


def test_an_invite_has_its_uses_and_gives_one_back(keeper: Keeper, accounts: Accounts) -> None:
    code = accounts.create_invite(2, None)  # type: ignore[attr-defined]
    assert isinstance(code, str) and len(code) >= 22
    user = keeper.open()  # durable when made: a new instance (another node) finds it
    first = user.take_invite(code)
    assert first is not None and user.take_invite(code) is not None
    assert user.take_invite(code) is None  # used up
    user.return_invite(code, first)  # that registration did not happen
    assert user.take_invite(code) is not None and user.take_invite(code) is None
    for bad in ("", "x" * 500, code + "x", "nonsense"):
        assert user.take_invite(bad) is None


def test_an_expired_invite_does_not_work(accounts: Accounts) -> None:
    old = accounts.create_invite(5, time.time() - 1)  # type: ignore[attr-defined]
    assert accounts.take_invite(old) is None
    fresh = accounts.create_invite(1, time.time() + 3600)  # type: ignore[attr-defined]
    taken = accounts.take_invite(fresh)
    assert taken is not None and taken.expires is not None and taken.expires > time.time()


def test_no_invite_code_in_clear_at_rest(keeper: Keeper, accounts: Accounts) -> None:
    made = [accounts.create_invite(3, None) for _ in range(3)]  # type: ignore[attr-defined]
    accounts.register(NAMES[0], PASSWORDS[0])
    blobs = keeper.at_rest()
    for code in made:
        assert all(code.encode() not in blob for blob in blobs)


def test_names_lists_every_account_sorted_also_those_another_instance_made(
    keeper: Keeper,
) -> None:
    """`user_search` (protocol v1.2 section 7) completes names from `names()`."""
    if isinstance(keeper, RedisKeeper):
        keeper.listen()
    first = keeper.open()
    for name in ("zoe-account", "Alice-account", "bob-account"):
        assert first.register(name, PASSWORDS[0])
    expected = ["Alice-account", "bob-account", "zoe-account"]
    assert first.names() == expected  # type: ignore[attr-defined]
    second = keeper.open()
    assert second.names() == expected  # type: ignore[attr-defined]
    assert second.register("carl-account", PASSWORDS[1])
    if isinstance(keeper, RedisKeeper):
        keeper.told(first)  # as its node's subscriber does: no reload
        assert first.names() == sorted([*expected, "carl-account"])  # type: ignore[attr-defined]
    assert keeper.open().names() == sorted([*expected, "carl-account"])  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# token nonces (protocol v1.2 section 6: what a login token is bound to)
# --------------------------------------------------------------------------
def test_a_token_nonce_is_the_account_s_own_and_lasts(keeper: Keeper, accounts: Accounts) -> None:
    for name, password in zip(NAMES, PASSWORDS, strict=True):
        accounts.register(name, password)
    first, second = (accounts.token_nonce(n) for n in NAMES)
    assert first is not None and second is not None and len(first) == 16
    assert first != second
    assert accounts.token_nonce("nobody") is None
    assert keeper.open().token_nonce(NAMES[0]) == first  # durable, and read alike
    assert accounts.verify(NAMES[0], PASSWORDS[0])  # a login changes nothing
    assert accounts.token_nonce(NAMES[0]) == first


def test_a_new_password_and_an_unban_replace_the_nonce_a_ban_does_not(
    keeper: Keeper, accounts: Accounts
) -> None:
    accounts.register(NAMES[0], PASSWORDS[0])
    before = accounts.token_nonce(NAMES[0])
    assert accounts.set_password(NAMES[0], PASSWORDS[1])  # type: ignore[attr-defined]
    changed = accounts.token_nonce(NAMES[0])
    assert changed not in (None, before)
    assert accounts.ban(NAMES[0])  # type: ignore[attr-defined]
    assert accounts.token_nonce(NAMES[0]) == changed  # banned: its logins say `banned`
    assert accounts.unban(NAMES[0])  # type: ignore[attr-defined]
    lifted = accounts.token_nonce(NAMES[0])
    assert lifted not in (None, before, changed)
    assert keeper.open().token_nonce(NAMES[0]) == lifted and not accounts.banned(NAMES[0])
    assert accounts.verify(NAMES[0], PASSWORDS[1])  # the password stays
    assert accounts.unban(NAMES[0])  # type: ignore[attr-defined]  # not banned: nothing to lift
    assert accounts.token_nonce(NAMES[0]) == lifted


def test_a_re_registered_name_has_a_new_nonce(keeper: Keeper, accounts: Accounts) -> None:
    accounts.register(NAMES[0], PASSWORDS[0])
    old = accounts.token_nonce(NAMES[0])
    assert accounts.delete(NAMES[0])  # type: ignore[attr-defined]
    assert accounts.token_nonce(NAMES[0]) is None
    assert accounts.register(NAMES[0], PASSWORDS[0])
    assert accounts.token_nonce(NAMES[0]) not in (None, old)


def test_a_rehash_at_a_new_cost_keeps_the_nonce(keeper: Keeper, accounts: Accounts) -> None:
    accounts.register(NAMES[0], PASSWORDS[0])
    nonce = accounts.token_nonce(NAMES[0])
    dearer = keeper.open(cost=COST + 1)  # the server restarted with a higher --hash-cost
    assert dearer.verify(NAMES[0], PASSWORDS[0])  # re-hashed and stored at the new cost
    [record] = [r for r in keeper.records() if r.name == NAMES[0]]
    assert record.n == 1 << (COST + 1)
    again = keeper.open(cost=COST + 1)
    assert again.token_nonce(NAMES[0]) == nonce  # a re-hash is not a new password
    assert again.verify(NAMES[0], PASSWORDS[0])


@pytest.mark.parametrize("keeper", KINDS, indirect=True)  # Redis only: see the docstring
def test_a_name_deleted_by_another_instance_can_be_registered_before_it_is_told(
    keeper: Keeper,
) -> None:
    """A cluster's node hears of a delete on another node a moment later (the control
    channel); a registration of the name meanwhile must not be refused `user_exists` by
    what the node remembers: the store decides. (Seen under four test workers: a name
    deleted on node a and registered again on node c at once.) Run on the Redis kinds
    only: a users file is opened by one server at a time, so there is no second
    instance to be told late."""
    first = keeper.open()
    assert first.register("gone-account", PASSWORDS[0])
    second = keeper.open()
    assert "gone-account" in second  # it read every account at start
    assert first.delete("gone-account")  # type: ignore[attr-defined]
    assert "gone-account" in second  # not told yet
    assert second.register("gone-account", PASSWORDS[1])
    assert second.verify("gone-account", PASSWORDS[1]) and not second.verify(
        "gone-account", PASSWORDS[0]
    )
    assert not second.register("gone-account", PASSWORDS[0])  # taken again, for real
