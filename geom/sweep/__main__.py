"""``python -m geom.sweep``: the command line (``geom.sweep.main``)."""
import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
