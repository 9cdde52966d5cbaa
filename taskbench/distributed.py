"""DistributedExecutor: several processes share one store and one coordinator, and survive
the loss of any one of them.

Every process runs a :class:`~taskbench.executor.TaskExecutor` on the shared
store (with ``housekeeping=False``) and joins the coordinator's membership
under one name, which is also the owner of every lease it takes. One process
at a time is the leader; it runs the **duties** every ``duty_period``:

* ``requeue_expired(epoch=E)``: leases that ran out (a hung worker);
* ``requeue_abandoned(members, epoch=E)``: leases held by a worker that is no
  longer a member (a dead worker: its session ran out after one TTL), so a
  dead worker's tasks go back to the queue within one TTL plus one duty period.

Design rules:

* **Act only while the lease can be proven.** Before each write the leader
  checks ``coordinator.leadership`` (the self-fencing deadline, no I/O); once
  it is None the leader records ``deposed`` and campaigns again.
* **Fencing, not trust.** Every duty write carries the leadership's epoch;
  the store refuses a stale one with :class:`~taskbench.errors.StaleEpochError`.
  On a refusal the process records ``refused``, resigns and campaigns again.
  ``self_fencing=False`` (a study knob) skips the deadline check and trusts
  the won epoch until the store refuses it: the store's fence alone then keeps
  a paused leader's writes out.
* **Epochs**: etcd's is the leader key's create revision; Redis takes its
  epochs from the store (:func:`open_fenced_coordinator` wires
  ``epoch_source=store.issue_epoch``), so the store's fence and the election
  count in the same units.
* **Leaderless mode** (Airflow's HA scheduler design, a comparison row for
  the study): no election; every worker runs the duties itself without an
  epoch, and the stores' row locks / atomic scripts keep them correct.
* **Stopping**: :meth:`DistributedExecutor.stop` cancels the duty loop
  (which checks for a cancellation a driver swallowed after each call, see
  :mod:`taskbench.coordination.base`) and resigns *first*, so the next
  campaigner takes over at once (a deleted key, not an expired one), then
  drains the executor gracefully; membership ends when the caller closes the
  coordinator, after the executor has handed back what it held.
* **Timelines**: each leadership change and duty round is a
  :class:`LeadershipEvent` (wall-clock time, kind, epoch, worker), kept in
  memory and passed to ``on_event`` (the CLI appends them to a JSON-lines
  file); :func:`read_events` reads them back and :func:`stale_writes_accepted`
  checks them for the failover figures; :func:`overlapping_epochs` finds two
  epochs that acted at the same time.

A known window: a worker that joins and claims between the leader's member
read and its ``requeue_abandoned`` can see that claim requeued. Its
completion is then refused (the lease moved on), so the cost is one extra
execution, never a lost or doubled completion.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import inspect
import itertools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taskbench.coordination import COORDINATORS, Coordinator, Leadership, open_coordinator
from taskbench.coordination.base import cancel_and_wait, check_seconds, raise_if_cancel_requested
from taskbench.errors import ConfigError, CoordinatorError, StaleEpochError, TaskbenchError
from taskbench.executor import ExecutorStats, Handler, TaskExecutor
from taskbench.stores.base import TaskStore

log = logging.getLogger("taskbench.distributed")

EVENTS_KEPT = 10_000
"""How many recent events :attr:`DistributedExecutor.events` keeps in memory."""


class Mode(enum.StrEnum):
    """Who runs the duties."""

    LEADER = "leader"
    """One elected leader, with fenced writes."""
    LEADERLESS = "leaderless"
    """Every worker, without an epoch."""


class EventKind(enum.StrEnum):
    ELECTED = "elected"
    """This worker won an election with ``epoch``."""
    DUTIES = "duties"
    """A duty round's writes were applied."""
    REFUSED = "refused"
    """The store refused a duty write: ``epoch`` was stale."""
    DEPOSED = "deposed"
    """This worker found it could no longer prove its leadership."""
    RESIGNED = "resigned"
    """This worker gave its leadership up (stopping)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadershipEvent:
    """One point on a leadership timeline; times are ``time.time()``.

    For a duty round (``duties``, ``refused``), ``sent_at`` is when its last
    write was sent and ``at`` when the round ended; for ``resigned``, when the
    resignation was sent (the successor may win before its reply arrives)."""

    kind: EventKind
    worker_id: str
    epoch: int | None
    at: float
    sent_at: float | None = None
    requeued_expired: int = 0
    requeued_abandoned: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> LeadershipEvent:
        fields = json.loads(line)
        return cls(**{**fields, "kind": EventKind(fields["kind"])})


EventSink = Callable[[LeadershipEvent], None]


# -- files that survive a kill -9 -------------------------------------------------------


class LineLog:
    """An append-only text file written with one ``write(2)`` per line.

    Nothing is buffered in the process, so every line appended before a
    SIGKILL is in the file (the kernel holds it); lines from one writer never
    interleave with another's (``O_APPEND``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, line: str) -> None:
        os.write(self._fd, (line + "\n").encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_lines(paths: Iterable[Path]) -> Iterator[str]:
    """Every complete line of these files (a line cut short by a kill is skipped)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            text = path.read_text()
            complete = text if text.endswith("\n") else text.rpartition("\n")[0]
            yield from (line for line in complete.splitlines() if line)


def read_events(paths: Iterable[Path]) -> list[LeadershipEvent]:
    """The events in these JSON-lines files, in time order."""
    events = [LeadershipEvent.from_json(line) for line in read_lines(paths)]
    return sorted(events, key=lambda event: event.at)


# -- wiring -----------------------------------------------------------------------------


def open_fenced_coordinator(url: str, store: TaskStore, **options: Any) -> Coordinator:
    """:func:`open_coordinator`, with ``store.issue_epoch`` as the epoch source of a
    backend that takes one (Redis); etcd makes its own epochs."""
    backend, _ = COORDINATORS.resolve(url)
    if "epoch_source" in inspect.signature(backend).parameters:
        options.setdefault("epoch_source", store.issue_epoch)
    return open_coordinator(url, **options)


def check_duty_period(value: float) -> float:
    return check_seconds(value, "duty_period")


def check_mode(value: str) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        known = ", ".join(mode.value for mode in Mode)
        raise ConfigError(f"unknown mode {value!r}; known: {known}") from None


@dataclass(slots=True)
class _Round:
    """What one duty round has done so far."""

    sent_at: float | None = None
    """When its latest write was sent (``time.time()``)."""
    expired: int = 0
    abandoned: int = 0


_RESERVED_OPTIONS = {"worker_id", "housekeeping"}
"""Executor options the DistributedExecutor sets itself."""


class DistributedExecutor:
    """A TaskExecutor plus membership, an election and the leader's duties."""

    def __init__(
        self,
        store: TaskStore,
        coordinator: Coordinator,
        *,
        concurrency: int,
        duty_period: float = 1.0,
        mode: Mode | str = Mode.LEADER,
        self_fencing: bool = True,
        on_event: EventSink | None = None,
        **executor_options: Any,
    ) -> None:
        reserved = _RESERVED_OPTIONS & executor_options.keys()
        if reserved:
            raise ConfigError(f"the DistributedExecutor sets {', '.join(sorted(reserved))} itself")
        self.store = store
        self.coordinator = coordinator
        self.duty_period = check_duty_period(duty_period)
        self.mode = check_mode(mode)
        self.self_fencing = bool(self_fencing)
        self.executor = TaskExecutor(
            store,
            concurrency=concurrency,
            worker_id=coordinator.worker_id,
            housekeeping=False,
            **executor_options,
        )
        self.events: deque[LeadershipEvent] = deque(maxlen=EVENTS_KEPT)
        self._on_event = on_event
        self._acting: Leadership | None = None
        self._duties: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._stopper: asyncio.Task[None] | None = None

    @property
    def worker_id(self) -> str:
        return self.coordinator.worker_id

    @property
    def acting_leadership(self) -> Leadership | None:
        """The leadership this process is acting on now, if any."""
        return self._acting

    def register(self, name: str, handler: Handler) -> None:
        """Run ``handler(task)`` for tasks named ``name`` (see TaskExecutor.register)."""
        self.executor.register(name, handler)

    # -- running ------------------------------------------------------------------

    async def run(self) -> ExecutorStats:
        """Join, then execute tasks and run the duties until :meth:`stop`.

        The store and the coordinator must be open; the caller closes them
        afterwards (closing the coordinator ends the membership)."""
        if self._stop_requested:
            return self.executor.stats
        await self.coordinator.join()
        self._duties = asyncio.create_task(self._duty_loop(), name=f"duties {self.worker_id}")
        self._duties.add_done_callback(self._stop_if_duties_failed)
        try:
            return await self.executor.run()
        finally:
            await self._stop_duties()

    async def stop(self, grace: float = 10.0) -> None:
        """Resign at once (handover), then let running tasks finish within ``grace``."""
        self._stop_requested = True
        await self._stop_duties()
        await self.executor.stop(grace)

    async def _stop_duties(self) -> None:
        """Cancel the duty loop, then resign; re-raises a failure of the loop."""
        duties, self._duties = self._duties, None
        if duties is not None:
            await cancel_and_wait(duties)  # a driver may swallow one cancellation
            with contextlib.suppress(asyncio.CancelledError):
                await duties
        await self._resign()

    def _stop_if_duties_failed(self, duties: asyncio.Task[None]) -> None:
        if not duties.cancelled() and duties.exception() is not None:
            log.error("%s: the duty loop failed; stopping", self.worker_id)
            self._stopper = asyncio.create_task(self.executor.stop())

    async def _resign(self) -> None:
        held, self._acting = self._acting, None
        if held is None:
            return
        sent_at = time.time()
        try:
            await self.coordinator.resign()
        except CoordinatorError as exc:
            log.warning("%s: could not resign (the key expires after ttl): %s", self.worker_id, exc)
        self._record(EventKind.RESIGNED, held.epoch, sent_at=sent_at)

    # -- the duty loop ------------------------------------------------------------

    async def _duty_loop(self) -> None:
        if self.mode is Mode.LEADERLESS:
            while True:
                await self._duty_round(None)
                raise_if_cancel_requested()
                await asyncio.sleep(self.duty_period)
        while True:
            leadership = await self._campaign()
            raise_if_cancel_requested()  # campaign() does too; this guards the epoch source
            self._acting = leadership
            self._record(EventKind.ELECTED, leadership.epoch)
            await self._lead(leadership)

    async def _campaign(self) -> Leadership:
        while True:
            try:
                return await self.coordinator.campaign()
            except TaskbenchError as exc:  # the coordinator's, or the store's epoch source's
                log.warning("%s: campaign failed (%s); retrying", self.worker_id, exc)
                await asyncio.sleep(self.duty_period)

    async def _lead(self, leadership: Leadership) -> None:
        """Run the duties while ``leadership`` holds; return when it is lost or refused."""
        while self._may_write(leadership):
            if not await self._duty_round(leadership):
                self._acting = None
                with contextlib.suppress(CoordinatorError):
                    await self.coordinator.resign()  # so that campaigning starts afresh
                return
            raise_if_cancel_requested()
            await asyncio.sleep(self.duty_period)
        self._acting = None
        log.warning("%s: no longer leader (epoch %d)", self.worker_id, leadership.epoch)
        self._record(EventKind.DEPOSED, leadership.epoch)

    def _may_write(self, leadership: Leadership | None) -> bool:
        if leadership is None or not self.self_fencing:
            return True
        return self.coordinator.leadership == leadership

    async def _duty_round(self, leadership: Leadership | None) -> bool:
        """One round of duties; False if the store refused our epoch."""
        epoch = None if leadership is None else leadership.epoch
        done = _Round()
        try:
            await self._run_duties(leadership, done)
        except StaleEpochError as exc:
            log.warning("%s: the store refused epoch %s: %s", self.worker_id, epoch, exc)
            self._record(EventKind.REFUSED, epoch, sent_at=done.sent_at)
            return False
        except TaskbenchError as exc:
            log.warning("%s: duty round failed: %s", self.worker_id, exc)
            return True
        if done.sent_at is not None:  # something was written: put it on the timeline
            self._record(
                EventKind.DUTIES,
                epoch,
                sent_at=done.sent_at,
                requeued_expired=done.expired,
                requeued_abandoned=done.abandoned,
            )
        return True

    async def _run_duties(self, leadership: Leadership | None, done: _Round) -> None:
        """The fenced writes, each only while ``leadership`` holds; progress goes in ``done``."""
        epoch = None if leadership is None else leadership.epoch
        if not self._may_write(leadership):
            return
        done.sent_at = time.time()
        done.expired = await self.store.requeue_expired(epoch=epoch)
        members = await self.coordinator.members()
        if self.worker_id not in members:
            log.warning("%s: missing from the member list; not trusting it", self.worker_id)
            return
        raise_if_cancel_requested()  # stopping: no further write (a driver may swallow it)
        if not self._may_write(leadership):
            return
        done.sent_at = time.time()
        done.abandoned = await self.store.requeue_abandoned(members, epoch=epoch)

    def _record(self, kind: EventKind, epoch: int | None, **details: Any) -> None:
        event = LeadershipEvent(
            kind=kind, worker_id=self.worker_id, epoch=epoch, at=time.time(), **details
        )
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)


# -- reading timelines ------------------------------------------------------------------


def stale_writes_accepted(events: Iterable[LeadershipEvent]) -> int:
    """Duty rounds the store applied although a newer epoch's round had already ended.

    A round counts as stale when its last write was *sent* after a round with
    a higher epoch had *ended*: by then the store had seen the higher epoch,
    so its fence should have refused the lower one (an earlier write of the
    same round carries the same epoch, so it is judged with it). Rounds that
    overlap in time are not judged: the store may have applied them in either
    order.
    """
    applied = [round_span for event in events if (round_span := _fenced_round(event))]
    by_end = sorted((end, epoch) for _, end, epoch in applied)
    ends = [end for end, _ in by_end]
    newest_by_then = list(itertools.accumulate((epoch for _, epoch in by_end), max))
    stale = 0
    for sent, _, epoch in applied:
        ended_before = bisect.bisect_left(ends, sent)
        if ended_before and newest_by_then[ended_before - 1] > epoch:
            stale += 1
    return stale


def _fenced_round(event: LeadershipEvent) -> tuple[float, float, int] | None:
    """(last write sent, end, epoch) of an applied fenced duty round, else None."""
    if event.kind is not EventKind.DUTIES or event.epoch is None:
        return None
    sent = event.at if event.sent_at is None else event.sent_at
    return sent, event.at, event.epoch


def acting_spans(events: Iterable[LeadershipEvent]) -> dict[int, tuple[float, float]]:
    """Per fenced epoch, when it acted: from its election until its last applied duty
    write was sent (an epoch whose election is missing from the timeline starts at its
    first write). Refused writes changed nothing and do not count."""
    spans: dict[int, tuple[float, float]] = {}
    for event in events:
        moment = _acting_moment(event)
        if moment is None or event.epoch is None:
            continue
        start, end = spans.get(event.epoch, (moment, moment))
        spans[event.epoch] = (min(start, moment), max(end, moment))
    return spans


def overlapping_epochs(events: Iterable[LeadershipEvent]) -> list[tuple[int, int]]:
    """Pairs of epochs that acted at the same time (see :func:`acting_spans`): with
    self-fencing there are none, since a successor is elected only after the server
    expired the old lease, which is after the old leader's own deadline."""
    ordered = sorted(acting_spans(events).items(), key=lambda item: item[1])
    pairs = []
    for index, (epoch, (_, end)) in enumerate(ordered):
        for other, (start, _) in ordered[index + 1 :]:
            if start > end:
                break
            pairs.append((epoch, other))
    return pairs


def _acting_moment(event: LeadershipEvent) -> float | None:
    """When a fenced election or an applied fenced write happened, else None."""
    if event.kind is EventKind.ELECTED and event.epoch is not None:
        return event.at
    round_span = _fenced_round(event)
    return round_span[0] if round_span else None
