"""Workloads: what the benchmark's tasks do, parsed from a short spec.

A spec names one or more steps joined by ``+``; each step is one of
:data:`ACCEPTED_FORMS`:

* ``noop``      return at once;
* ``sleep:MS``  wait MS milliseconds (I/O-bound work: the loop or thread is free);
* ``cpu:US``    spin for US microseconds (CPU-bound work: the loop or thread is busy);
* ``flaky:P``   fail with probability P (0 <= P <= 1) with a retryable error.

``sleep:5+flaky:0.1`` waits 5 ms, then fails one time in ten.

Design rules:

* Every workload gives an async handler (for the executor and the asyncio
  baseline) and a sync one (for the thread-pool baseline) that do the same
  work, so executors are compared on equal terms.
* Parsing is strict: a bad spec raises :class:`~taskbench.errors.ConfigError`
  listing the accepted forms. New step kinds (priorities, payload sizes)
  are added as one entry in :data:`_STEP_PARSERS`.
* Handlers are cheap: a ``noop`` drain measures the executor and the store,
  not the handler.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskbench.errors import ConfigError
from taskbench.model import Task

ACCEPTED_FORMS = ("noop", "sleep:MS", "cpu:US", "flaky:P (0<=P<=1)")
"""The step forms a spec may use, as an error message lists them."""

TASK_NAME = "bench"
"""The name every benchmark task carries (one handler runs them all)."""

AsyncHandler = Callable[[Task], Awaitable[Any]]
SyncHandler = Callable[[Task], Any]


class WorkloadFailure(Exception):
    """A deliberate, retryable failure of a ``flaky`` step."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One part of a workload, as an async call and an equivalent sync call."""

    async_call: Callable[[], Awaitable[None]]
    sync_call: Callable[[], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """A parsed spec: the task name, and handlers that run every step in order."""

    spec: str
    steps: tuple[Step, ...]
    task_name: str = TASK_NAME

    async def handle(self, task: Task) -> None:
        """The async handler (``executor.register(workload.task_name, workload.handle)``)."""
        for step in self.steps:
            await step.async_call()

    def handle_sync(self, task: Task) -> None:
        """The sync handler, for a thread pool."""
        for step in self.steps:
            step.sync_call()


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


_STEP_PARSERS: dict[str, Callable[[str | None], Step]] = {
    "noop": _noop,
    "sleep": _sleep,
    "cpu": _cpu,
    "flaky": _flaky,
}


def _bad_spec(spec: str, reason: str) -> ConfigError:
    forms = ", ".join(ACCEPTED_FORMS)
    return ConfigError(f"bad workload {spec!r}: {reason}; accepted: {forms}, joined by '+'")


def _no_argument(kind: str, argument: str | None) -> None:
    if argument is not None:
        raise _bad_spec(f"{kind}:{argument}", f"{kind} takes no argument")


def _number(kind: str, argument: str | None, *, unit: str) -> float:
    """A finite, non-negative number, or ConfigError naming the step."""
    try:
        value = float(argument) if argument is not None else float("nan")
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise _bad_spec(f"{kind}:{argument or ''}", f"{unit} must be a number >= 0")
    return value


def _parse_step(part: str) -> Step:
    kind, separator, argument = part.strip().partition(":")
    parser = _STEP_PARSERS.get(kind.lower())
    if parser is None:
        raise _bad_spec(part, f"unknown step {kind!r}")
    return parser(argument if separator else None)


def parse_workload(spec: object) -> Workload:
    """The :class:`Workload` for ``spec``; raise ConfigError listing the accepted forms."""
    if isinstance(spec, Workload):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise _bad_spec(str(spec), "expected a non-empty string")
    steps: Sequence[Step] = [_parse_step(part) for part in spec.split("+")]
    return Workload(spec=spec.strip(), steps=tuple(steps))
