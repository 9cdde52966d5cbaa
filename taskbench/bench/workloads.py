"""Workloads: what the benchmark's tasks carry and do, parsed from a short spec.

A spec names one or more parts joined by ``+``; each part is one of
:data:`ACCEPTED_FORMS`. Four parts say what a task *does*:

* ``noop``      return at once;
* ``sleep:MS``  wait MS milliseconds (I/O-bound work: the loop or thread is free);
* ``cpu:US``    spin for US microseconds (CPU-bound work: the loop or thread is busy);
* ``flaky:P``   fail with probability P (0 <= P <= 1) with a retryable error.

Two parts say what a task *is*, at most once each:

* ``priority:NAME``        every task has that priority (``low``, ``normal``,
  ``high``, ``critical``);
* ``priority:mixed``       each task's priority is drawn uniformly from the four;
* ``priority:NAME=W,...``  drawn with these weights (``priority:low=7,high=3``);
* ``payload:BYTES``        each task carries a payload of BYTES bytes (a JSON
  string of BYTES ASCII characters; without it the payload is ``null``).

A spec of shape parts only (``payload:1024``) runs ``noop`` tasks.

``sleep:5+flaky:0.1+priority:mixed+payload:1024`` waits 5 ms, then fails one
time in ten; its tasks have mixed priorities and 1 KiB payloads.

Design rules:

* Every workload gives an async handler (for the executor and the asyncio
  baseline) and a sync one (for the thread-pool baseline) that do the same
  work, so executors are compared on equal terms.
* Every workload makes its own tasks (:meth:`Workload.new_tasks`): the
  payload is encoded once per workload, not once per task, and priorities
  are drawn from a seeded generator, so two runs of a spec enqueue the same
  sequence of priorities.
* Parsing is strict: a bad spec raises :class:`~taskbench.errors.ConfigError`
  listing the accepted forms. A new part kind is one entry in
  :data:`_PART_PARSERS`.
* Handlers are cheap: a ``noop`` drain measures the executor and the store,
  not the handler.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from taskbench.errors import ConfigError, InvalidTaskError
from taskbench.model import MAX_PAYLOAD_BYTES, Task, TaskPriority, encode_json

ACCEPTED_FORMS = (
    "noop",
    "sleep:MS",
    "cpu:US",
    "flaky:P (0<=P<=1)",
    "priority:NAME|mixed|NAME=W,...",
    "payload:BYTES",
)
"""The part forms a spec may use, as an error message lists them."""

TASK_NAME = "bench"
"""The name every benchmark task carries (one handler runs them all)."""

PRIORITY_SEED = 20240601
"""Seeds the priority draws, so a spec always enqueues the same priority sequence."""

MAX_PAYLOAD_CHARS = MAX_PAYLOAD_BYTES - 2
"""The largest ``payload:BYTES``: the JSON string's two quotes count against the limit."""

AsyncHandler = Callable[[Task], Awaitable[Any]]
SyncHandler = Callable[[Task], Any]
PriorityWeights = tuple[tuple[TaskPriority, float], ...]

NORMAL_ONLY: PriorityWeights = ((TaskPriority.NORMAL, 1.0),)


class WorkloadFailure(Exception):
    """A deliberate, retryable failure of a ``flaky`` step."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One thing a task does, as an async call and an equivalent sync call."""

    async_call: Callable[[], Awaitable[None]]
    sync_call: Callable[[], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Priorities:
    """A ``priority:`` part: the priorities tasks are drawn from, with their weights."""

    weights: PriorityWeights


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """A ``payload:`` part: how many characters each task's payload string has."""

    chars: int


Part = Step | Priorities | Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """A parsed spec: the task name, the tasks' shape, and handlers that run every step."""

    spec: str
    steps: tuple[Step, ...]
    task_name: str = TASK_NAME
    priorities: PriorityWeights = NORMAL_ONLY
    payload_chars: int | None = None
    payload_json: str = "null"
    """The payload as JSON text, encoded once when the spec is parsed."""

    async def handle(self, task: Task) -> None:
        """The async handler (``executor.register(workload.task_name, workload.handle)``)."""
        for step in self.steps:
            await step.async_call()

    def handle_sync(self, task: Task) -> None:
        """The sync handler, for a thread pool."""
        for step in self.steps:
            step.sync_call()

    def new_tasks(
        self, count: int, *, now: float | None = None, rng: random.Random | None = None
    ) -> list[Task]:
        """``count`` new tasks created at ``now`` (default: the clock), shaped by the spec.

        Pass the same ``rng`` (:meth:`priority_rng`) to successive calls to go
        on with one sequence of priority draws instead of restarting it.
        """
        created = time.time() if now is None else now
        priorities = self.draw_priorities(count, rng or self.priority_rng())
        return [self.task_at(created, priority) for priority in priorities]

    def task_at(self, created: float, priority: TaskPriority = TaskPriority.NORMAL) -> Task:
        """One new task, due and created at ``created``, with this workload's payload."""
        return replace(
            _TEMPLATE,
            id=uuid.uuid4().hex,
            name=self.task_name,
            payload_json=self.payload_json,
            priority=priority,
            run_at=created,
            created_at=created,
        )

    def priority_rng(self) -> random.Random:
        """A generator for :meth:`draw_priorities`, seeded so every run draws the same."""
        return random.Random(PRIORITY_SEED)

    def draw_priorities(self, count: int, rng: random.Random) -> list[TaskPriority]:
        """``count`` priorities drawn with the spec's weights."""
        if len(self.priorities) == 1:
            return [self.priorities[0][0]] * count
        members, weights = zip(*self.priorities, strict=True)
        return rng.choices(members, weights=weights, k=count)


_TEMPLATE = Task.new(TASK_NAME, now=0.0)
"""A validated task that :meth:`Workload.task_at` copies (cheaper than Task.new per task)."""


# -- steps -----------------------------------------------------------------------------


async def _nothing() -> None:
    return None


def _nothing_sync() -> None:
    return None


def _noop(argument: str | None) -> Step:
    _no_argument("noop", argument)
    return Step(async_call=_nothing, sync_call=_nothing_sync)


def _sleep(argument: str | None) -> Step:
    seconds = _number("sleep", argument, unit="MS") / 1000.0

    async def sleep() -> None:
        await asyncio.sleep(seconds)

    return Step(async_call=sleep, sync_call=lambda: time.sleep(seconds))


def _spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def _cpu(argument: str | None) -> Step:
    seconds = _number("cpu", argument, unit="US") / 1_000_000.0

    async def spin() -> None:
        _spin(seconds)

    return Step(async_call=spin, sync_call=lambda: _spin(seconds))


def _fail_sometimes(probability: float) -> None:
    if random.random() < probability:
        raise WorkloadFailure(f"flaky step failed (probability {probability})")


def _flaky(argument: str | None) -> Step:
    probability = _number("flaky", argument, unit="P")
    if probability > 1:
        raise _bad_spec(f"flaky:{argument}", "P is a probability between 0 and 1")

    async def maybe_fail() -> None:
        _fail_sometimes(probability)

    return Step(async_call=maybe_fail, sync_call=lambda: _fail_sometimes(probability))


# -- task shape ------------------------------------------------------------------------


def _priority_name(part: str, name: str) -> TaskPriority:
    try:
        return TaskPriority.parse(name.strip().lower())
    except InvalidTaskError:
        names = ", ".join(p.name.lower() for p in TaskPriority)
        raise _bad_spec(part, f"unknown priority {name.strip()!r} (known: {names})") from None


def _weight(part: str, raw: str) -> float:
    try:
        weight = float(raw)
    except ValueError:
        weight = float("nan")
    if not 0 < weight < float("inf"):
        raise _bad_spec(part, f"weight {raw!r} must be a number > 0")
    return weight


def _weighted(part: str, argument: str) -> PriorityWeights:
    weights: dict[TaskPriority, float] = {}
    for item in argument.split(","):
        name, _, raw = item.partition("=")
        priority = _priority_name(part, name)
        if priority in weights:
            raise _bad_spec(part, f"priority {priority.name.lower()} is weighted twice")
        weights[priority] = _weight(part, raw)
    return tuple(sorted(weights.items(), reverse=True))


def _priority(argument: str | None) -> Priorities:
    part = f"priority:{argument or ''}"
    if not argument:
        raise _bad_spec(part, "priority needs a name, 'mixed', or NAME=WEIGHT pairs")
    if argument.strip().lower() == "mixed":
        return Priorities(weights=tuple((p, 1.0) for p in reversed(TaskPriority)))
    if "=" in argument:
        return Priorities(weights=_weighted(part, argument))
    return Priorities(weights=((_priority_name(part, argument), 1.0),))


def _payload(argument: str | None) -> Payload:
    size = _number("payload", argument, unit="BYTES")
    if size != int(size) or size > MAX_PAYLOAD_CHARS:
        raise _bad_spec(
            f"payload:{argument}", f"BYTES must be a whole number up to {MAX_PAYLOAD_CHARS:,}"
        )
    return Payload(chars=int(size))


_PART_PARSERS: dict[str, Callable[[str | None], Part]] = {
    "noop": _noop,
    "sleep": _sleep,
    "cpu": _cpu,
    "flaky": _flaky,
    "priority": _priority,
    "payload": _payload,
}


# -- parsing ---------------------------------------------------------------------------


def _bad_spec(spec: str, reason: str) -> ConfigError:
    forms = ", ".join(ACCEPTED_FORMS)
    return ConfigError(f"bad workload {spec!r}: {reason}; accepted: {forms}, joined by '+'")


def _no_argument(kind: str, argument: str | None) -> None:
    if argument is not None:
        raise _bad_spec(f"{kind}:{argument}", f"{kind} takes no argument")


def _number(kind: str, argument: str | None, *, unit: str) -> float:
    """A finite, non-negative number, or ConfigError naming the part."""
    try:
        value = float(argument) if argument is not None else float("nan")
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise _bad_spec(f"{kind}:{argument or ''}", f"{unit} must be a number >= 0")
    return value


def _parse_part(part: str) -> Part:
    kind, separator, argument = part.strip().partition(":")
    parser = _PART_PARSERS.get(kind.lower())
    if parser is None:
        raise _bad_spec(part, f"unknown part {kind!r}")
    return parser(argument if separator else None)


def _only_one(spec: str, parts: Sequence[Part], kind: type[Priorities | Payload]) -> Any:
    found = [part for part in parts if isinstance(part, kind)]
    if len(found) > 1:
        raise _bad_spec(spec, f"{kind.__name__.lower()} is given {len(found)} times")
    return found[0] if found else None


def parse_workload(spec: object) -> Workload:
    """The :class:`Workload` for ``spec``; raise ConfigError listing the accepted forms."""
    if isinstance(spec, Workload):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise _bad_spec(str(spec), "expected a non-empty string")
    parts = [_parse_part(part) for part in spec.split("+")]
    steps = tuple(part for part in parts if isinstance(part, Step)) or (_noop(None),)
    priorities: Priorities | None = _only_one(spec, parts, Priorities)
    payload: Payload | None = _only_one(spec, parts, Payload)
    chars = None if payload is None else payload.chars
    return Workload(
        spec=spec.strip(),
        steps=steps,
        priorities=NORMAL_ONLY if priorities is None else priorities.weights,
        payload_chars=chars,
        payload_json=encode_json(None if chars is None else "x" * chars, "payload"),
    )


__all__ = [
    "ACCEPTED_FORMS",
    "TASK_NAME",
    "AsyncHandler",
    "SyncHandler",
    "Workload",
    "WorkloadFailure",
    "parse_workload",
]
