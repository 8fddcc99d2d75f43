"""Invite codes as an operator hands them out: pasted into `chat-client --invite CODE`."""

from __future__ import annotations

from chat.client.cli import build_parser
from chat.server.accounts.invites import CODE_MAX, new_code, well_formed


def test_every_code_is_one_argument_the_client_takes_after_invite() -> None:
    """CI once failed because a code began with `-` (URL-safe base64 does once in 64) and
    argparse took it for an option: `--invite: expected one argument`. 2,000 codes: the old
    codes would all have passed with a chance of (63/64)**2000, about 2e-14."""
    parser = build_parser()
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000  # no repeats
    for code in codes:
        assert well_formed(code) and len(code) <= CODE_MAX
        assert code.isalnum() and code.isascii(), code  # one word in every shell, no quoting
        args = parser.parse_args(["--user", "alice", "--register", "--invite", code])
        assert args.invite == code
