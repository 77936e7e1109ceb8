"""``python -m util_lib.artifacts ...``: the artifact store's command line."""

import sys

from util_lib.artifacts.cli import main

if __name__ == "__main__":
    sys.exit(main())
