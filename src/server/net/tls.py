"""The server's TLS context, and a self-signed pair for a first try.

`load_server_context` is what `--tls-cert` / `--tls-key` become: TLS 1.2 or
newer, no renegotiation, the certificate chain and its key loaded and checked
against each other. Anything wrong with the two files is a `TLSConfigError`
whose text is one line naming the file and what is wrong with it, so the
command line can print it and exit 2 (protocol v1.1, section 1).

`generate_self_signed` backs `chat-server cert generate`: it runs the
`openssl` program (no Python crypto package is a dependency) and writes the
key with mode 0600 from its first byte.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DEFAULT_HOSTS",
    "TLSConfigError",
    "generate_self_signed",
    "load_server_context",
]

#: Names a generated certificate is valid for when none are given.
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


class TLSConfigError(Exception):
    """The certificate or key cannot be used; the message is one line."""


class _EncryptedKey(Exception):
    """Raised from the password callback: the key wants a passphrase."""


def _refuse_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal: a service must not.
    raise _EncryptedKey


def load_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for `cert` (PEM chain, leaf first) and `key` (PEM, unencrypted)."""
    cert, key = Path(cert), Path(key)
    _readable(cert, "certificate")
    _readable(key, "key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key, password=_refuse_passphrase)
    except _EncryptedKey:
        raise TLSConfigError(
            f"TLS key {key}: encrypted with a passphrase; the server needs it unencrypted "
            f"(openssl pkey -in {key} -out NEW.pem, then chmod 600 NEW.pem)"
        ) from None
    except ssl.SSLError as exc:
        raise _explain(cert, key, exc) from None
    except OSError as exc:  # raced with a change of the files after the checks above
        raise TLSConfigError(f"TLS files {cert}, {key}: {_reason(exc)}") from None
    return context


def _readable(path: Path, what: str) -> None:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise TLSConfigError(f"TLS {what} {path}: cannot read ({_reason(exc)})") from None


def _explain(cert: Path, key: Path, exc: ssl.SSLError) -> TLSConfigError:
    if exc.reason == "KEY_VALUES_MISMATCH":
        return TLSConfigError(f"TLS key {key} does not match the certificate {cert}")
    if not _holds_certificate(cert):
        return TLSConfigError(f"TLS certificate {cert}: not a PEM certificate")
    return TLSConfigError(f"TLS key {key}: not a PEM private key")


def _holds_certificate(path: Path) -> bool:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError):
        return False
    return True


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


# --------------------------------------------------------------------------
# chat-server cert generate
# --------------------------------------------------------------------------
def generate_self_signed(
    out_dir: Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    days: int = 365,
    *,
    force: bool = False,
    openssl: str | None = None,
) -> tuple[Path, Path]:
    """Write out_dir/cert.pem (0644) and out_dir/key.pem (0600); return their paths.

    The pair is made in a private temp folder inside out_dir and moved into
    place, so a failure leaves neither file and the key is never readable by
    others. Existing files are kept unless `force`.
    """
    out_dir = Path(out_dir)
    if not hosts:
        raise TLSConfigError("cert generate: at least one --host is needed")
    subject_alt = ",".join(_san(host) for host in hosts)
    exe = openssl or shutil.which("openssl")
    if exe is None:
        raise TLSConfigError(
            "cert generate: the openssl program is not on PATH; install it "
            "(apt-get install openssl) or bring your own certificate"
        )
    cert, key = out_dir / "cert.pem", out_dir / "key.pem"
    if not force:
        for path in (cert, key):
            if path.exists():
                raise TLSConfigError(f"cert generate: {path} exists (--force replaces it)")
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".cert-", dir=out_dir))  # mode 0700
    except OSError as exc:
        raise TLSConfigError(f"cert generate: {out_dir}: {_reason(exc)}") from None
    try:
        tmp_cert, tmp_key = work / "cert.pem", work / "key.pem"
        command = [
            exe,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-keyout",
            str(tmp_key),
            "-out",
            str(tmp_cert),
            "-days",
            str(days),
            "-subj",
            f"/CN={hosts[0]}",
            "-addext",
            f"subjectAltName={subject_alt}",
        ]
        old_umask = os.umask(0o077)  # the key is private from the first byte
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise TLSConfigError(f"cert generate: cannot run {exe}: {_reason(exc)}") from None
        finally:
            os.umask(old_umask)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise TLSConfigError(f"cert generate: openssl failed: {last}")
        os.chmod(tmp_key, 0o600)
        os.chmod(tmp_cert, 0o644)
        os.replace(tmp_key, key)
        os.replace(tmp_cert, cert)
    except OSError as exc:
        raise TLSConfigError(f"cert generate: {out_dir}: {_reason(exc)}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return cert, key


def _is_ip(host: str) -> bool:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    return False


def _san(host: str) -> str:
    if not host or any(c in host for c in ",/= \t\n"):
        raise TLSConfigError(f"cert generate: {host!r} is not a host name or an IP address")
    return f"IP:{host}" if _is_ip(host) else f"DNS:{host}"
