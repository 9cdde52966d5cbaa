"""The Coordinator contract: leader election with a fencing epoch, and worker membership.

Design rules (both backends follow them; ``tests/contract/test_coordinator_contract.py``
checks them against the real servers):

* **One session per coordinator.** A coordinator holds one session on its
  server (etcd: a lease; Redis: key expiries) with a time-to-live of ``ttl``
  seconds, refreshed every ``refresh`` seconds by a background task. The
  leader key and the membership entry are bound to it: when the process stops
  refreshing, the server drops both after the TTL.
* **Fencing epoch.** Every :class:`Leadership` carries an epoch that strictly
  increases from one leader to the next (etcd: the leader key's create
  revision; Redis: an epoch source, see :mod:`taskbench.coordination.redis`).
  A leader stamps its writes with it and the task store refuses stale epochs:
  safety comes from that check, not from trusting the lease.
* **Self-fencing.** A coordinator trusts its session only until its own
  deadline: the moment the last successful refresh was *sent*, plus ``ttl``,
  minus ``safety_margin``. The server starts its TTL no earlier than it
  receives that refresh, so the holder stops believing it leads before the
  server can hand the key to anyone else. Past the deadline ``leadership`` is
  None, with no server round trip. A later refresh that still finds the
  session alive proves the key again (a campaign then returns the same
  leadership: nobody else can have held it); one that fails replaces the
  session, and the key expires with the old one.
* **Cancellation is final.** A driver may swallow a cancellation (Python
  3.11's ``asyncio.wait_for`` returns the inner result when the cancel lands
  as that result arrives, and redis-py sends every command through it), so
  the loops check :func:`cancel_requested` after each server call and stop,
  and :func:`cancel_and_wait` cancels a task again until it has ended.
* **Errors.** Driver exceptions become :class:`~taskbench.errors.CoordinatorError`
  (:class:`CoordinatorUnavailableError` when no server answers in
  ``connect_timeout``). Messages show the URL redacted, never a password.

:class:`BaseCoordinator` does the bookkeeping once: option checks, the refresh
loop and its self-fencing clock, the campaign and observe loops, the async
context manager. A backend implements only the ``_``-prefixed abstract calls.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar, runtime_checkable
from urllib.parse import quote

from taskbench.errors import (
    ConfigError,
    CoordinatorError,
    CoordinatorUnavailableError,
    SessionExpiredError,
)
from taskbench.urls import redact

log = logging.getLogger(__name__)

Cursor = TypeVar("Cursor")
"""Where a backend's change feed stands after a read (etcd: a revision; Redis: nothing)."""

DEFAULT_TTL_S = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_SAFETY_FRACTION = 0.1
"""Default ``safety_margin``, as a fraction of ``ttl``."""


RETRYABLE = (CoordinatorUnavailableError, SessionExpiredError)
"""Errors that campaign() and observe() wait out instead of raising."""

CANCEL_AGAIN_S = 0.05
"""How long :func:`cancel_and_wait` gives a cancelled task before cancelling it again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Leadership:
    """Who leads an election, and the fencing epoch of that leadership."""

    epoch: int
    leader_id: str


@runtime_checkable
class Coordinator(Protocol):
    """What the DistributedExecutor, the benchmarks and the tests need from a coordinator."""

    @property
    def url(self) -> str:
        """The server's URL with any password redacted."""
        ...

    @property
    def worker_id(self) -> str:
        """This process's name in the election and in the member list."""
        ...

    @property
    def leadership(self) -> Leadership | None:
        """The leadership this coordinator holds and can still prove, else None (no I/O)."""
        ...

    @property
    def deadline(self) -> float | None:
        """While leading: the ``time.monotonic()`` instant it stops trusting its lease."""
        ...

    async def open(self) -> None:
        """Connect and open the session (idempotent)."""

    async def close(self) -> None:
        """End the session (dropping leadership and membership at once) and disconnect."""

    async def campaign(self) -> Leadership:
        """Wait until this coordinator leads; cancelling the wait leaves nothing held."""
        ...

    async def resign(self) -> None:
        """Give leadership up now, so the next campaigner wins without waiting for a TTL."""

    def observe(self) -> AsyncIterator[Leadership | None]:
        """The current leadership (None: no leader), then each change, until cancelled."""
        ...

    async def join(self) -> None:
        """List this worker among the members while its session lives (idempotent)."""

    async def members(self) -> list[str]:
        """The worker ids whose sessions are alive, sorted."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


def scrub(text: str, password: str | None) -> str:
    """``text`` with ``password`` (raw or URL-encoded) replaced by ``***``."""
    for secret in {password, quote(password or "", safe="")} - {None, ""}:
        text = text.replace(str(secret), "***")
    return text


def default_worker_id() -> str:
    """``host-pid-random``: unique per coordinator, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def check_seconds(value: object, what: str) -> float:
    """``value`` as float if it is a positive, finite number of seconds, else ConfigError.

    The one check behind every timing option: the coordinators' ttl, refresh,
    connect timeout and poll interval, the DistributedExecutor's duty period
    and the CLI's durations."""
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not valid or not math.isfinite(value) or value <= 0:  # type: ignore[arg-type, operator]
        raise ConfigError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)  # type: ignore[arg-type]


def cancel_requested() -> bool:
    """True if someone cancelled the running task, even if a driver swallowed the
    CancelledError on its way (the request stays counted until ``uncancel``)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_cancel_requested() -> None:
    """Raise the CancelledError a driver swallowed, if it swallowed one."""
    if cancel_requested():
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again every
    :data:`CANCEL_AGAIN_S` while a swallowed cancellation keeps it running. The
    caller reads the outcome from the task (it is done on return)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_S)


def _require_name(name: str, value: str) -> str:
    if not value or not value.isprintable():
        raise ConfigError(f"{name} must be a non-empty printable string, not {value!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinatorSettings:
    """The options every coordinator takes, checked once (ConfigError on bad input)."""

    ttl: float
    refresh: float
    safety_margin: float
    election: str
    worker_id: str
    connect_timeout: float

    @classmethod
    def build(
        cls,
        *,
        ttl: float,
        refresh: float | None,
        safety_margin: float | None,
        election: str,
        worker_id: str | None,
        connect_timeout: float,
    ) -> CoordinatorSettings:
        ttl = check_seconds(ttl, "ttl")
        refresh = check_seconds(ttl / 3 if refresh is None else refresh, "refresh")
        margin = ttl * DEFAULT_SAFETY_FRACTION if safety_margin is None else safety_margin
        _check_timing(ttl, refresh, margin)
        return cls(
            ttl=ttl,
            refresh=refresh,
            safety_margin=float(margin),
            election=_require_name("election", election),
            worker_id=_require_name("worker_id", worker_id or default_worker_id()),
            connect_timeout=check_seconds(connect_timeout, "connect_timeout"),
        )


def _check_timing(ttl: float, refresh: float, margin: float) -> None:
    if refresh >= ttl:
        raise ConfigError(f"refresh ({refresh} s) must be shorter than ttl ({ttl} s)")
    if not math.isfinite(margin) or margin < 0:
        raise ConfigError(f"safety_margin must be >= 0 seconds, not {margin!r}")
    if refresh + margin >= ttl:
        raise ConfigError(
            f"refresh ({refresh} s) + safety_margin ({margin} s) must be shorter than "
            f"ttl ({ttl} s), or the leader would fence itself between two refreshes"
        )


class SelfFencingClock:
    """The local deadline past which a coordinator no longer trusts its session."""

    def __init__(self, ttl: float, safety_margin: float) -> None:
        self._trusted_for = ttl - safety_margin
        self._deadline = -math.inf

    @property
    def deadline(self) -> float:
        return self._deadline

    def confirm(self, sent_at: float) -> None:
        """A refresh sent at ``sent_at`` (monotonic) succeeded."""
        self._deadline = max(self._deadline, sent_at + self._trusted_for)

    def forget(self) -> None:
        self._deadline = -math.inf

    def expired(self) -> bool:
        return time.monotonic() >= self._deadline


class _Unset:
    """Marks 'nothing observed yet' (None means 'no leader')."""


class BaseCoordinator(abc.ABC, Generic[Cursor]):
    """Bookkeeping shared by every backend; subclasses implement the ``_`` storage calls."""

    def __init__(self, url: str, settings: CoordinatorSettings) -> None:
        self._url = redact(url)
        self.settings = settings
        self._clock = SelfFencingClock(settings.ttl, settings.safety_margin)
        self._held: Leadership | None = None
        self._joined = False
        self._session_lost = False
        self._refresher: asyncio.Task[None] | None = None

    # -- what a backend implements -------------------------------------------------

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Create the client (it may connect lazily)."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Release the client (never raises)."""

    @abc.abstractmethod
    async def _start_session(self) -> None:
        """Open a fresh session, dropping any previous one and what it held."""

    @abc.abstractmethod
    async def _end_session(self) -> None:
        """End the session now: leadership and membership go with it."""

    @abc.abstractmethod
    async def _refresh(self) -> bool:
        """Extend the session; False when the server no longer holds what we hold."""

    @abc.abstractmethod
    async def _read_leader(self) -> tuple[Leadership | None, Cursor]:
        """The current leadership, and a cursor to wait for the next change from."""

    @abc.abstractmethod
    async def _wait_for_change(self, cursor: Cursor) -> None:
        """Return when the leadership may have changed since ``cursor`` (or after a while)."""

    @abc.abstractmethod
    async def _try_acquire(self) -> Leadership | None:
        """Take the leader key if it is free (or already ours); None if someone holds it."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Delete the leader key if this coordinator holds it (its value carries our token)."""

    @abc.abstractmethod
    async def _register_member(self) -> None:
        """Add this worker to the members, bound to the session."""

    @abc.abstractmethod
    async def _list_members(self) -> list[str]:
        """The live members' worker ids."""

    # -- public API ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def worker_id(self) -> str:
        return self.settings.worker_id

    @property
    def leadership(self) -> Leadership | None:
        if self._held is None or self._clock.expired():
            return None
        return self._held

    @property
    def deadline(self) -> float | None:
        return self._clock.deadline if self.leadership is not None else None

    async def open(self) -> None:
        if self._refresher is not None:
            return
        await self._connect()
        try:
            await self._begin_session()
        except BaseException:
            await self._disconnect()
            raise
        self._refresher = asyncio.create_task(self._keep_refreshing(), name=f"refresh {self.url}")

    async def close(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is None:
            return
        await cancel_and_wait(refresher)
        with contextlib.suppress(asyncio.CancelledError):
            await refresher  # done: re-raises only a failure of the loop
        self._held = None
        self._joined = False
        try:
            await self._end_session()
        except CoordinatorError as exc:
            log.warning("%s: could not end the session (it expires after ttl): %s", self.url, exc)
        finally:
            await self._disconnect()

    async def campaign(self) -> Leadership:
        self._require_open()
        current = self.leadership
        if current is not None:
            return current
        try:
            return await self._campaign_until_won()
        except BaseException:
            await self._give_up_quietly()
            raise

    async def resign(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            await self._release()

    async def observe(self) -> AsyncIterator[Leadership | None]:
        self._require_open()
        last: Leadership | _Unset | None = _Unset()
        while True:
            try:
                current, cursor = await self._read_leader()
            except RETRYABLE as exc:
                await self._pause_after(exc)
                continue
            raise_if_cancel_requested()
            if current != last:
                last = current
                yield current
            await self._wait_for_change(cursor)

    async def join(self) -> None:
        self._require_open()
        self._joined = True
        await self._register_member()

    async def members(self) -> list[str]:
        self._require_open()
        return sorted(await self._list_members())

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, worker_id={self.worker_id!r})"

    # -- the loops ----------------------------------------------------------------

    def _require_open(self) -> None:
        if self._refresher is None:
            raise CoordinatorError(f"{self!r} is not open: await open() or use 'async with'")

    async def _campaign_until_won(self) -> Leadership:
        while True:
            proven = self.leadership
            if proven is not None:  # still our key, proven again by a refresh since
                return proven
            try:
                won = await self._campaign_once()
            except RETRYABLE as exc:
                await self._pause_after(exc)
                continue
            raise_if_cancel_requested()  # a won key is then released by campaign()
            if won is not None:
                return won

    async def _campaign_once(self) -> Leadership | None:
        """One look at the leader key: take it if free; else wait for a change. Our own
        key past the self-fencing deadline is left alone: the next refresh either
        proves it again (the loop then returns it) or loses the session (it expires)."""
        holder, cursor = await self._read_leader()
        if holder is None:
            won = await self._try_acquire()
            if won is not None and not self._clock.expired():
                self._held = won
                log.info("%s: %s leads with epoch %d", self.url, won.leader_id, won.epoch)
                return won
            if won is not None:
                await self._release()
            return None
        await self._wait_for_change(cursor)
        return None

    async def _give_up_quietly(self) -> None:
        """After a cancelled or failed campaign: release the key if the server gave it to us.

        If the release fails or is itself cancelled, the key may still be ours, kept
        alive by our refreshes for as long as this process runs. The session is then
        dropped: the next refresh starts a new one, and the old session expires
        within one TTL, taking the key with it.
        """
        self._held = None
        try:
            await self._release()
        except BaseException as exc:
            log.warning("%s: could not release after a campaign: %r", self.url, exc)
            self._lose_session("the leader key could not be released after a campaign")
            if not isinstance(exc, CoordinatorError):
                raise

    async def _pause_after(self, exc: CoordinatorError) -> None:
        log.warning("%s: %s; retrying in %.1f s", self.url, exc, self.settings.refresh)
        await asyncio.sleep(self.settings.refresh)

    async def _begin_session(self) -> None:
        sent_at = time.monotonic()
        await self._start_session()
        self._clock.confirm(sent_at)
        self._session_lost = False
        if self._joined:
            await self._register_member()

    async def _keep_refreshing(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh)
            await self._refresh_once()
            raise_if_cancel_requested()

    async def _refresh_once(self) -> None:
        sent_at = time.monotonic()
        try:
            if self._session_lost:
                await self._begin_session()
            elif await self._refresh():
                self._clock.confirm(sent_at)
            else:
                self._lose_session("the server dropped the session")
        except CoordinatorError as exc:
            log.warning("%s: refresh failed: %s", self.url, exc)
        if self._clock.expired() and not self._session_lost:
            self._lose_session("no refresh succeeded before the self-fencing deadline")

    def _lose_session(self, why: str) -> None:
        if self._held is not None:
            log.warning("%s: %s is no longer leader: %s", self.url, self.worker_id, why)
        self._held = None
        self._session_lost = True
        self._clock.forget()
