"""Everything the server can be told on its command line, in one frozen record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chat.shared.framing import DEFAULT_MAX_FRAME


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = ""
    port: int = 7777
    threads: int = 4
    max_clients: int = 1024
    epoll_timeout_ms: int = 1000
    max_events: int = 256
    users_file: Path = Path("users.db")
    key_file: Path = Path("server.key")
    cipher_lib: Path | None = None
    max_frame: int = DEFAULT_MAX_FRAME
    ack_timeout: float = 30.0
    idle_timeout: float = 300.0
    max_outbuf: int = 4 * 1024 * 1024
    rate_limit: float = 500.0  # sends per second per connection; 0 disables
    rate_burst: int = 1000
    hash_cost: int = 14  # scrypt log2(N)
    shutdown_grace: float = 2.0
    backlog: int = 1024
