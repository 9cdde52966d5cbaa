"""The benchmark's Recorder: what an executor reports, counted and timed.

:class:`Recorder` implements the executor's ``ExecutorMetrics`` Protocol
(``on_claimed`` / ``on_outcome``); the baselines report to it the same way,
so every executor is measured by the same code.

Three latencies, each an HdrHistogram (microseconds, 3 significant figures,
up to one hour), all measured from a task's **origin**, its ``created_at``:

* ``queue``: origin -> start of the task's first attempt (how long it waited
  to be claimed: the wake-up path);
* ``service``: start -> finish of every attempt (the handler and the report);
* ``latency``: origin -> finish of the attempt that ended the task
  (succeeded or dead).

The origin is when the load generator *meant* the task to arrive: the drain
and the closed loop make a task just before they enqueue it; the open loop
makes each task with its scheduled arrival time, so time lost by a late
producer counts against the system, as in wrk2 (no coordinated omission).

The open loop splits the queue wait in three (``Recorder(track_wake=True)``):

* ``send_lag``: origin -> the producer's ``enqueue`` call (the producer's
  own lateness: a busy machine, the event loop's timer granularity);
* ``enqueue``: that call's round trip (the store's write);
* ``wake``: the call's return -> the claim that starts the task (the
  executor's wake-up path; 0 when the claim came before the producer had
  even read its reply, as a NOTIFY can).

The split is made once the run is over, when both sides are known: during
the run the recorder keeps the start of each measured first attempt (with
``track_wake``), the producer keeps one :class:`EnqueueCall` per ``enqueue``
(which tasks, sent when, returned when), and :meth:`Recorder.time_sends`
puts the two together. The producer may run in this process or in another
(:mod:`taskbench.bench.producer`): the records, and the code, are the same.

Design rules:

* **Cheap on the hot path** (about a microsecond per task: the harness
  overhead figure in docs/benchmarks/harness.md). A callback appends floats
  to an ``array('d')`` through a bound ``append`` and bumps counters; it
  never calls HdrHistogram, whose pure-Python ``record_value`` costs
  microseconds. The buffered samples are folded into the histograms when a
  percentile is asked for, or, to bound memory on long runs, when a claim
  finds a buffer past :data:`FLUSH_EVERY`. With ``track_wake`` (the open
  loop only), a claim also appends each measured first attempt's id and
  start to two flat buffers; drains do not pay for it.
* **Count everything, time the measured part.** A task whose origin is
  before :attr:`Recorder.measure_from` (the warm-up) is counted (succeeded,
  dead, duplicates) but adds no sample to any histogram.
* **Duplicates** are ids reported as succeeded more than once: under
  at-least-once execution this is the number the report cares about.
* One event loop calls it (the thread baseline reports from the loop, not
  from its threads), so it takes no lock.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from hdrh.histogram import HdrHistogram

from taskbench.model import Outcome, Task, TaskStatus

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3
FLUSH_EVERY = 1 << 20
"""Buffered samples per series before they are folded into the histogram."""
HOOK_TRIALS = 5

_SUCCEEDED, _DEAD, _QUEUED = TaskStatus.SUCCEEDED, TaskStatus.DEAD, TaskStatus.QUEUED
SERIES = ("latency", "queue", "service", "send_lag", "enqueue", "wake")
"""The recorder's latency series, by name (``latency`` is the headline one)."""


class EnqueueCall(NamedTuple):
    """One ``enqueue`` call of the open loop's producer: the tasks ``first`` to ``end - 1``
    of its schedule, sent at ``sent`` and returned at ``returned`` (``time.time()``)."""

    first: int
    end: int
    sent: float
    returned: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Percentiles:
    """A latency series summarised, in milliseconds (zeros when nothing was recorded)."""

    p50: float
    p95: float
    p99: float
    max: float


class LatencySeries:
    """Durations in seconds, buffered, then summarised by an HdrHistogram (in µs)."""

    def __init__(self) -> None:
        self.histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        self._pending = array("d")
        self.add: Callable[[float], None] = self._pending.append
        """Buffer one duration in seconds (the buffer's own ``append``: no Python frame)."""
        self.add_many: Callable[[Iterable[float]], None] = self._pending.extend
        """Buffer several durations in seconds."""

    @property
    def buffered(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        record = self.histogram.record_value
        for seconds in self._pending:
            record(min(max(round(seconds * 1_000_000), LOWEST_US), HIGHEST_US))
        del self._pending[:]  # emptied in place: ``add`` stays bound to it

    @property
    def count(self) -> int:
        return int(self.histogram.get_total_count()) + len(self._pending)

    def summary(self) -> Percentiles:
        """p50, p95, p99 and max, in milliseconds."""
        self.flush()
        at = self.histogram.get_value_at_percentile
        return Percentiles(
            p50=at(50.0) / 1000.0,
            p95=at(95.0) / 1000.0,
            p99=at(99.0) / 1000.0,
            max=self.histogram.get_max_value() / 1000.0,
        )

    def percentiles_ms(self) -> dict[str, float]:
        """``{"p50": ms, "p95": ms, "p99": ms, "max": ms}``."""
        summary = self.summary()
        return {"p50": summary.p50, "p95": summary.p95, "p99": summary.p99, "max": summary.max}

    def encoded(self) -> str:
        """The histogram as base64 text (``HdrHistogram.encode``), as results files store it."""
        self.flush()
        text: bytes = self.histogram.encode()
        return text.decode("ascii")


class Recorder:
    """Counters, latency histograms and per-id success counts of one run."""

    def __init__(self, *, measure_from: float = -math.inf, track_wake: bool = False) -> None:
        self.measure_from = measure_from
        """Tasks whose origin is earlier are the warm-up: counted, not timed."""
        self.claimed = 0
        self.succeeded = 0
        self.retried = 0
        self.dead = 0
        self.measured = 0
        """Tasks ended (succeeded or dead) whose origin is in the measured part."""
        self.last_end = -math.inf
        """The latest finish time of a measured task (for the throughput window)."""
        self.latency = LatencySeries()
        self.queue = LatencySeries()
        self.service = LatencySeries()
        self.send_lag = LatencySeries()
        self.enqueue = LatencySeries()
        self.wake = LatencySeries()
        self._succeeded_ids: set[str] = set()
        self._duplicate_ids: set[str] = set()
        self._started_ids: list[str] | None = [] if track_wake else None
        """With ``track_wake``: each measured first attempt's id, in claim order..."""
        self._started_at = array("d")
        """... and when it started, for :meth:`time_sends`."""

    def on_claimed(self, tasks: Sequence[Task]) -> None:
        """Count claimed tasks; time the queue wait of each first attempt."""
        self.claimed += len(tasks)
        measure_from = self.measure_from
        self.queue.add_many(
            [
                (task.started_at or task.created_at) - task.created_at
                for task in tasks
                if task.attempts == 1 and task.created_at >= measure_from
            ]
        )
        if self._started_ids is not None:
            self._note_starts(self._started_ids, tasks)
        if self.latency.buffered >= FLUSH_EVERY or self.queue.buffered >= FLUSH_EVERY:
            self.flush()

    def _note_starts(self, ids: list[str], tasks: Sequence[Task]) -> None:
        """Keep when each measured first attempt started (for the wake-up, after the run)."""
        measure_from, note_start = self.measure_from, self._started_at.append
        for task in tasks:
            if task.attempts == 1 and task.created_at >= measure_from:
                ids.append(task.id)
                note_start(task.started_at or task.created_at)

    def on_outcome(self, task: Task, outcome: Outcome) -> None:
        """Count one attempt's outcome; ``task`` is the claimed (running) task."""
        status = outcome.status
        if status is _SUCCEEDED:
            self.succeeded += 1
            if task.id in self._succeeded_ids:
                self._duplicate_ids.add(task.id)
            else:
                self._succeeded_ids.add(task.id)
        elif status is _DEAD:
            self.dead += 1
        else:
            self.retried += 1
        if task.created_at >= self.measure_from:
            self._time(task, outcome)

    def _time(self, task: Task, outcome: Outcome) -> None:
        """Time a measured attempt: its service, and its latency if it ended the task."""
        finished = outcome.finished_at
        self.service.add(finished - (task.started_at or finished))
        if outcome.status is not _QUEUED:
            self.measured += 1
            self.latency.add(finished - task.created_at)
            if finished > self.last_end:
                self.last_end = finished

    def flush(self) -> None:
        """Fold every buffered sample into its histogram."""
        for name in SERIES:
            self.series(name).flush()

    def time_sends(
        self, ids: Sequence[str], created: Sequence[float], calls: Iterable[EnqueueCall]
    ) -> None:
        """Split the queue wait of the open loop's measured tasks, once the run is over.

        ``ids[i]`` is arrival ``i`` of the schedule, created at ``created[i]``
        (its scheduled arrival); each call sent ``ids[first:end]``. A measured
        task gets a ``send_lag`` and an ``enqueue`` sample from its call and,
        with ``track_wake``, a ``wake`` sample ``max(0, started - returned)``
        if its first attempt started (a task never claimed has none).
        """
        starts = dict(zip(self._started_ids or (), self._started_at, strict=True))
        measure_from = self.measure_from
        add_lag, add_enqueue, add_wake = self.send_lag.add, self.enqueue.add, self.wake.add
        for first, end, sent, returned in calls:
            for index in range(first, end):
                if created[index] < measure_from:
                    continue
                add_lag(sent - created[index])
                add_enqueue(returned - sent)
                started = starts.get(ids[index])
                if started is not None:
                    add_wake(max(0.0, started - returned))

    @property
    def failed(self) -> int:
        """Failed attempts: those retried and those that went to the dead letters."""
        return self.retried + self.dead

    @property
    def finished(self) -> int:
        """Tasks this run has ended (succeeded or dead), counting a duplicate twice."""
        return self.succeeded + self.dead

    @property
    def duplicates(self) -> int:
        """Ids reported as succeeded more than once."""
        return len(self._duplicate_ids)

    def series(self, name: str) -> LatencySeries:
        """One of :data:`SERIES` by name."""
        found: LatencySeries = getattr(self, name)
        return found

    def encoded_histograms(self) -> dict[str, str]:
        """Every series with samples, as base64 text by name (for the results file)."""
        return {name: self.series(name).encoded() for name in SERIES if self.series(name).count}


def _claimed_tasks(count: int, now: float) -> list[tuple[Task, Outcome]]:
    """``count`` running first attempts, each with the outcome that ends it."""
    template = replace(Task.new("bench", now=now), status=TaskStatus.RUNNING, attempts=1)
    pairs = []
    for index in range(count):
        task = replace(template, id=f"{index:032x}", started_at=now + 0.001, lease_owner="w")
        pairs.append((task, Outcome.succeeded(task.lease, None, now=now + 0.002)))
    return pairs


def hook_cpu_per_task(count: int = 20_000, batch: int = 50) -> float:
    """CPU seconds the Recorder's hooks cost per task, measured on ``count`` tasks.

    The tasks are claimed in batches of ``batch`` and each succeeds once, as in
    a no-op drain; only the hook calls are timed (``time.process_time``).
    The fastest of :data:`HOOK_TRIALS` trials is kept: the least disturbed by
    the rest of the machine. Beside a drain's CPU per task this bounds the
    harness's overhead with far less noise than two drains compared on a
    busy machine.
    """
    pairs = _claimed_tasks(count, time.time())
    batches = [[task for task, _ in pairs[i : i + batch]] for i in range(0, count, batch)]
    fastest = math.inf
    for _ in range(HOOK_TRIALS):
        recorder = Recorder()
        start = time.process_time()
        for claimed in batches:
            recorder.on_claimed(claimed)
        for task, outcome in pairs:
            recorder.on_outcome(task, outcome)
        fastest = min(fastest, time.process_time() - start)
    return fastest / count
