"""Store calls that wait out a server coming back; the workers and the experiment share them.

Servers are killed and restarted under running work, so :func:`patiently`
retries a call that fails with a StoreError every :data:`RETRY_PAUSE_S` for
up to :data:`PATIENCE_S`, and :func:`enqueue_reliably`, after an error,
enqueues again only the tasks that are not stored.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from taskbench.errors import StoreError
from taskbench.model import Task
from taskbench.stores import TaskStore

T = TypeVar("T")

RETRY_PAUSE_S = 0.2
PATIENCE_S = 60.0
"""How long a store call is retried while a server comes back."""


async def patiently(call: Callable[[], Awaitable[T]], *, patience_s: float = PATIENCE_S) -> T:
    """``await call()``, retried on StoreError (a server coming back) for ``patience_s``."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return await call()
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(RETRY_PAUSE_S)


async def _not_stored(store: TaskStore, tasks: Sequence[Task]) -> list[Task]:
    stored = {task.id for task in await store.get_many([task.id for task in tasks])}
    return [task for task in tasks if task.id not in stored]


async def enqueue_reliably(store: TaskStore, tasks: Sequence[Task]) -> None:
    """Enqueue through server faults: after an error, enqueue only what is not stored."""
    pending = list(tasks)
    deadline = time.monotonic() + PATIENCE_S
    while pending:
        try:
            await store.enqueue(pending)
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(RETRY_PAUSE_S)
        pending = await patiently(functools.partial(_not_stored, store, pending))
