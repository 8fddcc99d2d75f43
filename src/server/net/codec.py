"""Codecs: how a listener's bytes are cut into frame payloads.

Each listener has a codec, chosen when it is made (net/listeners.py), so
another wire format is a new codec here, not a change to the loop, the hub
or the route. Today there is one: protocol v1's 4-byte big-endian length
before each UTF-8 JSON payload (`chat.shared.framing`), whose decoder checks
the length from the header before buffering a body. Outbound frames are the
shared encoding (`chat.shared.messages.encode`), so a second codec would also
re-encode what its users' slots receive.
"""

from __future__ import annotations

from typing import Protocol

from chat.shared.errors import RemoteProtocolError
from chat.shared.framing import FrameDecoder


class Decoder(Protocol):
    @property
    def buffered(self) -> int: ...

    def feed(self, data: bytes) -> None: ...

    def cut(self, data: bytes) -> tuple[list[bytes], RemoteProtocolError | None, int]:
        """Feed `data`; every whole payload, the fatal error that stopped the cut, and the
        bytes left buffered."""
        ...

    def next_frame(self) -> bytes | None:
        """The next whole payload, or None; raises RemoteProtocolError (fatal) when the
        stream cannot be cut (then it cannot be resynchronised)."""
        ...


class Codec(Protocol):
    name: str

    def decoder(self, max_frame: int) -> Decoder: ...


class LengthPrefixedJson:
    """Protocol v1 framing (protocol-v1.md, "Framing")."""

    name = "json"

    def decoder(self, max_frame: int) -> Decoder:
        return FrameDecoder(max_frame)


CODECS: dict[str, Codec] = {LengthPrefixedJson.name: LengthPrefixedJson()}
