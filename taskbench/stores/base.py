"""The TaskStore contract: the Protocol, the capability flags, and the shared base class.

Design rules (every backend follows them; the contract suite in
``tests/contract`` checks them against each real server):

* **Leases.** ``claim`` moves up to ``limit`` due tasks from queued to running
  for one worker, in order of priority (highest first), then ``run_at``, then
  arrival, increments each task's ``attempts`` and sets a lease that expires
  ``lease_s`` seconds later. No two workers ever hold the same task at once.
* **Exactly-once completion.** ``finish`` applies an :class:`Outcome` only if
  the task is still running under that outcome's lease (same attempt, same
  owner). Anything else is refused, not applied, and not counted.
* **Nothing lost.** ``requeue_expired`` puts running tasks whose lease has
  expired back in the queue (or, after their last attempt, in the dead
  letters); ``requeue_abandoned`` does the same for running tasks whose owner
  is not among the live workers (it died before its lease ran out);
  ``release`` hands a claimed task back without spending an attempt.
* **Fencing.** Requeuing is a leader's duty in a distributed executor, and a
  leader can be deposed without knowing it (a pause, a partition). So
  ``requeue_expired`` and ``requeue_abandoned`` take an ``epoch``: with one,
  the store checks its fence in the same atomic step as the write (one
  transaction, one Lua script, one synchronous memory step). An epoch older
  than the newest the store has seen raises :class:`StaleEpochError` naming
  both and changes nothing; any other epoch becomes the newest seen, and the
  write applies. ``epoch=None`` writes unfenced, as a single-node executor
  does. ``issue_epoch`` hands out epochs above every epoch the store issued
  *or* saw; epochs made elsewhere (etcd's create revisions) are accepted as
  they come, so one fence serves both coordinators. The issued and the seen
  epoch share one record per store (SQL: a row of ``taskbench_fences``;
  Redis: a hash under the prefix; memory: two attributes). An epoch is an
  int from 0 to ``MAX_EPOCH``.
* **No promotion step.** A scheduled task needs no leader to "promote" it when
  it falls due: ``claim`` reads ``run_at`` directly, so a task becomes
  claimable the moment its ``run_at`` passes.
* **Batches.** Every write takes a sequence, so a backend can do it in one
  round trip.
* **Arguments are checked once, here, before any write.** A task goes
  through :func:`taskbench.model.validate_new_task`; every other argument
  through the ``_check_*`` helpers below: text is a str, UTF-8, without NUL
  (an id that is not text would match every row under MySQL's casts);
  times are finite within +-2**53 s (:func:`taskbench.model.is_time`: NaN, the
  infinities and 10**400 are refused, as is a ``now + lease_s`` past it);
  counts and attempts fit an INTEGER. Bad input raises ConfigError (a task,
  InvalidTaskError) naming the argument, and nothing is written. The checks
  are a few comparisons per task, so the hot path stays cheap.
* **Errors.** A backend translates its driver's exceptions into
  :mod:`taskbench.errors` (``StoreUnavailableError`` when its server cannot be
  reached) and never puts a password in a message.

:class:`BaseStore` does the bookkeeping once: argument checks, the clock,
``get``, the async context manager, and driver-error translation. A backend
implements only the storage calls, the ``_``-prefixed abstract methods.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import time
from collections.abc import Collection, Sequence
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from taskbench.errors import (
    ConfigError,
    InvalidTaskError,
    StaleEpochError,
    StoreError,
    TaskbenchError,
)
from taskbench.model import (
    MAX_ERROR_LENGTH,
    MAX_PAYLOAD_BYTES,
    Lease,
    Outcome,
    Task,
    TaskStatus,
    is_time,
    is_utf8,
    shown,
    validate_new_task,
)
from taskbench.urls import redact

MAX_EPOCH = 2**53 - 1
"""The largest epoch: every epoch up to it is exact in a double, so Redis's Lua
compares epochs as numbers without rounding (and SQL stores them as BIGINT)."""

MAX_COUNT = 2**31 - 1
"""The largest ``limit`` and lease ``attempt``: every backend's INTEGER holds it."""
MAX_WAIT_S = 86_400.0
"""``wait_for_work`` waits at most a day; a longer timeout is cut to it."""
_STATUS_VALUES = frozenset(status.value for status in TaskStatus)

# How a lost lease ends its task's last_error: "lease of attempt N held by W <reason>".
EXPIRED = "expired"
ABANDONED = "abandoned (worker not live)"


class Capability(enum.Flag):
    """What a store guarantees; callers read these instead of checking types."""

    NONE = 0
    PERSISTENT = enum.auto()
    """Tasks survive the process that wrote them (how well: see the durability study)."""
    MULTI_PROCESS = enum.auto()
    """Several processes on one machine may share the store."""
    MULTI_HOST = enum.auto()
    """Workers on several machines may share the store."""
    PRIORITY_ORDER = enum.auto()
    """Claims follow priority, then run_at, then arrival, exactly."""
    WAKEUP = enum.auto()
    """``wait_for_work`` returns as soon as another process enqueues (no polling)."""
    TRANSACTIONAL = enum.auto()
    """Each write is atomic and isolated (ACID transactions or atomic scripts)."""


@runtime_checkable
class TaskStore(Protocol):
    """What the executor, the benchmarks and the tests need from a store."""

    capabilities: Capability

    @property
    def url(self) -> str:
        """The store's URL with any password redacted."""
        ...

    async def open(self) -> None:
        """Connect and create the schema if it is missing (idempotent)."""

    async def close(self) -> None:
        """Release connections (idempotent)."""

    async def __aenter__(self) -> Self:
        """``async with open_store(url) as store``: open, and close on the way out."""
        ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def enqueue(self, tasks: Sequence[Task]) -> None:
        """Store new tasks, all or none; a duplicate id raises InvalidTaskError."""

    async def claim(
        self, worker: str, limit: int, *, lease_s: float, now: float | None = None
    ) -> list[Task]:
        """Lease up to ``limit`` due tasks to ``worker``; returns them as running."""
        ...

    async def finish(self, outcomes: Sequence[Outcome]) -> int:
        """Apply outcomes whose lease is current; returns how many were applied."""
        ...

    async def extend(
        self, leases: Sequence[Lease], *, lease_s: float, now: float | None = None
    ) -> int:
        """Push current leases' expiry to ``now + lease_s``; returns how many."""
        ...

    async def release(self, leases: Sequence[Lease]) -> int:
        """Requeue held tasks without spending their attempt; returns how many."""
        ...

    async def issue_epoch(self) -> int:
        """A new epoch, strictly greater than every epoch this store issued before
        (across processes/hosts), and than every epoch it has seen."""
        ...

    async def requeue_expired(self, *, now: float | None = None, epoch: int | None = None) -> int:
        """Requeue (or dead-letter, after the last attempt) expired leases.

        With ``epoch``, fenced: StaleEpochError, and nothing changed, if it is older
        than the newest epoch seen. ``epoch=None`` keeps the unfenced behaviour of
        single-node executors.
        """
        ...

    async def requeue_abandoned(
        self,
        live_workers: Collection[str],
        *,
        epoch: int | None = None,
        now: float | None = None,
    ) -> int:
        """Requeue running tasks whose lease owner is not in live_workers (their worker died):
        same rules as an expired lease (back to queued with last_error, or dead after the
        last attempt). Fenced by ``epoch`` as :meth:`requeue_expired` is."""
        ...

    async def get_many(self, ids: Sequence[str]) -> list[Task]:
        """The tasks with these ids that exist, in no particular order."""
        ...

    async def get(self, task_id: str) -> Task | None:
        """One task by id, or None."""
        ...

    async def counts(self) -> dict[TaskStatus, int]:
        """How many tasks are in each status (every status present, zeros too)."""
        ...

    async def list_dead(self, *, limit: int = 100) -> list[Task]:
        """Dead letters, oldest first."""
        ...

    async def requeue_dead(
        self, ids: Sequence[str] | None = None, *, now: float | None = None
    ) -> int:
        """Give dead tasks (these, or all) a fresh set of attempts; returns how many."""
        ...

    async def purge(self, statuses: Collection[TaskStatus] | None = None) -> int:
        """Delete tasks in these statuses (all tasks if None); returns how many."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when tasks may have become available, or after ``timeout`` seconds."""


def _is_key(value: object) -> bool:
    """Text a store can compare and bind as is: a str, without NUL, UTF-8."""
    return isinstance(value, str) and "\x00" not in value and is_utf8(value)


def _check_worker(worker: object) -> None:
    if not (_is_key(worker) and 0 < len(worker) <= 200):  # type: ignore[arg-type]
        raise ConfigError(
            "worker must be a non-empty string of up to 200 characters, UTF-8 "
            f"without NUL, got {shown(worker)}"
        )


def _check_positive(value: object, what: str) -> None:
    if not (is_time(value) and value > 0):  # type: ignore[operator]
        raise ConfigError(f"{what} must be a positive number up to 2**53, got {shown(value)}")


def _check_count(value: object, what: str) -> None:
    """A ``limit``: an int from 1 to MAX_COUNT (every backend binds it as an INTEGER)."""
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{what} must be an int, got {shown(value)}")
    if not 1 <= value <= MAX_COUNT:
        raise ConfigError(f"{what} must be from 1 to {MAX_COUNT}, got {shown(value)}")


def _clock(now: object, what: str = "now") -> float:
    """``now`` (or the time, if None) as a checked float."""
    if now is None:
        return time.time()
    if not is_time(now):
        raise ConfigError(f"{what} must be a finite number of seconds or None, got {shown(now)}")
    return float(now)  # type: ignore[arg-type]


def _expiry(now: object, lease_s: object) -> float:
    """When a lease given at ``now`` for ``lease_s`` seconds runs out (checked)."""
    _check_positive(lease_s, "lease_s")
    return _clock(now) + float(lease_s)  # type: ignore[arg-type]


def _check_ids(ids: object, what: str) -> list[str]:
    """Task ids to look up: a sequence (not a string) of text a store can bind.

    An id that is not text would not fail cleanly: MySQL casts ``'abc' = 0``
    (true), SQLite and Redis would encode it, memory would hash it.
    """
    if isinstance(ids, str | bytes) or not isinstance(ids, Collection):
        raise ConfigError(f"{what} must be a list of task ids, got {shown(ids)}")
    chosen = list(ids)
    for task_id in chosen:
        if not _is_key(task_id):
            raise ConfigError(
                f"a task id in {what} must be UTF-8 text without NUL: {shown(task_id)}"
            )
    return chosen


def _check_lease(lease: object) -> None:
    if not isinstance(lease, Lease):
        raise ConfigError(f"a lease must be a Lease, got {shown(lease)}")
    if not (_is_key(lease.task_id) and _is_key(lease.owner)):
        raise ConfigError(f"a lease's task_id and owner must be UTF-8 text: {shown(lease)}")
    attempt = lease.attempt
    if isinstance(attempt, bool) or not isinstance(attempt, int) or not 0 <= attempt <= MAX_COUNT:
        raise ConfigError(f"a lease's attempt must be an int from 0 to {MAX_COUNT}: {shown(lease)}")


def _check_leases(leases: Sequence[Lease]) -> None:
    for lease in leases:
        _check_lease(lease)


def _check_outcome(outcome: Outcome) -> None:
    if not isinstance(outcome, Outcome):
        raise ConfigError(f"an outcome must be an Outcome, got {shown(outcome)}")
    _check_lease(outcome.lease)
    task_id = outcome.lease.task_id
    if outcome.status not in (TaskStatus.SUCCEEDED, TaskStatus.QUEUED, TaskStatus.DEAD):
        raise ConfigError(f"an outcome of task {task_id!r} cannot be {shown(outcome.status)}")
    if outcome.status is TaskStatus.QUEUED and outcome.run_at is None:
        raise ConfigError(f"a retry of task {task_id!r} needs a run_at")
    _clock(outcome.finished_at, "an outcome's finished_at")
    if outcome.run_at is not None:
        _clock(outcome.run_at, "an outcome's run_at")
    _check_outcome_text(outcome)


def _check_outcome_text(outcome: Outcome) -> None:
    """The error and the result as the Outcome factories make them."""
    error, result = outcome.error, outcome.result_json
    if error is not None and not (_is_key(error) and len(error) <= MAX_ERROR_LENGTH):
        raise ConfigError(
            f"an outcome's error must be UTF-8 text (see truncate_error): {shown(error)}"
        )
    if result is not None and not (_is_key(result) and len(result) <= MAX_PAYLOAD_BYTES):
        raise ConfigError(
            f"an outcome's result_json must be JSON text (see encode_json): {shown(result)}"
        )


def wait_timeout(timeout: object) -> float:
    """A ``wait_for_work`` timeout as seconds from 0 to MAX_WAIT_S; NaN is refused."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout != timeout:
        raise ConfigError(f"timeout must be a number of seconds, got {shown(timeout)}")
    if timeout <= 0:
        return 0.0
    return float(timeout) if timeout < MAX_WAIT_S else MAX_WAIT_S


def _check_epoch(epoch: object) -> None:
    if epoch is None:
        return
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
        raise ConfigError(f"epoch must be an int from 0 to {MAX_EPOCH} or None, got {shown(epoch)}")


def _live_workers(workers: object) -> list[str]:
    """The live workers' names, checked, without duplicates."""
    if isinstance(workers, str | bytes) or not isinstance(workers, Collection):
        raise ConfigError(
            f"live_workers must be a collection of worker names, got {shown(workers)}"
        )
    for worker in workers:
        _check_worker(worker)
    return sorted(set(workers))


def stale_epoch(epoch: int, seen: int) -> StaleEpochError:
    """The error for a write fenced off: ``epoch`` is older than ``seen``."""
    return StaleEpochError(
        f"stale epoch {epoch}: the store has seen epoch {seen}, so a newer leader has "
        "taken over; the write was refused and nothing was changed"
    )


def lost_lease_error(attempt: int, owner: str | None, reason: str) -> str:
    """The ``last_error`` of a task whose lease was lost (the SQL and Lua build the same)."""
    return f"lease of attempt {attempt} held by {owner} {reason}"


def _statuses(statuses: object) -> list[TaskStatus] | None:
    """The statuses named (members or their values), or None for all; ConfigError otherwise.

    (``x in TaskStatus`` is no test: on Python 3.11 it raises TypeError for a non-member.)
    """
    if statuses is None:
        return None
    if isinstance(statuses, str | bytes) or not isinstance(statuses, Collection):
        raise ConfigError(f"statuses must be a collection of TaskStatus, got {shown(statuses)}")
    for status in statuses:
        if not (isinstance(status, str) and status in _STATUS_VALUES):
            known = ", ".join(sorted(_STATUS_VALUES))
            raise ConfigError(f"unknown status {shown(status)}; known: {known}")
    return [TaskStatus(s) for s in statuses]


class BaseStore(abc.ABC):
    """Bookkeeping shared by every backend; subclasses implement the ``_`` methods."""

    capabilities: Capability = Capability.NONE
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    """Exceptions of the backend's driver that :meth:`translate` turns into ours."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._opened = False
        self._work = asyncio.Event()

    @property
    def url(self) -> str:
        return redact(self._url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def translate(self, error: BaseException) -> TaskbenchError:
        """Our exception for a driver exception (backends refine this)."""
        return StoreError(f"{type(error).__name__} from {self.url}: {error}")

    async def _call(self, coro: Any) -> Any:
        """Await a storage call, translating driver errors at the boundary."""
        try:
            return await coro
        except TaskbenchError:
            raise
        except self.driver_errors as exc:
            raise self.translate(exc) from None

    async def open(self) -> None:
        if not self._opened:
            await self._call(self._open())
            self._opened = True

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self._call(self._close())

    async def enqueue(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            validate_new_task(task)
        if len({t.id for t in tasks}) != len(tasks):
            raise InvalidTaskError("the batch holds the same task id twice")
        if tasks:
            await self._call(self._enqueue(tasks))
            self._work.set()

    async def claim(
        self, worker: str, limit: int, *, lease_s: float, now: float | None = None
    ) -> list[Task]:
        _check_worker(worker)
        _check_count(limit, "limit")
        _check_positive(lease_s, "lease_s")
        clock = _clock(now)
        _clock(clock + lease_s, "now + lease_s")
        result: list[Task] = await self._call(self._claim(worker, limit, float(lease_s), clock))
        return result

    async def finish(self, outcomes: Sequence[Outcome]) -> int:
        if not outcomes:
            return 0
        for outcome in outcomes:
            _check_outcome(outcome)
        applied: int = await self._call(self._finish(outcomes))
        if any(o.status is TaskStatus.QUEUED for o in outcomes):
            self._work.set()
        return applied

    async def extend(
        self, leases: Sequence[Lease], *, lease_s: float, now: float | None = None
    ) -> int:
        expires = _clock(_expiry(now, lease_s), "now + lease_s")
        if not leases:
            return 0
        _check_leases(leases)
        extended: int = await self._call(self._extend(leases, expires))
        return extended

    async def release(self, leases: Sequence[Lease]) -> int:
        if not leases:
            return 0
        _check_leases(leases)
        released: int = await self._call(self._release(leases))
        self._work.set()
        return released

    async def issue_epoch(self) -> int:
        epoch: int = await self._call(self._issue_epoch())
        return epoch

    async def requeue_expired(self, *, now: float | None = None, epoch: int | None = None) -> int:
        _check_epoch(epoch)
        clock = _clock(now)
        count: int = await self._call(self._requeue_expired(clock, epoch))
        if count:
            self._work.set()
        return count

    async def requeue_abandoned(
        self,
        live_workers: Collection[str],
        *,
        epoch: int | None = None,
        now: float | None = None,
    ) -> int:
        live = _live_workers(live_workers)
        _check_epoch(epoch)
        clock = _clock(now)
        count: int = await self._call(self._requeue_abandoned(live, clock, epoch))
        if count:
            self._work.set()
        return count

    async def get_many(self, ids: Sequence[str]) -> list[Task]:
        chosen = _check_ids(ids, "ids")
        if not chosen:
            return []
        tasks: list[Task] = await self._call(self._get_many(chosen))
        return tasks

    async def get(self, task_id: str) -> Task | None:
        found = await self.get_many([task_id])
        return found[0] if found else None

    async def counts(self) -> dict[TaskStatus, int]:
        counted: dict[TaskStatus, int] = await self._call(self._counts())
        return {status: counted.get(status, 0) for status in TaskStatus}

    async def list_dead(self, *, limit: int = 100) -> list[Task]:
        _check_count(limit, "limit")
        dead: list[Task] = await self._call(self._list_dead(limit))
        return dead

    async def requeue_dead(
        self, ids: Sequence[str] | None = None, *, now: float | None = None
    ) -> int:
        chosen = None if ids is None else _check_ids(ids, "ids")
        clock = _clock(now)
        if chosen == []:
            return 0
        count: int = await self._call(self._requeue_dead(chosen, clock))
        if count:
            self._work.set()
        return count

    async def purge(self, statuses: Collection[TaskStatus] | None = None) -> int:
        wanted = _statuses(statuses)
        purged: int = await self._call(self._purge(wanted))
        return purged

    async def wait_for_work(self, timeout: float) -> None:
        """In-process wake-up on this store's own writes; backends with a
        server-side notification (LISTEN/NOTIFY, blocking pops) override it."""
        seconds = wait_timeout(timeout)  # before making the coroutine it would orphan
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), seconds)
        self._work.clear()

    # -- storage calls: each backend implements these --------------------------------

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _enqueue(self, tasks: Sequence[Task]) -> None: ...

    @abc.abstractmethod
    async def _claim(self, worker: str, limit: int, lease_s: float, now: float) -> list[Task]: ...

    @abc.abstractmethod
    async def _finish(self, outcomes: Sequence[Outcome]) -> int: ...

    @abc.abstractmethod
    async def _extend(self, leases: Sequence[Lease], expires_at: float) -> int: ...

    @abc.abstractmethod
    async def _release(self, leases: Sequence[Lease]) -> int: ...

    @abc.abstractmethod
    async def _issue_epoch(self) -> int: ...

    @abc.abstractmethod
    async def _requeue_expired(self, now: float, epoch: int | None) -> int:
        """Fenced by ``epoch`` (unless None) in the same atomic step as the write."""

    @abc.abstractmethod
    async def _requeue_abandoned(self, live: list[str], now: float, epoch: int | None) -> int:
        """Fenced by ``epoch`` (unless None) in the same atomic step as the write."""

    @abc.abstractmethod
    async def _get_many(self, ids: list[str]) -> list[Task]: ...

    @abc.abstractmethod
    async def _counts(self) -> dict[TaskStatus, int]: ...

    @abc.abstractmethod
    async def _list_dead(self, limit: int) -> list[Task]: ...

    @abc.abstractmethod
    async def _requeue_dead(self, ids: list[str] | None, now: float) -> int: ...

    @abc.abstractmethod
    async def _purge(self, statuses: list[TaskStatus] | None) -> int: ...
