"""Four processes x 50 concurrency draining one store: no task held twice at once, none lost.

Each backend that can be shared by processes (SQLite, PostgreSQL, Redis,
MariaDB/MySQL) gets one store; four ``spawn`` processes (own interpreter, own
connections) each run a real :class:`~taskbench.executor.TaskExecutor` at
concurrency 50, with its prefetch buffer, until the store is idle. They
connect first and start together at a barrier, so their claims contend.

Every execution is logged by the handler: task id, process, attempt, and the
system-wide monotonic clock at its start and end (comparable across
processes on one machine). The test checks that

* no two executions of one task overlap in time (no task held by two
  workers at once) and, as no lease can expire here, each task ran once;
* every task is stored as succeeded on its first attempt, with the result
  written by the very process that ran it (its completion came from the
  lease holder);
* nothing is lost or left over: the store counts exactly ``TASKS`` succeeded.

A server backend without its URL is skipped, or fails in CI (tests/backends.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from itertools import pairwise
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from taskbench.executor import TaskExecutor
from taskbench.model import Task, TaskStatus
from taskbench.stores import Capability, TaskStore, open_store
from tests.backends import isolated_store_url
from tests.processes import after_barrier, run_spawned

PROCESSES = 4
CONCURRENCY = 50
TASKS = 4_000
LEASE_S = 600.0
"""Far beyond the test's length: no lease expires, so every task must run exactly once."""
START_TIMEOUT_S = 120
RESULT_TIMEOUT_S = 240

Execution = tuple[str, str, int, float, float]
"""(task id, process name, attempt, monotonic start, monotonic end)."""

MULTI_PROCESS_BACKENDS = ["sqlite", "postgres", "redis", "mysql"]


async def _run_executor(store: TaskStore, name: str) -> list[Execution]:
    executions: list[Execution] = []

    async def job(task: Task) -> str:
        began = time.monotonic()
        await asyncio.sleep(0.001 * (int(task.payload) % 3))  # interleave the slots
        executions.append((task.id, name, task.attempts, began, time.monotonic()))
        return name

    executor = TaskExecutor(store, concurrency=CONCURRENCY, lease_s=LEASE_S, worker_id=name)
    executor.register("job", job)
    await executor.run(until_idle=True)
    return executions


def drain_in_a_process(url: str, name: str, start: Barrier, results: Any) -> None:
    """The child process: connect, wait for the others, drain, report its executions."""

    async def drain(store: TaskStore) -> list[Execution]:
        return await _run_executor(store, name)

    results.put((name, asyncio.run(after_barrier(url, start, drain, START_TIMEOUT_S))))


def overlapping_holders(executions: list[Execution]) -> list[str]:
    """Task ids with two executions that overlap in time (held by two workers at once)."""
    by_task: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_task[execution[0]].append(execution)
    overlapping = []
    for task_id, runs in by_task.items():
        runs.sort(key=lambda run: run[3])
        if any(later[3] < earlier[4] for earlier, later in pairwise(runs)):
            overlapping.append(task_id)
    return overlapping


def test_overlapping_holders_finds_an_overlap_and_only_that() -> None:
    """The checker itself: a task run twice at once is found, one run after another is not."""
    executions: list[Execution] = [
        ("a", "p0", 1, 0.0, 2.0),
        ("a", "p1", 1, 1.0, 3.0),
        ("b", "p0", 1, 0.0, 1.0),
        ("b", "p1", 2, 1.5, 2.0),
    ]
    assert overlapping_holders(executions) == ["a"]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", MULTI_PROCESS_BACKENDS)
async def test_four_processes_drain_one_store_without_sharing_or_losing_a_task(
    backend: str, tmp_path: Path
) -> None:
    async with isolated_store_url(backend, tmp_path) as base_url:
        url = f"{base_url}?busy_timeout_ms=120000" if backend == "sqlite" else base_url
        async with open_store(url) as store:
            assert Capability.MULTI_PROCESS in store.capabilities
            tasks = [Task.new("job", i, id=f"task-{i:05}") for i in range(TASKS)]
            for first in range(0, TASKS, 1_000):
                await store.enqueue(tasks[first : first + 1_000])

            executed = await asyncio.to_thread(
                run_spawned, drain_in_a_process, url, PROCESSES, timeout=RESULT_TIMEOUT_S
            )

            executions = [run for runs in executed.values() for run in runs]
            assert overlapping_holders(executions) == [], "a task was held by two workers at once"
            ran = [run[0] for run in executions]
            assert len(ran) == len(set(ran)), "a task ran twice although no lease expired"
            assert set(ran) == {t.id for t in tasks}, "a task was never run"
            assert sum(1 for runs in executed.values() if runs) >= 2, "no contention happened"
            ran_by = {run[0]: run[1] for run in executions}
            stored = await store.get_many([t.id for t in tasks])
            assert len(stored) == TASKS
            assert all(t.status is TaskStatus.SUCCEEDED and t.attempts == 1 for t in stored)
            assert all(t.result == ran_by[t.id] for t in stored), "a result from a non-holder"
            counts = await store.counts()
            assert counts == {**dict.fromkeys(TaskStatus, 0), TaskStatus.SUCCEEDED: TASKS}
