"""Real certificate pairs for the TLS tests, made with the `openssl` binary.

One helper for every test that needs a pair (server context, server e2e,
client e2e, client network thread): a self-signed RSA-2048 certificate valid
for two days, its key unencrypted and mode 0600.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

LOCAL_SAN = "DNS:localhost,IP:127.0.0.1"


def make_pair(
    folder: Path, name: str, san: str = LOCAL_SAN, cn: str = "localhost"
) -> tuple[Path, Path]:
    """(certificate, key) written into `folder` as NAME-cert.pem and NAME-key.pem."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={cn}",
            "-addext",
            f"subjectAltName={san}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    key.chmod(0o600)
    return cert, key
