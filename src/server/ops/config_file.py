"""`--config FILE`: the server's command-line options, as a TOML file.

Every key is a long option without its two dashes (`max-clients = 2000`,
`tls-cert = "/etc/chat-server/cert.pem"`), at the top level of the file. The
value has the option's type (a TOML integer for an integer option, an integer
or a float for seconds, a string for a path or a name) and the same ranges.
A relative path is taken from the folder of the config file, not from where
the server was started. The command line wins over the file.

Anything else is an error of one line: a key that is not an option (with the
closest option named), a table, a wrong type, a value out of range, a file
that is not TOML.
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["ConfigFileError", "SettingsError", "config_keys", "read_config_file"]

#: Options that make no sense in a file.
NOT_IN_FILE = frozenset({"help", "version", "config"})


class SettingsError(Exception):
    """The settings (command line, config file, defaults) cannot be used; one line."""


class ConfigFileError(SettingsError):
    """The config file cannot be used; the message is one line."""


def config_keys(actions: Iterable[argparse.Action]) -> dict[str, argparse.Action]:
    """Key -> option, for every long option that a file may set."""
    keys: dict[str, argparse.Action] = {}
    for action in actions:
        for option in action.option_strings:
            if option.startswith("--") and option[2:] not in NOT_IN_FILE:
                keys[option[2:]] = action
    return keys


def read_config_file(path: Path, actions: Iterable[argparse.Action]) -> dict[str, Any]:
    """dest -> value for every key of the file, checked like the command line."""
    path = Path(path)
    where = f"config file {path}"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigFileError(f"{where}: cannot read ({exc.strerror or exc})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigFileError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{where}: not valid TOML: {_one_line(str(exc))}") from None
    keys = config_keys(actions)
    values: dict[str, Any] = {}
    for key, value in doc.items():
        action = keys.get(key)
        if isinstance(value, dict):
            raise ConfigFileError(f"{where}: key {key!r} is a table; options are plain keys")
        if action is None:
            raise ConfigFileError(f"{where}: unknown key {key!r}{_hint(key, keys)}")
        values[action.dest] = _convert(action, value, f"{where}: key {key!r}", path.parent)
    return values


def _hint(key: str, keys: dict[str, argparse.Action]) -> str:
    spelled = key.replace("_", "-").lstrip("-")
    if spelled in keys:
        return f" (keys are spelled like the options: {spelled!r})"
    close = difflib.get_close_matches(spelled, list(keys), n=1)
    return f" (did you mean {close[0]!r}?)" if close else " (every key is a long option)"


def _convert(action: argparse.Action, value: Any, where: str, base: Path) -> Any:
    if isinstance(action, argparse._AppendAction):  # repeatable (`listen`): an array
        if type(value) is not list:
            raise ConfigFileError(f"{where}: must be an array of strings, not {_kind(value)}")
        one = argparse.Action(action.option_strings, action.dest, type=action.type)
        return [_convert(one, item, where, base) for item in value]
    if action.nargs == 0:  # a flag (store_true / store_false)
        if type(value) is not bool:
            raise ConfigFileError(f"{where}: must be true or false, not {_kind(value)}")
        return value if action.const is True else not value
    parse: Callable[[str], Any] | None = action.type  # type: ignore[assignment]
    kind = getattr(parse, "kind", None)
    if kind is int:
        if type(value) is not int:
            raise ConfigFileError(f"{where}: must be an integer, not {_kind(value)}")
    elif kind is float:
        if type(value) not in (int, float):
            raise ConfigFileError(f"{where}: must be a number, not {_kind(value)}")
    elif type(value) is not str:
        raise ConfigFileError(f"{where}: must be a string, not {_kind(value)}")
    if parse is Path:
        if not value:
            raise ConfigFileError(f"{where}: must not be empty")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    check = getattr(parse, "check", None)
    if check is not None:
        try:
            return check(value)
        except ValueError as exc:
            raise ConfigFileError(f"{where}: {exc}") from None
    try:
        converted = parse(value) if parse is not None else value
    except argparse.ArgumentTypeError as exc:
        raise ConfigFileError(f"{where}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigFileError(f"{where}: {value!r} is not one of {choices}")
    return converted


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names[list] = "an array"
    return names.get(type(value), type(value).__name__)


def _one_line(text: str) -> str:
    return " ".join(text.split())
