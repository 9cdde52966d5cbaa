"""MemoryStore: the whole contract in one process's memory (the report's Option E).

Tasks live in a dict by id. Two heaps give the claim order without scanning:
``_waiting`` orders queued tasks by ``run_at``; at each claim the due ones
move to ``_ready``, ordered by (priority descending, run_at, arrival). Heap
entries are never removed in place: an entry whose task has since changed
(claimed, purged, re-enqueued) is recognised as stale and skipped when popped.
A claim whose ``now`` is earlier than an earlier claim's (a caller's clock, or
the wall clock stepping back) may find entries in ``_ready`` that are not due
at its ``now``: it moves them back to ``_waiting`` rather than hand them out.
Times are finite (the base class refuses the rest), so the heaps stay ordered.

Each call runs to completion without awaiting, so on one event loop every
call is atomic: the fence (two attributes, the newest epoch issued and the
newest seen) is checked and moved in the same synchronous step as the write
it guards. Nothing survives the process.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import replace

from taskbench.errors import InvalidTaskError
from taskbench.model import Lease, Outcome, Task, TaskStatus
from taskbench.stores.base import (
    ABANDONED,
    EXPIRED,
    BaseStore,
    Capability,
    lost_lease_error,
    stale_epoch,
)

_WaitingEntry = tuple[float, int, str]  # run_at, seq, id
_ReadyEntry = tuple[int, float, int, str]  # -priority, run_at, seq, id


class MemoryStore(BaseStore):
    """A store in this process's memory; fast, and gone when the process ends."""

    capabilities = Capability.PRIORITY_ORDER | Capability.WAKEUP | Capability.TRANSACTIONAL

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self._tasks: dict[str, Task] = {}
        self._seq: dict[str, int] = {}
        self._arrivals = itertools.count()
        self._waiting: list[_WaitingEntry] = []
        self._ready: list[_ReadyEntry] = []
        self._running: set[str] = set()
        self._issued = 0
        self._seen = 0

    async def _open(self) -> None:
        return None

    async def _close(self) -> None:
        return None

    def _schedule(self, task: Task) -> None:
        heapq.heappush(self._waiting, (task.run_at, self._seq[task.id], task.id))

    def _is_current(self, task_id: str, seq: int, run_at: float) -> bool:
        task = self._tasks.get(task_id)
        return (
            task is not None
            and task.status is TaskStatus.QUEUED
            and self._seq[task_id] == seq
            and task.run_at == run_at
        )

    async def _enqueue(self, tasks: Sequence[Task]) -> None:
        clashes = [t.id for t in tasks if t.id in self._tasks]
        if clashes:
            raise InvalidTaskError(f"task id already stored: {clashes[0]!r}")
        for task in tasks:
            self._tasks[task.id] = task
            self._seq[task.id] = next(self._arrivals)
            self._schedule(task)

    def _promote_due(self, now: float) -> None:
        waiting, ready = self._waiting, self._ready
        while waiting and waiting[0][0] <= now:
            run_at, seq, task_id = heapq.heappop(waiting)
            if self._is_current(task_id, seq, run_at):
                priority = self._tasks[task_id].priority
                heapq.heappush(ready, (-priority, run_at, seq, task_id))

    async def _claim(self, worker: str, limit: int, lease_s: float, now: float) -> list[Task]:
        self._promote_due(now)
        claimed: list[Task] = []
        ready = self._ready
        while ready and len(claimed) < limit:
            _, run_at, seq, task_id = heapq.heappop(ready)
            if not self._is_current(task_id, seq, run_at):
                continue
            if run_at > now:  # promoted by a claim with a later now: not due yet
                heapq.heappush(self._waiting, (run_at, seq, task_id))
                continue
            task = replace(
                self._tasks[task_id],
                status=TaskStatus.RUNNING,
                attempts=self._tasks[task_id].attempts + 1,
                started_at=now,
                lease_owner=worker,
                lease_expires_at=now + lease_s,
            )
            self._tasks[task_id] = task
            self._running.add(task_id)
            claimed.append(task)
        return claimed

    def _held(self, lease: Lease) -> Task | None:
        task = self._tasks.get(lease.task_id)
        if (
            task is None
            or task.status is not TaskStatus.RUNNING
            or task.attempts != lease.attempt
            or task.lease_owner != lease.owner
        ):
            return None
        return task

    def _set(self, task: Task) -> None:
        """Store a changed task and keep the running set and the queue in step."""
        self._tasks[task.id] = task
        if task.status is TaskStatus.RUNNING:
            self._running.add(task.id)
            return
        self._running.discard(task.id)
        if task.status is TaskStatus.QUEUED:
            self._schedule(task)

    async def _finish(self, outcomes: Sequence[Outcome]) -> int:
        applied = 0
        for outcome in outcomes:
            task = self._held(outcome.lease)
            if task is None:
                continue
            self._set(_apply(task, outcome))
            applied += 1
        return applied

    async def _extend(self, leases: Sequence[Lease], expires_at: float) -> int:
        extended = 0
        for lease in leases:
            task = self._held(lease)
            if task is not None:
                self._tasks[task.id] = replace(task, lease_expires_at=expires_at)
                extended += 1
        return extended

    async def _release(self, leases: Sequence[Lease]) -> int:
        released = 0
        for lease in leases:
            task = self._held(lease)
            if task is not None:
                self._set(_requeued(task, attempts=task.attempts - 1, run_at=task.run_at))
                released += 1
        return released

    def _pass_fence(self, epoch: int | None) -> None:
        """Refuse an epoch older than the newest seen, or make it the newest."""
        if epoch is None:
            return
        if epoch < self._seen:
            raise stale_epoch(epoch, self._seen)
        self._seen = epoch

    async def _issue_epoch(self) -> int:
        self._issued = max(self._issued, self._seen) + 1
        return self._issued

    def _lose_leases(self, lost: list[Task], now: float, reason: str) -> int:
        for task in lost:
            self._set(_lease_lost(task, now, reason))
        return len(lost)

    async def _requeue_expired(self, now: float, epoch: int | None) -> int:
        self._pass_fence(epoch)
        running = [self._tasks[i] for i in self._running]
        expired = [t for t in running if (t.lease_expires_at or 0.0) < now]
        return self._lose_leases(expired, now, EXPIRED)

    async def _requeue_abandoned(self, live: list[str], now: float, epoch: int | None) -> int:
        self._pass_fence(epoch)
        alive = set(live)
        running = [self._tasks[i] for i in self._running]
        abandoned = [t for t in running if t.lease_owner not in alive]
        return self._lose_leases(abandoned, now, ABANDONED)

    async def _get_many(self, ids: list[str]) -> list[Task]:
        return [self._tasks[i] for i in ids if i in self._tasks]

    async def _counts(self) -> dict[TaskStatus, int]:
        counts = dict.fromkeys(TaskStatus, 0)
        for task in self._tasks.values():
            counts[task.status] += 1
        return counts

    async def _list_dead(self, limit: int) -> list[Task]:
        dead = [t for t in self._tasks.values() if t.status is TaskStatus.DEAD]
        dead.sort(key=lambda t: (t.finished_at or 0.0, self._seq[t.id]))
        return dead[:limit]

    async def _requeue_dead(self, ids: list[str] | None, now: float) -> int:
        chosen = self._tasks.values() if ids is None else (self._tasks.get(i) for i in ids)
        dead = [t for t in chosen if t is not None and t.status is TaskStatus.DEAD]
        for task in dead:
            self._set(_requeued(task, attempts=0, run_at=now))
        return len(dead)

    async def _purge(self, statuses: list[TaskStatus] | None) -> int:
        doomed = [t.id for t in self._tasks.values() if statuses is None or t.status in statuses]
        for task_id in doomed:
            del self._tasks[task_id]
            del self._seq[task_id]
            self._running.discard(task_id)
        if not self._tasks:  # every heap entry is stale: drop them at once
            self._waiting.clear()
            self._ready.clear()
        return len(doomed)


def _requeued(task: Task, *, attempts: int, run_at: float) -> Task:
    return replace(
        task,
        status=TaskStatus.QUEUED,
        attempts=attempts,
        run_at=run_at,
        finished_at=None,
        lease_owner=None,
        lease_expires_at=None,
    )


def _lease_lost(task: Task, now: float, reason: str) -> Task:
    """A running task whose lease is lost (expired, abandoned): back in the queue,
    or dead after its last try."""
    error = lost_lease_error(task.attempts, task.lease_owner, reason)
    if task.attempts >= task.max_attempts:
        return replace(
            task,
            status=TaskStatus.DEAD,
            finished_at=now,
            last_error=error,
            lease_owner=None,
            lease_expires_at=None,
        )
    return replace(_requeued(task, attempts=task.attempts, run_at=now), last_error=error)


def _apply(task: Task, outcome: Outcome) -> Task:
    """The task after ``outcome`` (whose lease has been checked)."""
    if outcome.status is TaskStatus.QUEUED:
        assert outcome.run_at is not None
        return replace(
            _requeued(task, attempts=task.attempts, run_at=outcome.run_at),
            last_error=outcome.error,
        )
    return replace(
        task,
        status=outcome.status,
        finished_at=outcome.finished_at,
        result_json=outcome.result_json,
        last_error=outcome.error if outcome.error is not None else task.last_error,
        lease_owner=None,
        lease_expires_at=None,
    )
