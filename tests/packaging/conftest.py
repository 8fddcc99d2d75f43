"""Fixtures for the release tests: build with scripts/release.sh, run the binaries.

The build takes about a minute and needs PyPI for its own build venv, so these
tests run only where PyInstaller is installed in the test environment (CI
installs it to opt in); elsewhere they are skipped with that reason.

CHAT_RELEASE_DIR=dist/<version>/<target> tests binaries already built instead
(the release workflow tests exactly what it publishes).

Under pytest-xdist (scripts/test.sh runs workers) each worker has its own session:
the first to need the release builds it, holding a lock in the folder all workers'
temporary folders share, and the others wait for it and test the same build
(release.sh's build folder is one per checkout: two builds at once would collide).
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from onefile import Release, read_release

ROOT = Path(__file__).resolve().parents[2]
RELEASE_SH = ROOT / "scripts" / "release.sh"
PREBUILT = os.environ.get("CHAT_RELEASE_DIR")

pytestmark = pytest.mark.packaging


@pytest.fixture(scope="session")
def opted_in() -> None:
    """Skip, saying why, unless PyInstaller is installed in the test environment."""
    if PREBUILT:
        return
    pytest.importorskip(
        "PyInstaller",
        reason="PyInstaller is not installed: release tests are opt-in "
        "(pip install pyinstaller to run them; CI does)",
    )


def run_release(out: Path, *args: str) -> Release:
    """Run scripts/release.sh into OUT; fail the test with its log when it fails."""
    env = {**os.environ, "PYTHON": sys.executable}
    log = out / "release.log"
    with log.open("w") as handle:
        result = subprocess.run(
            [str(RELEASE_SH), "--out", str(out), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=handle,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        pytest.fail(f"release.sh {' '.join(args)} failed:\n{log.read_text()[-4000:]}")
    return read_release(Path(result.stdout.strip().splitlines()[-1]))


def _static_possible() -> bool:
    """staticx has PyPI wheels for linux x86_64 only."""
    return platform.system() == "Linux" and platform.machine() == "x86_64"


@pytest.fixture(scope="session")
def release(opted_in: None, tmp_path_factory: pytest.TempPathFactory) -> Release:
    """A PyInstaller release built from this checkout, as a user would.

    With --static where staticx can run, as the release workflow does: one
    build serves the plain and the static tests.
    """
    if PREBUILT:
        return read_release(Path(PREBUILT).resolve())
    extra = ["--static"] if _static_possible() else []
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return run_release(tmp_path_factory.mktemp("dist"), *extra)
    shared = tmp_path_factory.getbasetemp().parent  # every worker's base is in it
    done = shared / "release-built"
    with (shared / "release.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return read_release(Path(done.read_text()))
        out = shared / "release-dist"
        out.mkdir(exist_ok=True)
        built = run_release(out, *extra)
        done.write_text(str(built.folder))
        return built


@pytest.fixture(scope="session")
def static_release(release: Release) -> Release:
    """The release, when it has the staticx flavour."""
    if not (release.folder / "pyinstaller-static").is_dir():
        if PREBUILT:
            pytest.skip(f"{PREBUILT} was built without --static")
        pytest.skip(f"--static is built on linux x86_64 only, not {platform.machine()}")
    return release


@pytest.fixture
def no_python_path(tmp_path: Path) -> str:
    """A PATH with no Python on it: an empty folder.

    The binaries are started by absolute path and need no other program.
    """
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("python3", "python"):
        assert shutil.which(name, path=str(folder)) is None
    return str(folder)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """An empty folder where the server keeps its key, users file and log."""
    folder = tmp_path / "run"
    folder.mkdir()
    yield folder
