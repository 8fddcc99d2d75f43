"""Operating the server: data folder, lock, start-up order, TLS files, warnings,
--version, --max-frame floor, --config, the systemd unit. Real processes, real files."""

from __future__ import annotations

import ctypes
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wire import WireClient, frame

SERVER = [sys.executable, "-m", "chat.server"]
ROOT = Path(__file__).parents[2]
UNIT = ROOT / "packaging" / "chat-server.service"
LISTENING = re.compile(r"listening on \S+ port (\d+)")
FAST = ["--host", "127.0.0.1", "--port", "0", "--hash-cost", "10"]


class Proc:
    """A chat-server started here, with its own log file."""

    def __init__(self, cwd: Path, args: list[str], log: Path, preexec_fn: object = None) -> None:
        self.log_path = log
        self.proc = subprocess.Popen(
            [*SERVER, *args, "--log-file", str(log)],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,  # type: ignore[arg-type]
        )
        self.port = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_listening(self, timeout: float = 15.0) -> Proc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := LISTENING.search(self.log()):
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            time.sleep(0.02)
        raise AssertionError("the server did not start listening")

    def client(self) -> WireClient:
        return WireClient("127.0.0.1", self.port)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def servers() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def _start(servers: list[Proc], cwd: Path, *args: str, log: str = "server.log") -> Proc:
    p = Proc(cwd, list(args), cwd / log)
    servers.append(p)
    return p.wait_listening()


def _run(cwd: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """One run to its end. The log goes beside cwd, so stderr holds only the error line
    and cwd holds only what the server itself created."""
    log = [] if args[:1] == ("cert",) or "--log-file" in args else ["--log-file", _log(cwd)]
    return subprocess.run(
        [*SERVER, *args, *log], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _log(cwd: Path) -> str:
    return str(cwd.parent / f"{cwd.name}.run.log")


def _one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def _login(server: Proc, name: str, password: str = "pw", register: bool = True) -> None:
    c = server.client()
    try:
        c.login(name, password, register=register)
        c.send({"type": "ping"})
        assert c.recv_type("pong") == {"type": "pong"}
    finally:
        c.close()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program is listening on."""
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    folder = tmp_path_factory.mktemp("tls")
    result = _run(folder, "cert", "generate", "--out-dir", str(folder), "--host", "localhost")
    assert result.returncode == 0, result.stderr
    return folder / "cert.pem", folder / "key.pem"


# --------------------------------------------------------------------------
# 5. --version
# --------------------------------------------------------------------------
def test_version_prints_the_name_and_the_package_version(tmp_path: Path) -> None:
    result = _run(tmp_path, "--version")
    assert result.returncode == 0, result
    assert result.stdout == f"chat-server {importlib.metadata.version('chat-epoll')}\n"
    assert _files(tmp_path) == []


# --------------------------------------------------------------------------
# 9. --data-dir
# --------------------------------------------------------------------------
def test_key_and_users_file_land_in_the_data_dir(tmp_path: Path, servers: list[Proc]) -> None:
    data = tmp_path / "state" / "chat"  # does not exist yet
    server = _start(servers, tmp_path, *FAST, "--data-dir", str(data))
    _login(server, "alice")
    assert server.stop() == 0
    assert _files(data) == ["history.db", "server.key", "users.db"]
    for name in _files(data):
        assert _mode(data / name) == 0o600, name
    assert _mode(data) == 0o700
    assert _files(tmp_path) == ["server.log", "state"]  # nothing in the current folder
    again = _start(servers, tmp_path, *FAST, "--data-dir", str(data), log="again.log")
    _login(again, "alice", register=False)


def test_explicit_files_override_the_data_dir(tmp_path: Path, servers: list[Proc]) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    users, messages = elsewhere / "accounts.db", elsewhere / "messages.db"
    server = _start(
        servers,
        tmp_path,
        *FAST,
        "--data-dir",
        str(data),
        "--users-file",
        str(users),
        "--history-file",
        str(messages),
    )
    _login(server, "alice")
    assert server.stop() == 0
    assert _files(data) == ["server.key"]
    assert _files(elsewhere) == ["accounts.db", "messages.db"]


def test_the_default_data_dir_is_the_current_folder(tmp_path: Path, servers: list[Proc]) -> None:
    server = _start(servers, tmp_path, *FAST)
    _login(server, "alice")
    assert server.stop() == 0
    assert _files(tmp_path) == ["history.db", "server.key", "server.log", "users.db"]


# --------------------------------------------------------------------------
# 2. One server per users file
# --------------------------------------------------------------------------
def test_a_second_server_on_the_same_data_dir_refuses_and_the_first_keeps_running(
    tmp_path: Path, servers: list[Proc]
) -> None:
    data = tmp_path / "data"
    first = _start(servers, tmp_path, *FAST, "--data-dir", str(data))
    _login(first, "alice")
    files = [name for name in _files(data) if name != "control.sock"]  # a socket: no bytes
    before = {name: (data / name).read_bytes() for name in files}
    second = _run(tmp_path, *FAST, "--data-dir", str(data), "--log-file", str(tmp_path / "2.log"))
    _one_line(second, 1, str(data), "in use by another chat-server")
    assert {name: (data / name).read_bytes() for name in files} == before
    assert _files(data) == sorted([*files, "control.sock"])  # the first one's, still there
    _login(first, "bob")  # the first one is unharmed
    assert first.stop() == 0
    third = _start(servers, tmp_path, *FAST, "--data-dir", str(data), log="3.log")
    _login(third, "alice", register=False)
    _login(third, "bob", register=False)  # nothing was lost


def test_a_second_server_naming_the_same_users_file_another_way_refuses(
    tmp_path: Path, servers: list[Proc]
) -> None:
    data = tmp_path / "data"
    first = _start(servers, tmp_path, *FAST, "--data-dir", str(data))
    _login(first, "alice")
    (tmp_path / "other").mkdir()
    second = _run(
        tmp_path / "other",
        *FAST,
        "--users-file",
        "../data/users.db",
        "--key-file",
        str(tmp_path / "other" / "k"),
        "--log-file",
        str(tmp_path / "2.log"),
    )
    _one_line(second, 1, "in use")
    assert _files(tmp_path / "other") == []  # not even its own key file


def test_the_lock_goes_with_a_killed_server(tmp_path: Path, servers: list[Proc]) -> None:
    data = tmp_path / "data"
    first = _start(servers, tmp_path, *FAST, "--data-dir", str(data))
    _login(first, "alice")
    first.proc.kill()
    first.proc.wait()
    second = _start(servers, tmp_path, *FAST, "--data-dir", str(data), log="2.log")
    _login(second, "alice", register=False)


# --------------------------------------------------------------------------
# 6. A start that fails creates nothing
# --------------------------------------------------------------------------
def test_port_in_use_creates_nothing_in_an_existing_data_dir(
    tmp_path: Path, busy_port: int
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = _run(
        tmp_path, "--host", "127.0.0.1", "--port", str(busy_port), "--data-dir", str(data)
    )
    _one_line(result, 1, f"cannot listen on 127.0.0.1:{busy_port}")
    assert _files(data) == []


def test_port_in_use_does_not_create_the_data_dir(tmp_path: Path, busy_port: int) -> None:
    data = tmp_path / "new" / "data"
    result = _run(
        tmp_path, "--host", "127.0.0.1", "--port", str(busy_port), "--data-dir", str(data)
    )
    _one_line(result, 1, "cannot listen")
    assert _files(tmp_path) == []


def test_port_in_use_in_the_current_folder_creates_no_key(tmp_path: Path, busy_port: int) -> None:
    """The issue's case: the default folder, a port already taken."""
    result = _run(tmp_path, "--host", "127.0.0.1", "--port", str(busy_port))
    _one_line(result, 1, "cannot listen")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("which", ["missing-cert", "missing-key", "mismatch", "garbage"])
def test_bad_tls_files_give_one_line_exit_2_and_create_nothing(
    tmp_path: Path, tls_pair: tuple[Path, Path], which: str
) -> None:
    cert, key = tls_pair
    data = tmp_path / "data"
    data.mkdir()
    other = tmp_path / "other"
    if which == "missing-cert":
        cert = tmp_path / "nope.pem"
    elif which == "missing-key":
        key = tmp_path / "nope.pem"
    elif which == "mismatch":
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
             str(other), "-out", str(tmp_path / "o.pem"), "-days", "1", "-subj", "/CN=x"],
            check=True, capture_output=True,
        )  # fmt: skip
        key = other
    else:
        cert = tmp_path / "garbage.pem"
        cert.write_text("not a certificate\n")
    result = _run(
        tmp_path, *FAST, "--data-dir", str(data), "--tls-cert", str(cert), "--tls-key", str(key)
    )
    _one_line(result, 2, "chat-server: error: TLS")
    assert _files(data) == []


def test_tls_cert_without_tls_key_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(tmp_path, *FAST, "--tls-cert", "cert.pem")
    _one_line(result, 2, "--tls-cert and --tls-key go together")
    assert _files(tmp_path) == []


def test_a_users_file_without_its_key_is_refused_and_no_new_key_is_made(
    tmp_path: Path, servers: list[Proc]
) -> None:
    server = _start(servers, tmp_path, *FAST)
    _login(server, "alice")
    assert server.stop() == 0
    (tmp_path / "server.key").unlink()
    result = _run(tmp_path, *FAST)
    _one_line(result, 1, "users.db", "server.key", "missing")
    assert not (tmp_path / "server.key").exists()


# --------------------------------------------------------------------------
# 7. A key file readable by others
# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_readable_by_group_or_others_is_warned_about(
    tmp_path: Path, servers: list[Proc], mode: int
) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(os.urandom(32))
    key.chmod(mode)
    server = _start(servers, tmp_path, *FAST)
    warnings = [line for line in server.log().splitlines() if " WARNING " in line]
    mentions = [line for line in warnings if str(key.name) in line and "chmod 600" in line]
    assert len(mentions) == 1, server.log()
    assert f"{mode:04o}" in mentions[0]
    _login(server, "alice")  # a warning, not a refusal


def test_a_private_key_file_is_not_warned_about(tmp_path: Path, servers: list[Proc]) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    server = _start(servers, tmp_path, *FAST)
    assert "chmod 600" not in server.log()


# --------------------------------------------------------------------------
# 8. --max-frame below what a valid auth needs
# --------------------------------------------------------------------------
def _largest_auth() -> bytes:
    """The longest valid auth, as a client using Python's json.dumps writes it."""
    return json.dumps(
        {"type": "auth", "user": "N" * 32, "password": "\U0001f600" * 256, "register": False}
    ).encode()


SHORTEST_AUTH = b'{"type":"auth","user":"A","password":"p"}'


@pytest.mark.parametrize("value", ["10", str(len(SHORTEST_AUTH) - 1)])
def test_max_frame_too_small_for_any_auth_is_refused(tmp_path: Path, value: str) -> None:
    result = _run(tmp_path, *FAST, "--max-frame", value)
    line = _one_line(result, 2, f"--max-frame {value}")
    assert "auth" in line
    assert _files(tmp_path) == []


def test_a_max_frame_too_small_for_long_logins_warns_and_short_ones_work(
    tmp_path: Path, servers: list[Proc]
) -> None:
    """Small frames are a legitimate choice (tests use 64): warn, do not refuse."""
    server = _start(servers, tmp_path, *FAST, "--max-frame", "64")
    assert "--max-frame 64 is below" in server.log() and "WARNING" in server.log()
    c = server.client()
    try:
        c.send_raw(frame(b'{"type":"auth","user":"al","password":"pw","register":true}'))
        assert c.recv() == {"type": "auth_ok", "user": "al"}
    finally:
        c.close()


def test_at_the_full_size_the_largest_valid_auth_fits(tmp_path: Path, servers: list[Proc]) -> None:
    floor = len(_largest_auth())
    server = _start(servers, tmp_path, *FAST, "--max-frame", str(floor))
    assert "--max-frame" not in server.log()  # no warning at the full size
    register_frame = json.dumps(
        {"type": "auth", "user": "N" * 32, "password": "\U0001f600" * 256, "register": True}
    ).encode()
    assert len(register_frame) < floor
    c = server.client()
    try:
        c.send_raw(frame(register_frame))
        assert c.recv() == {"type": "auth_ok", "user": "N" * 32}
    finally:
        c.close()
    c = server.client()
    try:
        c.send_raw(frame(_largest_auth()))
        assert c.recv() == {"type": "auth_ok", "user": "N" * 32}
    finally:
        c.close()


# --------------------------------------------------------------------------
# Plain TCP on a non-loopback address
# --------------------------------------------------------------------------
CLEAR = "passwords would cross the network in clear"


@pytest.mark.parametrize("host", ["0.0.0.0", ""])
def test_listening_beyond_loopback_without_tls_is_warned_about(
    tmp_path: Path, servers: list[Proc], host: str
) -> None:
    server = _start(servers, tmp_path, "--host", host, "--port", "0", "--hash-cost", "10")
    lines = [line for line in server.log().splitlines() if CLEAR in line]
    assert len(lines) == 1 and " WARNING " in lines[0], server.log()


def _has_ipv6_loopback() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2", "::1"])
def test_loopback_without_tls_is_not_warned_about(
    tmp_path: Path, servers: list[Proc], host: str
) -> None:
    if host == "::1" and not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    server = _start(servers, tmp_path, "--host", host, "--port", "0", "--hash-cost", "10")
    assert CLEAR not in server.log()


def test_tls_beyond_loopback_is_not_warned_about(
    tmp_path: Path, servers: list[Proc], tls_pair: tuple[Path, Path]
) -> None:
    cert, key = tls_pair
    server = _start(
        servers,
        tmp_path,
        *["--host", "0.0.0.0", "--port", "0", "--hash-cost", "10"],
        *["--tls-cert", str(cert), "--tls-key", str(key)],
    )
    assert CLEAR not in server.log()
    assert f"TLS with certificate {cert}" in server.log()


# --------------------------------------------------------------------------
# chat-server cert generate
# --------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_cert_generate_writes_a_pair_the_server_starts_with(
    tmp_path: Path, servers: list[Proc]
) -> None:
    out = tmp_path / "tls"
    result = _run(tmp_path, "cert", "generate", "--out-dir", str(out), "--host", "localhost")
    assert result.returncode == 0, result.stderr
    assert _files(out) == ["cert.pem", "key.pem"]
    assert _mode(out / "key.pem") == 0o600
    assert "--tls-ca" in result.stdout and str(out / "cert.pem") in result.stdout
    again = _run(tmp_path, "cert", "generate", "--out-dir", str(out))
    _one_line(again, 1, "exists")
    server = _start(
        servers,
        tmp_path,
        *FAST,
        *["--tls-cert", str(out / "cert.pem"), "--tls-key", str(out / "key.pem")],
    )
    assert "TLS with certificate" in server.log()


def test_cert_without_a_subcommand_is_one_line(tmp_path: Path) -> None:
    _one_line(_run(tmp_path, "cert"), 2)
    _one_line(_run(tmp_path, "cert", "generate"), 2, "--out-dir")


# --------------------------------------------------------------------------
# 18. --config FILE
# --------------------------------------------------------------------------
def test_a_server_runs_from_a_config_file_alone(tmp_path: Path, servers: list[Proc]) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    conf = etc / "chat-server.toml"
    conf.write_text(
        'host = "127.0.0.1"\nport = 0\nhash-cost = 10\ndata-dir = "state"\n'
        'max-clients = 50\nlog-level = "debug"\n'
    )
    server = _start(servers, tmp_path, "--config", str(conf))
    _login(server, "alice")
    assert "max_clients=50," in server.log()
    assert " DEBUG chat.server.epoll: epoll_wait" in server.log()
    assert server.stop() == 0
    assert _files(etc / "state") == ["history.db", "server.key", "users.db"]  # relative


def test_the_command_line_wins_over_the_config_file(tmp_path: Path, servers: list[Proc]) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('host = "127.0.0.1"\nport = 0\nhash-cost = 10\nmax-clients = 1\n')
    server = _start(servers, tmp_path, "--config", str(conf), "--max-clients", "3")
    assert "max_clients=3," in server.log()
    a, b = server.client(), server.client()  # two at once: the file's limit of 1 is not used
    try:
        a.login("alice", "pw")
        b.login("bob", "pw")
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("max-clientz = 3", "unknown key 'max-clientz'"),
        ("port = 'seven'", "must be an integer"),
        ("port = [", "not valid TOML"),
    ],
)
def test_a_bad_config_file_is_one_line_exit_2_and_creates_nothing(
    tmp_path: Path, text: str, word: str
) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(text)
    _one_line(_run(tmp_path, "--config", str(conf)), 2, word, str(conf))
    assert _files(tmp_path) == ["c.toml"]


def test_the_example_config_file_starts_a_server(tmp_path: Path, servers: list[Proc]) -> None:
    example = ROOT / "packaging" / "chat-server.toml.example"
    server = _start(servers, tmp_path, "--config", str(example), *FAST, "--data-dir", "d")
    _login(server, "alice", "eight or more")  # the example asks for min-password = 8


# --------------------------------------------------------------------------
# 18. The systemd unit
# --------------------------------------------------------------------------
def _unit() -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallFilter": "@system-service",
    "UMask": "0077",
    "DynamicUser": "yes",
    "StateDirectory": "chat-server",
}


def test_the_unit_carries_the_hardening_options() -> None:
    service = _unit()["Service"]
    for key, value in HARDENING.items():
        assert value in service.get(key, []), key
    assert int(service["LimitNOFILE"][0]) >= 2048
    assert "--data-dir /var/lib/chat-server" in service["ExecStart"][0]
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_every_option_of_the_unit_s_command_lines_exists(tmp_path: Path) -> None:
    """Both ExecStart lines (plain, and TLS commented out) parse with the real parser."""
    lines = [
        line.lstrip("#").split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.lstrip("#").startswith("ExecStart=")
    ]
    assert len(lines) == 2
    for line in lines:
        argv = shlex.split(line.replace("${CREDENTIALS_DIRECTORY}", "/run/credentials/x"))
        assert argv[0] == "/usr/local/bin/chat-server"
        conf = tmp_path / "empty.toml"
        conf.write_text("")
        argv = [conf.as_posix() if a == "/etc/chat-server/chat-server.toml" else a for a in argv]
        check = (
            "import sys; from chat.server.ops.cli import parse_args, _config; "
            "print(_config(parse_args(sys.argv[1:])).data_dir)"
        )
        result = subprocess.run(
            [sys.executable, "-c", check, *argv[1:]], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "/var/lib/chat-server"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "chat-server.service"  # verify needs the ExecStart binary to exist
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/chat-server", sys.executable))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert str(unit) not in result.stderr, result.stderr  # no "Unknown key ..." for our file
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if security.returncode == 0 and (
        m := re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    ):
        assert float(m.group(1)) <= 2.0, security.stdout  # "OK" in systemd's words


PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def _deny_write_execute() -> None:  # in the child, before exec: inherited across exec
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        os._exit(97)


def _kernel_has_mdwe() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "pass"], preexec_fn=_deny_write_execute, check=False
    )
    return probe.returncode == 0


def test_the_server_works_under_memory_deny_write_execute(
    tmp_path: Path, servers: list[Proc]
) -> None:
    """MemoryDenyWriteExecute=yes in the unit: the kernel's own MDWE (Linux 6.3+) here."""
    if not _kernel_has_mdwe():
        pytest.skip("the kernel has no PR_SET_MDWE (Linux 6.3+)")
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mmap\ntry:\n mmap.mmap(-1, 4096, prot=7)\nexcept OSError:\n print('refused')",
        ],
        preexec_fn=_deny_write_execute,
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == "refused"  # the protection is really on in the child
    p = Proc(tmp_path, FAST, tmp_path / "server.log", preexec_fn=_deny_write_execute)
    servers.append(p)
    server = p.wait_listening()
    _login(server, "alice")
    _login(server, "alice", register=False)
    assert server.stop() == 0


# --------------------------------------------------------------------------
# The new options are on the command line (the core uses them)
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["--auth-timeout", "0"],
        ["--frame-timeout", "-1"],
        ["--max-total-outbuf", "10"],
        ["--max-total-outbuf", "2048", "--max-outbuf", "4096"],
        ["--max-unauth-per-addr", "-1"],
        ["--hash-threads", "0"],
        ["--hash-queue", "0"],
        ["--data-dir"],
    ],
    ids=" ".join,
)
def test_bad_values_of_the_new_options_are_one_line_exit_2(tmp_path: Path, args) -> None:
    _one_line(_run(tmp_path, *FAST, *args), 2)
    assert _files(tmp_path) == []


def test_the_new_options_reach_the_running_server(tmp_path: Path, servers: list[Proc]) -> None:
    server = _start(
        servers,
        tmp_path,
        *FAST,
        *["--auth-timeout", "7.5", "--frame-timeout", "4", "--max-total-outbuf", "9999999"],
        *["--max-unauth-per-addr", "0", "--hash-threads", "2", "--hash-queue", "17"],
    )
    start_line = next(line for line in server.log().splitlines() if "starting:" in line)
    for text in (
        "auth_timeout=7.5",
        "frame_timeout=4.0",
        "max_total_outbuf=9999999",
        "max_unauth_per_addr=0",
        "hash_threads=2",
        "hash_queue=17",
    ):
        assert text in start_line, text


def test_a_server_without_cluster_never_loads_the_redis_client(server) -> None:
    """The embedded default needs no Redis: redis-py (and its C parser, hiredis) is imported
    only with --cluster. Checked in the running process's memory map after a login."""
    _login(server, "alice")
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    assert "libchatdispatch" in maps  # the map is the server's: its native library is there
    assert "hiredis" not in maps
