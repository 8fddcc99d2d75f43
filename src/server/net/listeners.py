"""Where the server listens: several addresses at once, each plain or TLS, each with a codec.

`--listen [HOST:]PORT[,tls]` may be given several times (ngIRCd's `Ports` and
`SSLPorts`, Prosody's `c2s_ports` and `c2s_direct_tls_ports`); `--host` and
`--port` stay the short form of one plain (or, with `--tls-cert`, TLS)
listener. An IPv6 host is written in brackets: `[::1]:7777,tls`. A listener
is bound before anything is written to disk (a start that fails creates
nothing: ops/cli.py).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from chat.server.net.codec import CODECS, Codec


class ListenError(ValueError):
    """A `--listen` value that does not parse; one line."""


@dataclass(frozen=True, slots=True)
class ListenSpec:
    host: str  # "" = every interface
    port: int
    tls: bool = False
    codec: str = "json"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host or "*"
        return f"{host}:{self.port}{',tls' if self.tls else ''}"


def parse_listen(text: str) -> ListenSpec:
    """`[HOST:]PORT[,tls]`, e.g. `7777`, `127.0.0.1:7777`, `[::1]:6697,tls`."""
    address, *flags = [part.strip() for part in text.split(",")]
    unknown = [f for f in flags if f not in ("tls", *CODECS)]
    if unknown:
        raise ListenError(f"--listen {text!r}: unknown option {unknown[0]!r} (tls)")
    host, _, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ListenError(f"--listen {text!r}: write an IPv6 address in brackets: [::1]:7777")
    try:
        port = int(port_text)
    except ValueError:
        raise ListenError(f"--listen {text!r}: the port is not a number") from None
    if not 0 <= port <= 65535:
        raise ListenError(f"--listen {text!r}: the port must be 0..65535")
    codec = next((f for f in flags if f in CODECS), "json")
    return ListenSpec(host, port, "tls" in flags, codec)


@dataclass(slots=True)
class Listener:
    """A bound listening socket, the TLS context of its connections (None: plain TCP),
    and the codec that cuts their bytes."""

    spec: ListenSpec
    sock: socket.socket
    tls: ssl.SSLContext | None
    codec: Codec

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


def open_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking listening socket; '' and '::' listen on IPv4 and IPv6 at once."""
    if host in ("", "::") and socket.has_dualstack_ipv6():
        sock = socket.create_server(
            ("::", port), family=socket.AF_INET6, backlog=backlog, dualstack_ipv6=True
        )
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host or "0.0.0.0", port), family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


def open_listener(spec: ListenSpec, backlog: int, tls: ssl.SSLContext | None) -> Listener:
    """Bind `spec` (OSError when it cannot be had); `tls` is the context for a TLS spec."""
    if spec.tls and tls is None:
        raise ListenError(f"--listen {spec}: TLS needs --tls-cert and --tls-key")
    sock = open_socket(spec.host, spec.port, backlog)
    return Listener(spec, sock, tls if spec.tls else None, CODECS[spec.codec])
