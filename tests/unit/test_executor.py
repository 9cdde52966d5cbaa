"""TaskExecutor behaviour on the memory store: retry, timeout, dead letters,
priority, concurrency, rate limits, heartbeats, shutdown and store outages."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskbench.errors import ConfigError, StoreUnavailableError
from taskbench.executor import PrefetchPace, TaskExecutor
from taskbench.model import Outcome, RetryPolicy, Task, TaskPriority, TaskStatus
from taskbench.stores.memory import MemoryStore

FAST_RETRY = RetryPolicy(base_delay=0.0, jitter=False)


class Boom(Exception):
    pass


class Fatal(Exception):
    pass


async def drain(store: MemoryStore, executor: TaskExecutor) -> None:
    await asyncio.wait_for(executor.run(until_idle=True), 30)


async def statuses(store: MemoryStore, tasks: Sequence[Task]) -> dict[str, Task]:
    return {t.id: t for t in await store.get_many([t.id for t in tasks])}


async def test_runs_async_and_plain_handlers_and_stores_results() -> None:
    store = MemoryStore()
    tasks = [Task.new("double", i) for i in range(20)] + [Task.new("square", 3)]
    await store.enqueue(tasks)
    executor = TaskExecutor(store, concurrency=4)

    @executor.task("double")
    async def double(task: Task) -> int:
        return int(task.payload) * 2

    executor.register("square", lambda task: task.payload**2)
    stats = await asyncio.wait_for(executor.run(until_idle=True), 30)

    done = await statuses(store, tasks)
    assert [done[t.id].result for t in tasks] == [i * 2 for i in range(20)] + [9]
    assert all(t.status is TaskStatus.SUCCEEDED for t in done.values())
    assert (stats.claimed, stats.succeeded, stats.refused) == (21, 21, 0)


async def test_a_failing_task_is_retried_then_succeeds() -> None:
    store = MemoryStore()
    task = Task.new("flaky", max_attempts=3)
    await store.enqueue([task])
    calls: list[int] = []
    executor = TaskExecutor(store, retry=FAST_RETRY)

    @executor.task("flaky")
    async def flaky(task: Task) -> str:
        calls.append(task.attempts)
        if task.attempts < 3:
            raise Boom(f"attempt {task.attempts}")
        return "finally"

    await drain(store, executor)
    final = await store.get(task.id)
    assert final is not None
    assert (final.status, final.attempts, final.result) == (TaskStatus.SUCCEEDED, 3, "finally")
    assert calls == [1, 2, 3]
    assert final.last_error == "Boom: attempt 2"


async def test_the_last_failure_goes_to_the_dead_letters_with_its_error() -> None:
    store = MemoryStore()
    task = Task.new("always-fails", max_attempts=2)
    await store.enqueue([task])
    executor = TaskExecutor(store, retry=FAST_RETRY)
    executor.register("always-fails", _raise_boom)
    stats = await asyncio.wait_for(executor.run(until_idle=True), 30)
    dead = await store.list_dead()
    assert [(t.id, t.attempts, t.last_error) for t in dead] == [(task.id, 2, "Boom: no")]
    assert (stats.retried, stats.dead) == (1, 1)


async def test_a_fatal_error_is_not_retried() -> None:
    store = MemoryStore()
    task = Task.new("fatal", max_attempts=5)
    await store.enqueue([task])
    executor = TaskExecutor(store, retry=RetryPolicy(base_delay=0.0, fatal=(Fatal,)))

    @executor.task("fatal")
    async def fatal(task: Task) -> None:
        raise Fatal("bad input")

    await drain(store, executor)
    dead = await store.get(task.id)
    assert dead is not None and (dead.status, dead.attempts) == (TaskStatus.DEAD, 1)


async def test_an_unknown_task_name_is_dead_lettered_and_the_rest_still_run() -> None:
    store = MemoryStore()
    orphan, fine = Task.new("nobody-handles-this", max_attempts=1), Task.new("ok")
    await store.enqueue([orphan, fine])
    executor = TaskExecutor(store)
    executor.register("ok", _return_none)
    await drain(store, executor)
    done = await statuses(store, [orphan, fine])
    assert done[fine.id].status is TaskStatus.SUCCEEDED
    assert done[orphan.id].status is TaskStatus.DEAD
    assert "no handler registered" in (done[orphan.id].last_error or "")


async def test_a_result_that_is_not_json_fails_the_attempt() -> None:
    store = MemoryStore()
    task = Task.new("returns-a-set", max_attempts=1)
    await store.enqueue([task])
    executor = TaskExecutor(store)
    executor.register("returns-a-set", lambda task: {1, 2})
    await drain(store, executor)
    dead = await store.get(task.id)
    assert dead is not None and dead.status is TaskStatus.DEAD
    assert "not JSON-serialisable" in (dead.last_error or "")


async def test_a_task_over_its_timeout_fails_and_is_retried() -> None:
    store = MemoryStore()
    task = Task.new("slow", max_attempts=2)
    await store.enqueue([task])
    executor = TaskExecutor(store, timeout=0.05, retry=FAST_RETRY)

    @executor.task("slow")
    async def slow(task: Task) -> str:
        if task.attempts == 1:
            await asyncio.sleep(30)
        return "second time lucky"

    await drain(store, executor)
    final = await store.get(task.id)
    assert final is not None
    assert (final.status, final.attempts) == (TaskStatus.SUCCEEDED, 2)
    assert "TaskTimeoutError" in (final.last_error or "")


async def test_higher_priority_runs_first() -> None:
    store = MemoryStore()
    order = ["low", "normal", "critical", "high"]
    await store.enqueue([Task.new("record", name, priority=name) for name in order])
    seen: list[str] = []
    executor = TaskExecutor(store, concurrency=1)
    executor.register("record", lambda task: seen.append(task.payload))
    await drain(store, executor)
    assert seen == ["critical", "high", "normal", "low"]


async def test_concurrency_is_reached_and_never_exceeded() -> None:
    store = MemoryStore()
    await store.enqueue([Task.new("sleep") for _ in range(30)])
    running, peak = 0, 0

    async def sleep(task: Task) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    executor = TaskExecutor(store, concurrency=7)
    executor.register("sleep", sleep)
    await drain(store, executor)
    assert peak == 7


async def test_rate_limit_spaces_out_starts() -> None:
    """A lower bound on elapsed time: noise can only make it longer."""
    store = MemoryStore()
    await store.enqueue([Task.new("limited") for _ in range(6)] + [Task.new("free")])
    starts: Counter[str] = Counter()
    executor = TaskExecutor(store, concurrency=10, name_rate_limits={"limited": 50.0})
    executor.register("limited", lambda task: starts.update(["limited"]))
    executor.register("free", lambda task: starts.update(["free"]))
    began = time.monotonic()
    await drain(store, executor)
    # burst 1, then one token every 20 ms: five waits at least
    assert time.monotonic() - began >= 5 / 50.0
    assert starts == {"limited": 6, "free": 1}


async def test_heartbeats_keep_long_tasks_leased() -> None:
    store = MemoryStore()
    task = Task.new("long")
    await store.enqueue([task])
    started = asyncio.Event()

    async def long(task: Task) -> None:
        started.set()
        await asyncio.sleep(2.5)

    executor = TaskExecutor(store, lease_s=1.2)
    executor.register("long", long)
    run = asyncio.create_task(executor.run(until_idle=True))
    await started.wait()
    await asyncio.sleep(1.8)  # past the first lease's expiry, within the extended one
    assert await store.requeue_expired() == 0
    await asyncio.wait_for(run, 30)
    final = await store.get(task.id)
    assert final is not None and (final.status, final.attempts) == (TaskStatus.SUCCEEDED, 1)


async def test_stop_releases_unfinished_tasks_and_reports_finished_ones() -> None:
    store = MemoryStore()
    quick = [Task.new("quick") for _ in range(3)]
    stuck = [Task.new("stuck") for _ in range(2)]
    await store.enqueue(stuck + quick)
    executor = TaskExecutor(store, concurrency=5)
    executor.register("quick", _return_none)
    all_started = asyncio.Event()

    async def stuck_handler(task: Task) -> None:
        all_started.set()
        await asyncio.sleep(60)

    executor.register("stuck", stuck_handler)
    run = asyncio.create_task(executor.run())
    await all_started.wait()
    await asyncio.sleep(0.05)
    await executor.stop(grace=0.1)
    stats = await asyncio.wait_for(run, 10)

    done = await statuses(store, quick + stuck)
    assert all(done[t.id].status is TaskStatus.SUCCEEDED for t in quick)
    assert all((done[t.id].status, done[t.id].attempts) == (TaskStatus.QUEUED, 0) for t in stuck)
    assert stats.released == 2


class FlakyStore(MemoryStore):
    """A real memory store whose first claims fail as if its server were down."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def _claim(self, worker: str, limit: int, lease_s: float, now: float) -> list[Task]:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailableError("store server unreachable (injected)")
        return await super()._claim(worker, limit, lease_s, now)


async def test_the_executor_rides_out_a_store_outage() -> None:
    store = FlakyStore(failures=3)
    tasks = [Task.new("ok") for _ in range(10)]
    await store.enqueue(tasks)
    executor = TaskExecutor(store)
    executor.register("ok", _return_none)
    stats = await asyncio.wait_for(executor.run(until_idle=True), 30)
    assert stats.store_errors == 3
    assert (await store.counts())[TaskStatus.SUCCEEDED] == 10


def test_bad_configuration_is_refused() -> None:
    store = MemoryStore()
    bad_options: tuple[dict[str, Any], ...] = (
        {"concurrency": 0},
        {"lease_s": -1},
        {"timeout": 0},
        {"batch_size": 0},
        {"prefetch": -1},
        {"prefetch": 1.5},
    )
    for bad in bad_options:
        with pytest.raises(ConfigError):
            TaskExecutor(store, **bad)
    executor = TaskExecutor(store)
    with pytest.raises(ConfigError):
        executor.register("", _return_none)


class SlowClaimStore(MemoryStore):
    """A real memory store whose claims take a server's round trip, and which logs them."""

    def __init__(self, claim_s: float = 0.01) -> None:
        super().__init__()
        self.claim_s = claim_s
        self.limits: list[int] = []

    async def _claim(self, worker: str, limit: int, lease_s: float, now: float) -> list[Task]:
        self.limits.append(limit)
        await asyncio.sleep(self.claim_s)
        return await super()._claim(worker, limit, lease_s, now)


def test_the_prefetch_target_follows_littles_law() -> None:
    pace = PrefetchPace(limit=100)
    assert pace.target(concurrency=10) == 0  # nothing timed yet: claim for free slots only
    pace.claim_took(0.01)
    pace.task_took(1.0)
    assert pace.target(concurrency=10) == 1  # 2 x 10 slots x 10 ms / 1 s = 0.2 -> 1
    pace.task_s = 0.002
    assert pace.target(concurrency=10) == 100  # 100 would be asked for: the limit
    pace.task_s = 0.01
    assert pace.target(concurrency=10) == 20
    assert PrefetchPace(limit=0, task_s=0.0, claim_s=1.0).target(concurrency=10) == 0


async def test_short_tasks_are_claimed_ahead_of_free_slots_and_each_runs_once() -> None:
    store = SlowClaimStore()
    tasks = [Task.new("quick", i) for i in range(200)]
    await store.enqueue(tasks)
    ran: Counter[str] = Counter()
    executor = TaskExecutor(store, concurrency=2, prefetch=40)

    async def quick(task: Task) -> None:
        ran[task.id] += 1

    executor.register("quick", quick)
    await drain(store, executor)
    stats = executor.stats
    assert max(store.limits) > 2, "no claim went beyond the free slots"
    assert max(store.limits) <= 2 + 40
    assert ran == Counter({t.id: 1 for t in tasks})
    assert (stats.claimed, stats.succeeded, stats.released) == (200, 200, 0)


async def test_prefetch_zero_claims_only_for_free_slots() -> None:
    store = SlowClaimStore()
    await store.enqueue([Task.new("quick") for _ in range(30)])
    executor = TaskExecutor(store, concurrency=3, prefetch=0)
    executor.register("quick", _return_none)
    await drain(store, executor)
    assert max(store.limits) == 3
    assert (await store.counts())[TaskStatus.SUCCEEDED] == 30


async def _start_blocked(store: MemoryStore, executor: TaskExecutor, quick: int) -> asyncio.Event:
    """Register a handler whose first ``quick`` calls return at once (so the buffer
    fills) and whose later calls block; returns an event set when one has blocked."""
    blocked = asyncio.Event()
    calls = 0

    async def handler(task: Task) -> None:
        nonlocal calls
        calls += 1
        if calls > quick:
            blocked.set()
            await asyncio.sleep(60)

    executor.register("job", handler)
    return blocked


async def test_stop_releases_buffered_tasks_with_their_attempt_given_back() -> None:
    store = SlowClaimStore()
    tasks = [Task.new("job", i) for i in range(40)]
    await store.enqueue(tasks)
    executor = TaskExecutor(store, concurrency=2, prefetch=6)
    blocked = await _start_blocked(store, executor, quick=10)
    run = asyncio.create_task(executor.run())
    await blocked.wait()
    await asyncio.sleep(0.1)  # the next claim fills the buffer
    await executor.stop(grace=0.05)
    stats = await asyncio.wait_for(run, 10)

    counts = await store.counts()
    assert stats.released > 2, "only the running tasks were released, not the buffered ones"
    assert counts[TaskStatus.RUNNING] == 0
    assert counts[TaskStatus.SUCCEEDED] == stats.succeeded == 10
    assert counts[TaskStatus.QUEUED] == 40 - 10
    queued = [t for t in await store.get_many([t.id for t in tasks]) if t.attempts == 0]
    assert len(queued) == 30  # released tasks kept their attempt; the rest never ran


async def test_heartbeats_keep_buffered_tasks_leased() -> None:
    store = SlowClaimStore()
    await store.enqueue([Task.new("job", i) for i in range(20)])
    executor = TaskExecutor(store, concurrency=1, prefetch=5, lease_s=1.2)
    blocked = await _start_blocked(store, executor, quick=5)
    run = asyncio.create_task(executor.run())
    await blocked.wait()
    # one slot: every other running (leased) task is waiting in the buffer
    assert (await store.counts())[TaskStatus.RUNNING] > 1, "nothing was buffered"
    await asyncio.sleep(1.8)  # past the first leases' expiry, within the extended ones
    assert await store.requeue_expired() == 0
    await executor.stop(grace=0.05)
    await asyncio.wait_for(run, 10)
    assert (await store.counts())[TaskStatus.RUNNING] == 0


class Recorder:
    def __init__(self) -> None:
        self.claimed = 0
        self.outcomes: list[TaskStatus] = []

    def on_claimed(self, tasks: Sequence[Task]) -> None:
        self.claimed += len(tasks)

    def on_outcome(self, task: Task, outcome: Outcome) -> None:
        self.outcomes.append(outcome.status)


async def test_metrics_hooks_see_every_claim_and_outcome() -> None:
    store = MemoryStore()
    await store.enqueue([Task.new("ok") for _ in range(5)] + [Task.new("bad", max_attempts=2)])
    recorder = Recorder()
    executor = TaskExecutor(store, metrics=recorder, retry=FAST_RETRY)
    executor.register("ok", _return_none)
    executor.register("bad", _raise_boom)
    await drain(store, executor)
    assert recorder.claimed == 7
    assert Counter(recorder.outcomes) == {
        TaskStatus.SUCCEEDED: 5,
        TaskStatus.QUEUED: 1,
        TaskStatus.DEAD: 1,
    }


BEHAVIOURS = st.sampled_from(["ok", "retryable", "fatal", "timeout"])


@settings(max_examples=40, deadline=None)
@given(
    plans=st.lists(st.lists(BEHAVIOURS, min_size=1, max_size=4), min_size=1, max_size=12),
    max_attempts=st.integers(min_value=1, max_value=4),
    priorities=st.lists(st.sampled_from(list(TaskPriority)), min_size=12, max_size=12),
)
def test_every_task_ends_in_exactly_one_terminal_state(
    plans: list[list[str]], max_attempts: int, priorities: list[TaskPriority]
) -> None:
    asyncio.run(_run_plans(plans, max_attempts, priorities))


async def _run_plans(
    plans: list[list[str]], max_attempts: int, priorities: list[TaskPriority]
) -> None:
    store = MemoryStore()
    tasks = [
        Task.new("plan", plan, max_attempts=max_attempts, priority=priorities[i])
        for i, plan in enumerate(plans)
    ]
    await store.enqueue(tasks)
    executions: Counter[str] = Counter()

    async def follow_plan(task: Task) -> str:
        executions[task.id] += 1
        plan = task.payload
        step = plan[min(task.attempts, len(plan)) - 1]
        if step == "retryable":
            raise Boom(step)
        if step == "fatal":
            raise Fatal(step)
        if step == "timeout":
            await asyncio.sleep(10)
        return step

    policy = RetryPolicy(base_delay=0.0, fatal=(Fatal,))
    executor = TaskExecutor(store, concurrency=4, timeout=0.01, retry=policy)
    executor.register("plan", follow_plan)
    await asyncio.wait_for(executor.run(until_idle=True), 60)

    final = await statuses(store, tasks)
    assert len(final) == len(tasks)
    for task in tasks:
        done = final[task.id]
        assert done.status.is_terminal
        assert 1 <= done.attempts <= max_attempts
        assert executions[task.id] == done.attempts
        expected = _expected_status(task.payload, max_attempts)
        assert (done.status, done.attempts) == expected
    counts = await store.counts()
    assert counts[TaskStatus.SUCCEEDED] + counts[TaskStatus.DEAD] == len(tasks)


def _expected_status(plan: list[str], max_attempts: int) -> tuple[TaskStatus, int]:
    for attempt in range(1, max_attempts + 1):
        step = plan[min(attempt, len(plan)) - 1]
        if step == "ok":
            return TaskStatus.SUCCEEDED, attempt
        if step == "fatal":
            return TaskStatus.DEAD, attempt
    return TaskStatus.DEAD, max_attempts


async def _return_none(task: Task) -> None:
    return None


async def _raise_boom(task: Task) -> None:
    raise Boom("no")
