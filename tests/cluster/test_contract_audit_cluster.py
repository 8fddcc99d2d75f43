"""The contract audit's cluster-only statements (tests/e2e/test_contract_audit.py has the rest).

Protocol v1.2 sections 8 and 10: "In a cluster they act on every process" and "Every
rule of this page holds across the processes of a cluster". The rest of the suite
gave the operator's kick, ban, delete, passwd and list to one node and watched the
other; registration by invitation (`--registration invite` with the codes of
`chat-server invite create`) it checked on a server alone only. Two real nodes
with their own folders and one key file, on one redis-server and on a Redis Cluster.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ServerProc, launch
from e2e.server_support import PASSWORD

from .conftest import AnyRedis

#: The installed console script, as an operator runs it.
CHAT_SERVER = str(Path(sys.executable).with_name("chat-server"))


@pytest.fixture
def invite_pair(
    tmp_path: Path, redis_server: AnyRedis
) -> Iterator[tuple[ServerProc, ServerProc, Callable[..., subprocess.CompletedProcess[str]]]]:
    """Two nodes started with `--registration invite`, and `cli(node, *words)`: the
    operator's command given that node's own options."""
    key = tmp_path / "cluster.key"
    nodes = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        nodes.append(
            launch(folder, "--cluster", redis_server.url, "--registration", "invite", key_file=key)
        )

    def cli(node: ServerProc, *words: str) -> subprocess.CompletedProcess[str]:
        args = [CHAT_SERVER, *words, "--cluster", redis_server.url]
        args += ["--users-file", str(node.users_file), "--key-file", str(key)]
        return subprocess.run(
            args, cwd=node.users_file.parent, capture_output=True, text=True, timeout=60
        )

    yield nodes[0], nodes[1], cli
    for node in nodes:
        for c in node.clients:
            c.close()
        node.stop()


def _register(node: ServerProc, name: str, code: str | None) -> dict[str, Any]:
    c = node.client()
    auth = {"type": "auth", "user": name, "password": PASSWORD, "register": True}
    c.send(auth if code is None else auth | {"invite": code})
    answer = c.recv()
    c.close()
    return answer


def test_an_invite_code_made_through_one_node_registers_once_on_any_node(invite_pair) -> None:
    a, b, cli = invite_pair
    made = cli(a, "invite", "create")
    assert (made.returncode, made.stderr) == (0, ""), made
    assert made.stdout.count("\n") == 1 and made.stdout.strip(), made
    code = made.stdout.strip()
    closed = {"type": "error", "code": "registration_closed"}
    assert _register(b, "bob", None).items() >= closed.items()  # missing code, on b
    assert _register(b, "bob", code) == {"type": "auth_ok", "user": "bob"}  # a's code, on b
    assert _register(a, "carol", code).items() >= closed.items()  # used up, on a too
    assert _register(b, "carol", code).items() >= closed.items()
    again = cli(b, "invite", "create")
    assert again.returncode == 0 and again.stdout.strip() != code, again
    assert _register(a, "carol", again.stdout.strip()) == {"type": "auth_ok", "user": "carol"}
    for node in (a, b):
        listed = cli(node, "user", "list")
        assert (listed.returncode, listed.stdout, listed.stderr) == (0, "bob\ncarol\n", "")
