"""Load modes beyond the drain: the open loop and the closed loop, and repeated, saved runs.

Three ways to load a store (``taskbench bench --mode``):

* ``drain`` (:mod:`taskbench.bench.drain`): all tasks enqueued first, then
  executed as fast as possible. It measures capacity.
* ``open``: tasks arrive at a fixed ``rate`` for ``duration`` seconds,
  whatever the system does, as users' requests do. Arrival ``i`` is due at
  ``t0 + i / rate`` on a schedule computed before the start; the producer
  sleeps until the next arrival is due and enqueues every task that is due
  (one batch when it is behind). Each task is made with its *scheduled*
  arrival as ``created_at``, so every latency counts from when the task was
  meant to arrive: a stalled producer or store cannot hide the tasks that
  queued up behind the stall (wrk2's answer to coordinated omission). The
  producer keeps up to ``MAX_SENDS_IN_FLIGHT`` enqueue calls in flight, as
  independent clients would, so one slow round trip does not hold back the
  arrivals after it (with one call at a time, a 10 ms enqueue at 1,000/s
  made the producer itself the queue). The consumers are one
  :class:`~taskbench.executor.TaskExecutor`. When the store can be shared
  by processes, the producer runs in a process of its own
  (:mod:`taskbench.bench.producer`), so that it does not take turns with
  the executor on one interpreter; ``producer="inline"`` keeps it in this
  process (for contrast), as it always is on the memory store. Each task's
  queue wait is split into the producer's lateness, the enqueue round trip
  and the executor's wake-up (see :mod:`taskbench.bench.metrics`), after
  the run, from the producer's record of its ``enqueue`` calls.
* ``closed``: ``concurrency`` virtual clients each enqueue one task and wait
  for it to finish before sending the next. Shown for contrast: a closed
  loop slows down with the system, so its latencies look better than the
  ones users see.

Design rules:

* **Validate before anything starts**: a rate, duration or task count that
  is not a positive number is a ConfigError, raised by the ``create``
  methods before a store is opened.
* **A producer is another client.** When the store can be shared by
  several processes, the open loop's producer uses a store client of its
  own (in its own process, or inline in this one), so the executor learns
  of new tasks through the store's wake-up (LISTEN/NOTIFY, BLPOP, polling),
  never through an in-process shortcut. The result says where it ran
  (``producer``: ``process`` or ``inline``).
* **Every task is accounted for**: after the run every id is read back
  (succeeded, dead, or lost), as in the drain.
* **Warm-up is counted, not timed**: open loop, the first ``warmup``
  seconds of the schedule; closed loop, a first phase of ``warmup`` tasks
  or seconds; drain, a separate untimed drain.
* **Repeats** (:func:`run_repeats`) start from an emptied store each time;
  :func:`save_results` writes them all as one run (one row per repeat) with
  :func:`~taskbench.bench.results.save_run`, and every latency histogram.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskbench.bench.drain import (
    BENCH_RETRY,
    DrainConfig,
    DrainResult,
    Span,
    check_positive,
    check_store_url,
    drain,
    frozen_heap,
    max_rss_mb,
    summarise_series,
    verify,
)
from taskbench.bench.metrics import Percentiles, Recorder, hook_cpu_per_task
from taskbench.bench.producer import (
    FINISH_SLACK_S,
    ProducerJob,
    Schedule,
    Sends,
    arrival_times,
    produce,
    spawned_producer,
)
from taskbench.bench.resources import ResourceUsage, monitored
from taskbench.bench.workloads import Workload, parse_workload
from taskbench.errors import ConfigError
from taskbench.executor import ExecutorMetrics, TaskExecutor
from taskbench.model import Outcome, Task, TaskStatus
from taskbench.stores import Capability, TaskStore, open_store
from taskbench.urls import redact

if TYPE_CHECKING:
    from taskbench.bench.compare import Comparison, Summary

MODES = ("drain", "open", "closed")
PRODUCERS = ("process", "inline")
"""Where the open loop's producer runs: a process of its own, or this one."""
START_DELAY_S = 0.05
"""The schedule starts this long after the executor, so it is waiting when arrival 0 is due."""
PROCESS_START_DELAY_S = 0.2
"""The same for a producer process, which must also hear ``t0`` and plan its schedule."""
IDLE_POLL_S = 0.05
"""How often the open loop checks, after the last arrival, whether every task has ended."""
TAIL_TIMEOUT_S = 60.0
"""How long the open loop waits after the last arrival for the backlog to drain."""
CLIENT_TIMEOUT_S = 60.0
"""How long a closed-loop client waits for one task before counting it unfinished."""
STOP_GRACE_S = 5.0

StoreOpener = Callable[[str], TaskStore]


# -- configuration --------------------------------------------------------------------


def check_number(value: object, what: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite number > 0 (or >= 0), or ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{what} must be {bound}, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Warmup:
    """The part of a run that is executed but not timed: a number of tasks, or seconds."""

    tasks: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.seconds:
            return f"{self.seconds:g}s"
        return str(self.tasks)


NO_WARMUP = Warmup()


def parse_warmup(raw: object) -> Warmup:
    """``"500"`` (tasks), ``"2s"`` or ``"2.5s"`` (seconds), ``0`` or None (none)."""
    if raw is None or isinstance(raw, Warmup):
        return raw or NO_WARMUP
    text = str(raw).strip().lower()
    try:
        if text.endswith("s"):
            return Warmup(seconds=check_number(float(text[:-1]), "warmup", allow_zero=True))
        tasks = int(text)
    except ValueError:
        tasks = -1
    if tasks < 0:
        raise ConfigError(f"warmup must be a number of tasks (500) or of seconds (2s), got {raw!r}")
    return Warmup(tasks=tasks)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenLoopConfig:
    """An open loop's parameters; make it with :meth:`create`, which checks them all."""

    url: str
    workload: Workload
    concurrency: int
    rate: float
    duration: float
    warmup_s: float = 0.0
    metrics: bool = True
    tail_timeout: float = TAIL_TIMEOUT_S
    producer: str | None = None
    """One of PRODUCERS; None: a process when the store can be shared, else inline."""

    @classmethod
    def create(
        cls,
        url: str,
        *,
        workload: str | Workload,
        concurrency: int,
        rate: float,
        duration: float,
        warmup: object = None,
        metrics: bool = True,
        producer: str | None = None,
    ) -> OpenLoopConfig:
        """Validate everything (raising ConfigError) before anything starts."""
        rate = check_number(rate, "rate")
        duration = check_number(duration, "duration")
        return cls(
            url=check_store_url(url),
            workload=parse_workload(workload),
            concurrency=check_positive(concurrency, "concurrency"),
            rate=rate,
            duration=duration,
            warmup_s=_open_warmup(parse_warmup(warmup), rate, duration),
            metrics=bool(metrics),
            producer=check_producer(producer, url),
        )

    @property
    def arrivals(self) -> int:
        """How many tasks the schedule holds: arrivals ``i / rate`` before ``duration``.

        At least arrival 0; ``1e-9`` absorbs float error (300 x 0.1 is 30, not 31).
        """
        return max(1, math.ceil(self.rate * self.duration - 1e-9))


def check_producer(producer: object, url: str) -> str | None:
    """``producer`` if it is None or one of PRODUCERS that ``url``'s store allows, else
    ConfigError (a producer process needs a store that processes can share)."""
    if producer is not None and not (isinstance(producer, str) and producer in PRODUCERS):
        raise ConfigError(f"producer must be one of {', '.join(PRODUCERS)}, got {producer!r}")
    if producer == "process":
        _check_shared(open_store(url), url)
    return producer


def _check_shared(store: TaskStore, url: str) -> None:
    if Capability.MULTI_PROCESS not in store.capabilities:
        raise ConfigError(f"{redact(url)} cannot be shared by processes: its producer runs inline")


def _open_warmup(warmup: Warmup, rate: float, duration: float) -> float:
    """The open loop's warm-up in seconds (a task count is converted at ``rate``)."""
    seconds = warmup.seconds or warmup.tasks / rate
    if seconds >= duration:
        raise ConfigError(
            f"warmup ({seconds:g} s) must be shorter than the duration ({duration:g} s)"
        )
    return seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosedLoopConfig:
    """A closed loop's parameters; make it with :meth:`create`, which checks them all."""

    url: str
    workload: Workload
    concurrency: int
    tasks: int
    warmup: Warmup = NO_WARMUP
    metrics: bool = True

    @classmethod
    def create(
        cls,
        url: str,
        *,
        workload: str | Workload,
        concurrency: int,
        tasks: int,
        warmup: object = None,
        metrics: bool = True,
    ) -> ClosedLoopConfig:
        """Validate everything (raising ConfigError) before anything starts."""
        return cls(
            url=check_store_url(url),
            workload=parse_workload(workload),
            concurrency=check_positive(concurrency, "concurrency"),
            tasks=check_positive(tasks, "tasks"),
            warmup=parse_warmup(warmup),
            metrics=bool(metrics),
        )


LoadConfig = DrainConfig | OpenLoopConfig | ClosedLoopConfig


def load_config(mode: str, url: str, **options: Any) -> LoadConfig:
    """The validated config of ``mode`` (drain, open or closed) from keyword options.

    Each mode takes: drain ``tasks, concurrency, workload, executor, warmup
    (tasks), metrics``; open ``rate, duration, concurrency, workload, warmup,
    metrics, producer``; closed ``tasks, concurrency, workload, warmup, metrics``. An
    option that the mode does not take is a ConfigError.
    """
    makers: dict[str, Callable[..., LoadConfig]] = {
        "drain": _drain_config,
        "open": OpenLoopConfig.create,
        "closed": ClosedLoopConfig.create,
    }
    if mode not in makers:
        raise ConfigError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    try:
        return makers[mode](url, **options)
    except TypeError as exc:
        raise ConfigError(f"mode {mode}: {exc}") from None


def _drain_config(url: str, *, warmup: object = None, **options: Any) -> DrainConfig:
    parsed = parse_warmup(warmup)
    if parsed.seconds:
        raise ConfigError("a drain's warmup is a number of tasks (e.g. 500), not seconds")
    return DrainConfig.create(url, warmup=parsed.tasks, **options)


# -- results --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """What one open or closed loop measured; :meth:`to_json_dict` is its published form.

    ``tasks`` counts every task sent (warm-up included); ``measured`` the
    tasks after the warm-up that ended, over which ``achieved_tps`` and the
    latencies are taken. The open loop splits ``queue_ms`` into
    ``send_lag_ms`` + ``enqueue_ms`` + ``wake_ms`` (see
    :mod:`taskbench.bench.metrics`). Without metrics, the timed figures are None.
    ``producer`` says where the open loop's producer ran (``process`` or
    ``inline``; None in a closed loop); ``cpu_s`` is this process's CPU, and
    ``producer_cpu_s`` that of a producer process (None inline: it is in
    ``cpu_s``).
    """

    mode: str
    store: str
    workload: str
    executor: str
    concurrency: int
    tasks: int
    rate: float | None
    duration_s: float | None
    warmup: str
    measured: int | None
    elapsed_s: float
    offered_tps: float | None
    achieved_tps: float | None
    latency_ms: Percentiles | None
    queue_ms: Percentiles | None
    service_ms: Percentiles | None
    send_lag_ms: Percentiles | None
    enqueue_ms: Percentiles | None
    wake_ms: Percentiles | None
    succeeded: int
    failed: int | None
    dead: int
    lost: int
    duplicates: int | None
    cpu_s: float
    max_rss_mb: float
    metrics: bool
    resources: ResourceUsage | None
    producer: str | None = None
    producer_cpu_s: float | None = None
    histograms: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types only (the histograms are left out)."""
        published = asdict(self)
        del published["histograms"]
        return published


class Stopwatch:
    """Wall-clock and CPU seconds (this process, all threads) since it was made."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def span(self) -> Span:
        return Span(time.perf_counter() - self._wall, time.process_time() - self._cpu)


@dataclass(frozen=True, slots=True)
class _Run:
    """What a loop hands to :func:`_result`: the ids sent, and how it went."""

    ids: list[str]
    span: Span
    measured_s: float
    recorder: Recorder | None
    resources: ResourceUsage | None
    producer_cpu_s: float | None = None


def _achieved(run: _Run) -> float | None:
    if run.recorder is None or run.measured_s <= 0:
        return None
    return run.recorder.measured / run.measured_s


async def _result(store: TaskStore, config: LoadConfig, run: _Run, **shape: Any) -> LoadResult:
    checked = await verify(store, run.ids)
    recorder = run.recorder
    config_is_open = isinstance(config, OpenLoopConfig)
    return LoadResult(
        store=redact(config.url),
        workload=config.workload.spec,
        executor="taskbench",
        concurrency=config.concurrency,
        tasks=len(run.ids),
        measured=None if recorder is None else recorder.measured,
        elapsed_s=run.span.wall_s,
        achieved_tps=_achieved(run),
        latency_ms=summarise_series(recorder, "latency"),
        queue_ms=summarise_series(recorder, "queue"),
        service_ms=summarise_series(recorder, "service"),
        send_lag_ms=summarise_series(recorder, "send_lag") if config_is_open else None,
        enqueue_ms=summarise_series(recorder, "enqueue") if config_is_open else None,
        wake_ms=summarise_series(recorder, "wake") if config_is_open else None,
        succeeded=checked.succeeded,
        failed=None if recorder is None else recorder.failed,
        dead=checked.dead,
        lost=checked.lost,
        duplicates=None if recorder is None else recorder.duplicates,
        cpu_s=run.span.cpu_s,
        producer_cpu_s=run.producer_cpu_s,
        max_rss_mb=max_rss_mb(),
        metrics=config.metrics,
        resources=run.resources,
        histograms={} if recorder is None else recorder.encoded_histograms(),
        **shape,
    )


# -- the executor, run beside a load generator -----------------------------------------


class Completions:
    """Executor hooks that pass events to a recorder and wake the client awaiting a task."""

    def __init__(self, recorder: Recorder | None) -> None:
        self.recorder = recorder
        self._waiting: dict[str, asyncio.Future[TaskStatus]] = {}

    def expect(self, task_id: str) -> asyncio.Future[TaskStatus]:
        """A future that gets the task's final status when it ends."""
        future: asyncio.Future[TaskStatus] = asyncio.get_running_loop().create_future()
        self._waiting[task_id] = future
        return future

    def on_claimed(self, tasks: Sequence[Task]) -> None:
        if self.recorder is not None:
            self.recorder.on_claimed(tasks)

    def on_outcome(self, task: Task, outcome: Outcome) -> None:
        if self.recorder is not None:
            self.recorder.on_outcome(task, outcome)
        if outcome.status.is_terminal:
            future = self._waiting.pop(task.id, None)
            if future is not None and not future.done():
                future.set_result(outcome.status)


class RunningExecutor:
    """``async with RunningExecutor(...)``: a TaskExecutor running in the background."""

    def __init__(
        self,
        store: TaskStore,
        workload: Workload,
        concurrency: int,
        hooks: ExecutorMetrics | None,
    ) -> None:
        self.executor = TaskExecutor(
            store, concurrency=concurrency, retry=BENCH_RETRY, metrics=hooks
        )
        self.executor.register(workload.task_name, workload.handle)
        self._task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> TaskExecutor:
        self._task = asyncio.create_task(self.executor.run(), name="bench executor")
        await asyncio.sleep(0)
        return self.executor

    async def __aexit__(self, *exc_info: object) -> None:
        await self.executor.stop(grace=STOP_GRACE_S)
        if self._task is not None:
            await self._task


async def _is_idle(store: TaskStore) -> bool:
    counts = await store.counts()
    return counts[TaskStatus.QUEUED] + counts[TaskStatus.RUNNING] == 0


async def wait_until_idle(store: TaskStore, timeout: float) -> bool:
    """Poll until nothing is queued or running (True), or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not await _is_idle(store):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(IDLE_POLL_S)
    return True


# -- the open loop --------------------------------------------------------------------


Sender = Callable[[float], Awaitable[Sends]]
"""Sends the whole schedule, starting at the given ``t0``; returns what it sent."""


def _producer_place(consumer: TaskStore, config: OpenLoopConfig) -> str:
    """Where the producer runs: ``config.producer``, or a process if the store can be shared."""
    if config.producer == "process":
        _check_shared(consumer, config.url)
    shared = Capability.MULTI_PROCESS in consumer.capabilities
    return config.producer or ("process" if shared else "inline")


async def _producer_store(
    consumer: TaskStore, config: OpenLoopConfig, opener: StoreOpener
) -> TaskStore:
    """A client of its own for an inline producer, when the store can be shared by processes."""
    if Capability.MULTI_PROCESS not in consumer.capabilities:
        return consumer
    producer = opener(config.url)
    await producer.open()
    return producer


async def _open_run(
    consumer: TaskStore, config: OpenLoopConfig, send: Sender, start_delay: float
) -> _Run:
    """Run the executor, have ``send`` send the schedule from ``t0``, wait for the tail."""
    with frozen_heap(), monitored(config.url, config.metrics) as monitor:
        t0 = time.time() + start_delay  # after the collection: the schedule starts on time
        measure_from = t0 + config.warmup_s
        recorder = Recorder(measure_from=measure_from, track_wake=True) if config.metrics else None
        clock = Stopwatch()
        async with RunningExecutor(consumer, config.workload, config.concurrency, recorder):
            sends = await send(t0)
            await wait_until_idle(consumer, config.tail_timeout)
    span = clock.span()
    if recorder is not None:
        created = arrival_times(config.rate, config.arrivals, t0)
        recorder.time_sends(sends.ids, created, sends.calls)
    measured_s = (recorder.last_end if recorder else 0.0) - measure_from
    usage = None if monitor is None else monitor.usage
    return _Run(sends.ids, span, measured_s, recorder, usage, sends.cpu_s)


async def _inline_run(consumer: TaskStore, config: OpenLoopConfig, opener: StoreOpener) -> _Run:
    """The open loop with its producer in this process, beside the executor."""
    producer = await _producer_store(consumer, config, opener)

    async def send(t0: float) -> Sends:
        workload = config.workload
        schedule = Schedule.plan(workload, config.rate, config.arrivals, t0)
        return await produce(producer, workload, schedule)

    try:
        return await _open_run(consumer, config, send, START_DELAY_S)
    finally:
        if producer is not consumer:
            await producer.close()


async def _process_run(consumer: TaskStore, config: OpenLoopConfig) -> _Run:
    """The open loop with its producer in a process of its own (ready before ``t0``)."""
    job = ProducerJob(
        url=config.url, workload=config.workload.spec, rate=config.rate, arrivals=config.arrivals
    )
    async with spawned_producer(job) as child:

        async def send(t0: float) -> Sends:
            await child.go(t0)
            return await child.sends(t0 - time.time() + config.duration + FINISH_SLACK_S)

        return await _open_run(consumer, config, send, PROCESS_START_DELAY_S)


async def open_loop(config: OpenLoopConfig, *, opener: StoreOpener = open_store) -> LoadResult:
    """Run one validated open loop (see the module docstring).

    ``opener`` opens this process's store clients (the producer process opens
    its own with :func:`~taskbench.stores.open_store`). A producer process that
    fails raises :class:`~taskbench.errors.BenchmarkError`, after the executor
    has stopped and the process has been reaped.
    """
    consumer = opener(config.url)
    place = _producer_place(consumer, config)
    await consumer.open()
    try:
        await consumer.purge()
        if place == "process":
            run = await _process_run(consumer, config)
        else:
            run = await _inline_run(consumer, config, opener)
        return await _result(
            consumer, config, run, mode="open", rate=config.rate, duration_s=config.duration,
            warmup=f"{config.warmup_s:g}s", offered_tps=config.rate, producer=place,
        )  # fmt: skip
    finally:
        await consumer.close()


# -- the closed loop ------------------------------------------------------------------


class Clients:
    """``concurrency`` virtual clients: each sends one task and waits for its end, in turn."""

    def __init__(self, store: TaskStore, config: ClosedLoopConfig, completions: Completions):
        self.store = store
        self.config = config
        self.completions = completions
        self.ids: list[str] = []
        self._rng = config.workload.priority_rng()

    async def run(self, *, tasks: int | None = None, until: float | None = None) -> None:
        """Send ``tasks`` tasks in all, or keep sending until the clock reaches ``until``."""
        limit = len(self.ids) + tasks if tasks is not None else None
        clients = [self._client(limit, until) for _ in range(self.config.concurrency)]
        await asyncio.gather(*clients)

    async def _client(self, limit: int | None, until: float | None) -> None:
        while (limit is None or len(self.ids) < limit) and (until is None or time.time() < until):
            await self._one()

    async def _one(self) -> None:
        workload = self.config.workload
        task = workload.task_at(time.time(), workload.draw_priorities(1, self._rng)[0])
        self.ids.append(task.id)
        ended = self.completions.expect(task.id)
        await self.store.enqueue([task])
        try:
            await asyncio.wait_for(ended, CLIENT_TIMEOUT_S)
        except TimeoutError:
            return  # verification will count it as lost


async def _closed_run(store: TaskStore, config: ClosedLoopConfig) -> _Run:
    recorder = Recorder(measure_from=math.inf) if config.metrics else None
    completions = Completions(recorder)
    clients = Clients(store, config, completions)
    clock = Stopwatch()
    with frozen_heap(), monitored(config.url, config.metrics) as monitor:
        async with RunningExecutor(store, config.workload, config.concurrency, completions):
            await _closed_warmup(clients, config.warmup)
            measure_from = time.time()
            if recorder is not None:
                recorder.measure_from = measure_from
            await clients.run(tasks=config.tasks)
    measured_s = (recorder.last_end if recorder else 0.0) - measure_from
    usage = None if monitor is None else monitor.usage
    return _Run(clients.ids, clock.span(), measured_s, recorder, usage)


async def _closed_warmup(clients: Clients, warmup: Warmup) -> None:
    if warmup.seconds:
        await clients.run(until=time.time() + warmup.seconds)
    elif warmup.tasks:
        await clients.run(tasks=warmup.tasks)


async def closed_loop(config: ClosedLoopConfig, *, opener: StoreOpener = open_store) -> LoadResult:
    """Run one validated closed loop (see the module docstring)."""
    store = opener(config.url)
    await store.open()
    try:
        await store.purge()
        run = await _closed_run(store, config)
        return await _result(
            store, config, run, mode="closed", rate=None, duration_s=None,
            warmup=str(config.warmup), offered_tps=None,
        )  # fmt: skip
    finally:
        await store.close()


# -- any mode, repeated, saved --------------------------------------------------------

Result = DrainResult | LoadResult

HEADLINES: dict[str, tuple[str, ...]] = {
    "drain": ("drain_tps", "latency_ms.p99"),
    "open": ("achieved_tps", "queue_ms.p99", "wake_ms.p99", "latency_ms.p99"),
    "closed": ("achieved_tps", "latency_ms.p50", "latency_ms.p99"),
}
"""The figures each mode's repeats are summarised by (``a.b`` is a nested field)."""


async def run_once(
    config: LoadConfig, *, progress: bool = False, opener: StoreOpener = open_store
) -> Result:
    """One run of whichever mode ``config`` is for."""
    if isinstance(config, OpenLoopConfig):
        return await open_loop(config, opener=opener)
    if isinstance(config, ClosedLoopConfig):
        return await closed_loop(config, opener=opener)
    return await drain(config, progress=progress)


async def run_repeats(
    config: LoadConfig, repeats: int = 1, *, progress: bool = False
) -> list[Result]:
    """``repeats`` runs of ``config``, each from an emptied store."""
    check_positive(repeats, "repeats")
    return [await run_once(config, progress=progress) for _ in range(repeats)]


def figure(result: Result | Mapping[str, Any], name: str) -> float | None:
    """A figure of a result by name (``latency_ms.p99`` for a nested one), or None."""
    value: Any = result.to_json_dict() if isinstance(result, DrainResult | LoadResult) else result
    for key in name.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


def summarise_repeats(results: Sequence[Result]) -> dict[str, Summary]:
    """The median and spread of each headline figure over ``results`` (compare.summarise)."""
    from taskbench.bench.compare import summarise

    mode = results[0].mode
    summaries = {}
    for name in HEADLINES[mode]:
        values = [v for v in (figure(r, name) for r in results) if v is not None]
        if values:
            summaries[name] = summarise(values)
    return summaries


def config_params(config: LoadConfig, repeats: int = 1) -> dict[str, Any]:
    """The parameters of a run, as saved beside it (the URL redacted)."""
    params: dict[str, Any] = {
        name: getattr(config, name)
        for name in ("tasks", "concurrency", "executor", "rate", "duration", "metrics")
        if hasattr(config, name)
    }
    if isinstance(config, OpenLoopConfig):
        params["warmup"] = f"{config.warmup_s:g}s"
        params["producer"] = config.producer or "auto"
    else:
        params["warmup"] = str(config.warmup)
    mode = {OpenLoopConfig: "open", ClosedLoopConfig: "closed"}.get(type(config), "drain")
    shape = {"store": redact(config.url), "workload": config.workload.spec}
    return params | shape | {"mode": mode, "repeats": repeats}


def saved_row(result: Result) -> dict[str, Any]:
    """The measurement saved for one repeat: its JSON, plus each extra histogram as text."""
    extra = {f"{name}_hist": text for name, text in result.histograms.items() if name != "latency"}
    return result.to_json_dict() | extra


def save_results(
    results: Sequence[Result],
    *,
    params: Mapping[str, Any],
    directory: str | Path | None = None,
    kind: str | None = None,
) -> Path:
    """Save ``results`` as one run, a row per repeat; ``hist`` is the end-to-end latency."""
    from taskbench.bench.results import save_run

    return save_run(
        kind or results[0].mode,
        [saved_row(result) for result in results],
        params=params,
        histograms=[result.histograms.get("latency") for result in results],
        directory=directory,
    )


# -- the harness's own overhead -------------------------------------------------------


OVERHEAD_TARGET = 0.95
"""The harness may cost at most 5 % of throughput: metrics on / off >= 0.95."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Overhead:
    """Drains with metrics on and off, interleaved, compared two ways (on / off).

    ``wall`` compares ``drain_tps``; ``cpu`` compares tasks per CPU second of
    this process during the drain (``tasks / drain_cpu_s``), which other
    programs on a shared machine disturb much less than the wall clock. Both
    are paired comparisons (:func:`~taskbench.bench.compare.compare_paired`):
    repeat ``i`` with metrics against repeat ``i`` without, run back to back.
    """

    on: list[DrainResult]
    off: list[DrainResult]
    wall: Comparison
    cpu: Comparison
    hook_cpu_us: float
    """CPU microseconds the Recorder's hooks cost per task, timed alone in this run."""

    @property
    def drain_cpu_us(self) -> float:
        """The median CPU microseconds per task of the drains without metrics."""
        return 1e6 / statistics.median(tasks_per_cpu_s(r) for r in self.off)

    @property
    def hook_ratio(self) -> float:
        """The throughput ratio the hooks alone allow: drain CPU / (drain CPU + hooks)."""
        return self.drain_cpu_us / (self.drain_cpu_us + self.hook_cpu_us)


def tasks_per_cpu_s(result: DrainResult) -> float:
    """Tasks drained per CPU second of this process (all threads) during the drain."""
    return result.tasks / result.drain_cpu_s if result.drain_cpu_s > 0 else math.inf


async def measure_overhead(config: DrainConfig, repeats: int = 5) -> Overhead:
    """Drain with metrics on and off, ``repeats`` times each, alternating which goes first."""
    from taskbench.bench.compare import compare_paired

    check_positive(repeats, "repeats")
    on, off = replace(config, metrics=True), replace(config, metrics=False)
    measured: dict[bool, list[DrainResult]] = {True: [], False: []}
    for repeat in range(repeats):
        for chosen in (on, off) if repeat % 2 == 0 else (off, on):
            measured[chosen.metrics].append(await drain(chosen))
    with_metrics, without = measured[True], measured[False]
    return Overhead(
        hook_cpu_us=hook_cpu_per_task() * 1e6,
        on=with_metrics,
        off=without,
        wall=compare_paired([r.drain_tps for r in without], [r.drain_tps for r in with_metrics]),
        cpu=compare_paired(
            [tasks_per_cpu_s(r) for r in without], [tasks_per_cpu_s(r) for r in with_metrics]
        ),
    )


def harness_overhead(
    url: str = "memory://", *, tasks: int = 20_000, concurrency: int = 50, repeats: int = 10
) -> Overhead:
    """The harness's cost on ``url``'s drain (default: the memory store, the worst case).

    ``repeats`` interleaved pairs of no-op drains, metrics on and off
    (:func:`measure_overhead`); the target is ``overhead.cpu.ratio`` and
    ``overhead.wall.ratio`` >= :data:`OVERHEAD_TARGET`. The same as
    ``taskbench overhead --store URL --tasks N --concurrency C --repeats R``.
    In a running event loop (Jupyter), ``await measure_overhead(config, repeats)``.
    """
    config = DrainConfig.create(url, tasks=tasks, concurrency=concurrency, workload="noop")
    return asyncio.run(measure_overhead(config, repeats))
