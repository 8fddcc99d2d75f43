"""The release helpers in packaging/, tested without building anything (fast, always run)."""

from __future__ import annotations

import os
import re
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
import nuitka_build  # noqa: E402

from chat.server.crypto import cipher  # noqa: E402

SPEC = ROOT / "packaging" / "chat.spec"
DISPATCH_HEADER = ROOT / "native" / "dispatch" / "include" / "chat_dispatch.h"
NATIVE_NAMES = ("libxor", "libchatdispatch")


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


def _program_files(program: str) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    try:
        return bundle_data.program_files(program)
    except bundle_data.BundleError as exc:
        pytest.skip(f"this machine lacks files the release needs: {exc}")


def _names(pairs: list[tuple[Path, str]]) -> list[str]:
    return [f"{dest}/{Path(src).name}" for src, dest in pairs]


def test_cipher_goes_where_the_server_looks_for_it() -> None:
    assert cipher.BUNDLE_SUBDIR.replace(os.sep, "/") == bundle_data.CIPHER_DEST
    lib = bundle_data.cipher_library()
    assert lib.name == cipher.LIBRARY_FILENAME
    assert lib.parent.name == "server"


def test_dispatch_library_is_installed_beside_the_server_modules() -> None:
    """CMake installs libchatdispatch next to chat.server, as it does libxor."""
    assert bundle_data.DISPATCH_DEST == "chat/server"
    lib = bundle_data.dispatch_library()
    assert lib.name in bundle_data.DISPATCH_NAMES
    assert lib.parent.name == "server"
    assert lib.parent == bundle_data.cipher_library().parent
    # An ELF (or Mach-O) shared library whose dynamic symbols name the header's functions.
    content = lib.read_bytes()
    assert content[:4] in (b"\x7fELF", b"\xcf\xfa\xed\xfe")
    for name in _header_functions():
        assert name.encode() in content, name


def _header_functions() -> list[str]:
    """The functions chat_dispatch.h declares (the ABI CTest checks the exports against)."""
    names = re.findall(r"^CD_API [^;(]*?\b(cd_\w+)\(", DISPATCH_HEADER.read_text(), re.M)
    assert len(names) >= 20, names
    return names


def test_dispatch_library_name_is_the_one_the_binding_loads() -> None:
    """chat.server.core.native (the cffi binding) finds it by this name in chat/server/."""
    from chat.server import bundled
    from chat.server.core import native

    assert bundled.BUNDLE_SUBDIR.replace(os.sep, "/") == bundle_data.DISPATCH_DEST
    assert bundle_data.dispatch_library().name == native.LIBRARY_FILENAME


def test_server_bundles_native_libraries_and_client_does_not() -> None:
    server_bins, server_datas = _program_files("chat-server")
    client_bins, client_datas = _program_files("chat-client")
    assert _names(server_bins) == [
        f"{bundle_data.CIPHER_DEST}/{cipher.LIBRARY_FILENAME}",
        f"{bundle_data.DISPATCH_DEST}/{bundle_data.dispatch_library().name}",
    ]
    assert server_datas == []
    assert client_bins == []
    assert client_datas, "the client carries terminfo"
    assert all(dest.startswith(f"{bundle_data.TERMINFO_DEST}/") for _, dest in client_datas)
    for name in _names(client_bins + client_datas):
        assert not any(native in name for native in NATIVE_NAMES), name


def test_nuitka_recipe_includes_native_libraries_in_the_server_only(tmp_path: Path) -> None:
    _program_files("chat-client")  # skips where terminfo is missing
    server = nuitka_build.nuitka_options("chat-server", tmp_path)
    client = nuitka_build.nuitka_options("chat-client", tmp_path)
    for lib in (bundle_data.cipher_library(), bundle_data.dispatch_library()):
        assert f"--include-data-files={lib}=chat/server/{lib.name}" in server
    for option in client:
        assert not any(native in option for native in NATIVE_NAMES), option
    assert any(option.endswith("=terminfo/x/xterm") for option in client)


class _Recorded:
    """Stand-ins for PyInstaller's spec globals that record what the spec asks for."""

    def __init__(self) -> None:
        self.analyses: list[dict[str, object]] = []
        self.programs: dict[str, dict[str, object]] = {}

    def analysis(self, scripts: list[str], **options: object) -> object:
        self.analyses.append({"scripts": scripts, **options})
        # Nothing collected: the spec's RUNPATH pass then has nothing to patch.
        return type("A", (), {"pure": [], "scripts": [], "binaries": [], "datas": []})()

    def pyz(self, pure: object) -> object:
        return type("P", (), {"dependencies": []})()

    def exe(self, *parts: object, name: str, **options: object) -> None:
        self.programs[name] = self.analyses[-1]


def test_pyinstaller_spec_bundles_native_libraries_in_the_server_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run packaging/chat.spec with PyInstaller's classes faked: no build, a few ms."""
    _program_files("chat-client")  # skips where terminfo is missing
    real_which = shutil.which
    monkeypatch.setattr(
        shutil,
        "which",
        lambda cmd, *args, **kw: "patchelf" if cmd == "patchelf" else real_which(cmd, *args, **kw),
    )
    rec = _Recorded()
    spec_globals = {
        "__file__": str(SPEC),
        "__name__": "__main__",
        "SPECPATH": str(SPEC.parent),
        "workpath": str(tmp_path),
        "Analysis": rec.analysis,
        "PYZ": rec.pyz,
        "EXE": rec.exe,
    }
    exec(compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec"), spec_globals)
    assert set(rec.programs) == {"chat-server", "chat-client"}
    server, client = rec.programs["chat-server"], rec.programs["chat-client"]
    assert server["binaries"] == [
        (str(bundle_data.cipher_library()), "chat/server"),
        (str(bundle_data.dispatch_library()), "chat/server"),
    ]
    assert client["binaries"] == []
    for kind in ("binaries", "datas"):
        for src, dest in client[kind]:
            assert not any(native in src for native in NATIVE_NAMES), src
            assert not dest.startswith("chat/"), dest
    assert any(dest == "terminfo/x" for _, dest in client["datas"])
