"""Login tokens (protocol v1.2 section 6, `resume`): an HMAC, nothing stored on the server.

    token = "v1." + b64url(issued, 8 bytes: Unix time in ms)
                  + "." + b64url(HMAC-SHA256(token_key, "v1" | len | name | nonce | issued))

58 characters. `token_key` is derived from the server's key file (HMAC of it
with a fixed label), so every node of a cluster, which shares the key file,
checks the tokens of every other, and it is never written anywhere. `nonce` is
the account's token nonce (users_file.Record.nonce): a new password, an unban
or a delete (the record goes; a re-registered name gets a new one) changes
it, and with it every token issued before stops working, on every process, at
once: there is no list of tokens to keep in step. Why a token cannot be forged:
without the key file nobody can compute the MAC of a name, a nonce and a time
of their choosing; why it cannot be replayed after revocation: the nonce it
was made with is no longer the account's, so its MAC no longer matches.

A token is good while `issued + --token-days > now` (the option as it is now,
so lowering it shortens every token already issued) and `issued <= now + 60 s`
(a clock that went back a little is forgiven; a token from the future is not).
Checking one costs one HMAC-SHA256 of about 80 bytes, no scrypt: what makes a
reconnect storm cheap (bench/tokens.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable

from chat.server.crypto.sealing import HmacKey

#: What the server key is turned into the token key with (never the key itself).
_LABEL = b"chat tokens v1"
_VERSION = b"v1"
_SHAPE = re.compile(r"v1\.([A-Za-z0-9_-]{11})\.([A-Za-z0-9_-]{43})")
#: A token issued this far in the future (another node's clock ahead of ours) still counts.
CLOCK_SLACK = 60.0
#: `--token-days` by default.
DEFAULT_DAYS = 30.0
#: Stands in for the nonce of a name that has no account, so that the check costs the same.
_NO_ACCOUNT = bytes(16)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    """Issues and checks the tokens of one server (or of every node of a cluster)."""

    def __init__(
        self, server_key: bytes, days: float = DEFAULT_DAYS, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = HmacKey(hmac.new(server_key, _LABEL, hashlib.sha256).digest())
        #: `--token-days`: read at each check, so a reload (SIGHUP) applies to every token.
        self.days = days
        self._clock = clock

    def issue(self, name: str, nonce: bytes) -> str:
        """A new token for `name`, bound to the account's current nonce."""
        issued = int(self._clock() * 1000).to_bytes(8, "big")
        return f"v1.{_b64(issued)}.{_b64(self._mac(name, nonce, issued))}"

    def check(self, token: str, name: str, nonce: bytes | None) -> bool:
        """True for a token this server issued to `name` with `nonce` (None: the name has no
        account) and that has not expired. Anything else, however malformed, is False."""
        shape = _SHAPE.fullmatch(token)
        if shape is None:
            return False
        issued, mac = _unb64(shape[1]), _unb64(shape[2])
        if _b64(issued) != shape[1] or _b64(mac) != shape[2]:
            return False  # spare bits set: one token has one spelling
        good = hmac.compare_digest(mac, self._mac(name, nonce or _NO_ACCOUNT, issued))
        when = int.from_bytes(issued, "big") / 1000
        now = self._clock()
        fresh = when + self.days * 86400 > now and when <= now + CLOCK_SLACK
        return good and fresh and nonce is not None

    def _mac(self, name: str, nonce: bytes, issued: bytes) -> bytes:
        who = name.encode("utf-8", "surrogatepass")
        data = b"".join((_VERSION, len(who).to_bytes(2, "big"), who, nonce, issued))
        return self._key.digest(data)
