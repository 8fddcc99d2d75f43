"""Login tokens (protocol v1.2 section 6): what makes one good, and everything that does not.

`Tokens` on a clock the test moves; the users file's token nonces on a real
file (a record written before tokens gets one from its salt, then keeps it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chat.server.accounts.tokens import CLOCK_SLACK, Tokens
from chat.server.accounts.users_file import UserStore
from chat.server.crypto.cipher import load_cipher
from chat.shared.messages import TOKEN_MAX

KEY = bytes(range(32))
NONCE = bytes(range(16))
DAY = 86400.0


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(clock: Clock) -> Tokens:
    return Tokens(KEY, 30.0, clock)


def test_a_token_logs_in_its_user_with_its_nonce_only(tokens: Tokens) -> None:
    token = tokens.issue("alice", NONCE)
    assert token.startswith("v1.") and len(token) <= TOKEN_MAX
    assert tokens.check(token, "alice", NONCE)
    assert not tokens.check(token, "bob", NONCE)  # another name
    assert not tokens.check(token, "Alice", NONCE)  # names are case-sensitive
    assert not tokens.check(token, "alice", bytes(16))  # the nonce was replaced: revoked
    assert not tokens.check(token, "alice", None)  # no such account (deleted)


def test_two_tokens_of_one_account_both_work(tokens: Tokens, clock: Clock) -> None:
    first = tokens.issue("alice", NONCE)
    clock.now += 1
    second = tokens.issue("alice", NONCE)
    assert first != second
    assert tokens.check(first, "alice", NONCE) and tokens.check(second, "alice", NONCE)


def test_another_server_key_cannot_make_or_check_our_tokens(tokens: Tokens, clock: Clock) -> None:
    other = Tokens(bytes(32), 30.0, clock)
    assert not tokens.check(other.issue("alice", NONCE), "alice", NONCE)
    assert not other.check(tokens.issue("alice", NONCE), "alice", NONCE)
    assert Tokens(KEY, 30.0, clock).check(tokens.issue("alice", NONCE), "alice", NONCE)


def test_every_altered_character_is_refused(tokens: Tokens) -> None:
    token = tokens.issue("alice", NONCE)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, char in enumerate(token):
        if char == ".":
            continue
        for other in {alphabet[(alphabet.index(char) + 1) % 64], alphabet[0]} - {char}:
            changed = token[:i] + other + token[i + 1 :]
            assert not tokens.check(changed, "alice", NONCE), (i, changed)


def test_malformed_tokens_are_refused_never_raise(tokens: Tokens) -> None:
    token = tokens.issue("alice", NONCE)
    _, stamp, mac = token.split(".")
    for bad in [
        "",
        "x",
        token + "A",
        token[:-1],
        token + "=",
        f"v2.{stamp}.{mac}",
        f"{stamp}.{mac}",
        f"v1.{stamp}",
        f"v1.{stamp}.{mac}.{mac}",
        f"v1.{stamp}={mac}",
        token.replace(".", "-"),
        "v1." + "A" * 11 + "." + "A" * 43,
        "v1.\u00e9" + token[4:],
        "v1." + "\udc00" * 11 + "." + mac,
        "\x00" * 58,
        " " + token,
        token.upper(),
        "v1." + "/" * 11 + "." + "+" * 43,  # standard base64, not URL-safe
    ]:
        assert tokens.check(bad, "alice", NONCE) is False, bad


def test_one_token_has_one_spelling(tokens: Tokens) -> None:
    """11 base64 characters carry 66 bits for 8 bytes, 43 carry 258 for 32: the 2 spare
    bits of each last character must be 0 (they decode to the same bytes)."""
    token = tokens.issue("alice", NONCE)
    _, stamp, mac = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

    def spare(part: str) -> str:
        return part[:-1] + alphabet[alphabet.index(part[-1]) ^ 1]

    assert tokens.check(f"v1.{stamp}.{mac}", "alice", NONCE)
    assert not tokens.check(f"v1.{spare(stamp)}.{mac}", "alice", NONCE)
    assert not tokens.check(f"v1.{stamp}.{spare(mac)}", "alice", NONCE)


def test_a_token_expires_after_token_days(tokens: Tokens, clock: Clock) -> None:
    token = tokens.issue("alice", NONCE)
    clock.now += 30 * DAY - 1
    assert tokens.check(token, "alice", NONCE)
    clock.now += 1
    assert not tokens.check(token, "alice", NONCE)


def test_lowering_token_days_shortens_tokens_already_issued(tokens: Tokens, clock: Clock) -> None:
    token = tokens.issue("alice", NONCE)
    clock.now += 2 * DAY
    assert tokens.check(token, "alice", NONCE)
    tokens.days = 1.5  # a reload (SIGHUP)
    assert not tokens.check(token, "alice", NONCE)
    tokens.days = 3.0
    assert tokens.check(token, "alice", NONCE)


def test_fractional_days_count_in_seconds(clock: Clock) -> None:
    tokens = Tokens(KEY, 2 / DAY, clock)  # two seconds
    token = tokens.issue("alice", NONCE)
    clock.now += 1.9
    assert tokens.check(token, "alice", NONCE)
    clock.now += 0.2
    assert not tokens.check(token, "alice", NONCE)


def test_a_token_from_the_future_counts_within_the_slack_only(clock: Clock) -> None:
    ahead = Tokens(KEY, 30.0, Clock(clock.now + CLOCK_SLACK - 1))  # a node whose clock is ahead
    behind = Tokens(KEY, 30.0, clock)
    assert behind.check(ahead.issue("alice", NONCE), "alice", NONCE)
    far = Tokens(KEY, 30.0, Clock(clock.now + CLOCK_SLACK + 1))
    assert not behind.check(far.issue("alice", NONCE), "alice", NONCE)


# --------------------------------------------------------------------------
# the users file's nonces
# --------------------------------------------------------------------------
def _old_format(store: UserStore) -> None:
    """Rewrite the store's file as a server from before tokens wrote it (no nonces)."""
    path = store.path
    plain = json.loads(store._codec.open(path.read_bytes()))
    plain.pop("nonces")
    path.write_bytes(store._codec.seal(json.dumps(plain).encode()))


def test_a_record_from_before_tokens_gets_a_steady_nonce_then_keeps_it(tmp_path: Path) -> None:
    cipher = load_cipher(None)
    path = tmp_path / "users.db"
    store = UserStore(path, KEY, cipher, hash_cost_log2=4)
    assert store.register("alice", "pw-alice") and store.register("bob", "pw-bob")
    _old_format(store)
    old = UserStore.open(path, KEY, cipher, hash_cost_log2=4)
    derived = old.token_nonce("alice")
    assert derived is not None and len(derived) == 16
    assert derived != old.token_nonce("bob")
    assert UserStore.open(path, KEY, cipher, hash_cost_log2=4).token_nonce("alice") == derived
    assert old.register("carol", "pw-carol")  # the first write stores every nonce
    plain = json.loads(old._codec.open(path.read_bytes()))
    assert bytes.fromhex(plain["nonces"]["alice"]) == derived
    again = UserStore.open(path, KEY, cipher, hash_cost_log2=4)
    assert again.token_nonce("alice") == derived and again.verify("alice", "pw-alice")


def test_a_file_with_a_bad_nonce_is_refused_in_one_line(tmp_path: Path) -> None:
    from chat.server.accounts.users_file import StoreError

    cipher = load_cipher(None)
    path = tmp_path / "users.db"
    store = UserStore(path, KEY, cipher, hash_cost_log2=4)
    assert store.register("alice", "pw-alice")
    plain = json.loads(store._codec.open(path.read_bytes()))
    for bad in ("abcd", 12, None, "zz" * 16):
        plain["nonces"]["alice"] = bad
        path.write_bytes(store._codec.seal(json.dumps(plain).encode()))
        with pytest.raises(StoreError, match="undecodable content"):
            UserStore.open(path, KEY, cipher, hash_cost_log2=4)
