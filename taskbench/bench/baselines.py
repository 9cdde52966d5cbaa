"""The two executors the report compares ours with, in their best simple form.

* ``asyncio``: claim a batch of ``concurrency`` tasks, run their handlers
  with :func:`asyncio.gather`, finish the whole batch in one call, repeat.
* ``threads``: the same loop, running the handlers' sync versions in a
  ``ThreadPoolExecutor(max_workers=concurrency)``.

Design rules:

* Honest, not strawmen: one round trip per batch for claim and for finish,
  no sleeping while work is due, and the same retry decisions as
  :class:`~taskbench.executor.TaskExecutor` (the task's ``max_attempts``
  and a :class:`~taskbench.model.RetryPolicy`).
* Their weakness is the design, not the code: a batch is a barrier, so one
  slow task holds ``concurrency - 1`` free slots until it ends.
* Both report to a :class:`~taskbench.bench.metrics.Recorder`, exactly as
  the executor does (or to nothing, when the harness measures its own
  overhead), and stop when nothing is queued or running (retries that are
  not due yet are waited for).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from taskbench.bench.metrics import Recorder
from taskbench.bench.workloads import AsyncHandler, SyncHandler, Workload
from taskbench.model import Outcome, RetryPolicy, Task, TaskStatus
from taskbench.stores.base import TaskStore

LEASE_S = 30.0
IDLE_WAIT_S = 0.05
"""How long to wait for work when nothing is due but retries are pending."""

RunBatch = Callable[[Sequence[Task]], Awaitable[list[Outcome]]]


def failure_outcome(task: Task, error: BaseException, policy: RetryPolicy) -> Outcome:
    """Retry later or dead-letter, as the policy and the task's attempts decide."""
    now = time.time()
    message = f"{type(error).__name__}: {error}"
    if policy.should_retry(task, error):
        run_at = now + policy.backoff(task.attempts)
        return Outcome.retry(task.lease, message, run_at=run_at, now=now)
    return Outcome.dead(task.lease, message, now=now)


async def _run_async(handler: AsyncHandler, task: Task, policy: RetryPolicy) -> Outcome:
    try:
        result = await handler(task)
    except Exception as error:
        return failure_outcome(task, error, policy)
    return Outcome.succeeded(task.lease, result, now=time.time())


def _run_sync(handler: SyncHandler, task: Task, policy: RetryPolicy) -> Outcome:
    try:
        result = handler(task)
    except Exception as error:
        return failure_outcome(task, error, policy)
    return Outcome.succeeded(task.lease, result, now=time.time())


async def _is_idle(store: TaskStore) -> bool:
    counts = await store.counts()
    return counts[TaskStatus.QUEUED] == 0 and counts[TaskStatus.RUNNING] == 0


def _report(recorder: Recorder | None, batch: Sequence[Task], outcomes: list[Outcome]) -> None:
    if recorder is not None:
        recorder.on_claimed(batch)
        for task, outcome in zip(batch, outcomes, strict=True):
            recorder.on_outcome(task, outcome)


async def _drain_loop(
    store: TaskStore, run_batch: RunBatch, concurrency: int, recorder: Recorder | None, worker: str
) -> None:
    """Claim a batch, run it, finish it; until the store has nothing left to do."""
    while True:
        batch = await store.claim(worker, concurrency, lease_s=LEASE_S)
        if not batch:
            if await _is_idle(store):
                return
            await store.wait_for_work(IDLE_WAIT_S)
            continue
        outcomes = await run_batch(batch)
        await store.finish(outcomes)
        _report(recorder, batch, outcomes)


async def drain_with_asyncio(
    store: TaskStore,
    workload: Workload,
    *,
    concurrency: int,
    recorder: Recorder | None,
    retry: RetryPolicy,
) -> None:
    """The asyncio baseline: each batch's handlers run together with gather."""

    async def run_batch(batch: Sequence[Task]) -> list[Outcome]:
        return await asyncio.gather(*(_run_async(workload.handle, t, retry) for t in batch))

    worker = f"asyncio-{uuid.uuid4().hex[:8]}"
    await _drain_loop(store, run_batch, concurrency, recorder, worker)


async def drain_with_threads(
    store: TaskStore,
    workload: Workload,
    *,
    concurrency: int,
    recorder: Recorder | None,
    retry: RetryPolicy,
) -> None:
    """The thread baseline: each batch's sync handlers run in a thread pool."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench") as pool:

        async def run_batch(batch: Sequence[Task]) -> list[Outcome]:
            futures = [
                loop.run_in_executor(pool, _run_sync, workload.handle_sync, t, retry) for t in batch
            ]
            return await asyncio.gather(*futures)

        worker = f"threads-{uuid.uuid4().hex[:8]}"
        await _drain_loop(store, run_batch, concurrency, recorder, worker)
