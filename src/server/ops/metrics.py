"""`--metrics HOST:PORT`: /metrics in the Prometheus text format, and /healthz, on their own port.

Off unless asked for, and never on a chat port. The figures are read when
Prometheus scrapes, from counters the server keeps anyway or plain ints its
threads add to (a custom collector: nothing on the chat path takes a lock or
calls into this module), and put in the text format by `prometheus_client`,
the Prometheus project's own library. The one thing observed as it happens is
the store's commit time (a histogram, once per batch on the writer thread).

No label holds a user name or anything of a message: labels are a fixed set
of words (a state, a result, a kind), so the number of series stays bounded
and nothing private reaches the monitoring system.

The listener has its own threads, at most 8 requests at once (more are closed
at once), each with a 5 s socket timeout and HTTP/1.0 (one request per
connection): a scraper that connects and never sends, or never reads, costs
one of those threads for 5 s and nothing else. `stop` joins them.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from chat.server.core.results import Outcome

if TYPE_CHECKING:
    from chat.server.app import Server

log = logging.getLogger("chat.server.metrics")

MAX_REQUESTS = 8
TIMEOUT = 5.0
#: Seconds the store's figures (a count over the message store) are kept between scrapes.
FACTS_EVERY = 10.0
#: The store's commit times: from a fast fsync to a stalled disk.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class MetricsServer:
    """The metrics' listener: bound at start with the chat ports (`bind`), served from
    `start` to `stop` by its own threads."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.commits = Histogram(
            "chat_store_commit_seconds",
            "Time to commit one batch of the message store (fsync included).",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self._healthy: Callable[[], tuple[bool, str]] = lambda: (True, "ok")
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def bind(self) -> None:
        """Listen now (OSError when the address cannot be had)."""
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = int(self._httpd.server_address[1])

    def serve(self, collector: Collector, healthy: Callable[[], tuple[bool, str]]) -> None:
        self.registry.register(collector)
        self._healthy = healthy

    def start(self) -> None:
        assert self._httpd is not None, "bind first"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.5}, name="metrics"
        )
        self._thread.start()
        log.info("metrics on http://%s/metrics and /healthz", _shown(self.host, self.port))

    def stop(self) -> None:
        if self._httpd is None:
            return
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()  # joins the request threads (block_on_close)
        self._httpd = None

    # ---- one request (a request thread) ----------------------------------------------------
    def page(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz":
            ok, text = self._healthy()
            return (200 if ok else 503), "text/plain; charset=utf-8", (text + "\n").encode()
        return 404, "text/plain; charset=utf-8", b"not found: /metrics or /healthz\n"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close joins every request thread

    def __init__(self, address: tuple[str, int], app: MetricsServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self._active = 0
        self._count_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count_lock:
            busy = self._active >= MAX_REQUESTS
            if not busy:
                self._active += 1
        if busy:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self._active -= 1


class _Handler(BaseHTTPRequestHandler):
    timeout = TIMEOUT  # the socket's: a silent or never-reading client is dropped
    protocol_version = "HTTP/1.0"
    server: _HTTPServer

    def do_GET(self) -> None:  # the http.server convention
        try:
            status, kind, body = self.server.app.page(self.path.split("?", 1)[0])
        except Exception:
            log.exception("metrics: the page failed")
            status, kind, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


class ServerCollector:
    """Every figure of a running server, read at scrape time (see the module docstring)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._facts: dict[str, Any] = {}
        self._facts_at = -FACTS_EVERY
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # series are known when collected (auto_describe is off)

    def collect(self) -> Iterator[Any]:
        s = self._server
        loop = s.loop
        transports = list(loop.connections.by_cid.values())
        states = dict.fromkeys(("auth", "roster", "chat", "closing"), 0)
        for t in transports:
            state = t.user.conn.state.value.lower() if t.open else "closing"
            states[state if state in states else "closing"] += 1
        yield _gauge("chat_connections", "Connections, by state.", "state", states)
        stats = loop.stats
        yield _counter("chat_accepted", "Connections accepted.", stats["accepted"])
        yield _counter(
            "chat_rejected_full", "Connections refused: server_full.", stats["rejected_full"]
        )
        yield _counter(
            "chat_evictions", "Connections not logged in closed to make room.", stats["evicted"]
        )
        yield _counter("chat_closed", "Connections closed.", stats["closed"])
        yield _counter(
            "chat_slow_reader_drops",
            "Connections dropped because they did not read (send buffer full).",
            loop.connections.slow_readers,
        )
        login = s.core.login
        logins = CounterMetricFamily(
            "chat_logins",
            "Logins and registrations, by result and kind (password or token).",
            labels=["result", "kind"],
        )
        for kind, counts in (("password", login.counts), ("token", login.token_counts)):
            for k, v in counts.items():
                logins.add_metric([k.name.lower() if isinstance(k, Outcome) else k, kind], v)
        yield logins
        counts = s.fanout.counts
        yield _counter(
            "chat_messages",
            "Messages sent, by kind (to named users, to everyone, to a room).",
            {"direct": counts["direct"], "everyone": counts["everyone"], "room": counts["room"]},
            label="kind",
        )
        yield _counter(
            "chat_deliveries",
            "Copies of messages: to sessions here (local), queued for offline users, "
            "published to other nodes (nodes), and frames from other nodes given to "
            "sessions here (from_nodes).",
            {
                "local": counts["local"],
                "queued": counts["queued"],
                "nodes": counts["nodes"],
                "from_nodes": s.fanout.from_nodes,
            },
            label="kind",
        )
        yield _counter("chat_bytes_received", "Bytes read from clients.", loop.connections.bytes_in)
        yield _counter("chat_bytes_sent", "Bytes sent to clients.", s.table.sent)
        yield GaugeMetricFamily(
            "chat_send_buffers_bytes", "Bytes waiting in the send buffers.", value=s.table.total
        )
        yield _gauge("chat_queue_depth", "Work waiting, by queue.", "queue", self._queues())
        yield GaugeMetricFamily(
            "chat_users_online", "Names online (here or on other nodes).", len(s.hub.online())
        )
        yield GaugeMetricFamily("chat_accounts", "Accounts.", len(s.engines.accounts))
        yield GaugeMetricFamily(
            "chat_uptime_seconds", "Seconds since the start.", time.monotonic() - s.started
        )
        yield from self._store_figures()

    def _queues(self) -> dict[str, int]:
        s = self._server
        queues = {"workers": len(s.pool._tasks), "hash": len(s.hasher)}
        backlog = getattr(s.engines.store, "backlog", None)
        if backlog is not None:
            queues["store_writer"], queues["store_readers"] = backlog
        broker = getattr(s.engines.broker, "backlog", None)
        if broker is not None:
            queues["broker"] = broker
        return queues

    def _store_figures(self) -> Iterator[Any]:
        with self._lock:  # one count at a time; kept FACTS_EVERY seconds
            if time.monotonic() - self._facts_at >= FACTS_EVERY:
                self._facts = self._server.engines.facts()
                self._facts_at = time.monotonic()
            facts = dict(self._facts)
        gauges = {
            "messages_stored": "Messages kept (a copy per conversation).",
            "offline_queued": "Messages waiting in offline queues, every user together.",
            "store_bytes": "Bytes of the users file and the message store (a cluster: redis).",
            "nodes": "Nodes of the cluster (1: alone).",
            "redis_rtt_seconds": "Round trip of a PING to redis, at the last scrape.",
            "redis_up": "1 while redis answers.",
        }
        for key, text in gauges.items():
            value = facts.get(key)
            if value is not None:
                yield GaugeMetricFamily(f"chat_{key}", text, value=value)
        if facts.get("redis_outages") is not None:
            yield _counter("chat_redis_outages", "Times redis went away.", facts["redis_outages"])
        dropped = getattr(self._server.engines.store, "dropped", None)
        if dropped is not None:
            yield _counter(
                "chat_store_dropped", "Jobs the store's writer refused (too far behind).", dropped
            )


def _counter(
    name: str, text: str, value: int | dict[str, int], label: str = "kind"
) -> CounterMetricFamily:
    if isinstance(value, int):
        return CounterMetricFamily(name, text, value=value)
    family = CounterMetricFamily(name, text, labels=[label])
    for key, v in value.items():
        family.add_metric([key], v)
    return family


def _gauge(name: str, text: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=[label])
    for key, v in values.items():
        family.add_metric([key], v)
    return family


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
