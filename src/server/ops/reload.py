"""SIGHUP: reopen the log, re-read the config file, apply what can change without a restart.

What operators expect of a daemon (ngIRCd, Prosody, nginx): logrotate renames
the log and sends SIGHUP, and so does `systemctl reload` (the unit's
`ExecReload=`). The signal handler only sets a flag; `Reloader.reload` runs on
the loop thread between two turns (`EventLoop.request_reload`), so nothing
here races with the loop, and the loop applies what it returns.

The settings are read again exactly as at start: the command line over the
file over the defaults, with the start's checks (`cli.read_settings`). A file
that fails them changes nothing: one ERROR line, the old settings stay. Of a
good file, every changed setting in `LIVE` is applied and logged on one INFO
line (`reload: rate-limit 500.0 -> 100.0`); the others are named on one
WARNING line, since they need a restart, and keep their running values.

- `log-level`, `log-file` (another file; not between stderr and a file);
- `rate-limit`, `rate-burst`, `max-frame`: for connections made from now on
  (a connection keeps the bucket and frame limit it started with);
- `idle-timeout`, `auth-timeout`, `frame-timeout`: from the next deadline scan,
  for every connection; `ack-timeout`: for roster frames sent from now on;
- `max-unauth-per-addr`, `min-password`: from the next connection or registration;
- `token-days`: from the next token login, for every token, those issued before too;
- `max-clients`: lower, or higher up to its value at start, which sized the
  table of outbound slots (2 x max-clients + 64); past that, a restart. Lowering
  it closes nobody: new connections are refused until fewer are connected;
- `tls-cert`, `tls-key`: a new TLS context for new connections, whenever the
  paths or the files' bytes changed (a renewed certificate at the same path);
  a pair that does not load keeps the old one (one ERROR line). Turning TLS
  on or off changes what the port speaks: a restart.

Without `--config` there is nothing to re-read but the log (reopened) and the
TLS files (re-read when they changed): the line says so.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

from chat.server.net.tls import TLSConfigError, load_server_context
from chat.server.ops.config import ServerConfig
from chat.server.ops.config_file import SettingsError
from chat.server.ops.logfile import ROOT, current_file

log = logging.getLogger("chat.server")

#: Settings (argparse dests) a reload applies; every other one needs a restart.
LIVE = frozenset(
    {
        "log_level",
        "log_file",
        "rate_limit",
        "rate_burst",
        "max_frame",
        "idle_timeout",
        "auth_timeout",
        "frame_timeout",
        "ack_timeout",
        "max_clients",
        "max_unauth_per_addr",
        "min_password",
        "registration",
        "token_days",
        "tls_cert",
        "tls_key",
    }
)

Read = Callable[[list[str]], argparse.Namespace]
Settings = tuple[ServerConfig, ssl.SSLContext | None]


class _Done(enum.Enum):
    APPLIED = "applied"
    RESTART = "needs a restart"
    KEPT = "kept, said why"  # a live setting whose new value cannot be used


def tls_digest(cert: Path | None, key: Path | None) -> bytes | None:
    """What the two TLS files hold, hashed: a renewal at the same path changes it."""
    if cert is None or key is None:
        return None
    digest = hashlib.sha256()
    try:
        for path in (cert, key):
            digest.update(Path(path).read_bytes())
            digest.update(b"\0")
    except OSError:
        return b""  # unreadable: differs from any content, and the load will say why
    return digest.digest()


class Reloader:
    """Holds the settings the server runs with, and works out what a SIGHUP changes.

    `read` is `cli.read_settings` (SettingsError on a bad file), `to_config`
    is `cli._config`, `names` maps each dest to its option's name for the log.
    """

    def __init__(
        self,
        argv: list[str],
        args: argparse.Namespace,
        read: Read,
        to_config: Callable[[argparse.Namespace], ServerConfig],
        names: dict[str, str],
        tls: ssl.SSLContext | None,
    ) -> None:
        self._argv = list(argv)
        self._args = args
        self._read = read
        self._to_config = to_config
        self._names = names
        self.tls = tls
        self._tls_digest = tls_digest(args.tls_cert, args.tls_key) if tls is not None else None
        #: The outbound table was sized for this many clients at start.
        self.max_clients_at_start: int = args.max_clients

    def reload(self) -> Settings | None:
        """The settings to run with from now on; None when nothing may change."""
        args = self._args
        reopened = self._reopen_log()  # first: what follows goes to the new file
        if not reopened:
            log.info("received SIGHUP: reloading")
        if args.config is None:
            tls = self._reload_tls(args.tls_cert, args.tls_key)
            log.info(
                "reload: no --config file: %s%s; nothing else to re-read",
                "log file reopened" if reopened else "the log is stderr",
                ", TLS certificate re-read" if tls else "",
            )
            return self._to_config(args), self.tls
        try:
            new = self._read(self._argv)
        except SettingsError as exc:
            log.error("reload: %s; keeping the current settings", exc)
            return None
        running = argparse.Namespace(**vars(args))
        done: dict[str, _Done] = {}
        for dest, value in vars(new).items():
            old = getattr(args, dest, None)
            if value == old or dest in ("tls_cert", "tls_key"):
                continue
            done[dest] = self._apply(dest, old, value) if dest in LIVE else _Done.RESTART
            if done[dest] is _Done.APPLIED:
                setattr(running, dest, value)
        if (args.tls_cert is None) != (new.tls_cert is None):  # TLS on or off: the port
            for dest in ("tls_cert", "tls_key"):
                if getattr(new, dest) != getattr(args, dest):
                    done[dest] = _Done.RESTART
        else:
            reloaded = self._reload_tls(new.tls_cert, new.tls_key)
            if reloaded:
                running.tls_cert, running.tls_key = new.tls_cert, new.tls_key
                done["tls_cert"] = _Done.APPLIED
            elif reloaded is False:  # said why on its ERROR line
                done["tls_cert"] = _Done.KEPT
        restart = [self._name(d) for d, how in done.items() if how is _Done.RESTART]
        if restart:
            log.warning(
                "reload: %s changed in %s but need a restart; still running with the old values",
                ", ".join(restart),
                args.config,
            )
        elif not done:
            log.info("reload: %s read again: nothing changed", args.config)
        self._args = running
        return self._to_config(running), self.tls

    # ---- one setting ---------------------------------------------------------
    def _apply(self, dest: str, old: object, new: object) -> _Done:
        """One live setting: the log's are applied here, the loop's by the caller."""
        name = self._name(dest)
        if dest == "max_clients" and isinstance(new, int) and new > self.max_clients_at_start:
            log.warning(
                "reload: max-clients %s is above %d, its value at start, which sized the "
                "connection table: a restart raises it; still %s",
                new,
                self.max_clients_at_start,
                old,
            )
            return _Done.KEPT
        if dest == "log_file":
            handler = current_file()
            if handler is None or new is None:
                return _Done.RESTART  # between stderr and a file: the handler itself changes
            try:
                handler.reopen(Path(str(new)))
            except OSError as exc:
                log.error("reload: cannot open log file %s (%s); still %s", new, exc.strerror, old)
                return _Done.KEPT
        if dest == "log_level":
            root = logging.getLogger(ROOT)
            root.setLevel(min(logging.getLevelName(str(old)), logging.getLevelName(str(new))))
            log.info("reload: %s %s -> %s", name, old, new)  # seen under either level
            root.setLevel(str(new))
            return _Done.APPLIED
        log.info("reload: %s %s -> %s", name, old, new)
        return _Done.APPLIED

    def _reopen_log(self) -> bool:
        handler = current_file()
        if handler is None:
            return False
        try:
            handler.reopen()
        except OSError as exc:
            log.error("reload: cannot reopen log file %s (%s)", handler.baseFilename, exc.strerror)
            return False
        log.info("received SIGHUP: log file %s reopened", handler.baseFilename)
        return True

    def _reload_tls(self, cert: Path | None, key: Path | None) -> bool | None:
        """A new context when the TLS files (their paths or bytes) changed: True when it
        was made, False when the new files do not load, None when nothing changed."""
        if self.tls is None or cert is None or key is None:
            return None
        args = self._args
        digest = tls_digest(cert, key)
        if (cert, key) == (args.tls_cert, args.tls_key) and digest == self._tls_digest:
            return None
        try:
            context = load_server_context(cert, key)
        except TLSConfigError as exc:
            log.error("reload: %s; keeping the current certificate", exc)
            return False
        self.tls, self._tls_digest = context, digest
        if (cert, key) != (args.tls_cert, args.tls_key):
            log.info(
                "reload: tls-cert %s -> %s, tls-key %s -> %s (new connections)",
                args.tls_cert,
                cert,
                args.tls_key,
                key,
            )
        else:
            log.info("reload: TLS certificate %s re-read: changed on disk (new connections)", cert)
        return True

    def _name(self, dest: str) -> str:
        return self._names.get(dest, dest.replace("_", "-"))
