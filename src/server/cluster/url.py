"""A cluster's Redis URL: checked, and shown without its password.

Two kinds (docs/cluster.md, "Redis Cluster"):

- one Redis: `redis://[user:password@]HOST:PORT/DB`, `rediss://...` for TLS;
- a Redis Cluster: `redis+cluster://[user:password@]HOST:PORT[,HOST:PORT...]`,
  `rediss+cluster://...` for TLS. Any reachable node is enough to find the others
  (more than one: a node that is down at start does not stop it). Only database 0
  exists in a Redis Cluster: a path other than `/` or `/0` is refused.

Query arguments (`?ssl_ca_certs=...`) are redis-py's and go to every connection.
Apart from the connection (`link.py`) so that a server started without
`--cluster` never imports the Redis client library (time and memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

SINGLE = ("redis", "rediss")
CLUSTER = ("redis+cluster", "rediss+cluster")
_USAGE = (
    "expected redis://[user:password@]HOST:PORT/DB, rediss://... (TLS), "
    "redis+cluster://[user:password@]HOST:PORT[,HOST:PORT...] or rediss+cluster://..."
)


class ClusterError(Exception):
    """The cluster cannot be joined; one line (the URL's password never in it)."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a URL names: one Redis or a Redis Cluster, and how to reach it."""

    cluster: bool
    #: Every node named (one for a single Redis).
    nodes: tuple[tuple[str, int], ...]
    #: A `redis://` or `rediss://` URL of the first node with the user, password, database
    #: and query: what redis-py's own URL parser reads the connection's options from.
    first: str


def _split(url: str) -> tuple[str, str, str, str, str]:
    """(scheme, userinfo with its '@' or "", hosts, path, query); never raises."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", "", "", ""
    rest, _, _fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    return scheme.lower(), userinfo + at, hosts, slash + path, query


def redacted(url: str) -> str:
    """The URL with its password replaced, for logs and errors."""
    scheme, userinfo, hosts, path, query = _split(url)
    if not scheme:
        return url
    if scheme in CLUSTER or "," in hosts:
        user, colon, _password = userinfo[:-1].partition(":")
        shown = f"{user}:***@" if colon else userinfo
        return f"{scheme}://{shown}{hosts}{path}" + (f"?{query}" if query else "")
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        host = f"{host}:{port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _host_port(text: str) -> tuple[str, int] | None:
    """`HOST:PORT` or `[V6]:PORT`; None when malformed."""
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            host, port_text = text, "6379"
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host, int(port_text)


def parse(url: str) -> Target:
    """What `url` names; ClusterError (one line, no password) when it names no Redis."""
    scheme, userinfo, hosts, path, query = _split(url)
    wrong = ClusterError(f"--cluster {redacted(url)}: {_USAGE}")
    if scheme in SINGLE:
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - a malformed port raises here, not deep in redis-py
        except ValueError:
            raise wrong from None
        if not parts.hostname:
            raise wrong
        return Target(False, ((parts.hostname, parts.port or 6379),), url)
    if scheme not in CLUSTER:
        raise wrong
    nodes = tuple(_host_port(h) for h in hosts.split(","))
    if not nodes or any(n is None for n in nodes):
        raise wrong
    if path not in ("", "/", "/0"):
        raise ClusterError(f"--cluster {redacted(url)}: a Redis Cluster has only database 0")
    host, port = nodes[0]  # type: ignore[misc]
    shown_host = f"[{host}]" if ":" in host else host
    plain = "rediss" if scheme == "rediss+cluster" else "redis"
    first = f"{plain}://{userinfo}{shown_host}:{port}/0" + (f"?{query}" if query else "")
    return Target(True, nodes, first)  # type: ignore[arg-type]


def check_url(url: str) -> str:
    """The URL if it names a Redis or a Redis Cluster; else ClusterError."""
    parse(url)
    return url
