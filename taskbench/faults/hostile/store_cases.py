"""Strategies for the two store entry points: tasks to enqueue, and every other store call.

``enqueue`` cases are batches of one to three tasks, made by ``Task.new``
with hostile arguments (:class:`NewTask`) or built field by field so that
they skip its checks (:class:`HandBuiltTask`). ``store-calls`` cases are one
call each (:data:`StoreCall`) with hostile workers, limits, times, ids,
forged leases (:class:`LeaseSpec`), outcomes carrying hostile results and
errors, statuses, epochs and live-worker lists; :data:`BAIT` stands for the
task made for the case until it runs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from taskbench.faults.hostile.canaries import (
    BAIT_WORKER,
    CANARY_IDS,
    CANARY_OWNER,
    FINITE_LIMIT,
)
from taskbench.faults.hostile.values import (
    hostile_numbers,
    hostile_payloads,
    hostile_text,
    hostile_times,
    odd_numbers,
    odd_times,
    payload_texts,
    wrong_types,
)
from taskbench.model import (
    MAX_MAX_ATTEMPTS,
    Lease,
    Task,
    TaskPriority,
    TaskStatus,
)

LOOK_ALIKE_IDS = tuple(
    variant
    for canary in CANARY_IDS
    for variant in (canary + " ", canary.upper(), " " + canary, canary + "\t", canary + "\u200b")
)
"""Ids that are not a canary's but that a sloppy collation or trim would confuse with one."""
LOOK_ALIKE_WORKERS = (BAIT_WORKER + " ", BAIT_WORKER.upper(), BAIT_WORKER + "\u200b", "")


@functools.cache
def task_ids() -> SearchStrategy[object]:
    return st.one_of(
        st.uuids().map(lambda u: u.hex),
        hostile_text(),
        st.sampled_from(CANARY_IDS + LOOK_ALIKE_IDS),
        st.integers(),
        wrong_types(),
    )


@functools.cache
def priorities() -> SearchStrategy[object]:
    names = ["low", "HIGH", "Critical", "urgent", " high", "high\x00", "NORMAL "]
    return st.one_of(st.sampled_from(list(TaskPriority)), st.sampled_from(names), hostile_numbers())


@functools.cache
def max_attempts() -> SearchStrategy[object]:
    edges = [0, 1, MAX_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS + 1, -1]
    return st.one_of(st.sampled_from(edges), hostile_numbers())


@functools.cache
def names() -> SearchStrategy[object]:
    return st.one_of(st.just("job"), hostile_text(), st.integers(), wrong_types())


@dataclass(frozen=True, slots=True)
class NewTask:
    """``Task.new(name, payload, **options)`` with generated arguments."""

    name: Any
    payload: Any
    options: dict[str, Any]

    def build(self) -> Task:
        return Task.new(self.name, self.payload, **self.options)


@dataclass(frozen=True, slots=True)
class HandBuiltTask:
    """A ``Task(...)`` built field by field, skipping Task.new's checks."""

    fields: dict[str, Any]

    def build(self) -> Task:
        return Task(**self.fields)


HAND_BUILT_FIELDS: dict[str, SearchStrategy[Any]] = {
    "priority": priorities(),
    "status": st.one_of(st.sampled_from(list(TaskStatus)), hostile_text()),
    "attempts": hostile_numbers(),
    "max_attempts": max_attempts(),
    "run_at": hostile_times(),
    "created_at": hostile_times(),
    "started_at": hostile_times(),
    "finished_at": hostile_times(),
    "lease_owner": st.one_of(hostile_text(), wrong_types()),
    "lease_expires_at": hostile_times(),
    "last_error": st.one_of(hostile_text(), wrong_types()),
    "result_json": st.one_of(payload_texts(), wrong_types()),
}


@functools.cache
def new_tasks() -> SearchStrategy[NewTask]:
    options = st.fixed_dictionaries(
        {},
        optional={
            "priority": priorities(),
            "max_attempts": max_attempts(),
            "run_at": hostile_times(),
            "id": task_ids(),
            "now": hostile_times(),
        },
    )
    return st.builds(NewTask, names(), hostile_payloads(), options)


@st.composite
def hand_built_tasks(draw: st.DrawFn) -> HandBuiltTask:
    fields = {
        "id": draw(task_ids()),
        "name": draw(names()),
        "payload_json": draw(payload_texts()),
        "run_at": 1_000.0,
        "created_at": 1_000.0,
    }
    overrides = draw(st.fixed_dictionaries({}, optional=HAND_BUILT_FIELDS))
    return HandBuiltTask({**fields, **overrides})


@functools.cache
def enqueue_cases() -> SearchStrategy[list[NewTask | HandBuiltTask]]:
    one = st.one_of(new_tasks(), hand_built_tasks())
    return st.lists(one, min_size=1, max_size=3)


# -- strategies: store calls ------------------------------------------------------------

BAIT = "<bait>"
"""Stands for the id of the task made for the case (a 'bait'), filled in when it runs."""


@dataclass(frozen=True, slots=True)
class LeaseSpec:
    """A lease to present: the bait's own (task_id BAIT, attempt 1, owner BAIT_WORKER) or forged."""

    task_id: Any = BAIT
    attempt: Any = 1
    owner: Any = BAIT_WORKER

    def resolve(self, bait_id: str) -> Lease:
        task_id = bait_id if self.task_id == BAIT else self.task_id
        return Lease(task_id=task_id, attempt=self.attempt, owner=self.owner)


@functools.cache
def lease_specs() -> SearchStrategy[LeaseSpec]:
    owners = st.one_of(st.just(BAIT_WORKER), st.sampled_from(LOOK_ALIKE_WORKERS), hostile_text())
    attempts = st.one_of(st.just(1), st.sampled_from([0, 2, -1, 2**31, 2**63, 10**30]))
    ids = st.one_of(st.just(BAIT), st.sampled_from(CANARY_IDS + LOOK_ALIKE_IDS), hostile_text())
    return st.one_of(st.just(LeaseSpec()), st.builds(LeaseSpec, ids, attempts, owners))


@dataclass(frozen=True, slots=True)
class Claim:
    worker: Any
    limit: Any
    lease_s: Any
    now: Any


@dataclass(frozen=True, slots=True)
class Finish:
    outcome: str
    """``succeeded``, ``retry`` or ``dead``: which Outcome factory makes it."""
    lease: LeaseSpec
    result: Any
    error: Any
    now: Any
    run_at: Any


@dataclass(frozen=True, slots=True)
class Extend:
    lease: LeaseSpec
    lease_s: Any
    now: Any


@dataclass(frozen=True, slots=True)
class Release:
    lease: LeaseSpec


@dataclass(frozen=True, slots=True)
class RequeueExpired:
    now: Any
    epoch: Any


@dataclass(frozen=True, slots=True)
class RequeueAbandoned:
    live_workers: Any
    """Given with CANARY_OWNER added when it is a list (so the running canary stays live)."""
    now: Any
    epoch: Any


@dataclass(frozen=True, slots=True)
class GetMany:
    ids: Any


@dataclass(frozen=True, slots=True)
class ListDead:
    limit: Any


@dataclass(frozen=True, slots=True)
class RequeueDead:
    ids: Any
    now: Any


@dataclass(frozen=True, slots=True)
class Purge:
    statuses: Any


@dataclass(frozen=True, slots=True)
class WaitForWork:
    timeout: Any


StoreCall = (
    Claim
    | Finish
    | Extend
    | Release
    | RequeueExpired
    | RequeueAbandoned
    | GetMany
    | ListDead
    | RequeueDead
    | Purge
    | WaitForWork
)
NEEDS_CLAIMED_BAIT = (Finish, Extend, Release, RequeueExpired, RequeueAbandoned)


@functools.cache
def workers() -> SearchStrategy[object]:
    return st.one_of(st.sampled_from(LOOK_ALIKE_WORKERS), hostile_text(), wrong_types())


@functools.cache
def counts() -> SearchStrategy[object]:
    return st.one_of(st.integers(1, 5), hostile_numbers())


@functools.cache
def epochs() -> SearchStrategy[object]:
    return st.one_of(st.none(), st.integers(-2, 2**53 + 2), hostile_numbers())


@functools.cache
def id_lists(with_canaries: bool) -> SearchStrategy[object]:
    """Ids to look up; the exact canary ids only where the call only reads."""
    known = CANARY_IDS + LOOK_ALIKE_IDS if with_canaries else LOOK_ALIKE_IDS
    one = st.one_of(hostile_text(), st.sampled_from(known), st.integers(), wrong_types())
    return st.one_of(st.lists(one, max_size=4), st.tuples(one), hostile_text())


def not_a_status(value: object) -> bool:
    return not any(value == s or value is s for s in TaskStatus)


@functools.cache
def status_lists() -> SearchStrategy[object]:
    odd = st.sampled_from(["QUEUED", " queued", "Dead", "running\x00", "all", "*", "%"])
    one = st.one_of(odd, hostile_text(), st.integers(), st.binary(max_size=4))
    return st.one_of(st.lists(one.filter(not_a_status), max_size=3), hostile_text())


@functools.cache
def live_worker_lists() -> SearchStrategy[object]:
    one = st.one_of(st.sampled_from(LOOK_ALIKE_WORKERS), hostile_text(), wrong_types())
    return st.one_of(
        st.lists(one, max_size=3),
        st.just(BAIT_WORKER),
        st.sampled_from([None, 7, b"bait-worker", {CANARY_OWNER: 1}]),
    )


@functools.cache
def wait_timeouts() -> SearchStrategy[object]:
    small = st.floats(min_value=-1.0, max_value=0.05)
    return st.one_of(small, st.sampled_from([math.nan, -math.inf, 0, -1, 5e-324, -(10**400)]))


@functools.cache
def store_calls() -> SearchStrategy[StoreCall]:
    times, stamps, results = odd_times(), odd_numbers(FINITE_LIMIT), hostile_payloads()
    errors = hostile_text(huge=True)
    outcomes = st.sampled_from(["succeeded", "retry", "dead"])
    calls: list[SearchStrategy[Any]] = [
        st.builds(Claim, workers(), counts(), counts(), times),
        st.builds(Finish, outcomes, lease_specs(), results, errors, stamps, stamps),
        st.builds(Extend, lease_specs(), counts(), times),
        st.builds(Release, lease_specs()),
        st.builds(RequeueExpired, times, epochs()),
        st.builds(RequeueAbandoned, live_worker_lists(), times, epochs()),
        st.builds(GetMany, id_lists(with_canaries=True)),
        st.builds(ListDead, counts()),
        st.builds(RequeueDead, id_lists(with_canaries=False), times),
        st.builds(Purge, status_lists()),
        st.builds(WaitForWork, wait_timeouts()),
    ]
    return st.one_of(*calls)
