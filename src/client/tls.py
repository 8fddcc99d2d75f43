"""TLS for `chat-client --tls` / `--tls-ca`: the context, and failures in one line.

The context verifies the server's certificate chain and its host name (the
`--host` given, IP addresses against the certificate's IP SANs) and refuses
anything older than TLS 1.2. It trusts the system's store, or with
`--tls-ca FILE` that file alone (a certificate or a CA bundle, PEM). There is
no option to skip verification and no fallback to plain TCP: a client asked
for TLS speaks TLS from its first byte or does not connect.
"""

from __future__ import annotations

import re
import socket
import ssl

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

#: OpenSSL reasons that mean the peer answered a ClientHello with something
#: that is not TLS at all (a plain-TCP port, another protocol).
_NOT_TLS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
        "UNKNOWN_PROTOCOL",
        "HTTP_REQUEST",
        "UNEXPECTED_RECORD",
    }
)


class TlsSetupError(Exception):
    """The trust store cannot be set up (unreadable or not PEM); one line for the user."""


def client_context(cafile: str | None = None) -> ssl.SSLContext:
    """A verifying client context: the system store, or only `cafile` when given."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except ssl.SSLError as exc:
        raise TlsSetupError(
            f"--tls-ca {cafile}: no certificate found in it (a PEM file is needed): "
            f"{ssl_words(exc)}"
        ) from None
    except OSError as exc:
        raise TlsSetupError(f"--tls-ca {cafile}: {exc.strerror or exc}") from None
    context.minimum_version = MINIMUM_VERSION
    # Both are the defaults of create_default_context; stated so that no later
    # change can turn verification off without this line changing too.
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context


def ssl_words(exc: ssl.SSLError) -> str:
    """OpenSSL's text without the `[LIB: CODE]` prefix and the `(_ssl.c:NNN)` suffix."""
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    text = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)
    reason = getattr(exc, "reason", None) or ""
    return text or reason.lower().replace("_", " ") or "unknown error"


def describe_tls_error(host: str, port: int, exc: BaseException) -> str:
    """One human line for a failed TLS handshake (certificate, host name, not TLS, ...)."""
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = (exc.verify_message or ssl_words(exc)).rstrip(".")
        return f"TLS: certificate verify failed: {why} (host {host})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"TLS: no handshake answer from {where} (is it a TLS port?)"
    if isinstance(exc, ssl.SSLEOFError | ConnectionError):
        return f"TLS: {where} closed the connection during the handshake (is it a TLS port?)"
    if isinstance(exc, ssl.SSLError):
        words = ssl_words(exc)
        if getattr(exc, "reason", None) in _NOT_TLS:
            return f"TLS: {where} does not speak TLS ({words})"
        return f"TLS: handshake with {where} failed: {words}"
    if isinstance(exc, OSError):
        return f"TLS: handshake with {where} failed: {exc.strerror or exc}"
    return f"TLS: handshake with {where} failed: {exc}"


#: The first byte of a TLS record: an alert (0x15) or a handshake (0x16), then the major
#: version 3. A chat frame starts with its length, whose first byte is 0 for every frame a
#: server may send (at most 16 MiB), so the two cannot be confused.
_TLS_RECORD_TYPES = (0x15, 0x16)


def looks_like_tls(first: bytes) -> bool:
    """Whether the first bytes a plain-TCP connection received are a TLS record."""
    if not first or first[0] not in _TLS_RECORD_TYPES:
        return False
    return len(first) < 2 or first[1] == 0x03


def speaks_tls(host: str, port: int) -> str:
    """A plain-TCP client answered in TLS: the port is a TLS port."""
    return f"{host}:{port} answered in TLS: it is a TLS port (use --tls)"


def maybe_tls(host: str, port: int, reason: str) -> str:
    """A plain-TCP connection that ended before the server said anything: a TLS server
    drops a client that does not start with a ClientHello, without a word (OpenSSL sends
    no alert for a record it cannot parse) and often with a reset."""
    return f"{reason} before any answer ({host}:{port} may be a TLS port: try --tls)"
