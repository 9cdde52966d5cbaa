"""TaskExecutor: claims tasks from a store and runs them, with the report's missing features.

Two loops talk to the store, and their calls batch themselves. The claim
loop claims enough tasks to fill the free slots *and* a prefetch buffer (one
``claim`` call); the report loop sends the outcomes of every task that
finished since its last call (one ``finish`` call). They run side by side, so
on a server store a claim's round trip overlaps a finish's, and tasks from
the buffer start while the next claim is in flight. Tasks run as asyncio
tasks, at most ``concurrency`` at once; plain functions run in threads.

The buffer's size follows Little's law: it holds what the slots run during
two claim round trips (``2 * concurrency * claim seconds / task seconds``,
both moving averages, measured here), at most ``prefetch`` tasks. Short
tasks therefore get big claims and never wait for one (a drain of no-op
tasks claims hundreds per call), while slow tasks are not hoarded: with
tasks of a second and claims of milliseconds the buffer is a task or two.
Once tasks are buffered the loop claims again only when half the buffer's
room is free, so claims stay large.

The buffered tasks are leased like running ones: heartbeats extend their
leases, and :meth:`stop` releases them untouched (their attempt is given
back). The price of the buffer is ordering: a task of higher priority that
arrives after a claim waits behind the tasks already buffered.
``prefetch=0`` claims only for free slots, for strict order.

What the executor guarantees, with the store's leases (see stores/base.py):

* **retry**: a failed attempt is retried after the policy's backoff while the
  task has attempts left and the error is retryable; otherwise it goes to the
  dead letters with the error recorded. An unknown task name, a handler that
  raises, a timeout or a result that is not JSON all take this path; none
  stops the executor.
* **timeout**: a task that runs longer than ``timeout`` seconds fails with
  TaskTimeoutError (a thread running a plain function cannot be killed: its
  result is ignored).
* **priority**: the store hands out tasks in priority order, and the executor
  starts them in the order claimed (see the prefetch buffer above).
* **rate limits**: token buckets, global and per task name (ratelimit.py).
* **heartbeats**: leases of running and buffered tasks are extended every
  ``lease_s / 3``.
* **graceful shutdown**: :meth:`stop` stops claiming, lets running tasks
  finish within a grace period, then cancels the rest and releases their
  leases (their attempt is given back), and reports every outcome: nothing is
  lost.
* **store outages**: a store error is logged and retried with exponential
  backoff; outcomes are kept until the store accepts them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from taskbench.errors import (
    ConfigError,
    HandlerNotFoundError,
    TaskbenchError,
    TaskTimeoutError,
)
from taskbench.model import Outcome, RetryPolicy, Task, TaskStatus
from taskbench.ratelimit import RateLimit, RateLimiter
from taskbench.stores.base import TaskStore

log = logging.getLogger("taskbench.executor")

Handler = Callable[[Task], Awaitable[Any]] | Callable[[Task], Any]

_MAX_STORE_BACKOFF = 5.0
MAX_CLAIM_BATCH = 500
"""The most tasks asked for in one ``claim`` call (the default ``batch_size``), and
the most held at once by default (``concurrency`` + the default ``prefetch``)."""
PACE_WEIGHT = 0.1
"""Weight of the newest sample in the moving averages of task and claim seconds."""
MIN_TASK_S = 1e-6
MAX_REPORT_BATCH = 500
"""The most outcomes sent in one ``finish`` call: a store's statement stays small
and bounded even when the report loop has fallen behind."""


@dataclass(slots=True)
class PrefetchPace:
    """How many tasks to buffer: what the slots run in two claim round trips (Little's law)."""

    limit: int
    """The most tasks buffered (the executor's ``prefetch``)."""
    task_s: float | None = None
    claim_s: float | None = None

    def task_took(self, seconds: float) -> None:
        self.task_s = _moving_average(self.task_s, seconds)

    def claim_took(self, seconds: float) -> None:
        self.claim_s = _moving_average(self.claim_s, seconds)

    def target(self, concurrency: int) -> int:
        """The buffer to keep; 0 until a task and a claim have been timed."""
        if not self.limit or self.task_s is None or self.claim_s is None:
            return 0
        wanted = 2 * concurrency * self.claim_s / max(self.task_s, MIN_TASK_S)
        return min(self.limit, math.ceil(wanted))


def _moving_average(average: float | None, sample: float) -> float:
    return sample if average is None else average + PACE_WEIGHT * (sample - average)


class ExecutorMetrics(Protocol):
    """Hooks the executor calls; the benchmark's recorder implements them."""

    def on_claimed(self, tasks: Sequence[Task]) -> None: ...

    def on_outcome(self, task: Task, outcome: Outcome) -> None: ...


@dataclass(slots=True)
class ExecutorStats:
    """Counters of what this executor did."""

    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    refused: int = 0
    released: int = 0
    store_errors: int = 0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{id(object()):x}"


def _check_count(value: int | None, what: str) -> None:
    """None, or a whole number >= 0."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(f"{what} must be a whole number >= 0, got {value!r}")


def _check_positive(value: float | None, what: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{what} must be a positive number, got {value!r}")


class TaskExecutor:
    """Runs the tasks of one store with registered handlers."""

    def __init__(
        self,
        store: TaskStore,
        *,
        concurrency: int = 10,
        prefetch: int | None = None,
        batch_size: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        lease_s: float = 30.0,
        rate_limit: float | RateLimit | None = None,
        name_rate_limits: Mapping[str, float | RateLimit] | None = None,
        worker_id: str | None = None,
        metrics: ExecutorMetrics | None = None,
        poll_interval: float = 0.1,
        housekeeping: bool = True,
    ) -> None:
        _check_positive(concurrency, "concurrency")
        _check_positive(batch_size, "batch_size", allow_none=True)
        _check_count(prefetch, "prefetch")
        _check_positive(timeout, "timeout", allow_none=True)
        _check_positive(lease_s, "lease_s")
        _check_positive(poll_interval, "poll_interval")
        self.store = store
        self.concurrency = int(concurrency)
        default_prefetch = max(0, MAX_CLAIM_BATCH - self.concurrency)
        self.prefetch = default_prefetch if prefetch is None else int(prefetch)
        self.batch_size = int(batch_size or MAX_CLAIM_BATCH)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.lease_s = float(lease_s)
        self.worker_id = worker_id or default_worker_id()
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.housekeeping = housekeeping
        self.stats = ExecutorStats()
        self._limiter = RateLimiter(rate_limit, name_rate_limits)
        self._handlers: dict[str, tuple[Handler, bool]] = {}
        self._running: dict[str, tuple[Task, asyncio.Task[None]]] = {}
        self._ready: collections.deque[Task] = collections.deque()
        """Claimed, leased, not started yet: the prefetch buffer, in claim order."""
        self._pace = PrefetchPace(limit=self.prefetch)
        self._outcomes: list[tuple[Task, Outcome]] = []
        self._wakeup = asyncio.Event()
        self._outcomes_ready = asyncio.Event()
        self._reporting = False
        self._closing = False
        self._stopping = asyncio.Event()
        self._store_backoff = 0.0
        self._grace = 10.0

    # -- registration --------------------------------------------------------------

    def register(self, name: str, handler: Handler) -> None:
        """Run ``handler(task)`` for tasks named ``name`` (async def, or a plain function)."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a handler needs a non-empty task name, got {name!r}")
        if not callable(handler):
            raise ConfigError(f"the handler for {name!r} is not callable")
        self._handlers[name] = (handler, inspect.iscoroutinefunction(handler))

    def task(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""

        def decorate(handler: Handler) -> Handler:
            self.register(name, handler)
            return handler

        return decorate

    # -- running ------------------------------------------------------------------

    async def run(self, *, until_idle: bool = False) -> ExecutorStats:
        """Claim and run tasks until :meth:`stop` (or, with ``until_idle``, until
        nothing is queued or running). Returns the counters."""
        self._stopping.clear()
        self._closing = False
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        reporter = asyncio.create_task(self._report_loop())
        try:
            await self._claim_loop(until_idle)
        finally:
            heartbeat.cancel()
            await self._shut_down(reporter, grace=self._grace)
        return self.stats

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; running tasks get ``grace`` seconds, then are released."""
        self._grace = grace
        self._stopping.set()
        self._wakeup.set()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def _claim_loop(self, until_idle: bool) -> None:
        while not self._stopping.is_set():
            self._wakeup.clear()
            await asyncio.sleep(0)  # let tasks that finish in this tick free their slots
            self._start_ready()
            room = self._room()
            if room <= 0 or (self._ready and room < self._refill_at()):
                await self._wakeup.wait()
                continue
            limit = min(room, self.batch_size)
            claimed = await self._store_call(self._claim, limit)
            if claimed is None or len(claimed) == limit:
                continue  # a store error (backed off), or a full batch: there may be more
            if (
                until_idle
                and self._nothing_held()
                and await self._store_call(self._is_idle) is True
            ):
                return
            # A short claim drained what was due; a wake-up that came meanwhile is kept
            # by the store (an event, a NOTIFY, a token), so nothing is missed. Buffered
            # tasks still need the slots that free up, so a finish wakes the loop too.
            await self._wait_for_work(wake_on_finish=until_idle or bool(self._ready))

    def _room(self) -> int:
        """How many more tasks this executor may hold (running, plus the buffer)."""
        held = len(self._running) + len(self._ready)
        return self.concurrency + self._pace.target(self.concurrency) - held

    def _refill_at(self) -> int:
        """With tasks buffered, claim again only once this much room is free (big claims)."""
        return max(1, self._pace.target(self.concurrency) // 2)

    def _start_ready(self) -> None:
        """Start buffered tasks, in claim order, while slots are free."""
        ready, free = self._ready, self.concurrency - len(self._running)
        while ready and free > 0:
            self._start(ready.popleft())
            free -= 1

    async def _store_call(self, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run one store call; on a store error, log, back off, and return None."""
        try:
            result = await call(*args)
        except TaskbenchError as exc:
            self.stats.store_errors += 1
            self._store_backoff = min(_MAX_STORE_BACKOFF, max(0.05, self._store_backoff * 2))
            log.error(
                "store call %s failed (%s); retry in %.2fs", call.__name__, exc, self._store_backoff
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._store_backoff)
            return None
        self._store_backoff = 0.0
        return result if result is not None else True

    async def _claim(self, limit: int) -> list[Task]:
        began = time.monotonic()
        tasks = await self.store.claim(self.worker_id, limit, lease_s=self.lease_s)
        self._pace.claim_took(time.monotonic() - began)
        if tasks:
            self.stats.claimed += len(tasks)
            if self.metrics is not None:
                self.metrics.on_claimed(tasks)
            self._ready.extend(tasks)
            self._start_ready()
        return tasks

    def _start(self, task: Task) -> None:
        runner = asyncio.create_task(self._execute(task), name=f"task {task.id}")
        self._running[task.id] = (task, runner)
        runner.add_done_callback(lambda _: self._finished(task.id))

    def _finished(self, task_id: str) -> None:
        self._running.pop(task_id, None)
        self._wakeup.set()

    def _nothing_held(self) -> bool:
        """No task running or buffered here and no outcome waiting to be reported."""
        return not (self._running or self._ready or self._outcomes or self._reporting)

    async def _is_idle(self) -> bool:
        if self.housekeeping:
            await self.store.requeue_expired()
        counts = await self.store.counts()
        return counts[TaskStatus.QUEUED] + counts[TaskStatus.RUNNING] == 0

    async def _wait_for_work(self, *, wake_on_finish: bool) -> None:
        """Sleep until the store may have work, stop(), or (``wake_on_finish``) a task ends.

        With slots free and the store drained, a task that ends is no reason to
        claim: waking on it would cost an empty claim per finished task and, on
        Redis, cancel the BLPOP in flight, which makes redis-py drop (and later
        reopen) that connection. Only ``until_idle`` needs it, to see the end.
        """
        waiters = [
            asyncio.create_task(self.store.wait_for_work(self.poll_interval)),
            asyncio.create_task(self._stopping.wait()),
        ]
        if wake_on_finish:
            waiters.append(asyncio.create_task(self._wakeup.wait()))
        done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
        error = waiters[0].exception() if waiters[0] in done else None
        if error is not None:
            self.stats.store_errors += 1
            log.error("waiting for work failed: %s", error)
            await asyncio.sleep(self.poll_interval)

    # -- one task -----------------------------------------------------------------

    async def _execute(self, task: Task) -> None:
        began = time.monotonic()
        try:
            result = await self._call_handler(task)
            outcome = Outcome.succeeded(task.lease, result, now=time.time())
        except asyncio.CancelledError:
            raise  # shutdown: the lease is released, not failed
        except Exception as exc:
            outcome = self._failure(task, exc)
        self._pace.task_took(time.monotonic() - began)
        self._outcomes.append((task, outcome))
        self._outcomes_ready.set()

    async def _call_handler(self, task: Task) -> Any:
        registered = self._handlers.get(task.name)
        if registered is None:
            raise HandlerNotFoundError(f"no handler registered for task name {task.name!r}")
        if self._limiter.active:
            await self._limiter.acquire(task.name)
        if self.timeout is None:
            return await _invoke(*registered, task)
        try:
            async with asyncio.timeout(self.timeout):
                return await _invoke(*registered, task)
        except TimeoutError:
            raise TaskTimeoutError(f"task {task.id} ran longer than {self.timeout}s") from None

    def _failure(self, task: Task, error: Exception) -> Outcome:
        message = f"{type(error).__name__}: {error}"
        now = time.time()
        if self.retry.should_retry(task, error):
            delay = self.retry.backoff(task.attempts)
            log.info(
                "task %s attempt %d failed (%s); retry in %.2fs",
                *(task.id, task.attempts, message, delay),
            )
            return Outcome.retry(task.lease, message, run_at=now + delay, now=now)
        log.warning("task %s is dead after attempt %d: %s", task.id, task.attempts, message)
        return Outcome.dead(task.lease, message, now=now)

    # -- reporting ----------------------------------------------------------------

    async def _report_loop(self) -> None:
        """Send outcomes as they come, one batch per store call, until shutdown."""
        while True:
            await self._outcomes_ready.wait()
            self._outcomes_ready.clear()
            if self._closing:
                return
            if self._outcomes and await self._store_call(self._flush) is None:
                self._outcomes_ready.set()  # kept after a store error: try again
            if self._outcomes:
                self._outcomes_ready.set()  # more than one batch was waiting

    async def _flush(self) -> None:
        """Report finished tasks' outcomes in one store call (kept if it fails)."""
        if not self._outcomes:
            return
        batch = self._outcomes[:MAX_REPORT_BATCH]
        self._outcomes = self._outcomes[MAX_REPORT_BATCH:]
        self._reporting = True
        try:
            applied = await self.store.finish([outcome for _, outcome in batch])
        except BaseException:
            self._outcomes = batch + self._outcomes
            raise
        finally:
            self._reporting = False
        self._count(batch, applied)

    def _count(self, batch: list[tuple[Task, Outcome]], applied: int) -> None:
        stats = self.stats
        stats.refused += len(batch) - applied
        for task, outcome in batch:
            if outcome.status is TaskStatus.SUCCEEDED:
                stats.succeeded += 1
            elif outcome.status is TaskStatus.QUEUED:
                stats.retried += 1
            else:
                stats.dead += 1
            if self.metrics is not None:
                self.metrics.on_outcome(task, outcome)
        if applied < len(batch):
            log.warning("%d outcomes refused: their leases had moved on", len(batch) - applied)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            leases = [task.lease for task, _ in self._running.values()]
            leases += [task.lease for task in self._ready]
            if leases:
                with contextlib.suppress(TaskbenchError):
                    await self.store.extend(leases, lease_s=self.lease_s)

    async def _shut_down(self, reporter: asyncio.Task[None], grace: float) -> None:
        """Let running tasks finish within ``grace``, release the rest and the buffered
        tasks, report everything."""
        held = [task.lease for task in self._ready]
        self._ready.clear()
        runners = [runner for _, runner in self._running.values()]
        if runners:
            _, pending = await asyncio.wait(runners, timeout=grace)
            held += [task.lease for task, runner in self._running.values() if runner in pending]
            for runner in pending:
                runner.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if held:
            self.stats.released += await self._until_stored(self.store.release, held)
        self._closing = True
        self._outcomes_ready.set()
        await reporter  # finishes the call it is making, if any
        await self._report_remaining()

    async def _report_remaining(self) -> None:
        """At shutdown: report what is left, batch by batch, unless the store keeps failing."""
        while self._outcomes:
            waiting = len(self._outcomes)
            await self._until_stored(self._flush)
            if len(self._outcomes) >= waiting:
                log.error(
                    "%d outcomes could not be reported; their leases will expire and they rerun",
                    len(self._outcomes),
                )
                return

    async def _until_stored(self, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Shutdown must not drop outcomes: retry a store call a few times before giving up."""
        for attempt in range(5):
            try:
                return await call(*args)
            except TaskbenchError as exc:
                self.stats.store_errors += 1
                log.error("during shutdown, %s failed (%s)", call.__name__, exc)
                await asyncio.sleep(0.1 * 2**attempt)
        return 0


async def _invoke(handler: Handler, is_async: bool, task: Task) -> Any:
    if is_async:
        return await handler(task)
    result = await asyncio.to_thread(handler, task)
    if inspect.isawaitable(result):
        return await result
    return result
