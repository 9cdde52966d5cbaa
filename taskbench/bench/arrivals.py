"""How quickly an arrival starts: the open loop at half a store's drain throughput.

The harness's wake-up figure (``taskbench wakeup``, study chapter 2): for
each store, drain ``drain_tasks`` no-op tasks ``drain_repeats`` times to
find what it sustains, then offer half of the median as an open loop (a
fixed arrival rate, latencies from each task's scheduled arrival, see
:mod:`taskbench.bench.load`). At half its capacity a store should start
an arrival within milliseconds: its executor is woken (LISTEN/NOTIFY,
BLPOP), not left to poll. The target is p99 enqueue -> start under
:data:`TARGET_P99_MS` on PostgreSQL and Redis.

:func:`measure_wakeup` returns one :class:`Wakeup` per store with the
percentile spectrum of the enqueue -> start wait (read from the run's
HdrHistogram) for :func:`taskbench.viz.latency_spectrum`; the runs
themselves are returned too, so a caller can save them
(:func:`taskbench.bench.load.save_results`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from taskbench.bench.drain import DrainConfig, DrainResult, check_positive, drain
from taskbench.bench.load import LoadResult, OpenLoopConfig, check_number, open_loop
from taskbench.bench.results import percentile_spectrum, percentiles_ms
from taskbench.errors import ConfigError
from taskbench.urls import redact

TARGET_P99_MS = 10.0
"""The target: p99 enqueue -> start under this, at half the drain throughput."""
WORKLOAD = "noop"
"""No-op tasks: the wait measured is the store's and the executor's, not the handler's."""
SHARE_OF_DRAIN = 0.5
"""The open loop offers this share of the median drain throughput."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WakeupPlan:
    """The sizes of one wake-up measurement; :meth:`create` checks them all."""

    drain_tasks: int = 20_000
    drain_repeats: int = 3
    duration: float = 10.0
    warmup: float = 1.0
    concurrency: int = 50

    @classmethod
    def create(
        cls,
        *,
        drain_tasks: int = 20_000,
        drain_repeats: int = 3,
        duration: float = 10.0,
        warmup: float = 1.0,
        concurrency: int = 50,
    ) -> WakeupPlan:
        """Validate every size (ConfigError) before a store is opened."""
        duration = check_number(duration, "duration")
        warmup = check_number(warmup, "warmup", allow_zero=True)
        if warmup >= duration:
            raise ConfigError(
                f"warmup ({warmup:g} s) must be shorter than the duration ({duration:g} s)"
            )
        return cls(
            drain_tasks=check_positive(drain_tasks, "drain tasks"),
            drain_repeats=check_positive(drain_repeats, "drain repeats"),
            duration=duration,
            warmup=warmup,
            concurrency=check_positive(concurrency, "concurrency"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Wakeup:
    """One store's figure: its drain throughput, the rate offered, and the wait to start."""

    store: str
    drain_tps: float
    rate: float
    achieved_tps: float | None
    queue_ms: dict[str, float]
    """enqueue -> start percentiles (``p50``, ``p99``, ``p99.9``), from the histogram."""
    wake_ms: dict[str, float]
    """The executor's part of it: the enqueue call's return -> the claim."""
    send_lag_p99_ms: float | None
    spectrum: list[dict[str, float]]
    """``{"percentile": p, "ms": v}`` rows of the enqueue -> start wait."""
    lost: int
    producer: str

    @property
    def met(self) -> bool:
        """Whether p99 enqueue -> start is under :data:`TARGET_P99_MS`."""
        return self.queue_ms.get("p99", float("inf")) < TARGET_P99_MS

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self) | {"met": self.met, "target_p99_ms": TARGET_P99_MS}


@dataclass(frozen=True, slots=True)
class Measured:
    """A store's figure and the runs behind it (for saving)."""

    wakeup: Wakeup
    drains: list[DrainResult]
    open_run: LoadResult


async def drain_throughput(url: str, plan: WakeupPlan) -> tuple[float, list[DrainResult]]:
    """The median no-op drain throughput of ``url`` over ``plan.drain_repeats`` drains."""
    config = DrainConfig.create(
        url, tasks=plan.drain_tasks, concurrency=plan.concurrency, workload=WORKLOAD
    )
    drains = [await drain(config) for _ in range(plan.drain_repeats)]
    return statistics.median(result.drain_tps for result in drains), drains


def open_config(url: str, rate: float, plan: WakeupPlan) -> OpenLoopConfig:
    return OpenLoopConfig.create(
        url,
        workload=WORKLOAD,
        concurrency=plan.concurrency,
        rate=rate,
        duration=plan.duration,
        warmup=f"{plan.warmup:g}s",
    )


def _wakeup(url: str, drain_tps: float, run: LoadResult) -> Wakeup:
    queue = run.histograms.get("queue")
    wake = run.histograms.get("wake")
    return Wakeup(
        store=redact(url),
        drain_tps=drain_tps,
        rate=float(run.rate or 0.0),
        achieved_tps=run.achieved_tps,
        queue_ms=percentiles_ms([queue]),
        wake_ms=percentiles_ms([wake]),
        send_lag_p99_ms=None if run.send_lag_ms is None else run.send_lag_ms.p99,
        spectrum=percentile_spectrum([queue]),
        lost=run.lost,
        producer=run.producer or "inline",
    )


async def measure_wakeup(url: str, plan: WakeupPlan | None = None) -> Measured:
    """Drain ``url`` to find its throughput, then run the open loop at half of it."""
    plan = plan or WakeupPlan()
    drain_tps, drains = await drain_throughput(url, plan)
    run = await open_loop(open_config(url, drain_tps * SHARE_OF_DRAIN, plan))
    return Measured(_wakeup(url, drain_tps, run), drains, run)


def table(wakeups: Sequence[Wakeup]) -> list[dict[str, Any]]:
    """One row per store, the figures a reader compares (for a DataFrame or the CLI)."""
    return [
        {
            "store": w.store,
            "drain_tps": round(w.drain_tps),
            "rate": round(w.rate),
            "achieved_tps": None if w.achieved_tps is None else round(w.achieved_tps),
            "queue_p50_ms": w.queue_ms.get("p50"),
            "queue_p99_ms": w.queue_ms.get("p99"),
            "queue_p99.9_ms": w.queue_ms.get("p99.9"),
            "wake_p99_ms": w.wake_ms.get("p99"),
            "send_lag_p99_ms": w.send_lag_p99_ms,
            "lost": w.lost,
            "met": w.met,
        }
        for w in wakeups
    ]


__all__ = [
    "SHARE_OF_DRAIN",
    "TARGET_P99_MS",
    "Measured",
    "Wakeup",
    "WakeupPlan",
    "drain_throughput",
    "measure_wakeup",
    "table",
]
