"""The drain benchmark in-process, on the memory store: every task accounted for.

Also the Recorder (counts, duplicates, percentiles, the warm-up rule), the
warm-up and no-metrics drains, and the up-front checks. No timings are
asserted: only that they were measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator
from dataclasses import replace

import pytest

from taskbench.bench import drain as drain_module
from taskbench.bench import load as load_module
from taskbench.bench.drain import EXECUTORS, DrainConfig, frozen_heap, run_drain
from taskbench.bench.load import load_config, run_once
from taskbench.bench.metrics import Recorder, hook_cpu_per_task
from taskbench.bench.results import merge_histograms
from taskbench.errors import ConfigError
from taskbench.model import Outcome, Task, TaskStatus

T0 = 1_700_000_000.0
JSON_FIELDS = {
    "store", "workload", "executor", "tasks", "concurrency", "enqueue_tps", "drain_tps",
    "latency_ms", "queue_ms", "service_ms", "succeeded", "failed", "dead", "lost",
    "duplicates", "wall_s", "cpu_s", "max_rss_mb", "warmup", "metrics", "resources", "mode",
}  # fmt: skip
PERCENTILES = {"p50", "p95", "p99", "max"}


@pytest.mark.parametrize("executor", list(EXECUTORS))
async def test_noop_drain_runs_every_task_once(executor: str) -> None:
    result = await run_drain(
        "memory://", tasks=1_500, concurrency=40, workload="noop", executor=executor
    )
    assert (result.succeeded, result.dead, result.lost) == (1_500, 0, 0)
    assert (result.failed, result.duplicates) == (0, 0)
    assert result.drain_tps > 0 and result.enqueue_tps > 0
    latency, queue = result.latency_ms, result.queue_ms
    assert latency is not None and queue is not None
    assert 0 < latency.p50 <= latency.p95 <= latency.p99 <= latency.max
    assert 0 < queue.p50 <= latency.p50
    assert set(result.histograms) == {"latency", "queue", "service"}


@pytest.mark.parametrize("executor", list(EXECUTORS))
async def test_flaky_drain_ends_with_every_task_terminal(executor: str) -> None:
    result = await run_drain(
        "memory://", tasks=400, concurrency=25, workload="flaky:0.3", executor=executor
    )
    assert result.lost == 0
    assert result.succeeded + result.dead == 400
    assert result.failed >= result.dead
    assert result.failed > 0  # P(no failure in 400 tries at 0.3) is 0.7**400


async def test_the_result_is_plain_json_with_every_field_and_no_password() -> None:
    result = await run_drain(
        "memory://bench:s3cret@local", tasks=10, concurrency=2, workload="noop", executor="asyncio"
    )
    published = result.to_json_dict()
    assert published.keys() >= JSON_FIELDS
    assert "histograms" not in published
    assert set(published["latency_ms"]) == set(published["queue_ms"]) == PERCENTILES
    assert published["resources"]["bench_cpu_s"] >= 0
    assert published["resources"]["server_cpu_s"] is None  # memory: no server
    assert "s3cret" not in repr(published)
    assert published["store"] == "memory://bench:***@local"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"tasks": 0}, "tasks must be a positive integer"),
        ({"tasks": True}, "tasks must be a positive integer"),
        ({"concurrency": -1}, "concurrency must be a positive integer"),
        ({"workload": "nap:3"}, "accepted: noop"),
        ({"executor": "celery"}, "known: taskbench, asyncio, threads"),
        ({"warmup": -1}, "warmup must be a whole number >= 0"),
        ({"url": "memory:"}, "malformed URL"),
        ({"url": "nosuch://x"}, "unknown store scheme"),
        ({"url": "memory://?colour=blue"}, "unknown option 'colour'"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    kwargs: dict[str, object], fragment: str
) -> None:
    arguments: dict[str, object] = {
        "url": "memory://", "tasks": 10, "concurrency": 2, "workload": "noop",
        "executor": "taskbench",
    }  # fmt: skip
    arguments.update(kwargs)
    url = arguments.pop("url")
    with pytest.raises(ConfigError, match=fragment):
        DrainConfig.create(url, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("executor", list(EXECUTORS))
async def test_without_metrics_every_task_is_still_verified(executor: str) -> None:
    result = await run_drain(
        "memory://", tasks=300, concurrency=10, workload="noop", executor=executor, metrics=False
    )
    assert (result.succeeded, result.dead, result.lost) == (300, 0, 0)
    assert result.drain_tps > 0 and not result.metrics
    assert (result.latency_ms, result.queue_ms, result.service_ms) == (None, None, None)
    assert (result.failed, result.duplicates, result.resources) == (None, None, None)
    assert result.histograms == {}


async def test_a_warm_up_is_drained_first_and_left_out() -> None:
    result = await run_drain("memory://", tasks=200, concurrency=10, workload="noop", warmup=150)
    assert (result.tasks, result.warmup, result.succeeded, result.lost) == (200, 150, 200, 0)
    timed = merge_histograms([result.histograms["latency"]])
    assert timed.get_total_count() == 200  # the warm-up's 150 were not timed


def _running(task_id: str, started: float) -> Task:
    task = Task.new("bench", id=task_id, now=T0)
    return replace(task, status=TaskStatus.RUNNING, attempts=1, started_at=started, lease_owner="w")


def test_recorder_counts_outcomes_and_finds_duplicates() -> None:
    recorder = Recorder()
    a, b = _running("a", T0 + 1), _running("b", T0 + 1)
    recorder.on_claimed([a, b])
    recorder.on_outcome(a, Outcome.succeeded(a.lease, None, now=T0 + 1.002))
    recorder.on_outcome(a, Outcome.succeeded(a.lease, None, now=T0 + 1.004))
    recorder.on_outcome(b, Outcome.retry(b.lease, "boom", run_at=T0 + 2, now=T0 + 1.5))
    recorder.on_outcome(b, Outcome.dead(b.lease, "boom", now=T0 + 3))
    assert (recorder.claimed, recorder.succeeded, recorder.retried, recorder.dead) == (2, 2, 1, 1)
    assert (recorder.failed, recorder.finished, recorder.duplicates) == (2, 3, 1)


def test_recorder_latency_is_enqueue_to_finish_in_milliseconds() -> None:
    recorder = Recorder()
    task = _running("a", T0 + 0.5)
    recorder.on_outcome(task, Outcome.succeeded(task.lease, None, now=T0 + 1.0))
    latency = recorder.latency.percentiles_ms()
    service = recorder.service.percentiles_ms()
    assert latency["p50"] == pytest.approx(1000.0, rel=1e-3)
    assert service["p99"] == pytest.approx(500.0, rel=1e-3)
    assert recorder.latency.count == 1


def test_retried_attempts_have_a_service_time_but_no_latency() -> None:
    recorder = Recorder()
    task = _running("a", T0 + 0.5)
    recorder.on_outcome(task, Outcome.retry(task.lease, "x", run_at=T0 + 2, now=T0 + 1.0))
    assert (recorder.latency.count, recorder.service.count) == (0, 1)


def test_queue_wait_is_origin_to_start_of_the_first_attempt_only() -> None:
    recorder = Recorder()
    first, second = _running("a", T0 + 0.25), replace(_running("b", T0 + 5.0), attempts=2)
    recorder.on_claimed([first, second])
    assert recorder.claimed == 2
    assert recorder.queue.count == 1
    assert recorder.queue.percentiles_ms()["p50"] == pytest.approx(250.0, rel=1e-3)


def test_the_warm_up_is_counted_but_not_timed() -> None:
    recorder = Recorder(measure_from=T0 + 10)
    early = _running("early", T0 + 1)
    late = replace(_running("late", T0 + 10.5), created_at=T0 + 10)
    recorder.on_claimed([early, late])
    for task in (early, late):
        recorder.on_outcome(task, Outcome.succeeded(task.lease, None, now=T0 + 11))
    assert (recorder.succeeded, recorder.measured, recorder.last_end) == (2, 1, T0 + 11)
    assert recorder.latency.count == recorder.queue.count == recorder.service.count == 1
    assert recorder.latency.percentiles_ms()["max"] == pytest.approx(1000.0, rel=1e-3)


def test_the_hooks_cost_is_measured_per_task() -> None:
    assert hook_cpu_per_task(count=2_000, batch=40) > 0


def test_the_heap_alive_before_a_run_is_frozen_until_it_ends() -> None:
    kept = [[index] for index in range(1_000)]
    with frozen_heap():
        assert gc.get_freeze_count() >= len(kept)
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("the run failed")
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("mode", ["drain", "open", "closed"])
def test_every_measured_run_freezes_the_heap(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    frozen_during: list[int] = []
    real = drain_module.frozen_heap

    @contextlib.contextmanager
    def watched() -> Iterator[None]:
        with real():
            frozen_during.append(gc.get_freeze_count())
            yield

    monkeypatch.setattr(drain_module, "frozen_heap", watched)
    monkeypatch.setattr(load_module, "frozen_heap", watched)
    sizes = {"rate": 100, "duration": 0.5} if mode == "open" else {"tasks": 20}
    config = load_config(mode, "memory://", concurrency=2, workload="noop", **sizes)
    result = asyncio.run(run_once(config))
    assert result.succeeded == result.tasks > 0
    assert len(frozen_during) == 1 and frozen_during[0] > 0
