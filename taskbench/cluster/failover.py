"""Failover under load: the ``failover`` command's experiment.

Worker processes drain tasks enqueued in waves; before each wave but the
last, the acting leader (found through the coordinator; leaderless mode: a
worker) is killed (or SIGTERMed, or SIGSTOPped past its TTL), a replacement
starts, and the sample is the time from the signal until the next leader's
first duty round was applied. At the end every task is read back from the
store and the workers' timelines are checked for stale writes accepted.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taskbench.bench.drain import enqueue_all
from taskbench.bench.workloads import parse_workload
from taskbench.cluster.local import (
    POLL_S,
    STARTUP_TIMEOUT_S,
    Accounting,
    LocalCluster,
    account,
    local_cluster,
    record_dir,
    wait_until_drained,
)
from taskbench.cluster.options import WorkerOptions, describe
from taskbench.coordination import Leadership
from taskbench.coordination.base import DEFAULT_TTL_S
from taskbench.distributed import EventKind, LeadershipEvent, Mode, stale_writes_accepted
from taskbench.errors import BenchmarkError
from taskbench.model import Task, TaskStatus
from taskbench.stores import TaskStore, open_store

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "STOP": signal.SIGSTOP}


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverSample:
    """One disruption: seconds from the signal until the cluster acted again."""

    victim: str
    old_epoch: int | None
    new_epoch: int | None
    election_s: float | None
    """Until a new leader was elected (None in leaderless mode)."""
    failover_s: float
    """Until the next leader's first duty round was applied (leaderless: until a worker's
    duty round requeued the victim's tasks)."""
    held: int
    """Tasks running under the victim just after the signal."""
    requeued: int
    """Abandoned tasks that round requeued."""


async def disrupt(
    cluster: LocalCluster, store: TaskStore, wave: Sequence[str], signum: int, timeout: float
) -> FailoverSample:
    """Signal the acting leader (leaderless: a worker) while it runs tasks of ``wave`` and
    wait until the cluster acts again; a killed or terminated worker is replaced, a paused one
    is resumed once its successor has acted."""
    leader = None
    if cluster.options.mode is Mode.LEADER:
        leader = await cluster.wait_for_acting_leader(timeout)
    victim = leader.leader_id if leader else min(cluster.live_ids())
    await wait_until_holding(store, wave, victim, timeout)
    sent = cluster.send(victim, signum)
    if signum == signal.SIGKILL:
        cluster.workers[victim].process.wait()
    held = await tasks_held(store, wave, victim)
    if signum != signal.SIGSTOP:
        cluster.start_worker()
    elected, acted = await next_action(cluster, leader, sent, bool(held), timeout)
    if signum == signal.SIGSTOP:
        cluster.resume(victim)  # deposed while paused: its next fenced write must be refused
    await cluster.wait_for_members()
    return FailoverSample(
        victim=victim,
        old_epoch=leader.epoch if leader else None,
        new_epoch=acted.epoch,
        election_s=elected.at - sent if elected else None,
        failover_s=acted.at - sent,
        held=len(held),
        requeued=acted.requeued_abandoned,
    )


async def next_action(
    cluster: LocalCluster, leader: Leadership | None, sent: float, held: bool, timeout: float
) -> tuple[LeadershipEvent | None, LeadershipEvent]:
    """The next leader's election and first duty round; leaderless, the first round that
    requeued what the victim held."""
    if leader is None:
        if not held:
            raise BenchmarkError("the worker was stopped holding no task: give each kill more")
        acted = await cluster.wait_for_event(
            lambda e: e.kind is EventKind.DUTIES and e.at > sent and e.requeued_abandoned > 0,
            timeout=timeout,
            what="a duty round that requeues the victim's tasks",
        )
        return None, acted
    elected, acted = [
        await cluster.wait_for_event(
            newer_than(leader, after=sent, kind=kind), timeout=timeout, what=f"a new {kind} event"
        )
        for kind in (EventKind.ELECTED, EventKind.DUTIES)
    ]
    return elected, acted


def newer_than(
    leadership: Leadership, *, after: float, kind: EventKind
) -> Callable[[LeadershipEvent], bool]:
    """Matches ``kind`` events later than ``after`` from an epoch above ``leadership``'s."""

    def match(event: LeadershipEvent) -> bool:
        epoch = event.epoch if event.epoch is not None else -1
        return event.kind is kind and event.at > after and epoch > leadership.epoch

    return match


async def tasks_held(store: TaskStore, ids: Sequence[str], worker_id: str) -> list[Task]:
    """The tasks among ``ids`` running under ``worker_id``'s lease now."""
    tasks = await store.get_many(ids)
    return [t for t in tasks if t.status is TaskStatus.RUNNING and t.lease_owner == worker_id]


async def wait_until_holding(
    store: TaskStore, ids: Sequence[str], worker_id: str, timeout: float
) -> None:
    """Until ``worker_id`` runs one of ``ids``, or none of them is left in the queue
    (BenchmarkError if tasks stay queued for ``timeout``: nobody is executing them)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = await store.get_many(ids)
        if any(t.status is TaskStatus.RUNNING and t.lease_owner == worker_id for t in tasks):
            return
        if not any(t.status is TaskStatus.QUEUED for t in tasks):
            return
        if time.monotonic() > deadline:
            statuses = Counter(str(t.status) for t in tasks)
            raise BenchmarkError(f"tasks stayed queued for {timeout:.0f} s: {dict(statuses)}")
        await asyncio.sleep(POLL_S)


def waves(tasks: int, parts: int) -> list[int]:
    """``tasks`` split into ``parts`` near-equal waves (one before each kill, one after)."""
    return [tasks // parts + (1 if index < tasks % parts else 0) for index in range(parts)]


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverResult:
    samples: list[FailoverSample]
    stale_writes_accepted: int
    refused_writes: int
    accounting: Accounting

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "failover_s": summary([s.failover_s for s in self.samples]),
            "election_s": summary([s.election_s for s in self.samples if s.election_s is not None]),
            "victims": [s.victim for s in self.samples],
            "epochs": [[s.old_epoch, s.new_epoch] for s in self.samples],
            "held": [s.held for s in self.samples],
            "requeued": [s.requeued for s in self.samples],
            "stale_writes_accepted": self.stale_writes_accepted,
            "refused_writes": self.refused_writes,
            **asdict(self.accounting),
        }


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "p50": statistics.median(samples) if samples else None,
        "max": max(samples) if samples else None,
        "samples": samples,
    }


async def measure_failover(
    options: WorkerOptions,
    *,
    workers: int,
    kills: int,
    tasks: int,
    signum: int,
    timeout: float,
    record: Path | None,
) -> FailoverResult:
    """Run ``workers`` processes under load and disrupt the leader (leaderless: a worker)
    ``kills`` times."""
    workload = parse_workload(options.workload)
    wait = 3 * (options.ttl or DEFAULT_TTL_S) + STARTUP_TIMEOUT_S
    with record_dir(record) as root:
        async with open_store(options.store) as store:
            await store.purge()
            async with local_cluster(options, workers, root) as cluster:
                ids: list[str] = []
                samples: list[FailoverSample] = []
                for wave in waves(tasks, kills + 1):
                    wave_ids, _ = await enqueue_all(store, workload, wave)
                    ids += wave_ids
                    if len(samples) < kills:
                        samples.append(await disrupt(cluster, store, wave_ids, signum, wait))
                    await wait_until_drained(store, timeout)  # a task meets one disruption
            accounting = await account(store, ids, cluster.executions())
            events = cluster.events()
    return FailoverResult(
        samples=samples,
        stale_writes_accepted=stale_writes_accepted(events),
        refused_writes=sum(e.kind is EventKind.REFUSED for e in events),
        accounting=accounting,
    )


def failover_report(
    options: WorkerOptions, result: FailoverResult, *, signal_name: str, workers: int, kills: int
) -> dict[str, Any]:
    """The ``failover`` command's JSON object."""
    report = {**describe(options), "signal": signal_name, "workers": workers}
    return report | {"kills": kills, **result.to_json_dict()}


def format_failover(report: dict[str, Any]) -> str:
    failover = report["failover_s"]
    timing = (
        f"p50 {failover['p50']:.3f} s, max {failover['max']:.3f} s"
        if failover["samples"]
        else "no samples"
    )
    return "\n".join(
        [
            f"{report['store']} / {report['coordinator']} (ttl {report['ttl']} s)",
            f"SIG{report['signal']} x {report['kills']}: failover {timing}",
            f"stale writes accepted {report['stale_writes_accepted']}, "
            f"refused {report['refused_writes']}",
            f"tasks {report['tasks']}: {report['succeeded']} succeeded, {report['dead']} dead, "
            f"{report['lost']} lost, {report['duplicates']} duplicate executions",
        ]
    )
