"""The task model: validation of new tasks, priorities, outcomes, backoff arithmetic."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from taskbench.errors import InvalidTaskError
from taskbench.model import (
    MAX_PAYLOAD_BYTES,
    Outcome,
    RetryPolicy,
    Task,
    TaskPriority,
    TaskStatus,
    validate_new_task,
)


def test_new_task_defaults() -> None:
    task = Task.new("email", {"to": "a@example.org"}, now=100.0)
    assert (task.status, task.attempts, task.max_attempts) == (TaskStatus.QUEUED, 0, 3)
    assert (task.run_at, task.created_at, task.priority) == (100.0, 100.0, TaskPriority.NORMAL)
    assert task.payload == {"to": "a@example.org"}
    assert len(task.id) == 32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "task name must be a non-empty string"),
        ({"name": "x" * 201}, "the limit is 200"),
        ({"name": "nul\x00byte"}, "NUL"),
        ({"name": 42}, "task name must be a non-empty string"),
        ({"payload": {1, 2}}, "not JSON-serialisable"),
        ({"payload": float("nan")}, "not JSON-serialisable"),
        ({"payload": b"bytes"}, "not JSON-serialisable"),
        ({"payload": "x" * MAX_PAYLOAD_BYTES}, "the limit is 1,048,576"),
        ({"priority": "urgent"}, "unknown priority 'urgent'; accepted: low (0)"),
        ({"priority": 7}, "unknown priority 7"),
        ({"priority": True}, "unknown priority True"),
        ({"max_attempts": 0}, "max_attempts must be between 1"),
        ({"max_attempts": 2.5}, "max_attempts must be an integer"),
        ({"run_at": math.inf}, "run_at must be a finite number"),
        ({"id": ""}, "task id must be a non-empty string"),
        ({"id": "i" * 65}, "the limit is 64"),
    ],
)
def test_bad_new_task_is_refused_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    args = {"name": "job", "payload": None} | kwargs
    name, payload = args.pop("name"), args.pop("payload")
    with pytest.raises(InvalidTaskError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Task.new(name, payload, **args)  # type: ignore[arg-type]


def test_hand_built_tasks_are_checked_too() -> None:
    good = Task.new("job")
    for bad in (
        replace(good, payload_json="{broken"),
        replace(good, status=TaskStatus.SUCCEEDED),
        replace(good, attempts=1),
    ):
        with pytest.raises(InvalidTaskError):
            validate_new_task(bad)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("high", TaskPriority.HIGH), ("CRITICAL", TaskPriority.CRITICAL), (0, TaskPriority.LOW)],
)
def test_priority_parse(given: object, expected: TaskPriority) -> None:
    assert TaskPriority.parse(given) is expected


def test_outcomes_carry_the_lease_and_bound_the_error() -> None:
    task = replace(Task.new("job"), status=TaskStatus.RUNNING, attempts=2, lease_owner="w")
    outcome = Outcome.retry(task.lease, "e" * 5000 + "\x00", run_at=5.0, now=1.0)
    assert (outcome.lease.attempt, outcome.lease.owner) == (2, "w")
    assert outcome.error is not None and len(outcome.error) == 2000
    with pytest.raises(InvalidTaskError):
        Outcome.succeeded(task.lease, object(), now=1.0)


def test_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, factor=2.0, max_delay=10.0, jitter=False)
    assert [policy.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.backoff(10_000) == 10.0


def test_full_jitter_scales_the_ceiling() -> None:
    policy = RetryPolicy(base_delay=1.0, factor=3.0, max_delay=100.0)
    assert policy.backoff(3, rand=lambda: 0.5) == 4.5
    assert policy.backoff(3, rand=lambda: 0.0) == 0.0


def test_retryable_errors() -> None:
    policy = RetryPolicy(retry_on=(OSError,), fatal=(PermissionError,))
    assert policy.is_retryable(ConnectionError())
    assert not policy.is_retryable(PermissionError())
    assert not policy.is_retryable(ValueError())
    task = replace(Task.new("job", max_attempts=2), attempts=2)
    assert not policy.should_retry(task, ConnectionError())


def test_bad_retry_policy_is_refused() -> None:
    with pytest.raises(InvalidTaskError):
        RetryPolicy(factor=0.5)
