"""A 3-member etcd cluster whose raft leader is killed with SIGKILL.

The coordinators are given every endpoint, the raft leader's first, so the
kill both forces a raft election and makes every client fail over to another
endpoint. Two levels are tested:

* coordinators in this process: a sampler checks the safety property, never
  two coordinators that believe they lead at the same moment;
* ``taskbench worker`` processes (DistributedExecutors) running tasks on a
  PostgreSQL schema of their own: every task succeeds exactly once in the
  store, the workers carry on (they execute and run duties after the kill),
  and their timelines show no two epochs acting at once and no stale write
  accepted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from taskbench.bench.drain import enqueue_all
from taskbench.bench.workloads import parse_workload
from taskbench.cluster.failover import wait_until_holding
from taskbench.cluster.local import account, local_cluster, wait_until_drained
from taskbench.cluster.options import WorkerOptions
from taskbench.coordination import Coordinator, Leadership, open_coordinator
from taskbench.distributed import (
    EventKind,
    LeadershipEvent,
    acting_spans,
    overlapping_epochs,
    stale_writes_accepted,
)
from taskbench.model import TaskStatus
from taskbench.stores import TaskStore, open_store
from tests.backends import isolated_store_url
from tests.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.slow

TTL = 3.0
SAFETY_MARGIN = 0.3


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    started = EtcdCluster(tmp_path, size=3).start()
    yield started
    started.stop()


def leader_first_url(cluster: EtcdCluster, prefix: str = "/integration/") -> str:
    leader = cluster.leader()
    assert leader is not None
    ordered = [leader, *(m for m in cluster.members if m is not leader)]
    endpoints = ",".join(m.endpoint for m in ordered)
    return f"etcd://{endpoints}?connect_timeout=1&prefix={prefix}"


def holders(group: list[Coordinator]) -> list[Leadership]:
    return [c.leadership for c in group if c.leadership is not None]


async def sample_holders(group: list[Coordinator], overlaps: list[list[Leadership]]) -> None:
    while True:
        held = holders(group)
        if len(held) > 1:
            overlaps.append(held)
        await asyncio.sleep(0.005)


def proven_after(coordinator: Coordinator, instant: float) -> bool:
    """True once ``coordinator`` leads on a lease refresh sent after ``instant``."""
    deadline = coordinator.deadline
    return deadline is not None and deadline - (TTL - SAFETY_MARGIN) > instant


async def test_leadership_survives_killing_the_raft_leader(cluster: EtcdCluster) -> None:
    url = leader_first_url(cluster)
    group = [
        open_coordinator(url, ttl=TTL, safety_margin=SAFETY_MARGIN, worker_id=f"w{i}")
        for i in range(3)
    ]
    for coordinator in group:
        await coordinator.open()
    overlaps: list[list[Leadership]] = []
    sampler = asyncio.create_task(sample_holders(group, overlaps))
    campaigns = [asyncio.create_task(c.campaign()) for c in group]
    try:
        done, _ = await asyncio.wait(campaigns, return_when=asyncio.FIRST_COMPLETED)
        first = done.pop().result()

        victim = cluster.leader()
        assert victim is not None
        victim.kill()
        killed_at = time.monotonic()

        async with asyncio.timeout(60):
            while not any(proven_after(c, killed_at) for c in group):
                await asyncio.sleep(0.05)
        (after,) = holders(group)
        assert after.epoch >= first.epoch
        if after.leader_id != first.leader_id:
            assert after.epoch > first.epoch
        assert overlaps == [], f"two leaders at once: {overlaps[:3]}"
    finally:
        sampler.cancel()
        for task in campaigns:
            task.cancel()
        await asyncio.gather(sampler, *campaigns, return_exceptions=True)
        for coordinator in group:
            await coordinator.close()


# -- worker processes on the cluster ---------------------------------------------------

WAIT_S = 30.0
"""How long a step may take before the test gives up, naming the step."""
WAVE = 90
"""Tasks per wave: one wave is running when the raft leader dies, one is enqueued after."""


@pytest.fixture
async def store_url(tmp_path: Path) -> AsyncIterator[str]:
    async with isolated_store_url("postgres", tmp_path) as url:
        yield url


async def enqueue_wave(store: TaskStore, options: WorkerOptions) -> list[str]:
    ids, _ = await enqueue_all(store, parse_workload(options.workload), WAVE)
    return ids


def requeued(events: list[LeadershipEvent]) -> int:
    return sum(e.requeued_abandoned + e.requeued_expired for e in events)


async def test_workers_carry_on_when_the_raft_leader_is_killed(
    cluster: EtcdCluster, store_url: str, tmp_path: Path
) -> None:
    url = leader_first_url(cluster, prefix=f"/tbtest/{uuid.uuid4().hex[:12]}/")
    options = WorkerOptions.create(
        store=store_url,
        coordinator=url,
        concurrency=5,
        workload="sleep:200",
        ttl=TTL,
        duty_period=0.25,
        connect_timeout=1.0,
    )
    async with open_store(store_url) as store:
        records = tmp_path / "workers"
        records.mkdir()
        async with local_cluster(options, 3, records) as workers:
            first = await enqueue_wave(store, options)
            leader = await workers.wait_for_acting_leader(WAIT_S)
            await wait_until_holding(store, first, leader.leader_id, WAIT_S)
            victim = cluster.leader()
            assert victim is not None
            victim.kill()
            killed_at = time.time()
            second = await enqueue_wave(store, options)  # only the survivors can take these
            await wait_until_drained(store, WAIT_S)
            carried_on = await workers.wait_for_event(
                lambda e: e.kind is EventKind.DUTIES and e.at > killed_at + TTL,
                timeout=WAIT_S,
                what="a duty round more than a TTL after the kill",
            )
            await workers.wait_for_members(WAIT_S)  # every worker is (again) a member
            workers.check_alive()
            events = workers.events()  # judged before the workers are stopped
            alive = workers.live_ids()
        accounting = await account(store, first + second, workers.executions())
        stored = await store.get_many(first + second)

    assert alive == set(workers.workers), "no worker exited"
    assert (accounting.succeeded, accounting.lost, accounting.dead) == (2 * WAVE, 0, 0)
    assert {t.status for t in stored} == {TaskStatus.SUCCEEDED}
    assert accounting.duplicates <= requeued(events), "an extra execution without a requeue"
    spans = acting_spans(events)
    assert leader.epoch in spans and carried_on.epoch in spans
    assert overlapping_epochs(events) == [], f"two epochs acting at once: {spans}"
    assert stale_writes_accepted(events) == 0
