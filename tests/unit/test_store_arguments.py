"""The shared argument checks of BaseStore (issue 7, hostile input), on the memory store.

Every backend inherits these checks, so they run here once, in memory; the
hostile-input campaign and its regression tests run them on every real server.
Each refused call must raise ConfigError (a TaskbenchError) naming what was
wrong, and leave the stored tasks as they were.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from taskbench.errors import ConfigError
from taskbench.model import MAX_TIME, Lease, Outcome, Task, TaskStatus
from taskbench.stores import TaskStore, open_store
from taskbench.stores.base import MAX_WAIT_S, wait_timeout


@pytest.fixture
async def store() -> AsyncIterator[TaskStore]:
    async with open_store("memory://") as opened:
        yield opened


async def _claimed(store: TaskStore) -> Task:
    await store.enqueue([Task.new("job", id="bait", run_at=100.0, now=100.0)])
    (task,) = await store.claim("w", 1, lease_s=100, now=200.0)
    return task


def _calls(store: TaskStore, bait: Task) -> dict[str, Callable[[], Awaitable[Any]]]:
    """A refused call per check, keyed by the words its message must hold."""
    lease = bait.lease
    s: Any = store  # the calls below break the annotations on purpose
    return {
        "limit must be an int": lambda: s.claim("w", 2.5, lease_s=1),
        "limit must be from 1": lambda: s.claim("w", 10**20, lease_s=1),
        "lease_s must be a positive number": lambda: s.claim("w", 1, lease_s=math.inf),
        "now must be a finite number": lambda: s.claim("w", 1, lease_s=1, now=math.nan),
        "now + lease_s must be": lambda: s.claim("w", 1, lease_s=MAX_TIME, now=MAX_TIME),
        "worker must be": lambda: s.claim("w\udc80", 1, lease_s=1),
        "lease's attempt": lambda: s.release([Lease(task_id="bait", attempt=2**63, owner="w")]),
        "lease's task_id and owner": lambda: s.extend(
            [Lease(task_id=0, attempt=1, owner="w")],  # type: ignore[arg-type]
            lease_s=1,
        ),
        "finished_at": lambda: s.finish([Outcome.succeeded(lease, None, now=math.inf)]),
        "run_at": lambda: s.finish([Outcome.retry(lease, "e", run_at=-(10**400), now=1.0)]),
        "error must be UTF-8": lambda: s.finish(
            [Outcome(lease=lease, status=TaskStatus.DEAD, finished_at=1.0, error="\ud800")]
        ),
        "cannot be": lambda: s.finish(
            [Outcome(lease=lease, status=TaskStatus.RUNNING, finished_at=1.0)]
        ),
        "ids must be a list": lambda: s.get_many("bait"),
        "a task id in ids": lambda: s.get_many([0]),
        "a task id in ids must": lambda: s.requeue_dead([...]),
        "unknown status 'QUEUED'": lambda: s.purge(["QUEUED"]),
        "unknown status 3": lambda: s.purge([3]),
        "statuses must be a collection": lambda: s.purge("queued"),
        "epoch must be an int": lambda: s.requeue_expired(epoch=10**5_000),
        "timeout must be a number": lambda: s.wait_for_work(math.nan),
    }


async def test_each_bad_argument_is_a_config_error_that_changes_nothing(
    store: TaskStore,
) -> None:
    bait = await _claimed(store)
    for words, call in _calls(store, bait).items():
        with pytest.raises(ConfigError, match=words.replace("+", r"\+")):
            await call()
        assert await store.get("bait") == bait, words


async def test_statuses_may_be_given_as_members_or_their_values(store: TaskStore) -> None:
    await store.enqueue([Task.new("job"), Task.new("job")])
    assert await store.purge(["queued"]) == 1 + 1  # type: ignore[list-item]
    assert await store.purge([TaskStatus.QUEUED]) == 0


async def test_a_wait_timeout_is_cut_to_the_range_it_can_wait(store: TaskStore) -> None:
    assert [wait_timeout(t) for t in (-(10**400), -1, 0, 0.5)] == [0.0, 0.0, 0.0, 0.5]
    assert wait_timeout(10**400) == wait_timeout(math.inf) == MAX_WAIT_S
    await store.wait_for_work(-(10**400))  # returns at once


async def test_a_claim_with_an_earlier_now_takes_only_what_is_due_then(
    store: TaskStore,
) -> None:
    """The memory store's heaps: an earlier claim at a later now promoted every task."""
    await store.enqueue([Task.new("job", id=f"t{i}", run_at=100.0 * i, now=0.0) for i in (1, 2, 3)])
    assert [t.id for t in await store.claim("w", 1, lease_s=10, now=400.0)] == ["t1"]
    assert await store.claim("w", 5, lease_s=10, now=150.0) == []
    assert [t.id for t in await store.claim("w", 5, lease_s=10, now=250.0)] == ["t2"]
    assert [t.id for t in await store.claim("w", 5, lease_s=10, now=400.0)] == ["t3"]
