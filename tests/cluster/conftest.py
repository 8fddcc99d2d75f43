"""Real Redis for the cluster tests: one redis-server, or a Redis Cluster of three masters.

Never a mock: Debian's `redis-server` (installed by .ci/run), started here on free
loopback ports with no persistence unless a test asks for it, stopped by PID.
Every test that asks for `redis_server` (or `start_redis`) runs twice, once per
kind (`redis_kind`): `redis` (one redis-server, as a server alone's operator
runs it) and `redis-cluster` (three `redis-server --cluster-enabled yes` joined
by `redis-cli --cluster create`, no replicas): the same suite on both.

The Redis Cluster behind `redis_server` is started once per session (three
processes and the cluster's creation cost about a second) and flushed before
each test (FLUSHALL on every master: keys and streams; its health is checked
first, and it is started anew if a test left it broken). A test that needs its
own (a password, ACL users, TLS, a master killed, slots moved) asks
`start_redis`, which starts a private one of the same kind.

The nodes are real `chat-server` processes (tests/conftest.py `launch`) sharing
one key file.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from conftest import ServerProc, launch, stop_servers

REDIS = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
KINDS = ("redis", "redis-cluster")
#: Seconds a master of a test cluster may be silent before the others mark it failed.
NODE_TIMEOUT_MS = 3000
_HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is `alone`: scripts/test.sh runs them after the parallel part, in
    one process. They check what crosses between processes through Redis within a time
    (presence, accounts, deadlines); under four busy workers that propagation took longer
    than the tests allowed (a roster without a user of another node, a send `missing` to an
    account made a moment before), which says nothing about the product."""
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.alone)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A port whose cluster bus port (+10000) is free as well."""
    for _ in range(200):
        port = free_port()
        if port + 10000 < 65536 and _is_free(port + 10000):
            return port
    with socket.socket() as s:  # the ephemeral range is high here: pick lower ports
        for port in range(21000 + (id(s) % 997) * 7, 55000, 13):
            if _is_free(port) and _is_free(port + 10000):
                return port
    raise RuntimeError("no free port pair for a cluster node")


class _Group:
    """Signals for every process of a cluster at once (a test freezes "the Redis")."""

    def __init__(self, procs: list[subprocess.Popen[bytes]]) -> None:
        self._procs = procs

    def send_signal(self, sig: int) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def poll(self) -> int | None:
        codes = [p.poll() for p in self._procs]
        return None if any(c is None for c in codes) else codes[0]


@dataclass
class RedisProc:
    """One redis-server."""

    folder: Path
    port: int
    extra: tuple[str, ...] = ()
    password: str | None = None
    tls_port: int | None = None  # a TLS-only redis answers here (its --port is 0)
    tls_ca: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    kind = "redis"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def url_as(self, user: str, password: str) -> str:
        """The URL an ACL user logs in with."""
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        if self.tls_port is not None:
            return redis.Redis(
                host="127.0.0.1", port=self.tls_port, ssl=True, ssl_ca_certs=self.tls_ca
            )
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def node_clients(self) -> list[redis.Redis]:
        """A client of each server (one here)."""
        return [self.client()]

    def subscribers(self, channel: str) -> int:
        """How many subscribe to `channel`."""
        return int(dict(self.client().pubsub_numsub(channel))[channel.encode()])

    def start(self) -> None:
        args = [
            REDIS or "redis-server",
            "--port",
            str(self.port if self.tls_port is None else 0),  # TLS only: no plain port
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--logfile",
            str(self.folder / "redis.log"),
            *self.extra,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(self.client)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)


@dataclass
class RedisClusterProc:
    """A Redis Cluster of three masters on loopback ports (with `replicas`, that many
    replicas of each: `ports` then holds them too, and `redis-cli --cluster create` picks
    which are masters)."""

    folder: Path
    ports: list[int]
    extra: tuple[str, ...] = ()
    password: str | None = None
    tls: tuple[str, str] | None = None  # (certificate, key): TLS only, the CA is the cert
    replicas: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)
    kind = "redis-cluster"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        if self.tls is not None:
            return f"rediss+cluster://{auth}{hosts}?ssl_ca_certs={self.tls[0]}"
        return f"redis+cluster://{auth}{hosts}"

    def url_as(self, user: str, password: str) -> str:
        """The URL an ACL user logs in with."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+cluster://{user}:{password}@{hosts}"

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def proc(self) -> _Group:
        return _Group(self.procs)

    def _kw(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"password": self.password}
        if self.tls is not None:
            kw |= {"ssl": True, "ssl_ca_certs": self.tls[0]}
        return kw

    def client(self) -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports],
            require_full_coverage=False,
            **self._kw(),
        )

    def node_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, **self._kw())

    def node_clients(self) -> list[redis.Redis]:
        return [self.node_client(p) for p in self.ports]

    def subscribers(self, channel: str) -> int:
        """How many subscribe to shard channel `channel` (asked of the node serving it)."""
        node = self.client().get_node_from_key(channel)
        reply = self.node_client(node.port).execute_command("PUBSUB", "SHARDNUMSUB", channel)
        return int(reply[1])

    def node_id(self, port: int) -> str:
        return str(self.node_client(port).execute_command("CLUSTER", "MYID").decode())

    def owner_port(self, key: str) -> int:
        """The port of the master that serves `key` (or a channel)."""
        return int(self.client().get_node_from_key(key).port)

    def _args(self, port: int) -> list[str]:
        folder = self.folder / f"n{port}"
        folder.mkdir(exist_ok=True)
        args = [
            REDIS or "redis-server",
            "--port",
            str(port if self.tls is None else 0),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"nodes-{port}.conf",
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            # A lost master costs its own slots, not the whole cluster (docs/cluster.md).
            "--cluster-require-full-coverage",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--logfile",
            str(folder / "redis.log"),
            *self.extra,
        ]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.tls is not None:
            cert, key = self.tls
            args += ["--tls-port", str(port), "--tls-cluster", "yes"]
            args += ["--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert]
            args += ["--tls-auth-clients", "no"]
        return args

    def start_node(self, port: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            self._args(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for(lambda: self.node_client(port))
        return proc

    def start(self) -> None:
        """Start the three masters; the first time, make them a cluster (a restart finds
        its cluster in each node's nodes.conf)."""
        fresh = not (self.folder / f"n{self.ports[0]}" / f"nodes-{self.ports[0]}.conf").exists()
        self.procs = [self.start_node(p) for p in self.ports]
        if fresh:
            cli = [REDIS_CLI or "redis-cli", "--cluster", "create"]
            cli += [f"127.0.0.1:{p}" for p in self.ports]
            cli += ["--cluster-replicas", str(self.replicas), "--cluster-yes", *self._cli_auth()]
            subprocess.run(cli, check=True, capture_output=True, timeout=30)
        self.wait_ok()

    def masters(self) -> list[int]:
        """The ports of the masters now (a failover changes them)."""
        out = []
        for port in self.ports:
            with contextlib.suppress(redis.RedisError):
                role = self.node_client(port).execute_command("ROLE")
                if role[0] in (b"master", "master"):
                    out.append(port)
        return out

    def restart_node(self, i: int) -> None:
        """Start master `i` again (after a kill): it rejoins with its slots, empty."""
        self.procs[i] = self.start_node(self.ports[i])
        self.wait_ok()

    def _cli_auth(self) -> list[str]:
        out = ["-a", self.password, "--no-auth-warning"] if self.password else []
        if self.tls is not None:
            out += ["--tls", "--cacert", self.tls[0]]
        return out

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """redis-cli with this cluster's password and TLS."""
        return subprocess.run(
            [REDIS_CLI or "redis-cli", *args, *self._cli_auth()],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def slot_owner(self, slot: int) -> int:
        """The port of the master that serves `slot` now (asked of the cluster)."""
        for lo, hi, master, *_ in self.node_client(self.ports[0]).execute_command(
            "CLUSTER", "SLOTS"
        ):
            if lo <= slot <= hi:
                return int(master[1])
        raise LookupError(f"slot {slot} is served by no master")

    def move_slot(self, slot: int, to_port: int, pause: float = 0.0) -> None:
        """Move one slot and its keys to another master, as `redis-cli --cluster reshard`
        does (IMPORTING, MIGRATING, MIGRATE key by key, SETSLOT NODE on every master), with
        `pause` seconds after each key: a wider window in which clients meet ASK and
        TRYAGAIN."""
        from_port = self.slot_owner(slot)
        if from_port == to_port:
            return
        src, dst = self.node_client(from_port), self.node_client(to_port)
        src_id, dst_id = self.node_id(from_port), self.node_id(to_port)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        auth = ["AUTH", self.password] if self.password else []
        while True:
            names = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1)
            if not names:
                break
            src.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, *auth, "KEYS", *names)
            time.sleep(pause)
        for port in (to_port, from_port, *self.ports):
            self.node_client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def replica_of(self, port: int) -> int:
        """The port of the (first) replica of the master on `port`."""
        return int(self.node_client(port).info("replication")["slave0"]["port"])

    def asked(self) -> list[int]:
        """The nodes `healthy` asks (the chaos soak's cluster: only those alive)."""
        return self.ports

    def healthy(self, without: int | None = None) -> bool:
        """Every slot served, as every node sees it (`without`: but that node's port, a
        master killed whose replica has taken its place)."""
        try:
            for port in self.asked():
                if port == without:
                    continue
                text = self.node_client(port).execute_command("CLUSTER", "INFO").decode()
                info = dict(line.split(":", 1) for line in text.split() if ":" in line)
                if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != 16384:
                    return False
        except redis.RedisError:
            return False
        return True

    def wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test cluster on {self.ports} is not ok")
            time.sleep(0.05)

    def flush(self) -> None:
        """Nothing from an earlier test: every master's keys, and its scripts."""
        for c in self.node_clients():
            c.flushall()
            c.script_flush()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def _wait_for(make: Callable[[], redis.Redis]) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if make().ping():
                return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


AnyRedis = RedisProc | RedisClusterProc


def need_redis() -> None:
    if REDIS is None or REDIS_CLI is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; CI does)")


@pytest.fixture(params=KINDS)
def redis_kind(request: pytest.FixtureRequest) -> str:
    """Which Redis the test runs against: one redis-server, or a Redis Cluster."""
    return str(request.param)


@pytest.fixture(scope="session")
def _shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisClusterProc]]:
    """The session's Redis Cluster, started when a test first needs it."""
    made: list[RedisClusterProc] = []
    yield made
    for c in made:
        c.stop(signal.SIGKILL)


@pytest.fixture
def redis_of(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    _shared_cluster: list[RedisClusterProc],
) -> Iterator[Callable[[str], AnyRedis]]:
    """`redis_of(kind)`: a fresh redis-server, or the session's Redis Cluster flushed; the
    same one for the rest of the test when asked again."""
    need_redis()
    started: list[RedisProc] = []
    got: dict[str, AnyRedis] = {}

    def get(kind: str) -> AnyRedis:
        if kind not in got:
            got[kind] = make(kind)
        return got[kind]

    def make(kind: str) -> AnyRedis:
        if kind == "redis":
            folder = tmp_path / f"redis{len(started)}"
            folder.mkdir()
            r = RedisProc(folder, free_port())
            r.start()
            started.append(r)
            return r
        if _shared_cluster and not _shared_cluster[0].healthy():
            _shared_cluster.pop().stop(signal.SIGKILL)  # a test broke it: a new one
        if not _shared_cluster:
            folder = tmp_path_factory.mktemp("redis-cluster")
            c = RedisClusterProc(folder, [free_cluster_port() for _ in range(3)])
            c.start()
            _shared_cluster.append(c)
        shared = _shared_cluster[0]
        shared.proc.send_signal(signal.SIGCONT)  # a test that froze it and failed
        shared.flush()
        return shared

    yield get
    for r in started:
        r.stop(signal.SIGKILL)


@pytest.fixture
def start_redis(tmp_path: Path, redis_kind: str) -> Iterator[Callable[..., AnyRedis]]:
    """Start a private Redis of the test's kind (with a password, TLS, ... when asked)."""
    need_redis()
    started: list[AnyRedis] = []

    def start(
        *extra: str,
        password: str | None = None,
        tls_port: int | None = None,
        tls_ca: str | None = None,
        tls: tuple[str, str] | None = None,
    ) -> AnyRedis:
        folder = tmp_path / f"redis{len(started)}"
        folder.mkdir()
        r: AnyRedis
        if redis_kind == "redis":
            r = RedisProc(folder, tls_port or free_port(), tuple(extra), password, tls_port, tls_ca)
        else:
            ports = [free_cluster_port() for _ in range(3)]
            r = RedisClusterProc(folder, ports, tuple(extra), password, tls)
        r.start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop(signal.SIGKILL)


@pytest.fixture
def redis_server(redis_of: Callable[[str], AnyRedis], redis_kind: str) -> AnyRedis:
    return redis_of(redis_kind)


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., ServerProc]]:
    """A node of the cluster at `url`; every node of a test shares the key file."""
    started: list[ServerProc] = []

    def start(url: str, *extra: str, **kw: object) -> ServerProc:
        node = launch(
            tmp_path,
            "--cluster",
            url,
            *extra,
            log_name=f"node{len(started)}.log",
            **kw,  # type: ignore[arg-type]
        )
        started.append(node)
        return node

    yield start
    stop_servers(started)


@pytest.fixture
def three(redis_server: AnyRedis, start_node: Callable[..., ServerProc]) -> list[ServerProc]:
    return [start_node(redis_server.url) for _ in range(3)]


def at_rest(client: Any) -> list[bytes]:
    """Every key and every byte of every value Redis holds (streams' entries too)."""
    found: list[bytes] = []
    for key in client.scan_iter(count=1000):
        found.append(key)
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            found.append(client.get(key) or b"")
        elif kind == "hash":
            for k, v in client.hgetall(key).items():
                found += [k, v]
        elif kind == "zset":
            found += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "set":
            found += list(client.smembers(key))
        elif kind == "stream":
            for entry_id, fields in client.xrange(key, "-", "+"):
                found.append(entry_id)
                for k, v in fields.items():
                    found += [k, v]
        else:
            raise AssertionError(f"a {kind} at {key!r}: scan it too")
    return found


@pytest.fixture
def pair(
    tmp_path: Path, redis_server: AnyRedis
) -> Iterator[tuple[ServerProc, ServerProc, Callable[..., Any]]]:
    """Two nodes, each with a data folder (and control socket) of its own, one key file; and
    `cli(node or folder, *words)`: the real `chat-server` command given to that folder."""
    key = tmp_path / "cluster.key"
    nodes = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        nodes.append(launch(folder, "--cluster", redis_server.url, key_file=key))

    def cli(folder: Path | ServerProc, *words: str, stdin: str = "") -> Any:
        where = folder.users_file.parent if isinstance(folder, ServerProc) else folder
        where.mkdir(exist_ok=True)
        args = [sys.executable, "-m", "chat.server", *words, "--cluster", redis_server.url]
        args += ["--key-file", str(key), "--hash-cost", "10"]
        return subprocess.run(
            args, cwd=where, input=stdin, capture_output=True, text=True, timeout=60
        )

    yield nodes[0], nodes[1], cli
    for node in nodes:
        for c in node.clients:
            c.close()
        node.stop()
