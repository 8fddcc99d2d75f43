"""Frozen entry point of chat-client: the same callable as the console script."""

import sys

from chat.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
