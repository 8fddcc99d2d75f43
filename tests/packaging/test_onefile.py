"""The released binaries work with no Python around: what a downloader sees.

Each test runs for every flavour in the release folder: the default build has
only ``pyinstaller``; ``nuitka`` is checked when CHAT_RELEASE_DIR points at a
folder built with ``--backend nuitka`` or ``all`` (by hand: Nuitka is slow).
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from onefile import LineClient, Release, ServerRun, clean_env

pytestmark = pytest.mark.packaging

PROGRAMS = ("chat-server", "chat-client")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["pyinstaller", "nuitka"])
def flavour(request: pytest.FixtureRequest, release: Release) -> str:
    name: str = request.param
    if not (release.folder / name).is_dir():
        pytest.skip(f"no {name} build in this release (scripts/release.sh --backend {name})")
    return name


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_release_has_archive_binaries_and_matching_checksums(
    release: Release, flavour: str
) -> None:
    archive = f"chat-epoll-{release.version}-{release.target}-{flavour}.tar.gz"
    expected = {archive, *(f"{flavour}/{p}" for p in PROGRAMS)}
    assert expected <= set(release.sums)
    for name, digest in release.sums.items():
        assert _sha256(release.folder / name) == digest, name
    with tarfile.open(release.folder / archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    top = archive.removesuffix(".tar.gz")
    for program in PROGRAMS:
        member = members[f"{top}/{program}"]
        assert member.mode & stat.S_IXUSR
        assert member.size == release.binary(flavour, program).stat().st_size


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_works_without_python_on_path(
    release: Release, flavour: str, no_python_path: str, program: str
) -> None:
    result = _run(release.binary(flavour, program), no_python_path, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {program}")


@pytest.mark.parametrize(
    ("program", "own_module"),
    [("chat-server", b"chat.server.accounts.users_file"), ("chat-client", b"chat.client.linemode")],
)
def test_pyinstaller_binary_is_lean(release: Release, program: str, own_module: bytes) -> None:
    """No setuptools inside, and small: the unstripped default was about 22 MB.

    Module names sit in clear in PyInstaller's table of contents, so the
    program's own module is there and the excluded ones are not. (Nuitka's
    payload is compressed whole: nothing to read there.)
    """
    binary = release.binary("pyinstaller", program)
    assert binary.stat().st_size < 15_000_000
    content = binary.read_bytes()
    assert own_module in content
    for excluded in (b"setuptools", b"pkg_resources", b"unittest", b"pydoc", b"tkinter"):
        assert excluded not in content


def test_only_the_pyinstaller_server_carries_libxor(release: Release) -> None:
    """The cipher is server-only: the client bundle has neither libxor nor cffi.

    Read from the table of contents in clear, as above (no build, no unpacking).
    """
    server = release.binary("pyinstaller", "chat-server").read_bytes()
    client = release.binary("pyinstaller", "chat-client").read_bytes()
    assert b"chat/server/libxor.so" in server
    assert b"_cffi_backend" in server
    assert b"libxor" not in client
    assert b"_cffi_backend" not in client
    assert b"chat.server" not in client


def test_only_the_pyinstaller_server_carries_libchatdispatch(release: Release) -> None:
    """The worker queue and fan-out are server-only too: chat/server/ beside libxor.

    Read from the table of contents in clear, as above.
    """
    server = release.binary("pyinstaller", "chat-server").read_bytes()
    client = release.binary("pyinstaller", "chat-client").read_bytes()
    assert b"chat/server/libchatdispatch.so" in server
    assert b"libchatdispatch" not in client
    assert b"chat_dispatch" not in client


def test_bundled_libchatdispatch_loads_and_exports_the_abi(
    release: Release, tmp_path: Path
) -> None:
    """The copy inside the server binary is the whole library, whatever the server does with it.

    Taken out with PyInstaller's own archive reader, loaded with ctypes: every function
    of chat_dispatch.h is there, and a queue round trip works.
    """
    readers = pytest.importorskip(
        "PyInstaller.archive.readers", reason="reading the bundle needs PyInstaller"
    )
    bundle = readers.CArchiveReader(str(release.binary("pyinstaller", "chat-server")))
    name = "chat/server/libchatdispatch.so"
    assert name in bundle.toc, sorted(n for n in bundle.toc if n.startswith("chat/"))
    path = tmp_path / "libchatdispatch.so"
    path.write_bytes(bundle.extract(name))
    lib = ctypes.CDLL(str(path))
    header = (ROOT / "native" / "dispatch" / "include" / "chat_dispatch.h").read_text()
    functions = re.findall(r"^CD_API [^;(]*?\b(cd_\w+)\(", header, re.M)
    assert len(functions) >= 20
    missing = [fn for fn in functions if not hasattr(lib, fn)]
    assert missing == []
    lib.cd_queue_new.restype = ctypes.c_void_p
    lib.cd_queue_push.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
    lib.cd_queue_len.argtypes = [ctypes.c_void_p]
    lib.cd_queue_len.restype = ctypes.c_size_t
    lib.cd_queue_pop.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64),
                                 ctypes.c_size_t, ctypes.c_int]  # fmt: skip
    lib.cd_queue_pop.restype = ctypes.c_size_t
    lib.cd_queue_free.argtypes = [ctypes.c_void_p]
    queue = lib.cd_queue_new()
    assert queue
    try:
        assert lib.cd_queue_push(queue, 2**63 + 5) == 0
        assert lib.cd_queue_len(queue) == 1
        items = (ctypes.c_uint64 * 4)()
        assert lib.cd_queue_pop(queue, items, 4, 0) == 1
        assert items[0] == 2**63 + 5
    finally:
        lib.cd_queue_free(queue)


def test_missing_cipher_lib_is_one_clear_line(
    release: Release, flavour: str, no_python_path: str, workdir: Path
) -> None:
    result = _run(
        release.binary(flavour, "chat-server"),
        no_python_path,
        "--port", "0",
        "--key-file", str(workdir / "server.key"),
        "--users-file", str(workdir / "users.db"),
        "--log-file", str(workdir / "server.log"),
        "--history-file", str(workdir / "history.db"),
        "--cipher-lib", "/nonexistent.so",
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "/nonexistent.so" in lines[0]
    assert "Traceback" not in result.stderr


def test_server_uses_bundled_cipher_and_two_clients_chat(
    release: Release, flavour: str, no_python_path: str, workdir: Path
) -> None:
    env = clean_env(no_python_path, LANG="C", HOME=str(workdir))
    server = ServerRun(env, str(release.binary(flavour, "chat-server")), workdir, workdir)
    try:
        client = [*env, str(release.binary(flavour, "chat-client"))]
        where = ["--host", "127.0.0.1", "--port", str(server.port), "--register"]
        bob = LineClient([*client, *where, "--user", "bob", "--password", "bob-secret"])
        bob.expect("online")
        alice = LineClient([*client, *where, "--user", "alice", "--password", "alice-secret"])
        code, err = alice.finish("@bob привет from the bundle\n")
        assert code == 0, err
        assert alice.expect("sent")["delivered"] == ["bob"]
        message = bob.expect("msg")
        assert (message["from"], message["text"]) == ("alice", "привет from the bundle")
        assert bob.finish()[0] == 0
    finally:
        assert server.stop() == 0
    log = server.log()
    # The default plugin came from inside the bundle, unpacked under /tmp (env -i
    # leaves TMPDIR unset), not from any installed package.
    loaded = next(line for line in log.splitlines() if "cipher 'xor' from " in line)
    path = loaded.split("cipher 'xor' from ", 1)[1]
    assert path.startswith("/tmp/") and path.endswith("/chat/server/libxor.so"), loaded
    users = (workdir / "users.db").read_bytes()
    assert b"alice" not in users and b"bob" not in users
    assert stat.S_IMODE((workdir / "users.db").stat().st_mode) == 0o600


def _run(binary: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*clean_env(path), str(binary), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
