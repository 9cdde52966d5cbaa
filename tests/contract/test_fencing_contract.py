"""Fencing, run against every store backend: a deposed leader's writes are refused.

A leader stamps its requeues with an epoch; the store refuses an epoch older
than the newest it has seen (StaleEpochError, nothing changed), and
``issue_epoch`` hands out epochs above every one issued or seen. The last test
runs fenced writes from several OS processes on one SQLite file.

Times are passed explicitly (``now=``), as in the store contract suite.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from taskbench.errors import ConfigError, StaleEpochError
from taskbench.model import Task, TaskStatus
from taskbench.stores import TaskStore, open_store
from taskbench.stores.base import MAX_EPOCH
from tests.contract.conftest import OpenStore

T0 = 1_700_000_000.0
LEASE = 30.0
EXPIRED_AT = T0 + LEASE + 1
"""A time at which every lease taken at T0 has expired."""
EXTERNAL_EPOCH = 10**9
"""An epoch the store did not issue, as an etcd create revision."""


def make(task_id: str, **kwargs: Any) -> Task:
    return Task.new("job", None, now=T0, id=task_id, **kwargs)


async def run_by(store: TaskStore, owners: dict[str, str], **kwargs: Any) -> dict[str, Task]:
    """Enqueue one task per id and let its owner claim it at T0; returns them running."""
    running = {}
    for task_id, owner in owners.items():
        await store.enqueue([make(task_id, **kwargs)])
        [running[task_id]] = await store.claim(owner, 1, lease_s=LEASE, now=T0)
    return running


async def requeue_expired(store: TaskStore, epoch: int | None) -> int:
    return await store.requeue_expired(now=EXPIRED_AT, epoch=epoch)


async def requeue_abandoned(store: TaskStore, epoch: int | None) -> int:
    return await store.requeue_abandoned(["someone-else"], epoch=epoch, now=T0 + 1)


FENCED_WRITES = [requeue_expired, requeue_abandoned]


# -- issuing epochs -------------------------------------------------------------------------


async def test_issued_epochs_strictly_increase(store: TaskStore) -> None:
    epochs = [await store.issue_epoch() for _ in range(5)]
    assert all(type(epoch) is int for epoch in epochs)
    assert epochs == sorted(set(epochs)), epochs
    assert epochs[0] >= 1


async def test_issued_epochs_increase_across_clients(open_client: OpenStore) -> None:
    first, second = await open_client(), await open_client()
    epochs = [await client.issue_epoch() for _ in range(4) for client in (first, second)]
    assert epochs == sorted(set(epochs)), epochs


async def test_concurrent_issues_are_distinct_and_increase_per_client(
    open_client: OpenStore,
) -> None:
    clients = [await open_client(), await open_client()]
    at_once = await asyncio.gather(*(client.issue_epoch() for client in clients * 10))
    assert len(set(at_once)) == 20, sorted(at_once)

    async def in_turn(client: TaskStore) -> list[int]:
        return [await client.issue_epoch() for _ in range(10)]

    per_client = await asyncio.gather(*(in_turn(client) for client in clients))
    assert all(epochs == sorted(set(epochs)) for epochs in per_client), per_client
    issued = [epoch for epochs in per_client for epoch in epochs]
    assert len(set(issued)) == 20
    assert min(issued) > max(at_once)


async def test_an_issued_epoch_is_above_every_epoch_seen(store: TaskStore) -> None:
    await store.issue_epoch()
    await store.requeue_expired(now=T0, epoch=EXTERNAL_EPOCH)
    assert await store.issue_epoch() == EXTERNAL_EPOCH + 1


# -- the fence ------------------------------------------------------------------------------


@pytest.mark.parametrize("write", FENCED_WRITES)
async def test_the_current_or_a_newer_epoch_applies(store: TaskStore, write: Any) -> None:
    epoch = await store.issue_epoch()
    await run_by(store, {"a": "w1"})
    assert await write(store, epoch) == 1
    await run_by(store, {"b": "w1"})
    assert await write(store, epoch) == 1, "the same epoch again is not stale"
    await run_by(store, {"c": "w1"})
    assert await write(store, epoch + 1) == 1
    tasks = await store.get_many(["a", "b", "c"])
    assert {task.status for task in tasks} == {TaskStatus.QUEUED}


@pytest.mark.parametrize("write", FENCED_WRITES)
async def test_an_older_epoch_is_refused_and_changes_nothing(store: TaskStore, write: Any) -> None:
    old, new = await store.issue_epoch(), await store.issue_epoch()
    assert await write(store, new) == 0
    before = await run_by(store, {"a": "w1", "b": "w2"})

    with pytest.raises(StaleEpochError) as refused:
        await write(store, old)

    assert str(old) in str(refused.value) and str(new) in str(refused.value)
    assert {task.id: task for task in await store.get_many(["a", "b"])} == before
    assert await write(store, new) == 2, "the refusal did not move the fence"


async def test_the_fence_is_one_per_store_shared_by_its_clients(open_client: OpenStore) -> None:
    leader, deposed = await open_client(), await open_client()
    old = await deposed.issue_epoch()
    new = await leader.issue_epoch()
    await leader.requeue_expired(now=T0, epoch=new)
    await run_by(deposed, {"a": "w1"})
    with pytest.raises(StaleEpochError):
        await deposed.requeue_abandoned([], epoch=old, now=T0 + 1)
    task = await deposed.get("a")
    assert task is not None and task.status is TaskStatus.RUNNING


async def test_a_newer_external_epoch_moves_the_fence(store: TaskStore) -> None:
    issued = await store.issue_epoch()
    await run_by(store, {"a": "w1"})
    assert await store.requeue_expired(now=EXPIRED_AT, epoch=EXTERNAL_EPOCH) == 1
    with pytest.raises(StaleEpochError):
        await store.requeue_expired(now=EXPIRED_AT, epoch=issued)
    with pytest.raises(StaleEpochError):
        await store.requeue_expired(now=EXPIRED_AT, epoch=EXTERNAL_EPOCH - 1)
    assert await store.requeue_expired(now=EXPIRED_AT, epoch=EXTERNAL_EPOCH) == 0
    assert await store.requeue_expired(now=EXPIRED_AT, epoch=MAX_EPOCH) == 0


async def test_concurrent_fenced_writes_leave_the_fence_at_the_newest(
    open_client: OpenStore,
) -> None:
    clients = [await open_client(), await open_client()]
    writes = [clients[epoch % 2].requeue_expired(now=T0, epoch=epoch) for epoch in range(40, 0, -1)]
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    assert all(o == 0 or isinstance(o, StaleEpochError) for o in outcomes), outcomes
    with pytest.raises(StaleEpochError):
        await clients[1].requeue_expired(now=T0, epoch=39)
    assert await clients[0].requeue_expired(now=T0, epoch=40) == 0


async def test_without_an_epoch_writes_are_unfenced(store: TaskStore) -> None:
    await store.requeue_expired(now=T0, epoch=EXTERNAL_EPOCH)
    await run_by(store, {"a": "w1", "b": "w2"})
    assert await store.requeue_expired(now=EXPIRED_AT) == 2
    await run_by(store, {"c": "w3"})
    assert await store.requeue_abandoned([], now=T0 + 1) == 1
    with pytest.raises(StaleEpochError):
        await store.requeue_expired(now=T0, epoch=EXTERNAL_EPOCH - 1)


# -- requeue_abandoned ----------------------------------------------------------------------


async def test_requeue_abandoned_requeues_only_the_dead_workers_tasks(store: TaskStore) -> None:
    await run_by(store, {"kept": "alive", "lost-1": "dead-1", "lost-2": "dead-2"})
    await store.enqueue([make("waiting")])

    assert await store.requeue_abandoned(["alive", "spare"], now=T0 + 5) == 2

    tasks = {task.id: task for task in await store.get_many(["kept", "lost-1", "lost-2"])}
    assert (tasks["kept"].status, tasks["kept"].lease_owner) == (TaskStatus.RUNNING, "alive")
    lost = tasks["lost-1"]
    assert (lost.status, lost.attempts, lost.run_at) == (TaskStatus.QUEUED, 1, T0 + 5)
    assert (lost.lease_owner, lost.lease_expires_at, lost.finished_at) == (None, None, None)
    assert lost.last_error == "lease of attempt 1 held by dead-1 abandoned (worker not live)"
    assert tasks["lost-2"].last_error is not None and "dead-2" in tasks["lost-2"].last_error
    claimed = await store.claim("alive", 10, lease_s=LEASE, now=T0 + 5)
    assert sorted(task.id for task in claimed) == ["lost-1", "lost-2", "waiting"]


async def test_requeue_abandoned_dead_letters_after_the_last_attempt(store: TaskStore) -> None:
    await run_by(store, {"last-try-1": "dead", "last-try-2": "dead"}, max_attempts=1)
    await store.enqueue([make("retried", max_attempts=2)])
    await store.claim("dead", 1, lease_s=LEASE, now=T0)

    assert await store.requeue_abandoned([], now=T0 + 5) == 3

    counts = await store.counts()
    assert (counts[TaskStatus.DEAD], counts[TaskStatus.QUEUED]) == (2, 1)
    dead = await store.list_dead()
    assert sorted(task.id for task in dead) == ["last-try-1", "last-try-2"]
    assert all(t.finished_at == T0 + 5 and t.lease_owner is None for t in dead)
    assert all(t.last_error and "abandoned" in t.last_error for t in dead)


async def test_requeue_abandoned_with_no_running_task_changes_nothing(store: TaskStore) -> None:
    await store.enqueue([make("waiting")])
    assert await store.requeue_abandoned([], now=T0) == 0
    task = await store.get("waiting")
    assert task is not None and task == make("waiting")


# -- bad input ------------------------------------------------------------------------------

BAD_EPOCHS = ["1", 1.0, True, -1, MAX_EPOCH + 1, [1]]
BAD_LIVE_WORKERS = ["w1", None, [1], [""], 42]


async def test_a_bad_epoch_is_a_config_error(store: TaskStore) -> None:
    before = await run_by(store, {"a": "w1"})
    for write in FENCED_WRITES:
        for epoch in BAD_EPOCHS:
            with pytest.raises(ConfigError, match="epoch"):
                await write(store, epoch)
    assert await store.get("a") == before["a"]
    assert await requeue_expired(store, 0) == 1, "a bad epoch moved the fence"


async def test_bad_live_workers_are_a_config_error(store: TaskStore) -> None:
    before = await run_by(store, {"a": "w1"})
    for live in BAD_LIVE_WORKERS:
        with pytest.raises(ConfigError, match="worker"):
            await store.requeue_abandoned(live, now=T0 + 1)
    assert await store.get("a") == before["a"]


# -- several processes on one SQLite file ---------------------------------------------------

PROCESSES = 4
ROUNDS = 120
HOLD_ROUNDS = 3
"""A process takes a new epoch every HOLD_ROUNDS rounds and writes with it meanwhile."""


@dataclass
class FencingLog:
    """What one process saw: every write's epoch, and whether the store applied it."""

    applied: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    known_stale: int = 0
    """Writes whose epoch was, before they began, older than one some process had applied."""
    stale_applied: list[tuple[int, int]] = field(default_factory=list)
    """(epoch, newest applied before the write began) of every stale write that applied."""


async def _fenced_write(
    store: TaskStore, epoch: int, newest: Synchronized[int], log: FencingLog
) -> None:
    known = newest.value
    log.known_stale += int(epoch < known)
    try:
        await store.requeue_abandoned(["nobody"], epoch=epoch)
    except StaleEpochError:
        log.refused.append(epoch)
        return
    log.applied.append(epoch)
    if epoch < known:
        log.stale_applied.append((epoch, known))
    with newest.get_lock():
        newest.value = max(newest.value, epoch)


async def _lead_and_fall(url: str, start: Barrier, newest: Synchronized[int]) -> FencingLog:
    """Each round: write with the epoch held (new every HOLD_ROUNDS rounds, maybe
    superseded since), then with the one below it (stale if the first applied), then
    with the first epoch this process had (stale after any newer write)."""
    log = FencingLog()
    async with open_store(url) as store:
        await asyncio.to_thread(start.wait, 60)
        first = held = await store.issue_epoch()
        for round_ in range(ROUNDS):
            if round_ % HOLD_ROUNDS == 0:
                held = await store.issue_epoch()
            for epoch in (held, held - 1, first):
                await _fenced_write(store, epoch, newest, log)
    return log


def lead_and_fall_in_a_process(
    url: str, start: Barrier, newest: Synchronized[int], results: Any
) -> None:
    """The child process: its FencingLog goes back through ``results``."""
    results.put(asyncio.run(_lead_and_fall(url, start, newest)))


def _run_processes(url: str) -> list[FencingLog]:
    context = multiprocessing.get_context("spawn")
    start, newest, results = context.Barrier(PROCESSES), context.Value("q", 0), context.Queue()
    children = [
        context.Process(target=lead_and_fall_in_a_process, args=(url, start, newest, results))
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    logs = [results.get(timeout=90) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0, f"{child.name} exited with {child.exitcode}"
    return logs


@pytest.mark.slow
async def test_processes_never_apply_a_stale_write_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fenced.db'}"
    async with open_store(url) as store:
        logs = await asyncio.to_thread(_run_processes, url)

        assert [log.stale_applied for log in logs] == [[]] * PROCESSES
        applied = [epoch for log in logs for epoch in log.applied]
        assert sum(log.known_stale for log in logs) > 0, "no stale write was tried"
        assert all(log.refused for log in logs) and applied
        newest = max(applied)
        with pytest.raises(StaleEpochError):
            await store.requeue_expired(epoch=newest - 1)
        assert await store.requeue_expired(epoch=newest) == 0
