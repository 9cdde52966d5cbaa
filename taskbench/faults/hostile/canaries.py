"""The canaries and the bait: tasks of known state against which every store case is judged.

Before the store entry points run, the store is purged and canary tasks are
planted, one in each state (queued far in the future, running under a long
lease, succeeded, dead, retried); their times are fixed, so planting is
deterministic (:func:`plant_canaries`). Finite hostile times are drawn
within +-:data:`FINITE_LIMIT` seconds and canaries live at :data:`FAR`, so a
call that accepts such a time can only touch the tasks made for its case
(the bait, claimed by :data:`BAIT_WORKER` at :data:`BAIT_NOW`).
"""

from __future__ import annotations

from typing import Any

from taskbench.model import (
    Outcome,
    Task,
)
from taskbench.stores import TaskStore

FINITE_LIMIT = 1e12
FAR = 1e13
"""Canaries are due, and their leases expire, at this time or later."""
CANARY_NOW = 10.0
CANARY_OWNER = "canary-owner-7f3a"
BAIT_WORKER = "bait-worker"
BAIT_RUN_AT = 100.0
BAIT_NOW = 200.0
BAIT_LEASE_S = 100.0


CANARY_IDS = (
    "canary-queued",
    "canary-queued-low",
    "canary-running",
    "canary-succeeded",
    "canary-dead",
    "canary-retried",
)


def _canary_tasks() -> list[Task]:
    def canary(name: str, task_id: str, payload: Any = None, **options: Any) -> Task:
        return Task.new(name, payload, id=task_id, now=1.0, **options)

    return [
        canary(
            "canary.queued",
            "canary-queued",
            {"t": "é😀'\";--", "n": [1, 2.5, None]},
            priority="high",
            run_at=FAR,
        ),
        canary(
            "canary'); DROP TABLE x;--",
            "canary-queued-low",
            "x" * 1000,
            priority="low",
            run_at=2 * FAR,
        ),
        canary("canary.running", "canary-running", run_at=0.0, max_attempts=5),
        canary("canary.succeeded", "canary-succeeded", run_at=0.0),
        canary("canary.dead", "canary-dead", run_at=0.0, max_attempts=1),
        canary("canary.retried", "canary-retried", run_at=0.0),
    ]


async def plant_canaries(store: TaskStore) -> dict[str, Task]:
    """Purge ``store`` and plant one canary in each state; return them as read back."""
    await store.purge()
    await store.enqueue(_canary_tasks())
    held = {t.id: t.lease for t in await store.claim(CANARY_OWNER, 10, lease_s=FAR, now=CANARY_NOW)}
    await store.finish(
        [
            Outcome.succeeded(held["canary-succeeded"], {"ok": "ü"}, now=CANARY_NOW + 1),
            Outcome.dead(held["canary-dead"], "boom ' \" é", now=CANARY_NOW + 2),
            Outcome.retry(held["canary-retried"], "again", run_at=FAR, now=CANARY_NOW + 3),
        ]
    )
    return {t.id: t for t in await store.get_many(list(CANARY_IDS))}
