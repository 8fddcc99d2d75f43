"""The server key file: raw secret bytes, created once with mode 0600.

The key is never derived from a password, so it carries no structure: any
byte values are accepted, only the length is checked. A new key is written to
a private temp file and hard-linked into place, so a crash never leaves a
short key file behind and a concurrent creator never gets its key replaced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

MIN_KEY_BYTES = 16
NEW_KEY_BYTES = 32
_PRIVATE = 0o600


class KeyFileError(Exception):
    """The key file cannot be read or created; the message is one line."""


def load_or_create_key(path: Path) -> tuple[bytes, bool]:
    """Return (key, created): read the key file, or create it if missing."""
    path = Path(path)
    try:
        return _read_key(path), False
    except FileNotFoundError:
        pass
    try:
        return _create_key(path), True
    except FileExistsError:
        # Another process created it between our read and our create.
        return _read_key(path), False


def read_key(path: Path) -> bytes | None:
    """The key if the file exists, None if it does not; KeyFileError if unusable.

    Creates nothing: the server reads the key before its start-up checks and
    creates a missing one only once they have passed.
    """
    try:
        return _read_key(Path(path))
    except FileNotFoundError:
        return None


def loose_mode(path: Path) -> int | None:
    """The file's mode when group or others may read or write it, else None."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def _read_key(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            key = handle.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(f"key file {path}: cannot read ({_reason(exc)})") from None
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(
            f"key file {path}: too short ({len(key)} bytes, at least {MIN_KEY_BYTES} needed)"
        )
    return key


def _create_key(path: Path) -> bytes:
    key = secrets.token_bytes(NEW_KEY_BYTES)
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = write_private_temp(folder, path.name, key)
        try:
            _link_into_place(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        fsync_dir(folder)
    except FileExistsError:
        raise
    except OSError as exc:
        raise KeyFileError(f"key file {path}: cannot create ({_reason(exc)})") from None
    return key


def write_private_temp(folder: Path, name: str, data: bytes) -> Path:
    """O_EXCL with mode 0600 from the first instant: never a readable moment."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, _PRIVATE)
            break
        except FileExistsError:
            continue
    try:
        os.fchmod(fd, _PRIVATE)  # a restrictive umask must not leave it 0400
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink()
        raise
    os.close(fd)
    return tmp


def _link_into_place(tmp: Path, path: Path) -> None:
    """link() fails if path exists (no clobber); rename only where links are unsupported."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.rename(tmp, path)


def fsync_dir(folder: Path) -> None:
    """Make a rename or link in folder durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__
