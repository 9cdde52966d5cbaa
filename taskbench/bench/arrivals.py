"""How quickly an arrival starts: the open loop at half a store's drain throughput.

The harness's wake-up figure (``taskbench wakeup``, study chapter 2): for
each store, drain ``drain_tasks`` no-op tasks ``drain_repeats`` times to
find what it sustains, then offer a share of the median as an open loop (a
fixed arrival rate, latencies from each task's scheduled arrival, see
:mod:`taskbench.bench.load`), once per share in ``shares`` (by default a
quarter and a half). At half its capacity a store should start an arrival
within milliseconds: its executor is woken (LISTEN/NOTIFY, BLPOP), not
left to poll. The target is p99 enqueue -> start under
:data:`TARGET_P99_MS` on PostgreSQL and Redis at :data:`TARGET_SHARE`;
the lighter load beside it shows how the tail grows with the load.

:func:`measure_wakeup` returns one :class:`Wakeup` per share with the
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
TARGET_SHARE = 0.5
"""The target is judged with the open loop offering this share of the median drain."""
SHARES = (0.25, TARGET_SHARE)
"""The shares of the drain offered by default: the target's, and a lighter load beside it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WakeupPlan:
    """The sizes of one wake-up measurement; :meth:`create` checks them all."""

    drain_tasks: int = 20_000
    drain_repeats: int = 3
    duration: float = 10.0
    warmup: float = 1.0
    concurrency: int = 50
    shares: tuple[float, ...] = SHARES
    """The open loops to run, each offering this share of the median drain throughput."""

    @classmethod
    def create(
        cls,
        *,
        drain_tasks: int = 20_000,
        drain_repeats: int = 3,
        duration: float = 10.0,
        warmup: float = 1.0,
        concurrency: int = 50,
        shares: Sequence[float] = SHARES,
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
            shares=check_shares(shares),
        )


def check_shares(shares: Sequence[float]) -> tuple[float, ...]:
    """``shares`` sorted, each a number in (0, 1] given once, or ConfigError."""
    checked = [check_number(share, "a share of the drain") for share in shares]
    if not checked or any(share > 1 for share in checked) or len(set(checked)) < len(checked):
        raise ConfigError(
            f"shares of the drain must be distinct numbers in (0, 1], got {list(shares)!r}"
        )
    return tuple(sorted(checked))


@dataclass(frozen=True, slots=True, kw_only=True)
class Wakeup:
    """One open loop's figure: the store's drain throughput, the share of it offered,
    and the wait to start."""

    store: str
    drain_tps: float
    share: float
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
    """A store's figures, one per share, and the runs behind them (for saving)."""

    wakeups: list[Wakeup]
    drains: list[DrainResult]
    open_runs: list[LoadResult]

    @property
    def at_target(self) -> Wakeup | None:
        """The figure at :data:`TARGET_SHARE`, if it was measured."""
        return next((w for w in self.wakeups if w.share == TARGET_SHARE), None)


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


def _wakeup(url: str, drain_tps: float, share: float, run: LoadResult) -> Wakeup:
    queue = run.histograms.get("queue")
    wake = run.histograms.get("wake")
    return Wakeup(
        store=redact(url),
        drain_tps=drain_tps,
        share=share,
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
    """Drain ``url`` to find its throughput, then run an open loop at each share of it."""
    plan = plan or WakeupPlan()
    drain_tps, drains = await drain_throughput(url, plan)
    wakeups, runs = [], []
    for share in plan.shares:
        run = await open_loop(open_config(url, drain_tps * share, plan))
        wakeups.append(_wakeup(url, drain_tps, share, run))
        runs.append(run)
    return Measured(wakeups, drains, runs)


def table(wakeups: Sequence[Wakeup]) -> list[dict[str, Any]]:
    """One row per open loop, the figures a reader compares (for a DataFrame or the CLI)."""
    return [
        {
            "store": w.store,
            "drain_tps": round(w.drain_tps),
            "share": w.share,
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
    "SHARES",
    "TARGET_P99_MS",
    "TARGET_SHARE",
    "Measured",
    "Wakeup",
    "WakeupPlan",
    "check_shares",
    "drain_throughput",
    "measure_wakeup",
    "table",
]
