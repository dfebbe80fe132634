"""``python -m spidarknet CMD ...``: dispatch to ``spidarknet.cli.CMD.main``."""

import sys

from spidarknet.cli import dispatch

if __name__ == "__main__":
    sys.exit(dispatch(sys.argv[1:]))
