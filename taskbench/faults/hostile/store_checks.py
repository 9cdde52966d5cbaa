"""Judging the store entry points: accepted input round-trips, refused input changes nothing.

:class:`StoreChecks` runs each ``enqueue`` and store-call case against one
open store with canaries. An enqueued task reads back equal to what was
given (strings code point for code point); a store call that applied leaves
exactly the state its contract describes, computed here from the model
(:func:`after_finish`, :func:`after_release`); a refused call changes
nothing; every stored time is finite (:func:`expect_same`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

from taskbench.errors import TaskbenchError
from taskbench.faults.hostile.canaries import (
    BAIT_LEASE_S,
    BAIT_NOW,
    BAIT_RUN_AT,
    BAIT_WORKER,
    CANARY_IDS,
    CANARY_OWNER,
    plant_canaries,
)
from taskbench.faults.hostile.findings import Violation, short
from taskbench.faults.hostile.store_cases import (
    LOOK_ALIKE_IDS,
    NEEDS_CLAIMED_BAIT,
    Claim,
    Extend,
    Finish,
    GetMany,
    HandBuiltTask,
    ListDead,
    NewTask,
    Purge,
    Release,
    RequeueAbandoned,
    RequeueDead,
    RequeueExpired,
    StoreCall,
    WaitForWork,
)
from taskbench.model import (
    MAX_ID_LENGTH,
    Lease,
    Outcome,
    Task,
    TaskStatus,
)
from taskbench.stores import TaskStore

RESET_AFTER_CHARS = 32 * 1024 * 1024
"""Purge (and replant the canaries) once accepted payloads add up to this much."""


def same_value(stored: object, expected: object) -> bool:
    """Equal; numbers as the doubles a store keeps (2**64 + 3 is stored as 2.0**64)."""
    if is_number(stored) and is_number(expected):
        assert isinstance(stored, int | float) and isinstance(expected, int | float)
        with contextlib.suppress(OverflowError):
            return float(stored) == float(expected)
    return stored == expected


def differing_fields(stored: Task, expected: Task, skip: Sequence[str] = ()) -> list[str]:
    """The fields where ``stored`` differs from ``expected``."""
    names = [f.name for f in dataclasses.fields(Task) if f.name not in skip]
    return [n for n in names if not same_value(getattr(stored, n), getattr(expected, n))]


def is_finite(value: object) -> bool:
    """A finite number that a float can hold (10**400 is not: it overflows)."""
    if not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def non_finite_times(task: Task) -> list[str]:
    times = ("run_at", "created_at", "started_at", "finished_at", "lease_expires_at")
    values = {name: getattr(task, name) for name in times}
    return [f"{k}={short(v)}" for k, v in values.items() if v is not None and not is_finite(v)]


def expect_same(stored: Task | None, expected: Task, what: str, skip: Sequence[str] = ()) -> None:
    """Raise a Violation unless ``stored`` has every field of ``expected`` (and finite times)."""
    if stored is None:
        raise Violation("corrupted", f"{what}: task {expected.id!r} is gone")
    odd = non_finite_times(stored)
    if odd:
        raise Violation("corrupted", f"{what}: a stored time is not finite ({', '.join(odd)})")
    fields = differing_fields(stored, expected, skip)
    if fields:
        shown = ", ".join(f"{n}={short(getattr(stored, n))}" for n in fields[:4])
        raise Violation("corrupted", f"{what}: task {expected.id!r} differs in {shown}")


def plain_id(value: object) -> bool:
    """Whether ``value`` can be looked up without the lookup itself being hostile input."""
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > MAX_ID_LENGTH:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def after_finish(task: Task, outcome: Outcome) -> Task:
    """The task an applied ``outcome`` leaves, as the contract says."""
    cleared = replace(task, lease_owner=None, lease_expires_at=None, status=outcome.status)
    if outcome.status is TaskStatus.QUEUED:
        assert outcome.run_at is not None
        return replace(cleared, run_at=outcome.run_at, finished_at=None, last_error=outcome.error)
    error = task.last_error if outcome.error is None else outcome.error
    return replace(
        cleared, finished_at=outcome.finished_at, result_json=outcome.result_json, last_error=error
    )


def after_release(task: Task) -> Task:
    return replace(
        task,
        status=TaskStatus.QUEUED,
        attempts=task.attempts - 1,
        finished_at=None,
        lease_owner=None,
        lease_expires_at=None,
    )


def make_outcome(call: Finish, lease: Lease) -> Outcome:
    if call.outcome == "succeeded":
        return Outcome.succeeded(lease, call.result, now=call.now)
    if call.outcome == "retry":
        return Outcome.retry(lease, call.error, run_at=call.run_at, now=call.now)
    return Outcome.dead(lease, call.error, now=call.now)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- the store entry points ---------------------------------------------------------------


class StoreChecks:
    """The checks of the two store entry points, against one open store with canaries."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.canaries: dict[str, Task] = {}
        self.accepted_chars = 0
        self.stored_ids: set[str] = set()
        """Ids enqueued by earlier cases since the last reset (a clash with one is fine)."""
        self.baits = 0
        self.token = uuid.uuid4().hex[:8]

    async def reset(self) -> None:
        self.canaries = await plant_canaries(self.store)
        self.accepted_chars = 0
        self.stored_ids.clear()

    async def check_canaries(self) -> None:
        found = await self.get_exact(list(CANARY_IDS))
        for task_id, planted in self.canaries.items():
            expect_same(found.get(task_id), planted, "canary")

    async def get_exact(self, ids: list[str]) -> dict[str, Task]:
        """get_many, checking that it returns only tasks it was asked for."""
        found = await self.store.get_many(ids)
        strays = [t.id for t in found if t.id not in ids]
        if strays:
            raise Violation("wrong-answer", f"get_many returned ids not asked for: {short(strays)}")
        return {t.id: t for t in found}

    # -- enqueue ------------------------------------------------------------------------

    async def enqueue(self, specs: list[NewTask | HandBuiltTask]) -> None:
        tasks = [spec.build() for spec in specs]
        try:
            await self.store.enqueue(tasks)
        except TaskbenchError:
            await self.expect_absent(tasks)
            raise
        self.stored_ids.update(t.id for t in tasks)
        stored = await self.get_exact([t.id for t in tasks])
        for task in tasks:
            expect_same(stored.get(task.id), task, "round trip")
        self.accepted_chars += sum(len(t.payload_json) for t in tasks)
        if self.accepted_chars > RESET_AFTER_CHARS:
            await self.reset()

    async def expect_absent(self, tasks: list[Task]) -> None:
        """A refused batch wrote nothing: none of its new (plain, non-canary) ids exists."""
        known = self.stored_ids.union(CANARY_IDS, LOOK_ALIKE_IDS)
        ids = [t.id for t in tasks if plain_id(t.id) and t.id not in known]
        if not ids:
            return
        found = await self.get_exact(ids)
        if found:
            raise Violation("corrupted", f"a refused enqueue stored {short(sorted(found))}")

    # -- store calls: the bait ----------------------------------------------------------

    async def new_bait(self, claimed: bool) -> Task:
        self.baits += 1
        bait_id = f"bait-{self.token}-{self.baits}"
        bait = Task.new("bait", {"n": self.baits}, id=bait_id, run_at=BAIT_RUN_AT, now=BAIT_RUN_AT)
        await self.store.enqueue([bait])
        if not claimed:
            return bait
        held = await self.store.claim(BAIT_WORKER, 10_000, lease_s=BAIT_LEASE_S, now=BAIT_NOW)
        for task in held:
            if task.id == bait.id:
                return task
        detail = f"claim at now={BAIT_NOW} did not hand out a due task"
        raise Violation("corrupted", detail, replant=True)

    async def bait_state(self, bait: Task) -> Task | None:
        return (await self.get_exact([bait.id])).get(bait.id)

    async def store_call(self, call: StoreCall) -> None:
        bait = await self.new_bait(claimed=isinstance(call, NEEDS_CLAIMED_BAIT))
        try:
            await self.perform(call, bait)
        except TaskbenchError:
            expect_same(await self.bait_state(bait), bait, "after a refused call")
            raise

    async def perform(self, call: StoreCall, bait: Task) -> None:
        handlers: dict[type, Callable[[Any, Task], Awaitable[None]]] = {
            Claim: self.claim,
            Finish: self.finish,
            Extend: self.extend,
            Release: self.release,
            RequeueExpired: self.requeue_expired,
            RequeueAbandoned: self.requeue_abandoned,
            GetMany: self.get_many,
            ListDead: self.list_dead,
            RequeueDead: self.requeue_dead,
            Purge: self.purge,
            WaitForWork: self.wait_for_work,
        }
        await handlers[type(call)](call, bait)

    # -- store calls: one check each ----------------------------------------------------

    async def claim(self, call: Claim, bait: Task) -> None:
        claimed = await self.store.claim(
            call.worker, call.limit, lease_s=call.lease_s, now=call.now
        )
        stored = await self.get_exact([t.id for t in claimed])
        for task in claimed:
            if task.id in CANARY_IDS or task.lease_owner != call.worker:
                raise Violation("wrong-answer", f"claim returned {short(task)}")
            expect_same(stored.get(task.id), task, "claimed task as returned")
        if bait.id in stored and call.now is not None:
            expected = replace(
                bait,
                status=TaskStatus.RUNNING,
                attempts=1,
                started_at=call.now,
                lease_owner=call.worker,
                lease_expires_at=call.now + call.lease_s,
            )
            expect_same(stored[bait.id], expected, "bait after claim")

    async def finish(self, call: Finish, bait: Task) -> None:
        lease = call.lease.resolve(bait.id)
        outcome = make_outcome(call, lease)
        applied = await self.store.finish([outcome])
        current = lease == bait.lease
        expected = after_finish(bait, outcome) if current else bait
        expect_same(await self.bait_state(bait), expected, "bait after finish")
        if applied != int(current):
            raise Violation(
                "wrong-answer", f"finish applied {applied} for a current={current} lease"
            )

    async def extend(self, call: Extend, bait: Task) -> None:
        lease = call.lease.resolve(bait.id)
        extended = await self.store.extend([lease], lease_s=call.lease_s, now=call.now)
        current = lease == bait.lease
        if extended != int(current):
            raise Violation("wrong-answer", f"extend counted {extended}, current={current}")
        skip = ("lease_expires_at",) if current and call.now is None else ()
        expires = call.now + call.lease_s if current and call.now is not None else None
        expected = replace(bait, lease_expires_at=expires) if expires is not None else bait
        expect_same(await self.bait_state(bait), expected, "bait after extend", skip)

    async def release(self, call: Release, bait: Task) -> None:
        lease = call.lease.resolve(bait.id)
        released = await self.store.release([lease])
        current = lease == bait.lease
        expected = after_release(bait) if current else bait
        expect_same(await self.bait_state(bait), expected, "bait after release")
        if released != int(current):
            raise Violation("wrong-answer", f"release counted {released}, current={current}")

    async def requeue_expired(self, call: RequeueExpired, bait: Task) -> None:
        await self.store.requeue_expired(now=call.now, epoch=call.epoch)
        expired = call.now is None or (is_number(call.now) and call.now > BAIT_NOW + BAIT_LEASE_S)
        await self.expect_requeued(bait, call.now, expired)

    async def requeue_abandoned(self, call: RequeueAbandoned, bait: Task) -> None:
        live = call.live_workers
        if isinstance(live, list):
            live = [CANARY_OWNER, *live]
        await self.store.requeue_abandoned(live, now=call.now, epoch=call.epoch)
        collection = isinstance(live, Collection) and not isinstance(live, str | bytes)
        abandoned = collection and BAIT_WORKER not in live
        await self.expect_requeued(bait, call.now, abandoned)

    async def expect_requeued(self, bait: Task, now: Any, requeued: bool) -> None:
        """The bait's lease was lost (``requeued``) or it is untouched."""
        if not requeued:
            expect_same(await self.bait_state(bait), bait, "bait not requeued")
            return
        expected = replace(after_release(bait), attempts=bait.attempts, run_at=now)
        skip = ("last_error",) if now is not None else ("last_error", "run_at")
        stored = await self.bait_state(bait)
        expect_same(stored, expected, "bait after a lost lease", skip)
        if stored is not None and not stored.last_error:
            raise Violation("wrong-answer", "a requeued lease left no last_error")

    async def get_many(self, call: GetMany, bait: Task) -> None:
        found = await self.store.get_many(call.ids)
        wanted = list(call.ids) if isinstance(call.ids, list | tuple | str) else []
        for task in found:
            if task.id not in wanted:
                raise Violation("wrong-answer", f"get_many returned {task.id!r}, not asked for")
            if non_finite_times(task):
                raise Violation("corrupted", f"a stored time is not finite: {short(task)}")

    async def list_dead(self, call: ListDead, bait: Task) -> None:
        for task in await self.store.list_dead(limit=call.limit):
            if task.status is not TaskStatus.DEAD:
                raise Violation("wrong-answer", f"list_dead returned {short(task)}")

    async def requeue_dead(self, call: RequeueDead, bait: Task) -> None:
        requeued = await self.store.requeue_dead(call.ids, now=call.now)
        if requeued:
            raise Violation("wrong-answer", f"requeue_dead revived {requeued} unnamed tasks")

    async def purge(self, call: Purge, bait: Task) -> None:
        purged = await self.store.purge(call.statuses)
        if purged:
            raise Violation("corrupted", f"purge of no real status deleted {purged} tasks")

    async def wait_for_work(self, call: WaitForWork, bait: Task) -> None:
        await self.store.wait_for_work(call.timeout)
