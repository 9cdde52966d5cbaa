"""Several OS processes draining one SQLite file: every task claimed exactly once.

Four processes (``spawn``, so each has its own interpreter, connection and
worker thread) each run several asyncio claimers against the same file, in
both profiles. They connect first and then start together at a barrier, so
their claims contend for the write lock. Each reports the ids it claimed; the test checks
that no id was claimed twice, none was lost and every task succeeded on its
first attempt. This is the store-level check, in both SQLite profiles;
test_multiprocess_drain.py runs the same question through the executor
(4 processes x 50 concurrency) on SQLite and on every server backend.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from taskbench.model import Outcome, Task, TaskStatus
from taskbench.stores import TaskStore, open_store
from tests.processes import after_barrier, run_spawned

PROCESSES = 4
CLAIMERS_PER_PROCESS = 4
TASKS = 2_000
BATCH = 5
LEASE_S = 600.0


async def _drain(store: TaskStore, worker: str) -> list[str]:
    claimed: list[str] = []
    while batch := await store.claim(worker, BATCH, lease_s=LEASE_S):
        claimed.extend(task.id for task in batch)
        outcomes = [Outcome.succeeded(t.lease, t.id, now=time.time()) for t in batch]
        assert await store.finish(outcomes) == len(batch)
    return claimed


async def _claim_all(store: TaskStore, name: str) -> list[str]:
    workers = [_drain(store, f"{name}-claimer{i}") for i in range(CLAIMERS_PER_PROCESS)]
    return [task_id for ids in await asyncio.gather(*workers) for task_id in ids]


def claim_in_a_process(url: str, name: str, start: Barrier, results: Any) -> None:
    """The child process: connect, wait for the others, drain, report the ids claimed."""

    async def claim(store: TaskStore) -> list[str]:
        return await _claim_all(store, name)

    results.put((name, asyncio.run(after_barrier(url, start, claim, 60))))


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["improved", "legacy"])
async def test_processes_claim_every_task_exactly_once(tmp_path: Path, profile: str) -> None:
    # A generous busy timeout: the legacy profile (rollback journal, a connection
    # per operation) is slow by design, and this test is about correctness.
    url = f"sqlite:///{tmp_path / 'shared.db'}?profile={profile}&busy_timeout_ms=120000"
    store = open_store(url)
    await store.open()
    try:
        tasks = [Task.new("job", i, id=f"task-{i:05}") for i in range(TASKS)]
        await store.enqueue(tasks)

        claimed = await asyncio.to_thread(
            run_spawned, claim_in_a_process, url, PROCESSES, timeout=90
        )

        every_claim = [task_id for ids in claimed.values() for task_id in ids]
        assert len(every_claim) == len(set(every_claim)), "a task was claimed twice"
        assert set(every_claim) == {t.id for t in tasks}, "a task was never claimed"
        assert await store.counts() == {**dict.fromkeys(TaskStatus, 0), TaskStatus.SUCCEEDED: TASKS}
        stored = await store.get_many([t.id for t in tasks])
        assert all(t.attempts == 1 and t.result == t.id for t in stored)
    finally:
        await store.close()
