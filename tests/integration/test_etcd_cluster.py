"""EtcdCoordinator on a 3-member etcd cluster whose raft leader is killed with SIGKILL.

The coordinators are given every endpoint, the raft leader's first, so the
kill both forces a raft election and makes every client fail over to another
endpoint. Throughout, a sampler checks the safety property: never two
coordinators that believe they lead at the same moment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskbench.coordination import Coordinator, Leadership, open_coordinator
from tests.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.slow

TTL = 3.0
SAFETY_MARGIN = 0.3


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    started = EtcdCluster(tmp_path, size=3).start()
    yield started
    started.stop()


def leader_first_url(cluster: EtcdCluster) -> str:
    leader = cluster.leader()
    assert leader is not None
    ordered = [leader, *(m for m in cluster.members if m is not leader)]
    endpoints = ",".join(m.endpoint for m in ordered)
    return f"etcd://{endpoints}?connect_timeout=1&prefix=/integration/"


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
