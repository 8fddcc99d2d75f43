"""The encrypted user store, on real files, with the real cipher plugin."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.server.accounts.users_file import MAGIC, FolderLock, StoreError, UserStore
from chat.server.crypto.cipher import Cipher, load_cipher
from together import run_together

COST = 10  # fast hashes for tests; the server default is 14
KEY = bytes(range(32))


@pytest.fixture(scope="module")
def cipher() -> Cipher:
    return load_cipher()


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return tmp_path / "users.db"


def _open(path: Path, cipher: Cipher, key: bytes = KEY) -> UserStore:
    return UserStore.open(path, key, cipher, hash_cost_log2=COST)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _filled(path: Path, cipher: Cipher) -> UserStore:
    store = _open(path, cipher)
    assert store.register("alice", "wonderland-pass")
    assert store.register("bob", "builder-pass")
    return store


def test_open_does_not_create_the_file(users_file: Path, cipher: Cipher) -> None:
    store = _open(users_file, cipher)
    assert len(store) == 0
    assert not users_file.exists()


def test_first_registration_creates_the_file_with_mode_0600(
    users_file: Path, cipher: Cipher
) -> None:
    assert _open(users_file, cipher).register("alice", "pw")
    assert users_file.exists()
    assert _mode(users_file) == 0o600
    assert users_file.read_bytes().startswith(MAGIC)


def test_save_of_an_empty_store_creates_a_readable_file(users_file: Path, cipher: Cipher) -> None:
    _open(users_file, cipher).save()
    assert _mode(users_file) == 0o600
    assert len(_open(users_file, cipher)) == 0


def test_accounts_survive_a_reopen(users_file: Path, cipher: Cipher) -> None:
    _filled(users_file, cipher)
    again = _open(users_file, cipher)
    assert again.names() == ["alice", "bob"]
    assert len(again) == 2 and "alice" in again and "carol" not in again
    assert again.verify("alice", "wonderland-pass")
    assert again.verify("bob", "builder-pass")
    assert not again.verify("alice", "builder-pass")
    assert not again.verify("carol", "wonderland-pass")


def test_registering_a_taken_name_returns_false_and_keeps_the_password(
    users_file: Path, cipher: Cipher
) -> None:
    store = _filled(users_file, cipher)
    assert store.register("alice", "other") is False
    assert store.verify("alice", "wonderland-pass")
    assert not store.verify("alice", "other")


def test_names_are_case_sensitive(users_file: Path, cipher: Cipher) -> None:
    store = _open(users_file, cipher)
    assert store.register("Alice", "a")
    assert store.register("alice", "b")
    assert store.verify("Alice", "a") and not store.verify("Alice", "b")


def test_hash_cost_is_stored_per_record(users_file: Path, cipher: Cipher) -> None:
    cheap = UserStore.open(users_file, KEY, cipher, hash_cost_log2=4)
    assert cheap.register("old", "pw-old")
    dearer = UserStore.open(users_file, KEY, cipher, hash_cost_log2=COST)
    assert dearer.register("new", "pw-new")
    again = _open(users_file, cipher)
    assert again.verify("old", "pw-old") and again.verify("new", "pw-new")


def test_wrong_key_is_refused_in_one_line_and_the_file_is_untouched(
    users_file: Path, cipher: Cipher
) -> None:
    _filled(users_file, cipher)
    before, mode, mtime = users_file.read_bytes(), _mode(users_file), users_file.stat().st_mtime_ns
    with pytest.raises(StoreError) as info:
        _open(users_file, cipher, key=b"\xff" * 32)
    message = str(info.value)
    assert "\n" not in message
    assert str(users_file) in message and "wrong key or damaged file" in message
    assert users_file.read_bytes() == before
    assert _mode(users_file) == mode
    assert users_file.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in users_file.parent.iterdir()) == ["users.db"]


def test_every_flipped_byte_is_detected(users_file: Path, cipher: Cipher) -> None:
    _filled(users_file, cipher)
    good = users_file.read_bytes()
    for pos in range(len(good)):
        damaged = bytearray(good)
        damaged[pos] ^= 0x01
        users_file.write_bytes(bytes(damaged))
        with pytest.raises(StoreError) as info:
            _open(users_file, cipher)
        assert "\n" not in str(info.value), f"byte {pos}"


def test_every_truncation_is_detected(users_file: Path, cipher: Cipher) -> None:
    _filled(users_file, cipher)
    good = users_file.read_bytes()
    for size in range(len(good)):
        users_file.write_bytes(good[:size])
        with pytest.raises(StoreError):
            _open(users_file, cipher)


def test_appended_bytes_are_detected(users_file: Path, cipher: Cipher) -> None:
    _filled(users_file, cipher)
    with users_file.open("ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(StoreError, match="integrity check failed"):
        _open(users_file, cipher)


def test_a_file_that_is_not_a_store_is_refused(users_file: Path, cipher: Cipher) -> None:
    users_file.write_text(json.dumps({"users": []}))
    with pytest.raises(StoreError, match="not a users file"):
        _open(users_file, cipher)


def test_a_store_written_with_another_cipher_names_both(
    users_file: Path, cipher: Cipher, tmp_path: Path
) -> None:
    _filled(users_file, cipher)

    other = Cipher(cipher._lib, cipher.path, "other")
    with pytest.raises(StoreError, match=r"'xor'.*'other'"):
        UserStore.open(users_file, KEY, other, hash_cost_log2=COST)


def test_no_name_or_password_appears_in_clear(users_file: Path, cipher: Cipher) -> None:
    store = _open(users_file, cipher)
    secrets_ = {"zanzibar_user": "Pa55-Quokka-Kangaroo", "Ёжик": "пароль-тайный"}
    for name, password in secrets_.items():
        assert store.register(name, password)
    blob = users_file.read_bytes()
    for text in (*secrets_, *secrets_.values()):
        for encoding in ("utf-8", "utf-16-le"):
            assert text.encode(encoding) not in blob, text
        assert text.encode("utf-8").hex().encode() not in blob


def test_each_write_uses_a_fresh_keystream(users_file: Path, cipher: Cipher) -> None:
    store = _filled(users_file, cipher)
    first = users_file.read_bytes()
    store.save()
    second = users_file.read_bytes()
    assert first != second, "same content must not give the same ciphertext"
    assert len(first) == len(second)


def test_concurrent_registration_of_one_name_has_exactly_one_winner(
    users_file: Path, cipher: Cipher
) -> None:
    store = _open(users_file, cipher)
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def register(i: int) -> None:
        start.wait()
        won = store.register("highlander", f"password-{i}")
        with lock:
            results.append(won)

    run_together(register, [(i,) for i in range(8)])
    assert sorted(results) == [False] * 7 + [True]
    again = _open(users_file, cipher)
    assert again.names() == ["highlander"]
    assert sum(again.verify("highlander", f"password-{i}") for i in range(8)) == 1


def test_concurrent_registration_of_many_names_keeps_them_all(
    users_file: Path, cipher: Cipher
) -> None:
    store = _open(users_file, cipher)
    names = [f"user{i}" for i in range(24)]
    run_together(store.register, [(n, n + "-pw") for n in names])
    again = _open(users_file, cipher)
    assert again.names() == sorted(names)
    assert all(again.verify(n, n + "-pw") for n in names)


def test_failed_persist_rolls_the_registration_back(tmp_path: Path, cipher: Cipher) -> None:
    folder = tmp_path / "state"
    store = _open(folder / "users.db", cipher)
    folder.write_text("a file where the folder should be")
    with pytest.raises(StoreError) as info:
        store.register("alice", "pw")
    assert "\n" not in str(info.value)
    assert "alice" not in store and len(store) == 0
    folder.unlink()
    assert store.register("alice", "pw"), "the name must be free again after the rollback"
    assert _open(folder / "users.db", cipher).verify("alice", "pw")


def test_missing_folder_is_created_on_first_write(tmp_path: Path, cipher: Cipher) -> None:
    path = tmp_path / "a" / "b" / "users.db"
    assert _open(path, cipher).register("alice", "pw")
    assert _mode(path) == 0o600


def test_a_loose_mode_becomes_0600_at_the_next_write(users_file: Path, cipher: Cipher) -> None:
    store = _filled(users_file, cipher)
    users_file.chmod(0o644)
    store = _open(users_file, cipher)
    assert store.register("carol", "pw")
    assert _mode(users_file) == 0o600


def test_hash_cost_out_of_range_is_refused(users_file: Path, cipher: Cipher) -> None:
    for cost in (0, 21):
        with pytest.raises(ValueError):
            UserStore.open(users_file, KEY, cipher, hash_cost_log2=cost)


@settings(max_examples=25, deadline=None)
@given(
    accounts=st.dictionaries(
        keys=st.text(min_size=1, max_size=32),
        values=st.text(min_size=1, max_size=256),
        max_size=4,
    )
)
def test_any_names_and_passwords_round_trip(
    tmp_path_factory: pytest.TempPathFactory, accounts: dict[str, str]
) -> None:
    c = load_cipher()
    path = tmp_path_factory.mktemp("store") / "users.db"
    store = UserStore.open(path, KEY, c, hash_cost_log2=2)
    for name, password in accounts.items():
        assert store.register(name, password)
    store.save()
    again = UserStore.open(path, KEY, c, hash_cost_log2=2)
    assert again.names() == sorted(accounts)
    for name, password in accounts.items():
        assert again.verify(name, password)


WRITER = """
import sys
from pathlib import Path
from chat.server.accounts.users_file import UserStore
from chat.server.crypto.cipher import load_cipher

path, key_hex, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
store = UserStore.open(path, bytes.fromhex(key_hex), load_cipher(), hash_cost_log2=4)
print("ready", flush=True)
i = start
while True:
    name = f"u{i}"
    if store.register(name, "pw-" + name):
        print(name, flush=True)
    i += 1
"""


def test_sigkill_at_random_points_never_loses_an_acknowledged_account(
    tmp_path: Path, cipher: Cipher
) -> None:
    path = tmp_path / "users.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(2024)
    acknowledged: list[str] = []
    next_index = 0
    for _ in range(30):
        child = subprocess.Popen(
            [sys.executable, str(script), str(path), KEY.hex(), str(next_index)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n", child.stderr.read() if child.stderr else ""
        threading.Event().wait(rng.uniform(0.0, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        assert child.returncode == -signal.SIGKILL, err
        lines = out.split("\n")
        acknowledged += [n for n in lines[:-1] if n]  # the last piece may be unterminated
        next_index += 100_000
        store = _open(path, cipher)  # must never raise
        assert _mode(path) == 0o600
        missing = [n for n in acknowledged if n not in store]
        assert missing == []
        assert all(store.verify(n, "pw-" + n) for n in acknowledged[-5:])
    final = _open(path, cipher)
    assert all(final.verify(n, "pw-" + n) for n in acknowledged)
    assert len(acknowledged) > 30, "the writer must have registered users between kills"


def test_lone_surrogates_in_names_and_passwords_round_trip(
    users_file: Path, cipher: Cipher
) -> None:
    """JSON on the wire can carry "\\ud800"; it must hash and persist, not crash."""
    store = _open(users_file, cipher)
    assert store.register("odd\ud800name", "pass\udfff")
    again = _open(users_file, cipher)
    assert again.verify("odd\ud800name", "pass\udfff")
    assert not again.verify("odd\ud800name", "pass")


def _slow_writes(store: UserStore, events: list[str]) -> None:
    """Make every file write take a while and record it, so registrations overlap."""
    persist = store._persist

    def slow(records):  # type: ignore[no-untyped-def]
        events.append(f"write {len(records)}")
        threading.Event().wait(0.05)
        persist(records)

    store._persist = slow  # type: ignore[method-assign]


def test_registrations_during_a_write_share_the_next_write(
    users_file: Path, cipher: Cipher
) -> None:
    store = _open(users_file, cipher)
    writes: list[str] = []
    _slow_writes(store, writes)
    names = [f"user{i}" for i in range(16)]
    results: dict[str, bool] = {}
    run_together(lambda n: results.update({n: store.register(n, "pw")}), [(n,) for n in names])
    assert all(results[n] for n in names)
    assert len(writes) < len(names), writes  # group commit: fewer writes than accounts
    assert _open(users_file, cipher).names() == sorted(names)


def test_an_account_cannot_log_in_before_it_is_on_disk(users_file: Path, cipher: Cipher) -> None:
    store = _open(users_file, cipher)
    writes: list[str] = []
    _slow_writes(store, writes)
    registering = threading.Thread(target=store.register, args=("alice", "pw"))
    registering.start()
    while not writes:  # the write of alice's record is under way
        threading.Event().wait(0.001)
    assert not store.verify("alice", "pw")
    registering.join()
    assert store.verify("alice", "pw")


def test_a_failed_write_takes_back_every_registration_it_held(
    tmp_path: Path, cipher: Cipher
) -> None:
    folder = tmp_path / "state"
    store = _open(folder / "users.db", cipher)
    folder.write_text("a file where the folder should be")
    errors: list[str] = []

    def register(name: str) -> None:
        try:
            store.register(name, "pw")
        except StoreError as exc:
            errors.append(str(exc))

    run_together(register, [(f"u{i}",) for i in range(6)])
    assert len(errors) == 6 and len(store) == 0
    assert all("cannot write" in e for e in errors)


# --------------------------------------------------------------------------
# Re-hash at the current cost; unknown names at the common cost (defect 15)
# --------------------------------------------------------------------------
OLD, NEW = 4, 10  # log2 n


def test_a_good_login_rehashes_an_old_cost_record_durably(users_file: Path, cipher: Cipher) -> None:
    old = UserStore.open(users_file, KEY, cipher, hash_cost_log2=OLD)
    assert old.register("alice", "pw-a")
    assert old.register("bob", "pw-b")
    created = _open_at(users_file, cipher, NEW)._users["alice"].created
    store = _open_at(users_file, cipher, NEW)
    assert store.hash_params("alice") == (1 << OLD, 8, 1, 32)
    assert store.verify("alice", "pw-a")
    assert store.hash_params("alice") == (1 << NEW, 8, 1, 32)
    # On disk already: a fresh reader of the file sees the new cost.
    again = _open_at(users_file, cipher, NEW)
    assert again.hash_params("alice") == (1 << NEW, 8, 1, 32)
    assert again.hash_params("bob") == (1 << OLD, 8, 1, 32)  # not logged in: untouched
    assert again.verify("alice", "pw-a") and not again.verify("alice", "pw-b")
    assert again._users["alice"].created == created  # the account keeps its age
    assert _mode(users_file) == 0o600


def test_a_wrong_password_rehashes_nothing_and_writes_nothing(
    users_file: Path, cipher: Cipher
) -> None:
    assert UserStore.open(users_file, KEY, cipher, hash_cost_log2=OLD).register("alice", "pw")
    before = users_file.read_bytes()
    store = _open_at(users_file, cipher, NEW)
    assert not store.verify("alice", "wrong")
    assert store.hash_params("alice") == (1 << OLD, 8, 1, 32)
    assert users_file.read_bytes() == before


def test_a_record_at_the_current_cost_is_not_rewritten(users_file: Path, cipher: Cipher) -> None:
    store = _open_at(users_file, cipher, NEW)
    assert store.register("alice", "pw")
    before = users_file.read_bytes()
    assert store.verify("alice", "pw")
    assert users_file.read_bytes() == before


def test_unknown_names_are_hashed_at_the_most_common_stored_cost(
    users_file: Path, cipher: Cipher
) -> None:
    old = UserStore.open(users_file, KEY, cipher, hash_cost_log2=OLD)
    for name in ("a", "b", "c"):
        assert old.register(name, "pw-" + name)
    store = _open_at(users_file, cipher, NEW)
    assert store.unknown_name_params() == (1 << OLD, 8, 1, 32)
    assert store.register("d", "pw-d")  # one record at the new cost: still a minority
    assert store.unknown_name_params() == (1 << OLD, 8, 1, 32)
    assert store.verify("a", "pw-a") and store.verify("b", "pw-b")  # now 3 new, 1 old
    assert store.unknown_name_params() == (1 << NEW, 8, 1, 32)


def test_an_empty_store_hashes_unknown_names_at_the_current_cost(
    users_file: Path, cipher: Cipher
) -> None:
    assert _open_at(users_file, cipher, NEW).unknown_name_params() == (1 << NEW, 8, 1, 32)


def test_after_a_cost_change_unknown_and_known_names_take_the_same_time(
    users_file: Path, cipher: Cipher
) -> None:
    """The issue's measurement: 2 ms against 34 ms told whether a name exists.

    Accounts at a tiny cost, the server's cost raised far above it: before the
    fix an unknown name was hashed at the new cost (tens of ms) while a known
    name with a wrong password took microseconds.
    """
    old = UserStore.open(users_file, KEY, cipher, hash_cost_log2=OLD)
    for i in range(3):
        assert old.register(f"user{i}", "pw")
    store = UserStore.open(users_file, KEY, cipher, hash_cost_log2=15)  # ~50-100 ms a hash

    def best_of(name: str) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            assert not store.verify(name, "wrong password")
            times.append(time.perf_counter() - start)
        return min(times)

    known, unknown = best_of("user1"), best_of("nobody")
    assert unknown < 0.01, (known, unknown)  # hashed at 2**4 like the known names
    assert abs(unknown - known) < 0.005, (known, unknown)


def test_concurrent_logins_registrations_and_rehashes_stay_consistent(
    users_file: Path, cipher: Cipher
) -> None:
    """Several hash threads at once, as the server runs them."""
    old = UserStore.open(users_file, KEY, cipher, hash_cost_log2=OLD)
    for i in range(8):
        assert old.register(f"old{i}", f"pw{i}")
    store = UserStore.open(users_file, KEY, cipher, hash_cost_log2=6)
    start = threading.Barrier(8)
    failures: list[str] = []

    def work(n: int) -> None:
        start.wait()
        for round_ in range(3):
            for i in range(8):  # everyone logs in to every old account: rehash races
                if not store.verify(f"old{i}", f"pw{i}"):
                    failures.append(f"old{i} refused")
                if store.verify(f"old{i}", "wrong"):
                    failures.append(f"old{i} wrong accepted")
            if not store.register(f"new{n}-{round_}", "pw"):
                failures.append(f"new{n}-{round_} not registered")
            if store.verify("nobody", "pw"):
                failures.append("unknown accepted")

    run_together(work, [(n,) for n in range(8)])
    assert failures == []
    again = UserStore.open(users_file, KEY, cipher, hash_cost_log2=6)
    assert len(again) == 8 + 24
    for i in range(8):
        assert again.hash_params(f"old{i}") == (1 << 6, 8, 1, 32)
        assert again.verify(f"old{i}", f"pw{i}")
    assert store._costs == {(1 << 6, 8, 1, 32): 32}


def _open_at(path: Path, cipher: Cipher, cost: int) -> UserStore:
    return UserStore.open(path, KEY, cipher, hash_cost_log2=cost)


# --------------------------------------------------------------------------
# One server per data folder (defect 2)
# --------------------------------------------------------------------------
def test_a_locked_folder_cannot_be_locked_again_until_released(tmp_path: Path) -> None:
    first = FolderLock.acquire(tmp_path)
    with pytest.raises(StoreError) as info:
        FolderLock.acquire(tmp_path)
    assert "\n" not in str(info.value) and "in use by another chat-server" in str(info.value)
    first.release()
    FolderLock.acquire(tmp_path).release()
    assert list(tmp_path.iterdir()) == []  # the lock creates nothing


def test_the_lock_is_seen_by_another_process_and_dies_with_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from chat.server.accounts.users_file import FolderLock; "
            "FolderLock.acquire(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(StoreError):
            FolderLock.acquire(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    FolderLock.acquire(tmp_path).release()


def test_locking_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        FolderLock.acquire(tmp_path / "nope")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "nope").exists()


def test_register_many_creates_the_free_names_in_one_durable_write(
    users_file: Path, cipher: Cipher
) -> None:
    store = _open(users_file, cipher)
    assert store.register("alice", "first")
    added = store.register_many([("alice", "other"), ("bob", "b-pass"), ("carol", "c-pass")])
    assert added == 2
    reopened = _open(users_file, cipher)
    assert reopened.names() == ["alice", "bob", "carol"]
    assert reopened.verify("bob", "b-pass") and reopened.verify("alice", "first")
    assert not reopened.verify("alice", "other")
