"""The open and closed loops on the memory store, repeats and saved results.

The open loop must account for every scheduled task and time each one from
its *scheduled* arrival: a store whose enqueue stalls once for 200 ms (a
real MemoryStore with that one fault added) must show the stall in the p99,
although the tasks that queued up behind it were enqueued late. Only lower
bounds on times are asserted: noise can only lengthen them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from taskbench.bench.drain import DrainConfig
from taskbench.bench.load import (
    ClosedLoopConfig,
    OpenLoopConfig,
    Warmup,
    closed_loop,
    config_params,
    figure,
    harness_overhead,
    load_config,
    open_loop,
    parse_warmup,
    run_repeats,
    save_results,
    summarise_repeats,
)
from taskbench.bench.producer import MAX_SENDS_IN_FLIGHT
from taskbench.bench.results import load_runs, merge_histograms, percentiles_ms
from taskbench.errors import ConfigError
from taskbench.model import Task, TaskStatus
from taskbench.stores.memory import MemoryStore

STALL_S = 0.2


class StallingStore(MemoryStore):
    """A memory store that stalls for STALL_S at its ``stall_at``-th enqueue call, as a
    stalled server would: that call and every enqueue made during the stall wait.
    ``alone=True`` stalls only that one call. Counts the calls in flight at once."""

    def __init__(self, url: str = "memory://", *, stall_at: int = 100, alone: bool = False):
        super().__init__(url)
        self.stall_at, self.alone = stall_at, alone
        self.enqueue_calls = self.in_flight = self.most_in_flight = 0
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def enqueue(self, tasks: Sequence[Task]) -> None:
        self.enqueue_calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.enqueue_calls == self.stall_at:
                await self._stall()
            await self._flowing.wait()
            await super().enqueue(tasks)
        finally:
            self.in_flight -= 1

    async def _stall(self) -> None:
        if not self.alone:
            self._flowing.clear()
        await asyncio.sleep(STALL_S)
        self._flowing.set()


class PeakStore(MemoryStore):
    """A memory store that remembers the most tasks it held unfinished at an enqueue."""

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self.peak = 0

    async def enqueue(self, tasks: Sequence[Task]) -> None:
        await super().enqueue(tasks)
        counts = await self.counts()
        self.peak = max(self.peak, counts[TaskStatus.QUEUED] + counts[TaskStatus.RUNNING])


def _open(rate: float = 200, duration: float = 1.5, **options: object) -> OpenLoopConfig:
    return OpenLoopConfig.create(
        "memory://",
        workload=str(options.pop("workload", "noop")),
        concurrency=10,
        rate=rate,
        duration=duration,
        **options,  # type: ignore[arg-type]
    )


# -- open loop ------------------------------------------------------------------------


async def test_the_open_loop_runs_every_scheduled_task_once() -> None:
    config = _open(rate=200, duration=1.5, warmup="0.5s")
    result = await open_loop(config)
    assert config.arrivals == 300
    assert (result.tasks, result.succeeded, result.dead, result.lost) == (300, 300, 0, 0)
    assert (result.duplicates, result.failed) == (0, 0)
    assert result.measured == 200  # the arrivals of the last second
    assert result.achieved_tps is not None and result.achieved_tps > 0
    assert (result.mode, result.rate, result.offered_tps, result.warmup, result.producer) == (
        "open",
        200,
        200,
        "0.5s",
        "inline",  # the memory store cannot be shared with a producer process
    )
    latency, queue, lag = result.latency_ms, result.queue_ms, result.send_lag_ms
    assert latency is not None and queue is not None and lag is not None
    assert 0 < queue.p50 <= latency.p50
    assert result.enqueue_ms is not None and result.wake_ms is not None
    parts = {"send_lag", "enqueue", "wake"}
    assert set(result.histograms) == {"latency", "queue", "service"} | parts


async def test_a_stalled_enqueue_shows_in_the_p99_from_the_scheduled_arrival() -> None:
    store = StallingStore(stall_at=100)
    result = await open_loop(_open(rate=300, duration=2.0), opener=lambda url: store)
    assert store.enqueue_calls < 600  # the producer batched the arrivals that queued up
    assert (result.tasks, result.succeeded, result.lost) == (600, 600, 0)
    latency, queue = result.latency_ms, result.queue_ms
    assert latency is not None and queue is not None
    # ~60 arrivals (10%) fell in the 200 ms stall: the top 1% waited 180-200 ms for it
    assert latency.p99 >= 0.75 * STALL_S * 1000
    assert queue.p99 >= 0.75 * STALL_S * 1000
    enqueue = result.enqueue_ms  # and the split puts the stall in the store's enqueue call
    assert enqueue is not None and enqueue.max >= STALL_S * 1000


async def test_one_slow_enqueue_does_not_hold_back_the_arrivals_after_it() -> None:
    store = StallingStore(stall_at=100, alone=True)
    result = await open_loop(_open(rate=300, duration=2.0), opener=lambda url: store)
    assert (result.tasks, result.succeeded, result.lost) == (600, 600, 0)
    assert 2 <= store.most_in_flight <= MAX_SENDS_IN_FLIGHT  # later calls went out meanwhile
    enqueue = result.enqueue_ms
    assert enqueue is not None and enqueue.max >= STALL_S * 1000


async def test_without_metrics_the_open_loop_still_accounts_for_every_task() -> None:
    result = await open_loop(_open(rate=100, duration=1.0, metrics=False))
    assert (result.tasks, result.succeeded, result.lost) == (100, 100, 0)
    assert (result.latency_ms, result.queue_ms, result.send_lag_ms) == (None, None, None)
    assert (result.enqueue_ms, result.wake_ms) == (None, None)
    assert (result.achieved_tps, result.measured, result.duplicates) == (None, None, None)


# -- closed loop ----------------------------------------------------------------------


async def test_the_closed_loop_keeps_one_task_per_client_and_accounts_for_all() -> None:
    store = PeakStore()
    config = ClosedLoopConfig.create(
        "memory://", workload="sleep:1", concurrency=8, tasks=400, warmup=50
    )
    result = await closed_loop(config, opener=lambda url: store)
    assert (result.tasks, result.measured, result.succeeded, result.lost) == (450, 400, 450, 0)
    assert (result.duplicates, result.rate, result.offered_tps) == (0, None, None)
    assert 1 <= store.peak <= 8  # never more tasks out than clients
    assert result.achieved_tps is not None and result.achieved_tps > 0


async def test_closed_loop_flaky_tasks_all_end() -> None:
    config = ClosedLoopConfig.create(
        "memory://", workload="flaky:0.3", concurrency=10, tasks=100, warmup="0.1s"
    )
    result = await closed_loop(config)
    assert result.lost == 0 and result.succeeded + result.dead == result.tasks
    assert result.tasks >= 100 and result.measured == 100
    assert result.failed is not None and result.failed > 0  # 0.7**100: cannot flake


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "options", "fragment"),
    [
        ("open", {"rate": 0, "duration": 1}, "rate must be > 0"),
        ("open", {"rate": -5, "duration": 1}, "rate must be > 0"),
        ("open", {"rate": math.nan, "duration": 1}, "rate must be a finite number"),
        ("open", {"rate": 10, "duration": 0}, "duration must be > 0"),
        ("open", {"rate": 10, "duration": math.inf}, "duration must be a finite number"),
        ("open", {"rate": 10, "duration": 1, "warmup": "1s"}, "shorter than the duration"),
        ("open", {"rate": 10, "duration": 1, "concurrency": 0}, "concurrency must be"),
        ("closed", {"tasks": 0}, "tasks must be a positive integer"),
        ("closed", {"tasks": 5, "warmup": "-1"}, "warmup must be"),
        ("drain", {"tasks": 0}, "tasks must be a positive integer"),
        ("drain", {"tasks": 5, "warmup": "2s"}, "not seconds"),
        ("drain", {"tasks": 5, "rate": 3}, "mode drain"),
        ("sideways", {}, "unknown mode 'sideways'; known: drain, open, closed"),
    ],
)
def test_bad_input_is_refused_before_anything_starts(
    mode: str, options: dict[str, object], fragment: str
) -> None:
    arguments: dict[str, object] = {"concurrency": 2, "workload": "noop", **options}
    with pytest.raises(ConfigError, match=fragment):
        load_config(mode, "memory://", **arguments)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, Warmup()),
        ("0", Warmup()),
        ("500", Warmup(tasks=500)),
        (" 2.5S ", Warmup(seconds=2.5)),
        (7, Warmup(tasks=7)),
    ],
)
def test_warmup_is_tasks_or_seconds(raw: object, expected: Warmup) -> None:
    assert parse_warmup(raw) == expected


@pytest.mark.parametrize("raw", ["x", "-3", "1.5", "s", "nans", "-1s"])
def test_a_bad_warmup_says_what_is_accepted(raw: str) -> None:
    with pytest.raises(ConfigError, match="warmup must be"):
        parse_warmup(raw)


def test_an_open_warmup_in_tasks_is_converted_at_the_rate() -> None:
    assert _open(rate=100, duration=2, warmup="50").warmup_s == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("rate", "duration", "arrivals"), [(300, 0.1, 30), (0.5, 1, 1), (3, 1.01, 4), (200, 1.5, 300)]
)
def test_the_schedule_holds_the_arrivals_before_the_duration(
    rate: float, duration: float, arrivals: int
) -> None:
    assert _open(rate=rate, duration=duration).arrivals == arrivals


# -- repeats and saved results --------------------------------------------------------


async def test_repeats_save_one_row_each_with_their_histograms(tmp_path: Path) -> None:
    config = ClosedLoopConfig.create("memory://", workload="noop", concurrency=4, tasks=60)
    results = await run_repeats(config, 3)
    path = save_results(results, params=config_params(config, 3), directory=tmp_path)
    frame = load_runs(tmp_path)
    assert path.parent == tmp_path
    assert list(frame["repeat"]) == [0, 1, 2] and frame["run_id"].nunique() == 1
    assert set(frame["kind"]) == {"closed"} and list(frame["succeeded"]) == [60, 60, 60]
    assert merge_histograms(frame["hist"]).get_total_count() == 180
    assert merge_histograms(frame["queue_hist"]).get_total_count() == 180
    assert '"repeats": 3' in frame["params"][0]
    summary = summarise_repeats(results)
    assert set(summary) == {"achieved_tps", "latency_ms.p50", "latency_ms.p99"}
    assert summary["achieved_tps"].n == 3


async def test_an_open_loops_saved_histograms_give_its_percentiles_and_p999(
    tmp_path: Path,
) -> None:
    config = _open(rate=200, duration=1.0)
    result = await open_loop(config)
    save_results([result], params=config_params(config), directory=tmp_path)
    row = load_runs(tmp_path, kind="open")
    assert {"queue_hist", "wake_hist", "send_lag_hist", "enqueue_hist"} <= set(row.columns)
    queue = percentiles_ms(row["queue_hist"])
    assert result.queue_ms is not None
    assert queue["p50"] == pytest.approx(result.queue_ms.p50, rel=1e-3)
    assert queue["p99"] == pytest.approx(result.queue_ms.p99, rel=1e-3)
    assert queue["p99"] <= queue["p99.9"] <= result.queue_ms.max * 1.001
    assert math.isnan(percentiles_ms([None])["p50"])


async def test_run_repeats_refuses_zero() -> None:
    config = DrainConfig.create("memory://", tasks=1, concurrency=1, workload="noop")
    with pytest.raises(ConfigError, match="repeats must be a positive integer"):
        await run_repeats(config, 0)


def test_figure_reads_nested_fields_and_misses_as_none() -> None:
    row = {"drain_tps": 10, "latency_ms": {"p99": 2.5}, "queue_ms": None}
    assert (figure(row, "drain_tps"), figure(row, "latency_ms.p99")) == (10.0, 2.5)
    assert figure(row, "queue_ms.p99") is None and figure(row, "nothing") is None


# -- the harness's own overhead -------------------------------------------------------


def test_harness_overhead_pairs_drains_with_and_without_metrics() -> None:
    overhead = harness_overhead(tasks=300, concurrency=4, repeats=3)
    assert [r.metrics for r in overhead.on] == [True] * 3
    assert [r.metrics for r in overhead.off] == [False] * 3
    assert all(r.succeeded == 300 and r.lost == 0 for r in [*overhead.on, *overhead.off])
    assert overhead.on[0].latency_ms is not None and overhead.off[0].latency_ms is None
    for comparison in (overhead.wall, overhead.cpu):
        assert (comparison.n_before, comparison.n_after) == (3, 3)
        assert comparison.ci_low <= comparison.ratio <= comparison.ci_high
    assert overhead.hook_cpu_us > 0 and 0 < overhead.hook_ratio < 1


def test_harness_overhead_refuses_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="repeats"):
        harness_overhead(tasks=10, repeats=0)
    with pytest.raises(ConfigError, match="tasks"):
        harness_overhead(tasks=0)
