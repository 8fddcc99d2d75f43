"""Frozen entry point of chat-server: the same callable as the console script."""

import sys

from chat.server.ops.cli import main

if __name__ == "__main__":
    sys.exit(main())
