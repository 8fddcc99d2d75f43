"""The encrypted user store: one file, rewritten whole and atomically.

Layout (docs/store.md has the reasoning):

    magic "CHATUSR1" | version u8 | name_len u8 | cipher name | nonce (16)
    | ciphertext | HMAC-SHA256(mac_key, everything before)

The MAC is checked before anything is decrypted or parsed, so a wrong key or
a damaged file is reported as such and never read as garbage.

Each account also has a *token nonce*, 16 random bytes that go into the MAC of
its login tokens (accounts/tokens.py): replacing it (a new password, an unban)
kills every token issued before. A record written before tokens has none; its
nonce is derived from its salt until the file is next written, which stores it.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from chat.server.accounts import invites as codes
from chat.server.accounts.invites import Invite
from chat.server.crypto.cipher import Cipher, CipherError
from chat.server.crypto.keyfile import fsync_dir, write_private_temp
from chat.server.crypto.sealing import MAC_BYTES, NONCE_BYTES, Sealer

log = logging.getLogger(__name__)

MAGIC = b"CHATUSR1"
FORMAT_VERSION = 1
SALT_BYTES = 16
HASH_BYTES = 32
DEFAULT_COST_LOG2 = 14
MIN_COST_LOG2 = 1
MAX_COST_LOG2 = 20
SCRYPT_R = 8
SCRYPT_P = 1
TOKEN_NONCE_BYTES = 16
_NONCE_FROM_SALT = b"chat token nonce v1"
_HKDF_SALT = b"chat-users-file-v1"
_STREAM = b"chat-users-stream-v1"


class StoreError(Exception):
    """The users file cannot be read, verified or written; one line."""


class StoreAway(StoreError):
    """The store is known to be away (a cluster's Redis), so nothing was asked: the outage
    was said once where it was learned (cluster/link.py), and a caller that answers at once
    need not say it again for every login of the outage."""


@dataclass(frozen=True, slots=True)
class Record:
    """One account. Only the scrypt output is kept, never the password."""

    name: str
    salt: bytes
    hash: bytes
    n: int
    r: int
    p: int
    dklen: int
    created: float
    #: The token nonce as stored; empty in a record written before tokens (see `nonce`).
    token_nonce: bytes = b""

    @property
    def params(self) -> Params:
        return (self.n, self.r, self.p, self.dklen)

    @property
    def nonce(self) -> bytes:
        """What the account's tokens are bound to (accounts/tokens.py). A record from before
        tokens gets one derived from its salt (secret like it: the salt is only ever in the
        sealed file or the sealed Redis record), so it stays the same until the record is
        next written, which stores it."""
        if self.token_nonce:
            return self.token_nonce
        return hashlib.sha256(_NONCE_FROM_SALT + self.salt).digest()[:TOKEN_NONCE_BYTES]

    def with_new_nonce(self) -> Record:
        """The same account whose every token issued so far stops working (an unban)."""
        return replace(self, token_nonce=secrets.token_bytes(TOKEN_NONCE_BYTES))


#: scrypt parameters of a record: (n, r, p, dklen).
Params = tuple[int, int, int, int]


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # surrogatepass: a JSON string may carry lone surrogates; they must hash, not crash.
    secret = password.encode("utf-8", "surrogatepass")
    maxmem = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def new_record(
    name: str, password: str, n: int, created: float | None = None, nonce: bytes | None = None
) -> Record:
    """A salted scrypt record of `password` at cost `n` (slow: run off the chat path), with
    a fresh token nonce unless `nonce` keeps the old one (a re-hash is not a new password)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    when = time.time() if created is None else created
    token_nonce = secrets.token_bytes(TOKEN_NONCE_BYTES) if nonce is None else nonce
    return Record(name, salt, digest, n, SCRYPT_R, SCRYPT_P, HASH_BYTES, when, token_nonce)


def folded(name: str) -> str:
    """A name as `--refuse-case-variants` compares it: names are ASCII, so lower case."""
    return name.lower()


def matches(record: Record, password: str) -> bool:
    """Whether `password` is the record's, in constant time once hashed."""
    digest = _scrypt(password, record.salt, record.n, record.r, record.p, record.dklen)
    return hmac.compare_digest(digest, record.hash)


def record_to_json(record: Record) -> bytes:
    return _encode_records([record])


def record_from_json(data: bytes, where: str) -> Record:
    """One record back (StoreError when it does not decode)."""
    records = _decode_records(data, where)
    if len(records) != 1:
        raise StoreError(f"{where}: not one account")
    return next(iter(records.values()))


class _Codec:
    """File format: header, the store's sealing (`sealing.Sealer`), MAC over the whole file."""

    def __init__(self, path: Path, key: bytes, cipher: Cipher) -> None:
        self.path = path
        self.cipher = cipher
        self._sealer = Sealer(key, cipher, salt=_HKDF_SALT, stream=_STREAM)

    def _header(self, cipher_name: bytes, nonce: bytes) -> bytes:
        return MAGIC + bytes([FORMAT_VERSION, len(cipher_name)]) + cipher_name + nonce

    def seal(self, plaintext: bytes) -> bytes:
        nonce = Sealer.new_nonce()
        header = self._header(self.cipher.name.encode("ascii"), nonce)
        try:
            body = self._sealer.encrypt(plaintext, nonce)
        except CipherError as exc:
            raise StoreError(f"users file {self.path}: {exc}") from None
        sealed = header + body
        return sealed + self._sealer.tag(sealed)

    def open(self, blob: bytes) -> bytes:
        where = f"users file {self.path}"
        fixed = len(MAGIC) + 2
        if len(blob) < fixed or not blob.startswith(MAGIC):
            raise StoreError(f"{where}: not a users file (bad magic or truncated)")
        if blob[len(MAGIC)] != FORMAT_VERSION:
            raise StoreError(f"{where}: unsupported format version {blob[len(MAGIC)]}")
        name_len = blob[len(MAGIC) + 1]
        body_at = fixed + name_len + NONCE_BYTES
        if len(blob) < body_at + MAC_BYTES:
            raise StoreError(f"{where}: truncated file")
        sealed, tag = blob[:-MAC_BYTES], blob[-MAC_BYTES:]
        if not self._sealer.verify(sealed, tag):
            raise StoreError(f"{where}: wrong key or damaged file (integrity check failed)")
        stored_name = blob[fixed : fixed + name_len].decode("ascii", "replace")
        if stored_name != self.cipher.name:
            raise StoreError(
                f"{where}: written with cipher {stored_name!r} but the loaded cipher "
                f"is {self.cipher.name!r} (use --cipher-lib with the matching plugin)"
            )
        nonce = blob[fixed + name_len : body_at]
        try:
            return self._sealer.decrypt(sealed[body_at:], nonce)
        except CipherError as exc:
            raise StoreError(f"{where}: {exc}") from None


def _encode_records(
    records: Iterable[Record],
    id_mark: int | None = None,
    banned: Iterable[str] = (),
    invites: dict[str, Invite] | None = None,
) -> bytes:
    records = list(records)
    rows = [
        [rec.name, rec.salt.hex(), rec.hash.hex(), rec.n, rec.r, rec.p, rec.dklen, rec.created]
        for rec in records
    ]
    doc: dict[str, object] = {"format": FORMAT_VERSION, "users": rows}
    # Keys older servers do not know are ignored by them: the format stays 1. The token
    # nonces are a map of their own for that reason (a fifth column would not be ignored);
    # a derived one is written too, so from the first write on every record has its own.
    doc["nonces"] = {rec.name: rec.nonce.hex() for rec in records}
    if id_mark is not None:
        doc["ids"] = id_mark
    if banned:
        doc["banned"] = sorted(banned)
    if invites:
        doc["invites"] = [[h, i.uses, i.expires] for h, i in sorted(invites.items())]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


def _decode_records(plaintext: bytes, where: str) -> dict[str, Record]:
    return _decode_file(plaintext, where).users


@dataclass(slots=True)
class _Contents:
    """A users file's plaintext, decoded."""

    users: dict[str, Record]
    id_mark: int | None  # None in a file written before marks
    banned: set[str]
    invites: dict[str, Invite]  # digest -> uses left, expiry


def _decode_file(plaintext: bytes, where: str) -> _Contents:
    try:
        doc = json.loads(plaintext.decode("utf-8", "surrogatepass"))
        id_mark = doc.get("ids")
        if id_mark is not None and not (type(id_mark) is int and id_mark > 0):
            raise ValueError("bad id mark")
        users: dict[str, Record] = {}
        nonces = doc.get("nonces", {})
        if not isinstance(nonces, dict):
            raise ValueError("bad token nonces")
        for name, salt, digest, n, r, p, dklen, created in doc["users"]:
            if not isinstance(name, str) or name in users:
                raise ValueError("bad or duplicate name")
            if not all(type(v) is int and v > 0 for v in (n, r, p, dklen)):
                raise ValueError("bad hash parameters")
            nonce = bytes.fromhex(nonces.get(name, ""))
            if len(nonce) not in (0, TOKEN_NONCE_BYTES):
                raise ValueError("bad token nonce")
            users[name] = Record(
                name,
                bytes.fromhex(salt),
                bytes.fromhex(digest),
                n,
                r,
                p,
                dklen,
                float(created),
                nonce,
            )
        banned = {name for name in doc.get("banned", ()) if name in users}
        invites: dict[str, Invite] = {}
        for handle, uses, expires in doc.get("invites", ()):
            if not (isinstance(handle, str) and type(uses) is int and uses > 0):
                raise ValueError("bad invite")
            invites[handle] = Invite(uses, None if expires is None else float(expires))
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{where}: undecodable content ({exc.__class__.__name__})") from None
    return _Contents(users, id_mark, banned, invites)


#: Takes back a change made in memory whose write failed.
_Undo = Callable[[], object]


def _nothing() -> None:
    pass


#: A change that was already so: nothing to write.
_NOTHING: _Undo = _nothing


class UserStore:
    """Accounts in memory, persisted durably before any registration is confirmed."""

    def __init__(
        self,
        path: Path,
        key: bytes,
        cipher: Cipher,
        hash_cost_log2: int = DEFAULT_COST_LOG2,
        users: dict[str, Record] | None = None,
        id_mark: int | None = None,
        refuse_case_variants: bool = False,
    ) -> None:
        if not MIN_COST_LOG2 <= hash_cost_log2 <= MAX_COST_LOG2:
            raise ValueError(
                f"hash cost must be {MIN_COST_LOG2}..{MAX_COST_LOG2}, got {hash_cost_log2}"
            )
        self.path = Path(path)
        self._codec = _Codec(self.path, key, cipher)
        self._n = 1 << hash_cost_log2
        self._users: dict[str, Record] = dict(users or {})
        # _users, _folded, _pending, _version, _durable, _costs, _dummies, _id_mark, _disk_mark
        self._lock = threading.Lock()
        #: `--refuse-case-variants`: a new name equal to an existing one ignoring case is
        #: taken. Counted (a file from before the option may hold `Bob` and `bob`).
        self.refuse_case_variants = refuse_case_variants
        self._folded: Counter[str] = Counter(folded(name) for name in self._users)
        self._write_lock = threading.Lock()  # one writer of the file at a time
        self._pending: set[str] = set()  # registered, not on disk yet: cannot log in
        self._version = 0  # bumped by every registration
        self._last_error = f"users file {self.path}: cannot write"
        self._durable = 0  # the newest version the file holds
        # Message ids: none at or above this was given out (docs/store.md, "Id mark").
        self._id_mark = id_mark
        self._disk_mark = id_mark  # the mark the file holds
        self._banned: set[str] = set()  # accounts that may not log in (`user ban`)
        self._invites: dict[str, Invite] = {}  # invite digest -> uses left, expiry
        # How many records use each scrypt parameter set: an unknown name is hashed
        # with the most common one, so it costs what a typical known name costs.
        self._costs: Counter[Params] = Counter(rec.params for rec in self._users.values())
        self._dummies: dict[Params, Record] = {}
        self._ensure_dummy()

    @classmethod
    def open(
        cls,
        path: Path,
        key: bytes,
        cipher: Cipher,
        hash_cost_log2: int = DEFAULT_COST_LOG2,
        refuse_case_variants: bool = False,
    ) -> UserStore:
        """Read and verify path if it exists; a missing file is an empty store."""
        path = Path(path)
        codec = _Codec(path, key, cipher)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return cls(path, key, cipher, hash_cost_log2, refuse_case_variants=refuse_case_variants)
        except OSError as exc:
            raise StoreError(f"users file {path}: cannot read ({exc.strerror})") from None
        contents = _decode_file(codec.open(blob), f"users file {path}")
        _warn_if_not_private(path)
        _remove_stale_temps(path)
        store = cls(
            path,
            key,
            cipher,
            hash_cost_log2,
            contents.users,
            contents.id_mark,
            refuse_case_variants=refuse_case_variants,
        )
        store._banned = contents.banned
        store._invites = contents.invites
        return store

    def __len__(self) -> int:
        with self._lock:
            return len(self._users)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._users

    def confirm(self, names: Sequence[str]) -> frozenset[str]:
        """The memory is the file: this process is its only writer."""
        with self._lock:
            return frozenset(n for n in names if n in self._users)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._users)

    def list_names(self) -> list[str]:
        """The operator's `user list`: the file's accounts are all in memory."""
        return self.names()

    def register(self, name: str, password: str) -> bool:
        """True once the account is on disk for good; False if the name is taken (or, with
        `refuse_case_variants`, a name equal to it ignoring case is).

        Registrations that arrive while the file is being written are written
        together by the next write (group commit); each call still returns
        only once a write that holds its own record has finished.
        """
        with self._lock:
            if self._taken(name):
                return False
        record = self._new_record(name, password)  # slow: outside the lock
        with self._lock:
            if self._taken(name):
                return False
            self._add(record)
            self._pending.add(name)
            self._version += 1
            version = self._version
        self._make_durable(name, record, version)
        self._ensure_dummy()
        return True

    def register_many(self, accounts: Iterable[tuple[str, str]]) -> int:
        """Create every account whose name is free, with one durable write; how many.

        For imports and benchmarks: `register` writes the whole file per call,
        which makes thousands of them slow by design (each is durable on its own).
        """
        fresh = [self._new_record(name, pw) for name, pw in accounts if name not in self]
        added = 0
        with self._lock:
            for record in fresh:
                if not self._taken(record.name):
                    self._add(record)
                    self._pending.add(record.name)
                    added += 1
            self._version += 1
        if added:
            self.save()
            self._ensure_dummy()
        return added

    def verify(self, name: str, password: str) -> bool:
        """True for a good password. Safe from any number of threads at once.

        An unknown name (or one not on disk yet) is hashed against a dummy
        record with the parameters most accounts have, so the time taken does
        not tell whether the name exists. A good password for a record hashed
        with other parameters than the current `--hash-cost` re-hashes it at
        the current cost and writes the store (durably) before returning.
        """
        with self._lock:
            record = None if name in self._pending else self._users.get(name)
            dummy = self._dummies.get(self._common_params()) if record is None else None
        if record is None:
            target = dummy or self._ensure_dummy()
            digest = _scrypt(password, target.salt, target.n, target.r, target.p, target.dklen)
            hmac.compare_digest(digest, target.hash)
            return False
        digest = _scrypt(password, record.salt, record.n, record.r, record.p, record.dklen)
        if not hmac.compare_digest(digest, record.hash):
            return False
        if record.params != self._current_params():
            self._rehash(record, password)
        return True

    def token_nonce(self, name: str) -> bytes | None:
        """What `name`'s tokens are bound to (None: no such account, or not on disk yet)."""
        with self._lock:
            record = None if name in self._pending else self._users.get(name)
            return record.nonce if record is not None else None

    def hash_params(self, name: str) -> Params | None:
        """(n, r, p, dklen) of an account's stored hash, None for an unknown name."""
        with self._lock:
            record = self._users.get(name)
            return record.params if record is not None else None

    def unknown_name_params(self) -> Params:
        """(n, r, p, dklen) an unknown name is hashed with: the most common stored ones."""
        with self._lock:
            return self._common_params()

    def save(self) -> None:
        with self._write_lock:
            self._write_snapshot()

    # ---- the operator's commands (ops/commands.py): each durable before it returns -------
    def set_password(self, name: str, password: str) -> bool:
        """A new password for `name` (False: no such account); the account keeps its age."""
        with self._lock:
            old = self._users.get(name)
        if old is None:
            return False
        new = self._new_record(name, password, old.created)  # slow: outside the locks

        def change() -> _Undo | None:
            current = self._users.get(name)
            if current is None:
                return None
            self._users[name] = new
            self._uncount(current)
            self._costs[new.params] += 1

            def undo() -> None:
                if self._users.get(name) is new:
                    self._users[name] = current
                    self._uncount(new)
                    self._costs[current.params] += 1

            return undo

        done = self._change(change)
        self._ensure_dummy()
        return done

    def delete(self, name: str) -> bool:
        """Remove the account (False: there was none); the name may be registered again."""

        def change() -> _Undo | None:
            record = self._users.pop(name, None)
            if record is None:
                return None
            was_banned = name in self._banned
            self._banned.discard(name)
            self._uncount(record)
            self._folded[folded(name)] -= 1
            if self._folded[folded(name)] <= 0:
                del self._folded[folded(name)]

            def undo() -> None:
                if name not in self._users:
                    self._add(record)
                    if was_banned:
                        self._banned.add(name)

            return undo

        done = self._change(change)
        self._ensure_dummy()
        return done

    def ban(self, name: str) -> bool:
        """`name` may no longer log in (False: no such account). Its password is kept."""
        return self._change(lambda: self._set_banned(name, True))

    def unban(self, name: str) -> bool:
        """`name` may log in again (False: no such account). Its token nonce is replaced in
        the same write, so no token issued before the ban works after it."""

        def change() -> _Undo | None:
            record = self._users.get(name)
            undo = self._set_banned(name, False)
            if record is None or undo is None or undo is _NOTHING:
                return undo
            self._users[name] = record.with_new_nonce()

            def undo_both() -> None:
                undo()
                self._users[name] = record

            return undo_both

        return self._change(change)

    def banned(self, name: str) -> bool:
        with self._lock:
            return name in self._banned

    def create_invite(self, uses: int, expires: float | None) -> str:
        """A new invite code, on disk before it is handed out."""
        code = codes.new_code()
        handle = codes.digest(code)

        def change() -> _Undo:
            self._invites[handle] = Invite(uses, expires)
            return lambda: self._invites.pop(handle, None)

        self._change(change)
        return code

    def take_invite(self, code: str) -> Invite | None:
        """One use of `code` for a registration about to be made (None: not a valid code).
        In memory: the registration's own write stores it; `return_invite` if it fails."""
        if not codes.well_formed(code):
            return None
        handle, now = codes.digest(code), time.time()
        with self._lock:
            invite = self._invites.get(handle)
            if invite is None or not invite.valid(now):
                return None
            if invite.uses > 1:
                self._invites[handle] = Invite(invite.uses - 1, invite.expires)
            else:
                del self._invites[handle]
            return invite

    def return_invite(self, code: str, taken: Invite) -> None:
        """The registration that took a use of `code` did not happen: the use is back."""
        handle = codes.digest(code)
        with self._lock:
            now = self._invites.get(handle)
            uses = (now.uses if now is not None else 0) + 1
            self._invites[handle] = Invite(uses, taken.expires)

    def _set_banned(self, name: str, banned: bool) -> _Undo | None:
        """`_lock` is held."""
        if name not in self._users:
            return None
        if (name in self._banned) == banned:
            return _NOTHING
        (self._banned.add if banned else self._banned.discard)(name)
        return lambda: (self._banned.discard if banned else self._banned.add)(name)

    def _change(self, change: Callable[[], _Undo | None]) -> bool:
        """Make `change` (run under the lock; None: nothing to change it on) durable before
        returning True; undone, and StoreError raised, when the file cannot be written."""
        with self._write_lock:
            with self._lock:
                undo = change()
                if undo is None:
                    return False
                if undo is _NOTHING:
                    return True
                self._version += 1
            try:
                self._write_snapshot()
            except StoreError:
                with self._lock:
                    undo()
                raise
        return True

    @property
    def id_mark(self) -> int | None:
        """No message id at or above this was given out (None: no mark was ever kept).

        A copy of the message store's reserved id ceiling, so that ids never go
        back even when the message store itself is lost or restored from an
        older backup (protocol v1.1 section 2).
        """
        with self._lock:
            return self._id_mark

    def raise_id_mark(self, ceiling: int) -> None:
        """Ids below `ceiling` are about to be given out: on disk first, if the file exists.

        Called once per reserved block of ids (2**20) and at start, so it costs
        one durable write per million messages. A store with no file yet has
        no account, so no message was sent; its first write carries the mark.
        Raises StoreError when the write fails.
        """
        with self._lock:
            self._id_mark = max(self._id_mark or 0, ceiling)
        with self._write_lock:
            with self._lock:
                if (self._disk_mark or 0) >= ceiling:
                    return
            if self.path.exists():
                self._write_snapshot()

    def _make_durable(self, name: str, record: Record, version: int) -> None:
        with self._write_lock:
            with self._lock:
                if self._users.get(name) is not record:  # a failed write took it back
                    raise StoreError(self._last_error)
                if self._durable >= version:
                    return  # the write that just finished held our record
            self._write_snapshot()

    def _write_snapshot(self) -> None:
        """Write every account now in memory; `_write_lock` is held.

        On failure every registration in this snapshot that was not on disk
        yet is taken back, so no caller is told "registered" for an account
        the file does not hold.
        """
        with self._lock:
            records = list(self._users.values())
            version, pending = self._version, set(self._pending)
        try:
            self._persist(records)
        except StoreError as exc:
            with self._lock:
                self._last_error = str(exc)
                for gone in pending:
                    record = self._users.pop(gone, None)
                    if record is not None:
                        self._uncount(record)
                        self._folded[folded(gone)] -= 1
                        if self._folded[folded(gone)] <= 0:
                            del self._folded[folded(gone)]
                self._pending -= pending
            raise
        with self._lock:
            self._durable = max(self._durable, version)
            self._pending -= pending

    def _new_record(self, name: str, password: str, created: float | None = None) -> Record:
        return new_record(name, password, self._n, created)

    def _rehash(self, old: Record, password: str) -> None:
        """Replace a good login's record by one at the current cost, on disk before return.

        If the file cannot be written, the new record stays in memory (it checks
        the same password) and goes to disk with the next write; the login is
        not refused for it.
        """
        new = new_record(old.name, password, self._n, old.created, old.nonce)  # same tokens
        with self._lock:
            if self._users.get(old.name) is not old:
                return  # another thread re-hashed it first (or a new password came)
            self._users[old.name] = new
            self._uncount(old)
            self._costs[new.params] += 1
            self._version += 1
            version = self._version
        try:
            with self._write_lock:
                with self._lock:
                    if self._durable >= version:
                        return
                self._write_snapshot()
        except StoreError as exc:
            log.warning("re-hash of one account not saved yet: %s", exc)
        else:
            log.info("re-hashed account %s at the current cost (n=%d)", old.name, new.n)
        finally:
            self._ensure_dummy()

    def _taken(self, name: str) -> bool:
        """`_lock` is held."""
        return name in self._users or (self.refuse_case_variants and self._folded[folded(name)] > 0)

    def _add(self, record: Record) -> None:
        """A new account in memory; `_lock` is held."""
        self._users[record.name] = record
        self._folded[folded(record.name)] += 1
        self._costs[record.params] += 1

    def _current_params(self) -> Params:
        return (self._n, SCRYPT_R, SCRYPT_P, HASH_BYTES)

    def _common_params(self) -> Params:
        """Most common stored parameters (ties: the dearest); `_lock` is held."""
        if not self._costs:
            return self._current_params()
        return max(self._costs.items(), key=lambda item: (item[1], item[0]))[0]

    def _uncount(self, record: Record) -> None:
        """`_lock` is held."""
        self._costs[record.params] -= 1
        if self._costs[record.params] <= 0:
            del self._costs[record.params]

    def _ensure_dummy(self) -> Record:
        """The dummy record for the current common parameters, made (one scrypt) if missing.

        Called after every change of the counts, so that the first unknown name
        after a change costs one hash like every other, not two.
        """
        with self._lock:
            params = self._common_params()
            dummy = self._dummies.get(params)
        if dummy is not None:
            return dummy
        n, r, p, dklen = params
        salt = secrets.token_bytes(SALT_BYTES)
        digest = _scrypt(secrets.token_urlsafe(16), salt, n, r, p, dklen)
        dummy = Record("", salt, digest, n, r, p, dklen, 0.0)
        with self._lock:
            return self._dummies.setdefault(params, dummy)

    def _persist(self, records: list[Record]) -> None:
        """Write the file (`_write_lock` is held), with the id mark as it is now."""
        with self._lock:
            id_mark = self._id_mark
            banned, invites = set(self._banned), dict(self._invites)
        blob = self._codec.seal(_encode_records(records, id_mark, banned, invites))
        try:
            _write_atomic(self.path, blob)
        except OSError as exc:
            raise StoreError(
                f"users file {self.path}: cannot write ({exc.strerror or exc})"
            ) from None
        with self._lock:
            self._disk_mark = id_mark


class FolderLock:
    """An exclusive flock on a folder itself, held for the life of the process.

    Two servers on one users file would each rewrite the whole file and lose
    the other's accounts; the second one must not start. Locking an fd of the
    folder (not a lock file) creates nothing, so a start that fails leaves the
    folder as it was. The file is replaced by rename at every write, so a lock
    on the file itself would not hold. The lock goes away with the process,
    SIGKILL included.
    """

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: Path) -> FolderLock:
        """Lock `folder` (which must exist) or raise StoreError with one line."""
        folder = Path(folder)
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreError(f"data folder {folder}: cannot open ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"data folder {folder} is in use by another chat-server "
                "(one server per users file); stop it or choose another --data-dir"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"data folder {folder}: cannot lock ({exc.strerror})") from None
        return cls(folder, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last fd of the description unlocks
            self._fd = None


def _write_atomic(path: Path, data: bytes) -> None:
    """Private temp in the same folder, fsync, rename over, fsync the folder."""
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True)
        fsync_dir(path.parent.parent)
    tmp = write_private_temp(path.parent, path.name, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _warn_if_not_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("users file %s has mode %o; it becomes 0600 at the next write", path, mode)


def _remove_stale_temps(path: Path) -> None:
    """A writer killed mid-write leaves its private temp file behind."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
