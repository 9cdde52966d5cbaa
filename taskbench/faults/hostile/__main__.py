"""``python -m taskbench.faults.hostile``: runs the campaign's command line (``command.main``)."""

import sys

from taskbench.faults.hostile.command import main

if __name__ == "__main__":
    sys.exit(main())
