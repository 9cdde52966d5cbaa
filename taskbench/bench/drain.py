"""The drain benchmark: enqueue N tasks, execute them all, check every one.

:func:`run_drain` opens a store, purges it, enqueues ``tasks`` tasks in
batches (timed: ``enqueue_tps``), lets the chosen executor run until nothing
is queued or running (timed: ``drain_tps = tasks / drain seconds``), then
reads every id back with ``get_many`` and accounts for each one.

The store is **purged first**: point the benchmark at a store of its own (a
SQLite file, a PostgreSQL ``?schema=``, a Redis ``?prefix=``, a MySQL database).

Design rules:

* **Validate before anything starts.** :class:`DrainConfig` checks every
  argument (and that the store URL resolves to a backend with its driver
  installed) and raises :class:`~taskbench.errors.ConfigError`; the CLI
  maps that to exit code 2.
* **Account for every task.** ``succeeded + dead + lost == tasks``, where
  lost is an id that is missing or not terminal after the drain;
  ``duplicates`` are ids that the executor reported as succeeded more than
  once; ``failed`` counts failed attempts (retried or dead-lettered).
* **One measuring code path.** Every executor (ours and the two baselines
  in :mod:`taskbench.bench.baselines`) reports to the same
  :class:`~taskbench.bench.metrics.Recorder`, with the same retry policy.
* **Warm-up apart.** ``warmup`` tasks are drained first through the same
  store and the same kind of executor, untimed, then purged: connections,
  caches and prepared statements are warm when the measured drain starts.
* **Overhead is measurable.** With ``metrics=False`` nothing is recorded
  (no recorder, no resource sampler): the drain still verifies every id,
  but latencies and duplicates are ``None``. The two side by side give the
  harness's own cost (``taskbench overhead``).
* **The caller's heap is not measured** (:func:`frozen_heap`): the objects
  alive before a measured run (a notebook's data frames and figures, earlier
  runs' results) are collected once and frozen (``gc.freeze``) until it ends,
  so the collector's full passes during the run walk only what the run
  itself made, as in a worker process that froze its start-up heap. Measured
  in a process holding pandas, plotly and 300,000 small objects, an open loop
  on Redis at 15,000/s had one 98 ms full collection in a 10 s run without
  it (p99 19.5 ms) and none with it (p99 9.6-9.8 ms).
* **Never leak a password**: the result carries the store's redacted URL.
* Progress bars (``tqdm.auto``) only when asked, and outside the timed
  hot path: the drain bar is refreshed by a poller, not by each task.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from taskbench.bench.baselines import drain_with_asyncio, drain_with_threads
from taskbench.bench.metrics import LatencySeries, Percentiles, Recorder
from taskbench.bench.resources import ResourceUsage, monitored
from taskbench.bench.workloads import Workload, parse_workload
from taskbench.errors import ConfigError
from taskbench.executor import TaskExecutor
from taskbench.model import RetryPolicy, TaskStatus
from taskbench.stores import STORES, TaskStore, open_store
from taskbench.urls import options_for, redact

ENQUEUE_BATCH = 1_000
VERIFY_CHUNK = 1_000
PROGRESS_REFRESH_S = 0.25

BENCH_RETRY = RetryPolicy(base_delay=0.01, factor=2.0, max_delay=0.5)
"""Short backoffs, so a ``flaky`` drain measures the executor, not the waiting."""


class DrainFunction(Protocol):
    """Run every task of ``store`` to the end with one kind of executor."""

    def __call__(
        self,
        store: TaskStore,
        workload: Workload,
        *,
        concurrency: int,
        recorder: Recorder | None,
        retry: RetryPolicy,
    ) -> Awaitable[None]: ...


async def drain_with_taskbench(
    store: TaskStore,
    workload: Workload,
    *,
    concurrency: int,
    recorder: Recorder | None,
    retry: RetryPolicy,
) -> None:
    """Our :class:`~taskbench.executor.TaskExecutor`, run until the store is idle."""
    executor = TaskExecutor(store, concurrency=concurrency, retry=retry, metrics=recorder)
    executor.register(workload.task_name, workload.handle)
    await executor.run(until_idle=True)


EXECUTORS: dict[str, DrainFunction] = {
    "taskbench": drain_with_taskbench,
    "asyncio": drain_with_asyncio,
    "threads": drain_with_threads,
}


def check_positive(value: object, what: str) -> int:
    """``value`` as a positive int, or ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def check_count(value: object, what: str) -> int:
    """``value`` as an int >= 0, or ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{what} must be a whole number >= 0, got {value!r}")
    return value


def check_store_url(url: str) -> str:
    """``url`` if it names a known backend (driver installed) with valid options."""
    backend, parts = STORES.resolve(url)
    options_for(backend, parts.query)
    return url


def check_executor(name: str) -> str:
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainConfig:
    """One drain's parameters; make it with :meth:`create`, which checks them all."""

    url: str
    tasks: int
    concurrency: int
    workload: Workload
    executor: str = "taskbench"
    warmup: int = 0
    """Tasks drained before the measured drain, untimed."""
    metrics: bool = True
    """Record latencies, duplicates and resources (False: measure the harness's overhead)."""

    @classmethod
    def create(
        cls,
        url: str,
        *,
        tasks: int,
        concurrency: int,
        workload: str | Workload,
        executor: str = "taskbench",
        warmup: int = 0,
        metrics: bool = True,
    ) -> DrainConfig:
        """Validate everything (raising ConfigError) before anything starts."""
        return cls(
            url=check_store_url(url),
            tasks=check_positive(tasks, "tasks"),
            concurrency=check_positive(concurrency, "concurrency"),
            workload=parse_workload(workload),
            executor=check_executor(executor),
            warmup=check_count(warmup, "warmup"),
            metrics=bool(metrics),
        )


def summarise_series(recorder: Recorder | None, name: str) -> Percentiles | None:
    """The percentiles of one of the recorder's series (None when nothing was recorded)."""
    if recorder is None:
        return None
    series: LatencySeries = recorder.series(name)
    return series.summary()


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainResult:
    """What one drain measured; :meth:`to_json_dict` is its published form."""

    store: str
    workload: str
    executor: str
    tasks: int
    concurrency: int
    enqueue_s: float
    drain_s: float
    drain_cpu_s: float
    enqueue_tps: float
    drain_tps: float
    latency_ms: Percentiles | None
    service_ms: Percentiles | None
    succeeded: int
    failed: int | None
    dead: int
    lost: int
    duplicates: int | None
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    queue_ms: Percentiles | None = None
    warmup: int = 0
    metrics: bool = True
    resources: ResourceUsage | None = None
    mode: str = "drain"
    histograms: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Encoded HdrHistograms by series name; saved beside the figures, not in the JSON."""

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types only (the histograms are left out).

        ``latency_ms`` is enqueue -> finish of each task, ``queue_ms`` enqueue ->
        start of its first attempt, ``service_ms`` start -> finish of each
        attempt; ``drain_cpu_s`` is this process's CPU time during the drain
        (all threads): beside ``drain_s`` it tells the executor's own cost apart
        from a busy machine. ``max_rss_mb`` is the process's peak so far;
        ``resources`` are this process's and the local server's CPU and peak
        memory during the drain. Without metrics, the timed figures and
        ``failed``/``duplicates`` are None.
        """
        published = asdict(self)
        del published["histograms"]
        return published


@dataclass(frozen=True, slots=True)
class Verification:
    """The state of every enqueued id after the drain."""

    succeeded: int
    dead: int
    lost: int


@dataclass(frozen=True, slots=True)
class Span:
    """Wall-clock seconds and this process's CPU seconds (all threads) of one step."""

    wall_s: float
    cpu_s: float


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Collect once, then keep every object alive now out of the collector's passes
    until the block ends (``gc.freeze``; ``gc.unfreeze`` after)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _timed(coro: Awaitable[Any]) -> Span:
    wall, cpu = time.perf_counter(), time.process_time()
    await coro
    return Span(time.perf_counter() - wall, time.process_time() - cpu)


@contextmanager
def _progress_bar(enabled: bool, total: int, description: str) -> Iterator[Any]:
    """A tqdm.auto bar, or None when progress is off."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=description, unit="task", leave=False) as bar:
        yield bar


async def enqueue_all(
    store: TaskStore, workload: Workload, count: int, bar: Any = None
) -> tuple[list[str], float]:
    """Enqueue ``count`` new tasks in batches; their ids, and the seconds spent in ``enqueue``."""
    ids: list[str] = []
    seconds = 0.0
    rng = workload.priority_rng()
    for start in range(0, count, ENQUEUE_BATCH):
        batch = workload.new_tasks(min(ENQUEUE_BATCH, count - start), rng=rng)
        seconds += (await _timed(store.enqueue(batch))).wall_s
        ids.extend(task.id for task in batch)
        if bar is not None:
            bar.update(len(batch))
    return ids, seconds


async def _follow(recorder: Recorder, bar: Any, total: int) -> None:
    """Move ``bar`` to the number of finished tasks until cancelled."""
    while True:
        bar.update(min(recorder.finished, total) - bar.n)
        await asyncio.sleep(PROGRESS_REFRESH_S)


def _run_executor(store: TaskStore, config: DrainConfig, recorder: Recorder | None) -> Any:
    return EXECUTORS[config.executor](
        store, config.workload, concurrency=config.concurrency, recorder=recorder, retry=BENCH_RETRY
    )


async def _execute(
    store: TaskStore, config: DrainConfig, recorder: Recorder | None, progress: bool
) -> Span:
    """Run the chosen executor until the store is idle; the time it took."""
    drain = _run_executor(store, config, recorder)
    if not progress or recorder is None:
        return await _timed(drain)
    with _progress_bar(True, config.tasks, f"drain ({config.executor})") as bar:
        follower = asyncio.create_task(_follow(recorder, bar, config.tasks))
        try:
            return await _timed(drain)
        finally:
            follower.cancel()


async def _warm_up(store: TaskStore, config: DrainConfig) -> None:
    """Drain ``config.warmup`` tasks, untimed and unrecorded, then purge them."""
    if config.warmup:
        await enqueue_all(store, config.workload, config.warmup)
        await _run_executor(store, config, None)
        await store.purge()


def _chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


async def verify(store: TaskStore, ids: Sequence[str]) -> Verification:
    """Read every id back: succeeded, dead, or lost (missing or not terminal)."""
    statuses: dict[TaskStatus, int] = dict.fromkeys(TaskStatus, 0)
    for chunk in _chunks(ids, VERIFY_CHUNK):
        for task in await store.get_many(chunk):
            statuses[task.status] += 1
    succeeded, dead = statuses[TaskStatus.SUCCEEDED], statuses[TaskStatus.DEAD]
    return Verification(succeeded=succeeded, dead=dead, lost=len(ids) - succeeded - dead)


def max_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass(frozen=True, slots=True)
class _Timings:
    enqueue_s: float
    drain_s: float
    drain_cpu_s: float
    wall_s: float
    cpu_s: float


@dataclass(frozen=True, slots=True)
class _Measured:
    timings: _Timings
    recorder: Recorder | None
    checked: Verification
    resources: ResourceUsage | None


def _result(config: DrainConfig, measured: _Measured) -> DrainResult:
    timings, recorder, checked = measured.timings, measured.recorder, measured.checked
    return DrainResult(
        store=redact(config.url),
        workload=config.workload.spec,
        executor=config.executor,
        tasks=config.tasks,
        concurrency=config.concurrency,
        enqueue_s=timings.enqueue_s,
        drain_s=timings.drain_s,
        drain_cpu_s=timings.drain_cpu_s,
        enqueue_tps=config.tasks / timings.enqueue_s if timings.enqueue_s else 0.0,
        drain_tps=config.tasks / timings.drain_s if timings.drain_s else 0.0,
        latency_ms=summarise_series(recorder, "latency"),
        queue_ms=summarise_series(recorder, "queue"),
        service_ms=summarise_series(recorder, "service"),
        succeeded=checked.succeeded,
        failed=None if recorder is None else recorder.failed,
        dead=checked.dead,
        lost=checked.lost,
        duplicates=None if recorder is None else recorder.duplicates,
        wall_s=timings.wall_s,
        cpu_s=timings.cpu_s,
        max_rss_mb=max_rss_mb(),
        warmup=config.warmup,
        metrics=config.metrics,
        resources=measured.resources,
        histograms={} if recorder is None else recorder.encoded_histograms(),
    )


async def _measure(store: TaskStore, config: DrainConfig, progress: bool) -> _Measured:
    """Purge, warm up, enqueue (timed), drain (timed, monitored), verify."""
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    recorder = Recorder() if config.metrics else None
    await store.purge()
    await _warm_up(store, config)
    with _progress_bar(progress, config.tasks, "enqueue") as bar:
        ids, enqueue_s = await enqueue_all(store, config.workload, config.tasks, bar)
    with frozen_heap(), monitored(config.url, config.metrics) as monitor:
        drained = await _execute(store, config, recorder, progress)
    checked = await verify(store, ids)
    wall_s, cpu_s = time.perf_counter() - wall_start, time.process_time() - cpu_start
    timings = _Timings(enqueue_s, drained.wall_s, drained.cpu_s, wall_s, cpu_s)
    usage = None if monitor is None else monitor.usage
    return _Measured(timings, recorder, checked, usage)


async def drain(config: DrainConfig, *, progress: bool = False) -> DrainResult:
    """Run one validated drain (see the module docstring)."""
    store = open_store(config.url)
    await store.open()
    try:
        measured = await _measure(store, config, progress)
    finally:
        await store.close()
    return _result(config, measured)


async def run_drain(
    url: str,
    *,
    tasks: int,
    concurrency: int,
    workload: str | Workload,
    executor: str = "taskbench",
    progress: bool = False,
    warmup: int = 0,
    metrics: bool = True,
) -> DrainResult:
    """Validate the arguments (ConfigError), then drain ``tasks`` tasks through ``url``."""
    config = DrainConfig.create(
        url,
        tasks=tasks,
        concurrency=concurrency,
        workload=workload,
        executor=executor,
        warmup=warmup,
        metrics=metrics,
    )
    return await drain(config, progress=progress)


__all__ = [
    "EXECUTORS",
    "DrainConfig",
    "DrainResult",
    "Percentiles",
    "check_store_url",
    "drain",
    "frozen_heap",
    "run_drain",
]
