"""SQLiteStore: the task table in one SQLite file, shareable by the processes of one machine.

This module owns the SQLite backend: its URLs, its two profiles, its SQL and
the translation of :mod:`sqlite3` errors. The semantics are MemoryStore's and
BaseStore's docstring's, statement for statement.

URLs follow SQLAlchemy: ``sqlite:///relative/path.db``,
``sqlite:////absolute/path.db``, and ``sqlite://`` or ``sqlite:///:memory:``
for an in-memory database (one connection, gone with the store: it is then
neither PERSISTENT nor MULTI_PROCESS). Options: ``synchronous``
(OFF|NORMAL|FULL|EXTRA, default NORMAL), ``profile`` (improved|legacy) and
``busy_timeout_ms`` (default 5000).

Two profiles, so that the study can replay the report's improvement:

* **improved** (the default): the table *and* the indexes declared in
  :mod:`taskbench.stores.schema`, the WAL journal, the ``synchronous``
  setting, and ONE connection reused for the store's life.
* **legacy**: the report's "before" state, kept reachable on purpose: the
  table without indexes, ``journal_mode=DELETE`` and a new connection per
  operation. Same SQL, same semantics; only the costs differ.

Design rules:

* The event loop never blocks: every call into :mod:`sqlite3` runs on one
  dedicated worker thread (a ``ThreadPoolExecutor(max_workers=1)``), which
  also serialises this store's use of its connection. A call whose caller is
  cancelled still completes there; a claim lost that way comes back to the
  queue when its lease expires (at-least-once, as everywhere).
* Autocommit connections (``isolation_level=None``); every write is one
  explicit ``BEGIN IMMEDIATE`` transaction. The write lock is taken up front,
  so a claim is atomic across processes and two writers never deadlock
  upgrading a read lock; ``busy_timeout_ms`` bounds the wait for it.
* One round trip per batch: a claim is a single ``UPDATE ... WHERE seq IN
  (SELECT ... LIMIT ?) RETURNING``; finish, extend and release are one
  ``executemany`` in one transaction.
* A fenced write moves the fence row (``UPDATE ... WHERE seen <= epoch``) and
  makes its change in the same ``BEGIN IMMEDIATE`` transaction; when the fence
  refuses, the transaction rolls back with StaleEpochError. The write lock,
  taken up front, makes check and write atomic across processes.
* SQL lives in the named constants below; values are always bound, never
  formatted in. PRAGMAs, which cannot take bound values, are picked whole
  from a table of accepted settings.
* Other processes' writes are noticed by polling ``PRAGMA data_version``
  (SQLite has no cross-process notification), so the store does not claim
  WAKEUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from taskbench.errors import (
    ConfigError,
    InvalidTaskError,
    StoreError,
    StoreUnavailableError,
    TaskbenchError,
)
from taskbench.model import Lease, Outcome, Task, TaskPriority, TaskStatus
from taskbench.stores.base import (
    ABANDONED,
    EXPIRED,
    BaseStore,
    Capability,
    stale_epoch,
    wait_timeout,
)
from taskbench.stores.schema import FENCE, TABLES, TASKS_TABLE, create_statements
from taskbench.urls import check_file_path, redact

P = ParamSpec("P")
R = TypeVar("R")
Row = tuple[Any, ...]

IN_MEMORY = ":memory:"
POLL_INTERVAL_S = 0.025
"""How often ``wait_for_work`` looks for other processes' commits."""

SYNCHRONOUS_PRAGMAS = {
    "OFF": "PRAGMA synchronous = OFF",
    "NORMAL": "PRAGMA synchronous = NORMAL",
    "FULL": "PRAGMA synchronous = FULL",
    "EXTRA": "PRAGMA synchronous = EXTRA",
}
JOURNAL_PRAGMAS = {
    "improved": "PRAGMA journal_mode = WAL",
    "legacy": "PRAGMA journal_mode = DELETE",
}
FILE_CAPABILITIES = (
    Capability.PERSISTENT
    | Capability.MULTI_PROCESS
    | Capability.PRIORITY_ORDER
    | Capability.TRANSACTIONAL
)
MEMORY_CAPABILITIES = Capability.PRIORITY_ORDER | Capability.TRANSACTIONAL

# -- SQL ------------------------------------------------------------------------------
# Every statement reads or writes these columns in this order; _task() decodes them.
_COLUMNS = (
    "id, name, payload, priority, status, attempts, max_attempts, run_at, created_at,"
    " started_at, finished_at, lease_owner, lease_expires_at, last_error, result"
)
_SEQ_INDEX = 15  # claim returns seq after the columns, to sort the batch

BEGIN = "BEGIN IMMEDIATE"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"
DATA_VERSION = "PRAGMA data_version"
# Writes nothing, but needs write access: a read-only file fails here, at open(),
# rather than at the first enqueue (a WAL file can begin a write transaction
# even when it is read-only).
PROBE_WRITE = "DELETE FROM taskbench_tasks WHERE 0"
LIST_INDEXES = "SELECT name FROM pragma_index_list(?1) WHERE origin = 'c' ORDER BY name"
INDEX_COLUMNS = "SELECT name FROM pragma_index_info(?1) ORDER BY seqno"
TABLE_COLUMNS = "SELECT name FROM pragma_table_info(?1) ORDER BY cid"

INSERT = (
    "INSERT INTO taskbench_tasks (" + _COLUMNS + ")"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
)
FIND_STORED_ID = (
    "SELECT id FROM taskbench_tasks WHERE id IN (SELECT value FROM json_each(?1)) LIMIT 1"
)
SELECT_BY_IDS = (
    "SELECT " + _COLUMNS + " FROM taskbench_tasks WHERE id IN (SELECT value FROM json_each(?1))"
)
CLAIM = (
    "UPDATE taskbench_tasks"
    " SET status = 'running', attempts = attempts + 1, started_at = ?1,"
    " lease_owner = ?2, lease_expires_at = ?3"
    " WHERE seq IN (SELECT seq FROM taskbench_tasks"
    "  WHERE status = 'queued' AND run_at <= ?1"
    "  ORDER BY priority DESC, run_at, seq LIMIT ?4)"
    " RETURNING " + _COLUMNS + ", seq"
)
# ?1 id, ?2 attempt, ?3 owner: the lease a write must match.
_HELD = " WHERE id = ?1 AND status = 'running' AND attempts = ?2 AND lease_owner = ?3"
# ?4 status, ?5 finished_at, ?6 result, ?7 error, ?8 run_at (a retry is 'queued').
FINISH = (
    "UPDATE taskbench_tasks SET status = ?4,"
    " run_at = CASE WHEN ?4 = 'queued' THEN ?8 ELSE run_at END,"
    " finished_at = CASE WHEN ?4 = 'queued' THEN NULL ELSE ?5 END,"
    " result = CASE WHEN ?4 = 'queued' THEN result ELSE ?6 END,"
    " last_error = CASE WHEN ?4 = 'queued' THEN ?7 ELSE coalesce(?7, last_error) END,"
    " lease_owner = NULL, lease_expires_at = NULL" + _HELD
)
EXTEND = "UPDATE taskbench_tasks SET lease_expires_at = ?4" + _HELD
RELEASE = (
    "UPDATE taskbench_tasks SET status = 'queued', attempts = attempts - 1,"
    " finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL" + _HELD
)
# ?1 now, ?2 the reason (base.EXPIRED or base.ABANDONED): requeued at now, or
# dead after the last attempt.
_LOSE_LEASES = (
    "UPDATE taskbench_tasks SET"
    " status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,"
    " run_at = CASE WHEN attempts >= max_attempts THEN run_at ELSE ?1 END,"
    " finished_at = CASE WHEN attempts >= max_attempts THEN ?1 ELSE NULL END,"
    " last_error = 'lease of attempt ' || attempts || ' held by ' || lease_owner || ' ' || ?2,"
    " lease_owner = NULL, lease_expires_at = NULL"
    " WHERE status = 'running'"
)
REQUEUE_EXPIRED = _LOSE_LEASES + " AND lease_expires_at < ?1"
# ?3 the live workers' names, a JSON array
REQUEUE_ABANDONED = _LOSE_LEASES + " AND lease_owner NOT IN (SELECT value FROM json_each(?3))"
# ?1 the fence's name, ?2 the epoch. Moves the fence unless the epoch is older than it.
ADVANCE_FENCE = "UPDATE taskbench_fences SET seen = ?2 WHERE name = ?1 AND seen <= ?2"
READ_FENCE = "SELECT seen FROM taskbench_fences WHERE name = ?1"
ISSUE_EPOCH = (
    "UPDATE taskbench_fences SET issued = max(issued, seen) + 1 WHERE name = ?1 RETURNING issued"
)
COUNT_BY_STATUS = "SELECT status, count(*) FROM taskbench_tasks GROUP BY status"
LIST_DEAD = (
    "SELECT " + _COLUMNS + " FROM taskbench_tasks WHERE status = 'dead'"
    " ORDER BY finished_at, seq LIMIT ?1"
)
_REQUEUE_DEAD = (
    "UPDATE taskbench_tasks SET status = 'queued', attempts = 0, run_at = ?1,"
    " finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL"
    " WHERE status = 'dead'"
)
REQUEUE_ALL_DEAD = _REQUEUE_DEAD
REQUEUE_DEAD_BY_IDS = _REQUEUE_DEAD + " AND id IN (SELECT value FROM json_each(?2))"
PURGE_ALL = "DELETE FROM taskbench_tasks"
PURGE_BY_STATUS = "DELETE FROM taskbench_tasks WHERE status IN (SELECT value FROM json_each(?1))"

# sqlite3 primary result code -> (our exception, what it means for the caller)
_ERRORS: dict[int, tuple[type[StoreError], str]] = {
    sqlite3.SQLITE_READONLY: (StoreError, "the database file or its directory is read-only"),
    sqlite3.SQLITE_PERM: (StoreError, "the database file may not be written"),
    sqlite3.SQLITE_CANTOPEN: (StoreError, "cannot open or create the database file"),
    sqlite3.SQLITE_NOTADB: (StoreError, "the file is not a SQLite database"),
    sqlite3.SQLITE_CORRUPT: (StoreError, "the database file is corrupt"),
    sqlite3.SQLITE_FULL: (StoreError, "the disk is full"),
    sqlite3.SQLITE_BUSY: (StoreUnavailableError, "the database stayed locked past busy_timeout_ms"),
    sqlite3.SQLITE_LOCKED: (StoreUnavailableError, "the database is locked"),
}

_PRIORITIES = tuple(sorted(TaskPriority))
_STATUSES = {status.value: status for status in TaskStatus}


# -- rows <-> tasks -------------------------------------------------------------------


def _task(row: Row) -> Task:
    """The Task a row of ``_COLUMNS`` describes."""
    return Task(
        id=row[0],
        name=row[1],
        payload_json=row[2],
        priority=_PRIORITIES[row[3]],
        status=_STATUSES[row[4]],
        attempts=row[5],
        max_attempts=row[6],
        run_at=row[7],
        created_at=row[8],
        started_at=row[9],
        finished_at=row[10],
        lease_owner=row[11],
        lease_expires_at=row[12],
        last_error=row[13],
        result_json=row[14],
    )


def _row(task: Task) -> Row:
    """The parameters of INSERT for ``task``."""
    return (
        task.id,
        task.name,
        task.payload_json,
        int(task.priority),
        task.status.value,
        task.attempts,
        task.max_attempts,
        task.run_at,
        task.created_at,
        task.started_at,
        task.finished_at,
        task.lease_owner,
        task.lease_expires_at,
        task.last_error,
        task.result_json,
    )


def _lease(lease: Lease) -> Row:
    return (lease.task_id, lease.attempt, lease.owner)


def _outcome(outcome: Outcome) -> Row:
    return (
        *_lease(outcome.lease),
        outcome.status.value,
        outcome.finished_at,
        outcome.result_json,
        outcome.error,
        outcome.run_at,
    )


def _claim_order(row: Row) -> tuple[int, float, int]:
    return (-row[3], row[7], row[_SEQ_INDEX])


# -- storage calls: plain functions of a connection, run on the worker thread ---------


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction that holds the write lock from its start."""
    connection.execute(BEGIN)
    try:
        yield connection
    except BaseException:
        if connection.in_transaction:
            connection.execute(ROLLBACK)
        raise
    connection.execute(COMMIT)


def _create_schema(connection: sqlite3.Connection, with_indexes: bool) -> None:
    with _transaction(connection):
        for statement in create_statements("sqlite", with_indexes=with_indexes):
            connection.execute(statement)
        connection.execute(PROBE_WRITE)


def _enqueue(connection: sqlite3.Connection, tasks: Sequence[Task]) -> None:
    ids = json.dumps([task.id for task in tasks])
    with _transaction(connection):
        clash = connection.execute(FIND_STORED_ID, (ids,)).fetchone()
        if clash is not None:
            raise InvalidTaskError(f"task id already stored: {clash[0]!r}")
        connection.executemany(INSERT, map(_row, tasks))


def _claim(
    connection: sqlite3.Connection, worker: str, limit: int, lease_s: float, now: float
) -> list[Task]:
    with _transaction(connection):
        rows = connection.execute(CLAIM, (now, worker, now + lease_s, limit)).fetchall()
    rows.sort(key=_claim_order)
    return [_task(row) for row in rows]


def _write_many(connection: sqlite3.Connection, statement: str, params: Iterator[Row]) -> int:
    with _transaction(connection):
        return connection.executemany(statement, params).rowcount


def _write(connection: sqlite3.Connection, statement: str, params: Row) -> int:
    with _transaction(connection):
        return connection.execute(statement, params).rowcount


def _fence_value(row: Row | None) -> int:
    if row is None:
        raise StoreError("the fence row is missing from taskbench_fences; reopen the store")
    value: int = row[0]
    return value


def _pass_fence(connection: sqlite3.Connection, epoch: int | None) -> None:
    """Inside a write transaction: refuse an epoch older than the fence, or move the fence."""
    if epoch is None or connection.execute(ADVANCE_FENCE, (FENCE, epoch)).rowcount:
        return
    raise stale_epoch(epoch, _fence_value(connection.execute(READ_FENCE, (FENCE,)).fetchone()))


def _fenced_write(
    connection: sqlite3.Connection, epoch: int | None, statement: str, params: Row
) -> int:
    """``statement`` and the fence check, in one transaction: both or neither."""
    with _transaction(connection):
        _pass_fence(connection, epoch)
        return connection.execute(statement, params).rowcount


def _issue_epoch(connection: sqlite3.Connection) -> int:
    with _transaction(connection):
        rows = connection.execute(ISSUE_EPOCH, (FENCE,)).fetchall()
    return _fence_value(rows[0] if rows else None)


def _select(connection: sqlite3.Connection, statement: str, params: Row) -> list[Task]:
    return [_task(row) for row in connection.execute(statement, params)]


def _counts(connection: sqlite3.Connection) -> dict[TaskStatus, int]:
    return {_STATUSES[status]: n for status, n in connection.execute(COUNT_BY_STATUS)}


def _indexes(connection: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    names = [name for (name,) in connection.execute(LIST_INDEXES, (TASKS_TABLE,))]
    return {
        name: tuple(column for (column,) in connection.execute(INDEX_COLUMNS, (name,)))
        for name in names
    }


def _tables(connection: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    found = {
        table: tuple(column for (column,) in connection.execute(TABLE_COLUMNS, (table,)))
        for table in TABLES
    }
    return {table: columns for table, columns in found.items() if columns}


def _data_version(connection: sqlite3.Connection) -> int:
    version: int = connection.execute(DATA_VERSION).fetchone()[0]
    return version


# -- URL and options --------------------------------------------------------------------


def database_path(url: str) -> str:
    """The file a ``sqlite://`` URL names, or ``:memory:`` (SQLAlchemy's convention).

    The path is taken literally (no percent-decoding): any name the file system
    can hold, a non-UTF-8 byte from the command line included; a NUL is refused.
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "sqlite" or "?" in rest or "#" in rest:
        raise ConfigError(
            f"not a plain SQLite URL: {redact(url)!r}; expected sqlite:///relative.db, "
            "sqlite:////absolute.db or sqlite:// (options go to open_store as ?name=value)"
        )
    if rest and not rest.startswith("/"):
        raise ConfigError(f"a SQLite URL has no host: {redact(url)!r}; expected sqlite:///path.db")
    path = rest[1:]
    check_file_path(path, url)
    return IN_MEMORY if path in ("", IN_MEMORY) else path


def _choice(name: str, value: str, accepted: Collection[str]) -> str:
    if value not in accepted:
        raise ConfigError(f"{name}={value!r} is not accepted; accepted: {', '.join(accepted)}")
    return value


def _check_directory(path: str) -> None:
    directory = Path(path).absolute().parent
    if not directory.is_dir():
        raise ConfigError(
            f"cannot create SQLite database {path!r}: no directory {str(directory)!r}"
        )


class SQLiteStore(BaseStore):
    """Tasks in one SQLite file (or in memory); see the module docstring for the profiles."""

    capabilities = FILE_CAPABILITIES
    driver_errors = (sqlite3.Error,)

    def __init__(
        self,
        url: str = "sqlite://",
        *,
        synchronous: str = "NORMAL",
        profile: str = "improved",
        busy_timeout_ms: int = 5000,
    ) -> None:
        super().__init__(url)
        self._database = database_path(url)
        self._synchronous = synchronous
        self._profile = profile
        self._busy_timeout_ms = busy_timeout_ms
        self._worker: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        """The reused connection (improved profile, or in memory); None for legacy files."""
        self._watcher: sqlite3.Connection | None = None
        """Legacy files only: the connection wait_for_work polls."""
        if self.in_memory:
            # An in-memory database is neither persistent nor shared: this instance says so.
            self.capabilities = MEMORY_CAPABILITIES

    @property
    def in_memory(self) -> bool:
        return self._database == IN_MEMORY

    @property
    def profile(self) -> str:
        return self._profile

    def translate(self, error: BaseException) -> TaskbenchError:
        code = getattr(error, "sqlite_errorcode", -1) & 0xFF
        kind, reason = _ERRORS.get(code, (StoreError, "SQLite failed"))
        return kind(f"{self.url}: {reason} ({type(error).__name__}: {error})")

    # -- the worker thread --------------------------------------------------------------

    def _validate_options(self) -> None:
        synchronous, profile = str(self._synchronous).upper(), str(self._profile).lower()
        self._synchronous = _choice("synchronous", synchronous, SYNCHRONOUS_PRAGMAS)
        self._profile = _choice("profile", profile, JOURNAL_PRAGMAS)
        timeout = self._busy_timeout_ms
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
            raise ConfigError(f"busy_timeout_ms must be an integer >= 0, got {timeout!r}")

    def _connect(self) -> sqlite3.Connection:
        """A new autocommit connection with this store's settings (worker thread)."""
        connection = sqlite3.connect(
            self._database, timeout=self._busy_timeout_ms / 1000, isolation_level=None
        )
        try:
            connection.execute(SYNCHRONOUS_PRAGMAS[self._synchronous])
        except BaseException:
            connection.close()
            raise
        return connection

    def _in_session(
        self,
        operation: Callable[Concatenate[sqlite3.Connection, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run ``operation`` on the reused connection, or on a fresh one (legacy files)."""
        if self._connection is not None:
            return operation(self._connection, *args, **kwargs)
        connection = self._connect()
        try:
            return operation(connection, *args, **kwargs)
        finally:
            connection.close()

    async def _submit(self, call: Callable[[], R]) -> R:
        """Run ``call`` on the worker thread and await its result."""
        if self._worker is None:
            raise StoreError(f"{self.url} is not open: await store.open() first")
        return await asyncio.get_running_loop().run_in_executor(self._worker, call)

    async def _run(
        self,
        operation: Callable[Concatenate[sqlite3.Connection, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run a storage call on the worker thread, off the event loop."""
        return await self._submit(lambda: self._in_session(operation, *args, **kwargs))

    def _open_on_worker(self) -> None:
        connection = self._connect()
        try:
            connection.execute(JOURNAL_PRAGMAS[self._profile])
            _create_schema(connection, with_indexes=self._profile == "improved")
        except BaseException:
            connection.close()
            raise
        if self._profile == "improved" or self.in_memory:
            self._connection = connection
        else:
            connection.close()

    def _close_on_worker(self) -> None:
        for connection in (self._connection, self._watcher):
            if connection is not None:
                connection.close()
        self._connection = self._watcher = None

    def _poll_version(self) -> int:
        if self._connection is not None:
            return _data_version(self._connection)
        if self._watcher is None:
            self._watcher = self._connect()
        return _data_version(self._watcher)

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=False)
            self._worker = None

    # -- storage calls ------------------------------------------------------------------

    async def _open(self) -> None:
        self._validate_options()
        if not self.in_memory:
            _check_directory(self._database)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskbench-sqlite")
        try:
            await self._submit(self._open_on_worker)
        except BaseException:
            self._stop_worker()
            raise

    async def _close(self) -> None:
        try:
            await self._submit(self._close_on_worker)
        finally:
            self._stop_worker()

    async def _enqueue(self, tasks: Sequence[Task]) -> None:
        await self._run(_enqueue, tasks)

    async def _claim(self, worker: str, limit: int, lease_s: float, now: float) -> list[Task]:
        return await self._run(_claim, worker, limit, lease_s, now)

    async def _finish(self, outcomes: Sequence[Outcome]) -> int:
        return await self._run(_write_many, FINISH, map(_outcome, outcomes))

    async def _extend(self, leases: Sequence[Lease], expires_at: float) -> int:
        params = ((*_lease(lease), expires_at) for lease in leases)
        return await self._run(_write_many, EXTEND, params)

    async def _release(self, leases: Sequence[Lease]) -> int:
        return await self._run(_write_many, RELEASE, map(_lease, leases))

    async def _issue_epoch(self) -> int:
        return await self._run(_issue_epoch)

    async def _requeue_expired(self, now: float, epoch: int | None) -> int:
        return await self._run(_fenced_write, epoch, REQUEUE_EXPIRED, (now, EXPIRED))

    async def _requeue_abandoned(self, live: list[str], now: float, epoch: int | None) -> int:
        params = (now, ABANDONED, json.dumps(live))
        return await self._run(_fenced_write, epoch, REQUEUE_ABANDONED, params)

    async def _get_many(self, ids: list[str]) -> list[Task]:
        return await self._run(_select, SELECT_BY_IDS, (json.dumps(ids),))

    async def _counts(self) -> dict[TaskStatus, int]:
        return await self._run(_counts)

    async def _list_dead(self, limit: int) -> list[Task]:
        return await self._run(_select, LIST_DEAD, (limit,))

    async def _requeue_dead(self, ids: list[str] | None, now: float) -> int:
        if ids is None:
            return await self._run(_write, REQUEUE_ALL_DEAD, (now,))
        return await self._run(_write, REQUEUE_DEAD_BY_IDS, (now, json.dumps(ids)))

    async def _purge(self, statuses: list[TaskStatus] | None) -> int:
        if statuses is None:
            return await self._run(_write, PURGE_ALL, ())
        return await self._run(_write, PURGE_BY_STATUS, (json.dumps([s.value for s in statuses]),))

    # -- beyond the contract ------------------------------------------------------------

    async def indexes(self) -> dict[str, tuple[str, ...]]:
        """The indexes that really exist on the task table, read from the catalog.

        Index name -> its column names, leaving out SQLite's automatic and
        primary-key indexes. The drift test compares it with
        :func:`taskbench.stores.schema.declared_indexes`; in legacy it is ``{}``.
        """
        found: dict[str, tuple[str, ...]] = await self._call(self._run(_indexes))
        return found

    async def tables(self) -> dict[str, tuple[str, ...]]:
        """Table name -> its columns in order, from the catalog (the declared tables only)."""
        found: dict[str, tuple[str, ...]] = await self._call(self._run(_tables))
        return found

    async def wait_for_work(self, timeout: float) -> None:
        """Return on this store's own writes, or when another connection commits.

        Other processes are noticed by polling ``PRAGMA data_version`` every
        POLL_INTERVAL_S; it changes when another connection commits.
        """
        if self.in_memory:
            await super().wait_for_work(timeout)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_timeout(timeout)
        seen = await self._call(self._submit(self._poll_version))
        while not self._work.is_set() and (remaining := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), min(POLL_INTERVAL_S, remaining))
            if await self._call(self._submit(self._poll_version)) != seen:
                break
        self._work.clear()
