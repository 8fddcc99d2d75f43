"""`python -m chat.client`."""

import sys

from .cli import main

sys.exit(main())
