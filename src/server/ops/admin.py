"""`chat-server user|invite|status|backup|restore`: the operator's commands, from the shell.

Each command takes the server's own options (the same `--data-dir`, or
`--users-file` and `--key-file`, or `--config FILE`), so it finds what the
server uses the way the server does. Then:

1. a server runs there: the request goes through its control socket
   (ops/control.py), and the server carries it out on every session it
   has (and, in a cluster, every node does);
2. none runs: the commands that make sense on files work on the files,
   under the data folder's lock, so no server can start meanwhile (a
   cluster's: on its Redis, the nodes being told on the control channel).

Exit 0 on success, 1 with one line on stderr when the command cannot be done
(an unknown user, no server for `status`), 2 for a usage error. Nothing on
stdout but what the command is for: `user list` the names, one a line,
sorted; `invite create` the code; `status` its lines.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from chat.server.ops.commands import MAX_ID, Commands, Refused
from chat.server.ops.config import ServerConfig
from chat.server.ops.control import ControlError, request

log = logging.getLogger("chat.server")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

#: command words -> (what it does, whether it names a user)
COMMANDS: dict[tuple[str, ...], tuple[str, bool]] = {
    ("user", "list"): ("print every account's name, one a line, sorted", False),
    ("user", "passwd"): ("set NAME's password to the first line of standard input", True),
    ("user", "delete"): ("delete the account NAME: its sessions end, its queue goes", True),
    ("user", "ban"): ("NAME may no longer log in; its sessions end", True),
    ("user", "unban"): ("NAME may log in again", True),
    ("user", "kick"): ("end NAME's sessions (no ban: it may log in again)", True),
    ("invite", "create"): ("print a new invite code (--registration invite)", False),
    ("status",): ("what a running server is doing", False),
    ("backup",): ("a consistent copy of the server's data in one file", False),
    ("restore",): ("put a backup back, on a stopped server", False),
}
FIRST_WORDS = frozenset(words[0] for words in COMMANDS)


def main(argv: list[str]) -> int:
    words = tuple(argv[:2]) if argv[:1] in (["user"], ["invite"]) else tuple(argv[:1])
    if words not in COMMANDS:
        known = ", ".join(" ".join(w) for w in COMMANDS)
        what = " ".join(argv[:2])
        return _fail(EXIT_USAGE, f"error: unknown command {what!r} (commands: {known})")
    args, config = _parse(words, argv[len(words) :])
    _quiet_log(args)
    if words == ("backup",) or words == ("restore",):
        from chat.server.ops import backup

        try:
            if words == ("backup",):
                return backup.backup_main(config, args.out, args.with_key)
            return backup.restore_main(config, getattr(args, "from"), args.force)
        except backup.BackupError as exc:
            return _fail(EXIT_FAILURE, str(exc))
    message: dict[str, Any] = {"cmd": " ".join(words)}
    if COMMANDS[words][1]:
        message["name"] = args.name
    if words == ("user", "passwd"):
        password = sys.stdin.readline()
        message["password"] = password[:-1] if password.endswith("\n") else password
        message["password"] = message["password"].removesuffix("\r")
    elif words == ("invite", "create"):
        message["uses"], message["days"] = args.uses, args.days
    elif words == ("status",):
        message["json"] = args.json
    folder = control_folder(config)
    try:
        answer = request(folder, message)
    except ControlError as exc:
        return _fail(EXIT_FAILURE, str(exc))
    if answer is None:
        if words == ("status",):
            return _fail(EXIT_FAILURE, f"no chat-server is running on {folder}")
        try:
            out = on_files(config, message)
        except Refused as exc:
            return _fail(EXIT_FAILURE, str(exc))
    elif not answer.get("ok"):
        return _fail(EXIT_FAILURE, str(answer.get("error", "the server refused")))
    else:
        out = [str(line) for line in answer.get("out", [])]
    with contextlib.suppress(BrokenPipeError):
        for line in out:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return EXIT_OK


def control_folder(config: ServerConfig) -> Path:
    """Where the server's control socket is: the folder of its users file (the locked
    data folder); a cluster node's, its --data-dir (each node its own)."""
    return config.data_dir if config.cluster else config.users_file.parent


# ---- no server: the files (or a cluster's Redis) ----------------------------------------------
def on_files(config: ServerConfig, message: dict[str, Any]) -> list[str]:
    """Carry out `message` with no server to ask (Refused: one line)."""
    by = f"files:uid={os.geteuid()},pid={os.getpid()}"
    if config.cluster:
        return _on_redis(config, message, f"redis:uid={os.geteuid()},pid={os.getpid()}")
    from chat.server.accounts.users_file import FolderLock, StoreError, UserStore
    from chat.server.crypto.keyfile import KeyFileError, read_key

    folder = config.users_file.parent
    if not folder.is_dir():
        raise Refused(f"no data folder {folder}: no server has run with it")
    try:
        lock = FolderLock.acquire(folder)
    except StoreError:
        raise Refused(
            f"data folder {folder} is in use by a chat-server that does not answer on its "
            f"control socket {folder / 'control.sock'}"
        ) from None
    try:
        try:
            key = read_key(config.key_file)
        except KeyFileError as exc:
            raise Refused(str(exc)) from None
        if key is None:
            raise Refused(f"no key file {config.key_file}: start the server once first")
        cipher = _cipher(config)
        try:
            accounts = UserStore.open(
                config.users_file, key, cipher, config.hash_cost, config.refuse_case_variants
            )
        except StoreError as exc:
            raise Refused(str(exc)) from None

        def forget(name: str) -> None:
            _forget_in_files(config, key, cipher, name)

        commands = Commands(accounts, forget, min_password=config.min_password)
        try:
            return commands.run(message, by)
        finally:
            owned_by_folder(folder, config.users_file, config.history_file)
    finally:
        lock.release()


def _forget_in_files(config: ServerConfig, key: bytes, cipher: Any, name: str) -> None:
    """What a deleted account had, in a stopped server's message store, in one transaction:
    its offline queue, markers and contacts, and its place in every room (the same rules as
    a running server's: core/rooms.py; a room it was the last member of goes, with its
    history)."""
    import time

    from chat.server.core.rooms import RoomBook
    from chat.server.store.sqlite import MessageStore, MessageStoreError, is_missing

    if not config.keep_messages or is_missing(config.history_file):
        return
    try:
        store = MessageStore.open(config.history_file, key, cipher)
        try:
            book = RoomBook()
            book.load(store.state.load_rooms())
            with store.transaction():
                store.ack(store.owner(name), MAX_ID)
                store.state.drop_user(name)
                for change in book.remove_user(name, time.time()):
                    store.state.save_room(change.key, change.room)
                    if change.deleted:
                        store.drop_conversation(change.events[-1].room)
        finally:
            store.close()
    except MessageStoreError as exc:
        raise Refused(f"the account is deleted but what it had is not: {exc}") from None


def _on_redis(config: ServerConfig, message: dict[str, Any], by: str) -> list[str]:
    """A cluster with no node answering here: Redis itself, and the nodes told."""
    import secrets

    import redis

    from chat.server.cluster.accounts import RedisAccounts
    from chat.server.cluster.box import Box
    from chat.server.cluster.link import Link
    from chat.server.cluster.messages import RedisMessageStore
    from chat.server.cluster.moderation import ClusterModeration
    from chat.server.cluster.url import ClusterError
    from chat.server.crypto.keyfile import KeyFileError, read_key

    try:
        key = read_key(config.key_file)
        link = Link(config.cluster or "")
    except (KeyFileError, ClusterError) as exc:
        raise Refused(str(exc)) from None
    if key is None:
        raise Refused(f"no key file {config.key_file}: every node of the cluster needs it")
    box = Box(key, _cipher(config))
    accounts = RedisAccounts(link, box, config.hash_cost, config.refuse_case_variants)
    queues = RedisMessageStore(link, box, config.history_days * 86400)

    def forget(name: str) -> None:
        try:
            queues.ack(queues.owner(name), MAX_ID)
        except redis.RedisError as exc:
            raise Refused(f"the account is deleted but its offline queue is not: {exc}") from None

    peers = ClusterModeration(link, box, f"operator-{secrets.token_hex(4)}")
    commands = Commands(accounts, forget, peers=peers, min_password=config.min_password)
    try:
        accounts.reload()
    except redis.RedisError as exc:
        raise Refused(f"cluster {link.shown}: cannot reach redis ({exc})") from None
    return commands.run(message, by)


def _cipher(config: ServerConfig) -> Any:
    from chat.server.crypto.cipher import CipherLoadError, load_cipher

    try:
        return load_cipher(str(config.cipher_lib) if config.cipher_lib else None)
    except CipherLoadError as exc:
        raise Refused(str(exc)) from None


def owned_by_folder(folder: Path, *paths: Path) -> None:
    """Run as root on a folder that another user owns (a service's, e.g. systemd's
    DynamicUser): what this command wrote is given to that user, or the server could not
    read its own files at its next start."""
    if os.geteuid() != 0:
        return
    try:
        owner = folder.stat()
    except OSError:
        return
    for path in paths:
        for one in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            with contextlib.suppress(OSError):
                if one.stat().st_uid != owner.st_uid:
                    os.chown(one, owner.st_uid, owner.st_gid)


# ---- parsing ----------------------------------------------------------------------------------
def _parse(words: tuple[str, ...], argv: list[str]) -> tuple[argparse.Namespace, ServerConfig]:
    """The server's options (the same files, the same config file) and the command's own."""
    from chat.server.ops import cli
    from chat.server.ops.config_file import SettingsError

    what, named = COMMANDS[words]
    parser = cli.build_parser()
    parser.prog = "chat-server " + " ".join(words)
    parser.description = (
        f"{what[0].upper()}{what[1:]}. Give it the server's own options (--data-dir, or "
        "--users-file and --key-file, or --config): a running server is asked through its "
        "control socket; a stopped one's files are changed under its folder lock."
    )
    parser.epilog = "docs/operations.md, 'Operator commands'."
    command = parser.add_argument_group("this command")
    a = command.add_argument
    if named:
        a("name", metavar="NAME", help="the account's name")
    if words == ("invite", "create"):
        a("--uses", type=cli._ranged(int, 1, 1_000_000), default=1, help="registrations")
        a("--days", type=cli._ranged(float, 0.001, 3650), default=None, help="valid this long")
    elif words == ("status",):
        a("--json", action="store_true", help="one line of JSON instead")
    elif words == ("backup",):
        a("--out", type=Path, required=True, metavar="FILE", help="the backup file to write")
        a("--with-key", action="store_true", help="put the key file in it too (keep it safe)")
    elif words == ("restore",):
        a("--from", type=Path, required=True, metavar="FILE", help="a file made by backup")
        a("--force", action="store_true", help="replace the data the folder already has")
    try:
        args = cli.read_settings(argv, parser)
    except SettingsError as exc:
        parser.error(str(exc))
        raise  # parser.error exits
    return args, cli._config(args)


def _quiet_log(args: argparse.Namespace) -> None:
    """The command's audit lines go to the server's --log-file when it has one; without
    it, only warnings, on stderr (stdout is the command's)."""
    from chat.server.ops.logfile import install, open_handler

    try:
        if args.log_file is not None:
            install(open_handler(args.log_file), "INFO")
            return
    except OSError:
        pass
    install(open_handler(None), "WARNING")


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"chat-server: {message}\n")
    return code
