"""The server's TLS context, from real certificate files made with `openssl` here."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from certs import make_pair
from chat.server.net.tls import TLSConfigError, generate_self_signed, load_server_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_pair(tmp_path_factory.mktemp("tls"), "good")


@pytest.fixture(scope="module")
def other_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_pair(tmp_path_factory.mktemp("tls-other"), "other", cn="other")


def _one_line(info: pytest.ExceptionInfo[TLSConfigError], *words: str) -> str:
    text = str(info.value)
    assert "\n" not in text and text.strip() == text, text
    for word in words:
        assert word in text, (word, text)
    return text


def _handshake(
    context: ssl.SSLContext, client: ssl.SSLContext, host: str = "localhost"
) -> tuple[str | None, str | None]:
    """One real TLS handshake on loopback; returns (client's version, server's error)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server_error: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(tls.recv(100).upper())
        except (ssl.SSLError, OSError) as exc:
            server_error.append(str(exc))

    thread = threading.Thread(target=serve)
    thread.start()
    version = None
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(b"hello")
            assert tls.recv(100) == b"HELLO"
            version = tls.version()
    except (ssl.SSLError, OSError):
        pass
    finally:
        thread.join(10)
        listener.close()
    return version, (server_error[0] if server_error else None)


def test_a_good_pair_gives_a_hardened_server_context(pair: tuple[Path, Path]) -> None:
    context = load_server_context(*pair)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_NONE  # clients are not asked for certificates
    assert not context.check_hostname


def test_a_client_that_trusts_the_certificate_completes_a_real_handshake(
    pair: tuple[Path, Path],
) -> None:
    client = ssl.create_default_context(cafile=str(pair[0]))
    version, error = _handshake(load_server_context(*pair), client)
    assert version in ("TLSv1.2", "TLSv1.3"), error


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_client_limited_to_tls_1_1_is_refused(pair: tuple[Path, Path]) -> None:
    def old_client() -> ssl.SSLContext:
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(cafile=str(pair[0]))
        client.set_ciphers("DEFAULT:@SECLEVEL=0")
        client.minimum_version = ssl.TLSVersion.TLSv1
        client.maximum_version = ssl.TLSVersion.TLSv1_1
        return client

    # Control: a permissive server does speak TLS 1.1 with this client here...
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.minimum_version = ssl.TLSVersion.TLSv1
    permissive.load_cert_chain(*pair)
    try:
        version, _ = _handshake(permissive, old_client())
    except (ValueError, ssl.SSLError):
        version = None
    if version != "TLSv1.1":
        pytest.skip("this OpenSSL cannot speak TLS 1.1 at all: nothing to refuse")
    # ...and ours does not.
    version, error = _handshake(load_server_context(*pair), old_client())
    assert version is None
    assert error is not None and "protocol" in error.lower(), error


def test_paths_may_be_strings(pair: tuple[Path, Path]) -> None:
    load_server_context(str(pair[0]), str(pair[1]))  # type: ignore[arg-type]


def test_a_key_of_another_certificate_is_a_mismatch(
    pair: tuple[Path, Path], other_pair: tuple[Path, Path]
) -> None:
    with pytest.raises(TLSConfigError) as info:
        load_server_context(pair[0], other_pair[1])
    _one_line(info, str(other_pair[1]), "does not match", str(pair[0]))


def test_a_missing_certificate_names_the_file(pair: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError) as info:
        load_server_context(tmp_path / "nope.pem", pair[1])
    _one_line(info, "certificate", str(tmp_path / "nope.pem"), "No such file")


def test_a_missing_key_names_the_file(pair: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError) as info:
        load_server_context(pair[0], tmp_path / "nope.pem")
    _one_line(info, "key", str(tmp_path / "nope.pem"), "No such file")


def test_a_directory_is_not_a_certificate(pair: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError) as info:
        load_server_context(tmp_path, pair[1])
    _one_line(info, str(tmp_path), "cannot read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_names_the_file(pair: tuple[Path, Path], tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(pair[1].read_bytes())
    key.chmod(0)
    with pytest.raises(TLSConfigError) as info:
        load_server_context(pair[0], key)
    _one_line(info, str(key), "Permission denied")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_certificate_names_the_file(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(pair[0].read_bytes())
    cert.chmod(0)
    with pytest.raises(TLSConfigError) as info:
        load_server_context(cert, pair[1])
    _one_line(info, str(cert), "Permission denied")


@pytest.mark.parametrize(
    "content", [b"garbage\n", b"", os.urandom(600)], ids=["text", "empty", "random"]
)
def test_a_garbage_certificate_is_not_a_pem_certificate(
    pair: tuple[Path, Path], tmp_path: Path, content: bytes
) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(content)
    with pytest.raises(TLSConfigError) as info:
        load_server_context(cert, pair[1])
    _one_line(info, str(cert), "not a PEM certificate")


@pytest.mark.parametrize(
    "content", [b"garbage\n", b"", os.urandom(600)], ids=["text", "empty", "random"]
)
def test_a_garbage_key_is_not_a_pem_key(
    pair: tuple[Path, Path], tmp_path: Path, content: bytes
) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(content)
    with pytest.raises(TLSConfigError) as info:
        load_server_context(pair[0], key)
    _one_line(info, str(key), "not a PEM private key")


def test_certificate_and_key_given_the_wrong_way_round(pair: tuple[Path, Path]) -> None:
    with pytest.raises(TLSConfigError) as info:
        load_server_context(pair[1], pair[0])
    _one_line(info, str(pair[1]), "not a PEM certificate")


def test_the_certificate_twice_is_not_a_key(pair: tuple[Path, Path]) -> None:
    with pytest.raises(TLSConfigError) as info:
        load_server_context(pair[0], pair[0])
    _one_line(info, "not a PEM private key")


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    key = tmp_path / "enc.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pair[1]), "-aes256", "-passout", "pass:secret"],
        check=True,
        stdout=key.open("wb"),
        stderr=subprocess.DEVNULL,
    )
    with pytest.raises(TLSConfigError) as info:
        load_server_context(pair[0], key)
    _one_line(info, str(key), "passphrase")


def test_a_chain_file_with_the_leaf_first_is_accepted(
    pair: tuple[Path, Path], other_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pair[0].read_bytes() + other_pair[0].read_bytes())
    load_server_context(chain, pair[1])


# --------------------------------------------------------------------------
# chat-server cert generate
# --------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_writes_a_working_pair_with_a_private_key(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    cert, key = generate_self_signed(out, ["localhost", "127.0.0.1"], days=3)
    assert (cert, key) == (out / "cert.pem", out / "key.pem")
    assert _mode(key) == 0o600 and _mode(cert) == 0o644
    assert sorted(p.name for p in out.iterdir()) == ["cert.pem", "key.pem"]  # no temp left
    client = ssl.create_default_context(cafile=str(cert))
    for host in ("localhost", "127.0.0.1"):
        version, error = _handshake(load_server_context(cert, key), client, host)
        assert version is not None, (host, error)
    version, _ = _handshake(load_server_context(cert, key), client, "example.org")
    assert version is None  # host name checked: not in the certificate


@pytest.mark.parametrize("mask", [0o000, 0o022])
def test_generate_key_is_0600_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        _, key = generate_self_signed(tmp_path)
    finally:
        os.umask(old)
    assert _mode(key) == 0o600


def test_generate_does_not_overwrite_unless_forced(tmp_path: Path) -> None:
    cert, key = generate_self_signed(tmp_path)
    before = key.read_bytes()
    with pytest.raises(TLSConfigError) as info:
        generate_self_signed(tmp_path)
    _one_line(info, "exists", "--force")
    assert key.read_bytes() == before
    generate_self_signed(tmp_path, force=True)
    assert key.read_bytes() != before
    load_server_context(cert, key)


def test_generate_without_openssl_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError) as info:
        generate_self_signed(tmp_path / "out", openssl=str(tmp_path / "no-openssl"))
    _one_line(info, "cannot run")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("host", ["", "a,b", "x/y", "a b"])
def test_generate_refuses_names_that_would_change_the_openssl_arguments(
    tmp_path: Path, host: str
) -> None:
    with pytest.raises(TLSConfigError):
        generate_self_signed(tmp_path, [host])
    assert list(tmp_path.iterdir()) == []
