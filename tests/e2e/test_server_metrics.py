"""`--metrics HOST:PORT`: scraped with a real HTTP client, parsed with Prometheus' own parser."""

from __future__ import annotations

import re
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_support import PASSWORD, messages, online, register, send_msg

from conftest import ServerProc

NAMES = ("alice-metrics", "bob-metrics", "carol-away")


def metrics_url(server: ServerProc) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = re.search(r"metrics on (http://\S+)/metrics", server.log())
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no metrics line in the log:\n{server.log()}")


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_count_what_the_server_did(start_server) -> None:
    server = start_server("--metrics", "127.0.0.1:0")
    base = metrics_url(server)
    register(server, *NAMES)
    alice = online(server, NAMES[0], register=False)
    bob = online(server, NAMES[1], register=False)
    wrong = server.client()
    wrong.send({"type": "auth", "user": NAMES[0], "password": "wrong", "register": False})
    assert wrong.recv()["code"] == "bad_credentials"
    for i in range(5):
        send_msg(alice, [NAMES[1]], f"direct {i}", i)
    messages(bob, 5)
    send_msg(alice, "*", "to everyone", "all")
    messages(bob, 1)
    answer = send_msg(alice, [NAMES[2]], "for the one away", "q")
    assert answer["queued"] == [NAMES[2]]
    samples = scrape(base)
    assert value(samples, "chat_connections", state="chat") == 2
    assert value(samples, "chat_connections", state="auth") == 1  # `wrong`, still in AUTH
    assert value(samples, "chat_logins_total", result="ok", kind="password") == len(NAMES) + 2
    assert value(samples, "chat_logins_total", result="bad_credentials", kind="password") == 1
    assert value(samples, "chat_logins_total", result="ok", kind="token") == 0
    assert value(samples, "chat_messages_total", kind="direct") == 6
    assert value(samples, "chat_messages_total", kind="everyone") == 1
    assert value(samples, "chat_deliveries_total", kind="local") == 6  # 5 + 1 to bob
    assert value(samples, "chat_deliveries_total", kind="queued") == 1
    assert value(samples, "chat_bytes_received_total") > 500
    assert value(samples, "chat_bytes_sent_total") > 500
    assert value(samples, "chat_accounts") == len(NAMES)
    assert value(samples, "chat_users_online") == 2
    assert value(samples, "chat_store_commit_seconds_count") >= 1  # the queued one, at least
    assert value(samples, "chat_offline_queued") == 1
    assert value(samples, "chat_messages_stored") >= 7
    assert value(samples, "chat_queue_depth", queue="workers") >= 0
    # Privacy and cardinality: no label value is a name or any part of a message.
    label_values = {v for (_, labels) in samples for _, v in labels}
    for secret in (*NAMES, "direct 0", "to everyone", PASSWORD):
        assert all(secret not in v for v in label_values), secret
    assert {k for (_, labels) in samples for k, _ in labels} <= {
        "state",
        "result",
        "kind",
        "queue",
        "le",
    }


def test_healthz_and_unknown_paths(start_server) -> None:
    server = start_server("--metrics", "127.0.0.1:0")
    base = metrics_url(server)
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
        assert (answer.status, answer.read()) == (200, b"ok\n")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{base}/", timeout=10)
    assert info.value.code == 404


def test_metrics_are_off_by_default_and_never_on_the_chat_port(server: ServerProc) -> None:
    assert "metrics on" not in server.log()
    c = server.client()  # an HTTP request on the chat port is not a frame: closed
    c.send_raw(b"GET /metrics HTTP/1.0\r\n\r\n")
    frames = c.expect_closed()
    assert frames and frames[-1]["type"] == "error", frames


def test_scrapers_that_never_send_nor_read_hold_nothing(start_server) -> None:
    server = start_server("--metrics", "127.0.0.1:0")
    base = metrics_url(server)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    stuck = []
    for i in range(20):  # more than the listener's threads
        s = socket.create_connection((host, int(port)))
        if i % 2:  # asks, and never reads the answer
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        stuck.append(s)
    started = time.monotonic()
    register(server, "alice", "bob")  # the chat goes on at once
    alice, bob = online(server, "alice", register=False), online(server, "bob", register=False)
    send_msg(alice, ["bob"], "still here")
    messages(bob, 1)
    assert time.monotonic() - started < 3
    # Within the 5 s timeout the stuck ones are dropped and a real scrape is answered.
    deadline = time.monotonic() + 15
    while True:
        try:
            samples = scrape(base)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            assert time.monotonic() < deadline, "metrics never answered again"
            time.sleep(0.5)
    assert value(samples, "chat_connections", state="chat") == 2
    before = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0  # and the stop joins its threads in time
    assert time.monotonic() - before < 10
    for s in stuck:
        s.close()


def test_a_metrics_address_in_use_stops_the_start_and_creates_nothing(
    start_server, tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match="exited with 1") as info:
            start_server("--metrics", f"127.0.0.1:{port}")
    assert "cannot serve metrics on 127.0.0.1" in str(info.value)
    assert not (tmp_path / "users.db").exists() and not (tmp_path / "server.key").exists()


@pytest.mark.parametrize("bad", ["9100", "host:", ":9100", "127.0.0.1:70000", "a:b"])
def test_a_bad_metrics_address_is_one_line_exit_2(start_server, bad: str) -> None:
    with pytest.raises(RuntimeError, match="exited with 2") as info:
        start_server("--metrics", bad)
    assert "--metrics" in str(info.value)


def test_the_sample_dashboard_and_the_manual_name_only_metrics_that_exist(start_server) -> None:
    root = Path(__file__).resolve().parents[2]
    dashboard = (root / "packaging" / "grafana-dashboard.json").read_text()
    manual = (root / "docs" / "operations.md").read_text()
    used = set(re.findall(r"\bchat_[a-z_]+", dashboard))
    assert len(used) >= 15, used
    server = start_server("--metrics", "127.0.0.1:0")
    exposed = {name for name, _ in scrape(metrics_url(server))}
    for name in sorted(used):
        assert name.removesuffix("_bucket") in manual or name in manual, name
        if "redis" not in name:  # a node of a cluster's only (tests/cluster)
            assert name in exposed, name
