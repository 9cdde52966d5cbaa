"""taskbench: a task executor, task stores and a benchmark harness, studied in notebooks.

The public API in a few names::

    from taskbench import Task, TaskExecutor, open_store

    async with open_store("sqlite:///tasks.db") as store:
        await store.enqueue([Task.new("email", {"to": "a@example.org"})])
        executor = TaskExecutor(store, concurrency=10)
        executor.register("email", send_email)
        await executor.run(until_idle=True)
"""

from taskbench.errors import TaskbenchError
from taskbench.executor import TaskExecutor
from taskbench.model import Outcome, RetryPolicy, Task, TaskPriority, TaskStatus
from taskbench.ratelimit import RateLimit
from taskbench.stores import open_store

__version__ = "0.1.0"

__all__ = [
    "Outcome",
    "RateLimit",
    "RetryPolicy",
    "Task",
    "TaskExecutor",
    "TaskPriority",
    "TaskStatus",
    "TaskbenchError",
    "__version__",
    "open_store",
]
