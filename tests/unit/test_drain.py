"""The drain benchmark in-process, on the memory store: every task accounted for.

Also the Recorder (counts, duplicates, percentiles) and the up-front checks.
No timings are asserted: only that they were measured.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from taskbench.bench.drain import EXECUTORS, DrainConfig, run_drain
from taskbench.bench.metrics import Recorder
from taskbench.errors import ConfigError
from taskbench.model import Outcome, Task, TaskStatus

T0 = 1_700_000_000.0
JSON_FIELDS = {
    "store", "workload", "executor", "tasks", "concurrency", "enqueue_tps", "drain_tps",
    "latency_ms", "succeeded", "failed", "dead", "lost", "duplicates", "wall_s", "cpu_s",
    "max_rss_mb",
}  # fmt: skip


@pytest.mark.parametrize("executor", list(EXECUTORS))
async def test_noop_drain_runs_every_task_once(executor: str) -> None:
    result = await run_drain(
        "memory://", tasks=1_500, concurrency=40, workload="noop", executor=executor
    )
    assert (result.succeeded, result.dead, result.lost) == (1_500, 0, 0)
    assert (result.failed, result.duplicates) == (0, 0)
    assert result.drain_tps > 0 and result.enqueue_tps > 0
    assert 0 < result.latency_ms.p50 <= result.latency_ms.p95 <= result.latency_ms.p99


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
    assert set(published["latency_ms"]) == {"p50", "p95", "p99"}
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
