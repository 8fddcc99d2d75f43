"""Terminal preparation: UTF-8 locale without Python's coercion, bundled terminfo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chat.client.terminal import add_bundled_terminfo

CHECK = (
    "import os; from chat.client.terminal import prepare_terminal; "
    "print(prepare_terminal(), os.environ.get('LC_CTYPE'), os.environ.get('LC_ALL'))"
)


def run_like_frozen(env_extra: dict[str, str]) -> str:
    """A Python without locale coercion or UTF-8 mode, as a frozen binary starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env.update({"PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0", **env_extra})
    out = subprocess.run(
        [sys.executable, "-X", "utf8=0", "-c", CHECK],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_c_locale_is_switched_to_utf8_in_the_environment_too() -> None:
    codeset, lc_ctype, _ = run_like_frozen({"LANG": "C"})
    assert codeset == "UTF-8" and "UTF" in lc_ctype.upper()


def test_lc_all_c_is_overridden_since_it_beats_lc_ctype() -> None:
    codeset, _, lc_all = run_like_frozen({"LC_ALL": "C"})
    assert codeset == "UTF-8" and "UTF" in lc_all.upper()


def test_a_utf8_locale_is_left_alone() -> None:
    codeset, lc_ctype, lc_all = run_like_frozen({"LANG": "C.UTF-8"})
    assert codeset == "UTF-8" and lc_ctype == "None" and lc_all == "None"


def test_bundled_terminfo_is_appended_after_the_system_dirs(tmp_path: Path) -> None:
    (tmp_path / "terminfo").mkdir()
    env: dict[str, str] = {}
    assert add_bundled_terminfo(env, tmp_path) == tmp_path / "terminfo"
    assert env["TERMINFO_DIRS"] == f":{tmp_path / 'terminfo'}"
    env = {"TERMINFO_DIRS": "/custom"}
    add_bundled_terminfo(env, tmp_path)
    add_bundled_terminfo(env, tmp_path)  # idempotent
    assert env["TERMINFO_DIRS"] == f"/custom:{tmp_path / 'terminfo'}"


def test_no_bundle_no_change(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert add_bundled_terminfo(env, tmp_path) is None and env == {}
