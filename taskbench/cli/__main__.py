"""``python -m taskbench.cli``: the same as the ``taskbench`` command."""

import sys

from taskbench.cli import main

sys.exit(main())
