"""Measurements no benchmark module offers, run in this process on a store or an executor.

The claim query's SQLite plan, the indexes each store really has, claim
round trips under a backlog, high-priority latency under a backlog, a
rate-limited downstream, tasks under injected failures, and two
measurements alternated so that drift hits both alike (:func:`interleaved`).
Each returns plain JSON data, so it can be stored as a reference.
Experiments that run elsewhere (a CLI command, a crash plan, pytest) are
:mod:`taskbench.study.experiments`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import (
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any

from taskbench.bench import backlog as backlog_bench
from taskbench.executor import TaskExecutor
from taskbench.model import RetryPolicy, Task, TaskPriority, TaskStatus
from taskbench.ratelimit import RateLimit, TokenBucket
from taskbench.stores import TaskStore, open_store


def summarise_ms(values: Sequence[float]) -> dict[str, float]:
    """p50, p95 and max of millisecond values (nearest rank), for a table."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan")}

    def rank(fraction: float) -> float:
        return ordered[max(0, round(fraction * len(ordered)) - 1)]

    return {"p50": rank(0.5), "p95": rank(0.95), "max": ordered[-1]}


async def claim_plan(url: str) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of the store's own claim statement, one line per step."""
    from taskbench.stores.sqlite import CLAIM, database_path

    async with open_store(url):  # creates the table (and, unless legacy, the indexes)
        pass
    now = time.time()

    def explain() -> list[str]:
        with contextlib.closing(sqlite3.connect(database_path(url.partition("?")[0]))) as db:
            rows = db.execute("EXPLAIN QUERY PLAN " + CLAIM, (now, "explain", now + 30, 1))
            return [str(row[3]) for row in rows]

    return await asyncio.to_thread(explain)


async def store_indexes(url: str) -> dict[str, list[str]]:
    """The indexes the store at ``url`` really has (name -> columns), from its catalog."""
    async with open_store(url) as store:
        reader = getattr(store, "indexes", None)
        found: dict[str, tuple[str, ...]] = await reader() if reader is not None else {}
    return {name: list(columns) for name, columns in sorted(found.items())}


def index_drift(a: Mapping[str, Sequence[str]], b: Mapping[str, Sequence[str]]) -> int:
    """How many indexes (name and columns) one side has and the other does not."""
    return len({(n, tuple(c)) for n, c in a.items()} ^ {(n, tuple(c)) for n, c in b.items()})


async def claim_round_trips(url: str, backlog: int, samples: int) -> list[float]:
    """Milliseconds of ``samples`` claim(1)+finish round trips with ``backlog`` tasks queued."""
    async with open_store(url) as store:
        await store.purge()
        await backlog_bench.fill(store, backlog)
        await backlog_bench.warm_up(store)
        durations = [await backlog_bench.time_round_trip(store) for _ in range(samples)]
        await store.purge()
    return [seconds * 1000.0 for seconds in durations]


async def _latencies_ms(store: TaskStore, ids: Sequence[str]) -> list[float]:
    tasks = await store.get_many(ids)
    return [1000.0 * ((t.finished_at or t.created_at) - t.created_at) for t in tasks]


async def _enqueue_urgent(
    store: TaskStore, count: int, spacing_s: float, priority: TaskPriority
) -> list[str]:
    """Enqueue ``count`` urgent tasks one by one, ``spacing_s`` apart; their ids."""
    ids = []
    for _ in range(count):
        task = Task.new("work", priority=priority)
        await store.enqueue([task])
        ids.append(task.id)
        await asyncio.sleep(spacing_s)
    return ids


async def priority_latency(
    url: str, *, backlog: int, urgent: int, concurrency: int, work_ms: float, prioritise: bool
) -> dict[str, Any]:
    """Latency of urgent tasks that arrive while a backlog drains: HIGH priority or FIFO.

    ``backlog`` NORMAL tasks are queued, an executor starts, and ``urgent``
    tasks arrive one by one during the first half of the drain, as HIGH
    (``prioritise``) or as NORMAL (plain FIFO). Each task sleeps ``work_ms``.
    """
    drain_s = backlog * work_ms / 1000.0 / concurrency
    async with open_store(url) as store:
        await store.purge()
        await store.enqueue([Task.new("work") for _ in range(backlog)])
        executor = TaskExecutor(store, concurrency=concurrency, poll_interval=0.01)
        executor.register("work", _sleeper(work_ms))
        running = asyncio.create_task(executor.run(until_idle=True))
        level = TaskPriority.HIGH if prioritise else TaskPriority.NORMAL
        ids = await _enqueue_urgent(store, urgent, drain_s / 2 / urgent, level)
        await running
        urgent_ms = await _latencies_ms(store, ids)
        await store.purge()
    return {"prioritise": prioritise, "urgent_ms": urgent_ms, **_ms_stats(urgent_ms)}


def _ms_stats(values: Sequence[float]) -> dict[str, float]:
    return {f"{key}_ms": value for key, value in summarise_ms(values).items()}


def _sleeper(work_ms: float) -> Callable[[Task], Awaitable[None]]:
    async def work(task: Task) -> None:
        await asyncio.sleep(work_ms / 1000.0)

    return work


class Overloaded(Exception):
    """The downstream service refused a call: it is over its capacity."""


class Downstream:
    """A service that accepts ``capacity`` calls a second (a token bucket) and refuses the rest."""

    def __init__(self, capacity: float, burst: float) -> None:
        self._bucket = TokenBucket(RateLimit(capacity, burst=burst))
        self.accepted: list[float] = []
        self.refused: list[float] = []

    def call(self) -> None:
        """Accept the call or raise Overloaded; either way, record when."""
        if self._bucket.wait_time() > 0:
            self.refused.append(time.monotonic())
            raise Overloaded("downstream over capacity")
        self._bucket.take()
        self.accepted.append(time.monotonic())


DOWNSTREAM_RETRY = RetryPolicy(base_delay=0.02, factor=2.0, max_delay=0.5)
TIMELINE_BIN_S = 0.1


async def downstream_run(
    url: str, *, tasks: int, capacity: float, concurrency: int, limit: bool
) -> dict[str, Any]:
    """Drain ``tasks`` calls to a downstream of ``capacity`` calls/s, with or without a limiter.

    Without the limiter the executor calls as fast as it can, the downstream
    refuses the excess, and refused calls are retried with backoff. With it,
    the executor's token bucket paces calls at the downstream's capacity.
    Returns the calls made, refused, the amplification (calls per task done)
    and the accepted and refused calls per TIMELINE_BIN_S bin.
    """
    downstream = Downstream(capacity, burst=max(5.0, capacity / 10))
    started = time.monotonic()
    async with open_store(url) as store:
        await store.purge()
        await store.enqueue([Task.new("call", max_attempts=1000) for _ in range(tasks)])
        executor = TaskExecutor(
            store,
            concurrency=concurrency,
            retry=DOWNSTREAM_RETRY,
            rate_limit=RateLimit(capacity) if limit else None,
            poll_interval=0.01,
        )
        executor.register("call", lambda task: downstream.call())
        stats = await executor.run(until_idle=True)
        await store.purge()
    calls = len(downstream.accepted) + len(downstream.refused)
    return {
        "limit": limit,
        "tasks": tasks,
        "succeeded": stats.succeeded,
        "calls": calls,
        "refused": len(downstream.refused),
        "amplification": calls / max(stats.succeeded, 1),
        "duration_s": time.monotonic() - started,
        "accepted_per_bin": _bins([t - started for t in downstream.accepted], TIMELINE_BIN_S),
        "refused_per_bin": _bins([t - started for t in downstream.refused], TIMELINE_BIN_S),
    }


def _bins(offsets: Sequence[float], width: float) -> list[int]:
    """How many of ``offsets`` (seconds) fall in each ``width``-second bin from 0."""
    counts = Counter(int(offset // width) for offset in offsets)
    return [counts.get(i, 0) for i in range(max(counts, default=-1) + 1)]


async def fault_run(
    url: str, *, tasks: int, failure_rate: float, retry: bool, interrupt_after: int, seed: int
) -> dict[str, Any]:
    """Tasks under injected failures and an interrupted worker: is every task accounted for?

    Each attempt fails with probability ``failure_rate``. A first executor is
    stopped without grace after ``interrupt_after`` successes (its running
    tasks are released), a second one finishes the work. ``retry`` False is
    the report's "before": the first failure is final (dead letters).
    The handler is a plain function, run in threads that cannot be cancelled:
    one still running at the stop may finish after its task was handed back,
    and run again (a duplicate, as at-least-once execution allows).
    """
    chance = random.Random(seed)
    executions: Counter[str] = Counter()
    lock = threading.Lock()  # a plain function runs in the executor's threads

    def flaky(task: Task) -> None:
        with lock:
            failed = chance.random() < failure_rate
            if not failed:
                executions[task.id] += 1
        if failed:
            raise RuntimeError("injected failure")

    policy = RetryPolicy(base_delay=0.001, max_delay=0.01, retry_on=(Exception,) if retry else ())
    with quiet_logs("taskbench.executor"):  # the dead letters are the point, not news
        return await _faults_in(url, tasks, flaky, policy, interrupt_after, executions) | {
            "retry": retry,
            "failure_rate": failure_rate,
        }


@contextlib.contextmanager
def quiet_logs(logger_name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Only ``level`` and above from this logger (``""``: the root, so every logger that
    sets no level of its own) while an experiment fails things on purpose."""
    logger = logging.getLogger(logger_name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


async def _faults_in(
    url: str,
    tasks: int,
    flaky: Callable[[Task], None],
    policy: RetryPolicy,
    interrupt_after: int,
    executions: Counter[str],
) -> dict[str, int]:
    async with open_store(url) as store:
        await store.purge()
        batch = [Task.new("flaky", max_attempts=10) for _ in range(tasks)]
        await store.enqueue(batch)
        await _interrupted_worker(store, flaky, policy, interrupt_after, executions)
        second = _executor(store, flaky, policy)
        await second.run(until_idle=True)
        found = {task.id: task.status for task in await store.get_many([t.id for t in batch])}
        await store.purge()
    return _accounting(batch, found, executions)


def _executor(store: TaskStore, handler: Callable[[Task], None], policy: RetryPolicy) -> Any:
    executor = TaskExecutor(store, concurrency=8, retry=policy, poll_interval=0.01)
    executor.register("flaky", handler)
    return executor


async def _interrupted_worker(
    store: TaskStore,
    handler: Callable[[Task], None],
    policy: RetryPolicy,
    after: int,
    executions: Counter[str],
) -> None:
    """Run an executor until ``after`` tasks ran, then stop it with no grace period."""
    first = _executor(store, handler, policy)
    running = asyncio.create_task(first.run(until_idle=True))
    while not running.done() and sum(executions.values()) < after:
        await asyncio.sleep(0.002)
    await first.stop(grace=0.0)
    await running


def _accounting(
    batch: Sequence[Task], found: Mapping[str, TaskStatus], executions: Counter[str]
) -> dict[str, int]:
    statuses = Counter(found.get(task.id) for task in batch)
    return {
        "tasks": len(batch),
        "succeeded": statuses[TaskStatus.SUCCEEDED],
        "dead": statuses[TaskStatus.DEAD],
        "lost": len(batch) - statuses[TaskStatus.SUCCEEDED] - statuses[TaskStatus.DEAD],
        "duplicates": sum(1 for count in executions.values() if count > 1),
    }


async def interleaved(
    repeats: int, first: Callable[[], Awaitable[float]], second: Callable[[], Awaitable[float]]
) -> tuple[list[float], list[float]]:
    """Run two measurements alternately ``repeats`` times each (so drift hits both alike)."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        a.append(await first())
        b.append(await second())
    return a, b
