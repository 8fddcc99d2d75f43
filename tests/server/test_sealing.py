"""The sealing scheme's fast paths give the bytes of its written formula (docs/store.md).

`HmacKey` and the keystream's absorbed prefix are speed-ups of the same functions: a
value sealed before them must open after, and the other way round, or every store and
every Redis of a running cluster would stop opening. These tests compute the formula
with the standard library's one-shot functions and compare.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from chat.server.cluster import box as box_module
from chat.server.cluster.box import INDEX_BYTES, TAG_BYTES, Box
from chat.server.crypto.cipher import load_cipher
from chat.server.crypto.sealing import NONCE_BYTES, HmacKey, Sealer, hkdf_sha256
from together import run_together

KEY = bytes(range(32))
CIPHER = load_cipher()


@given(key=st.binary(max_size=200), data=st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_hmac_key_gives_the_bytes_of_hmac_sha256(key: bytes, data: bytes) -> None:
    assert HmacKey(key).digest(data) == hmac.digest(key, data, "sha256")


def test_hmac_key_at_the_block_edges() -> None:
    for size in (0, 1, 63, 64, 65, 128, 129):
        key = os.urandom(size)
        for data in (b"", b"x", os.urandom(64), os.urandom(1000)):
            assert HmacKey(key).digest(data) == hmac.digest(key, data, "sha256"), size


def test_one_hmac_key_used_by_many_threads_at_once() -> None:
    mac = HmacKey(KEY)
    wrong: list[bytes] = []

    def work(seed: int) -> None:
        for i in range(2000):
            data = f"{seed}:{i}".encode() * (i % 7 + 1)
            if mac.digest(data) != hmac.digest(KEY, data, "sha256"):
                wrong.append(data)

    run_together(work, [(n,) for n in range(8)])
    assert wrong == []


def _reference_seal(context: bytes, plain: bytes, salt: bytes, stream: bytes) -> bytes:
    """Box.seal as docs/store.md writes it, with one-shot functions only."""
    enc_key = hkdf_sha256(KEY, salt, b"encryption")
    mac_key = hkdf_sha256(KEY, salt, b"mac")
    nonce = os.urandom(NONCE_BYTES)
    keystream = hashlib.shake_256(stream + enc_key + nonce).digest(max(len(plain), 1))
    ciphertext = CIPHER.encrypt(plain, keystream)
    tag = hmac.digest(mac_key, context + nonce + ciphertext, "sha256")[:TAG_BYTES]
    return nonce + ciphertext + tag


@given(plain=st.binary(max_size=400), context=st.binary(max_size=80))
@settings(max_examples=100, deadline=None)
def test_a_value_sealed_by_the_formula_opens_and_the_other_way_round(
    plain: bytes, context: bytes
) -> None:
    box = Box(KEY, CIPHER)
    old = _reference_seal(context, plain, box_module._SALT, box_module._STREAM)
    assert box.open(context, old) == plain
    new = box.seal(context, plain)
    nonce, ciphertext, tag = new[:NONCE_BYTES], new[NONCE_BYTES:-TAG_BYTES], new[-TAG_BYTES:]
    mac_key = hkdf_sha256(KEY, box_module._SALT, b"mac")
    assert hmac.digest(mac_key, context + nonce + ciphertext, "sha256")[:TAG_BYTES] == tag
    enc_key = hkdf_sha256(KEY, box_module._SALT, b"encryption")
    keystream = hashlib.shake_256(box_module._STREAM + enc_key + nonce).digest(
        max(len(ciphertext), 1)
    )
    assert CIPHER.decrypt(ciphertext, keystream) == plain


def test_the_keystream_is_shake_of_stream_key_and_nonce() -> None:
    sealer = Sealer(KEY, CIPHER, salt=b"s", stream=b"t")
    enc_key = hkdf_sha256(KEY, b"s", b"encryption")
    for size in (0, 1, 31, 32, 200, 5000):
        nonce = os.urandom(NONCE_BYTES)
        want = hashlib.shake_256(b"t" + enc_key + nonce).digest(max(size, 1))
        assert sealer._keystream(nonce, size) == want


def test_blind_indexes_are_the_formula_also_past_what_is_remembered() -> None:
    box = Box(KEY, CIPHER)
    index_key = Sealer(KEY, CIPHER, salt=box_module._SALT, stream=box_module._STREAM).subkey(
        b"index"
    )

    def reference(kind: str, *parts: str) -> str:
        data = "\0".join((kind, *parts)).encode("utf-8", "surrogatepass")
        return hmac.digest(index_key, data, "sha256")[:INDEX_BYTES].hex()

    names = [f"user{i}" for i in range(box_module._BLINDS_KEPT + 500)]
    for _round in range(2):  # the second round reads what the first remembered
        for name in names[::97] + names[-3:]:
            assert box.blind("queue", name) == reference("queue", name)
            assert box.blind("pair", name, "zed") == reference("pair", name, "zed")
    for name in names:
        assert box.blind("queue", name) == reference("queue", name)
    assert len(box._blinds) <= box_module._BLINDS_KEPT
