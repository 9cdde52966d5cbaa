"""The benchmark's Recorder: what an executor reports, counted and timed.

:class:`Recorder` implements the executor's ``ExecutorMetrics`` Protocol
(``on_claimed`` / ``on_outcome``); the baselines report to it the same way,
so every executor is measured by the same code.

Design rules:

* **Cheap on the hot path.** A callback appends two floats to an
  ``array('d')`` and bumps counters; it never calls HdrHistogram, whose
  pure-Python ``record_value`` costs microseconds. The buffered samples are
  folded into the histograms when a percentile is asked for (or when a
  buffer grows past :data:`FLUSH_EVERY`, to bound memory on long runs).
* **Latency** is enqueue -> finish (``task.created_at`` ->
  ``outcome.finished_at``) for attempts that end the task (succeeded or
  dead); **service time** is start -> finish (``task.started_at`` ->
  ``outcome.finished_at``) for every attempt. Both are stored in
  microseconds, 3 significant figures, up to one hour.
* **Duplicates** are ids reported as succeeded more than once: under
  at-least-once execution this is the number the report cares about.
* One event loop calls it (the thread baseline reports from the loop, not
  from its threads), so it takes no lock.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from hdrh.histogram import HdrHistogram

from taskbench.model import Outcome, Task, TaskStatus

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3
FLUSH_EVERY = 1 << 20
"""Buffered samples per series before they are folded into the histogram."""

PERCENTILES = (50.0, 95.0, 99.0)


class LatencySeries:
    """Durations in seconds, buffered, then summarised by an HdrHistogram (in µs)."""

    def __init__(self) -> None:
        self.histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        self._pending = array("d")

    def add(self, seconds: float) -> None:
        self._pending.append(seconds)
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        record = self.histogram.record_value
        for seconds in self._pending:
            record(min(max(round(seconds * 1_000_000), LOWEST_US), HIGHEST_US))
        self._pending = array("d")

    @property
    def count(self) -> int:
        return int(self.histogram.get_total_count()) + len(self._pending)

    def percentiles_ms(self) -> dict[str, float]:
        """``{"p50": ms, "p95": ms, "p99": ms}`` (zeros when nothing was recorded)."""
        self.flush()
        return {
            f"p{int(p)}": self.histogram.get_value_at_percentile(p) / 1000.0 for p in PERCENTILES
        }


class Recorder:
    """Counters, latency histograms and per-id success counts of one run."""

    def __init__(self) -> None:
        self.claimed = 0
        self.succeeded = 0
        self.retried = 0
        self.dead = 0
        self.latency = LatencySeries()
        self.service = LatencySeries()
        self.successes_by_id: dict[str, int] = {}

    def on_claimed(self, tasks: Sequence[Task]) -> None:
        self.claimed += len(tasks)

    def on_outcome(self, task: Task, outcome: Outcome) -> None:
        """Count one attempt's outcome; ``task`` is the claimed (running) task."""
        finished = outcome.finished_at
        self.service.add(finished - (task.started_at or finished))
        status = outcome.status
        if status is TaskStatus.SUCCEEDED:
            self.succeeded += 1
            self.successes_by_id[task.id] = self.successes_by_id.get(task.id, 0) + 1
            self.latency.add(finished - task.created_at)
        elif status is TaskStatus.DEAD:
            self.dead += 1
            self.latency.add(finished - task.created_at)
        else:
            self.retried += 1

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
        return sum(1 for count in self.successes_by_id.values() if count > 1)
