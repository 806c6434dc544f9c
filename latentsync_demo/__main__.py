"""``python -m latentsync_demo <command> ...``: see ``commands`` (no command: ``run``, the lip-sync CLI)."""

import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
