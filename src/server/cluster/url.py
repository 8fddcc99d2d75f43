"""A cluster's Redis URL: checked, and shown without its password.

Apart from the connection (`link.py`) so that a server started without
`--cluster` never imports the Redis client library (time and memory).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class ClusterError(Exception):
    """The cluster cannot be joined; one line (the URL's password never in it)."""


def redacted(url: str) -> str:
    """The URL with its password replaced, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_url(url: str) -> str:
    """The URL if it names a Redis (`redis://` or `rediss://` with a host); else ClusterError."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ClusterError(
            f"--cluster {redacted(url)}: expected redis://[user:password@]HOST:PORT/DB "
            "or rediss://... (TLS)"
        )
    return url
