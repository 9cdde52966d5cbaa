"""The task model: validation of new tasks, priorities, outcomes, backoff arithmetic."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from taskbench.errors import InvalidTaskError
from taskbench.model import (
    LEASE_FIELDS,
    MAX_PAYLOAD_BYTES,
    MAX_TIME,
    Outcome,
    RetryPolicy,
    Task,
    TaskPriority,
    TaskStatus,
    is_time,
    shown,
    truncate_error,
    validate_new_task,
)


def test_new_task_defaults() -> None:
    task = Task.new("email", {"to": "a@example.org"}, now=100.0)
    assert (task.status, task.attempts, task.max_attempts) == (TaskStatus.QUEUED, 0, 3)
    assert (task.run_at, task.created_at, task.priority) == (100.0, 100.0, TaskPriority.NORMAL)
    assert task.payload == {"to": "a@example.org"}
    assert len(task.id) == 32


def _nested(depth: int) -> object:
    value: object = None
    for _ in range(depth):
        value = [value]
    return value


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
        ({"id": "id\ud800"}, "task id must be UTF-8 text"),
        ({"name": "job\udc80"}, "task name must be UTF-8 text"),
        ({"payload": _nested(5_000)}, "nested too deeply"),
        ({"run_at": math.nan}, "run_at must be a finite number"),
        ({"run_at": 10**400}, "run_at must be a finite number"),
        ({"run_at": MAX_TIME * 2}, "run_at must be a finite number"),
        ({"now": -math.inf, "run_at": 1.0}, "created_at must be a finite number"),
        ({"max_attempts": 10**5_000}, "got an int of 16610 bits"),
        ({"priority": 10**5_000}, "unknown priority an int of 16610 bits"),
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
        replace(good, attempts=10**5_000),
        replace(good, status="queued"),  # type: ignore[arg-type]
        replace(good, priority="high"),  # type: ignore[arg-type]
        replace(good, payload_json="[" * 5_000),
        replace(good, payload_json='"\ud800"'),
        replace(good, payload_json="NaN"),
        replace(good, payload_json='{"a": -Infinity}'),
    ):
        with pytest.raises(InvalidTaskError):
            validate_new_task(bad)
    validate_new_task(replace(good, payload_json='"\\ud800"'))  # escaped: JSON text, UTF-8


@pytest.mark.parametrize("field", LEASE_FIELDS)
def test_a_new_task_leaves_the_fields_a_run_sets_empty(field: str) -> None:
    value = "w" if field in ("lease_owner", "last_error", "result_json") else 5.0
    with pytest.raises(InvalidTaskError, match=f"its {field} must be None"):
        validate_new_task(replace(Task.new("job"), **{field: value}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, True),
        (-1.5, True),
        (MAX_TIME, True),
        (2**53 + 1, False),
        (math.nan, False),
        (math.inf, False),
        (10**400, False),
        (True, False),
        ("1", False),
        (None, False),
    ],
)
def test_a_time_is_a_finite_number_within_the_exact_doubles(value: object, expected: bool) -> None:
    assert is_time(value) is expected


def test_shown_keeps_messages_short_and_never_raises() -> None:
    assert shown(10**5_000) == "an int of 16610 bits"
    assert len(shown("x" * 1_000_000)) <= 80
    assert shown(True) == "True"


def test_an_error_is_stored_as_utf8_without_nul() -> None:
    assert truncate_error("bad \udcff name\x00") == "bad \\udcff name\\0"
    assert truncate_error("é😀") == "é😀"
    with pytest.raises(InvalidTaskError):
        truncate_error(b"bytes")  # type: ignore[arg-type]


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
