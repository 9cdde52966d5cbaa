"""The open loop on PostgreSQL and Redis: 3 s at 300 tasks/s, every task accounted for.

On a server store the producer is a client of its own, so the executor
learns of each arrival through the server (LISTEN/NOTIFY, BLPOP), as a
worker in another process would. Each test runs in its own schema or key
prefix (tests/backends.py). No time is asserted: only that every scheduled
task ran exactly once and that each was timed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from taskbench.bench.load import OpenLoopConfig, open_loop
from taskbench.stores import TaskStore, open_store
from tests.backends import isolated_store_url

RATE = 300
DURATION_S = 3.0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres", "redis"])
async def test_every_scheduled_task_runs_once_through_the_server(
    backend: str, tmp_path: Path
) -> None:
    clients: list[TaskStore] = []

    def opener(url: str) -> TaskStore:
        clients.append(open_store(url))
        return clients[-1]

    async with isolated_store_url(backend, tmp_path) as url:
        config = OpenLoopConfig.create(
            url, workload="noop", concurrency=20, rate=RATE, duration=DURATION_S, warmup="0.5s"
        )
        result = await open_loop(config, opener=opener)
    scheduled = int(RATE * DURATION_S)
    assert len(clients) == 2  # the producer had a connection of its own
    assert (result.tasks, result.succeeded, result.dead, result.lost) == (
        scheduled,
        scheduled,
        0,
        0,
    )
    assert (result.duplicates, result.failed) == (0, 0)
    assert result.measured == scheduled - int(RATE * 0.5)
    assert result.queue_ms is not None and result.queue_ms.p50 > 0
    assert result.resources is not None
