"""The soak: a long stream of tasks through one store, with the worker's memory sampled.

What this module owns: :func:`run_soak`, which feeds ``tasks`` tasks into a
store while one worker subprocess (the crash experiments' worker, see
:mod:`taskbench.faults.crash`, without its logs) executes them, samples that
worker's resident memory (RSS) and progress over time, and sums it up: the
maximum RSS and its trend, the least-squares slope of RSS against tasks done
over the second half of the run (MB per 100,000 tasks). A bounded worker has
a slope near zero; a leak shows as a steady positive slope.

Design rules:

* **Steady state, not a backlog.** The producer keeps about ``backlog`` tasks
  queued (refilling when half are gone), so the store's size and claim costs
  stay those of a running service; the table still grows by one row per
  finished task, as a queue without retention does.
* **Measured from outside.** RSS is read by this process with psutil, not
  reported by the worker; progress comes from the worker's published counters.
* **Every task accounted for.** At the end the store's counts must show every
  task succeeded; ``lost`` is the shortfall.
* The series is kept whole in the result (``samples``: ``[seconds, tasks done,
  RSS MB]`` rows) and saved with ``save_run(kind="soak")`` as JSON text.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from taskbench.errors import BenchmarkError, ConfigError
from taskbench.faults.crash import (
    DONE_MARKER,
    TASK_NAME,
    WorkerConfig,
    WorkerPool,
    enqueue_reliably,
    patiently,
)
from taskbench.model import Task, TaskStatus
from taskbench.stores import TaskStore, open_store
from taskbench.stores.base import Capability
from taskbench.urls import redact

FEED_POLL_S = 0.05
"""How often the producer looks at the backlog."""
ENQUEUE_CHUNK = 1_000
MB = 1024 * 1024
SLOPE_PER = 100_000
"""The slope is reported in MB per this many tasks."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SoakPlan:
    """One soak; make it with :meth:`create`, which checks everything first."""

    url: str
    tasks: int
    concurrency: int = 50
    backlog: int = 10_000
    sample_s: float = 1.0

    @classmethod
    def create(cls, url: str, *, tasks: int, **options: Any) -> SoakPlan:
        plan = cls(url=url, tasks=tasks, **options)
        for name in ("tasks", "concurrency", "backlog"):
            value = getattr(plan, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not plan.sample_s > 0:
            raise ConfigError(f"sample_s must be a positive number, got {plan.sample_s!r}")
        if Capability.MULTI_PROCESS not in open_store(url).capabilities:
            raise ConfigError(f"{redact(url)} cannot be shared with a worker process")
        return plan


@dataclass(frozen=True, slots=True)
class Sample:
    """The worker at one moment: seconds since the start, tasks done, RSS in MB."""

    elapsed_s: float
    done: int
    rss_mb: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SoakResult:
    """The soak's figures; ``samples`` holds the whole series."""

    store: str
    tasks: int
    succeeded: int
    lost: int
    concurrency: int
    wall_s: float
    tasks_per_s: float
    rss_warm_mb: float
    """RSS at the first sample after the worker had finished a task (imports done, store open)."""
    rss_max_mb: float
    rss_last_mb: float
    rss_slope_mb_per_100k: float
    """Least-squares slope of RSS against tasks done over the second half of the run."""
    samples: list[list[float]]

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def soak_task(index: int) -> Task:
    return Task.new(TASK_NAME, {"n": index}, id=f"soak-{index:09d}")


def second_half_slope(samples: list[Sample]) -> float:
    """MB per SLOPE_PER tasks, fitted over the samples from half the tasks done onwards."""
    if not samples:
        return 0.0
    half = samples[-1].done / 2
    late = [s for s in samples if s.done >= half]
    if len({s.done for s in late}) < 2:
        return 0.0
    fit = statistics.linear_regression([s.done for s in late], [s.rss_mb for s in late])
    return fit.slope * SLOPE_PER


class Feeder:
    """Keeps about ``backlog`` tasks queued until all ``tasks`` are enqueued."""

    def __init__(self, store: TaskStore, plan: SoakPlan) -> None:
        self.store = store
        self.plan = plan
        self.enqueued = 0

    @property
    def done(self) -> bool:
        return self.enqueued >= self.plan.tasks

    async def top_up(self, completed: int) -> None:
        queued = self.enqueued - completed
        if self.done or queued > self.plan.backlog // 2:
            return
        wanted = min(self.plan.backlog - queued, self.plan.tasks - self.enqueued)
        for start in range(0, wanted, ENQUEUE_CHUNK):
            count = min(ENQUEUE_CHUNK, wanted - start)
            first = self.enqueued
            await enqueue_reliably(self.store, [soak_task(first + i) for i in range(count)])
            self.enqueued += count


def _completed(directory: Path) -> int:
    """Tasks the worker has finished, from its published counters (0 before the first)."""
    for path in directory.glob("progress-*.json"):
        try:
            return int(json.loads(path.read_text())["succeeded"])
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def _rss_mb(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).memory_info().rss) / MB
    except psutil.NoSuchProcess:
        return None


async def _feed(feeder: Feeder, pool: WorkerPool) -> None:
    """Keep the backlog topped up; once everything is enqueued, tell the worker to finish."""
    worker = pool.processes[0]
    while worker.poll() is None and not feeder.done:
        await feeder.top_up(_completed(pool.directory))
        await asyncio.sleep(FEED_POLL_S)
    (pool.directory / DONE_MARKER).touch()  # the worker drains what is left and exits


async def _sample(
    pool: WorkerPool, plan: SoakPlan, on_sample: Callable[[Sample], None] | None
) -> list[Sample]:
    """Every ``sample_s``: the worker's RSS and tasks done, until the worker exits."""
    worker = pool.processes[0]
    started = time.perf_counter()
    samples: list[Sample] = []
    while (rss := _rss_mb(worker.pid)) is not None and worker.poll() is None:
        elapsed = round(time.perf_counter() - started, 3)
        samples.append(Sample(elapsed, _completed(pool.directory), round(rss, 2)))
        if on_sample is not None:
            on_sample(samples[-1])
        await asyncio.sleep(plan.sample_s)
    return samples


async def _drive(
    feeder: Feeder, pool: WorkerPool, plan: SoakPlan, on_sample: Callable[[Sample], None] | None
) -> list[Sample]:
    """Feed and sample until the worker, told that the feed is over, drains and exits."""
    _, samples = await asyncio.gather(_feed(feeder, pool), _sample(pool, plan, on_sample))
    worker = pool.processes[0]
    if worker.wait() != 0:
        raise BenchmarkError(
            f"the soak worker exited with {worker.returncode}:\n{pool.log_tail(0)}"
        )
    return samples


def _summary(plan: SoakPlan, samples: list[Sample], succeeded: int, wall_s: float) -> SoakResult:
    if not samples:
        raise BenchmarkError("the soak ended before its first memory sample")
    rss = [s.rss_mb for s in samples]
    warm = next((s.rss_mb for s in samples if s.done > 0), rss[-1])
    return SoakResult(
        store=redact(plan.url),
        tasks=plan.tasks,
        succeeded=succeeded,
        lost=plan.tasks - succeeded,
        concurrency=plan.concurrency,
        wall_s=round(wall_s, 3),
        tasks_per_s=round(succeeded / wall_s, 1),
        rss_warm_mb=warm,
        rss_max_mb=max(rss),
        rss_last_mb=rss[-1],
        rss_slope_mb_per_100k=round(second_half_slope(samples), 3),
        samples=[[s.elapsed_s, s.done, s.rss_mb] for s in samples],
    )


async def run_soak(
    plan: SoakPlan, *, on_sample: Callable[[Sample], None] | None = None
) -> SoakResult:
    """Run ``plan.tasks`` tasks through the store (PURGED first); sample the worker's RSS."""
    with tempfile.TemporaryDirectory(prefix="taskbench-soak-") as directory:
        async with open_store(plan.url) as store:
            await patiently(store.purge)
            config = WorkerConfig(
                url=plan.url, directory=directory, concurrency=plan.concurrency, task_ms=0,
                lease_s=30.0, record=False,
            )  # fmt: skip
            started = time.perf_counter()
            with WorkerPool(config, 1) as pool:
                samples = await _drive(Feeder(store, plan), pool, plan, on_sample)
            wall_s = time.perf_counter() - started
            counts = await patiently(store.counts)
    return _summary(plan, samples, counts[TaskStatus.SUCCEEDED], wall_s)


def save_result(result: SoakResult, directory: str | None = None) -> Path:
    """Save with ``save_run(kind="soak")``; the series goes in as JSON text."""
    from taskbench.bench.results import save_run

    return save_run("soak", [result.to_json_dict()], directory=directory)
