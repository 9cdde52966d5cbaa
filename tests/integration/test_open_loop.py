"""The open loop on SQLite, PostgreSQL and Redis: 3 s at 300 tasks/s, every task accounted for.

On a store that processes can share, the producer runs in a process of its
own with a client of its own (taskbench/bench/producer.py), so the executor
learns of each arrival through the store (LISTEN/NOTIFY, BLPOP, polling), as
a worker would from real clients; inline, it is a second client in this
process. Each test runs in its own schema, key prefix or file
(tests/backends.py). No time is asserted: only that every scheduled task ran
exactly once and that each measured task's queue wait was split in three.

The Redis store's wake-up tokens are checked directly: a claim leaves at
most one token per task still due, so the open loop's single-task claims
do not leave tokens behind that wake the executor for empty claims.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from taskbench.bench.load import LoadResult, OpenLoopConfig, open_loop
from taskbench.bench.results import merge_histograms
from taskbench.model import Task
from taskbench.stores import TaskStore, open_store
from tests.backends import isolated_store_url

RATE = 300
DURATION_S = 3.0
SPLIT = ("queue", "send_lag", "enqueue", "wake")


def _samples(result: LoadResult, name: str) -> int:
    return int(merge_histograms([result.histograms[name]]).get_total_count())


@pytest.mark.slow
@pytest.mark.parametrize("producer", ["process", "inline"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
async def test_every_scheduled_task_runs_once_through_the_store(
    backend: str, producer: str, tmp_path: Path
) -> None:
    clients: list[TaskStore] = []

    def opener(url: str) -> TaskStore:
        clients.append(open_store(url))
        return clients[-1]

    async with isolated_store_url(backend, tmp_path) as url:
        config = OpenLoopConfig.create(
            url, workload="noop", concurrency=20, rate=RATE, duration=DURATION_S, warmup="0.5s",
            producer=None if producer == "process" else producer,  # a process is the default
        )  # fmt: skip
        result = await open_loop(config, opener=opener)
    scheduled, measured = int(RATE * DURATION_S), int(RATE * (DURATION_S - 0.5))
    # the producer had a client of its own: in its process, or a second one here
    assert (result.producer, len(clients)) == (producer, 1 if producer == "process" else 2)
    outcome = (result.tasks, result.succeeded, result.dead, result.lost)
    assert outcome == (scheduled, scheduled, 0, 0)
    assert (result.duplicates, result.failed, result.measured) == (0, 0, measured)
    assert {name: _samples(result, name) for name in SPLIT} == dict.fromkeys(SPLIT, measured)
    assert result.queue_ms is not None and result.queue_ms.p50 > 0
    assert result.wake_ms is not None and result.wake_ms.p50 >= 0
    assert result.resources is not None
    assert (result.producer_cpu_s is not None) == (producer == "process")


async def _tokens(url: str) -> int:
    """How many wake-up tokens the Redis store at ``url`` (with its prefix) holds now."""
    from redis.asyncio import Redis

    from taskbench.stores.redis import RedisStore

    store = open_store(url)
    assert isinstance(store, RedisStore)
    client = Redis.from_url(url.partition("?")[0])
    try:
        return int(await client.llen(f"{store.prefix}wakeup"))
    finally:
        await client.aclose()


async def test_a_redis_claim_leaves_one_wake_token_per_task_still_due(tmp_path: Path) -> None:
    async with isolated_store_url("redis", tmp_path) as url, open_store(url) as store:
        await store.enqueue([Task.new("x") for _ in range(5)])
        assert await _tokens(url) == 5
        assert len(await store.claim("w", 3, lease_s=30)) == 3
        assert await _tokens(url) == 2  # the claimed tasks' tokens are spent
        await store.enqueue([Task.new("x", run_at=time.time() + 3600)])
        assert len(await store.claim("w", 10, lease_s=30)) == 2
        assert await _tokens(url) == 0  # the one queued task is not due: no token
        assert await store.claim("w", 10, lease_s=30) == []
