"""The connection to Redis: one URL, clients made from it, and a password that never shows.

`redis://[user:password@]host:port/db` or `rediss://...` (TLS, verified
against the system's trust store unless the URL says otherwise). Every
client has short timeouts: a Redis that goes away must cost a node its
cross-node traffic, never its local clients (docs/cluster.md, "Failures").
"""

from __future__ import annotations

import logging
import threading

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chat.server.cluster.url import check_url, redacted

log = logging.getLogger("chat.server.cluster")

#: Seconds for a connect or a reply. Every call on a path a client waits for has it, and
#: no call is retried by the library (redis-py retries three times by default: a Redis
#: frozen with SIGSTOP held a sender for three timeouts); the node's own loops retry.
TIMEOUT = 1.0


class Link:
    """Clients of one Redis, and whether it is reachable now (logged on every change)."""

    def __init__(self, url: str) -> None:
        self.url = check_url(url)
        self.shown = redacted(url)
        self.client = self.make_client()
        self._up = True
        self._lock = threading.Lock()
        #: How many times Redis went away (read by the metrics).
        self.outages = 0

    def make_client(self) -> redis.Redis:
        """A new client (its own pool): a thread that blocks (pub/sub) gets its own."""
        return redis.Redis.from_url(
            self.url,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 0),
        )

    @property
    def up(self) -> bool:
        return self._up

    def failed(self, exc: BaseException) -> None:
        """A command failed for want of Redis: say it once, until it is back."""
        with self._lock:
            was, self._up = self._up, False
            self.outages += was
        if was:
            log.error(
                "redis %s went away (%s): cross-node traffic stops, local goes on",
                self.shown,
                _one_line(exc),
            )

    def works(self) -> None:
        with self._lock:
            was, self._up = self._up, True
        if not was:
            log.warning("redis %s is back", self.shown)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
