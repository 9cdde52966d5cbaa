"""The task model: what a task is, its states, its priority and its retry policy.

Pure data, no I/O. Every type is a frozen dataclass (or an enum); a state
change makes a new value with :func:`dataclasses.replace`.

Times are POSIX timestamps in seconds (``float``), taken from the client's
clock. One representation serves every backend unchanged: a SQL ``DOUBLE``
column, a Redis sorted-set score, a heap key in memory.

The payload and the result are kept as JSON *text*: a task is validated and
encoded once, when it is made, and stores pass the text through untouched.
"""

from __future__ import annotations

import json
import random
import reprlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from taskbench.errors import InvalidTaskError

MAX_PAYLOAD_BYTES = 1_048_576
"""The largest payload (and result), as encoded JSON text, that a task may carry."""

MAX_NAME_LENGTH = 200
MAX_ID_LENGTH = 64
MAX_ERROR_LENGTH = 2_000
DEFAULT_MAX_ATTEMPTS = 3
MAX_MAX_ATTEMPTS = 1_000
MAX_TIME = float(2**53)
"""The largest time (or duration) in seconds, either sign: every int up to it is
exact in a double, so each backend stores the time it is given (a SQL DOUBLE,
a Redis score, an int64 bind) and NaN, the infinities and 10**400 are refused."""
LEASE_FIELDS = (
    "started_at",
    "finished_at",
    "lease_owner",
    "lease_expires_at",
    "last_error",
    "result_json",
)
"""The fields a store sets as a task runs: a new task must leave them None."""

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80


def shown(value: object) -> str:
    """``repr(value)`` for a message, kept short: a 1 MiB string is cut, and a
    5,000-digit int (whose repr raises ValueError) is described instead."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    try:
        return _SHOWN.repr(value)
    except Exception:  # a hostile __repr__: name the type instead
        return f"a {type(value).__name__}"


def is_time(value: object) -> bool:
    """Whether ``value`` is a number of seconds a store can keep: an int or a float
    (not a bool) within +-MAX_TIME. NaN compares false, so it is refused too."""
    if type(value) is float or type(value) is int:  # the hot path: no isinstance chain
        return -MAX_TIME <= value <= MAX_TIME
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return -MAX_TIME <= value <= MAX_TIME


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (it holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class TaskStatus(StrEnum):
    """Where a task is in its life: queued -> running -> succeeded or dead.

    A failed attempt that may be retried goes from running back to queued,
    with a later ``run_at``.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.DEAD)


class TaskPriority(IntEnum):
    """The report's four priorities; a higher value is claimed first."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, value: object) -> TaskPriority:
        """Accept a member, its value (0-3) or its name (any case)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
            return cls(value)
        accepted = ", ".join(f"{m.name.lower()} ({m.value})" for m in cls)
        raise InvalidTaskError(f"unknown priority {shown(value)}; accepted: {accepted}")


def encode_json(value: Any, what: str) -> str:
    """Encode ``value`` as compact JSON text, or raise InvalidTaskError."""
    if value is None:  # the common no-result case, on every task's hot path
        return "null"
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidTaskError(f"{what} is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise InvalidTaskError(f"{what} is nested too deeply to encode as JSON") from None
    if len(text) > MAX_PAYLOAD_BYTES:
        raise InvalidTaskError(
            f"{what} is {len(text):,} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES:,}"
        )
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """Proof that ``owner`` holds attempt ``attempt`` of task ``task_id``."""

    task_id: str
    attempt: int
    owner: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One unit of work and everything a store knows about it.

    Make new tasks with :meth:`Task.new`, which validates its arguments.
    """

    id: str
    name: str
    payload_json: str = "null"
    priority: TaskPriority = TaskPriority.NORMAL
    status: TaskStatus = TaskStatus.QUEUED
    attempts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    run_at: float
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    last_error: str | None = None
    result_json: str | None = None

    @classmethod
    def new(
        cls,
        name: str,
        payload: Any = None,
        *,
        priority: object = TaskPriority.NORMAL,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        run_at: float | None = None,
        id: str | None = None,
        now: float | None = None,
    ) -> Task:
        """A queued task, validated; raises InvalidTaskError naming what is wrong."""
        created = time.time() if now is None else now
        task = cls(
            id=uuid.uuid4().hex if id is None else id,
            name=name,
            payload_json=encode_json(payload, "payload"),
            priority=TaskPriority.parse(priority),
            max_attempts=max_attempts,
            run_at=created if run_at is None else run_at,
            created_at=created,
        )
        validate_new_task(task)
        return task

    @property
    def payload(self) -> Any:
        return json.loads(self.payload_json)

    @property
    def result(self) -> Any:
        return None if self.result_json is None else json.loads(self.result_json)

    @property
    def lease(self) -> Lease:
        """The lease of the current attempt (meaningful while running)."""
        return Lease(task_id=self.id, attempt=self.attempts, owner=self.lease_owner or "")


def _check_text(value: object, what: str, max_length: int) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidTaskError(f"{what} must be a non-empty string, got {shown(value)}")
    if len(value) > max_length:
        raise InvalidTaskError(f"{what} is {len(value)} characters; the limit is {max_length}")
    if "\x00" in value:
        raise InvalidTaskError(f"{what} must not contain a NUL character")
    if not is_utf8(value):
        raise InvalidTaskError(f"{what} must be UTF-8 text, got a lone surrogate in {shown(value)}")


def _check_number(value: object, what: str) -> None:
    if not is_time(value):
        raise InvalidTaskError(
            f"{what} must be a finite number of seconds within +-2**53, got {shown(value)}"
        )


def _check_max_attempts(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidTaskError(f"max_attempts must be an integer, got {shown(value)}")
    if not 1 <= value <= MAX_MAX_ATTEMPTS:
        raise InvalidTaskError(
            f"max_attempts must be between 1 and {MAX_MAX_ATTEMPTS}, got {shown(value)}"
        )


def _check_is_new(task: Task) -> None:
    """A new task is queued, has no attempt, and none of the fields a run sets."""
    if task.status is not TaskStatus.QUEUED or type(task.attempts) is not int or task.attempts:
        raise InvalidTaskError(
            f"task {task.id!r} is not new "
            f"(status {shown(task.status)}, attempts {shown(task.attempts)})"
        )
    for name in LEASE_FIELDS:
        if getattr(task, name) is not None:
            raise InvalidTaskError(f"task {task.id!r} is new, so its {name} must be None")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_STRICT_JSON = json.JSONDecoder(parse_constant=_refuse_constant)
"""Decodes JSON as :func:`encode_json` writes it: NaN and Infinity are refused."""


def _check_payload(task: Task) -> None:
    text = task.payload_json
    if not isinstance(text, str) or len(text) > MAX_PAYLOAD_BYTES:
        raise InvalidTaskError(f"payload of task {task.id!r} is not JSON text within the limit")
    if not is_utf8(text):
        raise InvalidTaskError(f"payload of task {task.id!r} holds a lone surrogate (not UTF-8)")
    try:
        _STRICT_JSON.decode(text)
    except ValueError:
        raise InvalidTaskError(f"payload of task {task.id!r} is not valid JSON text") from None
    except RecursionError:
        raise InvalidTaskError(f"payload of task {task.id!r} is nested too deeply") from None


def validate_new_task(task: Task) -> None:
    """Check a task about to be enqueued; raise InvalidTaskError naming the fault.

    Stores call this on every task they are given, so a hand-built ``Task``
    cannot smuggle bad data past :meth:`Task.new`: its text must be UTF-8
    without NUL, its times finite (:func:`is_time`), its priority a
    TaskPriority (or its int), and the fields a run sets (LEASE_FIELDS) None.
    """
    if not isinstance(task, Task):
        raise InvalidTaskError(f"a task must be a Task, got {shown(task)}")
    _check_text(task.id, "task id", MAX_ID_LENGTH)
    _check_text(task.name, "task name", MAX_NAME_LENGTH)
    if not isinstance(task.priority, int):
        raise InvalidTaskError(f"priority must be a TaskPriority, got {shown(task.priority)}")
    TaskPriority.parse(task.priority)
    _check_max_attempts(task.max_attempts)
    _check_number(task.run_at, "run_at")
    _check_number(task.created_at, "created_at")
    _check_is_new(task)
    _check_payload(task)


def truncate_error(message: str) -> str:
    """Errors are stored, so they are bounded, never carry NUL, and are UTF-8
    (a lone surrogate, as from a surrogate-escaped file name, becomes ``\\udcff``)."""
    if not isinstance(message, str):
        raise InvalidTaskError(f"an error must be text, got {shown(message)}")
    if not message.isascii():
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return message.replace("\x00", "\\0")[:MAX_ERROR_LENGTH]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one attempt ended, as the executor reports it to the store.

    ``status`` is SUCCEEDED, QUEUED (retry at ``run_at``) or DEAD. A store
    applies it only if ``lease`` is still the task's current lease.
    """

    lease: Lease
    status: TaskStatus
    finished_at: float
    result_json: str | None = None
    error: str | None = None
    run_at: float | None = None

    @classmethod
    def succeeded(cls, lease: Lease, result: Any = None, *, now: float) -> Outcome:
        return cls(
            lease=lease,
            status=TaskStatus.SUCCEEDED,
            finished_at=now,
            result_json=encode_json(result, "result"),
        )

    @classmethod
    def retry(cls, lease: Lease, error: str, *, run_at: float, now: float) -> Outcome:
        return cls(
            lease=lease,
            status=TaskStatus.QUEUED,
            finished_at=now,
            error=truncate_error(error),
            run_at=run_at,
        )

    @classmethod
    def dead(cls, lease: Lease, error: str, *, now: float) -> Outcome:
        return cls(
            lease=lease, status=TaskStatus.DEAD, finished_at=now, error=truncate_error(error)
        )


def _default_retryable() -> tuple[type[BaseException], ...]:
    return (Exception,)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter and a cap, and which errors retry.

    The number of attempts is not here: it is ``Task.max_attempts``, stored
    with the task, so that every worker (and the store, when it dead-letters
    an expired lease) applies the same limit after a crash.

    Attempt ``n`` (1-based) that fails waits ``min(max_delay, base_delay *
    factor ** (n - 1))`` seconds, scaled by a uniform random factor in
    ``[0, 1)`` when ``jitter`` is on ("full jitter", as AWS recommends).
    An error that is an instance of ``fatal``, or not of ``retry_on``, goes
    straight to the dead letters.
    """

    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = field(default_factory=_default_retryable)
    fatal: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if not (self.base_delay >= 0 and self.max_delay >= 0 and self.factor >= 1):
            raise InvalidTaskError(
                "retry policy needs base_delay >= 0, max_delay >= 0 and factor >= 1, got "
                f"{self.base_delay}, {self.max_delay}, {self.factor}"
            )

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 64)
        ceiling = min(self.max_delay, self.base_delay * self.factor**exponent)
        return ceiling * rand() if self.jitter else ceiling

    def is_retryable(self, error: BaseException) -> bool:
        return isinstance(error, self.retry_on) and not isinstance(error, self.fatal)

    def should_retry(self, task: Task, error: BaseException) -> bool:
        return task.attempts < task.max_attempts and self.is_retryable(error)
