"""The Coordinator contract, run against each real backend: etcd and Redis.

etcd runs as one throwaway member started once per session on free loopback
ports (tests/etcd_cluster.py); Redis is the shared server of
``TASKBENCH_TEST_REDIS_URL``. Each test gets its own key prefix.

No assertion is about elapsed time. The one comparison of clocks checks a
safety property: nobody wins before the stalled leader's own deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskbench.coordination import (
    BaseCoordinator,
    Coordinator,
    CoordinatorUnavailableError,
    Leadership,
    open_coordinator,
)
from taskbench.errors import ConfigError, CoordinatorError
from tests.backends import isolated_store_url
from tests.etcd_cluster import EtcdCluster, free_ports

TTL = 2.0
"""Short enough for tests that wait for an expiry, and above etcd's minimum lease."""

COORDINATOR_BACKENDS = ["etcd", "redis"]
OpenCoordinator = Callable[..., Awaitable[Coordinator]]


@pytest.fixture(scope="session")
def etcd_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), size=1).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=COORDINATOR_BACKENDS)
async def coordinator_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "etcd":
        cluster: EtcdCluster = request.getfixturevalue("etcd_member")
        yield f"{cluster.url}?prefix=/tbtest/{uuid.uuid4().hex[:12]}/"
    else:
        async with isolated_store_url("redis", tmp_path) as url:
            yield url


@pytest.fixture
async def open_one(coordinator_url: str) -> AsyncIterator[OpenCoordinator]:
    """Opens coordinators on this test's URL (ttl=2 s unless told); closes them at the end."""
    opened: list[Coordinator] = []

    async def open_coordinator_for_test(**options: Any) -> Coordinator:
        coordinator = open_coordinator(coordinator_url, **{"ttl": TTL, **options})
        await coordinator.open()
        opened.append(coordinator)
        return coordinator

    yield open_coordinator_for_test
    for coordinator in reversed(opened):
        await coordinator.close()


def stall(coordinator: Coordinator) -> None:
    """Simulate a paused process: its refresh task stops; nothing is resigned or closed."""
    assert isinstance(coordinator, BaseCoordinator)
    refresher = coordinator._refresher
    assert refresher is not None
    refresher.cancel()


def leaders(coordinators: list[Coordinator]) -> list[Leadership]:
    return [c.leadership for c in coordinators if c.leadership is not None]


# -- election -------------------------------------------------------------------------


async def test_one_leader_at_a_time_among_three_with_increasing_epochs(
    open_one: OpenCoordinator,
) -> None:
    group = [await open_one(worker_id=f"w{i}") for i in range(3)]
    campaigns = {asyncio.create_task(c.campaign()): c for c in group}
    won: list[Leadership] = []
    while campaigns:
        done, _ = await asyncio.wait(campaigns, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1, "two campaigners won at once"
        winner = campaigns.pop(done.pop())
        assert leaders(group) == [winner.leadership]
        won.append(await winner.campaign())  # already leading: returns the same leadership
        await winner.resign()
        assert winner.leadership is None
    assert sorted(w.leader_id for w in won) == ["w0", "w1", "w2"]
    epochs = [w.epoch for w in won]
    assert epochs == sorted(set(epochs)), f"epochs must strictly increase: {epochs}"


async def test_resign_hands_over_to_the_waiting_campaigner(open_one: OpenCoordinator) -> None:
    first, second = await open_one(worker_id="first"), await open_one(worker_id="second")
    held = await first.campaign()
    waiting = asyncio.create_task(second.campaign())
    await asyncio.sleep(0)
    assert not waiting.done()
    await first.resign()
    taken = await waiting
    assert taken.leader_id == "second"
    assert taken.epoch > held.epoch
    assert first.leadership is None
    assert second.leadership == taken


async def test_a_stalled_leader_fences_itself_before_anyone_replaces_it(
    open_one: OpenCoordinator,
) -> None:
    stalled, successor = await open_one(worker_id="stalled"), await open_one(worker_id="next")
    held = await stalled.campaign()
    stall(stalled)
    deadline = stalled.deadline
    assert deadline is not None
    assert stalled.leadership == held  # still within its own deadline
    taken = await successor.campaign()  # waits for the server to expire the stalled lease
    taken_at = time.monotonic()
    assert taken_at >= deadline, "the successor won while the stalled leader still trusted itself"
    assert stalled.leadership is None
    assert stalled.deadline is None
    assert taken.leader_id == "next"
    assert taken.epoch > held.epoch


async def test_a_cancelled_campaign_leaves_nothing_held(open_one: OpenCoordinator) -> None:
    leader, quitter, third = [await open_one(worker_id=name) for name in ("a", "b", "c")]
    await leader.campaign()
    quitting = asyncio.create_task(quitter.campaign())
    await asyncio.sleep(0.1)
    quitting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitting
    await leader.resign()
    taken = await third.campaign()
    assert taken.leader_id == "c"
    assert quitter.leadership is None


async def test_observe_sees_each_change(open_one: OpenCoordinator) -> None:
    watcher, candidate = await open_one(worker_id="watcher"), await open_one(worker_id="cand")
    changes = watcher.observe()
    try:
        assert await anext(changes) is None
        held = await candidate.campaign()
        assert await anext(changes) == held
        await candidate.resign()
        assert await anext(changes) is None
        again = await candidate.campaign()
        assert again.epoch > held.epoch
        assert await anext(changes) == again
    finally:
        await changes.aclose()


async def test_campaign_needs_an_open_coordinator(coordinator_url: str) -> None:
    coordinator = open_coordinator(coordinator_url, ttl=TTL)
    with pytest.raises(CoordinatorError, match="not open"):
        await coordinator.campaign()


# -- membership -----------------------------------------------------------------------


async def test_members_lists_joined_workers_and_drops_closed_and_stalled_ones(
    open_one: OpenCoordinator,
) -> None:
    steady, leaving, stalling = [await open_one(worker_id=n) for n in ("steady", "leaving", "st")]
    onlooker = await open_one(worker_id="onlooker")
    for worker in (steady, leaving, stalling):
        await worker.join()
    await steady.join()  # idempotent
    assert await onlooker.members() == ["leaving", "st", "steady"]
    await leaving.close()
    assert await onlooker.members() == ["st", "steady"]
    stall(stalling)
    while "st" in await onlooker.members():  # dropped once its TTL runs out
        await asyncio.sleep(0.1)
    assert await onlooker.members() == ["steady"]


async def test_a_member_stays_listed_while_it_refreshes(open_one: OpenCoordinator) -> None:
    member = await open_one(worker_id="m", ttl=1.5, refresh=0.3)
    await member.join()
    await asyncio.sleep(2.0)  # longer than the TTL: only refreshes keep it listed
    assert await member.members() == ["m"]


async def test_a_cancelled_campaign_ends_cancelled_and_leaves_the_key_free(
    open_one: OpenCoordinator,
) -> None:
    # The cancel lands while the waiting campaigner reacts to a resignation, at a spread of
    # moments: on Python 3.11, redis-py's asyncio.wait_for swallowed one such cancel in about
    # ten, and the campaign went on to win (a stopping worker that led forever).
    holder, waiter = await open_one(worker_id="holder"), await open_one(worker_id="waiter")
    outcomes: list[str] = []
    for round_ in range(60):
        await holder.campaign()
        waiting = asyncio.create_task(waiter.campaign())
        await asyncio.sleep(0.02)
        await holder.resign()
        await asyncio.sleep(0.0005 * round_)
        if not waiting.cancel():  # it had already won: not a cancellation
            await waiting
            await waiter.resign()
            continue
        await asyncio.wait({waiting}, timeout=5.0)
        outcomes.append("cancelled" if waiting.cancelled() else f"went on: {waiting!r}")
        assert waiter.leadership is None
    assert outcomes and set(outcomes) == {"cancelled"}, outcomes
    assert (await holder.campaign()).leader_id == "holder"


async def test_a_key_left_held_by_a_failed_release_expires_with_the_session(
    open_one: OpenCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A campaign cancelled after the server gave it the key must release it; if that
    # release fails, etcd's lease (refreshed by this process) would keep the key forever
    # and no one else could ever lead. Dropping the session bounds it to one TTL.
    stuck, other = await open_one(worker_id="stuck"), await open_one(worker_id="other")
    assert isinstance(stuck, BaseCoordinator)
    await stuck.campaign()

    async def unreachable() -> None:
        raise CoordinatorError("the release was lost on the way")

    monkeypatch.setattr(stuck, "_release", unreachable)
    await stuck._give_up_quietly()
    assert stuck.leadership is None
    async with asyncio.timeout(TTL * 3 + 5):
        assert (await other.campaign()).leader_id == "other"


async def test_a_leader_that_fenced_itself_takes_its_key_back_when_a_refresh_proves_it(
    open_one: OpenCoordinator,
) -> None:
    # A refresh delayed past the self-fencing deadline (a raft election, a slow endpoint)
    # but arriving while the session lives: the deposed leader's campaign must see that
    # the key it waits on is its own, or nobody leads until the process exits.
    leader = await open_one(worker_id="late", ttl=3.0, refresh=0.5, safety_margin=1.5)
    assert isinstance(leader, BaseCoordinator)
    held = await leader.campaign()
    stall(leader)
    async with asyncio.timeout(10):
        while leader.leadership is not None:
            await asyncio.sleep(0.02)
    again = asyncio.create_task(leader.campaign())
    await asyncio.sleep(0.1)
    assert not again.done()
    await leader._refresh_once()  # late, but within the server's TTL
    leader._refresher = asyncio.create_task(leader._keep_refreshing())
    async with asyncio.timeout(10):
        assert await again == held


# -- Redis epoch source ---------------------------------------------------------------


async def test_redis_takes_epochs_from_the_injected_source(tmp_path: Path) -> None:
    async with isolated_store_url("redis", tmp_path) as url:
        issued = iter([100, 50, 101, 200])

        async def from_the_store() -> int:
            return next(issued)

        first = open_coordinator(url, ttl=TTL, worker_id="a", epoch_source=from_the_store)
        second = open_coordinator(url, ttl=TTL, worker_id="b", epoch_source=from_the_store)
        async with first, second:
            assert (await first.campaign()).epoch == 100
            await first.resign()
            # 50 is below the highest epoch this election has seen: refused, the next is taken
            assert (await second.campaign()).epoch == 101


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["etcd://127.0.0.1:2379", "redis://127.0.0.1:6379/0"])
@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"ttl": 0}, "ttl"),
        ({"ttl": -1}, "ttl"),
        ({"ttl": 3, "refresh": 3}, "refresh"),
        ({"ttl": 3, "refresh": 5}, "refresh"),
        ({"ttl": 3, "refresh": 0}, "refresh"),
        ({"ttl": 3, "refresh": 1, "safety_margin": 2.5}, "safety_margin"),
        ({"ttl": float("nan")}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"ttl": "2"}, "ttl"),
        ({"ttl": True}, "ttl"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"election": ""}, "election"),
    ],
)
def test_bad_options_raise_config_error(
    scheme: str, options: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint):
        open_coordinator(scheme, **options)


@pytest.mark.parametrize("interval", [0, -0.1, float("inf"), float("nan")])
def test_a_bad_redis_poll_interval_raises_config_error(interval: float) -> None:
    with pytest.raises(ConfigError, match="poll_interval"):
        open_coordinator("redis://127.0.0.1:6379/0", poll_interval=interval)


def test_options_come_from_the_query_string() -> None:
    with pytest.raises(ConfigError, match="refresh"):
        open_coordinator("etcd://127.0.0.1:2379?ttl=2&refresh=2")
    with pytest.raises(ConfigError, match="unknown option"):
        open_coordinator("redis://127.0.0.1:6379/0?tll=2")


@pytest.mark.parametrize(
    "url",
    [
        "etcd://",
        "etcd://127.0.0.1:notaport",
        "etcd://127.0.0.1:99999",
        "etcd://127.0.0.1:2379,:2380",
        "etcd://onlyuser@127.0.0.1:2379",
        "etcd//127.0.0.1:2379",
        "zookeeper://127.0.0.1:2181",
    ],
)
def test_malformed_urls_raise_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        open_coordinator(url)


def unreachable_urls() -> list[str]:
    first, second = free_ports(2)
    return [
        f"etcd://root:s3cret-pw@127.0.0.1:{first},127.0.0.1:{second}?connect_timeout=1",
        f"redis://:s3cret-pw@127.0.0.1:{first}/0?connect_timeout=1",
    ]


@pytest.mark.parametrize("url", unreachable_urls(), ids=["etcd", "redis"])
async def test_an_unreachable_server_fails_fast_without_leaking_the_password(url: str) -> None:
    coordinator = open_coordinator(url)
    async with asyncio.timeout(15):  # a bound, so a hang fails instead of blocking the suite
        with pytest.raises(CoordinatorUnavailableError) as raised:
            await coordinator.open()
    assert "s3cret-pw" not in str(raised.value)
    assert "s3cret-pw" not in repr(coordinator)
    assert "***" in coordinator.url
