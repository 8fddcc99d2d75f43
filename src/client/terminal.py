"""Getting the terminal ready for curses, including from a frozen one-file binary.

`prepare_terminal()` is the single place that fixes the process environment
before curses starts; the packaging steps rely on it:

- a UTF-8 locale: CPython coerces the C locale to C.UTF-8 at start-up, but
  frozen binaries (PyInstaller, Nuitka) skip that, and curses then prints
  Cyrillic and CJK as blanks. npyscreen calls `setlocale(LC_ALL, "")` itself,
  so the fix goes into the environment, not just the current locale;
- terminfo: a frozen binary may run where `$TERM` has no terminfo entry; the
  bundled copy (a `terminfo` folder at the bundle root) is appended to
  `TERMINFO_DIRS`, after the system's, so local entries still win.
"""

from __future__ import annotations

import contextlib
import locale
import os
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path

UTF8_LOCALES = ("C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8")
#: Folder name of the bundled terminfo database, relative to the bundle root.
BUNDLED_TERMINFO = "terminfo"


def is_frozen() -> bool:
    """True inside a PyInstaller or Nuitka build."""
    return bool(getattr(sys, "frozen", False)) or "__compiled__" in globals()


def bundle_root() -> Path:
    """Where a frozen build unpacked itself (PyInstaller's _MEIPASS, else above this package)."""
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        return Path(meipass)
    return Path(__file__).resolve().parent.parent.parent  # <root>/chat/client/terminal.py


def codeset() -> str:
    try:
        return locale.nl_langinfo(locale.CODESET)
    except (AttributeError, ValueError):
        return ""


def is_utf8(name: str) -> bool:
    return name.replace("-", "").lower() == "utf8"


def ensure_utf8_locale(environ: MutableMapping[str, str] | None = None) -> str:
    """Make LC_CTYPE a UTF-8 locale (in the process and in `environ`); return the codeset."""
    env = os.environ if environ is None else environ
    with contextlib.suppress(locale.Error):
        locale.setlocale(locale.LC_ALL, "")
    if is_utf8(codeset()):
        return codeset()
    for name in UTF8_LOCALES:
        try:
            locale.setlocale(locale.LC_CTYPE, name)
        except locale.Error:
            continue
        # LC_ALL overrides LC_CTYPE; npyscreen re-reads the environment.
        env["LC_ALL" if env.get("LC_ALL") else "LC_CTYPE"] = name
        break
    return codeset()


def add_bundled_terminfo(
    environ: MutableMapping[str, str] | None = None, root: Path | None = None
) -> Path | None:
    """Append the bundled terminfo folder to TERMINFO_DIRS when running frozen.

    An empty entry in TERMINFO_DIRS means ncurses' own default location, so
    an unset variable becomes ":<bundle>/terminfo" (system first, then ours).
    """
    env = os.environ if environ is None else environ
    folder = (root or bundle_root()) / BUNDLED_TERMINFO
    if not folder.is_dir():
        return None
    current = env.get("TERMINFO_DIRS", "")
    if str(folder) not in current.split(":"):
        env["TERMINFO_DIRS"] = f"{current}:{folder}"
    return folder


def prepare_terminal(environ: MutableMapping[str, str] | None = None) -> str:
    """Everything to do before curses starts; returns the resulting codeset."""
    env = os.environ if environ is None else environ
    if is_frozen():
        add_bundled_terminfo(env)
    # Escape alone (leave a list, cancel a form) should not wait ncurses' default second.
    env.setdefault("ESCDELAY", "25")
    return ensure_utf8_locale(env)


def tty_problem() -> str | None:
    """Why a full-screen UI cannot start here (one line), or None when it can."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return "the TUI needs a terminal on stdin and stdout (use --no-tui for scripts)"
    term = os.environ.get("TERM", "")
    if not term or term == "dumb":
        return f"TERM={term or '(unset)'} cannot run the TUI (set TERM, e.g. xterm-256color)"
    import curses

    try:
        curses.setupterm(term, sys.stdout.fileno())
    except curses.error:
        return f"no terminfo entry for TERM={term} (set TERMINFO_DIRS or use --no-tui)"
    return None


@contextlib.contextmanager
def stderr_on_terminal() -> Iterator[None]:
    """Point fd 2 at the terminal while curses runs, then restore it.

    npyscreen measures the screen with an ioctl on stderr; with `2>file` that
    fails and it crashes. Nothing is written to stderr meanwhile (the TUI
    logs to --log-file only), so the terminal is a safe stand-in.
    """
    if os.isatty(2):
        yield
        return
    saved = os.dup(2)
    try:
        os.dup2(1, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
