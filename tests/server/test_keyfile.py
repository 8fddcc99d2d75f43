"""The key file: created private and atomically, read back byte for byte."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.server.crypto.keyfile import KeyFileError, load_or_create_key, loose_mode, read_key
from together import run_together


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    """Tests that change the umask put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def test_missing_key_file_is_created_with_32_random_bytes_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    key, created = load_or_create_key(path)
    assert created is True
    assert len(key) == 32
    assert path.read_bytes() == key
    assert _mode(path) == 0o600


def test_second_call_reads_the_same_key_without_creating(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    first, _ = load_or_create_key(path)
    second, created = load_or_create_key(path)
    assert created is False
    assert second == first


def test_two_new_key_files_differ(tmp_path: Path) -> None:
    a, _ = load_or_create_key(tmp_path / "a.key")
    b, _ = load_or_create_key(tmp_path / "b.key")
    assert a != b


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o277])
def test_mode_is_exactly_0600_whatever_the_umask(tmp_path: Path, umask: None, mask: int) -> None:
    path = tmp_path / "server.key"
    os.umask(mask)
    load_or_create_key(path)
    assert _mode(path) == 0o600


def test_creation_leaves_no_temp_files(tmp_path: Path) -> None:
    load_or_create_key(tmp_path / "server.key")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.key"]


def test_missing_parent_folders_are_created_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys" / "server.key"
    key, created = load_or_create_key(path)
    assert created and path.read_bytes() == key
    assert _mode(path.parent) & 0o077 == 0


@settings(max_examples=50)
@given(key=st.binary(min_size=16, max_size=256))
def test_any_key_of_16_bytes_or_more_is_read_back_exactly(
    tmp_path_factory: pytest.TempPathFactory, key: bytes
) -> None:
    path = tmp_path_factory.mktemp("k") / "server.key"
    path.write_bytes(key)
    assert load_or_create_key(path) == (key, False)


@pytest.mark.parametrize("size", [0, 1, 15])
def test_short_key_file_is_refused_in_one_line(tmp_path: Path, size: int) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(b"\x00" * size)
    with pytest.raises(KeyFileError) as info:
        load_or_create_key(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "too short" in message
    assert path.read_bytes() == b"\x00" * size, "a short key file must not be replaced"


def test_a_folder_in_place_of_the_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.mkdir()
    with pytest.raises(KeyFileError, match="cannot read"):
        load_or_create_key(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_or_create_key(path)


def test_uncreatable_key_file_is_refused_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(KeyFileError) as info:
        load_or_create_key(blocker / "server.key")
    assert "cannot create" in str(info.value) or "cannot read" in str(info.value)
    assert "\n" not in str(info.value)


def test_concurrent_creators_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    results: list[tuple[bytes, bool]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def create() -> None:
        start.wait()
        result = load_or_create_key(path)
        with lock:
            results.append(result)

    run_together(create, [()] * 8)
    assert len(results) == 8
    assert len({key for key, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert results[0][0] == path.read_bytes()


def test_read_key_creates_nothing_when_the_file_is_missing(tmp_path: Path) -> None:
    assert read_key(tmp_path / "server.key") is None
    assert list(tmp_path.iterdir()) == []


def test_read_key_reads_an_existing_key(tmp_path: Path) -> None:
    key, _ = load_or_create_key(tmp_path / "server.key")
    assert read_key(tmp_path / "server.key") == key


def test_read_key_of_a_short_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"short")
    with pytest.raises(KeyFileError) as info:
        read_key(tmp_path / "k")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("mode", "loose"),
    [(0o600, False), (0o400, False), (0o640, True), (0o604, True), (0o644, True), (0o660, True)],
)
def test_loose_mode_names_group_or_other_access(tmp_path: Path, mode: int, loose: bool) -> None:
    path = tmp_path / "server.key"
    load_or_create_key(path)
    path.chmod(mode)
    assert loose_mode(path) == (mode if loose else None)
