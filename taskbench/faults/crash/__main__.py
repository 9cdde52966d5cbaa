"""``python -m taskbench.faults.crash``: one fault worker (``worker.main``), configured by
$TASKBENCH_FAULT_WORKER."""

import sys

from taskbench.faults.crash.worker import main

if __name__ == "__main__":
    sys.exit(main())
