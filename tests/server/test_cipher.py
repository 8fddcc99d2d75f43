"""The cffi binding of the cipher plugin, against the real bundled libxor.so."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.server.crypto.cipher import (
    Cipher,
    CipherError,
    CipherLoadError,
    default_library_path,
    load_cipher,
)
from together import run_together

HEADER_DIR = Path(__file__).resolve().parents[2] / "native" / "libxor" / "include"


@pytest.fixture(scope="module")
def cipher() -> Cipher:
    return load_cipher()


def _build_plugin(tmp_path: Path, source: str, name: str = "plugin") -> Path:
    """Compile a throwaway plugin so load errors are proven on real .so files."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (gcc/cc) on PATH: cannot build a test plugin")
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / f"lib{name}.so"
    subprocess.run(
        [gcc, "-shared", "-fPIC", f"-I{HEADER_DIR}", "-o", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    return out


def test_bundled_library_is_found_and_named_xor(cipher: Cipher) -> None:
    assert Path(default_library_path()).is_file()
    assert cipher.name == "xor"
    assert Path(cipher.path).is_file()


@given(data=st.binary(max_size=2048), key=st.binary(min_size=1, max_size=80))
def test_encrypt_then_decrypt_gives_the_plaintext_back(data: bytes, key: bytes) -> None:
    c = load_cipher()
    assert c.decrypt(c.encrypt(data, key), key) == data


@given(data=st.binary(max_size=512), key=st.binary(min_size=1, max_size=64))
def test_xor_matches_a_python_reference(data: bytes, key: bytes) -> None:
    expected = bytes(b ^ key[i % len(key)] for i, b in enumerate(data))
    assert load_cipher().encrypt(data, key) == expected


def test_empty_input_gives_empty_output(cipher: Cipher) -> None:
    assert cipher.encrypt(b"", b"k") == b""
    assert cipher.decrypt(b"", b"k") == b""


def test_bytearray_and_memoryview_inputs_are_accepted(cipher: Cipher) -> None:
    data = bytearray(b"hello")
    assert cipher.encrypt(memoryview(data), b"\x01") == cipher.encrypt(b"hello", b"\x01")
    assert data == bytearray(b"hello"), "input buffer must not be modified"


def test_empty_key_raises_cipher_error_with_the_code(cipher: Cipher) -> None:
    with pytest.raises(CipherError, match="code -2"):
        cipher.encrypt(b"abc", b"")


def test_concurrent_calls_do_not_mix_buffers(cipher: Cipher) -> None:
    errors: list[str] = []

    def work(seed: int) -> None:
        data = bytes((seed + i) % 256 for i in range(4096))
        key = bytes([seed + 1]) * 7
        for _ in range(200):
            if cipher.decrypt(cipher.encrypt(data, key), key) != data:
                errors.append(f"thread {seed} got a wrong round trip")
                return

    run_together(work, [(n,) for n in range(8)])
    assert errors == []


def test_missing_path_gives_one_line_load_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.so"
    with pytest.raises(CipherLoadError) as info:
        load_cipher(str(missing))
    message = str(info.value)
    assert "\n" not in message
    assert str(missing) in message and "no such file" in message


def test_a_file_that_is_not_a_library_gives_one_line_load_error(tmp_path: Path) -> None:
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"this is not ELF\n")
    with pytest.raises(CipherLoadError) as info:
        load_cipher(str(bogus))
    message = str(info.value)
    assert "\n" not in message
    assert "not a loadable shared library" in message


def test_plugin_missing_a_symbol_names_that_symbol(tmp_path: Path) -> None:
    lib = _build_plugin(
        tmp_path,
        """
        #include <stddef.h>
        #include <stdint.h>
        const char *cipher_name(void) { return "half"; }
        int cipher_encrypt(const uint8_t *in, size_t n, const uint8_t *k, size_t kl,
                           uint8_t *out) { (void)in; (void)n; (void)k; (void)kl; (void)out;
                           return 0; }
        """,
    )
    with pytest.raises(CipherLoadError) as info:
        load_cipher(str(lib))
    message = str(info.value)
    assert "missing symbol cipher_decrypt" in message
    assert "\n" not in message


def test_explicit_path_loads_another_plugin_with_the_same_abi(tmp_path: Path) -> None:
    lib = _build_plugin(
        tmp_path,
        """
        #include "chat_cipher.h"
        const char *cipher_name(void) { return "add1"; }
        int cipher_encrypt(const uint8_t *in, size_t n, const uint8_t *k, size_t kl,
                           uint8_t *out) {
            if (!k) return CHAT_CIPHER_ENULL;
            if (!kl) return CHAT_CIPHER_EKEY;
            for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(in[i] + 1);
            return 0;
        }
        int cipher_decrypt(const uint8_t *in, size_t n, const uint8_t *k, size_t kl,
                           uint8_t *out) {
            if (!k) return CHAT_CIPHER_ENULL;
            if (!kl) return CHAT_CIPHER_EKEY;
            for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(in[i] - 1);
            return 0;
        }
        """,
        name="add1",
    )
    other = load_cipher(str(lib))
    assert other.name == "add1"
    assert other.path == str(lib)
    assert other.encrypt(b"abc", b"k") == b"bcd"
    assert other.decrypt(b"bcd", b"k") == b"abc"


def test_explicit_path_to_the_bundled_library_works() -> None:
    path = default_library_path()
    c = load_cipher(path)
    assert c.path == path
    assert c.encrypt(b"\x00\x01", b"\xff") == b"\xff\xfe"
