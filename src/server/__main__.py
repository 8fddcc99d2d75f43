import sys

from chat.server.ops.cli import main

sys.exit(main())
