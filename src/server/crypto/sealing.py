"""Authenticated encryption at rest through the cipher plugin: one scheme for every store.

The users file and the message store seal their secrets the same way
(docs/store.md): independent HKDF-SHA256 subkeys from the key file, a fresh
random nonce per sealed unit, the plugin applied with a keystream as long as
the data (`SHAKE-256(domain || enc_key || nonce)`, so the bundled XOR plugin
becomes a stream cipher and never reuses a key), and HMAC-SHA256 over
everything that locates and carries the ciphertext (encrypt-then-MAC). The
tag is checked before anything is decrypted, so a wrong key or a damaged
unit is reported and never parsed as garbage.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from chat.server.crypto.cipher import Cipher

NONCE_BYTES = 16
MAC_BYTES = 32
MIN_TAG_BYTES = 16  # a tag may be truncated to half of SHA-256, never below (RFC 2104)
_SHA256_BLOCK = 64


class HmacKey:
    """HMAC-SHA256 under one fixed key, the same bytes as `hmac.digest(key, data, "sha256")`.

    A one-shot `hmac.digest` pads and hashes the key again on every call; here the two
    padded key blocks are absorbed once and each MAC copies the two states: 0.7 us
    instead of 1.8 for the 100-300 bytes a message or a blind index is (bench/README.md,
    "Stop 26: sealing at half the cost"). Every seal, open and blind index of a message
    pays it, on both sides of a crossing. Thread-safe: the two states are never updated
    after construction, only copied (under the GIL).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()  # RFC 2104: a long key is hashed first
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF: independent subkeys, so the MAC key never encrypts and vice versa."""
    prk = hmac.digest(salt, ikm, "sha256")
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out += block
        counter += 1
    return out[:length]


class Sealer:
    """Encryption, MAC and keyed index subkeys of one store, derived from the key file.

    `salt` names the store in the HKDF extract step and `stream` in the
    keystream, so two stores under one key file never share a subkey or a
    keystream. Thread-safe: it holds only immutable keys and the plugin
    (whose calls are pure functions of their arguments).
    """

    __slots__ = ("_key", "_mac", "_salt", "_stream_prefix", "cipher")

    def __init__(self, key: bytes, cipher: Cipher, salt: bytes, stream: bytes) -> None:
        self.cipher = cipher
        self._key = key
        self._salt = salt
        # SHAKE-256(stream || enc_key || nonce): the part before the nonce absorbed once.
        self._stream_prefix = hashlib.shake_256(stream + hkdf_sha256(key, salt, b"encryption"))
        self._mac = HmacKey(hkdf_sha256(key, salt, b"mac"))

    @staticmethod
    def new_nonce() -> bytes:
        return secrets.token_bytes(NONCE_BYTES)

    def subkey(self, info: bytes) -> bytes:
        """Another independent key of this store (e.g. for blind indexes)."""
        return hkdf_sha256(self._key, self._salt, info)

    def _keystream(self, nonce: bytes, size: int) -> bytes:
        state = self._stream_prefix.copy()
        state.update(nonce)
        return state.digest(max(size, 1))

    def encrypt(self, plaintext: bytes, nonce: bytes) -> bytes:
        """The plugin's ciphertext (raises `CipherError` if the plugin refuses)."""
        return self.cipher.encrypt(plaintext, self._keystream(nonce, len(plaintext)))

    def decrypt(self, ciphertext: bytes, nonce: bytes) -> bytes:
        return self.cipher.decrypt(ciphertext, self._keystream(nonce, len(ciphertext)))

    def tag(self, data: bytes) -> bytes:
        return self._mac.digest(data)

    def verify(self, data: bytes, tag: bytes) -> bool:
        """Constant-time check; a truncated tag (16 bytes or more) checks its prefix."""
        if len(tag) < MIN_TAG_BYTES:
            return False
        return hmac.compare_digest(self.tag(data)[: len(tag)], tag)
