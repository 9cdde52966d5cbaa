"""DistributedExecutor under real faults: worker processes, real etcd, Redis and PostgreSQL.

Each test runs ``python -m taskbench.cli worker`` processes through
:class:`~taskbench.cluster.local.LocalCluster` on a PostgreSQL schema of its
own, with an etcd member started for this module (tests/etcd_cluster.py) or a
Redis key prefix of its own, then kills, pauses or stops the leader and reads
what happened from three witnesses: the coordinator (who leads), the workers'
timelines (appended with one ``write(2)`` per event, so they survive kill -9)
and the store (every task read back at the end).

Assertions are about the order of events and about counts. The two clock
comparisons are correctness bounds with wide margins, not speed claims: a
killed leader's successor cannot act before the dead session could expire
(``ttl - refresh``: a lower bound, which noise only lengthens), and it acts
within ``ttl + 1 s`` (asserted with 1.5 s to spare for a busy machine).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskbench.bench.drain import enqueue_all
from taskbench.bench.workloads import parse_workload
from taskbench.cluster.failover import newer_than, tasks_held, wait_until_holding
from taskbench.cluster.local import LocalCluster, account, local_cluster, wait_until_drained
from taskbench.cluster.options import WorkerOptions
from taskbench.coordination import open_coordinator
from taskbench.distributed import EventKind, LeadershipEvent, Mode, stale_writes_accepted
from taskbench.model import TaskStatus
from taskbench.stores import TaskStore, open_store
from tests.backends import isolated_store_url
from tests.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.slow

TTL = 2.0
REFRESH = TTL / 3
WAIT_S = 30.0
"""How long a step may take before the test gives up: a stall fails with a message that
says which step, before the suite's 120 s timeout."""
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), size=1).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["etcd", "redis"])
async def coordinator_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "etcd":
        cluster: EtcdCluster = request.getfixturevalue("etcd")
        yield f"{cluster.url}?prefix=/tbtest/{uuid.uuid4().hex[:12]}/"
    else:
        async with isolated_store_url("redis", tmp_path) as url:
            yield url


@pytest.fixture
async def store_url(tmp_path: Path) -> AsyncIterator[str]:
    async with isolated_store_url("postgres", tmp_path) as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[TaskStore]:
    async with open_store(store_url) as opened:
        yield opened


def options_for(store_url: str, coordinator_url: str, **overrides: Any) -> WorkerOptions:
    settings: dict[str, Any] = {
        "concurrency": 5,
        "workload": "sleep:200",
        "ttl": TTL,
        "duty_period": 0.25,
        "grace": 10.0,
    }
    return WorkerOptions.create(
        store=store_url, coordinator=coordinator_url, **(settings | overrides)
    )


async def enqueue(store: TaskStore, options: WorkerOptions, count: int) -> list[str]:
    ids, _ = await enqueue_all(store, parse_workload(options.workload), count)
    return ids


def first_event(
    cluster: LocalCluster, match: Callable[[LeadershipEvent], bool]
) -> LeadershipEvent | None:
    return next((event for event in cluster.events() if match(event)), None)


# -- kill -9 --------------------------------------------------------------------------


async def test_a_killed_leader_is_replaced_and_its_tasks_requeued(
    store: TaskStore, store_url: str, coordinator_url: str, tmp_path: Path
) -> None:
    options = options_for(store_url, coordinator_url)
    async with local_cluster(options, 3, tmp_path) as cluster:
        ids = await enqueue(store, options, 60)
        leader = await cluster.wait_for_acting_leader(WAIT_S)
        await wait_until_holding(store, ids, leader.leader_id, WAIT_S)
        killed_at = cluster.send(leader.leader_id, signal.SIGKILL)
        cluster.workers[leader.leader_id].process.wait()
        held = {task.id for task in await tasks_held(store, ids, leader.leader_id)}
        acted = await cluster.wait_for_event(
            newer_than(leader, after=killed_at, kind=EventKind.DUTIES),
            timeout=WAIT_S,
            what="the next leader's first duty round",
        )
        await wait_until_drained(store, WAIT_S)
    accounting = await account(store, ids, cluster.executions())

    assert held, "the leader was killed while it ran tasks"
    assert acted.worker_id != leader.leader_id
    assert acted.requeued_abandoned == len(held)
    assert TTL - REFRESH <= acted.at - killed_at <= TTL + 1.0 + 1.5
    assert (accounting.succeeded, accounting.lost, accounting.dead) == (60, 0, 0)
    assert accounting.duplicates <= len(held)
    stored = await store.get_many(ids)
    assert {t.status for t in stored} == {TaskStatus.SUCCEEDED}
    assert {t.id for t in stored if t.attempts == 2} == held
    assert {t.attempts for t in stored if t.id not in held} == {1}
    assert stale_writes_accepted(cluster.events()) == 0


# -- a paused leader ------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """A leader SIGSTOPped until its successor acted, then SIGCONTed."""

    worker_id: str
    epoch: int
    stopped_at: float
    resumed_at: float
    successor: LeadershipEvent

    def begun_before(self, event: LeadershipEvent) -> bool:
        """A duty round that had begun before the pause (its writes may have left before or
        after it: ``sent_at`` is stamped just before a write is handed to the driver)."""
        return event.sent_at is not None and event.sent_at <= self.stopped_at

    def resumed_events(self, events: list[LeadershipEvent]) -> list[LeadershipEvent]:
        return [e for e in events if e.worker_id == self.worker_id and e.at > self.resumed_at]


async def pause_leader_past_its_ttl(cluster: LocalCluster) -> Pause:
    leader = await cluster.wait_for_acting_leader(WAIT_S)
    paused = cluster.workers[leader.leader_id]
    stopped_at = cluster.send(paused.worker_id, signal.SIGSTOP)
    successor = await cluster.wait_for_event(
        newer_than(leader, after=stopped_at, kind=EventKind.DUTIES),
        timeout=WAIT_S,
        what="the successor's first duty round",
    )
    resumed_at = time.time()
    paused.process.send_signal(signal.SIGCONT)
    paused.signalled = False  # alive again: a member like the others
    return Pause(paused.worker_id, leader.epoch, stopped_at, resumed_at, successor)


async def first_judged_event(
    cluster: LocalCluster, pause: Pause, skip: Callable[[LeadershipEvent], bool]
) -> LeadershipEvent:
    def match(event: LeadershipEvent) -> bool:
        mine = event.worker_id == pause.worker_id and event.at > pause.resumed_at
        return mine and not skip(event)

    return await cluster.wait_for_event(match, timeout=WAIT_S, what="the paused worker's news")


async def test_a_paused_leader_without_self_fencing_is_refused_by_the_store(
    store: TaskStore, store_url: str, coordinator_url: str, tmp_path: Path
) -> None:
    options = options_for(store_url, coordinator_url, self_fencing=False, workload="noop")
    async with local_cluster(options, 2, tmp_path) as cluster:
        pause = await pause_leader_past_its_ttl(cluster)
        # A round applied before the pause may be recorded after it; anything else counts.
        first = await first_judged_event(
            cluster, pause, lambda e: e.kind is EventKind.DUTIES and pause.begun_before(e)
        )
        await cluster.wait_for_members()  # back in the cluster, as a follower
    events = cluster.events()

    assert pause.successor.epoch is not None and pause.successor.epoch > pause.epoch
    assert (first.kind, first.epoch) == (EventKind.REFUSED, pause.epoch)
    late = [e for e in pause.resumed_events(events) if not pause.begun_before(e)]
    assert not [e for e in late if e.kind is EventKind.DUTIES and e.epoch == pause.epoch]
    assert stale_writes_accepted(events) == 0


async def test_a_paused_leader_with_self_fencing_begins_no_write_after_it_resumes(
    store: TaskStore, store_url: str, coordinator_url: str, tmp_path: Path
) -> None:
    options = options_for(store_url, coordinator_url, workload="noop")
    async with local_cluster(options, 2, tmp_path) as cluster:
        pause = await pause_leader_past_its_ttl(cluster)
        # A round begun before the pause finishes (its late write is refused); then it stops.
        first = await first_judged_event(cluster, pause, pause.begun_before)
        await cluster.wait_for_members()
    events = cluster.events()

    assert (first.kind, first.epoch) == (EventKind.DEPOSED, pause.epoch)
    writes = [e for e in events if e.worker_id == pause.worker_id and e.sent_at is not None]
    begun_after = [
        e for e in writes if e.kind is not EventKind.RESIGNED and not pause.begun_before(e)
    ]
    assert not [e for e in begun_after if e.epoch == pause.epoch]
    assert stale_writes_accepted(events) == 0


# -- SIGTERM --------------------------------------------------------------------------


async def test_sigterm_hands_leadership_over_before_the_old_leader_finishes_its_tasks(
    store: TaskStore, store_url: str, coordinator_url: str, tmp_path: Path
) -> None:
    # The old leader drains 3 s tasks after SIGTERM and its session outlives them (TTL 30 s):
    # a successor elected before the first of them finished was let in by the resignation,
    # not by the session closing or expiring.
    options = options_for(store_url, coordinator_url, ttl=30.0, workload="sleep:3000")
    async with local_cluster(options, 2, tmp_path) as cluster:
        ids = await enqueue(store, options, 10)
        leader = await cluster.wait_for_acting_leader(WAIT_S)
        await wait_until_holding(store, ids, leader.leader_id, WAIT_S)
        old = cluster.workers[leader.leader_id]
        sent = cluster.send(leader.leader_id, signal.SIGTERM)
        held = [task.id for task in await tasks_held(store, ids, leader.leader_id)]
        elected = await cluster.wait_for_event(
            newer_than(leader, after=sent, kind=EventKind.ELECTED),
            timeout=WAIT_S,
            what="the successor's election",
        )
        await wait_until_drained(store, WAIT_S)
        await asyncio.to_thread(old.process.wait, WAIT_S)
    resigned = first_event(
        cluster, lambda e: e.worker_id == old.worker_id and e.kind is EventKind.RESIGNED
    )
    finished = [t.finished_at for t in await store.get_many(held) if t.finished_at is not None]

    assert held and len(finished) == len(held)
    assert resigned is not None and resigned.epoch == leader.epoch
    assert resigned.sent_at is not None
    assert sent < resigned.sent_at <= elected.at < min(finished)
    assert old.process.returncode == 0
    stored = await store.get_many(ids)
    assert {(t.status, t.attempts) for t in stored} == {(TaskStatus.SUCCEEDED, 1)}


# -- leaderless -----------------------------------------------------------------------


async def test_leaderless_workers_requeue_a_dead_workers_tasks_without_epochs(
    store: TaskStore, store_url: str, tmp_path: Path
) -> None:
    async with isolated_store_url("redis", tmp_path) as coordinator:
        options = options_for(store_url, coordinator, mode=Mode.LEADERLESS)
        async with local_cluster(options, 3, tmp_path) as cluster:
            ids = await enqueue(store, options, 60)
            victim = sorted(cluster.live_ids())[0]
            await wait_until_holding(store, ids, victim, WAIT_S)
            cluster.send(victim, signal.SIGKILL)
            cluster.workers[victim].process.wait()
            held = {task.id for task in await tasks_held(store, ids, victim)}
            await wait_until_drained(store, WAIT_S)
    events = cluster.events()

    assert held
    assert {e.kind for e in events} == {EventKind.DUTIES}
    assert {e.epoch for e in events} == {None}
    assert sum(e.requeued_abandoned for e in events) == len(held)
    stored = await store.get_many(ids)
    assert {t.status for t in stored} == {TaskStatus.SUCCEEDED}
    assert {t.id for t in stored if t.attempts == 2} == held


# -- the commands ---------------------------------------------------------------------


def taskbench(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "taskbench.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1, done.stdout
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_failover_command_reports_each_kill_and_accounts_for_every_task(
    store_url: str, etcd: EtcdCluster
) -> None:
    coordinator = f"{etcd.url}?prefix=/tbtest/{uuid.uuid4().hex[:12]}/"
    result = taskbench(
        "failover", "--store", store_url, "--coordinator", coordinator, "--kills", "2",
        "--ttl", str(TTL), "--tasks", "120", "--concurrency", "5", "--duty-period", "0.25",
        "--json",
    )  # fmt: skip
    assert result["kills"] == 2
    samples = result["failover_s"]["samples"]
    assert len(samples) == 2
    assert result["failover_s"]["max"] == max(samples)
    assert result["held"] == result["requeued"]
    assert result["stale_writes_accepted"] == 0
    assert (result["tasks"], result["succeeded"], result["lost"]) == (120, 120, 0)
    assert result["duplicates"] <= sum(result["held"])
    assert "password" not in json.dumps(result)


def test_cluster_command_runs_each_size_and_reports_the_speedup(
    store_url: str, etcd: EtcdCluster
) -> None:
    coordinator = f"{etcd.url}?prefix=/tbtest/{uuid.uuid4().hex[:12]}/"
    result = taskbench(
        "cluster", "--workers", "1,2", "--store", store_url, "--coordinator", coordinator,
        "--tasks", "100", "--concurrency", "5", "--workload", "sleep:20", "--json",
    )  # fmt: skip
    assert [run["workers"] for run in result["runs"]] == [1, 2]
    for run in result["runs"]:
        assert (run["succeeded"], run["lost"], run["duplicates"]) == (100, 0, 0)
    assert set(result["speedup"]) == {"2"}
    assert result["speedup"]["2"] == pytest.approx(
        result["runs"][1]["tasks_per_s"] / result["runs"][0]["tasks_per_s"]
    )


async def test_a_worker_exits_zero_on_sigterm_and_leaves_membership(
    store_url: str, etcd: EtcdCluster, tmp_path: Path
) -> None:
    coordinator = f"{etcd.url}?prefix=/tbtest/{uuid.uuid4().hex[:12]}/"
    command = [
        sys.executable, "-m", "taskbench.cli", "worker", "--store", store_url,
        "--coordinator", coordinator, "--ttl", "30", "--worker-id", "solo",
        "--record", str(tmp_path), "--json",
    ]  # fmt: skip
    worker = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events = tmp_path / "solo.events.jsonl"
    async with open_coordinator(coordinator, ttl=TTL) as observer:
        deadline = time.monotonic() + WAIT_S
        while "duties" not in (events.read_text() if events.exists() else ""):
            assert worker.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await observer.members() == ["solo"]
        os.kill(worker.pid, signal.SIGTERM)
        out, err = await asyncio.to_thread(worker.communicate, timeout=WAIT_S)
        assert await observer.members() == []  # closed, not expired: the TTL is 30 s
    assert worker.returncode == 0, err
    assert json.loads(out)["store_errors"] == 0
    kinds = [json.loads(line)["kind"] for line in events.read_text().splitlines()]
    assert kinds[0] == "elected" and kinds[-1] == "resigned"
