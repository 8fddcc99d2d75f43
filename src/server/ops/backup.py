"""`chat-server backup --out FILE` and `chat-server restore --from FILE`.

A backup is one tar file (mode 0600) holding what a server alone keeps:

    chat-backup.json   what it is: when, which version, the files' SHA-256, counts
    history.db         the message store, copied with SQLite's online backup API
    users.db           the users file, as it was after the message store was copied
    server.key         only with --with-key (then the file opens everything: keep it safe)

It is taken while the server runs, without stopping it: SQLite's backup API
copies a consistent snapshot of a live WAL database (the writer goes on; a
copy with `cp` would not be consistent), and the users file is replaced
whole at every write, so reading it gives one version or the next. The
message store is copied first: the users file's id mark (docs/store.md) is
raised before any id is given, so the copy's mark covers every id in the
copy. Everything acknowledged before the backup started is in it (a
registration is on disk before its `auth_ok`, a queued message before its
`sent`). Before the file is put in place it is checked: the users file and
the message store open with the key, and SQLite's quick_check passes.

A restore puts one back on a stopped server (its folder locked meanwhile),
after the same checks, and never deletes: data already there is refused
without --force, moved aside as `*.before-restore` with it. The restored
users file keeps the higher of the two id marks, so ids given after the
backup are not given again. A cluster keeps its data in Redis: back that up
with Redis' own means (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from chat.server.ops.admin import control_folder, owned_by_folder
from chat.server.ops.audit import audit
from chat.server.ops.config import ServerConfig
from chat.server.ops.status import package_version

MANIFEST = "chat-backup.json"
USERS, HISTORY, KEY = "users.db", "history.db", "server.key"
FORMAT = 1
ASIDE = ".before-restore"
#: The biggest member a restore takes (a message store may be large; this is a bound, not
#: a budget).
MAX_MEMBER = 1 << 40


class BackupError(Exception):
    """The backup or the restore cannot be done; one line (nothing was changed)."""


# ---- backup -----------------------------------------------------------------------------------
def backup_main(config: ServerConfig, out: Path, with_key: bool) -> int:
    if config.cluster:
        raise BackupError(
            "a cluster keeps its data in redis: back it up with redis (BGSAVE, or its AOF "
            "files) and keep the key file apart (docs/cluster.md)"
        )
    made = backup(config, out, with_key)
    sys.stdout.write(
        f"backup {out}: {made['accounts']} accounts, {made['messages']} messages stored, "
        f"{'with' if with_key else 'without'} the key file\n"
    )
    return 0


def backup(config: ServerConfig, out: Path, with_key: bool) -> dict[str, Any]:
    """Write the backup to `out` (atomically, 0600); its manifest."""
    from chat.server.accounts.users_file import FolderLock, StoreError

    key, cipher = _key_and_cipher(config)
    folder = config.users_file.parent
    lock = None
    with contextlib.suppress(StoreError):  # held by a running server: it goes on, we read
        lock = FolderLock.acquire(folder)
    out = Path(out)
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".chat-backup-") as tmp:
            work = Path(tmp)
            files: dict[str, Path] = {}
            if config.keep_messages and config.history_file.exists():
                live = lock is None  # a running server's: read-only, its files untouched
                files[HISTORY] = _copy_store(config.history_file, work / HISTORY, live)
            try:
                users = config.users_file.read_bytes()  # after the store: see the docstring
            except FileNotFoundError:
                raise BackupError(
                    f"no users file {config.users_file}: nothing to back up"
                ) from None
            except OSError as exc:
                raise BackupError(f"users file {config.users_file}: {exc.strerror}") from None
            files[USERS] = _write_private(work / USERS, users)
            if with_key:
                files[KEY] = _write_private(work / KEY, key)
            manifest = _check(files, key, cipher)
            manifest["with_key"] = with_key
            _write_tar(out, files, manifest)
    except OSError as exc:
        raise BackupError(f"backup {out}: {exc.strerror or exc}") from None
    finally:
        if lock is not None:
            owned_by_folder(folder, config.history_file)
            lock.release()
    audit("backup", out=out, with_key=with_key, by=_by())
    return manifest


def _copy_store(source: Path, target: Path, live: bool) -> Path:
    """A consistent copy of a live SQLite database (the online backup API, all in one step:
    one read transaction, which never holds the server's writer). A stopped server's is
    opened read-write (under its lock) so that closing it leaves no -wal behind."""
    try:
        mode = "?mode=ro" if live else ""
        src = sqlite3.connect(f"file:{quote(str(source))}{mode}", uri=True, timeout=10)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
        os.chmod(target, 0o600)
    except sqlite3.Error as exc:
        raise BackupError(f"history file {source}: cannot copy ({exc})") from None
    return target


def _check(files: dict[str, Path], key: bytes, cipher: Any) -> dict[str, Any]:
    """The copies open with the key and are whole; the manifest describing them."""
    from chat.server.accounts.users_file import StoreError, UserStore
    from chat.server.store.sqlite import MessageStore, MessageStoreError

    try:
        users = UserStore.open(files[USERS], key, cipher)
    except StoreError as exc:
        raise BackupError(f"the users file does not check: {exc}") from None
    messages = 0
    if HISTORY in files:
        try:
            MessageStore.check(files[HISTORY], key, cipher)
        except MessageStoreError as exc:
            raise BackupError(f"the message store does not check: {exc}") from None
        con = sqlite3.connect(files[HISTORY])
        try:
            verdict = con.execute("PRAGMA quick_check").fetchone()[0]
            (messages,) = con.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()
        finally:
            con.close()
        if verdict != "ok":
            raise BackupError(f"the copy of the message store is damaged: {verdict}")
    return {
        "format": FORMAT,
        "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "version": package_version(),
        "cipher": cipher.name,
        "accounts": len(users),
        "messages": int(messages),
        "files": {name: _sha256(path) for name, path in files.items()},
    }


def _write_tar(out: Path, files: dict[str, Path], manifest: dict[str, Any]) -> None:
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
            data = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for name, path in files.items():
                info = tar.gettarinfo(str(path), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with path.open("rb") as f:
                    tar.addfile(info, f)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(out.parent)


# ---- restore ----------------------------------------------------------------------------------
def restore_main(config: ServerConfig, source: Path, force: bool) -> int:
    if config.cluster:
        raise BackupError("a cluster keeps its data in redis: restore it with redis' own means")
    done = restore(config, source, force)
    sys.stdout.write(
        f"restored {source} into {config.users_file.parent}: {done['accounts']} accounts, "
        f"{done['messages']} messages stored\n"
    )
    return 0


def restore(config: ServerConfig, source: Path, force: bool) -> dict[str, Any]:
    from chat.server.accounts.users_file import FolderLock, StoreError
    from chat.server.crypto.keyfile import fsync_dir
    from chat.server.ops.control import ControlError, request

    folder = config.users_file.parent
    with contextlib.suppress(ControlError):
        if request(control_folder(config), {"cmd": "status"}, timeout=5) is not None:
            raise BackupError(f"a chat-server is running on {folder}: stop it first")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        lock = FolderLock.acquire(folder)
    except StoreError as exc:
        raise BackupError(str(exc)) from None
    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".chat-restore-") as tmp:
            work = Path(tmp)
            manifest, files = _read_tar(Path(source), work)
            key = _restore_key(config, files, force)
            cipher = _cipher(config)
            _check(files, key, cipher)  # before anything in the folder changes
            targets = {USERS: config.users_file, HISTORY: config.history_file}
            present = [p for p in targets.values() if p.exists()]
            if present and not force:
                names = ", ".join(p.name for p in present)
                raise BackupError(
                    f"{folder} already holds {names}: --force moves them aside "
                    f"(*{ASIDE}) and restores"
                )
            _keep_id_mark(config.users_file, files[USERS], key, cipher)
            for path in [*present, *_sidecars(config.history_file)]:
                os.replace(path, path.with_name(path.name + ASIDE))
            if KEY in files and not _same_bytes(config.key_file, files[KEY]):
                if config.key_file.exists():
                    os.replace(config.key_file, config.key_file.with_name(KEY + ASIDE))
                os.replace(files[KEY], config.key_file)
            if HISTORY in files:  # first, as the backup was made
                os.replace(files[HISTORY], config.history_file)
            os.replace(files[USERS], config.users_file)
            fsync_dir(folder)
            owned_by_folder(folder, config.users_file, config.history_file, config.key_file)
    except OSError as exc:
        raise BackupError(f"restore into {folder}: {exc.strerror or exc}") from None
    finally:
        lock.release()
    audit("restore", source=source, into=folder, by=_by())
    return manifest


def _read_tar(source: Path, work: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The manifest and the files, checked against it; nothing but the known members."""
    try:
        tar = tarfile.open(source, mode="r:")  # noqa: SIM115  # closed by the `with` below
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{source}: not a backup ({exc})") from None
    files: dict[str, Path] = {}
    manifest: dict[str, Any] | None = None
    with tar:
        for member in tar:
            name = member.name
            if name not in (MANIFEST, USERS, HISTORY, KEY) or not member.isfile():
                raise BackupError(f"{source}: not a backup (unexpected member {name!r})")
            if member.size > MAX_MEMBER or name in files:
                raise BackupError(f"{source}: not a backup (member {name!r})")
            data = tar.extractfile(member)
            assert data is not None
            if name == MANIFEST:
                try:
                    manifest = json.loads(data.read(1 << 20))
                except ValueError:
                    raise BackupError(f"{source}: its manifest does not decode") from None
                continue
            path = work / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                while chunk := data.read(1 << 20):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            files[name] = path
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{source}: not a backup of this format (no {MANIFEST} of format 1)")
    expected = manifest.get("files", {})
    if set(expected) != set(files) or USERS not in files:
        raise BackupError(f"{source}: its files do not match its manifest")
    for name, path in files.items():
        if _sha256(path) != expected[name]:
            raise BackupError(f"{source}: {name} does not match its checksum (damaged copy)")
    return manifest, files


def _restore_key(config: ServerConfig, files: dict[str, Path], force: bool) -> bytes:
    from chat.server.crypto.keyfile import KeyFileError, read_key

    if KEY in files:
        key = files[KEY].read_bytes()
        if config.key_file.exists() and not _same_bytes(config.key_file, files[KEY]) and not force:
            raise BackupError(
                f"{config.key_file} is another key than the backup's: --force puts the "
                f"backup's in its place (the other one kept as {KEY}{ASIDE})"
            )
        return key
    try:
        key = read_key(config.key_file)
    except KeyFileError as exc:
        raise BackupError(str(exc)) from None
    if key is None:
        raise BackupError(
            f"the backup holds no key and there is no {config.key_file}: put back the key "
            "file it was made with first (or use a backup made --with-key)"
        )
    return key


def _keep_id_mark(current: Path, restored: Path, key: bytes, cipher: Any) -> None:
    """The restored users file gets the current one's id mark when that is higher: ids
    given after the backup are never given again (docs/store.md, "Id mark")."""
    from chat.server.accounts.users_file import StoreError, UserStore

    if not current.exists():
        return
    try:
        mark = UserStore.open(current, key, cipher).id_mark
    except StoreError:
        return  # another key or damaged: nothing to learn from it
    if mark:
        UserStore.open(restored, key, cipher).raise_id_mark(mark)


def _sidecars(history: Path) -> list[Path]:
    """The -wal and -shm of the message store being replaced: never kept next to another
    file (SQLite would apply them to it)."""
    return [p for p in (Path(f"{history}-wal"), Path(f"{history}-shm")) if p.exists()]


# ---- parts ------------------------------------------------------------------------------------
def _key_and_cipher(config: ServerConfig) -> tuple[bytes, Any]:
    from chat.server.crypto.keyfile import KeyFileError, read_key

    try:
        key = read_key(config.key_file)
    except KeyFileError as exc:
        raise BackupError(str(exc)) from None
    if key is None:
        raise BackupError(f"no key file {config.key_file}: nothing could be checked or read")
    return key, _cipher(config)


def _cipher(config: ServerConfig) -> Any:
    from chat.server.crypto.cipher import CipherLoadError, load_cipher

    try:
        return load_cipher(str(config.cipher_lib) if config.cipher_lib else None)
    except CipherLoadError as exc:
        raise BackupError(str(exc)) from None


def _write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _by() -> str:
    return f"files:uid={os.geteuid()},pid={os.getpid()}"
