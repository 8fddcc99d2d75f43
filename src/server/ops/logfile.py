"""The server's log: one handler on the `chat` logger, to stderr or to a file that SIGHUP reopens.

logrotate renames the file and then sends SIGHUP (its `postrotate`, or
`systemctl reload` through the unit's `ExecReload=`); the server opens the
name again, so the next lines go to a new file instead of the renamed one.
The new stream is opened first (a failure changes nothing) and swapped in
under the handler's own lock, which every `emit` holds: a line another thread
is writing goes whole to the old file or whole to the new one, never to a
closed stream.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
ROOT = "chat"


class LogFile(logging.FileHandler):
    """A FileHandler that can switch to a freshly opened file while others log."""

    def reopen(self, path: Path | None = None) -> None:
        """Open `path` (default: the same name again) and write there from now on.

        Raises OSError, with the old file still in use, when it cannot be opened.
        """
        target = os.path.abspath(path) if path is not None else self.baseFilename
        stream = open(target, self.mode, encoding=self.encoding, errors=self.errors)  # noqa: SIM115
        self.acquire()
        try:
            old, self.stream = self.stream, stream
            self.baseFilename = target
        finally:
            self.release()
        if old is not None:
            old.close()


def open_handler(path: Path | None) -> logging.Handler:
    """A handler for `--log-file` (stderr when None); OSError when the file cannot be opened."""
    handler: logging.Handler
    if path is not None:
        handler = LogFile(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    return handler


def install(handler: logging.Handler, level: str) -> None:
    """Make `handler` the only one of the server's loggers, at `level`."""
    root = logging.getLogger(ROOT)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def current_file() -> LogFile | None:
    """The handler writing to `--log-file`, None when the log goes to stderr."""
    handlers = logging.getLogger(ROOT).handlers
    return next((h for h in handlers if isinstance(h, LogFile)), None)
