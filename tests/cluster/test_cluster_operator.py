"""The operator's commands in a cluster (protocol v1.2 sections 8 and 10): they act on every node.

Two real nodes, each with its own data folder (and so its own control
socket) and the same key file, on a real redis-server. The command is given
to one node; the sessions on the other one end too, and the other one knows
at once what changed. Without any node to ask, the command works on Redis and
the nodes are told.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import launch
from e2e.server_support import PASSWORD, register, request, roster_changes

from .conftest import AnyRedis
from .test_cluster import login, send


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert (done.returncode, done.stderr) == (0, ""), done
    return done.stdout


def _ended_with(client, reason: str) -> None:
    frames = client.expect_closed(10)
    assert frames and frames[-1] == {"type": "bye", "reason": reason}, frames


def test_every_node_has_its_own_control_socket(pair) -> None:
    a, b, _cli = pair
    for node in (a, b):
        assert (node.users_file.parent / "control.sock").exists()
        assert "no control socket" not in node.log()


def test_a_kick_given_to_one_node_ends_the_sessions_on_every_node(pair) -> None:
    a, b, cli = pair
    register(a, "alice", "bob")
    on_a, on_b = login(a, "alice", False), login(b, "alice", False)
    bob = login(b, "bob", False)
    assert _ok(cli(a, "user", "kick", "alice")) == ""
    _ended_with(on_a, "kicked")
    _ended_with(on_b, "kicked")
    roster_changes(bob, leave=["alice"])
    assert "kick of alice, told by node" in b.log()


def test_a_ban_holds_on_every_node_and_a_delete_is_known_everywhere(pair) -> None:
    a, b, cli = pair
    register(a, "alice", "mallory", "carol")
    mallory_b, carol_b = login(b, "mallory", False), login(b, "carol", False)
    alice = login(a, "alice", False)
    assert _ok(cli(a, "user", "ban", "mallory")) == ""
    _ended_with(mallory_b, "banned")
    c = b.client()  # refused on the other node too, at once
    c.send({"type": "auth", "user": "mallory", "password": PASSWORD})
    assert c.recv() == {"type": "error", "code": "banned", "message": "this account is banned"}
    assert c.expect_closed() == []
    assert _ok(cli(b, "user", "delete", "carol")) == ""  # given to the other node
    _ended_with(carol_b, "account_deleted")
    # Node a forgot carol: a message to her is neither delivered nor queued.
    sent = send(alice, ["carol"], "anyone there?")
    assert sent["queued"] == [] and sent["delivered"] == [], sent
    assert "carol" not in _ok(cli(a, "user", "list")).split()


def test_a_password_reset_on_one_node_logs_in_on_the_other(pair) -> None:
    a, b, cli = pair
    register(a, "alice")
    assert _ok(cli(a, "user", "passwd", "alice", stdin="reset by the operator\n")) == ""
    c = b.client()
    c.login("alice", "reset by the operator", register=False)
    assert request(c, {"type": "ping"}) == {"type": "pong"}


def test_without_a_node_to_ask_the_command_works_on_redis_and_the_nodes_act(
    pair, tmp_path: Path
) -> None:
    a, b, cli = pair
    register(a, "alice", "bob")
    on_a, on_b = login(a, "alice", False), login(b, "alice", False)
    elsewhere = tmp_path / "operator"  # no node runs with this data folder
    assert _ok(cli(elsewhere, "user", "list")) == "alice\nbob\n"
    assert _ok(cli(elsewhere, "user", "ban", "alice")) == ""
    _ended_with(on_a, "banned")
    _ended_with(on_b, "banned")
    done = cli(elsewhere, "user", "kick", "nobody")
    assert (done.returncode, done.stdout) == (1, "") and "no such user: nobody" in done.stderr
    assert _ok(cli(elsewhere, "user", "unban", "alice")) == ""
    login(a, "alice", False)


def test_a_nodes_metrics_tell_of_redis_and_the_other_nodes(
    tmp_path: Path, redis_server: AnyRedis, pair
) -> None:
    import re
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    _a, _b, _cli = pair
    folder = tmp_path / "c"
    folder.mkdir()
    node = launch(
        folder,
        "--cluster",
        redis_server.url,
        "--metrics",
        "127.0.0.1:0",
        key_file=tmp_path / "cluster.key",
    )
    try:
        found = re.search(r"metrics on (http://\S+)/metrics", node.log())
        assert found, node.log()
        with urllib.request.urlopen(f"{found.group(1)}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        samples = {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.labels
        }
        assert samples["chat_redis_up"] == 1 and samples["chat_nodes"] == 3
        assert 0 < samples["chat_redis_rtt_seconds"] < 1
        assert samples["chat_redis_outages_total"] == 0
        assert "chat_messages_stored" not in samples  # no count in a cluster
    finally:
        node.stop()
