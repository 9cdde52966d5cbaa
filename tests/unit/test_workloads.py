"""Workload specs: every accepted form parses, every bad one names the accepted forms.

Also the tasks a workload makes: their payload size, their priorities (drawn
with the spec's weights, the same sequence every time), and that a real
store accepts them and hands them out in priority order.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from taskbench.bench.workloads import (
    ACCEPTED_FORMS,
    TASK_NAME,
    WorkloadFailure,
    parse_workload,
)
from taskbench.errors import ConfigError
from taskbench.model import MAX_PAYLOAD_BYTES, Task, TaskPriority
from taskbench.stores import open_store

TASK = Task.new(TASK_NAME, now=1_700_000_000.0)


@pytest.mark.parametrize(
    ("spec", "steps"),
    [
        ("noop", 1),
        ("sleep:0", 1),
        ("sleep:2.5", 1),
        ("cpu:10", 1),
        ("flaky:0", 1),
        ("flaky:1", 1),
        ("FLAKY:0.25", 1),
        (" sleep:1 + flaky:0.5 ", 2),
        ("noop+cpu:1+sleep:0", 3),
        ("noop+priority:mixed", 1),
        ("sleep:1+priority:HIGH+payload:10", 1),
        ("payload:0", 1),
        ("priority:low=3,critical=1+flaky:0.1+noop", 2),
    ],
)
def test_accepted_specs_parse(spec: str, steps: int) -> None:
    workload = parse_workload(spec)
    assert (workload.spec, len(workload.steps)) == (spec.strip(), steps)
    assert workload.task_name == TASK_NAME


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "   ",
        "bogus",
        "noop:1",
        "sleep",
        "sleep:",
        "sleep:abc",
        "sleep:-1",
        "sleep:inf",
        "cpu:nan",
        "flaky:1.5",
        "flaky:-0.1",
        "noop+",
        "noop++noop",
        "priority",
        "priority:",
        "priority:urgent",
        "priority:low=0",
        "priority:low=x",
        "priority:low=1,low=2",
        "priority:high+priority:low",
        "payload",
        "payload:-1",
        "payload:1.5",
        f"payload:{MAX_PAYLOAD_BYTES}",
        "payload:1+payload:2",
    ],
)
def test_bad_specs_raise_config_error_listing_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_workload(spec)
    message = str(caught.value)
    assert all(form in message for form in ACCEPTED_FORMS), message


def test_a_non_string_spec_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_workload(42)


def test_a_parsed_workload_passes_through() -> None:
    workload = parse_workload("noop")
    assert parse_workload(workload) is workload


@pytest.mark.parametrize("spec", ["noop", "sleep:0", "sleep:1", "cpu:50", "flaky:0", "noop+cpu:1"])
async def test_both_handlers_succeed_when_nothing_fails(spec: str) -> None:
    workload = parse_workload(spec)
    assert await workload.handle(TASK) is None
    assert workload.handle_sync(TASK) is None


async def test_flaky_one_always_fails_with_a_retryable_error() -> None:
    workload = parse_workload("flaky:1")
    with pytest.raises(WorkloadFailure):
        await workload.handle(TASK)
    with pytest.raises(WorkloadFailure):
        workload.handle_sync(TASK)
    assert not issubclass(WorkloadFailure, ConfigError)


def test_flaky_fails_in_about_the_given_proportion() -> None:
    saved = random.getstate()
    random.seed(20240601)  # deterministic: the bound below cannot flake
    workload = parse_workload("flaky:0.3")
    failures = 0
    try:
        for _ in range(2_000):
            try:
                workload.handle_sync(TASK)
            except WorkloadFailure:
                failures += 1
    finally:
        random.setstate(saved)
    assert 500 < failures < 700, failures


# -- the tasks a workload makes ---------------------------------------------------------


def test_tasks_are_new_due_at_their_creation_and_carry_the_payload_size() -> None:
    workload = parse_workload("noop+payload:1000")
    tasks = workload.new_tasks(3, now=1_700_000_000.0)
    assert len({task.id for task in tasks}) == 3
    for task in tasks:
        assert (task.name, task.created_at, task.run_at) == (
            TASK_NAME,
            1_700_000_000.0,
            task.created_at,
        )
        assert len(task.payload_json) == 1_002 and task.payload == "x" * 1_000
        assert task.priority is TaskPriority.NORMAL
    assert parse_workload("noop").new_tasks(1)[0].payload is None


def test_the_largest_payload_fits_the_task_limit() -> None:
    workload = parse_workload(f"payload:{MAX_PAYLOAD_BYTES - 2}")
    assert len(workload.new_tasks(1)[0].payload_json) == MAX_PAYLOAD_BYTES


def test_a_fixed_priority_gives_every_task_that_priority() -> None:
    tasks = parse_workload("priority:critical").new_tasks(20)
    assert {task.priority for task in tasks} == {TaskPriority.CRITICAL}


def test_weights_set_the_proportions_and_the_sequence_repeats() -> None:
    workload = parse_workload("noop+priority:low=3,high=1")
    drawn = [task.priority for task in workload.new_tasks(4_000)]
    shares = Counter(drawn)
    assert set(shares) == {TaskPriority.LOW, TaskPriority.HIGH}
    assert 0.7 < shares[TaskPriority.LOW] / 4_000 < 0.8  # seeded: this cannot flake
    assert [task.priority for task in workload.new_tasks(4_000)] == drawn


def test_mixed_draws_all_four_priorities() -> None:
    tasks = parse_workload("priority:mixed").new_tasks(400)
    assert {task.priority for task in tasks} == set(TaskPriority)


def test_one_generator_carries_on_across_calls() -> None:
    workload = parse_workload("priority:mixed")
    rng = workload.priority_rng()
    first, second = workload.new_tasks(50, rng=rng), workload.new_tasks(50, rng=rng)
    whole = workload.new_tasks(100)
    assert [t.priority for t in first + second] == [t.priority for t in whole]


async def test_a_store_accepts_the_tasks_and_claims_them_by_priority() -> None:
    workload = parse_workload("noop+priority:mixed+payload:64")
    async with open_store("memory://") as store:
        await store.enqueue(workload.new_tasks(200))
        claimed = await store.claim("w", 200, lease_s=30)
    priorities = [task.priority for task in claimed]
    assert len(claimed) == 200
    assert priorities == sorted(priorities, reverse=True)
    assert all(task.payload == "x" * 64 for task in claimed)
