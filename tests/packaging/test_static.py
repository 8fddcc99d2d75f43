"""--static binaries run on Debian 11 (glibc 2.31), where the plain ones cannot.

A bullseye root made by ``debootstrap --variant=minbase`` (about 30 s, kept in
build/packaging-test/ for later runs) stands in for the old distribution; the
binaries run in it through chroot, in a private mount namespace that has its
own /proc (the one-file loaders read /proc/self/exe); unshare runs without
--fork so that signals reach the program itself. The root has no Python.
Skipped, with the reason, where this cannot run: not root, no debootstrap or
unshare, or no way to the Debian mirror.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from onefile import LineClient, Release, ServerRun

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "packaging-test"
MIRROR = os.environ.get("CHAT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bullseye"
INSIDE = "/opt/chat"  # where the binaries go inside the root


def _debootstrap_root() -> Path:
    """Make (once) and return a minbase bullseye root, or skip saying why."""
    if os.geteuid() != 0:
        pytest.skip("debootstrap and chroot need root")
    for tool in ("debootstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install debootstrap util-linux)")
    root = CACHE / SUITE
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", SUITE, str(root), MIRROR],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        tail = " | ".join(result.stdout.strip().splitlines()[-3:])
        pytest.skip(f"debootstrap {SUITE} from {MIRROR} failed (no mirror?): {tail}")
    (root / ".complete").touch()
    return root


@pytest.fixture(scope="module")
def bullseye(opted_in: None) -> Path:
    return _debootstrap_root()


@pytest.fixture
def chroot_with(bullseye: Path, static_release: Release) -> Iterator[list[str]]:
    """Both flavours copied into the root; yields the command prefix that runs in it."""
    target = bullseye / INSIDE.lstrip("/")
    shutil.rmtree(target, ignore_errors=True)
    for flavour in ("pyinstaller", "pyinstaller-static"):
        shutil.copytree(static_release.folder / flavour, target / flavour)
    (target / "run").mkdir()
    script = (
        'mount -t proc proc "$0/proc" && exec chroot "$0" /usr/bin/env -i PATH=/usr/bin:/bin "$@"'
    )
    yield ["unshare", "--mount", "sh", "-c", script, str(bullseye)]
    shutil.rmtree(target, ignore_errors=True)


def test_bullseye_root_is_older_glibc_without_python(
    bullseye: Path, chroot_with: list[str]
) -> None:
    version = subprocess.run(
        [*chroot_with, "ldd", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert "2.31" in version.splitlines()[0]
    which = subprocess.run([*chroot_with, "sh", "-c", "command -v python3 python"], check=False)
    assert which.returncode != 0


def test_plain_binary_needs_newer_glibc(chroot_with: list[str]) -> None:
    """The control: without staticx the bundled libpython cannot load on 2.31."""
    result = subprocess.run(
        [*chroot_with, f"{INSIDE}/pyinstaller/chat-server", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "GLIBC_2.3" in result.stderr


@pytest.mark.parametrize("program", ["chat-server", "chat-client"])
def test_static_binary_help_on_bullseye(chroot_with: list[str], program: str) -> None:
    result = subprocess.run(
        [*chroot_with, f"{INSIDE}/pyinstaller-static/{program}", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {program}")


def test_static_server_and_clients_chat_on_bullseye(bullseye: Path, chroot_with: list[str]) -> None:
    inside_run = f"{INSIDE}/run"
    server = ServerRun(
        chroot_with,
        f"{INSIDE}/pyinstaller-static/chat-server",
        Path(inside_run),
        bullseye / inside_run.lstrip("/"),
    )
    try:
        client = [*chroot_with, f"{INSIDE}/pyinstaller-static/chat-client"]
        where = ["--host", "127.0.0.1", "--port", str(server.port), "--register"]
        bob = LineClient([*client, *where, "--user", "bob", "--password", "bob-secret"])
        bob.expect("online")
        alice = LineClient([*client, *where, "--user", "alice", "--password", "alice-secret"])
        code, err = alice.finish("@bob привет from bullseye\n")
        assert code == 0, err
        assert bob.expect("msg")["text"] == "привет from bullseye"
        assert bob.finish()[0] == 0
    finally:
        assert server.stop() == 0
    assert "cipher 'xor' from " in server.log()
