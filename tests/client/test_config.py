"""The config file: XDG place, the command line wins, a password only in a private file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from chat.client import cli
from chat.client.config import ClientConfig, ConfigError, default_path, dumps, load, save


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_the_xdg_place_and_its_fallback() -> None:
    assert default_path({"XDG_CONFIG_HOME": "/x/conf", "HOME": "/home/a"}) == Path(
        "/x/conf/chat-client/config.toml"
    )
    # A relative XDG_CONFIG_HOME is invalid by the spec: ignored.
    assert default_path({"XDG_CONFIG_HOME": "rel", "HOME": "/home/a"}) == Path(
        "/home/a/.config/chat-client/config.toml"
    )


def test_a_missing_file_is_an_empty_config_unless_named(tmp_path: Path) -> None:
    assert load(tmp_path / "none.toml") == ClientConfig()
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "none.toml", required=True)


def test_every_key_is_read_and_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        'host = "h"\nport = 7000\nuser = "alice"\ntls = true\nbell = false\n'
        '[colours]\nprivate = "Cyan"\n',
    )
    conf = load(path)
    assert (conf.host, conf.port, conf.user, conf.tls, conf.bell) == (
        "h",
        7000,
        "alice",
        True,
        False,
    )
    assert conf.colours is True and conf.palette == {"private": "cyan"}
    assert load(write(tmp_path / "d.toml", "colours = false\n")).colours is False


def test_a_ca_file_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'tls-ca = "certs/ca.pem"\n')
    assert load(path).tls_ca == str(tmp_path / "certs" / "ca.pem")
    path = write(tmp_path / "d.toml", 'tls-ca = "/etc/ca.pem"\n')
    assert load(path).tls_ca == "/etc/ca.pem"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("prot = 1\n", "unknown key 'prot'"),
        ('port = "7777"\n', "port must be a number"),
        ("port = true\n", "port must be a number"),
        ("bell = 1\n", "bell must be true or false"),
        ("colours = 3\n", "colours must be true, false or a table"),
        ('[colours]\nprivate = "pink"\n', "not one of default, black"),
        ('[colours]\nbackground = "red"\n', "colours.background: not one of"),
        ("host = \n", "not valid TOML"),
    ],
)
def test_mistakes_are_one_line_naming_the_file(tmp_path: Path, text: str, reason: str) -> None:
    path = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError, match=reason) as info:
        load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_password_is_used_only_from_a_private_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'password = "secret"\n', mode=0o640)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == (
        f"{path} holds a password and others can read it (mode 0640): "
        f"chmod 600 {path}, or remove the password"
    )
    os.chmod(path, 0o600)
    assert load(path).password == "secret"
    # Without a password the mode is the user's business.
    assert load(write(tmp_path / "open.toml", 'user = "a"\n', mode=0o644)).user == "a"


def test_save_writes_a_private_file_and_keeps_other_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "conf" / "c.toml", 'bell = false\n[colours]\nmention = "red"\n', 0o644)
    save(path, {"host": 'h"x', "port": 7000, "user": "alice", "tls": None})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conf = load(path)
    assert (conf.host, conf.port, conf.user, conf.bell) == ('h"x', 7000, "alice", False)
    assert conf.palette == {"mention": "red"} and conf.tls is None


def test_save_makes_a_private_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "c.toml"
    save(path, {"user": "аня"})
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load(path).user == "аня"


def test_dumps_is_toml_for_our_values() -> None:
    assert dumps({"a": True, "b": 3, "c": "x\\y", "t": {"k": "v"}}) == (
        'a = true\nb = 3\nc = "x\\\\y"\n\n[t]\nk = "v"\n'
    )


def args_for(tmp_path: Path, text: str, *argv: str, env: dict[str, str] | None = None) -> object:
    write(tmp_path / "chat-client" / "config.toml", text)
    args = cli.build_parser().parse_args(list(argv))
    cli.apply_config(args, {"XDG_CONFIG_HOME": str(tmp_path), **(env or {})})
    return args


def test_the_command_line_wins_over_the_file_and_the_file_over_the_defaults(
    tmp_path: Path,
) -> None:
    text = 'host = "file-host"\nport = 1234\nuser = "fileuser"\nbell = false\ntls = true\n'
    args = args_for(tmp_path, text, "--port", "7000", "--bell")
    assert (args.host, args.port, args.user, args.bell, args.tls) == (
        "file-host",
        7000,
        "fileuser",
        True,
        True,
    )
    args = args_for(tmp_path, "")
    assert (args.host, args.port, args.user, args.bell, args.colour, args.tls) == (
        "127.0.0.1",
        7777,
        None,
        True,
        True,
        False,
    )
    assert args_for(tmp_path, "", env={"NO_COLOR": "1"}).colour is False
    args = args_for(tmp_path, 'tls-ca = "/ca.pem"\n', "--tls")  # --tls alone: the file's CA
    assert (args.tls, args.tls_ca) == (True, "/ca.pem")
    args = args_for(tmp_path, 'tls-ca = "/ca.pem"\n', "--no-tls")
    assert (args.tls, args.tls_ca) == (False, None)
    assert args_for(tmp_path, "colours = false\n", "--colour").colour is True


def test_the_password_order_is_option_environment_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(cli.PASSWORD_ENV, raising=False)
    args = args_for(tmp_path, 'password = "from-file"\n')
    assert cli.known_password(args) == "from-file"
    monkeypatch.setenv(cli.PASSWORD_ENV, "from-env")
    assert cli.known_password(args) == "from-env"
    args = args_for(tmp_path, 'password = "from-file"\n', "--password", "from-option")
    assert cli.known_password(args) == "from-option"
