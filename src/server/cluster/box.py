"""Sealing and blind names for everything a node puts in Redis.

Redis holds the cluster's accounts, history, offline queues and presence, and
carries its messages; none of it may be readable there (no user name, no
password hash, no text). So every value is sealed with the key file through
the cipher plugin, the same scheme as the users file and the message store
(`sealing.Sealer`, its own HKDF salt), and every key that would name a user
or a conversation names its blind index instead (an HMAC with a subkey).
Each sealed value is bound to a context (the key or channel it belongs to),
so a value copied to another key does not open there.
"""

from __future__ import annotations

from chat.server.crypto.cipher import Cipher, CipherError
from chat.server.crypto.sealing import NONCE_BYTES, HmacKey, Sealer

_SALT = b"chat-cluster-v1"
_STREAM = b"chat-cluster-stream-v1"
TAG_BYTES = 16
INDEX_BYTES = 16
#: Blind indexes remembered (a message's conversation and queue keys are the same ones
#: again and again); past this many the memory starts over.
_BLINDS_KEPT = 8192


class Box:
    __slots__ = ("_blinds", "_index", "_sealer")

    def __init__(self, key: bytes, cipher: Cipher) -> None:
        self._sealer = Sealer(key, cipher, salt=_SALT, stream=_STREAM)
        self._index = HmacKey(self._sealer.subkey(b"index"))
        self._blinds: dict[tuple[str, ...], str] = {}

    def blind(self, kind: str, *parts: str) -> str:
        """A blind index: the same for the same parts on every node, opaque in Redis.

        Remembered: the store writer names a message's conversation by it, each message
        (a dict's operations are atomic: the writer and the readers share one Box)."""
        key = (kind, *parts)
        found = self._blinds.get(key)
        if found is None:
            data = "\0".join(key).encode("utf-8", "surrogatepass")
            found = self._index.digest(data)[:INDEX_BYTES].hex()
            if len(self._blinds) >= _BLINDS_KEPT:
                self._blinds.clear()
            self._blinds[key] = found
        return found

    def check_value(self) -> bytes:
        """What a node with the right key stores, and reads back, to prove it."""
        return self._sealer.tag(b"chat-cluster-key-check")

    def seal(self, context: bytes, plain: bytes) -> bytes:
        nonce = Sealer.new_nonce()
        ciphertext = self._sealer.encrypt(plain, nonce)
        return nonce + ciphertext + self._sealer.tag(context + nonce + ciphertext)[:TAG_BYTES]

    def open(self, context: bytes, blob: bytes) -> bytes | None:
        """The plaintext, or None when the value is damaged, foreign or from another key."""
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            return None
        nonce, ciphertext, tag = blob[:NONCE_BYTES], blob[NONCE_BYTES:-TAG_BYTES], blob[-TAG_BYTES:]
        if not self._sealer.verify(context + nonce + ciphertext, tag):
            return None
        try:
            return self._sealer.decrypt(ciphertext, nonce)
        except CipherError:
            return None
