"""The TaskStore contract, run against every backend's real server.

Times are passed explicitly (``now=``) so that lease expiry and scheduling
are tested without sleeping.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from taskbench.errors import ConfigError, InvalidTaskError
from taskbench.model import Lease, Outcome, Task, TaskPriority, TaskStatus
from taskbench.stores import Capability, TaskStore, open_store
from tests.contract.conftest import OpenStore

T0 = 1_700_000_000.0
LEASE = 30.0


def make(name: str = "job", payload: object = None, **kwargs: object) -> Task:
    return Task.new(name, payload, now=kwargs.pop("now", T0), **kwargs)  # type: ignore[arg-type]


async def claim_one(store: TaskStore, worker: str = "w1", now: float = T0) -> Task:
    claimed = await store.claim(worker, 1, lease_s=LEASE, now=now)
    assert len(claimed) == 1, claimed
    return claimed[0]


async def test_enqueue_then_get_round_trips_every_field(store: TaskStore) -> None:
    task = make(
        "naïve ✓ 名前",
        {"n": 1, "s": "x" * 1000, "nested": [1, {"a": None}]},
        priority=TaskPriority.HIGH,
        max_attempts=7,
        run_at=T0 + 0.125,
    )
    await store.enqueue([task])
    assert await store.get(task.id) == task
    assert await store.get("no-such-task") is None


async def test_lifecycle_claim_then_succeed(store: TaskStore) -> None:
    task = make(payload=[1, 2])
    await store.enqueue([task])
    running = await claim_one(store, "w1", T0 + 1)
    assert (running.id, running.status, running.attempts) == (task.id, TaskStatus.RUNNING, 1)
    assert (running.lease_owner, running.lease_expires_at) == ("w1", T0 + 1 + LEASE)
    assert running.started_at == T0 + 1
    assert running.payload == [1, 2]

    applied = await store.finish([Outcome.succeeded(running.lease, {"ok": True}, now=T0 + 2)])
    assert applied == 1
    done = await store.get(task.id)
    assert done is not None
    assert (done.status, done.result, done.finished_at) == (
        TaskStatus.SUCCEEDED,
        {"ok": True},
        T0 + 2,
    )
    assert done.lease_owner is None
    assert await store.claim("w1", 10, lease_s=LEASE, now=T0 + 3) == []


async def test_claim_order_is_priority_then_run_at_then_arrival(store: TaskStore) -> None:
    tasks = [
        make("low", priority="low", id="low"),
        make("normal-late", run_at=T0 + 0.5, id="normal-late"),
        make("normal-1", id="normal-1"),
        make("normal-2", id="normal-2"),
        make("critical", priority=TaskPriority.CRITICAL, id="critical"),
        make("high", priority=2, id="high"),
    ]
    await store.enqueue(tasks[:3])
    await store.enqueue(tasks[3:])
    order = [(await claim_one(store, now=T0 + 1)).id for _ in tasks]
    assert order == ["critical", "high", "normal-1", "normal-2", "normal-late", "low"]


async def test_batch_claim_takes_the_best_tasks_in_order(store: TaskStore) -> None:
    await store.enqueue([make(id=f"t{i:03}", priority=i % 4) for i in range(40)])
    first = await store.claim("w1", 15, lease_s=LEASE, now=T0)
    assert [t.priority for t in first] == sorted((t.priority for t in first), reverse=True)
    assert {t.priority for t in first} == {TaskPriority.CRITICAL, TaskPriority.HIGH}
    rest = await store.claim("w1", 100, lease_s=LEASE, now=T0)
    assert len(first) + len(rest) == 40
    assert {t.id for t in first}.isdisjoint(t.id for t in rest)


async def test_run_at_in_the_future_is_not_claimed_until_due(store: TaskStore) -> None:
    task = make(run_at=T0 + 60)
    await store.enqueue([task])
    assert await store.claim("w1", 5, lease_s=LEASE, now=T0 + 59.9) == []
    assert (await claim_one(store, now=T0 + 60)).id == task.id


async def test_expired_lease_is_requeued_and_the_old_holder_is_refused(store: TaskStore) -> None:
    task = make()
    await store.enqueue([task])
    first = await claim_one(store, "w1", T0)
    assert await store.requeue_expired(now=T0 + LEASE - 1) == 0
    assert await store.requeue_expired(now=T0 + LEASE + 1) == 1
    requeued = await store.get(task.id)
    assert requeued is not None
    assert (requeued.status, requeued.attempts) == (TaskStatus.QUEUED, 1)
    assert requeued.last_error is not None and "expired" in requeued.last_error

    second = await claim_one(store, "w2", T0 + LEASE + 2)
    assert (second.attempts, second.lease_owner) == (2, "w2")
    stale = Outcome.succeeded(first.lease, "late", now=T0 + LEASE + 3)
    assert await store.finish([stale]) == 0
    assert await store.finish([Outcome.succeeded(second.lease, "ok", now=T0 + LEASE + 4)]) == 1
    final = await store.get(task.id)
    assert final is not None and (final.status, final.result) == (TaskStatus.SUCCEEDED, "ok")


async def test_finish_is_refused_for_any_other_lease(store: TaskStore) -> None:
    task = make()
    await store.enqueue([task])
    running = await claim_one(store)
    wrong_owner = Lease(task_id=task.id, attempt=running.attempts, owner="intruder")
    wrong_attempt = Lease(task_id=task.id, attempt=running.attempts + 1, owner="w1")
    unknown = Lease(task_id="missing", attempt=1, owner="w1")
    outcomes = [
        Outcome.succeeded(lease, None, now=T0) for lease in (wrong_owner, wrong_attempt, unknown)
    ]
    assert await store.finish(outcomes) == 0
    assert await store.get(task.id) == running
    assert await store.finish([Outcome.succeeded(running.lease, None, now=T0 + 1)]) == 1
    assert await store.finish([Outcome.succeeded(running.lease, None, now=T0 + 2)]) == 0


async def test_retry_outcome_requeues_at_the_given_time(store: TaskStore) -> None:
    task = make(max_attempts=3)
    await store.enqueue([task])
    running = await claim_one(store)
    retry = Outcome.retry(running.lease, "boom", run_at=T0 + 10, now=T0 + 1)
    assert await store.finish([retry]) == 1
    queued = await store.get(task.id)
    assert queued is not None
    assert (queued.status, queued.attempts, queued.run_at) == (TaskStatus.QUEUED, 1, T0 + 10)
    assert queued.last_error == "boom"
    assert await store.claim("w1", 1, lease_s=LEASE, now=T0 + 9) == []
    assert (await claim_one(store, now=T0 + 10)).attempts == 2


async def test_dead_letters_are_listed_and_can_be_requeued(store: TaskStore) -> None:
    doomed, fine = make(id="doomed"), make(id="fine")
    await store.enqueue([doomed, fine])
    claimed = await store.claim("w1", 2, lease_s=LEASE, now=T0)
    by_id = {t.id: t for t in claimed}
    await store.finish(
        [
            Outcome.dead(by_id["doomed"].lease, "fatal: bad input", now=T0 + 1),
            Outcome.succeeded(by_id["fine"].lease, None, now=T0 + 1),
        ]
    )
    dead = await store.list_dead()
    assert [(t.id, t.status, t.last_error) for t in dead] == [
        ("doomed", TaskStatus.DEAD, "fatal: bad input")
    ]
    assert await store.requeue_dead(now=T0 + 5) == 1
    again = await store.get("doomed")
    assert again is not None
    assert (again.status, again.attempts, again.run_at) == (TaskStatus.QUEUED, 0, T0 + 5)
    assert await store.list_dead() == []


async def test_requeue_dead_by_id_touches_only_those(store: TaskStore) -> None:
    await store.enqueue([make(id="a", max_attempts=1), make(id="b", max_attempts=1)])
    for task in await store.claim("w1", 2, lease_s=LEASE, now=T0):
        await store.finish([Outcome.dead(task.lease, "x", now=T0)])
    assert await store.requeue_dead(["a", "missing"], now=T0) == 1
    assert [t.id for t in await store.list_dead()] == ["b"]


async def test_expired_lease_after_the_last_attempt_goes_to_the_dead_letters(
    store: TaskStore,
) -> None:
    task = make(max_attempts=1)
    await store.enqueue([task])
    await claim_one(store)
    assert await store.requeue_expired(now=T0 + LEASE + 1) == 1
    dead = await store.get(task.id)
    assert dead is not None and dead.status is TaskStatus.DEAD
    assert [t.id for t in await store.list_dead()] == [task.id]


async def test_extend_keeps_a_lease_alive(store: TaskStore) -> None:
    task = make()
    await store.enqueue([task])
    running = await claim_one(store)
    stranger = Lease(task_id=task.id, attempt=1, owner="other")
    assert await store.extend([running.lease, stranger], lease_s=LEASE, now=T0 + 20) == 1
    assert await store.requeue_expired(now=T0 + LEASE + 1) == 0
    assert await store.requeue_expired(now=T0 + 20 + LEASE + 1) == 1


async def test_release_gives_the_attempt_back(store: TaskStore) -> None:
    task = make(max_attempts=1)
    await store.enqueue([task])
    running = await claim_one(store)
    assert await store.release([running.lease]) == 1
    released = await store.get(task.id)
    assert released is not None
    assert (released.status, released.attempts, released.lease_owner) == (
        TaskStatus.QUEUED,
        0,
        None,
    )
    assert await store.release([running.lease]) == 0
    assert (await claim_one(store, "w2")).attempts == 1


async def test_counts_cover_every_status(store: TaskStore) -> None:
    assert await store.counts() == dict.fromkeys(TaskStatus, 0)
    await store.enqueue([make(id=f"t{i}", max_attempts=1) for i in range(5)])
    a, b, _still_running = await store.claim("w1", 3, lease_s=LEASE, now=T0)
    await store.finish(
        [Outcome.succeeded(a.lease, None, now=T0), Outcome.dead(b.lease, "x", now=T0)]
    )
    assert await store.counts() == {
        TaskStatus.QUEUED: 2,
        TaskStatus.RUNNING: 1,
        TaskStatus.SUCCEEDED: 1,
        TaskStatus.DEAD: 1,
    }


async def test_purge_by_status_and_everything(store: TaskStore) -> None:
    await store.enqueue([make(id=f"t{i}") for i in range(4)])
    done = await claim_one(store)
    await store.finish([Outcome.succeeded(done.lease, None, now=T0)])
    assert await store.purge([TaskStatus.SUCCEEDED]) == 1
    assert (await store.counts())[TaskStatus.QUEUED] == 3
    assert await store.purge() == 3
    assert await store.counts() == dict.fromkeys(TaskStatus, 0)
    again = make(id="t0")
    await store.enqueue([again])
    assert (await claim_one(store)).id == "t0"


async def test_a_duplicate_id_rejects_the_whole_batch(store: TaskStore) -> None:
    await store.enqueue([make(id="same", payload="first")])
    with pytest.raises(InvalidTaskError):
        await store.enqueue([make(id="fresh"), make(id="same", payload="second")])
    assert await store.get("fresh") is None
    kept = await store.get("same")
    assert kept is not None and kept.payload == "first"
    with pytest.raises(InvalidTaskError):
        await store.enqueue([make(id="twice"), make(id="twice")])
    assert await store.get("twice") is None


async def test_hostile_names_and_payloads_are_stored_verbatim(store: TaskStore) -> None:
    hostile = [
        "x'); DROP TABLE taskbench_tasks; --",
        '" OR 1=1; --',
        "redis.call('FLUSHALL')",
        "]]; return 1; --[[",
        "%s %d {0} $1 ?",
    ]
    tasks = [make(name, {"sql": name, "lua": name}) for name in hostile]
    await store.enqueue(tasks)
    for task in tasks:
        assert await store.get(task.id) == task
    assert (await store.counts())[TaskStatus.QUEUED] == len(hostile)


async def test_invalid_task_is_refused_and_stored_tasks_untouched(store: TaskStore) -> None:
    kept = make(id="kept")
    await store.enqueue([kept])
    from dataclasses import replace

    bad = [
        replace(make(), name=""),
        replace(make(), max_attempts=0),
        replace(make(), payload_json="{not json"),
        replace(make(), status=TaskStatus.RUNNING),
    ]
    for task in bad:
        with pytest.raises(InvalidTaskError):
            await store.enqueue([make(id="innocent"), task])
    assert await store.get("innocent") is None
    assert await store.get("kept") == kept


async def test_bad_arguments_raise_config_error(store: TaskStore) -> None:
    with pytest.raises(ConfigError, match="limit"):
        await store.claim("w1", 0, lease_s=LEASE)
    with pytest.raises(ConfigError, match="lease_s"):
        await store.claim("w1", 1, lease_s=-1)
    with pytest.raises(ConfigError, match="worker"):
        await store.claim("", 1, lease_s=LEASE)


async def test_ids_and_owners_are_case_sensitive(store: TaskStore) -> None:
    await store.enqueue([make(id="abc", payload="lower"), make(id="ABC", payload="upper")])
    upper = await store.get("ABC")
    assert upper is not None and upper.payload == "upper"
    claimed = await store.claim("w1", 2, lease_s=LEASE, now=T0)
    impostors = [Lease(task_id=t.id, attempt=t.attempts, owner="W1") for t in claimed]
    assert await store.finish([Outcome.succeeded(lease, None, now=T0) for lease in impostors]) == 0


async def test_get_many_returns_the_existing_ones(store: TaskStore) -> None:
    tasks = [make(id=f"t{i}") for i in range(3)]
    await store.enqueue(tasks)
    found = await store.get_many(["t2", "missing", "t0"])
    assert sorted(t.id for t in found) == ["t0", "t2"]
    assert await store.get_many([]) == []


async def test_concurrent_claimers_never_share_a_task(open_client: OpenStore) -> None:
    stores = [await open_client() for _ in range(4)]
    await stores[0].enqueue([make(id=f"t{i:04}") for i in range(400)])

    async def drain(worker: str, store: TaskStore) -> list[str]:
        ids: list[str] = []
        while batch := await store.claim(worker, 7, lease_s=LEASE, now=T0):
            ids.extend(t.id for t in batch)
            await store.finish([Outcome.succeeded(t.lease, None, now=T0) for t in batch])
        return ids

    results = await asyncio.gather(
        *(drain(f"w{i}-{j}", s) for i, s in enumerate(stores) for j in range(3))
    )
    claimed = [task_id for ids in results for task_id in ids]
    assert len(claimed) == 400
    assert len(set(claimed)) == 400
    assert (await stores[0].counts())[TaskStatus.SUCCEEDED] == 400


async def test_wait_for_work_wakes_when_a_task_arrives(open_client: OpenStore) -> None:
    waiter, producer = await open_client(), await open_client()
    waiting = asyncio.create_task(waiter.wait_for_work(30.0))
    await asyncio.sleep(0.05)
    await producer.enqueue([make()])
    await asyncio.wait_for(waiting, 10.0)
    assert await waiter.claim("w1", 1, lease_s=LEASE) != []


async def test_a_reopened_store_has_its_tasks_exactly_when_it_is_persistent(
    store_url: str, store: TaskStore
) -> None:
    task = make()
    await store.enqueue([task])
    await store.close()
    reopened = open_store(store_url)
    async with reopened:
        expected = task if Capability.PERSISTENT in store.capabilities else None
        assert await reopened.get(task.id) == expected


async def test_url_never_shows_a_password(store_url: str, store: TaskStore) -> None:
    password = urlsplit(store_url).password
    if password:
        assert password not in store.url
        assert ":***@" in store.url
    else:
        assert store.url == store_url.split("?", 1)[0]
