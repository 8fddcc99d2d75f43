"""The client's config file: `$XDG_CONFIG_HOME/chat-client/config.toml` (else
`~/.config/chat-client/config.toml`), TOML, every key optional.

```toml
host = "chat.example.org"
port = 7777
user = "alice"
tls = true                # or tls-ca = "/path/to/cert.pem"
bell = true               # ring on a private message or a mention
colours = true            # false: attributes only (bold, reverse); or a table:
# [colours]
# private = "magenta"     # private = mention = error = own = note = day = unread = offline
```

The command line wins over the file, the file over the built-in defaults.
The password belongs in the file only when the user puts it there (by hand,
or with `--save-config --save-password`), and so does a login token (`token`,
`--save-config --save-token`: protocol v1.2 section 6, revoked by a password
change); a file that holds either must be private (mode 0600): a looser one is
refused, as ssh refuses a readable key, rather than leaking it on a shared
machine. Unknown keys are
refused too, so a typo is said instead of silently ignored.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chat.shared.messages import TOKEN_MAX

FOLDER = "chat-client"
FILE = "config.toml"
#: Colour names accepted in `[colours]` (curses' eight, and the terminal's default).
COLOUR_NAMES = ("default", "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")
#: What `[colours]` may colour: the history's line styles, and offline people in the list.
COLOUR_KEYS = ("private", "mention", "error", "own", "note", "day", "unread", "offline")
_SCALARS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "port": int,
    "user": str,
    "password": str,
    "token": str,
    "tls": bool,
    "tls-ca": str,
    "bell": bool,
}


class ConfigError(Exception):
    """The config file cannot be used; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What the file says; None (or empty) where it says nothing."""

    path: Path | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls: bool | None = None
    tls_ca: str | None = None
    bell: bool | None = None
    colours: bool | None = None
    palette: Mapping[str, str] = field(default_factory=dict)


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the XDG base directory spec puts our config file."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or ""
    root = (
        Path(base) if os.path.isabs(base) else Path(env.get("HOME", "~")).expanduser() / ".config"
    )
    return root / FOLDER / FILE


def load(path: Path, required: bool = False) -> ClientConfig:
    """Read and check the file; an absent file is an empty config unless `required`."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = tomllib.load(f)
    except (FileNotFoundError, NotADirectoryError):
        if required:
            raise ConfigError(f"{path}: no such file") from None
        return ClientConfig()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    return _check(path, data, mode)


def _check(path: Path, data: dict[str, Any], mode: int) -> ClientConfig:
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "colours":
            continue
        kind = _SCALARS.get(key)
        if kind is None:
            known = ", ".join([*_SCALARS, "colours"])
            raise ConfigError(f"{path}: unknown key {key!r} (known: {known})")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: {key} must be {_type_name(kind)}, not {value!r}")
        if key == "tls-ca":  # "~/..." and paths relative to the config file's folder
            value = str(path.parent / Path(value).expanduser())
        values[key.replace("-", "_")] = value
    colours, palette = _colours(path, data.get("colours"))
    for secret in ("password", "token"):
        if secret in values and stat.S_IMODE(mode) & 0o077:
            raise ConfigError(
                f"{path} holds a {secret} and others can read it "
                f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {path}, or remove the {secret}"
            )
    if "token" in values and not 1 <= len(values["token"]) <= TOKEN_MAX:
        raise ConfigError(f"{path}: token must be 1..{TOKEN_MAX} characters")
    return ClientConfig(path=path, colours=colours, palette=palette, **values)


def _colours(path: Path, value: Any) -> tuple[bool | None, dict[str, str]]:
    if value is None or isinstance(value, bool):
        return value, {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: colours must be true, false or a table, not {value!r}")
    palette: dict[str, str] = {}
    for key, colour in value.items():
        if key not in COLOUR_KEYS:
            raise ConfigError(f"{path}: colours.{key}: not one of {', '.join(COLOUR_KEYS)}")
        if not isinstance(colour, str) or colour.lower() not in COLOUR_NAMES:
            raise ConfigError(
                f"{path}: colours.{key} = {colour!r}: not one of {', '.join(COLOUR_NAMES)}"
            )
        palette[key] = colour.lower()
    return True, palette


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a number", bool: "true or false"}
    return names.get(kind, str(kind)) if isinstance(kind, type) else "a value"


def save(path: Path, values: Mapping[str, Any], drop: tuple[str, ...] = ()) -> None:
    """Write `values` over what the file held (other keys kept, those in `drop` taken
    out), mode 0600, atomically.

    The folder is made private (0700) when created. The file is written to a
    temporary name that is 0600 from its first byte, then renamed.
    """
    current: dict[str, Any] = {}
    try:
        with open(path, "rb") as f:
            current = tomllib.load(f)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot update it: {exc}") from None
    for key in drop:
        current.pop(key, None)
    current.update({k: v for k, v in values.items() if v is not None})
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dumps(current))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)


def dumps(values: Mapping[str, Any]) -> str:
    """TOML for our flat keys and one-level tables (tomllib reads, it does not write)."""
    lines, tables = [], []
    for key, value in values.items():
        if isinstance(value, dict):
            tables.append(
                f"\n[{key}]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in value.items())
            )
        else:
            lines.append(f"{key} = {_value(value)}\n")
    return "".join(lines) + "".join(tables)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # A JSON string is a TOML basic string, escapes included.
    return json.dumps(str(value), ensure_ascii=False)
