"""The backlog benchmark: how the latency of one claim grows with the queue behind it.

The report found that its SQLite store slowed down as the queue grew (no
index: every claim scanned and sorted the whole table). :func:`claim_latency`
measures exactly that, for any store URL: it fills a fresh store with
``backlog`` queued tasks, then times ``samples`` round trips of ``claim(1)``
followed by ``finish`` of the claimed task. With the claim index a round
trip costs about the same at a thousand tasks as at a million; without it,
the cost grows with the backlog.

Design rules:

* **Store-agnostic.** Only the TaskStore Protocol is used, so the same call
  measures SQLite (both profiles), PostgreSQL, MySQL, Redis or memory.
* **The store is emptied** (``purge()``) before it is filled and after it is
  measured: give it a URL whose tasks may be thrown away.
* **Fill fast, time only the round trips.** Tasks are built directly (the
  store validates them on enqueue) and enqueued in large batches, untimed;
  a few untimed claim+release round trips warm the caches; then each sample
  is timed with :func:`time.perf_counter` around one claim and one finish.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

from taskbench.errors import BenchmarkError
from taskbench.model import Outcome, Task
from taskbench.stores import TaskStore, open_store

FILL_BATCH = 10_000
"""Tasks per ``enqueue`` call while filling the backlog."""
WARMUP_ROUND_TRIPS = 10
"""Untimed claim(1)+release round trips after the fill: they warm the caches
that a bulk load leaves cold, and give the tasks back, so the backlog is unchanged."""
LEASE_S = 300.0
WORKER = "backlog-bench"
TASK_NAME = "noop"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimLatency:
    """One backlog size's claim(1)+finish round trip, in milliseconds."""

    backlog: int
    samples: int
    p50_ms: float
    p95_ms: float
    mean_ms: float


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarise(backlog: int, durations_s: list[float]) -> ClaimLatency:
    """The ClaimLatency of these round-trip durations (seconds)."""
    ordered = sorted(d * 1000.0 for d in durations_s)
    return ClaimLatency(
        backlog=backlog,
        samples=len(ordered),
        p50_ms=_percentile(ordered, 0.50),
        p95_ms=_percentile(ordered, 0.95),
        mean_ms=statistics.fmean(ordered),
    )


async def fill(store: TaskStore, backlog: int, *, batch: int = FILL_BATCH) -> None:
    """Enqueue ``backlog`` due no-op tasks, ``batch`` at a time."""
    now = time.time()
    for start in range(0, backlog, batch):
        stop = min(start + batch, backlog)
        await store.enqueue(
            [
                Task(id=f"backlog-{i}", name=TASK_NAME, run_at=now, created_at=now)
                for i in range(start, stop)
            ]
        )


async def warm_up(store: TaskStore, round_trips: int = WARMUP_ROUND_TRIPS) -> None:
    """Claim and release a task ``round_trips`` times, untimed."""
    for _ in range(round_trips):
        claimed = await store.claim(WORKER, 1, lease_s=LEASE_S)
        await store.release([task.lease for task in claimed])


async def time_round_trip(store: TaskStore) -> float:
    """Seconds for one claim(1) and the finish of the claimed task."""
    started = time.perf_counter()
    claimed = await store.claim(WORKER, 1, lease_s=LEASE_S)
    if not claimed:
        raise BenchmarkError(f"{store.url} ran out of queued tasks during the benchmark")
    await store.finish([Outcome.succeeded(claimed[0].lease, None, now=time.time())])
    return time.perf_counter() - started


def _check_sizes(backlog: int, samples: int) -> None:
    if samples < 1 or backlog < samples:
        raise BenchmarkError(
            f"need 1 <= samples <= backlog, got samples={samples}, backlog={backlog}"
        )


async def claim_latency(url: str, backlog: int, *, samples: int = 200) -> ClaimLatency:
    """Latency of claim(1)+finish with ``backlog`` tasks queued in the store at ``url``.

    The store is purged before it is filled and after it is measured.
    """
    _check_sizes(backlog, samples)
    store = open_store(url)
    await store.open()
    try:
        await store.purge()
        try:
            await fill(store, backlog)
            await warm_up(store)
            durations = [await time_round_trip(store) for _ in range(samples)]
        finally:
            await store.purge()
    finally:
        await store.close()
    return summarise(backlog, durations)
