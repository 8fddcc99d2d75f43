"""--config FILE: every option as a TOML key, checked like the command line.

These run the real parser on real files in-process; tests/e2e/test_server_ops.py
starts servers from config files.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from chat.server.net.listeners import ListenSpec
from chat.server.ops import cli
from chat.server.ops.config_file import (
    ConfigFileError,
    SettingsError,
    config_keys,
    read_config_file,
)

EXAMPLE = Path(__file__).parents[2] / "packaging" / "chat-server.toml.example"


def _parse(capsys: pytest.CaptureFixture[str], *argv: str) -> argparse.Namespace:
    return cli.parse_args(list(argv))


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(list(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("chat-server: error: "), err
    return lines[0]


def _write(tmp_path: Path, text: str, name: str = "chat.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _actions() -> list[argparse.Action]:
    return cli.build_parser()._actions


def _sample(action: argparse.Action) -> Any:
    """A valid TOML value for the option."""
    if isinstance(action, argparse._AppendAction):  # repeatable: an array
        return ["127.0.0.1:7777"]
    if action.dest == "metrics":
        return "127.0.0.1:9100"
    if action.nargs == 0:  # a flag
        return True
    kind = getattr(action.type, "kind", None)
    if kind is not None:
        return kind(action.type.lo)  # type: ignore[union-attr]
    if action.choices is not None:
        return next(iter(action.choices))
    return "some/path" if action.type is Path else "127.0.0.1"


def _toml(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def test_every_command_line_option_is_a_key(tmp_path: Path) -> None:
    keys = config_keys(_actions())
    options = {
        opt[2:]
        for action in _actions()
        for opt in action.option_strings
        if opt.startswith("--") and opt not in ("--help", "--version", "--config")
    }
    assert set(keys) == options
    for name in (
        "data-dir",
        "tls-cert",
        "tls-key",
        "auth-timeout",
        "frame-timeout",
        "max-total-outbuf",
        "max-unauth-per-addr",
        "hash-threads",
        "hash-queue",
    ):
        assert name in keys, name
    text = "\n".join(f"{key} = {_toml(_sample(action))}" for key, action in keys.items())
    values = read_config_file(_write(tmp_path, text), _actions())
    assert set(values) == {action.dest for action in keys.values()}


def test_a_flag_is_a_boolean_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    on = _write(tmp_path, "no-history = true\nhistory-days = 7\noffline-max = 5000\n")
    config = cli._config(_parse(capsys, "--config", str(on)))
    assert config.keep_messages is False
    assert (config.history_days, config.offline_max) == (7.0, 5000)
    off = _write(tmp_path, "no-history = false\n")
    assert cli._config(_parse(capsys, "--config", str(off))).keep_messages is True


def test_values_from_the_file_reach_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        'host = "127.0.0.1"\nport = 0\nmax-clients = 7\nidle-timeout = 12\n'
        'ack-timeout = 2.5\nlog-level = "debug"\nmax-unauth-per-addr = 0\nhash-threads = 3\n',
    )
    config = cli._config(_parse(capsys, "--config", str(path)))
    assert (config.host, config.port, config.max_clients) == ("127.0.0.1", 0, 7)
    assert config.idle_timeout == 12.0 and config.ack_timeout == 2.5
    assert config.max_unauth_per_addr == 0 and config.hash_threads == 3
    assert _parse(capsys, "--config", str(path)).log_level == "DEBUG"


def test_the_command_line_wins_over_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, 'max-clients = 7\nport = 1234\ndata-dir = "d"\n')
    args = _parse(capsys, "--max-clients", "9", "--config", str(path), "--data-dir", "x")
    config = cli._config(args)
    assert config.max_clients == 9  # the command line, given before --config too
    assert config.port == 1234  # the file, where the command line is silent
    assert config.data_dir == Path("x")


def test_relative_paths_are_taken_from_the_folder_of_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    path = _write(etc, 'data-dir = "state"\nlog-file = "/var/log/x.log"\ntls-cert = "c.pem"\n')
    args = _parse(capsys, "--config", str(path), "--tls-key", "k.pem")
    assert args.data_dir == etc / "state"
    assert args.log_file == Path("/var/log/x.log")
    assert args.tls_cert == etc / "c.pem"
    assert args.tls_key == Path("k.pem")  # the command line: from the current folder
    config = cli._config(args)
    assert config.users_file == etc / "state" / "users.db"
    assert config.key_file == etc / "state" / "server.key"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("max-client = 5", ["unknown key 'max-client'", "did you mean 'max-clients'"]),
        ("max_clients = 5", ["unknown key 'max_clients'", "'max-clients'"]),
        ("colour = 'blue'", ["unknown key 'colour'"]),
        ("help = true", ["unknown key 'help'"]),
        ("config = 'other.toml'", ["unknown key 'config'"]),
        ("port = 'http'", ["key 'port'", "must be an integer, not a string"]),
        ("port = 77.5", ["key 'port'", "must be an integer, not a float"]),
        ("port = true", ["key 'port'", "must be an integer, not a boolean"]),
        ("port = 70000", ["key 'port'", "out of range"]),
        ("threads = 0", ["key 'threads'", "out of range"]),
        ("idle-timeout = '5'", ["key 'idle-timeout'", "must be a number"]),
        ("ack-timeout = -1", ["key 'ack-timeout'", "out of range"]),
        ("host = 127", ["key 'host'", "must be a string, not an integer"]),
        ("data-dir = ['a']", ["key 'data-dir'", "must be a string, not an array"]),
        ("data-dir = ''", ["key 'data-dir'", "must not be empty"]),
        ("log-level = 'LOUD'", ["key 'log-level'", "not one of"]),
        ("[server]\nport = 1", ["key 'server'", "is a table", "plain keys"]),
        ("port = ", ["not valid TOML"]),
        ("port = 1\nport = 2", ["not valid TOML"]),
    ],
)
def test_a_bad_file_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: list[str]
) -> None:
    path = _write(tmp_path, text)
    line = _refused(capsys, "--config", str(path))
    assert str(path) in line
    for word in words:
        assert word in line, (word, line)


def test_a_listen_array_gives_every_listener(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--listen` may be repeated: its key takes an array (a single string is refused)."""
    path = _write(tmp_path, 'listen = ["127.0.0.1:7000", "[::1]:7001"]\n')
    config = cli._config(_parse(capsys, "--config", str(path)))
    assert config.listen == (ListenSpec("127.0.0.1", 7000), ListenSpec("::1", 7001))
    tls = _write(tmp_path, 'listen = ["[::1]:7001,tls"]\ntls-cert = "c.pem"\ntls-key = "k.pem"\n')
    config = cli._config(_parse(capsys, "--config", str(tls)))
    assert config.listen == (ListenSpec("::1", 7001, tls=True),)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('listen = "127.0.0.1:7000"', ["key 'listen'", "must be an array of strings"]),
        ('listen = ["nonsense"]', ["key 'listen'", "port is not a number"]),
        ("listen = [7000]", ["key 'listen'"]),
    ],
)
def test_a_bad_listen_key_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: list[str]
) -> None:
    path = _write(tmp_path, text + "\n")
    line = _refused(capsys, "--config", str(path))
    assert str(path) in line, line
    for word in words:
        assert word in line, (word, line)


def test_a_missing_config_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(capsys, "--config", str(tmp_path / "nope.toml"))
    assert "cannot read" in line


def test_a_file_that_is_not_utf8_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"host = '\xff'\n")
    assert "not UTF-8" in _refused(capsys, "--config", str(path))


def test_the_checks_after_parsing_apply_to_file_values_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "--max-frame 20 is below" in _refused(
        capsys, "--config", str(_write(tmp_path, "max-frame = 20"))
    )
    assert "--tls-cert and --tls-key go together" in _refused(
        capsys, "--config", str(_write(tmp_path, "tls-cert = 'c.pem'"))
    )


def test_read_config_file_raises_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as info:
        read_config_file(_write(tmp_path, "port = [\n1,\n"), _actions())
    assert "\n" not in str(info.value)


def test_the_example_file_loads_and_lists_every_option(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    read_config_file(EXAMPLE, _actions())  # as shipped
    # Uncommented, every line "# key = value" must be valid too.
    uncommented = re.sub(r"^# (?=[a-z][a-z-]* = )", "", text, flags=re.M)
    values = read_config_file(_write(tmp_path, uncommented, "all.toml"), _actions())
    assert (
        set(config_keys(_actions()))
        - {key for key in config_keys(_actions()) if config_keys(_actions())[key].dest in values}
        == set()
    )


def test_the_registration_policy_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "min-password = 8\nrefuse-case-variants = true\n")
    config = cli._config(_parse(capsys, "--config", str(path)))
    assert (config.min_password, config.refuse_case_variants) == (8, True)
    defaults = cli._config(_parse(capsys))
    assert (defaults.min_password, defaults.refuse_case_variants) == (1, False)
    for text, word in (
        ("min-password = 0", "out of range"),
        ("min-password = 257", "out of range"),
        ("min-password = '8'", "must be an integer"),
        ("refuse-case-variants = 'yes'", "must be true or false"),
    ):
        line = _refused(capsys, "--config", str(_write(tmp_path, text)))
        assert word in line, (text, line)


def test_the_example_file_recommends_the_registration_policy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On in the sample config, off (the contract's bounds) by default."""
    config = cli._config(_parse(capsys, "--config", str(EXAMPLE)))
    assert (config.min_password, config.refuse_case_variants) == (8, True)


def test_read_settings_raises_instead_of_exiting(tmp_path: Path) -> None:
    """A reload (SIGHUP) reads the settings again with the start's checks, and must survive
    a bad file: one SettingsError line, never SystemExit."""
    for text, word in (
        ("port = [", "not valid TOML"),
        ("max-frame = 20", "--max-frame 20 is below"),
        ("tls-cert = 'c.pem'", "--tls-cert and --tls-key go together"),
    ):
        path = _write(tmp_path, text)
        with pytest.raises(SettingsError) as info:
            cli.read_settings(["--config", str(path)])
        assert word in str(info.value) and "\n" not in str(info.value)
    good = _write(tmp_path, "rate-burst = 3\n")
    assert cli.read_settings(["--config", str(good), "--rate-limit", "2"]).rate_burst == 3


def test_login_delay_from_the_command_line_or_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli._config(_parse(capsys)).login_delay == 2.0  # docs/operations.md
    assert cli._config(_parse(capsys, "--login-delay", "0.2")).login_delay == 0.2
    assert cli._config(_parse(capsys, "--login-delay", "0")).login_delay == 0.0  # off
    path = _write(tmp_path, "login-delay = 5\n")
    assert cli._config(_parse(capsys, "--config", str(path))).login_delay == 5.0
    assert "--login-delay" in _refused(capsys, "--login-delay", "-1")
    assert "--login-delay" in _refused(capsys, "--login-delay", "3601")
