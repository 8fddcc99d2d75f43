"""The release helpers in packaging/, tested without building anything (fast, always run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packaging"))

import archive  # noqa: E402
import bundle_data  # noqa: E402


def _fake_release(folder: Path, stamp: int) -> Path:
    flavour = folder / "pyinstaller"
    flavour.mkdir(parents=True)
    for program in archive.PROGRAMS:
        path = flavour / program
        path.write_bytes(program.encode() * 1000)
        os.utime(path, (stamp, stamp))
    return folder


def test_archive_bytes_depend_only_on_file_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    doc = ROOT / "docs" / "release.md"
    first = archive.pack(_fake_release(tmp_path / "a", 1), "pyinstaller", "chat-x", [doc])
    second = archive.pack(_fake_release(tmp_path / "b", 2_000_000), "pyinstaller", "chat-x", [doc])
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["chat-x/chat-server"].mode == 0o755
    assert members["chat-x/release.md"].mode == 0o644
    assert members["chat-x/chat-client"].mtime == 1700000000


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum is not installed")
def test_sums_cover_every_file_and_verify_with_sha256sum(tmp_path: Path) -> None:
    folder = _fake_release(tmp_path / "rel", 1)
    archive.pack(folder, "pyinstaller", "chat-x", [])
    sums = archive.sums(folder)
    names = [line.split("  ", 1)[1] for line in sums.read_text().splitlines()]
    assert names == ["chat-x.tar.gz", "pyinstaller/chat-client", "pyinstaller/chat-server"]
    subprocess.run(["sha256sum", "-c", "--quiet", archive.SUMS], cwd=folder, check=True)
    (folder / "pyinstaller" / "chat-server").write_bytes(b"tampered")
    check = subprocess.run(["sha256sum", "-c", "--quiet", archive.SUMS], cwd=folder,
                           capture_output=True, check=False)  # fmt: skip
    assert check.returncode != 0


def test_required_terminfo_entries_resolve_to_compiled_files() -> None:
    try:
        files = bundle_data.terminfo_files()
    except bundle_data.BundleError as exc:
        pytest.skip(f"this machine lacks terminfo entries the release needs: {exc}")
    by_name = {src.name: dest for src, dest in files}
    assert by_name["xterm"] == "terminfo/x"
    assert by_name["xterm-256color"] == "terminfo/x"
    for src, _ in files:
        # Compiled terminfo starts with a magic number: 0432 (legacy) or 01036 (extended).
        assert src.read_bytes()[:2] in (b"\x1a\x01", b"\x1e\x02"), src
